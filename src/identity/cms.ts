/**
 * Verification of the `Mdm-Signature` header: a detached CMS SignedData (RFC 5652) over the
 * exact request body bytes.
 *
 * Parsing uses asn1js's BER decoder (real devices send BER indefinite-length encodings) and
 * walks the decoded block tree. We deliberately do not map it onto @peculiar/asn1-cms classes:
 * that schema mapping (compareSchema over every certificate field) measured ~2,500 parses/s on
 * one core for a real header, below the 3,000 verifications/s target, while the raw asn1js tree
 * parses ~6,500/s. The tree also keeps the exact encoded bytes of every element
 * (valueBeforeDecodeView), which we need for certificate DER and for signed attributes.
 */
import { X509Certificate, createHash, verify, type KeyObject } from 'node:crypto';
import * as asn1js from 'asn1js';
import { id_contentType, id_messageDigest, id_signedData, DIGEST_BY_OID, SIGNATURE_OIDS, type DigestName } from './oids.js';
import { IdentityError, malformedOnThrow } from './errors.js';
import { LruMap } from '../store/lru.js';

export type { DigestName };

export interface VerifiedSignature {
  /** DER of the certificate whose key made the signature. */
  signerCert: Buffer;
  /** Every certificate carried in the SignedData (signer first is not guaranteed), DER. */
  certificates: Buffer[];
  digestAlgorithm: DigestName;
  signedAttributes: boolean;
}

const ID_SKI = '2.5.29.14';

// Limits well above any real header (one ~1 KB certificate) but small enough to bound work.
const BER_OPTIONS: asn1js.FromBerOptions = {
  maxDepth: 32,
  maxNodes: 2000,
  parseEmbedded: false, // OCTET/BIT STRING contents are opaque here; parsing them costs ~20%
  copyInput: false,
};
const MAX_SIGNATURE_BASE64 = 64 * 1024;

type Block = asn1js.AsnType;

function malformed(reason: string): never {
  throw new IdentityError('malformed', reason);
}

function isConstructed(b: Block): b is asn1js.Constructed {
  return b instanceof asn1js.Constructed;
}

function kids(b: Block | undefined, what: string): Block[] {
  if (!b || !isConstructed(b)) malformed(`${what} is not a constructed element`);
  return b.valueBlock.value;
}

function isContext(b: Block | undefined, n: number): boolean {
  return !!b && b.idBlock.tagClass === 3 && b.idBlock.tagNumber === n;
}

function isUniversal(b: Block | undefined, n: number): boolean {
  return !!b && b.idBlock.tagClass === 1 && b.idBlock.tagNumber === n;
}

function oid(b: Block | undefined, what: string): string {
  if (!(b instanceof asn1js.ObjectIdentifier)) malformed(`${what} is not an OBJECT IDENTIFIER`);
  return b.getValue();
}

/** Exact encoded bytes of a decoded element (shares memory with the input). */
function raw(b: Block): Buffer {
  const v = b.valueBeforeDecodeView;
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/** Content octets of a primitive element, or of an OCTET STRING in BER constructed form. */
function contentBytes(b: Block, what: string): Buffer {
  if (b instanceof asn1js.OctetString) {
    if (b.valueBlock.isConstructed) return Buffer.from(b.getValue());
    const v = b.valueBlock.valueHexView;
    return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  }
  if (b instanceof asn1js.Primitive || b instanceof asn1js.Integer) {
    const v = b.valueBlock.valueHexView;
    return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  }
  malformed(`${what} is not a primitive element`);
}

function decodeBase64(value: string): Buffer {
  if (value.length > MAX_SIGNATURE_BASE64) malformed('Mdm-Signature is too long');
  const compact = value.replace(/\s+/g, '');
  // Buffer.from silently skips invalid characters, so check the alphabet first.
  if (compact.length === 0 || !/^[A-Za-z0-9+/_-]+={0,2}$/.test(compact)) {
    malformed('Mdm-Signature is not valid base64');
  }
  return Buffer.from(compact, 'base64');
}

interface ParsedCert {
  block: Block;
  der: Buffer;
}

/** The TBSCertificate fields of a decoded certificate. */
function tbsFields(cert: Block): Block[] {
  return kids(kids(cert, 'certificate')[0], 'TBSCertificate');
}

function matchesIssuerSerial(cert: Block, issuer: Buffer, serial: Buffer): boolean {
  const tbs = tbsFields(cert);
  const off = isContext(tbs[0], 0) ? 1 : 0; // optional [0] version
  const certSerial = tbs[off];
  const certIssuer = tbs[off + 2];
  if (!certSerial || !certIssuer) return false;
  return contentBytes(certSerial, 'serialNumber').equals(serial) && raw(certIssuer).equals(issuer);
}

function subjectKeyIdentifier(cert: Block): Buffer | undefined {
  const tbs = tbsFields(cert);
  const extWrapper = tbs.find((b) => isContext(b, 3));
  if (!extWrapper) return undefined;
  for (const ext of kids(kids(extWrapper, 'extensions')[0], 'extensions')) {
    const parts = kids(ext, 'extension');
    if (oid(parts[0], 'extnID') !== ID_SKI) continue;
    const value = parts[parts.length - 1];
    if (!value) return undefined;
    const inner = asn1js.fromBER(contentBytes(value, 'extnValue'), BER_OPTIONS);
    if (inner.offset === -1 || !(inner.result instanceof asn1js.OctetString)) return undefined;
    return contentBytes(inner.result, 'subjectKeyIdentifier');
  }
  return undefined;
}

// Devices repeat their certificate on every request; X509Certificate parsing costs ~100 µs,
// an order of magnitude more than the rest of verification. Keyed by SHA-256 of the DER, so a
// colliding certificate can't borrow someone else's key. Sized for large fleets (one certificate
// per device): an RSA-2048 public KeyObject holds about 2 KB, so the bound is ~200 MB; the least
// recently used key goes first.
const KEY_CACHE_MAX = 100_000;
const keyCache = new LruMap<string, KeyObject>(KEY_CACHE_MAX);

function publicKeyFor(certDer: Buffer): KeyObject {
  const id = createHash('sha256').update(certDer).digest('base64');
  let key = keyCache.get(id);
  if (key) return key;
  try {
    key = new X509Certificate(certDer).publicKey;
  } catch {
    malformed('signer certificate is not a valid X.509 certificate');
  }
  keyCache.set(id, key);
  return key;
}

/** For tests and benchmarks: drop cached public keys. */
export function clearKeyCache(): void {
  keyCache.clear();
}

/** Re-encode [0] IMPLICIT signedAttrs as the SET OF that was actually signed (RFC 5652 5.4). */
function signedAttributesForSignature(attrs: Block): Buffer {
  if (!attrs.lenBlock.isIndefiniteForm) {
    const copy = Buffer.from(raw(attrs));
    copy[0] = 0x31;
    return copy;
  }
  // Rare: BER indefinite length. Re-wrap the attributes, as received, in a definite-length SET.
  const set = new asn1js.Set({ value: kids(attrs, 'signedAttrs') });
  return Buffer.from(set.toBER(false));
}

function attributeValue(attrs: Block, type: string): Block | undefined {
  let found: Block | undefined;
  for (const attr of kids(attrs, 'signedAttrs')) {
    const parts = kids(attr, 'attribute');
    if (oid(parts[0], 'attribute type') !== type) continue;
    const values = kids(parts[1], 'attribute values');
    if (found || values.length !== 1) malformed(`signed attribute ${type} must have exactly one value`);
    found = values[0];
  }
  return found;
}

/**
 * Verify `signatureBase64` (the Mdm-Signature header) as a detached CMS signature over `body`.
 * Proves only that the body was signed by the key of the returned certificate: whether that
 * certificate is trusted is TrustStore's job. Throws only IdentityError: whatever else goes wrong
 * while reading the header is `malformed`.
 */
export function verifyDetachedSignature(signatureBase64: string, body: Buffer): VerifiedSignature {
  return malformedOnThrow('Mdm-Signature', () => {
    const der = decodeBase64(signatureBase64);
    return verifyFast(der, body) ?? verifyUnguarded(der, body);
  });
}

/** For tests: whether the fast path alone verifies this signature (undefined: left to the fallback). */
export function verifiesOnFastPath(signatureBase64: string, body: Buffer): boolean {
  return verifyFast(decodeBase64(signatureBase64), body) !== undefined;
}

/** For tests: the asn1js reading alone, which verifyDetachedSignature falls back to. */
export function verifyDetachedSignatureWithoutFastPath(signatureBase64: string, body: Buffer): VerifiedSignature {
  return malformedOnThrow('Mdm-Signature', () => verifyUnguarded(decodeBase64(signatureBase64), body));
}

function verifyUnguarded(der: Buffer, body: Buffer): VerifiedSignature {
  const input = new Uint8Array(der.buffer, der.byteOffset, der.byteLength);
  const parsed = asn1js.fromBER(input, BER_OPTIONS);
  if (parsed.offset === -1) malformed(`Mdm-Signature is not valid BER: ${parsed.result.error}`);

  // ContentInfo ::= SEQUENCE { contentType, [0] EXPLICIT content }
  const ci = parsed.result;
  if (!isUniversal(ci, 16)) malformed('Mdm-Signature is not a CMS ContentInfo');
  const ciParts = kids(ci, 'ContentInfo');
  if (oid(ciParts[0], 'contentType') !== id_signedData) malformed('Mdm-Signature is not a CMS SignedData');
  if (!isContext(ciParts[1], 0)) malformed('ContentInfo has no content');
  const sd = kids(ciParts[1], 'ContentInfo content')[0];
  if (!isUniversal(sd, 16)) malformed('SignedData is not a SEQUENCE');

  // SignedData ::= SEQUENCE { version, digestAlgorithms, encapContentInfo,
  //   [0] certificates OPTIONAL, [1] crls OPTIONAL, signerInfos }
  const sdParts = kids(sd, 'SignedData');
  const encap = kids(sdParts[2], 'encapContentInfo');
  const eContentType = oid(encap[0], 'eContentType');
  if (encap.length > 1) {
    // Devices send detached signatures, but BER streaming signers (openssl -stream) embed the
    // content; accept that only when it is exactly the body, so the body is what was signed.
    const eContent = kids(encap[1], 'eContent')[0];
    if (!eContent || !isUniversal(eContent, 4)) malformed('eContent is not an OCTET STRING');
    if (!contentBytes(eContent, 'eContent').equals(body)) {
      throw new IdentityError('identity', 'embedded content does not match body');
    }
  }
  let idx = 3;
  const certs: ParsedCert[] = [];
  if (isContext(sdParts[idx], 0)) {
    for (const c of kids(sdParts[idx], 'certificates')) {
      // Skip attribute certificates and other CertificateChoices.
      if (isUniversal(c, 16)) certs.push({ block: c, der: raw(c) });
    }
    idx++;
  }
  if (isContext(sdParts[idx], 1)) idx++;
  const signerInfos = sdParts[idx];
  if (!isUniversal(signerInfos, 17)) malformed('SignedData has no signerInfos');
  const signers = kids(signerInfos, 'signerInfos');
  if (signers.length === 0) malformed('SignedData has no signer');
  if (signers.length > 1) malformed('SignedData has more than one signer');

  // SignerInfo ::= SEQUENCE { version, sid, digestAlgorithm, [0] signedAttrs OPTIONAL,
  //   signatureAlgorithm, signature, [1] unsignedAttrs OPTIONAL }
  const si = kids(signers[0], 'SignerInfo');
  const sid = si[1];
  let signer: ParsedCert | undefined;
  if (sid && isUniversal(sid, 16)) {
    const [issuer, serial] = kids(sid, 'issuerAndSerialNumber');
    if (!issuer || !serial) malformed('issuerAndSerialNumber is incomplete');
    const issuerDer = raw(issuer);
    const serialBytes = contentBytes(serial, 'serialNumber');
    signer = certs.find((c) => matchesIssuerSerial(c.block, issuerDer, serialBytes));
  } else if (sid && isContext(sid, 0)) {
    const ski = contentBytes(sid, 'subjectKeyIdentifier');
    signer = certs.find((c) => subjectKeyIdentifier(c.block)?.equals(ski) ?? false);
  } else {
    malformed('SignerInfo has no signer identifier');
  }
  if (!signer) malformed('signer certificate not included in SignedData');

  const digestOid = oid(kids(si[2], 'digestAlgorithm')[0], 'digestAlgorithm');
  const digest = DIGEST_BY_OID[digestOid];
  if (!digest) malformed(`unsupported digest algorithm ${digestOid}`);
  let i = 3;
  const attrs = isContext(si[i], 0) ? si[i++] : undefined;
  const sigOid = oid(kids(si[i++], 'signatureAlgorithm')[0], 'signatureAlgorithm');
  const sigAlg = SIGNATURE_OIDS[sigOid];
  if (!sigAlg) malformed(`unsupported signature algorithm ${sigOid}`);
  if (sigAlg.hash && sigAlg.hash !== digest) {
    malformed(`signature algorithm ${sigOid} does not match digest algorithm ${digest}`);
  }
  const sigBlock = si[i];
  if (!sigBlock || !isUniversal(sigBlock, 4)) malformed('SignerInfo has no signature');
  const signature = contentBytes(sigBlock, 'signature');

  const key = publicKeyFor(signer.der);
  if (key.asymmetricKeyType !== sigAlg.keyType) {
    malformed(`signer key type ${key.asymmetricKeyType} does not match signature algorithm ${sigOid}`);
  }

  let signedData: Buffer = body;
  if (attrs) {
    const md = attributeValue(attrs, id_messageDigest);
    if (!md) malformed('signed attributes lack messageDigest');
    const ct = attributeValue(attrs, id_contentType);
    if (ct && oid(ct, 'contentType attribute') !== eContentType) {
      throw new IdentityError('identity', 'contentType attribute does not match content');
    }
    const bodyDigest = createHash(digest).update(body).digest();
    if (!contentBytes(md, 'messageDigest').equals(bodyDigest)) {
      throw new IdentityError('identity', 'message digest does not match body');
    }
    signedData = signedAttributesForSignature(attrs);
  }

  let ok: boolean;
  try {
    ok = verify(digest, signedData, key, signature);
  } catch {
    ok = false; // e.g. an ECDSA signature that isn't valid DER
  }
  if (!ok) throw new IdentityError('identity', 'signature does not match body');

  return {
    signerCert: Buffer.from(signer.der),
    certificates: certs.map((c) => Buffer.from(c.der)),
    digestAlgorithm: digest,
    signedAttributes: attrs !== undefined,
  };
}

// ---- Fast path ----
//
// Building asn1js's tree of the whole header costs ~140 µs per request, almost all of it in the
// embedded certificate, which the verification only needs as bytes (its key is cached by digest).
// verifyFast reads the common encodings (DER, and BER indefinite lengths as devices send them)
// with a small TLV reader that never descends into a definite-length certificate. It returns a
// result only when the signature verifies; anything it does not read, and every refusal, goes to
// verifyUnguarded, which gives the answer (and the reason) as before. Either way the proof is the
// same: the body's digest (or the signed attributes carrying it) verified with the key of the
// certificate returned.

interface Tlv {
  /** First identifier octet (low tag numbers only). */
  tag: number;
  start: number;
  /** Content octets: [content, contentEnd); end is past the EOC of an indefinite length. */
  content: number;
  contentEnd: number;
  end: number;
}

const FAST_MAX_DEPTH = 32;

/** Signals "not read here": verifyFast returns undefined. */
class NotFast extends Error {}
const NOT_FAST = new NotFast();

function tlvAt(buf: Buffer, pos: number, limit: number, depth = 0): Tlv {
  if (depth > FAST_MAX_DEPTH || pos + 2 > limit) throw NOT_FAST;
  const tag = buf[pos]!;
  if ((tag & 0x1f) === 0x1f || tag === 0) throw NOT_FAST;
  const l = buf[pos + 1]!;
  let content = pos + 2;
  if (l === 0x80) {
    if ((tag & 0x20) === 0) throw NOT_FAST;
    let p = content;
    for (;;) {
      if (p + 2 > limit) throw NOT_FAST;
      if (buf[p] === 0 && buf[p + 1] === 0) return { tag, start: pos, content, contentEnd: p, end: p + 2 };
      p = tlvAt(buf, p, limit, depth + 1).end;
    }
  }
  let len = l;
  if (l > 0x80) {
    const n = l & 0x7f;
    if (n > 3 || content + n > limit) throw NOT_FAST;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[content + i]!;
    content += n;
  }
  const end = content + len;
  if (end > limit) throw NOT_FAST;
  return { tag, start: pos, content, contentEnd: end, end };
}

/** The elements inside a constructed element; they must fill it exactly. */
function children(buf: Buffer, e: Tlv, depth = 0): Tlv[] {
  if ((e.tag & 0x20) === 0) throw NOT_FAST;
  const out: Tlv[] = [];
  for (let p = e.content; p < e.contentEnd;) {
    const c = tlvAt(buf, p, e.contentEnd, depth);
    out.push(c);
    p = c.end;
  }
  return out;
}

/**
 * What asn1js would decode outside the certificates, checked as strictly as it would be (the
 * asn1js reading refuses such input as malformed, so the fast path must not accept it): every
 * element well-formed, and the primitive types found there with valid content. Anything less
 * common is left to the fallback.
 */
function checkTree(buf: Buffer, e: Tlv, skip: ReadonlySet<number>, depth = 0): void {
  if (skip.has(e.start)) return;
  if (e.tag & 0x20) {
    for (const c of children(buf, e, depth + 1)) checkTree(buf, c, skip, depth + 1);
    return;
  }
  const n = e.contentEnd - e.content;
  switch (e.tag) {
    case 0x02: // INTEGER
    case 0x04: // OCTET STRING
    case 0x80: // [0] IMPLICIT (subjectKeyIdentifier)
      if (n === 0 && e.tag === 0x02) throw NOT_FAST;
      return;
    case 0x05: // NULL
      if (n !== 0) throw NOT_FAST;
      return;
    case 0x06: {
      // OBJECT IDENTIFIER: sub-identifiers of at most 7 bytes, the last one complete
      if (n === 0 || buf[e.contentEnd - 1]! & 0x80) throw NOT_FAST;
      let run = 0;
      for (let i = e.content; i < e.contentEnd; i++) {
        run = buf[i]! & 0x80 ? run + 1 : 0;
        if (run >= 7) throw NOT_FAST;
      }
      return;
    }
    case 0x17: // UTCTime, as signers write it
      if (!/^\d{12}Z$/.test(buf.toString('latin1', e.content, e.contentEnd))) throw NOT_FAST;
      return;
    case 0x0c: // the strings of names (issuerAndSerialNumber): UTF8, Numeric, Printable, Teletex, IA5, Visible
    case 0x12:
    case 0x13:
    case 0x14:
    case 0x16:
    case 0x1a:
      return;
    case 0x1e: // BMPString: UTF-16 units
      if (n % 2 !== 0) throw NOT_FAST;
      return;
    default:
      throw NOT_FAST;
  }
}

function need(e: Tlv | undefined, tag: number): Tlv {
  if (!e || e.tag !== tag) throw NOT_FAST;
  return e;
}

const content = (buf: Buffer, e: Tlv): Buffer => buf.subarray(e.content, e.contentEnd);
const whole = (buf: Buffer, e: Tlv): Buffer => buf.subarray(e.start, e.end);

/** Content octets of an OBJECT IDENTIFIER, as the map keys below hold them. */
function oidKey(buf: Buffer, e: Tlv | undefined): string {
  return content(buf, need(e, 0x06)).toString('latin1');
}

function encodedOid(dotted: string): string {
  const enc = Buffer.from(new asn1js.ObjectIdentifier({ value: dotted }).toBER(false));
  return enc.subarray(2).toString('latin1');
}

const OID_SIGNED_DATA = encodedOid(id_signedData);
const OID_MESSAGE_DIGEST = encodedOid(id_messageDigest);
const OID_CONTENT_TYPE = encodedOid(id_contentType);
const OID_SKI = encodedOid(ID_SKI);
const DIGEST_BY_KEY = new Map(Object.entries(DIGEST_BY_OID).map(([o, d]) => [encodedOid(o), d]));
const SIGALG_BY_KEY = new Map(Object.entries(SIGNATURE_OIDS).map(([o, a]) => [encodedOid(o), a]));

function signerMatches(buf: Buffer, cert: Tlv, sid: Tlv): boolean {
  const tbs = children(buf, need(children(buf, cert)[0], 0x30));
  if (sid.tag === 0x30) {
    const [issuer, serial] = children(buf, sid);
    if (!issuer || !serial || serial.tag !== 0x02) throw NOT_FAST;
    const off = tbs[0]?.tag === 0xa0 ? 1 : 0;
    const certSerial = tbs[off];
    const certIssuer = tbs[off + 2];
    if (!certSerial || !certIssuer || certSerial.tag !== 0x02) return false;
    return content(buf, certSerial).equals(content(buf, serial)) && whole(buf, certIssuer).equals(whole(buf, issuer));
  }
  // [0] subjectKeyIdentifier
  const want = content(buf, sid);
  const extWrapper = tbs.find((t) => t.tag === 0xa3);
  if (!extWrapper) return false;
  for (const ext of children(buf, need(children(buf, extWrapper)[0], 0x30))) {
    const parts = children(buf, need(ext, 0x30));
    if (oidKey(buf, parts[0]) !== OID_SKI) continue;
    const value = need(parts[parts.length - 1], 0x04);
    const inner = tlvAt(buf, value.content, value.contentEnd);
    if (inner.tag !== 0x04 || inner.end !== value.contentEnd) throw NOT_FAST;
    return content(buf, inner).equals(want);
  }
  return false;
}

/** The one value of signed attribute `type`; NOT_FAST when it occurs twice or with other than one value. */
function attribute(buf: Buffer, attrs: Tlv[], type: string): Tlv | undefined {
  let found: Tlv | undefined;
  for (const attr of attrs) {
    const [t, values] = children(buf, need(attr, 0x30));
    if (oidKey(buf, t) !== type) continue;
    const v = children(buf, need(values, 0x31));
    if (found || v.length !== 1) throw NOT_FAST;
    found = v[0];
  }
  return found;
}

function verifyFast(der: Buffer, body: Buffer): VerifiedSignature | undefined {
  try {
    return verifyFastOrThrow(der, body);
  } catch {
    return undefined;
  }
}

function verifyFastOrThrow(der: Buffer, body: Buffer): VerifiedSignature | undefined {
  const root = need(tlvAt(der, 0, der.length), 0x30);
  const ci = children(der, root);
  if (oidKey(der, ci[0]) !== OID_SIGNED_DATA) return undefined;
  const sdParts = children(der, need(children(der, need(ci[1], 0xa0))[0], 0x30));
  const encap = children(der, need(sdParts[2], 0x30));
  const eContentType = content(der, need(encap[0], 0x06));
  if (encap.length > 1) {
    const eContent = need(children(der, need(encap[1], 0xa0))[0], 0x04);
    if (!content(der, eContent).equals(body)) return undefined;
  }
  let idx = 3;
  let certs: Tlv[] = [];
  if (sdParts[idx]?.tag === 0xa0) certs = children(der, sdParts[idx++]!).filter((c) => c.tag === 0x30);
  if (sdParts[idx]?.tag === 0xa1) idx++;
  const signers = children(der, need(sdParts[idx], 0x31));
  if (signers.length !== 1) return undefined;
  const si = children(der, need(signers[0], 0x30));
  const sid = si[1];
  if (!sid || (sid.tag !== 0x30 && sid.tag !== 0x80)) return undefined;
  const signer = certs.find((c) => signerMatches(der, c, sid));
  if (!signer) return undefined;

  const digest = DIGEST_BY_KEY.get(oidKey(der, children(der, need(si[2], 0x30))[0]));
  if (!digest) return undefined;
  let i = 3;
  const attrs = si[i]?.tag === 0xa0 ? si[i++] : undefined;
  const sigAlg = SIGALG_BY_KEY.get(oidKey(der, children(der, need(si[i++], 0x30))[0]));
  if (!sigAlg || (sigAlg.hash && sigAlg.hash !== digest)) return undefined;
  const signature = content(der, need(si[i], 0x04));

  const signerDer = whole(der, signer);
  const key = publicKeyFor(signerDer);
  if (key.asymmetricKeyType !== sigAlg.keyType) return undefined;

  let signedData: Buffer = body;
  if (attrs) {
    // Definite length only: the SET OF that was signed is these bytes with the SET tag.
    if (der[attrs.start + 1] === 0x80) return undefined;
    const list = children(der, attrs);
    const md = attribute(der, list, OID_MESSAGE_DIGEST);
    if (!md || md.tag !== 0x04) return undefined;
    const ct = attribute(der, list, OID_CONTENT_TYPE);
    if (ct && !content(der, need(ct, 0x06)).equals(eContentType)) return undefined;
    if (!content(der, md).equals(createHash(digest).update(body).digest())) return undefined;
    signedData = Buffer.from(whole(der, attrs));
    signedData[0] = 0x31;
  }
  let ok: boolean;
  try {
    ok = verify(digest, signedData, key, signature);
  } catch {
    ok = false;
  }
  if (!ok) return undefined;
  checkTree(der, root, new Set(certs.map((c) => c.start)));
  return {
    signerCert: Buffer.from(signerDer),
    certificates: certs.map((c) => Buffer.from(whole(der, c))),
    digestAlgorithm: digest,
    signedAttributes: attrs !== undefined,
  };
}
