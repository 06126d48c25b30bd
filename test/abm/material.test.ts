import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createKeypair, importToken, listTokens, readKeypair } from '../../src/abm/material.js';
import { serverTokenText } from '../../src/abm/token.js';
import { openssl } from '../helpers/openssl.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function dataDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'orchard-abm-material-'));
  dirs.push(d);
  return d;
}

const creds = { consumerKey: 'CK_test', consumerSecret: 'CS_secret_value', accessToken: 'AT_test', accessSecret: 'AS_secret_value' };

/** What ABM does with the uploaded certificate: S/MIME-encrypt the token to it (openssl plays Apple here). */
function abmToken(certFile: string, dir: string, text = serverTokenText({ ...creds, accessTokenExpiry: new Date('2027-11-30T12:00:00Z') })): Buffer {
  const input = join(dir, 'token.txt');
  writeFileSync(input, text);
  return openssl(['smime', '-encrypt', '-aes256', '-in', input, certFile]);
}

describe('ABM key pair and server tokens', () => {
  it('makes a key pair openssl reads (key 0600), keeps it on a second run, and decrypts a token openssl encrypted to it', () => {
    const d = dataDir();
    const kp = createKeypair(d);
    expect(kp.created).toBe(true);
    expect(statSync(kp.keyFile).mode & 0o777).toBe(0o600);
    expect(openssl(['x509', '-in', kp.certFile, '-noout', '-subject']).toString()).toMatch(/Orchard ABM server/);
    expect(createKeypair(d).created).toBe(false);
    expect(readKeypair(d).certDer.equals(kp.certDer)).toBe(true);

    const token = importToken(d, abmToken(kp.certFile, d), 'main');
    expect(token).toMatchObject({ ...creds, name: 'main', accessTokenExpiry: new Date('2027-11-30T12:00:00Z') });
    expect(statSync(join(d, 'abm', 'tokens', 'main.json')).mode & 0o777).toBe(0o600);
    // A second token for another ABM server coexists.
    importToken(
      d,
      abmToken(kp.certFile, d, serverTokenText({ ...creds, consumerKey: 'CK_other', accessTokenExpiry: new Date('2027-01-01T00:00:00Z') })),
      'school',
    );
    expect(listTokens(d).map((t) => [t.name, t.consumerKey])).toEqual([
      ['main', 'CK_test'],
      ['school', 'CK_other'],
    ]);
  });

  it('a token encrypted to another key is refused without quoting anything; a name clash for another server is a conflict', () => {
    const d = dataDir();
    createKeypair(d);
    const other = dataDir();
    const foreign = createKeypair(other);
    expect(() => importToken(d, abmToken(foreign.certFile, other), 'main')).toThrow(/recipient|decrypt|certificate/i);
    const kp = readKeypair(d);
    importToken(d, abmToken(kp.certFile, d), 'main');
    const clash = abmToken(kp.certFile, d, serverTokenText({ ...creds, consumerKey: 'CK_else', accessTokenExpiry: new Date('2027-01-01T00:00:00Z') }));
    expect(() => importToken(d, clash, 'main')).toThrow(/another ABM server/);
    expect(() => importToken(d, clash, '../evil')).toThrow(/token name/);
  });

  it('without a key pair, import says what to run first', () => {
    expect(() => importToken(dataDir(), Buffer.from('x'), 'main')).toThrow(/orchard abm keypair/);
  });
});
