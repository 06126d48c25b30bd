/**
 * Produce an `Mdm-Signature` value the way a device does: a detached CMS SignedData over the
 * body, DER, base64. Used by the device simulator and benchmarks on every request, so it must
 * be cheap: the DER is assembled from pre-encoded pieces and the per-signer parts (embedded
 * certificate, issuerAndSerialNumber) are computed once per certificate Buffer.
 */
import { createHash, sign, type KeyObject } from 'node:crypto';
import * as asn1js from 'asn1js';
import { tlv } from './der.js';
import { id_contentType, id_data, id_messageDigest, id_signedData, id_signingTime } from './oids.js';

export interface CmsSigner {
  certDer: Buffer;
  key: KeyObject;
}

export interface SignOptions {
  /** Default 'sha1', as real devices do. */
  digest?: 'sha1' | 'sha256';
  /** Default false (real devices send none); true adds contentType, signingTime, messageDigest. */
  signedAttributes?: boolean;
  /** The signingTime attribute (with signedAttributes); default now. */
  signingTime?: Date;
}

type Digest = 'sha1' | 'sha256';

const SEQ = 0x30;
const SET = 0x31;
const OCTETS = 0x04;
const CTX0 = 0xa0;

function encodeOid(oid: string): Buffer {
  return Buffer.from(new asn1js.ObjectIdentifier({ value: oid }).toBER(false));
}

const NULL = Buffer.from([0x05, 0x00]);
const INT1 = Buffer.from([0x02, 0x01, 0x01]);
const OID_SIGNED_DATA = encodeOid(id_signedData);
const OID_DATA = encodeOid(id_data);

// sha1 carries NULL parameters as devices send it; SHA-2 omits them (RFC 5754).
const DIGEST_ALG: Record<Digest, Buffer> = {
  sha1: tlv(SEQ, encodeOid('1.3.14.3.2.26'), NULL),
  sha256: tlv(SEQ, encodeOid('2.16.840.1.101.3.4.2.1')),
};

const SIGNATURE_ALG: Record<'rsa' | 'ec', Record<Digest, Buffer>> = {
  rsa: {
    sha1: tlv(SEQ, encodeOid('1.2.840.113549.1.1.5'), NULL),
    sha256: tlv(SEQ, encodeOid('1.2.840.113549.1.1.11'), NULL),
  },
  ec: {
    sha1: tlv(SEQ, encodeOid('1.2.840.10045.4.1')),
    sha256: tlv(SEQ, encodeOid('1.2.840.10045.4.3.2')),
  },
};

const ATTR_CONTENT_TYPE = tlv(SEQ, encodeOid(id_contentType), tlv(SET, OID_DATA));
const OID_MESSAGE_DIGEST = encodeOid(id_messageDigest);
const OID_SIGNING_TIME = encodeOid(id_signingTime);
const ENCAP_CONTENT_INFO = tlv(SEQ, OID_DATA); // detached: no eContent

interface SignerParts {
  certificates: Buffer; // [0] IMPLICIT CertificateSet holding the certificate verbatim
  sid: Buffer; // issuerAndSerialNumber
}

// Keyed by the caller's Buffer: simulators keep one per device, and entries die with it.
const partsCache = new WeakMap<Buffer, SignerParts>();

function signerParts(certDer: Buffer): SignerParts {
  const cached = partsCache.get(certDer);
  if (cached) return cached;
  const parsed = asn1js.fromBER(new Uint8Array(certDer), { parseEmbedded: false });
  const cert = parsed.result;
  if (parsed.offset === -1 || !(cert instanceof asn1js.Sequence)) {
    throw new Error('signer certificate is not DER');
  }
  const tbs = cert.valueBlock.value[0];
  if (!(tbs instanceof asn1js.Sequence)) throw new Error('signer certificate has no TBSCertificate');
  const fields = tbs.valueBlock.value;
  const off = fields[0]?.idBlock.tagClass === 3 ? 1 : 0; // optional [0] version
  const serial = fields[off];
  const issuer = fields[off + 2];
  if (!(serial instanceof asn1js.Integer) || !(issuer instanceof asn1js.Sequence)) {
    throw new Error('signer certificate has no serial/issuer');
  }
  const parts: SignerParts = {
    certificates: tlv(CTX0, certDer),
    sid: tlv(SEQ, issuer.valueBeforeDecodeView, serial.valueBeforeDecodeView),
  };
  partsCache.set(certDer, parts);
  return parts;
}

function encodeTime(date: Date): Buffer {
  // RFC 5652 11.3: UTCTime for 1950-2049, GeneralizedTime otherwise.
  const year = date.getUTCFullYear();
  const t = year >= 1950 && year < 2050 ? new asn1js.UTCTime({ valueDate: date }) : new asn1js.GeneralizedTime({ valueDate: date });
  return Buffer.from(t.toBER(false));
}

/** DER SET OF: elements sorted by their encodings (X.690 11.6). */
function derSetOf(elements: Buffer[]): Buffer {
  return tlv(SET, ...[...elements].sort(Buffer.compare));
}

/**
 * Sign `body` as a detached CMS SignedData and return it base64 (an Mdm-Signature value).
 * Supports RSA (PKCS#1 v1.5) and EC keys.
 */
export function signDetached(body: Buffer, signer: CmsSigner, opts: SignOptions = {}): string {
  const digest: Digest = opts.digest ?? 'sha1';
  const keyType = signer.key.asymmetricKeyType;
  if (keyType !== 'rsa' && keyType !== 'ec') throw new Error(`unsupported signer key type ${keyType}`);
  const parts = signerParts(signer.certDer);

  let signedAttrs: Buffer | undefined;
  let signature: Buffer;
  if (opts.signedAttributes) {
    const md = createHash(digest).update(body).digest();
    const attrs = derSetOf([
      ATTR_CONTENT_TYPE,
      tlv(SEQ, OID_SIGNING_TIME, tlv(SET, encodeTime(opts.signingTime ?? new Date()))),
      tlv(SEQ, OID_MESSAGE_DIGEST, tlv(SET, tlv(OCTETS, md))),
    ]);
    signature = sign(digest, attrs, signer.key); // signed as SET OF (tag 0x31)
    signedAttrs = Buffer.from(attrs);
    signedAttrs[0] = CTX0; // carried as [0] IMPLICIT
  } else {
    signature = sign(digest, body, signer.key);
  }

  const signerInfo = tlv(
    SEQ,
    INT1,
    parts.sid,
    DIGEST_ALG[digest],
    ...(signedAttrs ? [signedAttrs] : []),
    SIGNATURE_ALG[keyType][digest],
    tlv(OCTETS, signature),
  );
  const signedData = tlv(SEQ, INT1, tlv(SET, DIGEST_ALG[digest]), ENCAP_CONTENT_INFO, parts.certificates, tlv(SET, signerInfo));
  return tlv(SEQ, OID_SIGNED_DATA, tlv(CTX0, signedData)).toString('base64');
}
