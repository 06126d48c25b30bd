/**
 * The built-in CA, kept in the store (blobs `ca` and `profile-signer`, their keys sealed with the
 * material key: src/store/sealing.ts), so every replica on one store issues from the same CA.
 * Created on first use, never overwritten: two servers starting at once race on an
 * insert-if-absent and the loser uses the winner's. The profile signer is re-issued when it is
 * missing, expiring or from another CA: it holds no state a device depends on.
 *
 * An install from before kept the CA as files, `<dataDir>/ca/{ca,profile-signer}.{pem,key}`: a
 * store without a CA imports them once (half a CA there is refused, never replaced). A copy of
 * the CA certificate (public) is written to `<dataDir>/scep-ca.pem` for admins and tools.
 */
import { X509Certificate, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCA, issueCertificate, loadCertifiedKey, type CertifiedKey } from '../identity/ca.js';
import { Unavailable } from '../errors.js';
import type { MaterialStore } from '../store/material.js';
import { SealedPairs, type SealedPair, type Sealer } from '../store/sealing.js';

export interface CaStoreOptions {
  commonName?: string;
  organization?: string;
  now?: () => Date;
}

export interface CaStore {
  ca: CertifiedKey;
  profileSigner: CertifiedKey;
  /** The public copy of the CA certificate (PEM). */
  caFile: string;
  /** Whether this call created the CA. */
  created: boolean;
  /** Whether this call imported the CA from the files of an earlier version. */
  imported: boolean;
  warnings: string[];
}

export class CaStoreError extends Unavailable {}

const SIGNER_DAYS = 825;
// Re-issue the profile signer this long before it expires.
const SIGNER_RENEW_MS = 30 * 86_400_000;
const CA_BLOB = 'ca';
const SIGNER_BLOB = 'profile-signer';

/** Where earlier versions kept the CA. */
export function legacyCaDir(dataDir: string): string {
  return join(dataDir, 'ca');
}

export function caCertFile(dataDir: string): string {
  return join(dataDir, 'scep-ca.pem');
}

function loadPairFiles(certFile: string, keyFile: string, what: string): CertifiedKey {
  try {
    return loadCertifiedKey(readFileSync(certFile, 'utf8'), readFileSync(keyFile, 'utf8'));
  } catch (err) {
    throw new CaStoreError(`${what} in ${certFile} / ${keyFile} cannot be loaded: ${(err as Error).message}`);
  }
}

/** The CA files of an earlier version, if there are any; half a CA is an error. */
function legacyCa(dataDir: string): CertifiedKey | undefined {
  const dir = legacyCaDir(dataDir);
  const certFile = join(dir, 'ca.pem');
  const keyFile = join(dir, 'ca.key');
  const hasCert = existsSync(certFile);
  const hasKey = existsSync(keyFile);
  if (hasCert && hasKey) return loadPairFiles(certFile, keyFile, 'the CA');
  if (hasCert || hasKey) {
    // Never replace half of a CA: the missing half may be in a backup, and devices trust the rest.
    throw new CaStoreError(`${hasKey ? certFile : keyFile} is missing but ${hasKey ? keyFile : certFile} exists; restore it (Orchard will not overwrite a CA)`);
  }
  return undefined;
}

function signerUsable(signer: CertifiedKey, ca: CertifiedKey, now: Date): boolean {
  const x = new X509Certificate(signer.certDer);
  const caX = new X509Certificate(ca.certDer);
  return x.checkIssued(caX) && x.verify(caX.publicKey) && Date.parse(x.validTo) - now.getTime() > SIGNER_RENEW_MS;
}

function issueSigner(ca: CertifiedKey): CertifiedKey {
  const key = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const cert = issueCertificate(ca, {
    publicKey: createPublicKey(key),
    subject: [
      { name: 'O', value: 'Orchard' },
      { name: 'CN', value: 'Orchard enrollment profile signing' },
    ],
    days: SIGNER_DAYS,
  });
  return { ...cert, key, keyPem: key.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

function certified(pair: SealedPair, what: string): CertifiedKey {
  try {
    return loadCertifiedKey(pair.certPem, pair.keyPem);
  } catch (err) {
    throw new CaStoreError(`${what} in the store cannot be loaded: ${(err as Error).message}`);
  }
}

/** The CA in the store; created (or imported from an earlier version's files) when the store has none. */
export async function openStoredCa(
  store: Pick<MaterialStore, 'getMaterial' | 'putMaterial'>,
  sealer: Sealer,
  dataDir: string,
  opts: CaStoreOptions = {},
): Promise<CaStore> {
  const pairs = new SealedPairs(store, sealer);
  let created = false;
  let imported = false;
  let stored = await pairs.get(CA_BLOB);
  if (!stored) {
    const old = legacyCa(dataDir);
    const ca = old ?? createCA({ commonName: opts.commonName ?? 'Orchard SCEP CA', organization: opts.organization ?? 'Orchard', days: 3650 });
    const pair = { certPem: ca.certPem, keyPem: ca.keyPem };
    if (await pairs.put(CA_BLOB, pair, { ifAbsent: true })) {
      stored = pair;
      created = !old;
      imported = !!old;
    } else {
      // Another server created it first: use theirs.
      stored = await pairs.get(CA_BLOB);
      if (!stored) throw new CaStoreError('the CA in the store vanished while it was being created');
    }
  }
  const ca = certified(stored, 'the CA');
  const now = opts.now?.() ?? new Date();
  const signer = await openSigner(pairs, ca, dataDir, now);
  const caFile = caCertFile(dataDir);
  mkdirSync(dataDir, { recursive: true });
  if (!existsSync(caFile) || readFileSync(caFile, 'utf8') !== ca.certPem) {
    // Beside, then renamed: a reader never sees half a certificate.
    writeFileSync(`${caFile}.${process.pid}.tmp`, ca.certPem, { mode: 0o644 });
    renameSync(`${caFile}.${process.pid}.tmp`, caFile);
  }
  return { ca, profileSigner: signer, caFile, created, imported, warnings: [] };
}

async function openSigner(pairs: SealedPairs, ca: CertifiedKey, dataDir: string, now: Date): Promise<CertifiedKey> {
  const candidates: (() => CertifiedKey | undefined)[] = [];
  const stored = await pairs.get(SIGNER_BLOB);
  if (stored) candidates.push(() => certified(stored, 'the profile signer'));
  const dir = legacyCaDir(dataDir);
  if (existsSync(join(dir, 'profile-signer.pem')) && existsSync(join(dir, 'profile-signer.key')))
    candidates.push(() => loadPairFiles(join(dir, 'profile-signer.pem'), join(dir, 'profile-signer.key'), 'the profile signer'));
  for (const [i, load] of candidates.entries()) {
    try {
      const signer = load();
      if (signer && signerUsable(signer, ca, now)) {
        if (i > 0 || !stored) await pairs.put(SIGNER_BLOB, { certPem: signer.certPem, keyPem: signer.keyPem });
        return signer;
      }
    } catch {
      // unreadable: replaced below
    }
  }
  const signer = issueSigner(ca);
  await pairs.put(SIGNER_BLOB, { certPem: signer.certPem, keyPem: signer.keyPem });
  return signer;
}
