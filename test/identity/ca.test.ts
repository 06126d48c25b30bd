import { X509Certificate, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCA, createDeviceIdentity, issueCertificate, loadCertifiedKey, type CertifiedKey } from '../../src/identity/ca.js';
import { openssl, opensslCa, tempDir } from './openssl.js';

describe('ca', () => {
  const tmp = tempDir();
  let ca: CertifiedKey;

  beforeAll(() => {
    ca = createCA({ commonName: 'Orchard CA Test', organization: 'Orchard', days: 30 });
    writeFileSync(join(tmp.dir, 'ca.pem'), ca.certPem);
  });
  afterAll(() => tmp.cleanup());

  function text(pem: string): string {
    writeFileSync(join(tmp.dir, 'x.pem'), pem);
    return openssl(['x509', '-in', 'x.pem', '-noout', '-text'], tmp.dir).toString();
  }

  function opensslVerify(pem: string, untrusted?: string): string {
    writeFileSync(join(tmp.dir, 'leaf.pem'), pem);
    const args = ['verify', '-CAfile', 'ca.pem'];
    if (untrusted) {
      writeFileSync(join(tmp.dir, 'untrusted.pem'), untrusted);
      args.push('-untrusted', 'untrusted.pem');
    }
    try {
      return openssl([...args, 'leaf.pem'], tmp.dir).toString();
    } catch (err) {
      return String((err as { stdout?: Buffer }).stdout ?? err);
    }
  }

  it('createCA: self-signed CA with CA:TRUE, keyCertSign/cRLSign and a key identifier', () => {
    const t = text(ca.certPem);
    expect(t).toMatch(/Subject: O\s?=\s?Orchard, CN\s?=\s?Orchard CA Test/);
    expect(t).toMatch(/Basic Constraints: critical\s+CA:TRUE/);
    expect(t).toMatch(/Key Usage: critical\s+Certificate Sign, CRL Sign/);
    expect(t).toContain('X509v3 Subject Key Identifier');
    expect(t).toContain('sha256WithRSAEncryption');
    expect(t).toContain('Public-Key: (2048 bit)');
    const x = new X509Certificate(ca.certDer);
    expect(x.ca).toBe(true);
    expect(x.verify(x.publicKey)).toBe(true);
    expect(x.checkPrivateKey(ca.key)).toBe(true);
    expect(Date.parse(x.validTo) - Date.parse(x.validFrom)).toBe(30 * 86_400_000);
    expect(new X509Certificate(ca.certPem).raw.equals(ca.certDer)).toBe(true);
    expect(ca.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
  });

  it('createDeviceIdentity: openssl verifies it against the CA; clientAuth, AKI = CA SKI', () => {
    const dev = createDeviceIdentity(ca, 'device-001');
    expect(opensslVerify(dev.certPem)).toContain('leaf.pem: OK');
    const t = text(dev.certPem);
    expect(t).toMatch(/Subject: CN\s?=\s?device-001/);
    expect(t).toMatch(/Key Usage: critical\s+Digital Signature, Key Encipherment/);
    expect(t).toMatch(/Extended Key Usage:\s+TLS Web Client Authentication/);
    const caSki = /Subject Key Identifier:\s+([0-9A-F:]+)/.exec(text(ca.certPem))![1];
    expect(t).toMatch(new RegExp(`Authority Key Identifier:\\s+(keyid:)?${caSki}`));
    expect(new X509Certificate(dev.certDer).checkPrivateKey(dev.key)).toBe(true);
    expect(new X509Certificate(dev.certDer).ca).toBe(false);
  });

  it('issueCertificate: random positive serials, explicit serial, empty subject, validity, serverAuth', () => {
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const serials = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const x = new X509Certificate(issueCertificate(ca, { publicKey, commonName: 'x' }).certDer);
      expect(parseInt(x.serialNumber.slice(0, 1), 16)).toBeLessThan(8);
      serials.add(x.serialNumber);
    }
    expect(serials.size).toBe(20);

    const notBefore = new Date('2030-01-02T03:04:05Z');
    const notAfter = new Date('2031-01-02T03:04:05Z');
    const c = issueCertificate(ca, { publicKey, subject: [], serial: 'ff01', notBefore, notAfter, extKeyUsage: ['serverAuth', 'clientAuth'] });
    const x = new X509Certificate(c.certDer);
    expect(x.subject ?? '').toBe(''); // node reports an empty name as undefined
    expect(x.serialNumber).toBe('FF01');
    expect(c.certDer.includes(Buffer.from('020300ff01', 'hex'))).toBe(true); // positive INTEGER 0x00FF01
    expect(new Date(x.validFrom).toISOString()).toBe(notBefore.toISOString());
    expect(new Date(x.validTo).toISOString()).toBe(notAfter.toISOString());
    expect(text(c.certPem)).toMatch(/TLS Web Server Authentication, TLS Web Client Authentication/);
    expect(x.verify(createPublicKey(ca.key))).toBe(true);

    const named = new X509Certificate(
      issueCertificate(ca, {
        publicKey,
        subject: [
          { name: 'O', value: 'Example Org' },
          { name: 'commonName', value: 'dev_ü' },
          { name: '2.5.4.11', value: 'Unit' },
        ],
      }).certDer,
    );
    expect(named.subject.split('\n')).toEqual(['O=Example Org', 'CN=dev_ü', 'OU=Unit']);
  });

  it('issues for EC subject keys', () => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const c = issueCertificate(ca, { publicKey, commonName: 'ec' });
    expect(opensslVerify(c.certPem)).toContain('leaf.pem: OK');
    expect(new X509Certificate(c.certDer).publicKey.asymmetricKeyType).toBe('ec');
  });

  it('intermediate CA (createCA with issuer): openssl verifies the chain', () => {
    const inter = createCA({ commonName: 'Orchard Intermediate', issuer: ca });
    const leaf = createDeviceIdentity(inter, 'leaf', { key: ca.key });
    expect(new X509Certificate(inter.certDer).issuer).toBe(new X509Certificate(ca.certDer).subject);
    expect(opensslVerify(leaf.certPem, inter.certPem)).toContain('leaf.pem: OK');
    expect(opensslVerify(leaf.certPem)).not.toContain('leaf.pem: OK');
  });

  it('loadCertifiedKey: loads an openssl CA and issues from it; refuses a mismatched key', () => {
    const o = opensslCa(tmp.dir, 'load-ca');
    const loaded = loadCertifiedKey(readFileSync(o.cert, 'utf8'), readFileSync(o.key, 'utf8'));
    const dev = createDeviceIdentity(loaded, 'from-openssl-ca', { key: ca.key });
    // Issuer name copied byte for byte from the CA's subject.
    expect(dev.certDer.includes(Buffer.from('load-ca'))).toBe(true);
    writeFileSync(join(tmp.dir, 'ca2.pem'), readFileSync(o.cert));
    writeFileSync(join(tmp.dir, 'leaf2.pem'), dev.certPem);
    expect(openssl(['verify', '-CAfile', 'ca2.pem', 'leaf2.pem'], tmp.dir).toString()).toContain('OK');
    expect(() => loadCertifiedKey(readFileSync(o.cert, 'utf8'), ca.keyPem)).toThrow(/does not match/);
  });
});
