/**
 * CMS SignedData (RFC 5652 5), the one builder and the one schema reader: SCEP messages, signed
 * enrollment profiles, signed .mobileconfig files in the repository, the simulator's
 * Mdm-Signature, and the reading src/identity/cms.ts falls back to when its fast reader declines.
 *
 * Built with der.ts from pre-encoded pieces (certificates embedded verbatim) and signed with
 * node:crypto; read through the @peculiar/asn1-cms schemas, with the certificates and the signed
 * attributes kept as encoded (the signer's identity is the hash of its certificate's bytes, and
 * the signature covers the attributes' bytes).
 */
import { X509Certificate, createHash, sign, verify, type KeyObject } from 'node:crypto';
import { Attribute, DigestAlgorithmIdentifier, SignatureAlgorithmIdentifier, SignerIdentifier } from '@peculiar/asn1-cms';
import { AsnArray, AsnConvert, AsnProp, AsnPropTypes, AsnType, AsnTypeTypes, OctetString } from '@peculiar/asn1-schema';
import { Name } from '@peculiar/asn1-x509';
import * as asn1js from 'asn1js';
import { certificateFields, type CertificateFields } from './certificate.js';
import { Asn1Error, bytes, contentInfo, decode, decodeBlock, octetsOf, oidOf, parseBer, readable, SignatureError, type DecodeLimits } from './decode.js';
import { algorithm, ctx, int, NULL, octets, oid, seq, set, setOf, time } from './der.js';
import {
  DIGEST_BY_OID,
  DIGEST_OID,
  SIGNATURE_OIDS,
  id_contentType,
  id_data,
  id_messageDigest,
  id_signedData,
  id_signingTime,
  signatureOid,
  type DigestName,
  type SigAlg,
} from './oids.js';

export type { DigestName };
export { SignatureError };

export interface Signer {
  certDer: Buffer;
  key: KeyObject;
}

const RSA_ENCRYPTION = '1.2.840.113549.1.1.1';

/** One encoded Attribute: SEQUENCE { type, SET { value } }. */
export function attribute(type: string, value: Buffer): Buffer {
  return seq(oid(type), set(value));
}

// ---- building ----

export interface BuildSignedOptions {
  /** The signed content; absent: none at all (SCEP failure and pending replies). */
  content?: Buffer;
  /** Sign `content` but leave it out (an Mdm-Signature); default false. */
  detached?: boolean;
  /** Default id-data. */
  contentType?: string;
  signer: Signer;
  /** Default sha256. */
  digest?: DigestName;
  /** Sign contentType, signingTime, messageDigest (and `attributes`); default true. Devices send none. */
  signedAttributes?: boolean;
  /** Encoded Attribute SEQUENCEs signed besides contentType, messageDigest and signingTime. */
  attributes?: Buffer[];
  /** Certificates to embed; default the signer's. */
  certificates?: Buffer[];
  /** Default now. */
  signingTime?: Date;
  /**
   * An RSA signer's signatureAlgorithm: rsaEncryption (default; what every SCEP implementation
   * accepts) or sha*WithRSAEncryption (what devices write).
   */
  rsaSignatureOid?: 'rsaEncryption' | 'withDigest';
}

// sha1 carries NULL parameters as devices send it; SHA-2 omits them (RFC 5754).
const digestAlgorithm = (digest: DigestName): Buffer => (digest === 'sha1' ? algorithm(DIGEST_OID.sha1, NULL) : algorithm(DIGEST_OID[digest]));

/** ContentInfo { signedData } with one signer, DER. */
export function buildSignedData(opts: BuildSignedOptions): Buffer {
  const digest = opts.digest ?? 'sha256';
  const contentType = opts.contentType ?? id_data;
  const keyType = opts.signer.key.asymmetricKeyType;
  if (keyType !== 'rsa' && keyType !== 'ec') throw new Error(`unsupported signer key type ${keyType}`);
  const content = opts.content ?? Buffer.alloc(0);
  let signedAttrs: Buffer | undefined;
  let signature: Buffer;
  if (opts.signedAttributes ?? true) {
    const attrs = setOf([
      attribute(id_contentType, oid(contentType)),
      attribute(id_signingTime, time(opts.signingTime ?? new Date())),
      attribute(id_messageDigest, octets(createHash(digest).update(content).digest())),
      ...(opts.attributes ?? []),
    ]);
    signature = sign(digest, attrs, opts.signer.key); // signed as SET OF (tag 0x31)
    signedAttrs = attrs;
    signedAttrs[0] = 0xa0; // carried as [0] IMPLICIT
  } else {
    signature = sign(digest, content, opts.signer.key);
  }
  const digestAlg = digestAlgorithm(digest);
  const sigAlg =
    keyType === 'ec'
      ? algorithm(signatureOid('ec', digest))
      : algorithm(opts.rsaSignatureOid === 'withDigest' ? signatureOid('rsa', digest) : RSA_ENCRYPTION, NULL);
  const sid = certificateFields(opts.signer.certDer).issuerAndSerial;
  const signerInfo = seq(int(1), sid, digestAlg, ...(signedAttrs ? [signedAttrs] : []), sigAlg, octets(signature));
  const encap = opts.content && !opts.detached ? seq(oid(contentType), ctx(0, octets(opts.content))) : seq(oid(contentType));
  const certs = opts.certificates ?? [opts.signer.certDer];
  const sd = seq(int(1), set(digestAlg), encap, ...(certs.length ? [ctx(0, ...certs)] : []), set(signerInfo));
  return seq(oid(id_signedData), ctx(0, sd));
}

/** A certificates-only ("degenerate") SignedData: how SCEP carries issued certificates. */
export function certsOnly(certs: Buffer[]): Buffer {
  return seq(oid(id_signedData), ctx(0, seq(int(1), set(), seq(oid(id_data)), ctx(0, ...certs), set())));
}

// ---- reading ----

/** A SET OF elements kept as encoded. */
@AsnType({ type: AsnTypeTypes.Set, itemType: AsnPropTypes.Any })
class RawSet extends AsnArray<ArrayBuffer> {}

/** EncapsulatedContentInfo with eContent kept as encoded: BER signers send it as a constructed OCTET STRING. */
class EncapParts {
  @AsnProp({ type: AsnPropTypes.ObjectIdentifier }) eContentType = '';
  @AsnProp({ type: AsnPropTypes.Any, context: 0, optional: true }) eContent?: ArrayBuffer;
}

/** SignedAttributes: a SET OF Attribute (the schemas keep the raw bytes of a non-repeated field only). */
@AsnType({ type: AsnTypeTypes.Set, itemType: Attribute })
class AttributeSet extends AsnArray<Attribute> {}

/** SignerInfo (RFC 5652 5.3) with the signed attributes' bytes kept: the signature covers them. */
class SignerInfoParts {
  @AsnProp({ type: AsnPropTypes.Integer }) version = 1;
  // Kept as encoded: an identifier that cannot be read names no certificate (identifies()).
  @AsnProp({ type: AsnPropTypes.Any }) sid = new ArrayBuffer(0);
  @AsnProp({ type: DigestAlgorithmIdentifier }) digestAlgorithm = new DigestAlgorithmIdentifier();
  @AsnProp({ type: AttributeSet, context: 0, implicit: true, optional: true, raw: true }) signedAttrs?: AttributeSet;
  signedAttrsRaw?: ArrayBuffer | Uint8Array;
  @AsnProp({ type: SignatureAlgorithmIdentifier }) signatureAlgorithm = new SignatureAlgorithmIdentifier();
  @AsnProp({ type: OctetString }) signature = new OctetString();
  @AsnProp({ type: AttributeSet, context: 1, implicit: true, optional: true }) unsignedAttrs?: AttributeSet;
}

@AsnType({ type: AsnTypeTypes.Set, itemType: SignerInfoParts })
class SignerInfoSet extends AsnArray<SignerInfoParts> {}

/** SignedData (RFC 5652 5.1) with certificates and CRLs kept as encoded. */
class SignedDataParts {
  @AsnProp({ type: AsnPropTypes.Integer }) version = 1;
  // Not read: the SignerInfo names its digest (and the fast reader does not look here either).
  @AsnProp({ type: AsnPropTypes.Any }) digestAlgorithms = new ArrayBuffer(0);
  @AsnProp({ type: AsnPropTypes.Any }) encapContentInfo = new ArrayBuffer(0);
  @AsnProp({ type: RawSet, context: 0, implicit: true, optional: true }) certificates?: RawSet;
  @AsnProp({ type: RawSet, context: 1, implicit: true, optional: true }) crls?: RawSet;
  // Optional here only so that what comes before it is judged first (and named) when it is missing.
  @AsnProp({ type: SignerInfoSet, optional: true }) signerInfos?: SignerInfoSet;
}

export interface ParsedSignedData {
  contentType: string;
  /** eContent, absent when the SignedData carries none (or is detached). */
  content?: Buffer;
  /** Every certificate embedded (other CertificateChoices skipped), DER. */
  certificates: Buffer[];
  /** Signed attributes by type: each value as encoded. */
  attributes: Map<string, Buffer[]>;
  digest: DigestName;
  /** Present when there is exactly one signer and its certificate is embedded. */
  signerCert?: Buffer;
  /** Present when there is exactly one signer. */
  signerInfo?: {
    /** The DER SET OF the signature covers (RFC 5652 5.4), when there are signed attributes. */
    signedAttrs?: Buffer;
    signature: Buffer;
    sigAlg: SigAlg;
    sigOid: string;
  };
  /** How many SignerInfos there are. */
  signers: number;
}

/** Parse a SignedData without judging its signature (see checkSignature). Throws only Asn1Error. */
export function parseSignedData(der: Buffer, what = 'message'): ParsedSignedData {
  return readable(what, () => readSignedData(der, what));
}

/**
 * parseSignedData without its guard, for a caller whose own guard names the input (the
 * Mdm-Signature reader); `limits` bound the work on untrusted input.
 */
export function readSignedData(der: Buffer, what: string, limits?: DecodeLimits): ParsedSignedData {
  const ci = contentInfo(der, what, limits);
  if (ci.contentType !== id_signedData) throw new Asn1Error(`${what} is not a CMS SignedData`);
  if (!(ci.content instanceof asn1js.Sequence)) throw new Asn1Error('SignedData is not a SEQUENCE');
  const sd = decodeBlock(ci.content, SignedDataParts, 'SignedData');
  const encapDer = bytes(sd.encapContentInfo);
  if (!(encapDer[0]! & 0x20)) throw new Asn1Error('encapContentInfo is not a constructed element');
  const encap = decode(encapDer, EncapParts, 'encapContentInfo', limits);
  const signerInfos = sd.signerInfos;
  if (!signerInfos) throw new Asn1Error('SignedData has no signerInfos');
  const content = encap.eContent ? octetsOf(bytes(encap.eContent), 'eContent') : undefined;
  // Attribute certificates and other CertificateChoices are [n]-tagged: not signers.
  const certificates = [...(sd.certificates ?? [])].map(bytes).filter((c) => c[0] === 0x30);
  const out: ParsedSignedData = {
    contentType: encap.eContentType,
    content,
    certificates,
    attributes: new Map(),
    digest: 'sha256',
    signers: signerInfos.length,
  };
  if (signerInfos.length !== 1) return out;

  const si = signerInfos[0]!;
  const digestOid = si.digestAlgorithm.algorithm;
  const digest = DIGEST_BY_OID[digestOid];
  if (!digest) throw new Asn1Error(`unsupported digest algorithm ${digestOid}`);
  out.digest = digest;
  const sigOid = si.signatureAlgorithm.algorithm;
  const sigAlg = SIGNATURE_OIDS[sigOid];
  if (!sigAlg) throw new Asn1Error(`unsupported signature algorithm ${sigOid}`);
  let signedAttrs: Buffer | undefined;
  if (si.signedAttrs && si.signedAttrsRaw) {
    for (const attr of si.signedAttrs) {
      if (out.attributes.has(attr.attrType)) throw new Asn1Error(`signed attribute ${attr.attrType} appears twice`);
      out.attributes.set(attr.attrType, attr.attrValues.map(bytes));
    }
    signedAttrs = asSetOf(bytes(si.signedAttrsRaw));
  }
  out.signerInfo = { signedAttrs, signature: bytes(si.signature.buffer), sigAlg, sigOid };
  const sid = bytes(si.sid);
  out.signerCert = certificates.find((c) => identifies(sid, c));
  return out;
}

/** The [0] IMPLICIT signedAttrs as the DER SET OF that was signed (RFC 5652 5.4). */
function asSetOf(implicit: Buffer): Buffer {
  if (implicit[1] !== 0x80) {
    const copy = Buffer.from(implicit);
    copy[0] = 0x31;
    return copy;
  }
  // Rare: BER indefinite length. Re-wrap the attributes, as received, in a definite-length SET.
  const attrs = parseBer(implicit, 'signedAttrs') as asn1js.Constructed;
  return set(...attrs.valueBlock.value.map((a) => bytes(a.valueBeforeDecodeView)));
}

/** The one value of a single-valued signed attribute, if present. */
export function attributeValue(p: ParsedSignedData, type: string): Buffer | undefined {
  const values = p.attributes.get(type);
  if (!values) return undefined;
  if (values.length !== 1) throw new Asn1Error(`signed attribute ${type} must have exactly one value`);
  return values[0];
}

// Canonical (re-encoded) issuer names of certificates whose issuer bytes a CMS identifier may spell otherwise.
const canonicalIssuers = new WeakMap<CertificateFields, Buffer>();

/** Does an encoded SignerIdentifier/RecipientIdentifier (issuerAndSerialNumber or [0] SKI) name this certificate? Total. */
export function identifies(encodedId: Buffer, certDer: Buffer): boolean {
  try {
    const f = certificateFields(certDer);
    if (encodedId.equals(f.issuerAndSerial)) return true; // as signers write it: the certificate's own bytes
    const id = decode(encodedId, SignerIdentifier, 'signer identifier');
    if (id?.issuerAndSerialNumber) {
      const ias = id.issuerAndSerialNumber;
      if (!bytes(ias.serialNumber).equals(f.serial)) return false;
      const issuer = Buffer.from(AsnConvert.serialize(ias.issuer));
      if (issuer.equals(f.issuer)) return true;
      let canonical = canonicalIssuers.get(f);
      if (!canonical) canonicalIssuers.set(f, (canonical = Buffer.from(AsnConvert.serialize(AsnConvert.parse(f.issuer, Name)))));
      return issuer.equals(canonical);
    }
    if (id?.subjectKeyIdentifier) return !!f.ski && bytes(id.subjectKeyIdentifier.buffer).equals(f.ski);
  } catch {
    // An identifier or certificate that cannot be read names nothing.
  }
  return false;
}

export interface CheckOptions {
  /** The signed content when the SignedData is detached; default its eContent. */
  content?: Buffer;
  /** What the content is called in refusals ("body"); default "content". */
  contentName?: string;
  /** Refuse a signature without signed attributes; default true (SCEP, profiles). */
  requireSignedAttributes?: boolean;
  /** The signer certificate's public key (a caller's cache); default parsed from the certificate. */
  keyOf?: (certDer: Buffer) => KeyObject;
}

/**
 * Prove the SignedData was signed by its signer certificate's key over its content. Who the
 * signer is, is the caller's question. Throws Asn1Error for a structure that names no usable
 * signer, SignatureError when the digest or signature does not match.
 */
export function checkSignature(p: ParsedSignedData, opts: CheckOptions = {}): { signerCert: Buffer; publicKey: KeyObject } {
  return readable('SignedData', () => checkUnguarded(p, opts));
}

/** checkSignature without its guard (see readSignedData). */
export function checkUnguarded(p: ParsedSignedData, opts: CheckOptions = {}): { signerCert: Buffer; publicKey: KeyObject } {
  const name = opts.contentName ?? 'content';
  if (p.signers === 0) throw new Asn1Error('SignedData has no signer');
  if (!p.signerInfo) throw new Asn1Error('SignedData must have exactly one signer');
  if (!p.signerCert) throw new Asn1Error('signer certificate not included in SignedData');
  const { signedAttrs, signature, sigAlg, sigOid } = p.signerInfo;
  if (!signedAttrs && (opts.requireSignedAttributes ?? true)) throw new Asn1Error('SignedData has no signed attributes');
  if (sigAlg.hash && sigAlg.hash !== p.digest) throw new Asn1Error(`signature algorithm ${sigOid} does not match digest algorithm ${p.digest}`);
  let publicKey: KeyObject;
  try {
    publicKey = opts.keyOf ? opts.keyOf(p.signerCert) : new X509Certificate(p.signerCert).publicKey;
  } catch {
    throw new Asn1Error('signer certificate is not a valid X.509 certificate');
  }
  if (publicKey.asymmetricKeyType !== sigAlg.keyType) {
    throw new Asn1Error(`signer key type ${publicKey.asymmetricKeyType} does not match signature algorithm ${sigOid}`);
  }
  const content = opts.content ?? p.content ?? Buffer.alloc(0);
  let signedBytes = content;
  if (signedAttrs) {
    const md = attributeValue(p, id_messageDigest);
    if (!md) throw new Asn1Error('signed attributes lack messageDigest');
    const ct = attributeValue(p, id_contentType);
    if (ct && oidOf(ct, 'contentType attribute') !== p.contentType) throw new SignatureError('contentType attribute does not match content');
    if (!octetsOf(md, 'messageDigest').equals(createHash(p.digest).update(content).digest())) {
      throw new SignatureError(`message digest does not match ${name}`);
    }
    signedBytes = signedAttrs;
  }
  let ok: boolean;
  try {
    ok = verify(p.digest, signedBytes, publicKey, signature);
  } catch {
    ok = false; // e.g. an ECDSA signature that isn't valid DER
  }
  if (!ok) throw new SignatureError(`signature does not match ${name}`);
  return { signerCert: p.signerCert, publicKey };
}

/** The certificates of a certificates-only SignedData, in order. */
export function readCertsOnly(der: Buffer): Buffer[] {
  return parseSignedData(der, 'certificates-only SignedData').certificates;
}
