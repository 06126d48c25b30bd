/** What enrollment keeps on disk: the CA (never overwritten), one-time challenges, `orchard init`. */
import { X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runInit } from '../../src/cli/enroll.js';
import { loadConfig } from '../../src/config.js';
import { CaStoreError, loadOrCreateCaStore } from '../../src/enroll/ca-store.js';
import { ChallengeStore } from '../../src/enroll/challenges.js';
import { initOrchard } from '../../src/enroll/init.js';
import { loadFleet } from '../../src/gitops/load.js';
import { openssl, tempDir } from './helpers.js';

const mode = (p: string) => statSync(p).mode & 0o777;
const snapshot = (dir: string) => Object.fromEntries(readdirSync(dir).map((f) => [f, readFileSync(join(dir, f), 'utf8')]));

describe('the CA on disk', () => {
  it('is created on first use: key 0600 in a 0700 directory, a profile signer it issued; later uses load the same', () => {
    const data = tempDir();
    const a = loadOrCreateCaStore(data);
    expect(a.created).toBe(true);
    expect(a.warnings).toEqual([]);
    expect(mode(join(data, 'ca'))).toBe(0o700);
    expect(mode(join(data, 'ca', 'ca.key'))).toBe(0o600);
    expect(mode(join(data, 'ca', 'profile-signer.key'))).toBe(0o600);
    const ca = new X509Certificate(readFileSync(join(data, 'ca', 'ca.pem')));
    expect(ca.ca).toBe(true);
    expect(ca.checkPrivateKey(a.ca.key)).toBe(true);
    const signer = new X509Certificate(a.profileSigner.certDer);
    expect(signer.checkIssued(ca) && signer.verify(ca.publicKey)).toBe(true);
    expect(openssl(['verify', '-CAfile', join(data, 'ca', 'ca.pem'), join(data, 'ca', 'profile-signer.pem')]).code).toBe(0);

    const before = snapshot(join(data, 'ca'));
    const b = loadOrCreateCaStore(data);
    expect(b.created).toBe(false);
    expect(b.ca.certDer.equals(a.ca.certDer)).toBe(true);
    expect(snapshot(join(data, 'ca'))).toEqual(before);
  });

  it('is never overwritten: a missing half is an error and the key stays byte for byte', () => {
    const data = tempDir();
    loadOrCreateCaStore(data);
    const key = readFileSync(join(data, 'ca', 'ca.key'));
    rmSync(join(data, 'ca', 'ca.pem'));
    expect(() => loadOrCreateCaStore(data)).toThrow(CaStoreError);
    expect(() => loadOrCreateCaStore(data)).toThrow(/will not overwrite/);
    expect(readFileSync(join(data, 'ca', 'ca.key')).equals(key)).toBe(true);
    expect(existsSync(join(data, 'ca', 'ca.pem'))).toBe(false);
  });

  it('warns about a key others can read; re-issues an expiring profile signer but keeps the CA', () => {
    const data = tempDir();
    const first = loadOrCreateCaStore(data);
    chmodSync(join(data, 'ca', 'ca.key'), 0o644);
    expect(loadOrCreateCaStore(data).warnings.join('\n')).toMatch(/ca\.key is readable by other users/);
    const later = loadOrCreateCaStore(data, { now: () => new Date(Date.now() + 820 * 86_400_000) });
    expect(later.ca.certDer.equals(first.ca.certDer)).toBe(true);
    expect(later.profileSigner.certDer.equals(first.profileSigner.certDer)).toBe(false);
    expect(mode(join(data, 'ca', 'profile-signer.key'))).toBe(0o600);
    expect(readdirSync(join(data, 'ca')).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});

describe('challenges', () => {
  it('a one-time challenge works once, survives a restart, expires, and is stored only as a hash', () => {
    const dir = tempDir();
    let now = Date.now();
    const store = new ChallengeStore({ dir, ttlMs: 60_000, now: () => new Date(now) });
    const a = store.create();
    const b = store.create();
    expect(a.challenge).toMatch(/^[0-9a-f]{40}$/);
    expect(a.challenge).not.toBe(b.challenge);
    expect(store.check(a.challenge)).toBe('one-time');
    expect(store.consume(a.challenge)).toBe('one-time');
    expect(store.consume(a.challenge)).toBeUndefined();
    expect(store.check(a.challenge)).toBeUndefined();

    // A new process (restart) sees what is still valid.
    const restarted = new ChallengeStore({ dir, ttlMs: 60_000, now: () => new Date(now) });
    expect(restarted.check(b.challenge)).toBe('one-time');
    for (const f of readdirSync(dir)) {
      expect(mode(join(dir, f))).toBe(0o600);
      expect(readFileSync(join(dir, f), 'utf8')).not.toContain(b.challenge);
    }
    now += 61_000;
    expect(restarted.consume(b.challenge)).toBeUndefined();
    expect(restarted.prune()).toBe(1);
    expect(readdirSync(dir)).toEqual([]);
    expect(restarted.consume('')).toBeUndefined();
    expect(restarted.consume(undefined)).toBeUndefined();
  });

  it('a static challenge works any number of times; anything else does not', () => {
    const store = new ChallengeStore({ dir: tempDir(), ttlMs: 60_000, staticChallenge: 'correct horse' });
    expect(store.consume('correct horse')).toBe('static');
    expect(store.consume('correct horse')).toBe('static');
    expect(store.consume('correct hors')).toBeUndefined();
    expect(store.consume('correct horse ')).toBeUndefined();
    expect(() => new ChallengeStore({ dir: tempDir(), ttlMs: 1, staticChallenge: '' })).toThrow(/empty/);
  });
});

describe('orchard init', () => {
  it('creates a config, the CA (0600 key) and the example fleet; a second run changes nothing', async () => {
    const dir = join(tempDir(), 'site');
    const first = initOrchard({ dir, publicUrl: 'https://mdm.example.org' });
    expect(first.created).toEqual([join(dir, 'orchard.yaml'), join(dir, 'data', 'ca'), join(dir, 'fleet')]);
    expect(mode(join(dir, 'data', 'ca', 'ca.key'))).toBe(0o600);
    const cfg = loadConfig({ config: join(dir, 'orchard.yaml') });
    expect(cfg.dataDir).toBe(join(dir, 'data'));
    expect(cfg.repo).toBe(join(dir, 'fleet'));
    expect(cfg.publicUrl).toBe('https://mdm.example.org');
    const fleet = await loadFleet(join(dir, 'fleet'));
    expect(fleet.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
    expect(fleet.ok).toBe(true);

    const config = readFileSync(join(dir, 'orchard.yaml'), 'utf8');
    const ca = snapshot(join(dir, 'data', 'ca'));
    writeFileSync(join(dir, 'fleet', 'mine.yaml'), '# my own edit\n');
    const second = initOrchard({ dir, publicUrl: 'https://other.example.org' });
    expect(second.created).toEqual([]);
    expect(second.kept).toHaveLength(3);
    expect(readFileSync(join(dir, 'orchard.yaml'), 'utf8')).toBe(config);
    expect(snapshot(join(dir, 'data', 'ca'))).toEqual(ca);
    expect(readFileSync(join(dir, 'fleet', 'mine.yaml'), 'utf8')).toBe('# my own edit\n');
  });

  it('leaves an existing fleet repository alone and follows an existing config', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'orchard.yaml'), 'dataDir: ./state\nrepo: ./repo\n');
    const repo = join(dir, 'repo');
    const out = runInit(dir);
    expect(out.exitCode).toBe(0);
    // repo did not exist: the example is copied there; the CA goes to the configured dataDir.
    expect(existsSync(join(dir, 'state', 'ca', 'ca.key'))).toBe(true);
    expect(existsSync(join(repo, 'README.md'))).toBe(true);
    expect(out.stdout).toMatch(/kept\s+.*orchard\.yaml \(exists\)/);
    expect(out.stdout).toMatch(/created .*state\/ca/);

    // An existing repository is never touched, nor filled with the example.
    const own = tempDir();
    writeFileSync(join(own, 'orchard.yaml'), 'dataDir: ./data\nrepo: ./fleet\n');
    mkdirSync(join(own, 'fleet'));
    writeFileSync(join(own, 'fleet', 'fleet.yaml'), '# ours\n');
    const r = initOrchard({ dir: own });
    expect(r.kept).toContain(join(own, 'fleet'));
    expect(readdirSync(join(own, 'fleet'))).toEqual(['fleet.yaml']);
    expect(readFileSync(join(own, 'fleet', 'fleet.yaml'), 'utf8')).toBe('# ours\n');
  });
});
