/** What enrollment keeps in the store: the CA (sealed, never overwritten), one-time challenges, what was issued; `orchard init`. */
import { X509Certificate, createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runInit } from '../../src/cli/enroll.js';
import { loadConfig } from '../../src/config.js';
import { CaStoreError, openStoredCa } from '../../src/enroll/ca-store.js';
import { ChallengeStore, importChallengeFiles } from '../../src/enroll/challenges.js';
import { initOrchard } from '../../src/enroll/init.js';
import { IssuanceLedger, importIssuanceFiles } from '../../src/enroll/renewals.js';
import { loadFleet } from '../../src/gitops/load.js';
import { createCA } from '../../src/identity/ca.js';
import { MemoryStore } from '../../src/store/memory.js';
import { loadSealer, SealError, Sealer } from '../../src/store/sealing.js';
import { openssl, tempDir } from './helpers.js';

const mode = (p: string) => statSync(p).mode & 0o777;
const sealer = new Sealer(Buffer.from('the material key of these tests'));

describe('the CA in the store', () => {
  it('is created on first use, sealed; later opens (and a racing second server) get the same CA and signer', async () => {
    const store = await MemoryStore.open();
    const data = tempDir();
    const [a, racer] = await Promise.all([openStoredCa(store, sealer, data), openStoredCa(store, sealer, tempDir())]);
    expect([a.created, racer.created].filter(Boolean)).toHaveLength(1);
    expect(racer.ca.certDer.equals(a.ca.certDer)).toBe(true);
    const ca = new X509Certificate(readFileSync(a.caFile));
    expect(ca.ca).toBe(true);
    expect(ca.checkPrivateKey(a.ca.key)).toBe(true);
    const signer = new X509Certificate(a.profileSigner.certDer);
    expect(signer.checkIssued(ca) && signer.verify(ca.publicKey)).toBe(true);
    writeFileSync(join(data, 'signer.pem'), a.profileSigner.certPem);
    expect(openssl(['verify', '-CAfile', a.caFile, join(data, 'signer.pem')]).code).toBe(0);
    // Sealed: neither key is in the store in the clear.
    for (const name of ['ca', 'profile-signer']) expect((await store.getMaterial('blob', name))!.toString('latin1')).not.toMatch(/PRIVATE KEY|MII/);

    const b = await openStoredCa(store, sealer, tempDir());
    expect(b.created).toBe(false);
    expect(b.ca.certDer.equals(a.ca.certDer)).toBe(true);
    expect(b.profileSigner.certDer.equals(a.profileSigner.certDer)).toBe(true);
    await expect(openStoredCa(store, new Sealer(Buffer.from('some other material key')), tempDir())).rejects.toThrow(SealError);
    await expect(openStoredCa(store, new Sealer(Buffer.from('some other material key')), tempDir())).rejects.toThrow(/another material key/);
  });

  it('imports the CA files of an earlier version once; half a CA there is refused, never replaced', async () => {
    const data = tempDir();
    const old = createCA({ commonName: 'Old Orchard CA' });
    mkdirSync(join(data, 'ca'));
    writeFileSync(join(data, 'ca', 'ca.pem'), old.certPem);
    writeFileSync(join(data, 'ca', 'ca.key'), old.keyPem, { mode: 0o600 });
    const store = await MemoryStore.open();
    const a = await openStoredCa(store, sealer, data);
    expect(a.imported).toBe(true);
    expect(a.ca.certDer.equals(old.certDer)).toBe(true);
    // Another replica, with no files at all, serves the imported CA.
    expect((await openStoredCa(store, sealer, tempDir())).ca.certDer.equals(old.certDer)).toBe(true);

    const half = tempDir();
    mkdirSync(join(half, 'ca'));
    writeFileSync(join(half, 'ca', 'ca.key'), old.keyPem);
    const empty = await MemoryStore.open();
    await expect(openStoredCa(empty, sealer, half)).rejects.toThrow(CaStoreError);
    await expect(openStoredCa(empty, sealer, half)).rejects.toThrow(/will not overwrite/);
    expect(await empty.getMaterial('blob', 'ca')).toBeUndefined();
    expect(readFileSync(join(half, 'ca', 'ca.key'), 'utf8')).toBe(old.keyPem);
  });

  it('re-issues an expiring profile signer but keeps the CA', async () => {
    const store = await MemoryStore.open();
    const first = await openStoredCa(store, sealer, tempDir());
    const later = await openStoredCa(store, sealer, tempDir(), { now: () => new Date(Date.now() + 820 * 86_400_000) });
    expect(later.ca.certDer.equals(first.ca.certDer)).toBe(true);
    expect(later.profileSigner.certDer.equals(first.profileSigner.certDer)).toBe(false);
    expect((await openStoredCa(store, sealer, tempDir())).profileSigner.certDer.equals(later.profileSigner.certDer)).toBe(true);
  });

  it('the material key: from the caller, else a named file, else DATA_DIR/material.key created 0600 once', () => {
    const data = tempDir();
    const made = loadSealer({ dataDir: data });
    expect(made.from).toBe(join(data, 'material.key'));
    expect(mode(join(data, 'material.key'))).toBe(0o600);
    const again = loadSealer({ dataDir: data });
    expect(again.sealer.open('x', made.sealer.seal('x', Buffer.from('secret'))).toString()).toBe('secret');
    expect(() => again.sealer.open('y', made.sealer.seal('x', Buffer.from('secret')))).toThrow(SealError);
    expect(() => loadSealer({ dataDir: data, file: join(data, 'missing') })).toThrow(/cannot be read/);
    expect(loadSealer({ dataDir: data, secret: 'from the environment, long enough' }).from).toBe('ORCHARD_MATERIAL_KEY');
    expect(() => loadSealer({ dataDir: data, secret: 'short' })).toThrow(/at least 16 bytes/);
  });
});

describe('challenges', () => {
  it('a one-time challenge works once across servers on one store, expires, and is stored only as a hash', async () => {
    const store = await MemoryStore.open();
    let now = Date.now();
    const one = new ChallengeStore({ store, ttlMs: 60_000, now: () => new Date(now) });
    const other = new ChallengeStore({ store, ttlMs: 60_000, now: () => new Date(now) });
    const a = await one.create();
    const b = await one.create(undefined, { serial: 'C02X' });
    expect(a.challenge).toMatch(/^[0-9a-f]{40}$/);
    expect(a.challenge).not.toBe(b.challenge);
    expect(await other.check(a.challenge)).toBe('one-time');
    const takers = await Promise.all([one.consume(a.challenge), other.consume(a.challenge), other.consume(a.challenge)]);
    expect(takers.filter((k) => k === 'one-time')).toHaveLength(1);
    expect(await one.check(a.challenge)).toBeUndefined();
    const key = createHash('sha256').update(b.challenge).digest('hex');
    expect((await store.getMaterial('challenge', key))!.toString()).not.toContain(b.challenge);
    now += 61_000;
    expect(await other.redeem(b.challenge)).toBeUndefined();
    expect(await one.consume('')).toBeUndefined();
    expect(await one.consume(undefined)).toBeUndefined();
  });

  it('a static challenge works any number of times; anything else does not', async () => {
    const material = await MemoryStore.open();
    const store = new ChallengeStore({ store: material, ttlMs: 60_000, staticChallenge: 'correct horse' });
    expect(await store.consume('correct horse')).toBe('static');
    expect(await store.consume('correct horse')).toBe('static');
    expect(await store.consume('correct hors')).toBeUndefined();
    expect(await store.consume('correct horse ')).toBeUndefined();
    expect(() => new ChallengeStore({ store: material, ttlMs: 1, staticChallenge: '' })).toThrow(/empty/);
  });

  it("an earlier version's files move into the store once: unexpired challenges and issuance records", async () => {
    const store = await MemoryStore.open();
    const dir = tempDir();
    const hash = (c: string) => createHash('sha256').update(c).digest('hex');
    const live = 'a'.repeat(40);
    writeFileSync(
      join(dir, hash(live)),
      JSON.stringify({ createdAt: new Date().toISOString(), expiresAt: new Date(Date.now() + 60_000).toISOString(), udid: 'U1' }),
    );
    writeFileSync(join(dir, hash('b'.repeat(40))), JSON.stringify({ createdAt: '2020-01-01T00:00:00Z', expiresAt: '2020-01-01T01:00:00Z' }));
    expect(await importChallengeFiles(store, dir)).toBe(1);
    expect(readdirSync(dir)).toEqual([]);
    expect(await new ChallengeStore({ store, ttlMs: 60_000 }).redeem(live)).toEqual({ kind: 'one-time', udid: 'U1' });

    const data = tempDir();
    const [h1, h2, h3] = ['1', '2', '3'].map((c) => c.repeat(64));
    mkdirSync(join(data, 'issued'));
    mkdirSync(join(data, 'renewals'));
    writeFileSync(join(data, 'issued', h1!), JSON.stringify({ serial: 'C02OLD' }));
    writeFileSync(join(data, 'renewals', h2!), `${h3}\n`);
    expect(await importIssuanceFiles(store, { issued: join(data, 'issued'), renewals: join(data, 'renewals') })).toBe(2);
    expect(existsSync(join(data, 'issued'))).toBe(false);
    const ledger = new IssuanceLedger(store);
    expect(await ledger.lookup(h1!)).toEqual({ serial: 'C02OLD' });
    expect(await ledger.lookup(h2!)).toEqual({ renewalOf: h3 });
    expect(await importIssuanceFiles(store, { issued: join(data, 'issued'), renewals: join(data, 'renewals') })).toBe(0);
  });
});

describe('orchard init', () => {
  it('creates a config, the CA (0600 key) and the example fleet; a second run changes nothing', async () => {
    const dir = join(tempDir(), 'site');
    const first = await initOrchard({ dir, publicUrl: 'https://mdm.example.org' });
    expect(first.created).toEqual([join(dir, 'orchard.yaml'), join(dir, 'data', 'scep-ca.pem'), join(dir, 'fleet')]);
    expect(mode(join(dir, 'data', 'material.key'))).toBe(0o600);
    const cfg = loadConfig({ config: join(dir, 'orchard.yaml') });
    expect(cfg.dataDir).toBe(join(dir, 'data'));
    expect(cfg.repo).toBe(join(dir, 'fleet'));
    expect(cfg.publicUrl).toBe('https://mdm.example.org');
    const fleet = await loadFleet(join(dir, 'fleet'));
    expect(fleet.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
    expect(fleet.ok).toBe(true);

    const config = readFileSync(join(dir, 'orchard.yaml'), 'utf8');
    const ca = readFileSync(join(dir, 'data', 'scep-ca.pem'), 'utf8');
    writeFileSync(join(dir, 'fleet', 'mine.yaml'), '# my own edit\n');
    const second = await initOrchard({ dir, publicUrl: 'https://other.example.org' });
    expect(second.created).toEqual([]);
    expect(second.kept).toHaveLength(3);
    expect(readFileSync(join(dir, 'orchard.yaml'), 'utf8')).toBe(config);
    expect(readFileSync(join(dir, 'data', 'scep-ca.pem'), 'utf8')).toBe(ca);
    expect(readFileSync(join(dir, 'fleet', 'mine.yaml'), 'utf8')).toBe('# my own edit\n');
  });

  it('leaves an existing fleet repository alone and follows an existing config', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'orchard.yaml'), 'dataDir: ./state\nrepo: ./repo\n');
    const repo = join(dir, 'repo');
    const out = await runInit(dir, {}, {});
    expect(out.exitCode).toBe(0);
    // repo did not exist: the example is copied there; the CA goes to the configured dataDir.
    expect(existsSync(join(dir, 'state', 'scep-ca.pem'))).toBe(true);
    expect(existsSync(join(repo, 'README.md'))).toBe(true);
    expect(out.stdout).toMatch(/kept\s+.*orchard\.yaml \(exists\)/);
    expect(out.stdout).toMatch(/created .*state\/scep-ca\.pem/);

    // An existing repository is never touched, nor filled with the example.
    const own = tempDir();
    writeFileSync(join(own, 'orchard.yaml'), 'dataDir: ./data\nrepo: ./fleet\n');
    mkdirSync(join(own, 'fleet'));
    writeFileSync(join(own, 'fleet', 'fleet.yaml'), '# ours\n');
    const r = await initOrchard({ dir: own });
    expect(r.kept).toContain(join(own, 'fleet'));
    expect(readdirSync(join(own, 'fleet'))).toEqual(['fleet.yaml']);
    expect(readFileSync(join(own, 'fleet', 'fleet.yaml'), 'utf8')).toBe('# ours\n');
  });
});
