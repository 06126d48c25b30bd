import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import * as asn1js from 'asn1js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCA, createDeviceIdentity, issueCertificate, type CertifiedKey } from '../../src/identity/ca.js';
import { signDetached } from '../../src/identity/cms-sign.js';
import { verifyDetachedSignature } from '../../src/identity/cms.js';
import { IdentityError } from '../../src/identity/errors.js';
import { openssl, opensslCmsVerify, tempDir } from './openssl.js';

const body = Buffer.from(
  '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" ' +
    '"http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n<plist version="1.0">\n<dict>\n\t<key>Status</key>\n' +
    '\t<string>Idle</string>\n\t<key>UDID</key>\n\t<string>00008030-001A2B3C4D5E6F70</string>\n</dict>\n</plist>\n',
);

function tampered(buf: Buffer, at: number): Buffer {
  const copy = Buffer.from(buf);
  copy[at] = copy[at]! ^ 0x20;
  return copy;
}

describe('signDetached', () => {
  const tmp = tempDir();
  const caFile = join(tmp.dir, 'ca.pem');
  let ca: CertifiedKey;
  let device: CertifiedKey;

  beforeAll(() => {
    ca = createCA({ commonName: 'Orchard Test CA', organization: 'Orchard' });
    device = createDeviceIdentity(ca, 'sign-test-device');
    writeFileSync(caFile, ca.certPem);
  });
  afterAll(() => tmp.cleanup());

  function asn1Text(der: Buffer): string {
    const file = join(tmp.dir, 'dump.der');
    writeFileSync(file, der);
    return openssl(['asn1parse', '-inform', 'DER', '-in', file]).toString();
  }

  it('default: like a device (sha1, sha1WithRSAEncryption, no signed attributes), verified by openssl', () => {
    const sig = signDetached(body, device);
    const der = Buffer.from(sig, 'base64');
    expect(opensslCmsVerify(tmp.dir, der, body, caFile)).toBe(true);
    expect(opensslCmsVerify(tmp.dir, der, tampered(body, 100), caFile)).toBe(false);

    const text = asn1Text(der);
    expect(text).toMatch(/:sha1\n/);
    expect(text).toContain('sha1WithRSAEncryption');
    expect(text).not.toContain('messageDigest');
    expect(der.includes(body)).toBe(false); // detached
    expect(der.includes(device.certDer)).toBe(true);

    const v = verifyDetachedSignature(sig, body);
    expect(v).toMatchObject({ digestAlgorithm: 'sha1', signedAttributes: false });
    expect(v.signerCert.equals(device.certDer)).toBe(true);
  });

  it('sha256 with signed attributes (contentType, signingTime, messageDigest), verified by openssl', () => {
    const sig = signDetached(body, device, { digest: 'sha256', signedAttributes: true });
    const der = Buffer.from(sig, 'base64');
    expect(opensslCmsVerify(tmp.dir, der, body, caFile)).toBe(true);
    expect(opensslCmsVerify(tmp.dir, der, tampered(body, 7), caFile)).toBe(false);

    const text = asn1Text(der);
    for (const attr of ['contentType', 'signingTime', 'messageDigest']) expect(text).toContain(`:${attr}`);
    expect(text).toContain('sha256WithRSAEncryption');

    expect(verifyDetachedSignature(sig, body)).toMatchObject({ digestAlgorithm: 'sha256', signedAttributes: true });
    const e = (() => {
      try {
        verifyDetachedSignature(sig, tampered(body, 7));
      } catch (err) {
        return err;
      }
    })();
    expect(e).toBeInstanceOf(IdentityError);
    expect((e as IdentityError).kind).toBe('identity');
  });

  it('sha1 with signed attributes and sha256 without, both verified by openssl', () => {
    for (const opts of [{ digest: 'sha1', signedAttributes: true }, { digest: 'sha256' }] as const) {
      const der = Buffer.from(signDetached(body, device, opts), 'base64');
      expect(opensslCmsVerify(tmp.dir, der, body, caFile)).toBe(true);
    }
  });

  it('openssl rejects our signature under a CA that did not issue the signer', () => {
    const other = createCA({ commonName: 'Some Other CA' });
    const otherFile = join(tmp.dir, 'other.pem');
    writeFileSync(otherFile, other.certPem);
    const der = Buffer.from(signDetached(body, device), 'base64');
    expect(opensslCmsVerify(tmp.dir, der, body, otherFile)).toBe(false);
  });

  it('an ECDSA P-256 device key signs, and openssl verifies it', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const cert = issueCertificate(ca, { publicKey, commonName: 'ec-device', extKeyUsage: ['clientAuth'] });
    for (const opts of [{}, { digest: 'sha256', signedAttributes: true }] as const) {
      const sig = signDetached(body, { certDer: cert.certDer, key: privateKey }, opts);
      expect(opensslCmsVerify(tmp.dir, Buffer.from(sig, 'base64'), body, caFile)).toBe(true);
      expect(verifyDetachedSignature(sig, body).signerCert.equals(cert.certDer)).toBe(true);
    }
  });

  it('signed attributes re-encoded in BER indefinite length still verify', () => {
    const der = Buffer.from(signDetached(body, device, { digest: 'sha256', signedAttributes: true }), 'base64');
    const root = asn1js.fromBER(new Uint8Array(der)).result as asn1js.Sequence;
    // ContentInfo > [0] > SignedData > signerInfos > SignerInfo > [0] signedAttrs
    const explicit = root.valueBlock.value[1] as asn1js.Constructed;
    const sd = explicit.valueBlock.value[0] as asn1js.Sequence;
    const infos = sd.valueBlock.value[sd.valueBlock.value.length - 1] as asn1js.Set;
    const si = infos.valueBlock.value[0] as asn1js.Sequence;
    const attrs = si.valueBlock.value[3] as asn1js.Constructed;
    expect(attrs.idBlock.tagClass).toBe(3);
    for (const b of [root, explicit, sd, infos, si, attrs]) {
      b.lenBlock.isIndefiniteForm = true;
      b.valueBlock.isIndefiniteForm = true;
    }
    const ber = Buffer.from(root.toBER(false));
    expect(ber.equals(der)).toBe(false);
    expect(ber.subarray(0, 2).toString('hex')).toBe('3080');
    // signedAttrs itself is now [0] with indefinite length (A0 80), after the certificate.
    expect(ber.lastIndexOf(Buffer.from([0xa0, 0x80]))).toBeGreaterThan(ber.indexOf(device.certDer));
    expect(verifyDetachedSignature(ber.toString('base64'), body).signedAttributes).toBe(true);
    expect(() => verifyDetachedSignature(ber.toString('base64'), tampered(body, 5))).toThrow(IdentityError);
  });
});
