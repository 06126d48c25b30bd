/**
 * The built-in CA on disk, `<dataDir>/ca/`: created on first use, never overwritten.
 *
 *   ca.pem, ca.key                           the SCEP CA (issues device identities)
 *   profile-signer.pem, profile-signer.key   signs enrollment profiles; issued by the CA
 *
 * Keys are created with mode 0600 (directory 0700) and exclusive-create, so two processes
 * starting at once cannot overwrite each other's key. The profile signer is re-issued when it is
 * missing, expired or from another CA: it holds no state a device depends on.
 */
import { X509Certificate, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCA, issueCertificate, loadCertifiedKey, type CertifiedKey } from '../identity/ca.js';
import { Unavailable } from '../errors.js';

export interface CaStoreOptions {
  commonName?: string;
  organization?: string;
  now?: () => Date;
}

export interface CaStore {
  dir: string;
  ca: CertifiedKey;
  profileSigner: CertifiedKey;
  caFile: string;
  /** Whether this call created the CA. */
  created: boolean;
  /** e.g. a key file readable by others. */
  warnings: string[];
}

export class CaStoreError extends Unavailable {}

const SIGNER_DAYS = 825;
// Re-issue the profile signer this long before it expires.
const SIGNER_RENEW_MS = 30 * 86_400_000;

export function caDir(dataDir: string): string {
  return join(dataDir, 'ca');
}

/** Create a file only if it does not exist; throws EEXIST otherwise. */
function writeNew(file: string, data: string, mode: number): void {
  writeFileSync(file, data, { mode, flag: 'wx' });
}

function keyWarnings(file: string): string[] {
  const mode = statSync(file).mode & 0o777;
  return mode & 0o077 ? [`${file} is readable by other users (mode ${mode.toString(8)}); chmod 600 it`] : [];
}

function loadPair(certFile: string, keyFile: string, what: string): CertifiedKey {
  try {
    return loadCertifiedKey(readFileSync(certFile, 'utf8'), readFileSync(keyFile, 'utf8'));
  } catch (err) {
    throw new CaStoreError(`${what} in ${certFile} / ${keyFile} cannot be loaded: ${(err as Error).message}`);
  }
}

function loadOrCreateRoot(dir: string, opts: CaStoreOptions): { ca: CertifiedKey; created: boolean } {
  const certFile = join(dir, 'ca.pem');
  const keyFile = join(dir, 'ca.key');
  const hasCert = existsSync(certFile);
  const hasKey = existsSync(keyFile);
  if (hasCert && hasKey) return { ca: loadPair(certFile, keyFile, 'the CA'), created: false };
  if (hasCert || hasKey) {
    // Never replace half of a CA: the missing half may be in a backup, and devices trust the rest.
    throw new CaStoreError(`${hasKey ? certFile : keyFile} is missing but ${hasKey ? keyFile : certFile} exists; restore it (Orchard will not overwrite a CA)`);
  }
  const ca = createCA({ commonName: opts.commonName ?? 'Orchard SCEP CA', organization: opts.organization ?? 'Orchard', days: 3650 });
  try {
    writeNew(keyFile, ca.keyPem, 0o600);
  } catch (err) {
    // Another process created it first: use theirs.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return waitForPeer(certFile, keyFile);
    throw err;
  }
  writeNew(certFile, ca.certPem, 0o644);
  return { ca, created: true };
}

function waitForPeer(certFile: string, keyFile: string): { ca: CertifiedKey; created: boolean } {
  const until = Date.now() + 5000;
  while (!existsSync(certFile) && Date.now() < until) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  return { ca: loadPair(certFile, keyFile, 'the CA'), created: false };
}

function signerUsable(signer: CertifiedKey, ca: CertifiedKey, now: Date): boolean {
  const x = new X509Certificate(signer.certDer);
  const caX = new X509Certificate(ca.certDer);
  return x.checkIssued(caX) && x.verify(caX.publicKey) && Date.parse(x.validTo) - now.getTime() > SIGNER_RENEW_MS;
}

function loadOrIssueSigner(dir: string, ca: CertifiedKey, now: Date): CertifiedKey {
  const certFile = join(dir, 'profile-signer.pem');
  const keyFile = join(dir, 'profile-signer.key');
  if (existsSync(certFile) && existsSync(keyFile)) {
    try {
      const signer = loadPair(certFile, keyFile, 'the profile signer');
      if (signerUsable(signer, ca, now)) return signer;
    } catch {
      // unreadable: replaced below
    }
  }
  const key = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const cert = issueCertificate(ca, {
    publicKey: createPublicKey(key),
    subject: [
      { name: 'O', value: 'Orchard' },
      { name: 'CN', value: 'Orchard enrollment profile signing' },
    ],
    days: SIGNER_DAYS,
  });
  const keyPem = key.export({ type: 'pkcs8', format: 'pem' }).toString();
  // Write beside, then rename: a reader never sees a key without its certificate.
  const tmpKey = `${keyFile}.${process.pid}.tmp`;
  const tmpCert = `${certFile}.${process.pid}.tmp`;
  writeFileSync(tmpKey, keyPem, { mode: 0o600 });
  writeFileSync(tmpCert, cert.certPem, { mode: 0o644 });
  renameSync(tmpKey, keyFile);
  renameSync(tmpCert, certFile);
  return { ...cert, key, keyPem };
}

/** Load the CA in `<dataDir>/ca/`, creating it (and the profile signer) if there is none. */
export function loadOrCreateCaStore(dataDir: string, opts: CaStoreOptions = {}): CaStore {
  const dir = caDir(dataDir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { ca, created } = loadOrCreateRoot(dir, opts);
  const profileSigner = loadOrIssueSigner(dir, ca, opts.now?.() ?? new Date());
  const warnings = [...keyWarnings(join(dir, 'ca.key')), ...keyWarnings(join(dir, 'profile-signer.key'))];
  const dirMode = statSync(dir).mode & 0o777;
  if (dirMode & 0o077) warnings.push(`${dir} is accessible by other users (mode ${dirMode.toString(8)}); chmod 700 it`);
  return { dir, ca, profileSigner, caFile: join(dir, 'ca.pem'), created, warnings };
}
