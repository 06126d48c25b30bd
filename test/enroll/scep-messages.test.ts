/**
 * SCEP building blocks against independent peers: the real PKCSReq vector (micromdm/scep),
 * openssl for EnvelopedData and CSRs, and our server answering the vector.
 */
import { X509Certificate, constants, createPrivateKey, generateKeyPairSync, publicEncrypt } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCA, createDeviceIdentity } from '../../src/identity/ca.js';
import { ScepAuthority } from '../../src/enroll/authority.js';
import { decryptKeyPkcs1, EnvelopeError, openEnvelope, readEnvelope, sealEnvelope, type ContentCipher } from '../../src/asn1/enveloped-data.js';
import { buildCsr, CsrError, parseCsr, selfSignedCertificate } from '../../src/asn1/csr.js';
import { buildRequest, parsePkiMessage, readCertRep } from '../../src/enroll/scep.js';
import { checkSignature, SignatureError } from '../../src/asn1/signed-data.js';
import * as fc from 'fast-check';
import { algorithm, ctx, ctxPrim, int, NULL, octets, oid, seq, set } from '../../src/asn1/der.js';
import { id_data } from '../../src/asn1/oids.js';
import { buildPkiMessage } from '../../src/enroll/scep.js';
import { id_envelopedData } from '../../src/asn1/enveloped-data.js';
import { mutations } from '../fuzz/harness.js';
import { opensslPki, type OpensslPki } from '../helpers/openssl.js';
import { openssl, startEnrollServer, tempDir, VECTORS, type EnrollServer } from './helpers.js';

const vector = readFileSync(join(VECTORS, 'scep/PKCSReq.der'));

describe('the real PKCSReq vector (micromdm/scep)', () => {
  it('parses: messageType, transactionID, senderNonce, SHA-1, and its signature verifies', () => {
    const msg = parsePkiMessage(vector);
    expect(msg.messageType).toBe('PKCSReq');
    expect(msg.transactionId).toBe('A13090761A30F66664F85D37433D2065E1112BA1');
    expect(msg.senderNonce?.toString('hex')).toBe('ae7fe8816cc6bedd');
    expect(msg.digest).toBe('sha1');
    const { signerCert } = checkSignature(msg.signed);
    expect(new X509Certificate(signerCert).subject).toContain('CN=MDM SCEP SIGNER');
    const env = readEnvelope(msg.envelope!);
    expect(env.cipher).toBe('des-ede3-cbc');
    expect(env.recipients).toHaveLength(1);
    expect(env.recipients[0]!.keyAlgorithm).toBe('1.2.840.113549.1.1.1');
  });

  it('a changed byte of the signed content fails the signature check', () => {
    const bad = Buffer.from(vector);
    bad[200] = bad[200]! ^ 0x01; // inside the encapsulated EnvelopedData
    const msg = parsePkiMessage(bad);
    expect(() => checkSignature(msg.signed)).toThrow(SignatureError);
  });

  it('our server answers it with a signed CertRep FAILURE (it is encrypted to another CA), echoing the transaction', async () => {
    const server: EnrollServer = await startEnrollServer({ staticChallenge: 'x' });
    try {
      const res = await fetch(`${server.url}/scep?operation=PKIOperation`, { method: 'POST', body: new Uint8Array(vector) });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/x-pki-message');
      const rep = parsePkiMessage(Buffer.from(await res.arrayBuffer()));
      const { signerCert } = checkSignature(rep.signed);
      expect(signerCert.equals(server.enroll.caStore.ca.certDer)).toBe(true);
      expect(rep.messageType).toBe('CertRep');
      expect(rep.pkiStatus).toBe('FAILURE');
      expect(rep.failInfo).toBe('badRequest');
      expect(rep.transactionId).toBe('A13090761A30F66664F85D37433D2065E1112BA1');
      expect(rep.recipientNonce?.toString('hex')).toBe('ae7fe8816cc6bedd');
      expect(rep.senderNonce).toHaveLength(16);
      expect(rep.envelope).toBeUndefined();
      expect(server.logs.some((l) => l.path === '/scep' && /PKCSReq FAILURE badRequest: not encrypted to this certificate/.test(String(l.outcome)))).toBe(true);
      // Garbage is not a SCEP message: a plain 400.
      const junk = await fetch(`${server.url}/scep?operation=PKIOperation`, { method: 'POST', body: new Uint8Array([0x30, 0x03, 1, 2, 3]) });
      expect(junk.status).toBe(400);
    } finally {
      await server.stop();
    }
  });
});

describe('EnvelopedData against openssl cms', () => {
  const tmp = tempDir();
  let pki: OpensslPki;
  let cert: { cert: string; key: string };
  let certDer: Buffer;
  const content = Buffer.from('a CSR would be here; any bytes will do \u00e9\u0000\u00ff');
  const legacy = ['-provider', 'legacy', '-provider', 'default'];

  beforeAll(() => {
    pki = opensslPki('Envelope CA');
    cert = pki.issue('recipient');
    certDer = new X509Certificate(readFileSync(cert.cert)).raw;
  });

  const ciphers: [ContentCipher, string][] = [
    ['aes-128-cbc', '-aes128'],
    ['aes-192-cbc', '-aes192'],
    ['aes-256-cbc', '-aes256'],
    ['des-ede3-cbc', '-des3'],
    ['des-cbc', '-des'],
  ];

  it.each(ciphers)('%s: openssl decrypts what we seal', (cipher) => {
    const der = sealEnvelope(content, certDer, cipher);
    const file = join(tmp, `sealed-${cipher}.der`);
    writeFileSync(file, der);
    const r = openssl([
      'cms',
      '-decrypt',
      '-inform',
      'DER',
      '-in',
      file,
      '-recip',
      cert.cert,
      '-inkey',
      cert.key,
      '-binary',
      ...(cipher === 'des-cbc' ? legacy : []),
    ]);
    expect(r.stderr).toBe('');
    expect(r.stdout.equals(content)).toBe(true);
  });

  it.each(ciphers)('%s: we decrypt what openssl seals', (cipher, flag) => {
    const file = join(tmp, `in-${cipher}`);
    writeFileSync(file, content);
    const r = openssl(['cms', '-encrypt', '-binary', '-in', file, '-outform', 'DER', flag, ...(cipher === 'des-cbc' ? legacy : []), cert.cert]);
    expect(r.code).toBe(0);
    const opened = openEnvelope(r.stdout, { certDer, key: createPrivateKey(readFileSync(cert.key)) });
    expect(opened.cipher).toBe(cipher);
    expect(opened.content.equals(content)).toBe(true);
  });

  it('the wrong key fails as a decryption failure, not an RSA padding error; another recipient is named as such', () => {
    const der = sealEnvelope(content, certDer);
    const wrongKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    let err: unknown;
    try {
      openEnvelope(der, { certDer, key: wrongKey });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(EnvelopeError);
    expect((err as EnvelopeError).problem).toBe('decrypt');
    const other = new X509Certificate(readFileSync(pki.issue('other').cert)).raw;
    expect(() => openEnvelope(der, { certDer: other, key: wrongKey })).toThrow(/not encrypted to this certificate/);
  });

  it('PKCS#1 v1.5 key unwrap: the real key when the padding is good, a stable synthetic key when it is not', () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const cek = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
    const wrapped = publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_PADDING }, cek);
    expect(decryptKeyPkcs1(privateKey, wrapped, 16).equals(cek)).toBe(true);
    // Right padding, wrong length expected: no error, a synthetic key, the same one each time.
    const s1 = decryptKeyPkcs1(privateKey, wrapped, 24);
    expect(s1).toHaveLength(24);
    expect(decryptKeyPkcs1(privateKey, wrapped, 24).equals(s1)).toBe(true);
    const garbage = Buffer.alloc(256, 7);
    expect(decryptKeyPkcs1(privateKey, garbage, 16)).toHaveLength(16);
    expect(decryptKeyPkcs1(privateKey, Buffer.alloc(10), 16)).toHaveLength(16);
  });
});

describe('PKCS#10 requests', () => {
  const tmp = tempDir();

  it('reads an openssl CSR: subject, challenge password, proof of possession', () => {
    const conf = join(tmp, 'req.cnf');
    writeFileSync(
      conf,
      '[req]\ndistinguished_name=dn\nattributes=attrs\nprompt=no\n[dn]\nO=Example\nCN=device 1\n[attrs]\nchallengePassword=s3cret-Ch4llenge\n',
    );
    const r = openssl(['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(tmp, 'k.pem'), '-config', conf, '-outform', 'DER']);
    expect(r.code).toBe(0);
    const csr = parseCsr(r.stdout);
    expect(csr.challengePassword).toBe('s3cret-Ch4llenge');
    expect(csr.subject).toEqual([
      { name: '2.5.4.10', value: 'Example' },
      { name: '2.5.4.3', value: 'device 1' },
    ]);
    expect(csr.publicKey.asymmetricKeyType).toBe('rsa');
    const bad = Buffer.from(r.stdout);
    bad[bad.length - 5] = bad[bad.length - 5]! ^ 0xff; // the signature
    expect(() => parseCsr(bad)).toThrow(CsrError);
  });

  it('what we build, openssl verifies and reads (challenge included); our self-signed certificate is valid X.509', () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const der = buildCsr({
      key: privateKey,
      subject: [
        ['O', 'Orchard'],
        ['CN', 'Orchard MDM identity'],
      ],
      challengePassword: 'abc123',
    });
    const file = join(tmp, 'ours.der');
    writeFileSync(file, der);
    const r = openssl(['req', '-in', file, '-inform', 'DER', '-verify', '-noout', '-text']);
    expect(r.code).toBe(0);
    expect(r.stdout.toString()).toMatch(/challengePassword\s*:\s*abc123/);
    expect(r.stdout.toString()).toMatch(/Subject: O\s?=\s?Orchard, CN\s?=\s?Orchard MDM identity/);
    expect(parseCsr(der).challengePassword).toBe('abc123');
    const self = new X509Certificate(selfSignedCertificate(privateKey, [['CN', 'SCEP SIGNER']]));
    expect(self.verify(self.publicKey)).toBe(true);
    expect(self.checkPrivateKey(privateKey)).toBe(true);
  });
});

describe('ScepAuthority without HTTP', () => {
  it('issues for a good challenge (3DES in, 3DES out), refuses a bad one, and a retried transaction gets the same certificate', () => {
    const ca = createCA({ commonName: 'Authority Test CA' });
    const used = new Set<string>();
    const authority = new ScepAuthority({
      ca,
      challenges: { consume: (c) => (c === 'one-time-1' && !used.has(c) ? (used.add(c), 'one-time') : undefined) },
    });
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const signer = { certDer: selfSignedCertificate(privateKey, [['CN', 'dev']]), key: privateKey };
    const csr = buildCsr({ key: privateKey, subject: [['CN', 'dev']], challengePassword: 'one-time-1' });
    const req = buildRequest({ messageType: 'PKCSReq', csr, signer, recipient: ca.certDer, cipher: 'des-ede3-cbc', digest: 'sha1' });
    const res = authority.pkiOperation(req.der);
    const rep = readCertRep(res.body, req, ca.certDer, signer);
    expect(rep.status).toBe('SUCCESS');
    expect(readEnvelope(parsePkiMessage(res.body).envelope!).cipher).toBe('des-ede3-cbc');
    expect(parsePkiMessage(res.body).digest).toBe('sha1');
    const issued = new X509Certificate(rep.certificates[0]!);
    expect(issued.checkIssued(new X509Certificate(ca.certDer))).toBe(true);
    expect(issued.checkPrivateKey(privateKey)).toBe(true);

    // The same request again (a lost reply): same certificate, although the challenge is used up.
    const again = readCertRep(authority.pkiOperation(req.der).body, req, ca.certDer, signer);
    expect(again.certificates[0]!.equals(rep.certificates[0]!)).toBe(true);
    // A new transaction with the used challenge fails.
    const req2 = buildRequest({ messageType: 'PKCSReq', csr, signer, recipient: ca.certDer });
    const rep2 = readCertRep(authority.pkiOperation(req2.der).body, req2, ca.certDer, signer);
    expect(rep2).toMatchObject({ status: 'FAILURE', failInfo: 'badRequest' });

    // A RenewalReq signed by a certificate of another CA is refused.
    const foreign = createDeviceIdentity(createCA({ commonName: 'Foreign' }), 'x');
    const req3 = buildRequest({
      messageType: 'RenewalReq',
      csr: buildCsr({ key: foreign.key, subject: [['CN', 'x']] }),
      signer: foreign,
      recipient: ca.certDer,
    });
    expect(readCertRep(authority.pkiOperation(req3.der).body, req3, ca.certDer, foreign)).toMatchObject({ status: 'FAILURE', failInfo: 'badMessageCheck' });
  });
});

describe('a PKCSReq signed with an EC key', () => {
  it('is a CertRep FAILURE badAlg before anything is issued (the reply is encrypted to the signer key, which needs RSA); the challenge stays usable', () => {
    const ca = createCA({ commonName: 'Authority Test CA' });
    const used = new Set<string>();
    const authority = new ScepAuthority({
      ca,
      challenges: { consume: (c) => (c === 'one-time-ec' && !used.has(c) ? (used.add(c), 'one-time') : undefined) },
    });
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const ecSigner = { certDer: selfSignedCertificate(ec, [['CN', 'ec-dev']]), key: ec };
    const ecReq = buildRequest({
      messageType: 'PKCSReq',
      csr: buildCsr({ key: ec, subject: [['CN', 'ec-dev']], challengePassword: 'one-time-ec' }),
      signer: ecSigner,
      recipient: ca.certDer,
    });
    const res = authority.pkiOperation(ecReq.der);
    expect(readCertRep(res.body, ecReq, ca.certDer, ecSigner)).toMatchObject({ status: 'FAILURE', failInfo: 'badAlg' });
    expect(used.size).toBe(0);

    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const signer = { certDer: selfSignedCertificate(privateKey, [['CN', 'dev']]), key: privateKey };
    const req = buildRequest({
      messageType: 'PKCSReq',
      csr: buildCsr({ key: privateKey, subject: [['CN', 'dev']], challengePassword: 'one-time-ec' }),
      signer,
      recipient: ca.certDer,
    });
    expect(readCertRep(authority.pkiOperation(req.der).body, req, ca.certDer, signer).status).toBe('SUCCESS');
  });
});

describe('PKIOperation bodies that are not what they should be, against a real server', () => {
  let server: EnrollServer;
  beforeAll(async () => {
    server = await startEnrollServer({ staticChallenge: 'x' });
  });
  afterAll(async () => {
    await server.stop();
  });
  const post = async (body: Buffer) => {
    const res = await fetch(`${server.url}/scep?operation=PKIOperation`, { method: 'POST', body: new Uint8Array(body) });
    return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
  };

  it('a signed request whose envelope names its recipient unreadably ([0] holding an OID): a CertRep FAILURE, not a 500', async () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const signer = { certDer: selfSignedCertificate(privateKey, [['CN', 'odd recipient']]), key: privateKey };
    const ktri = seq(int(2), ctx(0, oid('1.2.3')), algorithm('1.2.840.113549.1.1.1', NULL), octets(Buffer.alloc(256, 1)));
    const eci = seq(oid(id_data), algorithm('2.16.840.1.101.3.4.1.2', octets(Buffer.alloc(16))), ctxPrim(0, Buffer.alloc(16)));
    const envelope = seq(oid(id_envelopedData), ctx(0, seq(int(2), set(ktri), eci)));
    const der = buildPkiMessage({ messageType: 'PKCSReq', transactionId: 'ODD-RID', senderNonce: Buffer.alloc(16, 2), envelope, signer });
    const res = await post(der);
    expect(res.status).toBe(200);
    const rep = parsePkiMessage(res.body);
    expect(rep).toMatchObject({ messageType: 'CertRep', pkiStatus: 'FAILURE', failInfo: 'badRequest', transactionId: 'ODD-RID' });
    expect(rep.failInfoText).toBe('not encrypted to this certificate');
  });

  it('garbage, and 300 mutations of the real PKCSReq vector (by POST and GET): a CertRep or a 400, never 5xx or 401', async () => {
    const bodies = [
      Buffer.alloc(0),
      Buffer.from('GAFB', 'base64'),
      Buffer.from([0x30, 0x80]),
      Buffer.from('not base64 at all \u00e9'),
      ...fc.sample(mutations([vector]), { numRuns: 300, seed: 11 }).map((m) => m.bytes),
    ];
    const statuses = new Map<number, number>();
    for (const [i, body] of bodies.entries()) {
      const res =
        i % 4 === 3
          ? await fetch(`${server.url}/scep?operation=PKIOperation&message=${encodeURIComponent(body.toString('base64'))}`).then(async (r) => ({
              status: r.status,
              body: Buffer.from(await r.arrayBuffer()),
            }))
          : await post(body);
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      if (res.status === 200) expect(parsePkiMessage(res.body).messageType).toBe('CertRep');
      else expect(res.status).toBe(400);
    }
    // Both kinds of answer happen: the mutations reach past the outer decoding.
    expect(statuses.get(400)).toBeGreaterThan(0);
    expect(statuses.get(200)).toBeGreaterThan(0);
    expect(server.logs.filter((l) => l.path === '/scep' && (l.status ?? 0) >= 500)).toEqual([]);
  });
});
