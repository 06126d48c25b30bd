import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseClientCertHeader } from '../../src/identity/cert-header.js';
import { IdentityError } from '../../src/identity/errors.js';
import { opensslCa, opensslDevice, pemFileToDer, tempDir } from './openssl.js';
import { thrown } from '../helpers/thrown.js';

const failure = (fn: () => unknown): IdentityError => thrown(IdentityError, fn);

describe('parseClientCertHeader', () => {
  const tmp = tempDir();
  let pem: string;
  let der: Buffer;

  beforeAll(() => {
    const ca = opensslCa(tmp.dir, 'header-ca');
    const dev = opensslDevice(tmp.dir, ca, 'header-device');
    pem = readFileSync(dev.cert, 'utf8');
    der = pemFileToDer(dev.cert);
  });
  afterAll(() => tmp.cleanup());

  it('RFC 9440 Client-Cert: :base64 DER:', () => {
    expect(parseClientCertHeader(`:${der.toString('base64')}:`).equals(der)).toBe(true);
    expect(parseClientCertHeader(`  :${der.toString('base64')}:  `).equals(der)).toBe(true);
  });

  it('nginx $ssl_client_escaped_cert (URL-escaped PEM)', () => {
    expect(parseClientCertHeader(encodeURIComponent(pem)).equals(der)).toBe(true);
    // Escaping only what must be escaped in a header (spaces, newlines), '+' and '/' left as is.
    const light = pem.replace(/ /g, '%20').replace(/\n/g, '%0A');
    expect(light).toContain('%0A');
    expect(parseClientCertHeader(light).equals(der)).toBe(true);
  });

  it('raw PEM with newlines, spaces or tabs', () => {
    expect(parseClientCertHeader(pem).equals(der)).toBe(true);
    const body = pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').trim();
    expect(parseClientCertHeader(`-----BEGIN CERTIFICATE----- ${body.replace(/\n/g, ' ')} -----END CERTIFICATE-----`).equals(der)).toBe(true);
    expect(parseClientCertHeader(`-----BEGIN CERTIFICATE-----\t${body.replace(/\n/g, '\t')}\t-----END CERTIFICATE-----`).equals(der)).toBe(true);
  });

  it('bare base64 DER', () => {
    expect(parseClientCertHeader(der.toString('base64')).equals(der)).toBe(true);
  });

  const garbage: [string, string][] = [
    ['empty', ''],
    ['spaces', '   '],
    ['text', 'hello world'],
    ['colons around text', ':not base64 at all!:'],
    ['base64 but not a certificate', `:${Buffer.from('not a certificate').toString('base64')}:`],
    ['bad URL escape', '-----BEGIN%20CERTIFICATE-----%ZZ'],
    ['PEM with a broken body', '-----BEGIN CERTIFICATE-----\nMIIB****\n-----END CERTIFICATE-----'],
  ];
  for (const [name, value] of garbage) {
    it(`${name} -> malformed`, () => {
      expect(failure(() => parseClientCertHeader(value)).kind).toBe('malformed');
    });
  }

  it('a truncated certificate -> malformed', () => {
    expect(failure(() => parseClientCertHeader(`:${der.subarray(0, der.length - 10).toString('base64')}:`)).kind).toBe('malformed');
  });
});
