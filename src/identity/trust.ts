/**
 * Which CAs may vouch for a device identity, and the chain check for a device certificate.
 */
import { X509Certificate, createHash, type KeyObject } from 'node:crypto';
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

/** Kept per device certificate, so only what the leaf adds: the CA part is shared by every chain through that CA. */
interface CachedChain {
  result: TrustResult;
  /** The leaf's validity. */
  notBefore: number;
  notAfter: number;
  /** The rest of the chain, anchor last: the anchor's own list when the leaf is issued by it. */
  issuers: readonly Validity[];
}

const LEAF = 'certificate';

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

function checkValidity(chain: readonly Validity[], now: number): void {
  for (const v of chain) checkPeriod(v.label, v.notBefore, v.notAfter, now);
}

function checkPeriod(label: string, notBefore: number, notAfter: number, now: number): void {
  if (now > notAfter) throw new IdentityError('identity', `${label} expired ${isoSeconds(notAfter)}`);
  if (now < notBefore) throw new IdentityError('identity', `${label} not valid before ${isoSeconds(notBefore)}`);
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
  /** Read on first use (an unreadable validity refuses the chains through it, as it did before). */
  issuers?: readonly Validity[];
  key?: KeyObject;
}

function issuedBy(child: X509Certificate, parent: X509Certificate, parentKey: KeyObject = parent.publicKey): boolean {
  // checkIssued compares names (and key identifiers); verify proves the signature.
  return child.checkIssued(parent) && child.verify(parentKey);
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
      checkPeriod(LEAF, cached.notBefore, cached.notAfter, now.getTime());
      checkValidity(cached.issuers, now.getTime());
      return cached.result;
    }

    const leaf = parseCert(certDer, 'client certificate');
    const leafValidity = validityOf(leaf, LEAF, false);
    const pool = intermediates.filter((d) => !d.equals(certDer)).map((der) => ({ der, cert: parseCert(der, 'intermediate certificate') }));
    const { issuerHash, issuers } = this.issuersOf(leaf, pool);
    checkValidity([leafValidity], now.getTime());
    checkValidity(issuers, now.getTime());

    const result: TrustResult = {
      certHash,
      issuerHash,
      subject: formatName(leaf.subject),
      notAfter: isoSeconds(leafValidity.notAfter),
    };
    this.cache.set(certHash, { result, notBefore: leafValidity.notBefore, notAfter: leafValidity.notAfter, issuers });
    return result;
  }

  /** The chain above `leaf` up to an anchor: the hash of its issuer, and the validity of each CA on it. */
  private issuersOf(leaf: X509Certificate, pool: { der: Buffer; cert: X509Certificate }[]): { issuerHash: string; issuers: readonly Validity[] } {
    const chain: Validity[] = [];
    let issuerHash: string | undefined;
    let current = leaf;
    for (let depth = 0; ; depth++) {
      if (depth >= MAX_CHAIN) throw new IdentityError('identity', 'certificate chain too long');
      const anchor = this.anchors.find((a) => issuedBy(current, a.cert, (a.key ??= a.cert.publicKey)));
      if (anchor) {
        anchor.issuers ??= [validityOf(anchor.cert, 'CA certificate', true)];
        return { issuerHash: issuerHash ?? anchor.hash, issuers: chain.length === 0 ? anchor.issuers : [...chain, ...anchor.issuers] };
      }
      const next = pool.find((c) => c.cert.ca && issuedBy(current, c.cert));
      if (!next) {
        throw new IdentityError('identity', `issuer not trusted: ${formatName(current.issuer) || '(empty name)'}`);
      }
      issuerHash ??= sha256Hex(next.der);
      chain.push(validityOf(next.cert, 'intermediate certificate', true));
      pool.splice(pool.indexOf(next), 1); // each certificate at most once: no loops
      current = next.cert;
    }
  }
}
