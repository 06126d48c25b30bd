/**
 * verifyDetachedSignature reads common encodings with a small TLV reader and falls back to the
 * asn1js tree for anything else and for every refusal. Whatever the input, both readings must
 * give the same outcome: the same result, or the same refusal.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifiesOnFastPath, verifyDetachedSignature, verifyDetachedSignatureWithoutFastPath } from '../../src/identity/cms.js';
import { opensslCa, opensslCmsSign, opensslDevice, tempDir } from './openssl.js';

const VECTORS = `${import.meta.dirname}/../fixtures/vectors/mdm-signature`;

function outcome(fn: () => unknown): unknown {
  try {
    return { ok: fn() };
  } catch (err) {
    const e = err as { name?: string; kind?: string; message?: string };
    return { error: e.name, kind: e.kind, message: e.message };
  }
}

function same(sig: string, body: Buffer): void {
  expect(outcome(() => verifyDetachedSignature(sig, body))).toEqual(outcome(() => verifyDetachedSignatureWithoutFastPath(sig, body)));
}

describe('Mdm-Signature fast path: the same outcome as the asn1js reading', () => {
  const tmp = tempDir();
  const body = Buffer.from(
    '<?xml version="1.0" encoding="UTF-8"?>\n<plist version="1.0"><dict><key>Status</key><string>Idle</string>' +
      '<key>UDID</key><string>0000FE00-1234-5678-9ABC-DEF012345678</string></dict></plist>\n',
  );
  const cases: { name: string; der: () => Buffer; body: Buffer }[] = [];
  let signers: Record<string, { cert: string; key: string }> = {};

  beforeAll(() => {
    const ca = opensslCa(tmp.dir, 'fast-ca');
    signers = {
      rsa: opensslDevice(tmp.dir, ca, 'fast-rsa'),
      ec: opensslDevice(tmp.dir, ca, 'fast-ec', { ec: true }),
      v1: opensslDevice(tmp.dir, ca, 'fast-v1', { v1: true }),
    };
  });
  afterAll(() => tmp.cleanup());

  const modes: [string, string, string[]][] = [
    ['sha1, no attributes', 'rsa', ['-noattr', '-md', 'sha1']],
    ['sha256, signed attributes', 'rsa', ['-md', 'sha256']],
    ['subjectKeyIdentifier', 'rsa', ['-keyid']],
    ['ECDSA, signed attributes', 'ec', []],
    ['X.509 v1 signer', 'v1', ['-noattr', '-md', 'sha1']],
    ['BER -stream, content embedded', 'rsa', ['-stream', '-noattr', '-md', 'sha1']],
    ['BER -indef', 'rsa', ['-indef']],
  ];
  for (const [name, who, args] of modes) {
    cases.push({ name, der: () => opensslCmsSign(tmp.dir, body, signers[who]!, args), body });
  }
  cases.push({
    name: 'real device capture (BER)',
    der: () => Buffer.from(readFileSync(`${VECTORS}/header2.b64`, 'utf8').trim(), 'base64'),
    body: readFileSync(`${VECTORS}/body2.plist`),
  });

  for (const c of cases) {
    it(`${c.name}: verifies, and one-bit changes of the header have the same outcome`, () => {
      const der = c.der();
      const v = verifyDetachedSignature(der.toString('base64'), c.body);
      expect(v).toEqual(verifyDetachedSignatureWithoutFastPath(der.toString('base64'), c.body));
      // What devices and openssl send is read without the asn1js tree (openssl's streamed forms,
      // with a constructed OCTET STRING, are left to it).
      expect(verifiesOnFastPath(der.toString('base64'), c.body)).toBe(!c.name.startsWith('BER -'));
      // Every byte of the envelope and the SignerInfo; every 7th inside the certificate between.
      for (let i = 0; i < der.length; i += i < 120 || i > der.length - 420 ? 1 : 7) {
        const copy = Buffer.from(der);
        copy[i] = copy[i]! ^ (i % 2 ? 0x80 : 0x01);
        same(copy.toString('base64'), c.body);
      }
      same(der.toString('base64'), Buffer.concat([c.body, Buffer.from(' ')]));
      same(Buffer.concat([der, Buffer.from([0, 0])]).toString('base64'), c.body);
    });
  }
});
