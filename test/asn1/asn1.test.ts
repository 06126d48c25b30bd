/**
 * The one ASN.1 layer (src/asn1/) against openssl as the independent peer: S/MIME and CMS
 * EnvelopedData decrypted with a key and its certificate (how Apple delivers an ABM server token),
 * certificates and CSRs built here read by openssl, certificates made by openssl read here, PEM.
 */
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { certificateFields, nameAttributes } from '../../src/asn1/certificate.js';
import { buildCsr, parseCsr, selfSignedCertificate } from '../../src/asn1/csr.js';
import { decryptSmime, EnvelopeError } from '../../src/asn1/enveloped-data.js';
import { isPem, pemBlocks, pemToDer, toPem } from '../../src/asn1/pem.js';
import { createCA, issueCertificate } from '../../src/identity/ca.js';
import { openssl, opensslCa, opensslDevice, pemFileToDer, tempDir } from '../identity/openssl.js';

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error('did not throw');
}

describe('decryptSmime: an S/MIME or CMS EnvelopedData made by openssl', () => {
  const tmp = tempDir();
  const token = Buffer.from(
    'Content-Type: text/plain;charset=UTF-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n-----BEGIN MESSAGE-----\n{"consumer_key":"CK_1","access_secret":"AS_2"}\n-----END MESSAGE-----\n',
  );
  let recipient: { certDer: Buffer; key: ReturnType<typeof createPrivateKey> };
  let certFile: string;
  let plain: string;

  beforeAll(() => {
    const ca = opensslCa(tmp.dir, 'smime-ca');
    const dev = opensslDevice(tmp.dir, ca, 'abm-server');
    certFile = dev.cert;
    recipient = { certDer: pemFileToDer(dev.cert), key: createPrivateKey(readFileSync(dev.key)) };
    plain = join(tmp.dir, 'token.txt');
    writeFileSync(plain, token);
  });
  afterAll(() => tmp.cleanup());

  const encrypt = (args: string[]): Buffer => openssl(args, tmp.dir);

  it('openssl smime -encrypt (the .p7m as Apple sends it: MIME headers, base64), AES-256 and 3DES', () => {
    for (const cipher of ['-aes256', '-des3']) {
      const p7m = encrypt(['smime', '-encrypt', '-binary', cipher, '-in', plain, certFile]);
      expect(p7m.toString('latin1')).toMatch(/^MIME-Version: 1.0\r?\nContent-Disposition: attachment; filename="smime.p7m"/);
      expect(decryptSmime(p7m, recipient)).toEqual(token);
      expect(decryptSmime(p7m.toString('latin1'), recipient)).toEqual(token);
    }
  });

  it('openssl cms -encrypt as DER and PEM, with PKCS#1 v1.5 and RSAES-OAEP key transport', () => {
    const der = encrypt(['cms', '-encrypt', '-binary', '-aes128', '-outform', 'DER', '-in', plain, certFile]);
    expect(decryptSmime(der, recipient)).toEqual(token);
    const pem = encrypt(['cms', '-encrypt', '-binary', '-aes256', '-outform', 'PEM', '-in', plain, certFile]);
    expect(pem.toString('latin1')).toContain('-----BEGIN CMS-----');
    expect(decryptSmime(pem, recipient)).toEqual(token);
    const oaep = encrypt(['cms', '-encrypt', '-binary', '-aes256', '-recip', certFile, '-keyopt', 'rsa_padding_mode:oaep', '-outform', 'DER', '-in', plain]);
    expect(decryptSmime(oaep, recipient)).toEqual(token);
  });

  it('refuses, as EnvelopeError: another recipient, a wrong key, text that is not S/MIME, a broken body', () => {
    const p7m = encrypt(['smime', '-encrypt', '-binary', '-aes256', '-in', plain, certFile]);
    const other = createCA({ commonName: 'someone else' });
    const notForUs = thrown(() => decryptSmime(p7m, { certDer: other.certDer, key: other.key }));
    expect(notForUs).toBeInstanceOf(EnvelopeError);
    expect((notForUs as EnvelopeError).problem).toBe('recipient');
    // The right certificate with the wrong key: the implicit rejection makes it a failed decryption, not an oracle.
    const wrongKey = thrown(() => decryptSmime(p7m, { certDer: recipient.certDer, key: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey }));
    expect((wrongKey as EnvelopeError).problem).toBe('decrypt');
    for (const junk of [
      'Subject: hello\r\n\r\nnot a p7m',
      'no headers at all',
      'Content-Type: application/pkcs7-mime\nContent-Transfer-Encoding: base64\n\n!!!!',
    ]) {
      const e = thrown(() => decryptSmime(junk, recipient));
      expect(e).toBeInstanceOf(EnvelopeError);
      expect((e as EnvelopeError).problem).toBe('malformed');
    }
    const cut = p7m.toString('latin1').replace(/\r?\n\r?\n([\s\S]{40})[\s\S]*$/, '\n\n$1');
    expect((thrown(() => decryptSmime(cut, recipient)) as EnvelopeError).problem).toBe('malformed');
  });
});

describe('certificates and CSRs built by src/asn1, read by openssl (and the other way round)', () => {
  const tmp = tempDir();
  afterAll(() => tmp.cleanup());

  it('a server certificate with subjectAltName, an EC-signed one, and the fields openssl prints', () => {
    const ca = createCA({ commonName: 'Builder CA', organization: 'Orchard Tests' });
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const cert = issueCertificate(ca, {
      publicKey: privateKey,
      subject: [
        { name: 'CN', value: 'localhost' },
        { name: 'emailAddress', value: 'ops@example.com' },
        { name: 'O', value: 'Ünïcode & Co_' },
      ],
      serial: 'a1b2c3',
      extKeyUsage: ['serverAuth'],
      altNames: { dns: ['localhost'], ip: ['127.0.0.1', '::1'] },
    });
    writeFileSync(join(tmp.dir, 'ca.pem'), ca.certPem);
    writeFileSync(join(tmp.dir, 'leaf.pem'), cert.certPem);
    expect(openssl(['verify', '-CAfile', 'ca.pem', 'leaf.pem'], tmp.dir).toString()).toContain('leaf.pem: OK');
    const text = openssl(['x509', '-in', 'leaf.pem', '-noout', '-text', '-nameopt', 'utf8,sep_comma_plus'], tmp.dir).toString('utf8');
    expect(text).toContain('Serial Number: 10597059 (0xa1b2c3)');
    expect(text).toContain('Subject: CN=localhost,emailAddress=ops@example.com,O=Ünïcode & Co_');
    expect(text).toContain('DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Digital Signature, Key Encipherment/);
    expect(text).toMatch(/X509v3 Extended Key Usage:\s+TLS Web Server Authentication/);
    // The reading side: the same names back, typed as written (IA5String for the address, UTF8String where Printable cannot).
    const fields = certificateFields(cert.certDer);
    expect(nameAttributes(fields.subject)).toEqual([
      { name: '2.5.4.3', value: 'localhost' },
      { name: '1.2.840.113549.1.9.1', value: 'ops@example.com' },
      { name: '2.5.4.10', value: 'Ünïcode & Co_' },
    ]);
    expect(fields.issuer).toEqual(certificateFields(ca.certDer).subject);
    expect(fields.serial.toString('hex')).toBe('00a1b2c3'); // the INTEGER's content: kept positive

    // An EC key signs a self-signed certificate with ecdsa-with-SHA256.
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    writeFileSync(join(tmp.dir, 'ec.pem'), toPem(selfSignedCertificate(ec, [['CN', 'ec requester']])));
    expect(openssl(['x509', '-in', 'ec.pem', '-noout', '-text'], tmp.dir).toString()).toContain('Signature Algorithm: ecdsa-with-SHA256');
    expect(openssl(['verify', '-check_ss_sig', '-partial_chain', '-CAfile', 'ec.pem', 'ec.pem'], tmp.dir).toString()).toContain('OK');
  });

  it('openssl req -verify accepts our CSRs (RSA and EC, with and without a challenge), and parseCsr reads openssl-made ones', () => {
    const keys = [generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey];
    for (const [i, key] of keys.entries()) {
      for (const challengePassword of [undefined, 'pässword with ümlauts', 'plain-secret']) {
        const csr = buildCsr({
          key,
          subject: [
            ['O', 'Orchard'],
            ['CN', `device ${i}`],
          ],
          challengePassword,
        });
        const file = join(tmp.dir, `req${i}.pem`);
        writeFileSync(file, toPem(csr, 'CERTIFICATE REQUEST'));
        const out = openssl(['req', '-in', file, '-verify', '-noout', '-text'], tmp.dir).toString('utf8');
        expect(out).toContain(`Subject: O = Orchard, CN = device ${i}`);
        if (challengePassword === 'plain-secret') expect(out).toMatch(/challengePassword\s*:plain-secret/);
        expect(parseCsr(csr).challengePassword).toBe(challengePassword);
      }
    }
    openssl(
      ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'o.key', '-out', 'o.csr', '-outform', 'DER', '-subj', '/C=DE/CN=from openssl'],
      tmp.dir,
    );
    const parsed = parseCsr(readFileSync(join(tmp.dir, 'o.csr')));
    expect(parsed.subject).toEqual([
      { name: '2.5.4.6', value: 'DE' },
      { name: '2.5.4.3', value: 'from openssl' },
    ]);
    expect(parsed.challengePassword).toBeUndefined();
  });

  it('certificateFields of an openssl certificate: serial, names and key identifier as openssl prints them', () => {
    const ca = opensslCa(tmp.dir, 'fields-ca');
    const dev = opensslDevice(tmp.dir, ca, 'fields-device');
    const der = pemFileToDer(dev.cert);
    const f = certificateFields(der);
    const serial = openssl(['x509', '-in', dev.cert, '-noout', '-serial']).toString().trim().replace('serial=', '');
    expect(BigInt(`0x${f.serial.toString('hex')}`)).toBe(BigInt(`0x${serial}`));
    expect(f.issuer).toEqual(certificateFields(pemFileToDer(ca.cert)).subject);
    const ski = /Subject Key Identifier:\s*\n\s*([0-9A-F:]+)/.exec(openssl(['x509', '-in', ca.cert, '-noout', '-text']).toString())?.[1];
    expect(certificateFields(pemFileToDer(ca.cert)).ski?.toString('hex').toUpperCase()).toBe(ski?.replace(/:/g, ''));
    expect(nameAttributes(f.subject)).toEqual([{ name: '2.5.4.3', value: 'fields-device' }]);
  });
});

describe('PEM', () => {
  it('pemBlocks finds every block of a label, in order; toPem writes 64 columns (openssl reads it: above)', () => {
    const a = createCA({ commonName: 'A' });
    const b = createCA({ commonName: 'B' });
    const bundle = `junk before\n${toPem(a.certDer)}between\n${toPem(b.certDer)}-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n`;
    expect(pemBlocks(bundle)).toEqual([a.certDer, b.certDer]);
    expect(pemBlocks(Buffer.from(bundle))).toEqual([a.certDer, b.certDer]);
    expect(pemToDer(bundle)).toEqual(a.certDer);
    expect(pemBlocks(bundle, 'PRIVATE KEY')).toEqual([Buffer.from('AAAA', 'base64')]);
    expect(isPem(bundle)).toBe(true);
    expect(isPem(a.certDer)).toBe(false);
    expect(() => pemToDer('no block here')).toThrow(/no CERTIFICATE block/);
    expect(
      toPem(a.certDer)
        .split('\n')
        .every((l) => l.length <= 64),
    ).toBe(true);
  });
});
