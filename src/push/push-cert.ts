/**
 * The APNs push certificate (PROTOCOL.md §3): reading it (PEM or PKCS#12), its topic (the
 * subject's UID attribute), its expiry, and storing it under `<dataDir>/push/`.
 *
 * A renewal must keep the topic: devices enrolled under a topic can only be pushed with a
 * certificate for that topic, so a changed topic silently loses every device.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MaterialStore } from '../store/material.js';
import { SealedPairs, type Sealer } from '../store/sealing.js';
import { createRequire } from 'node:module';
import type forgeModule from 'node-forge';
import { certificateFields, nameAttribute } from '../asn1/certificate.js';
import { id_userId } from '../asn1/oids.js';
import { isPem, pemBlocks, toPem } from '../asn1/pem.js';
import { Malformed } from '../errors.js';
import { writeAtomic } from '../util/files.js';

/** userId (RFC 4519 UID), where Apple puts the push topic. */
export const UID_OID = id_userId;
/** Warn this many days (and fewer) before the certificate expires. */
export const EXPIRY_WARNING_DAYS = 30;
const DAY_MS = 86_400_000;

export class PushCertError extends Malformed {
  constructor(
    readonly problem: 'unreadable' | 'no-certificate' | 'no-key' | 'key-mismatch' | 'no-topic' | 'topic-changed' | 'expired' | 'key-exists',
    message: string,
  ) {
    super(message);
  }
}

/** What a push certificate says about itself. */
export interface PushCertInfo {
  topic: string;
  subject: string;
  issuer: string;
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
  /** SHA-256 of the DER certificate, colon-separated hex (as openssl prints it). */
  fingerprint256: string;
}

/** A push certificate, with its key when one was given. */
export interface PushCredentials extends PushCertInfo {
  certPem: string;
  /** PKCS#8 PEM. Secret: never logged. */
  keyPem?: string;
}

export interface ExpiryState {
  daysLeft: number;
  expired: boolean;
  /** Set from EXPIRY_WARNING_DAYS before expiry on; says what to do. */
  warning?: string;
}

/** Whole days left (negative once expired) and a warning when 30 or fewer remain. */
export function expiryState(notAfter: Date, now: Date = new Date()): ExpiryState {
  const ms = notAfter.getTime() - now.getTime();
  const daysLeft = Math.floor(ms / DAY_MS);
  const expired = ms <= 0;
  const day = notAfter.toISOString().slice(0, 10);
  let warning: string | undefined;
  if (expired) warning = `push certificate expired on ${day}: devices cannot be pushed; renew it at identity.apple.com with the same topic`;
  else if (daysLeft <= EXPIRY_WARNING_DAYS)
    warning = `push certificate expires in ${daysLeft} day${daysLeft === 1 ? '' : 's'} (${day}): renew it at identity.apple.com with the same topic`;
  return { daysLeft, expired, ...(warning ? { warning } : {}) };
}

/** Read a certificate (PEM or DER) and what a push certificate carries. Throws without a UID. */
export function parsePushCertificate(data: Buffer | string): PushCredentials {
  let der: Buffer;
  try {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    if (isPem(buf)) {
      const first = pemBlocks(buf)[0];
      if (!first) throw new PushCertError('no-certificate', 'no CERTIFICATE block in the PEM');
      der = first;
    } else {
      der = buf;
    }
    const x = new X509Certificate(der);
    const topic = nameAttribute(certificateFields(der).subject, UID_OID);
    if (!topic)
      throw new PushCertError(
        'no-topic',
        `not an APNs push certificate: its subject (${x.subject.replace(/\n/g, ', ')}) has no UID attribute holding the topic`,
      );
    return {
      topic,
      subject: x.subject.replace(/\n/g, ', '),
      issuer: x.issuer.replace(/\n/g, ', '),
      serialNumber: x.serialNumber,
      notBefore: new Date(x.validFrom),
      notAfter: new Date(x.validTo),
      fingerprint256: x.fingerprint256,
      certPem: toPem(der, 'CERTIFICATE'),
    };
  } catch (err) {
    if (err instanceof PushCertError) throw err;
    throw new PushCertError('unreadable', `cannot read the certificate: ${(err as Error).message}`);
  }
}

function keyToPem(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }).toString();
}

// node-forge is only for reading a .p12 (an import, or a server started on one): a server that
// reads its certificate from the store never loads it (issue 18: memory at start).
const requireLazily = createRequire(import.meta.url);
const loadForge = () => requireLazily('node-forge') as typeof forgeModule;

/**
 * PKCS#12 -> certificates (DER) and private keys, via node-forge's public API: node:crypto cannot
 * read PKCS#12, and its password-based encryption (the PKCS#12 key derivation, 3DES and RC2
 * bags as Keychain exports them) is in neither node:crypto's default provider nor the schemas.
 */
function readPkcs12(data: Buffer, password: string): { certs: Buffer[]; keys: KeyObject[] } {
  const forge = loadForge();
  let p12: forgeModule.pkcs12.Pkcs12Pfx;
  try {
    p12 = forge.pkcs12.pkcs12FromAsn1(forge.asn1.fromDer(data.toString('binary')), false, password);
  } catch (err) {
    throw new PushCertError('unreadable', `cannot read the PKCS#12 file (wrong password?): ${(err as Error).message}`);
  }
  const certs: Buffer[] = [];
  const keys: KeyObject[] = [];
  for (const sc of p12.safeContents) {
    for (const bag of sc.safeBags) {
      // forge decodes RSA; other key or cert types stay as ASN.1, which node:crypto reads.
      const loose = bag as forgeModule.pkcs12.Bag & { asn1?: forgeModule.asn1.Asn1 };
      if (bag.type === forge.pki.oids.certBag) {
        const asn1 = bag.cert ? forge.pki.certificateToAsn1(bag.cert) : loose.asn1;
        if (asn1) certs.push(Buffer.from(forge.asn1.toDer(asn1).getBytes(), 'binary'));
      } else if (bag.type === forge.pki.oids.keyBag || bag.type === forge.pki.oids.pkcs8ShroudedKeyBag) {
        const asn1 = bag.key ? forge.pki.wrapRsaPrivateKey(forge.pki.privateKeyToAsn1(bag.key)) : loose.asn1;
        if (asn1) keys.push(createPrivateKey({ key: Buffer.from(forge.asn1.toDer(asn1).getBytes(), 'binary'), format: 'der', type: 'pkcs8' }));
      }
    }
  }
  return { certs, keys };
}

export interface LoadOptions {
  /** PKCS#12 password, or an encrypted PEM key's passphrase. */
  password?: string;
}

/**
 * A push certificate and its key, checked to belong together. `certData` is a PEM (which may
 * also hold the key), a DER certificate, or a PKCS#12 bundle; `keyData` a PEM key when separate.
 */
export function loadPushCredentials(certData: Buffer, keyData?: Buffer, opts: LoadOptions = {}): PushCredentials {
  let cert: PushCredentials;
  let key: KeyObject | undefined;
  if (isPem(certData) || looksLikeCertificate(certData)) {
    cert = parsePushCertificate(certData);
    const keySource = keyData ?? (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(certData.toString('utf8')) ? certData : undefined);
    if (keySource) key = readKey(keySource, opts.password);
  } else {
    const { certs, keys } = readPkcs12(certData, opts.password ?? '');
    if (keyData) keys.unshift(readKey(keyData, opts.password));
    if (certs.length === 0) throw new PushCertError('no-certificate', 'the PKCS#12 file holds no certificate');
    // The bundle may carry the issuing chain too: the push certificate is the one with a UID.
    const candidates = certs.flatMap((der) => {
      try {
        return [parsePushCertificate(der)];
      } catch {
        return [];
      }
    });
    if (candidates.length === 0) throw new PushCertError('no-topic', 'no certificate in the PKCS#12 file has a UID (topic): not an APNs push certificate');
    const matching = candidates.find((c) => keys.some((k) => new X509Certificate(c.certPem).checkPrivateKey(k)));
    cert = matching ?? candidates[0]!;
    key = keys.find((k) => new X509Certificate(cert.certPem).checkPrivateKey(k)) ?? keys[0];
  }
  if (!key) throw new PushCertError('no-key', 'no private key given: pass the key file, or a PKCS#12 bundle holding both');
  if (!new X509Certificate(cert.certPem).checkPrivateKey(key)) throw new PushCertError('key-mismatch', 'the private key does not belong to the certificate');
  return { ...cert, keyPem: keyToPem(key) };
}

function looksLikeCertificate(der: Buffer): boolean {
  try {
    new X509Certificate(der);
    return true;
  } catch {
    return false;
  }
}

function readKey(data: Buffer, password?: string): KeyObject {
  try {
    if (isPem(data)) return createPrivateKey({ key: data, format: 'pem', ...(password ? { passphrase: password } : {}) });
    return createPrivateKey({ key: data, format: 'der', type: 'pkcs8' });
  } catch (err) {
    throw new PushCertError('unreadable', `cannot read the private key: ${(err as Error).message}`);
  }
}

export function pushDir(dataDir: string): string {
  return join(dataDir, 'push');
}

const CERT_FILE = 'cert.pem';
const KEY_FILE = 'key.pem';

/** The imported push certificate and key, if any. */
export function readStoredPushCredentials(dataDir: string): PushCredentials | undefined {
  const dir = pushDir(dataDir);
  const certFile = join(dir, CERT_FILE);
  if (!existsSync(certFile)) return undefined;
  const cert = parsePushCertificate(readFileSync(certFile));
  const keyPem = readFileSync(join(dir, KEY_FILE), 'utf8');
  if (!new X509Certificate(cert.certPem).checkPrivateKey(createPrivateKey(keyPem))) {
    throw new PushCertError('key-mismatch', `${join(dir, KEY_FILE)} does not belong to ${certFile}: run orchard push-cert import again`);
  }
  return { ...cert, keyPem };
}

const PUSH_BLOB = 'push-certificate';

/**
 * The push certificate the server uses, kept in the store (blob `push-certificate`, key sealed
 * with the material key) so every replica pushes with it. `orchard push-cert import` writes
 * `<dataDir>/push/`; a server finding a certificate there that the store does not hold (a first
 * start after an upgrade, or a new import) puts it into the store at start.
 */
export async function openStoredPushCredentials(
  store: Pick<MaterialStore, 'getMaterial' | 'putMaterial'>,
  sealer: Sealer,
  dataDir: string,
): Promise<PushCredentials | undefined> {
  const pairs = new SealedPairs(store, sealer);
  const fromFiles = readStoredPushCredentials(dataDir);
  const stored = await pairs.get(PUSH_BLOB);
  if (fromFiles && stored?.certPem !== fromFiles.certPem) {
    await pairs.put(PUSH_BLOB, { certPem: fromFiles.certPem, keyPem: fromFiles.keyPem! });
    return fromFiles;
  }
  if (!stored) return undefined;
  return { ...parsePushCertificate(stored.certPem), keyPem: stored.keyPem };
}

export interface ImportOptions extends LoadOptions {
  /** Accept a different topic than the stored one, or an expired certificate. */
  force?: boolean;
  now?: Date;
}

export interface ImportResult {
  cert: PushCredentials;
  expiry: ExpiryState;
  /** The topic that was stored before, when there was one. */
  previousTopic?: string;
  /** True when the topic differs from the previous one (only with force). */
  topicChanged: boolean;
  certFile: string;
  keyFile: string;
}

/**
 * Check and store a push certificate under `<dataDir>/push/` (key mode 0600). Refuses, unless
 * `force`, a topic that differs from the stored one and an expired certificate.
 */
export function importPushCertificate(dataDir: string, certPath: string, keyPath: string | undefined, opts: ImportOptions = {}): ImportResult {
  const read = (p: string) => {
    try {
      return readFileSync(p);
    } catch (err) {
      throw new PushCertError('unreadable', `cannot read ${p}: ${(err as Error).message}`);
    }
  };
  const cert = loadPushCredentials(read(certPath), keyPath ? read(keyPath) : undefined, opts);
  const expiry = expiryState(cert.notAfter, opts.now);
  let previousTopic: string | undefined;
  try {
    previousTopic = readStoredPushCredentials(dataDir)?.topic;
  } catch {
    // An unreadable stored certificate is being replaced: nothing to compare against.
  }
  const topicChanged = previousTopic !== undefined && previousTopic !== cert.topic;
  if (topicChanged && !opts.force) {
    throw new PushCertError(
      'topic-changed',
      `the new certificate's topic ${cert.topic} differs from the current ${previousTopic}: every enrolled device would be lost (renew the existing certificate at identity.apple.com instead, or pass --force)`,
    );
  }
  if (expiry.expired && !opts.force) {
    throw new PushCertError(
      'expired',
      `the certificate expired on ${cert.notAfter.toISOString()}: no push would be accepted (pass --force to store it anyway)`,
    );
  }
  const dir = pushDir(dataDir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const certFile = join(dir, CERT_FILE);
  const keyFile = join(dir, KEY_FILE);
  // Each file is replaced by rename, so neither is ever half-written; a crash between the two
  // renames is caught by readStoredPushCredentials' key check.
  writeAtomic(keyFile, cert.keyPem!, 0o600);
  writeAtomic(certFile, cert.certPem, 0o644);
  return { cert, expiry, previousTopic, topicChanged, certFile, keyFile };
}
