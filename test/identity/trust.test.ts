import { createHash, createPublicKey, generateKeyPairSync, sign, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCA, createDeviceIdentity, issueCertificate, loadCertifiedKey, type CertifiedKey } from '../../src/identity/ca.js';
import { IdentityError } from '../../src/identity/errors.js';
import { TrustStore } from '../../src/identity/trust.js';
import { algorithm, bitString, ctx, int, NULL, seq, tlv } from '../../src/asn1/der.js';
import { encodeSubject } from '../../src/asn1/csr.js';
import { certificateFields } from '../../src/asn1/certificate.js';
import { openssl, opensslCa, opensslDevice, pemFileToDer, tempDir, type OpensslCa } from './openssl.js';
import { thrown } from '../helpers/thrown.js';

const DAY = 86_400_000;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

const failure = (fn: () => unknown): IdentityError => thrown(IdentityError, fn);

describe('TrustStore', () => {
  const tmp = tempDir();
  let ca: CertifiedKey;
  let device: CertifiedKey;
  let rogueCa: CertifiedKey;
  let osslCa: OpensslCa;

  beforeAll(() => {
    ca = createCA({ commonName: 'Trust Test CA', organization: 'Orchard' });
    device = createDeviceIdentity(ca, 'trusted-device');
    rogueCa = createCA({ commonName: 'Trust Test CA', organization: 'Orchard' }); // same name, other key
    osslCa = opensslCa(tmp.dir, 'trust-openssl-ca');
  });
  afterAll(() => tmp.cleanup());

  it('accepts a certificate from a trusted CA and describes it', () => {
    const store = new TrustStore([ca.certPem]);
    expect(store.size).toBe(1);
    const r = store.check(device.certDer);
    const x = new X509Certificate(device.certDer);
    expect(r).toEqual({
      certHash: sha256(device.certDer),
      issuerHash: sha256(ca.certDer),
      subject: 'CN=trusted-device',
      notAfter: new Date(x.validTo).toISOString().replace('.000Z', 'Z'),
    });
  });

  it('accepts an openssl-made device certificate from an openssl-made CA', () => {
    const store = new TrustStore([readFileSync(osslCa.cert, 'utf8')]);
    for (const opts of [{}, { v1: true }, { ec: true }]) {
      const dev = opensslDevice(tmp.dir, osslCa, `ossl-dev-${Object.keys(opts).join('') || 'v3'}`, opts);
      const der = pemFileToDer(dev.cert);
      const r = store.check(der);
      expect(r.issuerHash).toBe(sha256(pemFileToDer(osslCa.cert)));
      expect(r.subject).toBe(`CN=ossl-dev-${Object.keys(opts).join('') || 'v3'}`);
    }
  });

  it('accepts a certificate with an empty subject (as SCEP device certificates have)', () => {
    const store = new TrustStore([ca.certPem]);
    const cert = issueCertificate(ca, { publicKey: createPublicKey(device.key), subject: [] });
    const r = store.check(cert.certDer);
    expect(r.subject).toBe('');
    expect(r.issuerHash).toBe(sha256(ca.certDer));
  });

  it('refuses a certificate from an untrusted CA, even one with the same name', () => {
    const store = new TrustStore([ca.certPem, readFileSync(osslCa.cert, 'utf8')]);
    const rogue = createDeviceIdentity(rogueCa, 'rogue-device', { key: device.key });
    const e = failure(() => store.check(rogue.certDer));
    expect(e.kind).toBe('identity');
    expect(e.message).toBe('issuer not trusted: O=Orchard, CN=Trust Test CA');
    // Supplying the rogue CA as an "intermediate" does not help: it does not chain to an anchor.
    expect(failure(() => store.check(rogue.certDer, [rogueCa.certDer])).kind).toBe('identity');
    // An empty store trusts nothing.
    expect(failure(() => new TrustStore().check(device.certDer)).kind).toBe('identity');
  });

  it('refuses a certificate whose signature was altered', () => {
    const store = new TrustStore([ca.certPem]);
    const bad = Buffer.from(device.certDer);
    bad[bad.length - 20] = bad[bad.length - 20]! ^ 0x01; // inside the signature BIT STRING
    const e = failure(() => store.check(bad));
    expect(e.kind).toBe('identity');
    expect(e.message).toMatch(/^issuer not trusted/);
  });

  it('refuses an expired certificate', () => {
    const store = new TrustStore([ca.certPem]);
    const expired = createDeviceIdentity(ca, 'expired', {
      key: device.key,
      notBefore: new Date('2024-01-01T00:00:00Z'),
      notAfter: new Date('2025-01-01T00:00:00Z'),
    });
    const e = failure(() => store.check(expired.certDer));
    expect(e.kind).toBe('identity');
    expect(e.message).toBe('certificate expired 2025-01-01T00:00:00Z');
  });

  it('refuses a certificate that is not yet valid', () => {
    const store = new TrustStore([ca.certPem]);
    const future = createDeviceIdentity(ca, 'future', { key: device.key, notBefore: new Date(Date.now() + 10 * DAY) });
    const e = failure(() => store.check(future.certDer));
    expect(e.kind).toBe('identity');
    expect(e.message).toMatch(/^certificate not valid before \d{4}-\d\d-\d\dT/);
  });

  it('re-checks validity against `now` on every call, also for cached chains', () => {
    const store = new TrustStore([ca.certPem]);
    const now = new Date();
    expect(store.check(device.certDer, [], now).certHash).toBe(sha256(device.certDer));
    const later = new Date(now.getTime() + 400 * DAY);
    expect(failure(() => store.check(device.certDer, [], later)).message).toMatch(/^certificate expired /);
    const earlier = new Date(now.getTime() - 400 * DAY);
    expect(failure(() => store.check(device.certDer, [], earlier)).message).toMatch(/not valid before/);
    // And it still passes at `now`.
    expect(store.check(device.certDer, [], now).issuerHash).toBe(sha256(ca.certDer));
  });

  it('refuses a valid certificate whose CA has expired', () => {
    const oldCa = createCA({ commonName: 'Old CA', notBefore: new Date(Date.now() - 30 * DAY), days: 10 });
    const store = new TrustStore([oldCa.certPem]);
    const dev = createDeviceIdentity(oldCa, 'orphan', { key: device.key });
    const e = failure(() => store.check(dev.certDer));
    expect(e.message).toMatch(/^CA certificate CN=Old CA expired /);
  });

  it('follows an intermediate only when it is supplied', () => {
    const intermediate = createCA({ commonName: 'Orchard Intermediate', issuer: ca });
    const leaf = createDeviceIdentity(intermediate, 'via-intermediate', { key: device.key });
    // openssl agrees the chain is sound.
    writeFileSync(join(tmp.dir, 'root.pem'), ca.certPem);
    writeFileSync(join(tmp.dir, 'inter.pem'), intermediate.certPem);
    writeFileSync(join(tmp.dir, 'leaf.pem'), leaf.certPem);
    expect(openssl(['verify', '-CAfile', 'root.pem', '-untrusted', 'inter.pem', 'leaf.pem'], tmp.dir).toString()).toContain('OK');

    const store = new TrustStore([ca.certPem]);
    const e = failure(() => store.check(leaf.certDer));
    expect(e.message).toBe('issuer not trusted: CN=Orchard Intermediate');
    const r = store.check(leaf.certDer, [device.certDer, intermediate.certDer, leaf.certDer]);
    expect(r.issuerHash).toBe(sha256(intermediate.certDer));
    expect(r.subject).toBe('CN=via-intermediate');
  });

  it('does not accept an end-entity certificate as an intermediate', () => {
    // device (CA:false) "issues" a certificate: cryptographically valid, but not a CA.
    const pseudoCa: CertifiedKey = device;
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const child = issueCertificate(pseudoCa, { publicKey, commonName: 'child-of-device' });
    expect(new X509Certificate(child.certDer).verify(createPublicKey(device.key))).toBe(true);
    const store = new TrustStore([ca.certPem]);
    const e = failure(() => store.check(child.certDer, [device.certDer]));
    expect(e.kind).toBe('identity');
    expect(e.message).toBe('issuer not trusted: CN=trusted-device');
  });

  it('does not accept a certificate without CA:TRUE as an intermediate, even without keyUsage', () => {
    // An X.509 v1 certificate has no extensions, so only the missing CA flag can stop it.
    const v1 = opensslDevice(tmp.dir, osslCa, 'v1-pseudo-ca', { v1: true });
    const pseudoCa = loadCertifiedKey(readFileSync(v1.cert, 'utf8'), readFileSync(v1.key, 'utf8'));
    const child = issueCertificate(pseudoCa, { publicKey: createPublicKey(device.key), commonName: 'child-of-v1' });
    expect(new X509Certificate(child.certDer).checkIssued(new X509Certificate(pseudoCa.certDer))).toBe(true);
    const store = new TrustStore([readFileSync(osslCa.cert, 'utf8')]);
    const e = failure(() => store.check(child.certDer, [pseudoCa.certDer]));
    expect(e.kind).toBe('identity');
    expect(e.message).toBe('issuer not trusted: CN=v1-pseudo-ca');
  });

  it('a certificate whose dates OpenSSL cannot read ("Bad time value") is malformed (it was a RangeError: a 500)', () => {
    // Hand-made, as a careless or hostile CA could sign it: openssl will not write such a time.
    const alg = algorithm('1.2.840.113549.1.1.11', NULL);
    const badTime = tlv(0x17, Buffer.from('ZZZZZZZZZZZZZ'));
    const spki = createPublicKey(device.key).export({ type: 'spki', format: 'der' });
    const tbs = seq(ctx(0, int(2)), int(5), alg, certificateFields(ca.certDer).subject, seq(badTime, badTime), encodeSubject([['CN', 'bad-time']]), spki);
    const der = seq(tbs, alg, bitString(sign('sha256', tbs, ca.key)));
    const x = new X509Certificate(der);
    expect(x.validFrom).toBe('Bad time value'); // node reads the certificate, only not its dates
    expect(x.checkIssued(new X509Certificate(ca.certDer)) && x.verify(createPublicKey(ca.key))).toBe(true);
    const e = failure(() => new TrustStore([ca.certPem]).check(der));
    expect(e.kind).toBe('malformed');
    expect(e.message).toBe('certificate has an unreadable validity period');
  });

  it('malformed DER -> malformed', () => {
    const store = new TrustStore([ca.certPem]);
    expect(failure(() => store.check(Buffer.from('not a certificate'))).kind).toBe('malformed');
    expect(failure(() => store.check(device.certDer.subarray(0, 300))).kind).toBe('malformed');
    expect(failure(() => store.check(device.certDer, [Buffer.from([0x30, 0x00])])).kind).toBe('malformed');
    expect(failure(() => store.addCa('no pem here')).kind).toBe('malformed');
  });

  it('fromFiles reads PEM files holding several certificates', () => {
    const bundle = join(tmp.dir, 'bundle.pem');
    writeFileSync(bundle, `# comment\n${ca.certPem}\n${readFileSync(osslCa.cert, 'utf8')}`);
    const single = join(tmp.dir, 'single.pem');
    writeFileSync(single, ca.certPem); // duplicate: counted once
    const store = TrustStore.fromFiles([bundle, single]);
    expect(store.size).toBe(2);
    expect(store.check(device.certDer).issuerHash).toBe(sha256(ca.certDer));
    const dev = opensslDevice(tmp.dir, osslCa, 'bundle-dev');
    expect(store.check(pemFileToDer(dev.cert)).issuerHash).toBe(sha256(pemFileToDer(osslCa.cert)));
  });

  it('addCa makes a previously refused certificate acceptable', () => {
    const store = new TrustStore();
    expect(failure(() => store.check(device.certDer)).kind).toBe('identity');
    store.addCa(ca.certPem);
    expect(store.check(device.certDer).certHash).toBe(sha256(device.certDer));
  });
});
