/**
 * CMS SignedData (RFC 5652) with attached content and signed attributes: the outer layer of SCEP
 * messages and of signed enrollment profiles. Built from DER pieces and signed with node:crypto;
 * parsed with der.ts, which keeps the exact signed-attribute bytes for verification.
 * (src/identity/cms.ts verifies the detached Mdm-Signature; this is its attached sibling.)
 */
import { X509Certificate, createHash, sign, verify, type KeyObject } from 'node:crypto';
import {
  DIGEST_BY_OID,
  DIGEST_OID,
  SIGNATURE_OIDS,
  id_contentType,
  id_data,
  id_messageDigest,
  id_signedData,
  id_signingTime,
  type DigestName,
  type SigAlg,
} from '../identity/oids.js';
import { causeName, guarded } from '../identity/errors.js';
import {
  Asn1Error,
  algorithm,
  asSet,
  contentOf,
  ctx,
  int,
  isCtx,
  isUniversal,
  kids,
  NULL,
  octets,
  oid,
  oidOf,
  parse,
  raw,
  seq,
  set,
  setOf,
  time,
  type Block,
} from '../identity/der.js';
import { Forbidden } from '../errors.js';

export type { DigestName };
export { DIGEST_OID };

export interface Signer {
  certDer: Buffer;
  key: KeyObject;
}

/** The signature does not verify (as opposed to a structure that cannot be read: Asn1Error). */
export class SignatureError extends Forbidden {
  constructor(message: string) {
    super(message);
    this.name = 'SignatureError';
  }
}

const RSA_ENCRYPTION = '1.2.840.113549.1.1.1';
const ECDSA_WITH: Partial<Record<DigestName, string>> = {
  sha1: '1.2.840.10045.4.1',
  sha256: '1.2.840.10045.4.3.2',
  sha384: '1.2.840.10045.4.3.3',
  sha512: '1.2.840.10045.4.3.4',
};
const ID_SKI = '2.5.29.14';

/** One encoded Attribute: SEQUENCE { type, SET { value } }. */
export function attribute(type: string, value: Buffer): Buffer {
  return seq(oid(type), set(value));
}

// ---- certificates ----

interface CertParts {
  issuer: Buffer;
  serial: Buffer;
  issuerAndSerial: Buffer;
  ski?: Buffer;
}

// Keyed by the caller's Buffer: a CA certificate signs every reply; entries die with the Buffer.
const certPartsCache = new WeakMap<Buffer, CertParts>();

/** Issuer name, serial INTEGER and SubjectKeyIdentifier of a DER certificate. */
export function certParts(certDer: Buffer): CertParts {
  const cached = certPartsCache.get(certDer);
  if (cached) return cached;
  const tbs = kids(kids(parse(certDer, 'certificate'), 'certificate')[0], 'TBSCertificate');
  const off = isCtx(tbs[0], 0) ? 1 : 0;
  const serial = tbs[off];
  const issuer = tbs[off + 2];
  if (!isUniversal(serial, 2) || !isUniversal(issuer, 16)) throw new Asn1Error('certificate has no serial/issuer');
  let ski: Buffer | undefined;
  const extWrapper = tbs.find((b) => isCtx(b, 3));
  if (extWrapper) {
    for (const ext of kids(kids(extWrapper, 'extensions')[0], 'extensions')) {
      const parts = kids(ext, 'extension');
      if (oidOf(parts[0], 'extnID') !== ID_SKI) continue;
      const inner = parse(contentOf(parts[parts.length - 1], 'extnValue'), 'subjectKeyIdentifier');
      ski = Buffer.from(contentOf(inner, 'subjectKeyIdentifier'));
    }
  }
  const parts: CertParts = {
    issuer: Buffer.from(raw(issuer)),
    serial: Buffer.from(raw(serial)),
    issuerAndSerial: seq(raw(issuer), raw(serial)),
    ski,
  };
  certPartsCache.set(certDer, parts);
  return parts;
}

/** Does a SignerInfo/RecipientInfo identifier (issuerAndSerialNumber or [0] SKI) name this certificate? */
export function identifies(id: Block | undefined, certDer: Buffer): boolean {
  if (!id) return false;
  // An identifier or certificate that cannot be read names nothing (e.g. a constructed [0]
  // whose parts are not strings): a total function, so callers need no guard of their own.
  try {
    const parts = certParts(certDer);
    if (isUniversal(id, 16)) return raw(id).equals(parts.issuerAndSerial);
    if (isCtx(id, 0)) return !!parts.ski && contentOf(id, 'subjectKeyIdentifier').equals(parts.ski);
  } catch {
    return false;
  }
  return false;
}

// ---- building ----

export interface BuildSignedOptions {
  /** eContent; absent: no eContent at all (SCEP failure and pending replies). */
  content?: Buffer;
  /** Default id-data. */
  contentType?: string;
  signer: Signer;
  /** Default sha256. */
  digest?: DigestName;
  /** Encoded Attribute SEQUENCEs signed besides contentType, messageDigest and signingTime. */
  attributes?: Buffer[];
  /** Certificates to embed; default the signer's. */
  certificates?: Buffer[];
  /** Default now. */
  signingTime?: Date;
}

/** ContentInfo { signedData } with one signer and signed attributes, DER. */
export function buildSignedData(opts: BuildSignedOptions): Buffer {
  const digest = opts.digest ?? 'sha256';
  const contentType = opts.contentType ?? id_data;
  const keyType = opts.signer.key.asymmetricKeyType;
  if (keyType !== 'rsa' && keyType !== 'ec') throw new Error(`unsupported signer key type ${keyType}`);
  const md = createHash(digest)
    .update(opts.content ?? Buffer.alloc(0))
    .digest();
  const attrs = setOf([
    attribute(id_contentType, oid(contentType)),
    attribute(id_signingTime, time(opts.signingTime ?? new Date())),
    attribute(id_messageDigest, octets(md)),
    ...(opts.attributes ?? []),
  ]);
  const signature = sign(digest, attrs, opts.signer.key);
  const signedAttrs = Buffer.from(attrs);
  signedAttrs[0] = 0xa0; // carried as [0] IMPLICIT
  const digestAlg = digest === 'sha1' ? algorithm(DIGEST_OID.sha1, NULL) : algorithm(DIGEST_OID[digest]);
  // rsaEncryption (not sha256WithRSA) is what every SCEP implementation accepts.
  const sigAlg = keyType === 'rsa' ? algorithm(RSA_ENCRYPTION, NULL) : algorithm(ECDSA_WITH[digest]!);
  const signerInfo = seq(int(1), certParts(opts.signer.certDer).issuerAndSerial, digestAlg, signedAttrs, sigAlg, octets(signature));
  const encap = opts.content ? seq(oid(contentType), ctx(0, octets(opts.content))) : seq(oid(contentType));
  const certs = opts.certificates ?? [opts.signer.certDer];
  const sd = seq(int(1), set(digestAlg), encap, ...(certs.length ? [ctx(0, ...certs)] : []), set(signerInfo));
  return seq(oid(id_signedData), ctx(0, sd));
}

/** A certificates-only ("degenerate") SignedData: how SCEP carries issued certificates. */
export function certsOnly(certs: Buffer[]): Buffer {
  return seq(oid(id_signedData), ctx(0, seq(int(1), set(), seq(oid(id_data)), ctx(0, ...certs), set())));
}

// ---- parsing ----

export interface ParsedSignedData {
  contentType: string;
  /** eContent, absent when the SignedData carries none. */
  content?: Buffer;
  /** Every certificate embedded, DER. */
  certificates: Buffer[];
  /** Signed attributes by type: the encoded values (one SET's members). */
  attributes: Map<string, Block[]>;
  digest: DigestName;
  /** Present when there is exactly one signer and its certificate is embedded. */
  signerCert?: Buffer;
  signerInfo?: { signedAttrs?: Block; signature: Buffer; sigAlg: SigAlg; sigOid: string };
}

function contentInfoSignedData(der: Buffer, what: string): Block[] {
  const ci = kids(parse(der, what), `${what} ContentInfo`);
  if (oidOf(ci[0], 'contentType') !== id_signedData) throw new Asn1Error(`${what} is not a CMS SignedData`);
  if (!isCtx(ci[1], 0)) throw new Asn1Error(`${what} has no content`);
  const sd = kids(ci[1], 'ContentInfo content')[0];
  if (!isUniversal(sd, 16)) throw new Asn1Error('SignedData is not a SEQUENCE');
  return kids(sd, 'SignedData');
}

/** Any exception but ours while reading a SignedData means it could not be read. */
function readable<T>(what: string, parse: () => T): T {
  return guarded(parse, [Asn1Error, SignatureError], (cause) => new Asn1Error(`${what} could not be parsed ${causeName(cause)}`, { cause }));
}

/** Parse a SignedData without judging its signature (see checkSignature). Throws only Asn1Error. */
export function parseSignedData(der: Buffer, what = 'message'): ParsedSignedData {
  return readable(what, () => parseUnguarded(der, what));
}

function parseUnguarded(der: Buffer, what: string): ParsedSignedData {
  const sd = contentInfoSignedData(der, what);
  const encap = kids(sd[2], 'encapContentInfo');
  const contentType = oidOf(encap[0], 'eContentType');
  let content: Buffer | undefined;
  if (encap.length > 1) {
    if (!isCtx(encap[1], 0)) throw new Asn1Error('eContent is not [0]');
    content = Buffer.from(contentOf(kids(encap[1], 'eContent')[0], 'eContent'));
  }
  let i = 3;
  const certificates: Buffer[] = [];
  if (isCtx(sd[i], 0)) {
    for (const c of kids(sd[i], 'certificates')) if (isUniversal(c, 16)) certificates.push(Buffer.from(raw(c)));
    i++;
  }
  if (isCtx(sd[i], 1)) i++;
  const signers = kids(sd[i], 'signerInfos');
  const attributes = new Map<string, Block[]>();
  const out: ParsedSignedData = { contentType, content, certificates, attributes, digest: 'sha256' };
  if (signers.length !== 1) return out;

  const si = kids(signers[0], 'SignerInfo');
  const digestOid = oidOf(kids(si[2], 'digestAlgorithm')[0], 'digestAlgorithm');
  const digest = DIGEST_BY_OID[digestOid];
  if (!digest) throw new Asn1Error(`unsupported digest algorithm ${digestOid}`);
  out.digest = digest;
  let j = 3;
  const signedAttrs = isCtx(si[j], 0) ? si[j++] : undefined;
  const sigOid = oidOf(kids(si[j++], 'signatureAlgorithm')[0], 'signatureAlgorithm');
  const sigAlg = SIGNATURE_OIDS[sigOid];
  if (!sigAlg) throw new Asn1Error(`unsupported signature algorithm ${sigOid}`);
  if (!isUniversal(si[j], 4)) throw new Asn1Error('SignerInfo has no signature');
  out.signerInfo = { signedAttrs, signature: contentOf(si[j], 'signature'), sigAlg, sigOid };
  out.signerCert = certificates.find((c) => identifies(si[1], c));
  if (signedAttrs) {
    for (const attr of kids(signedAttrs, 'signedAttrs')) {
      const parts = kids(attr, 'attribute');
      const type = oidOf(parts[0], 'attribute type');
      if (attributes.has(type)) throw new Asn1Error(`signed attribute ${type} appears twice`);
      attributes.set(type, kids(parts[1], 'attribute values'));
    }
  }
  return out;
}

/** The one value of a single-valued signed attribute, if present. */
export function attributeValue(p: ParsedSignedData, type: string): Block | undefined {
  const values = p.attributes.get(type);
  if (!values) return undefined;
  if (values.length !== 1) throw new Asn1Error(`signed attribute ${type} must have exactly one value`);
  return values[0];
}

/**
 * Prove the SignedData was signed by its signer certificate's key over its content (signed
 * attributes required: every SCEP message and signed profile has them). Who the signer is, is
 * the caller's question. Throws only SignatureError and Asn1Error.
 */
export function checkSignature(p: ParsedSignedData): { signerCert: Buffer; publicKey: KeyObject } {
  return readable('SignedData', () => checkUnguarded(p));
}

function checkUnguarded(p: ParsedSignedData): { signerCert: Buffer; publicKey: KeyObject } {
  if (!p.signerInfo) throw new SignatureError('SignedData must have exactly one signer');
  if (!p.signerCert) throw new SignatureError('signer certificate not included in SignedData');
  const { signedAttrs, signature, sigAlg, sigOid } = p.signerInfo;
  if (!signedAttrs) throw new SignatureError('SignedData has no signed attributes');
  if (sigAlg.hash && sigAlg.hash !== p.digest) throw new SignatureError(`signature algorithm ${sigOid} does not match digest ${p.digest}`);
  const md = attributeValue(p, id_messageDigest);
  if (!md) throw new SignatureError('signed attributes lack messageDigest');
  const ct = attributeValue(p, id_contentType);
  if (ct && oidOf(ct, 'contentType attribute') !== p.contentType) throw new SignatureError('contentType attribute does not match content');
  const digest = createHash(p.digest)
    .update(p.content ?? Buffer.alloc(0))
    .digest();
  if (!contentOf(md, 'messageDigest').equals(digest)) throw new SignatureError('message digest does not match content');
  let publicKey: KeyObject;
  try {
    publicKey = new X509Certificate(p.signerCert).publicKey;
  } catch {
    throw new Asn1Error('signer certificate is not a valid X.509 certificate');
  }
  if (publicKey.asymmetricKeyType !== sigAlg.keyType) throw new SignatureError(`signer key type does not match ${sigOid}`);
  let ok: boolean;
  try {
    ok = verify(p.digest, asSet(signedAttrs), publicKey, signature);
  } catch {
    ok = false;
  }
  if (!ok) throw new SignatureError('signature does not verify');
  return { signerCert: p.signerCert, publicKey };
}

/** The certificates of a certificates-only SignedData, in order. */
export function readCertsOnly(der: Buffer): Buffer[] {
  return parseSignedData(der, 'certificates-only SignedData').certificates;
}
