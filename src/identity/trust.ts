/**
 * Which CAs may vouch for a device identity, and the chain check for a device certificate.
 */
import { X509Certificate, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { pemBlocks } from '../asn1/pem.js';
import { IdentityError, malformedOnThrow } from './errors.js';
import { LruMap } from '../store/lru.js';

export interface TrustResult {
  /** SHA-256 hex of the certificate DER. */
  certHash: string;
  /** SHA-256 hex of the DER of the CA certificate (anchor or intermediate) that signed it. */
  issuerHash: string;
  /** Subject DN, e.g. "CN=device-1, O=Example"; empty for SCEP certificates without one. */
  subject: string;
  /** ISO 8601. */
  notAfter: string;
}

interface Validity {
  label: string;
  notBefore: number;
  notAfter: number;
}

interface CachedChain {
  result: TrustResult;
  /** Every certificate of the chain, leaf first, anchor last. */
  validity: Validity[];
}

const MAX_CHAIN = 8;
// One entry per device certificate (a few hundred bytes): sized for large fleets.
const CACHE_MAX = 100_000;

function sha256Hex(der: Buffer): string {
  return createHash('sha256').update(der).digest('hex');
}

/**
 * node:crypto renders names one attribute per line; make it a one-line DN. An empty name
 * (SCEP device certificates) comes back undefined despite the typings.
 */
function formatName(name: string | undefined): string {
  return (name ?? '').split('\n').filter(Boolean).join(', ');
}

function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** `role` names the certificate in error messages; CA certificates also get their subject. */
function validityOf(cert: X509Certificate, role: string, withSubject: boolean): Validity {
  const subject = withSubject ? formatName(cert.subject) : '';
  const notBefore = Date.parse(cert.validFrom);
  const notAfter = Date.parse(cert.validTo);
  // OpenSSL prints an unreadable time as "Bad time value": a NaN notBefore would pass
  // checkValidity (NaN compares false), a NaN notAfter throw in isoSeconds.
  if (Number.isNaN(notBefore) || Number.isNaN(notAfter)) throw new IdentityError('malformed', `${role} has an unreadable validity period`);
  return { label: subject ? `${role} ${subject}` : role, notBefore, notAfter };
}

function checkValidity(chain: Validity[], now: number): void {
  for (const v of chain) {
    if (now > v.notAfter) throw new IdentityError('identity', `${v.label} expired ${isoSeconds(v.notAfter)}`);
    if (now < v.notBefore) {
      throw new IdentityError('identity', `${v.label} not valid before ${isoSeconds(v.notBefore)}`);
    }
  }
}

function parseCert(der: Buffer, what: string): X509Certificate {
  try {
    return new X509Certificate(der);
  } catch {
    throw new IdentityError('malformed', `${what} is not an X.509 certificate`);
  }
}

interface Anchor {
  cert: X509Certificate;
  hash: string;
}

function issuedBy(child: X509Certificate, parent: X509Certificate): boolean {
  // checkIssued compares names (and key identifiers); verify proves the signature.
  return child.checkIssued(parent) && child.verify(parent.publicKey);
}

export class TrustStore {
  private readonly anchors: Anchor[] = [];
  private readonly anchorHashes = new Set<string>();
  /** Successful chains by leaf hash, least recently used dropped first; validity times are re-checked on every hit. */
  private readonly cache = new LruMap<string, CachedChain>(CACHE_MAX);

  constructor(caPems: string[] = []) {
    for (const pem of caPems) this.addCa(pem);
  }

  static fromFiles(paths: string[]): TrustStore {
    return new TrustStore(paths.map((p) => readFileSync(p, 'utf8')));
  }

  /** Trust every certificate in `pem` as an anchor. */
  addCa(pem: string): void {
    const ders = pemBlocks(pem);
    if (ders.length === 0) throw new IdentityError('malformed', 'no certificate in CA PEM');
    for (const der of ders) {
      const cert = parseCert(der, 'CA certificate');
      const hash = sha256Hex(der);
      if (this.anchorHashes.has(hash)) continue;
      this.anchorHashes.add(hash);
      this.anchors.push({ cert, hash });
    }
  }

  get size(): number {
    return this.anchors.length;
  }

  /**
   * Check that `certDer` chains to a trusted CA, optionally through `intermediates` (e.g. the
   * CMS certificate set), and that every certificate of the chain is valid at `now`. The
   * certificates are untrusted input: any exception reading them is `malformed`.
   */
  check(certDer: Buffer, intermediates: Buffer[] = [], now: Date = new Date()): TrustResult {
    return malformedOnThrow('client certificate', () => this.checkUnguarded(certDer, intermediates, now));
  }

  private checkUnguarded(certDer: Buffer, intermediates: Buffer[], now: Date): TrustResult {
    const certHash = sha256Hex(certDer);
    const cached = this.cache.get(certHash);
    if (cached) {
      checkValidity(cached.validity, now.getTime());
      return cached.result;
    }

    const leaf = parseCert(certDer, 'client certificate');
    const validity: Validity[] = [validityOf(leaf, 'certificate', false)];
    const pool = intermediates.filter((d) => !d.equals(certDer)).map((der) => ({ der, cert: parseCert(der, 'intermediate certificate') }));
    let issuerHash: string | undefined;
    let current = leaf;
    for (let depth = 0; ; depth++) {
      if (depth >= MAX_CHAIN) throw new IdentityError('identity', 'certificate chain too long');
      const anchor = this.anchors.find((a) => issuedBy(current, a.cert));
      if (anchor) {
        issuerHash ??= anchor.hash;
        validity.push(validityOf(anchor.cert, 'CA certificate', true));
        break;
      }
      const next = pool.find((c) => c.cert.ca && issuedBy(current, c.cert));
      if (!next) {
        throw new IdentityError('identity', `issuer not trusted: ${formatName(current.issuer) || '(empty name)'}`);
      }
      issuerHash ??= sha256Hex(next.der);
      validity.push(validityOf(next.cert, 'intermediate certificate', true));
      pool.splice(pool.indexOf(next), 1); // each certificate at most once: no loops
      current = next.cert;
    }
    checkValidity(validity, now.getTime());

    const result: TrustResult = {
      certHash,
      issuerHash,
      subject: formatName(leaf.subject),
      notAfter: isoSeconds(validity[0]!.notAfter),
    };
    this.cache.set(certHash, { result, validity });
    return result;
  }
}
