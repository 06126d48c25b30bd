/** Push certificate reading (PEM, DER, PKCS#12 made by openssl), topic, expiry, import, CLI. */
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushCertImport, pushCertShow } from '../../src/cli/push-cert.js';
import { pemToDer } from '../../src/asn1/pem.js';
import {
  PushCertError,
  expiryState,
  importPushCertificate,
  loadPushCredentials,
  parsePushCertificate,
  readStoredPushCredentials,
} from '../../src/push/push-cert.js';
import { openssl } from '../helpers/openssl.js';
import { makePushCert, type TestPushCert } from './helpers.js';

const VECTOR = join(import.meta.dirname, '../fixtures/vectors/apple-certs/push-expired.pem');
const VECTOR_TOPIC = 'com.apple.mgmt.External.e0bd1eac-1f17-4c8e-8a63-dd17d3dd35d9';

let dir: string;
let cert: TestPushCert;
let certFile: string;
let keyFile: string;
const DAY = 86_400_000;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'orchard-push-cert-'));
  cert = makePushCert();
  certFile = join(dir, 'push.pem');
  keyFile = join(dir, 'push.key');
  writeFileSync(certFile, cert.certPem);
  writeFileSync(keyFile, cert.keyPem);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, data: string | Buffer): string {
  const p = join(dir, name);
  writeFileSync(p, data);
  return p;
}

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof PushCertError) return err.problem;
    throw err;
  }
  return undefined;
}

describe('reading a push certificate', () => {
  it("reads Apple's real (expired) push certificate: topic from the UID, expiry in the past", () => {
    const c = parsePushCertificate(readFileSync(VECTOR));
    expect(c.topic).toBe(VECTOR_TOPIC);
    expect(c.notAfter.toISOString()).toBe('2022-02-10T17:44:47.000Z');
    expect(c.issuer).toContain('Apple Application Integration 2 Certification Authority');
    const e = expiryState(c.notAfter);
    expect(e.expired).toBe(true);
    expect(e.daysLeft).toBeLessThan(0);
    expect(e.warning).toMatch(/expired on 2022-02-10/);
  });

  it('reads DER as well as PEM', () => {
    expect(parsePushCertificate(pemToDer(cert.certPem)).topic).toBe(cert.topic);
  });

  it('refuses a certificate without a UID: it is not a push certificate', () => {
    const plain = makePushCert({ ca: cert.ca, withUid: false });
    expect(code(() => parsePushCertificate(plain.certPem))).toBe('no-topic');
    expect(code(() => parsePushCertificate('not a certificate'))).toBe('unreadable');
  });

  it('loads a PEM certificate with its key, and refuses a key that is not its own', () => {
    const c = loadPushCredentials(Buffer.from(cert.certPem), Buffer.from(cert.keyPem));
    expect(c.topic).toBe(cert.topic);
    expect(createPrivateKey(c.keyPem!).asymmetricKeyType).toBe('rsa');
    const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    expect(code(() => loadPushCredentials(Buffer.from(cert.certPem), Buffer.from(stranger)))).toBe('key-mismatch');
    expect(code(() => loadPushCredentials(Buffer.from(cert.certPem)))).toBe('no-key');
    // Certificate and key in one PEM file.
    expect(loadPushCredentials(Buffer.from(cert.certPem + cert.keyPem)).topic).toBe(cert.topic);
  });

  it('loads an encrypted PEM key with its passphrase', () => {
    const enc = createPrivateKey(cert.keyPem).export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'pw' }).toString();
    expect(loadPushCredentials(Buffer.from(cert.certPem), Buffer.from(enc), { password: 'pw' }).topic).toBe(cert.topic);
    expect(code(() => loadPushCredentials(Buffer.from(cert.certPem), Buffer.from(enc), { password: 'wrong' }))).toBe('unreadable');
  });

  for (const [name, extra] of [
    ['OpenSSL 3 default (AES-256, PBKDF2, SHA-256 MAC)', []],
    ['legacy (RC2-40, 3DES, SHA-1 MAC, as Keychain exports)', ['-legacy']],
  ] as const) {
    it(`reads a PKCS#12 bundle with the issuing chain: ${name}`, () => {
      const caFile = file('ca.pem', cert.ca.certPem);
      const p12 = join(dir, `bundle${extra.length}.p12`);
      openssl(['pkcs12', '-export', ...extra, '-in', certFile, '-inkey', keyFile, '-certfile', caFile, '-out', p12, '-passout', 'pass:s3cret']);
      const c = loadPushCredentials(readFileSync(p12), undefined, { password: 's3cret' });
      expect(c.topic).toBe(cert.topic);
      expect(c.fingerprint256).toBe(parsePushCertificate(cert.certPem).fingerprint256);
      expect(code(() => loadPushCredentials(readFileSync(p12), undefined, { password: 'wrong' }))).toBe('unreadable');
    });
  }
});

describe('expiry', () => {
  const notAfter = new Date('2030-06-01T00:00:00Z');
  it('warns from 30 days before', () => {
    expect(expiryState(notAfter, new Date(notAfter.getTime() - 31 * DAY)).warning).toBeUndefined();
    const at30 = expiryState(notAfter, new Date(notAfter.getTime() - 30 * DAY));
    expect(at30).toMatchObject({ daysLeft: 30, expired: false });
    expect(at30.warning).toMatch(/expires in 30 days \(2030-06-01\)/);
    expect(expiryState(notAfter, new Date(notAfter.getTime() - DAY + 1000)).warning).toMatch(/expires in 0 days/);
    expect(expiryState(notAfter, new Date(notAfter.getTime() + 1000))).toMatchObject({ expired: true });
  });
});

describe('importPushCertificate', () => {
  it('stores the certificate and the key (mode 0600) under <dataDir>/push/', () => {
    const data = join(dir, 'data-first');
    const r = importPushCertificate(data, certFile, keyFile);
    expect(r).toMatchObject({ previousTopic: undefined, topicChanged: false, certFile: join(data, 'push/cert.pem'), keyFile: join(data, 'push/key.pem') });
    expect(statSync(r.keyFile).mode & 0o777).toBe(0o600);
    expect(statSync(join(data, 'push')).mode & 0o077).toBe(0);
    const stored = readStoredPushCredentials(data)!;
    expect(stored.topic).toBe(cert.topic);
    expect(createPrivateKey(stored.keyPem!).equals(createPrivateKey(cert.keyPem))).toBe(true);
  });

  it('accepts a renewal with the same topic, refuses a different topic unless forced', () => {
    const data = join(dir, 'data-renew');
    importPushCertificate(data, certFile, keyFile);
    const renewal = makePushCert({ ca: cert.ca, topic: cert.topic });
    const r = importPushCertificate(data, file('renewal.pem', renewal.certPem), file('renewal.key', renewal.keyPem));
    expect(r).toMatchObject({ previousTopic: cert.topic, topicChanged: false });
    expect(readStoredPushCredentials(data)!.fingerprint256).toBe(r.cert.fingerprint256);

    const other = makePushCert({ ca: cert.ca });
    const otherCert = file('other.pem', other.certPem);
    const otherKey = file('other.key', other.keyPem);
    expect(code(() => importPushCertificate(data, otherCert, otherKey))).toBe('topic-changed');
    expect(readStoredPushCredentials(data)!.fingerprint256).toBe(r.cert.fingerprint256); // unchanged
    const forced = importPushCertificate(data, otherCert, otherKey, { force: true });
    expect(forced).toMatchObject({ previousTopic: cert.topic, topicChanged: true });
    expect(readStoredPushCredentials(data)!.topic).toBe(other.topic);
  });

  it('refuses an expired certificate unless forced', () => {
    const data = join(dir, 'data-expired');
    const old = makePushCert({ ca: cert.ca, notBefore: new Date(Date.now() - 400 * DAY), notAfter: new Date(Date.now() - DAY) });
    const c = file('old.pem', old.certPem);
    const k = file('old.key', old.keyPem);
    expect(code(() => importPushCertificate(data, c, k))).toBe('expired');
    expect(existsSync(join(data, 'push/cert.pem'))).toBe(false);
    expect(importPushCertificate(data, c, k, { force: true }).expiry.expired).toBe(true);
  });
});

describe('orchard push-cert', () => {
  it('import prints the topic and the expiry, and exits 0', async () => {
    const data = join(dir, 'cli-1');
    const out = await pushCertImport(certFile, keyFile, { dataDir: data });
    expect(out.exitCode).toBe(0);
    expect(out.stdout).toContain(`topic:    ${cert.topic}`);
    expect(out.stdout).toMatch(/expires: {2}\d{4}-\d\d-\d\d, in 36[45] days/);
    expect(out.stdout).toContain('first push certificate');
    expect(out.stderr).toBe('');
    expect(out.stdout + out.stderr).not.toContain('PRIVATE KEY');
  });

  it('import warns about a certificate expiring within 30 days', async () => {
    const soon = makePushCert({ ca: cert.ca, notAfter: new Date(Date.now() + 12 * DAY + 60_000) });
    const out = await pushCertImport(file('soon.pem', soon.certPem), file('soon.key', soon.keyPem), { dataDir: join(dir, 'cli-2') });
    expect(out.exitCode).toBe(0);
    expect(out.stderr).toMatch(/warning: push certificate expires in 12 days/);
  });

  it('import refuses a changed topic (exit 1) unless --force, which warns', async () => {
    const data = join(dir, 'cli-3');
    expect((await pushCertImport(certFile, keyFile, { dataDir: data })).exitCode).toBe(0);
    const other = makePushCert({ ca: cert.ca });
    const c = file('cli-other.pem', other.certPem);
    const k = file('cli-other.key', other.keyPem);
    const refused = await pushCertImport(c, k, { dataDir: data });
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toMatch(/differs from the current .*--force/);
    const forced = await pushCertImport(c, k, { dataDir: data, force: true });
    expect(forced.exitCode).toBe(0);
    expect(forced.stderr).toMatch(/topic changed from .* must enroll again/);
    const renewal = await pushCertImport(c, k, { dataDir: data });
    expect(renewal.stdout).toContain('renewal: same topic');
  });

  it('import: a missing file or a wrong PKCS#12 password exits 2; a mismatched key exits 1', async () => {
    expect((await pushCertImport(join(dir, 'missing.pem'), keyFile, { dataDir: join(dir, 'cli-4') })).exitCode).toBe(2);
    const p12 = join(dir, 'cli.p12');
    openssl(['pkcs12', '-export', '-in', certFile, '-inkey', keyFile, '-out', p12, '-passout', 'pass:pw']);
    expect((await pushCertImport(p12, undefined, { dataDir: join(dir, 'cli-4'), password: 'nope' })).exitCode).toBe(2);
    const ok = await pushCertImport(p12, undefined, { dataDir: join(dir, 'cli-4'), password: 'pw' });
    expect(ok.exitCode).toBe(0);
    const other = makePushCert({ ca: cert.ca });
    expect((await pushCertImport(certFile, file('wrong.key', other.keyPem), { dataDir: join(dir, 'cli-5') })).exitCode).toBe(1);
  });

  it("show reads Apple's expired certificate: topic, expiry in the past, exit 1", async () => {
    const out = await pushCertShow(VECTOR, { dataDir: dir });
    expect(out.exitCode).toBe(1);
    expect(out.stdout).toContain(`topic:    ${VECTOR_TOPIC}`);
    expect(out.stdout).toMatch(/expires: {2}2022-02-10, EXPIRED/);
    expect(out.stderr).toMatch(/expired on 2022-02-10/);
  });

  it('show without a file describes the imported certificate', async () => {
    const data = join(dir, 'cli-show');
    expect((await pushCertShow(undefined, { dataDir: data })).exitCode).toBe(1);
    await pushCertImport(certFile, keyFile, { dataDir: data });
    const out = await pushCertShow(undefined, { dataDir: data });
    expect(out.exitCode).toBe(0);
    expect(out.stdout).toContain(cert.topic);
  });
});
