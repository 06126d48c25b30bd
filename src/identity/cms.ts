/**
 * Verification of the `Mdm-Signature` header: a detached CMS SignedData (RFC 5652) over the
 * exact request body bytes.
 *
 * Two readers behind one guard (verifyDetachedSignature): the fast reader below, a small TLV
 * walk that never descends into the certificate (the measured hot path), and, for whatever it
 * declines, the one SignedData schema reader of src/asn1/ (@peculiar/asn1-cms), which gives the
 * answer and the reason. Either way any exception becomes `malformed`.
 */
import { X509Certificate, createHash, verify, type KeyObject } from 'node:crypto';
import { Asn1Error, SignatureError } from '../asn1/decode.js';
import { oid } from '../asn1/der.js';
import { id_contentType, id_messageDigest, id_signedData, DIGEST_BY_OID, SIGNATURE_OIDS, type DigestName } from '../asn1/oids.js';
import { checkUnguarded, readSignedData } from '../asn1/signed-data.js';
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
const MAX_SIGNATURE_BASE64 = 64 * 1024;
// Limits for the fallback reader: well above any real header (one ~1 KB certificate), small
// enough to bound the work on a hostile one.
const FALLBACK_LIMITS = { maxDepth: 32, maxNodes: 2000, trailing: true };

function malformed(reason: string): never {
  throw new IdentityError('malformed', reason);
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

/** For tests: the schema reading alone, which verifyDetachedSignature falls back to. */
export function verifyDetachedSignatureWithoutFastPath(signatureBase64: string, body: Buffer): VerifiedSignature {
  return malformedOnThrow('Mdm-Signature', () => verifyUnguarded(decodeBase64(signatureBase64), body));
}

function verifyUnguarded(der: Buffer, body: Buffer): VerifiedSignature {
  try {
    const p = readSignedData(der, 'Mdm-Signature', FALLBACK_LIMITS);
    // Devices send detached signatures, but BER streaming signers (openssl -stream) embed the
    // content; accept that only when it is exactly the body, so the body is what was signed.
    if (p.content && !p.content.equals(body)) throw new IdentityError('identity', 'embedded content does not match body');
    const { signerCert } = checkUnguarded(p, { content: body, contentName: 'body', requireSignedAttributes: false, keyOf: publicKeyFor });
    return {
      signerCert: Buffer.from(signerCert),
      certificates: p.certificates.map((c) => Buffer.from(c)),
      digestAlgorithm: p.digest,
      signedAttributes: p.signerInfo?.signedAttrs !== undefined,
    };
  } catch (err) {
    if (err instanceof SignatureError) throw new IdentityError('identity', err.message, { cause: err });
    if (err instanceof Asn1Error) throw new IdentityError('malformed', err.message, { cause: err });
    throw err;
  }
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
  return oid(dotted).subarray(2).toString('latin1');
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
