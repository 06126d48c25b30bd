import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AbmMaterial, createKeypair, importToken, listTokens, readKeypair } from '../../src/abm/material.js';
import { serverTokenText } from '../../src/abm/token.js';
import { LevelStore } from '../../src/store/leveldb.js';
import { Sealer, SealError } from '../../src/store/sealing.js';
import { openssl } from '../helpers/openssl.js';

const dirs: string[] = [];
const stores: LevelStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
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

describe('ABM material in the store', () => {
  const sealer = new Sealer(Buffer.from('the material key of these tests', 'utf8'));
  async function openStore(dir: string): Promise<LevelStore> {
    const store = await LevelStore.open(join(dir, 'store'));
    stores.push(store);
    return store;
  }

  it("keeps the files' key pair and tokens in the store, sealed; the files stay; another reader needs only the store and the material key", async () => {
    const d = dataDir();
    const kp = createKeypair(d);
    importToken(d, abmToken(kp.certFile, d), 'main', { now: new Date('2026-01-01T00:00:00Z') });
    const store = await openStore(d);
    const material = new AbmMaterial(store, sealer);
    expect(await material.tokens()).toEqual([]);

    expect(await material.adoptFiles(d)).toEqual({ keypair: true, tokens: ['main'] });
    // Read once: unchanged files are not stored again.
    expect(await material.adoptFiles(d)).toEqual({ keypair: false, tokens: [] });
    expect(listTokens(d).map((t) => t.name)).toEqual(['main']);

    // Sealed: neither the key nor a token secret is in the store in the clear.
    const raw = [(await store.getMaterial('blob', 'abm-keypair'))!, ...(await store.listMaterial('abm-token')).items.map((i) => i.value)].map((b) =>
      b.toString('latin1'),
    );
    expect(raw).toHaveLength(2);
    for (const r of raw) {
      expect(r).not.toMatch(/PRIVATE KEY|CS_secret_value|AS_secret_value/);
    }

    // A reader with no files (a fresh directory) and the same material key.
    const elsewhere = new AbmMaterial(store, sealer);
    expect(await elsewhere.adoptFiles(dataDir())).toEqual({ keypair: false, tokens: [] });
    expect(await elsewhere.tokens()).toEqual([
      { ...creds, name: 'main', accessTokenExpiry: new Date('2027-11-30T12:00:00Z'), importedAt: new Date('2026-01-01T00:00:00Z') },
    ]);
    expect((await elsewhere.keypair())?.certDer.equals(kp.certDer)).toBe(true);
    // The stored key still decrypts what ABM encrypts to the uploaded certificate.
    const stored = (await elsewhere.keypair())!;
    expect(stored.key.asymmetricKeyDetails?.modulusLength).toBe(2048);
    expect(stored.key.export({ type: 'pkcs8', format: 'pem' })).toEqual(readKeypair(d).key.export({ type: 'pkcs8', format: 'pem' }));

    // Another material key cannot open them, and says which key to give.
    await expect(new AbmMaterial(store, new Sealer(Buffer.from('some other material key here', 'utf8'))).tokens()).rejects.toThrow(SealError);
  });

  it('a newer import of a name replaces the stored token; an older file does not replace a newer stored one', async () => {
    const d = dataDir();
    const kp = createKeypair(d);
    importToken(d, abmToken(kp.certFile, d), 'main', { now: new Date('2026-01-01T00:00:00Z') });
    const store = await openStore(d);
    const material = new AbmMaterial(store, sealer);
    await material.adoptFiles(d);

    const renewed = serverTokenText({ ...creds, accessToken: 'AT_renewed', accessTokenExpiry: new Date('2028-01-01T00:00:00Z') });
    importToken(d, abmToken(kp.certFile, d, renewed), 'main', { now: new Date('2026-06-01T00:00:00Z') });
    expect(await material.adoptFiles(d)).toEqual({ keypair: false, tokens: ['main'] });
    expect((await material.tokens()).map((t) => t.accessToken)).toEqual(['AT_renewed']);

    // A second server's directory holds the older import: the store keeps the newer one.
    const old = dataDir();
    createKeypair(old);
    const oldKp = readKeypair(old);
    importToken(old, abmToken(oldKp.certFile, old), 'main', { now: new Date('2026-01-01T00:00:00Z') });
    expect(await new AbmMaterial(store, sealer).adoptFiles(old)).toEqual({ keypair: true, tokens: [] });
    expect((await material.tokens()).map((t) => t.accessToken)).toEqual(['AT_renewed']);
  });
});
