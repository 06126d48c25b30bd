import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyDetachedSignature } from '../../src/identity/cms.js';
import { IdentityError } from '../../src/identity/errors.js';
import { opensslCa, opensslCmsSign, opensslDevice, pemFileToDer, signatureValueOffset, tempDir, type OpensslCa } from './openssl.js';
import { thrown } from '../helpers/thrown.js';
import { http, startTestServer, type TestServer } from '../helpers/server.js';

const VECTORS = `${import.meta.dirname}/../fixtures/vectors/mdm-signature`;
const header1 = readFileSync(`${VECTORS}/header1.b64`, 'utf8').trim();
const header2 = readFileSync(`${VECTORS}/header2.b64`, 'utf8').trim();
const body2 = readFileSync(`${VECTORS}/body2.plist`);

const failure = (fn: () => unknown): IdentityError => thrown(IdentityError, fn);

function flip(buf: Buffer, at: number): Buffer {
  const copy = Buffer.from(buf);
  copy[at] = copy[at]! ^ 0x01;
  return copy;
}

describe('verifyDetachedSignature: real device capture', () => {
  it('verifies header2 over body2 (BER, sha1, no signed attributes)', () => {
    const der = Buffer.from(header2, 'base64');
    expect(der.subarray(0, 2).toString('hex')).toBe('3080'); // really the indefinite-length form
    const v = verifyDetachedSignature(header2, body2);
    expect(v.digestAlgorithm).toBe('sha1');
    expect(v.signedAttributes).toBe(false);
    expect(v.certificates).toHaveLength(1);
    expect(v.signerCert.equals(v.certificates[0]!)).toBe(true);
    // The embedded certificate, as openssl sees it: issued by the SCEP CA "ca", empty subject.
    expect(v.signerCert[0]).toBe(0x30);
    expect(v.signerCert.length).toBe(801);
    expect(der.indexOf(v.signerCert)).toBe(52);
  });

  it('rejects every single flipped bit in the body', () => {
    for (let i = 0; i < body2.length; i++) {
      const e = failure(() => verifyDetachedSignature(header2, flip(body2, i)));
      expect(e.kind).toBe('identity');
      expect(e.message).toBe('signature does not match body');
    }
  });

  it('rejects a flipped byte inside the signature value', () => {
    const der = Buffer.from(header2, 'base64');
    // SignerInfo signature: OCTET STRING at offset 956 with a 4-byte header (openssl asn1parse).
    for (const at of [960, 1000, 1100, 1215]) {
      const e = failure(() => verifyDetachedSignature(flip(der, at).toString('base64'), body2));
      expect(e.kind).toBe('identity');
    }
  });

  it('rejects a truncated body and an extra byte', () => {
    expect(failure(() => verifyDetachedSignature(header2, body2.subarray(0, -1))).kind).toBe('identity');
    expect(failure(() => verifyDetachedSignature(header2, Buffer.concat([body2, Buffer.from('\n')]))).kind).toBe('identity');
  });

  it('parses header1; against a body it did not sign it fails as identity, not a crash', () => {
    const e = failure(() => verifyDetachedSignature(header1, body2));
    expect(e.kind).toBe('identity');
    expect(e.message).toBe('signature does not match body');
  });

  it('accepts the header with whitespace/line breaks a proxy may fold in', () => {
    const folded = header2.replace(/.{76}/g, '$&\r\n ');
    expect(verifyDetachedSignature(folded, body2).digestAlgorithm).toBe('sha1');
  });
});

describe('verifyDetachedSignature: malformed input', () => {
  const der = Buffer.from(header2, 'base64');
  const cases: [string, string][] = [
    ['empty', ''],
    ['not base64', '!!! this is not base64 !!!'],
    ['base64 of text', Buffer.from('hello, I am not CMS').toString('base64')],
    ['truncated DER', der.subarray(0, 600).toString('base64')],
    ['only the start', der.subarray(0, 20).toString('base64')],
    ['a certificate, not CMS', der.subarray(52, 52 + 801).toString('base64')],
  ];
  for (const [name, value] of cases) {
    it(`${name} -> malformed`, () => {
      expect(failure(() => verifyDetachedSignature(value, body2)).kind).toBe('malformed');
    });
  }

  // asn1js throws (instead of reporting) on an invalid GeneralizedTime: 18 01 41 is one, and
  // 23 03 18 01 41 wraps it in a constructed BIT STRING. Issue 11 item 4.
  for (const header of ['GAFB', 'IwMYAUE=']) {
    it(`${header} (a value asn1js throws on) -> malformed, keeping the exception as cause`, () => {
      const e = failure(() => verifyDetachedSignature(header, body2));
      expect(e.kind).toBe('malformed');
      expect(e.message).toBe('Mdm-Signature could not be parsed (Error)');
      expect(e.cause).toBeInstanceOf(Error);
    });
  }

  it('a SignedData whose content type is not signedData -> malformed', () => {
    // pkcs7-signedData OID ends in 0x02; make it pkcs7-data (0x01).
    const e = failure(() => verifyDetachedSignature(flip(der, 12).toString('base64'), body2));
    expect(e.kind).toBe('malformed');
  });
});

describe('verifyDetachedSignature: signatures made by openssl cms', () => {
  const tmp = tempDir();
  let ca: OpensslCa;
  let rsa: { cert: string; key: string };
  let rsaV1: { cert: string; key: string };
  let ec: { cert: string; key: string };
  const body = Buffer.from(
    '<?xml version="1.0" encoding="UTF-8"?>\n<plist version="1.0"><dict><key>Status</key><string>Idle</string>' +
      '<key>UDID</key><string>0000FE00-1234-5678-9ABC-DEF012345678</string></dict></plist>\n',
  );

  beforeAll(() => {
    ca = opensslCa(tmp.dir, 'cms-test-ca');
    rsa = opensslDevice(tmp.dir, ca, 'rsa-device');
    rsaV1 = opensslDevice(tmp.dir, ca, 'rsa-v1-device', { v1: true });
    ec = opensslDevice(tmp.dir, ca, 'ec-device', { ec: true });
  });
  afterAll(() => tmp.cleanup());

  const modes: { name: string; signer: () => { cert: string; key: string }; args: string[]; digest: string; attrs: boolean }[] = [
    { name: 'sha1, no attributes (like a device)', signer: () => rsa, args: ['-noattr', '-md', 'sha1'], digest: 'sha1', attrs: false },
    { name: 'default sha256 with signed attributes', signer: () => rsa, args: [], digest: 'sha256', attrs: true },
    { name: 'sha512 with signed attributes', signer: () => rsa, args: ['-md', 'sha512'], digest: 'sha512', attrs: true },
    { name: 'X.509 v1 signer certificate', signer: () => rsaV1, args: ['-noattr', '-md', 'sha1'], digest: 'sha1', attrs: false },
    { name: 'signer identified by subjectKeyIdentifier', signer: () => rsa, args: ['-keyid'], digest: 'sha256', attrs: true },
    { name: 'ECDSA P-256, no attributes', signer: () => ec, args: ['-noattr'], digest: 'sha256', attrs: false },
    { name: 'ECDSA P-256 with signed attributes', signer: () => ec, args: [], digest: 'sha256', attrs: true },
  ];

  for (const m of modes) {
    it(`${m.name}: verifies, and fails when tampered`, () => {
      const der = opensslCmsSign(tmp.dir, body, m.signer(), m.args);
      const sig = der.toString('base64');
      const v = verifyDetachedSignature(sig, body);
      expect(v.digestAlgorithm).toBe(m.digest);
      expect(v.signedAttributes).toBe(m.attrs);
      expect(v.signerCert.equals(pemFileToDer(m.signer().cert))).toBe(true);

      const tampered = failure(() => verifyDetachedSignature(sig, flip(body, 40)));
      expect(tampered.kind).toBe('identity');
      expect(tampered.message).toBe(m.attrs ? 'message digest does not match body' : 'signature does not match body');

      const at = signatureValueOffset(tmp.dir, der) + 10;
      const badSig = failure(() => verifyDetachedSignature(flip(der, at).toString('base64'), body));
      expect(badSig.kind).toBe('identity');
      expect(badSig.message).toBe('signature does not match body');
    });
  }

  it('signed attributes are covered by the signature: a changed signingTime fails', () => {
    const der = opensslCmsSign(tmp.dir, body, rsa, []);
    // UTCTime "YYMMDDHHMMSSZ": flip the last seconds digit inside the signingTime attribute.
    const oid = Buffer.from('06092a864886f70d010905', 'hex'); // id-signingTime
    const at = der.indexOf(oid) + oid.length + 2 /* SET hdr */ + 2 /* UTCTime hdr */ + 11;
    expect(der[at]).toBeGreaterThanOrEqual(0x30);
    const e = failure(() => verifyDetachedSignature(flip(der, at).toString('base64'), body));
    expect(e.kind).toBe('identity');
    expect(e.message).toBe('signature does not match body');
  });

  it('BER indefinite-length output of openssl -stream (content embedded) verifies', () => {
    for (const args of [['-stream', '-noattr', '-md', 'sha1'], ['-indef']]) {
      const der = opensslCmsSign(tmp.dir, body, rsa, args);
      expect(der.subarray(0, 2).toString('hex')).toBe('3080');
      const v = verifyDetachedSignature(der.toString('base64'), body);
      expect(v.signerCert.equals(pemFileToDer(rsa.cert))).toBe(true);
      // The embedded content must be the body we were given...
      const other = failure(() => verifyDetachedSignature(der.toString('base64'), flip(body, 3)));
      expect(other.kind).toBe('identity');
      expect(other.message).toBe('embedded content does not match body');
      // ...and the signature must still hold.
      const at = signatureValueOffset(tmp.dir, der) + 5;
      const e = failure(() => verifyDetachedSignature(flip(der, at).toString('base64'), body));
      expect(e.message).toBe('signature does not match body');
    }
  });

  it('a signature without the signer certificate (-nocerts) is malformed', () => {
    const der = opensslCmsSign(tmp.dir, body, rsa, ['-nocerts']);
    const e = failure(() => verifyDetachedSignature(der.toString('base64'), body));
    expect(e.kind).toBe('malformed');
    expect(e.message).toMatch(/signer certificate not included/);
  });

  it('the embedded certificate decides the key: a changed modulus does not verify', () => {
    const der = opensslCmsSign(tmp.dir, body, rsa, ['-noattr', '-md', 'sha1']);
    const certAt = der.indexOf(pemFileToDer(rsa.cert));
    expect(certAt).toBeGreaterThan(0);
    const rsaAlg = Buffer.from('06092a864886f70d0101010500', 'hex'); // rsaEncryption, NULL
    const modulusByte = der.indexOf(rsaAlg, certAt) + rsaAlg.length + 40;
    const e = failure(() => verifyDetachedSignature(flip(der, modulusByte).toString('base64'), body));
    expect(e.kind).toBe('identity');
    expect(e.message).toBe('signature does not match body');
  });
});

describe('Mdm-Signature that asn1js throws on, against a real server', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(async () => {
    await server.stop();
  });

  for (const header of ['GAFB', 'IwMYAUE=']) {
    it(`${header} on an unsigned body: 400 with the reason logged, never 500 or 401`, async () => {
      const before = server.logs.length;
      const res = await http(`${server.url}/mdm/checkin`, {
        method: 'PUT',
        body: body2,
        headers: { 'content-type': 'application/x-apple-aspen-mdm-checkin', 'mdm-signature': header },
      });
      expect(res.status).toBe(400);
      expect(res.text).toBe('Mdm-Signature could not be parsed (Error)\n');
      const line = server.logs.slice(before).find((l) => l.path === '/mdm/checkin');
      expect(line?.status).toBe(400);
      expect(line?.reason).toBe('Mdm-Signature could not be parsed (Error)');
    });
  }
});
