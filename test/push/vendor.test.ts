/** The way to a push certificate: vendor CSR, vendor-signed push request, import with the request's key. */
import { spawnSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushCertImport, pushCertRequest, pushCertVendorCsr } from '../../src/cli/push-cert.js';
import { pemToDer } from '../../src/asn1/pem.js';
import { createCA, issueCertificate, type CertifiedKey } from '../../src/identity/ca.js';
import { parsePlistDict } from '../../src/protocol/plist.js';
import { UID_OID, readStoredPushCredentials } from '../../src/push/push-cert.js';
import { openssl } from '../helpers/openssl.js';

const DAY = 86_400_000;
let dir: string;
let root: CertifiedKey;
let wwdr: CertifiedKey;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'orchard-vendor-'));
  root = createCA({ commonName: 'Test Apple Root CA', organization: 'Test Apple' });
  wwdr = createCA({ commonName: 'Test Apple Worldwide Developer Relations CA', organization: 'Test Apple', issuer: root });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, data: string | Buffer): string {
  const p = join(dir, name);
  writeFileSync(p, data);
  return p;
}

/** Does `openssl dgst -sha256 -verify` accept `sig` over `data` with the public key in `pubPem`? */
function opensslVerifies(pubPem: string, sig: Buffer, data: Buffer): boolean {
  const name = randomUUID();
  const args = ['dgst', '-sha256', '-verify', file(`${name}.pub`, pubPem), '-signature', file(`${name}.sig`, sig), file(`${name}.bin`, data)];
  try {
    return openssl(args).toString().includes('Verified OK');
  } catch {
    return false;
  }
}

/** The public key (PEM) of a CSR, as openssl reads it. */
function csrPublicKey(csrFile: string, inform: 'PEM' | 'DER' = 'PEM'): string {
  return openssl(['req', '-inform', inform, '-in', csrFile, '-noout', '-pubkey']).toString();
}

/** Apple's side of step 1: a vendor certificate for the CSR's key, from the test WWDR CA. */
function issueVendorCert(csrFile: string, opts: { notBefore?: Date; notAfter?: Date } = {}): string {
  return issueCertificate(wwdr, {
    publicKey: createPublicKey(csrPublicKey(csrFile)),
    subject: [
      { name: 'CN', value: 'MDM Vendor: Orchard Test' },
      { name: 'OU', value: 'ABCDE12345' },
      { name: 'C', value: 'US' },
    ],
    extKeyUsage: ['clientAuth'],
    ...opts,
  }).certPem;
}

/** A data dir with a vendor key and a vendor certificate file (vendor, intermediate, root). */
async function vendorSetup(name: string): Promise<{ dataDir: string; vendorCert: string; vendorCertPem: string }> {
  const dataDir = join(dir, name);
  const made = await pushCertVendorCsr({ dataDir, cn: 'Orchard Test', email: 'admin@example.com', country: 'US' });
  expect(made.exitCode).toBe(0);
  const vendorCertPem = issueVendorCert(join(dataDir, 'push/vendor/vendor.csr'));
  const vendorCert = file(`${name}-vendor.pem`, vendorCertPem + wwdr.certPem + root.certPem);
  return { dataDir, vendorCert, vendorCertPem };
}

interface PushRequestPlist {
  csrDer: Buffer;
  chain: string;
  signature: Buffer;
}

function readRequest(requestFile: string): PushRequestPlist {
  const plist = parsePlistDict(Buffer.from(readFileSync(requestFile, 'utf8'), 'base64'));
  expect(Object.keys(plist).sort()).toEqual(['PushCertCertificateChain', 'PushCertRequestCSR', 'PushCertSignature']);
  return {
    csrDer: Buffer.from(plist.PushCertRequestCSR as string, 'base64'),
    chain: plist.PushCertCertificateChain as string,
    signature: Buffer.from(plist.PushCertSignature as string, 'base64'),
  };
}

describe('orchard push-cert vendor-csr', () => {
  it('writes an RSA-2048 key (0600) and a CSR that openssl verifies, with the subject asked for', async () => {
    const dataDir = join(dir, 'vcsr-1');
    const out = await pushCertVendorCsr({ dataDir, cn: 'Orchard Test Ltd', email: 'admin@example.com', country: 'GB' });
    expect(out.exitCode).toBe(0);
    expect(out.stderr).toBe('');
    expect(out.stdout).toContain('MDM CSR');
    const keyFile = join(dataDir, 'push/vendor/vendor.key');
    const csrFile = join(dataDir, 'push/vendor/vendor.csr');
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    const key = createPrivateKey(readFileSync(keyFile));
    expect(key.asymmetricKeyType).toBe('rsa');
    expect(key.asymmetricKeyDetails?.modulusLength).toBe(2048);

    expect(readFileSync(csrFile, 'utf8')).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----\n/);
    const verify = execOpenssl(['req', '-in', csrFile, '-verify', '-noout']);
    expect(verify).toMatch(/verify OK/i);
    const subject = openssl(['req', '-in', csrFile, '-noout', '-subject', '-nameopt', 'RFC2253']).toString().trim();
    expect(subject).toBe('subject=emailAddress=admin@example.com,CN=Orchard Test Ltd,C=GB');
    const text = openssl(['req', '-in', csrFile, '-noout', '-text']).toString();
    expect(text).toContain('sha256WithRSAEncryption');
    // The CSR is for the key written next to it.
    expect(createPublicKey(csrPublicKey(csrFile)).equals(createPublicKey(key))).toBe(true);
  });

  it('refuses to overwrite an existing vendor key (exit 1) unless --force', async () => {
    const dataDir = join(dir, 'vcsr-2');
    expect((await pushCertVendorCsr({ dataDir, cn: 'Orchard', email: 'a@example.com' })).exitCode).toBe(0);
    const keyFile = join(dataDir, 'push/vendor/vendor.key');
    const before = readFileSync(keyFile);
    const again = await pushCertVendorCsr({ dataDir, cn: 'Orchard', email: 'a@example.com' });
    expect(again.exitCode).toBe(1);
    expect(again.stderr).toMatch(/vendor\.key already exists.*--force/);
    expect(readFileSync(keyFile).equals(before)).toBe(true);

    const forced = await pushCertVendorCsr({ dataDir, cn: 'Orchard', email: 'a@example.com', force: true });
    expect(forced.exitCode).toBe(0);
    expect(forced.stderr).toMatch(/warning: replaced the existing vendor\.key/);
    expect(readFileSync(keyFile).equals(before)).toBe(false);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
  });

  it('writes into --dir when given; a missing --cn/--email or a bad country exits 2 and writes nothing', async () => {
    const out = join(dir, 'vcsr-elsewhere');
    expect((await pushCertVendorCsr({ dataDir: join(dir, 'unused'), dir: out, cn: 'Orchard', email: 'a@example.com' })).exitCode).toBe(0);
    expect(existsSync(join(out, 'vendor.key'))).toBe(true);
    expect(existsSync(join(dir, 'unused'))).toBe(false);

    const dataDir = join(dir, 'vcsr-3');
    expect((await pushCertVendorCsr({ dataDir, cn: 'Orchard' })).exitCode).toBe(2);
    const bad = await pushCertVendorCsr({ dataDir, cn: 'Orchard', email: 'a@example.com', country: 'Britain' });
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/country/);
    expect(existsSync(join(dataDir, 'push/vendor/vendor.key'))).toBe(false);
  });
});

describe('orchard push-cert request', () => {
  it('writes a push key (0600) and the vendor-signed request: CSR, chain and signature openssl accepts', async () => {
    const { dataDir, vendorCert, vendorCertPem } = await vendorSetup('req-1');
    const out = await pushCertRequest({ dataDir, vendorCert });
    expect(out.exitCode).toBe(0);
    expect(out.stderr).toBe('');
    const reqDir = join(dataDir, 'push/request');
    const keyFile = join(reqDir, 'push.key');
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(out.stdout).toContain("push-request.b64: the file Apple's push certificates portal accepts");
    expect(out.stdout).toContain('identity.apple.com');
    expect(out.stdout).toContain(`orchard push-cert import <downloaded .pem> ${keyFile}`);

    const req = readRequest(join(reqDir, 'push-request.b64'));
    // The CSR: valid (openssl), for the push key.
    const csrFile = file('req-1.csr.der', req.csrDer);
    expect(execOpenssl(['req', '-inform', 'DER', '-in', csrFile, '-verify', '-noout'])).toMatch(/verify OK/i);
    expect(createPublicKey(csrPublicKey(csrFile, 'DER')).equals(createPublicKey(readFileSync(keyFile)))).toBe(true);
    // The signature: the vendor certificate's key over the DER CSR, SHA-256.
    const vendorPub = openssl(['x509', '-in', file('req-1-vendor-only.pem', vendorCertPem), '-noout', '-pubkey']).toString();
    expect(opensslVerifies(vendorPub, req.signature, req.csrDer)).toBe(true);
    const tampered = Buffer.from(req.csrDer);
    tampered[tampered.length - 1]! ^= 1;
    expect(opensslVerifies(vendorPub, req.signature, tampered)).toBe(false);
    // The chain: vendor certificate first, then the intermediate and the root.
    const blocks = [...req.chain.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n?/g)].map((m) => pemToDer(m[0]));
    expect(blocks).toHaveLength(3);
    expect(blocks[0]!.equals(pemToDer(vendorCertPem))).toBe(true);
    expect(blocks[1]!.equals(wwdr.certDer)).toBe(true);
    expect(blocks[2]!.equals(root.certDer)).toBe(true);
  });

  it('reuses an existing push key instead of overwriting it', async () => {
    const { dataDir, vendorCert } = await vendorSetup('req-2');
    expect((await pushCertRequest({ dataDir, vendorCert })).stdout).toContain('wrote');
    const keyFile = join(dataDir, 'push/request/push.key');
    const key = readFileSync(keyFile);
    const again = await pushCertRequest({ dataDir, vendorCert });
    expect(again.exitCode).toBe(0);
    expect(again.stdout).toContain('reused the existing push key');
    expect(readFileSync(keyFile).equals(key)).toBe(true);
    const csrFile = file('req-2.csr.der', readRequest(join(dataDir, 'push/request/push-request.b64')).csrDer);
    expect(createPublicKey(csrPublicKey(csrFile, 'DER')).equals(createPublicKey(key))).toBe(true);
  });

  it("says when Apple's intermediate and root are missing from the chain (DER vendor certificate)", async () => {
    const { dataDir, vendorCertPem } = await vendorSetup('req-3');
    const out = await pushCertRequest({ dataDir, vendorCert: file('req-3-vendor.cer', pemToDer(vendorCertPem)) });
    expect(out.exitCode).toBe(0);
    expect(out.stderr).toMatch(/warning: .* lacks Apple's intermediate .* and root/);
    const onlyRootMissing = await pushCertRequest({ dataDir, vendorCert: file('req-3-vendor-wwdr.pem', vendorCertPem + wwdr.certPem) });
    expect(onlyRootMissing.stderr).toMatch(/lacks Apple's root/);
    expect(onlyRootMissing.stderr).not.toMatch(/intermediate/);
    const chain = readRequest(join(dataDir, 'push/request/push-request.b64')).chain;
    expect(chain.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
  });

  it("refuses a vendor key that is not the vendor certificate's (exit 1), writing nothing", async () => {
    const { dataDir, vendorCert } = await vendorSetup('req-4');
    const stranger = file('stranger.key', generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const out = await pushCertRequest({ dataDir, vendorCert, vendorKey: stranger });
    expect(out.exitCode).toBe(1);
    expect(out.stderr).toMatch(/vendor key .*stranger\.key does not belong to any certificate/);
    expect(existsSync(join(dataDir, 'push/request/push-request.b64'))).toBe(false);
    expect(existsSync(join(dataDir, 'push/request/push.key'))).toBe(false);
    // The right key, given explicitly, works.
    expect((await pushCertRequest({ dataDir, vendorCert, vendorKey: join(dataDir, 'push/vendor/vendor.key') })).exitCode).toBe(0);
  });

  it('refuses an expired vendor certificate (exit 1); a missing certificate file exits 2', async () => {
    const { dataDir } = await vendorSetup('req-5');
    const expired = issueVendorCert(join(dataDir, 'push/vendor/vendor.csr'), {
      notBefore: new Date(Date.now() - 400 * DAY),
      notAfter: new Date(Date.now() - DAY),
    });
    const out = await pushCertRequest({ dataDir, vendorCert: file('req-5-expired.pem', expired + wwdr.certPem + root.certPem) });
    expect(out.exitCode).toBe(1);
    expect(out.stderr).toMatch(/vendor certificate expired/);
    expect((await pushCertRequest({ dataDir, vendorCert: join(dir, 'nope.pem') })).exitCode).toBe(2);
  });
});

describe('import after request', () => {
  /** Apple's side of step 2: a push certificate for the push CSR in the request. */
  function issuePushCert(requestFile: string, name: string): { certFile: string; topic: string } {
    const csrFile = file(`${name}.csr.der`, readRequest(requestFile).csrDer);
    const topic = `com.apple.mgmt.External.${randomUUID()}`;
    const { certPem } = issueCertificate(wwdr, {
      publicKey: createPublicKey(csrPublicKey(csrFile, 'DER')),
      subject: [
        { name: UID_OID, value: topic },
        { name: 'CN', value: `APSP:${randomUUID()}` },
        { name: 'C', value: 'US' },
      ],
      extKeyUsage: ['clientAuth'],
    });
    return { certFile: file(`${name}.pem`, certPem), topic };
  }

  it('finds the push key of the request when no key is given', async () => {
    const { dataDir, vendorCert } = await vendorSetup('imp-1');
    expect((await pushCertRequest({ dataDir, vendorCert })).exitCode).toBe(0);
    const { certFile, topic } = issuePushCert(join(dataDir, 'push/request/push-request.b64'), 'imp-1-push');
    const out = await pushCertImport(certFile, undefined, { dataDir });
    expect(out.exitCode).toBe(0);
    expect(out.stdout).toContain(`topic:    ${topic}`);
    expect(out.stdout).toMatch(/key from: .*push\/request\/push\.key/);
    const stored = readStoredPushCredentials(dataDir)!;
    expect(createPrivateKey(stored.keyPem!).equals(createPrivateKey(readFileSync(join(dataDir, 'push/request/push.key'))))).toBe(true);
  });

  it('without a request there is no default key (exit 1); a request key for another certificate is refused', async () => {
    const { dataDir, vendorCert } = await vendorSetup('imp-2');
    const other = await vendorSetup('imp-2-other');
    expect((await pushCertRequest({ dataDir: other.dataDir, vendorCert: other.vendorCert })).exitCode).toBe(0);
    const { certFile } = issuePushCert(join(other.dataDir, 'push/request/push-request.b64'), 'imp-2-push');

    const noKey = await pushCertImport(certFile, undefined, { dataDir });
    expect(noKey.exitCode).toBe(1);
    expect(noKey.stderr).toMatch(/no private key given/);

    expect((await pushCertRequest({ dataDir, vendorCert })).exitCode).toBe(0); // a push key, but not this certificate's
    const mismatch = await pushCertImport(certFile, undefined, { dataDir });
    expect(mismatch.exitCode).toBe(1);
    expect(mismatch.stderr).toMatch(/key from orchard push-cert request .* does not belong to this certificate/);
    expect(readStoredPushCredentials(dataDir)).toBeUndefined();
  });
});

/** openssl's combined output (`req -verify` prints its verdict on stderr); throws when it fails. */
function execOpenssl(args: string[]): string {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
  return `${r.stdout}${r.stderr}`;
}
