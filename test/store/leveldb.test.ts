import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Level } from 'level';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Malformed } from '../../src/errors.js';
import { LevelStore } from '../../src/store/leveldb.js';
import { allPages } from '../../src/store/paging.js';
import { levelHarness } from './harness.js';
import { storeSuite } from './suite.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'orchard-store-'));
}

storeSuite('LevelStore', levelHarness);

describe('LevelStore internals', () => {
  let dir: string;
  let store: LevelStore;
  const at = new Date('2026-01-01T00:00:00.000Z');
  const ack = (s: number) => ({ status: 'Acknowledged' as const, at: new Date(at.getTime() + s * 1000).toISOString(), raw: Buffer.from('r') });

  beforeEach(async () => {
    dir = await tempDir();
    store = await LevelStore.open(dir);
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('stores a payload once per command and frees it with the last reference', async () => {
    const targets = Array.from({ length: 100 }, (_, i) => `dev-${i}`);
    const payload = Buffer.alloc(4096, 7);
    await store.enqueue(targets, { uuid: 'fan', requestType: 'InstallProfile', payload }, at);
    let counts = await store.keyCounts();
    expect(counts.p).toBe(1);
    expect(counts.q).toBe(100);
    expect(counts.w).toBeUndefined(); // NotNow is read from the q entry (and the in-memory mirror)
    expect(counts.x).toBe(100);
    expect(counts.t).toBe(100);
    for (const t of targets.slice(0, 99)) expect(await store.recordResult(t, 'fan', ack(1))).toBe('recorded');
    expect(await store.compact(new Date(at.getTime() + 10_000))).toBe(99);
    counts = await store.keyCounts();
    expect(counts.p).toBe(1); // dev-99 still waits for it
    expect(counts.t).toBe(1);
    // dropping the last pending reference (Authenticate) frees the payload at once
    await store.authenticate('dev-99', { Topic: 't' }, { certHash: 'h', issuerHash: 'i', subject: 's', notAfter: 'n' }, at);
    counts = await store.keyCounts();
    for (const kind of ['p', 't', 'x', 'q', 'w', 'r', 'f', 'g']) expect(counts[kind] ?? 0).toBe(0);
  });

  it('keeps the unlock token and user names when a later TokenUpdate omits them', async () => {
    const base = { id: 'D:501', deviceId: 'D', type: 'user' as const, active: true, createdAt: 'c1', updatedAt: 'u1' };
    await store.tokenUpdate({ ...base, unlockToken: Buffer.from([1, 2, 3]), userShortName: 'ann', userLongName: 'Ann A' });
    await store.tokenUpdate({ ...base, createdAt: 'c2', updatedAt: 'u2' });
    const e = await store.getEnrollment('D:501');
    expect(e?.unlockToken?.equals(Buffer.from([1, 2, 3]))).toBe(true);
    expect(e?.userShortName).toBe('ann');
    expect(e?.userLongName).toBe('Ann A');
    expect(e?.createdAt).toBe('c1');
    expect(e?.updatedAt).toBe('u2');
  });

  it('rejects a priority outside 0..99', async () => {
    for (const priority of [-1, 100, 1.5, Number.NaN]) {
      await expect(store.enqueue(['D'], { uuid: `p${priority}`, requestType: 'X', payload: Buffer.from('x'), priority }, at)).rejects.toThrow(Malformed);
    }
    expect((await store.listCommands('D')).items).toEqual([]);
  });

  it('refuses the same uuid with different bytes while the old payload is in use', async () => {
    await store.enqueue(['A'], { uuid: 'c', requestType: 'X', payload: Buffer.from('one') }, at);
    await expect(store.enqueue(['B'], { uuid: 'c', requestType: 'X', payload: Buffer.from('two') }, at)).rejects.toThrow(/different payload/);
    await store.enqueue(['B'], { uuid: 'c', requestType: 'X', payload: Buffer.from('one') }, at);
    expect((await store.nextCommand('B', { skipNotNow: false }))?.payload.toString()).toBe('one');
  });

  it('keeps only the newest sequence marker', async () => {
    await Promise.all(Array.from({ length: 200 }, (_, i) => store.enqueue([`d${i % 7}`], { uuid: `u${i}`, requestType: 'X', payload: Buffer.from('x') }, at)));
    await store.close();
    store = await LevelStore.open(dir);
    expect((await store.keyCounts()).s).toBe(1);
  });

  it('flushes touches without being closed', async () => {
    await store.close();
    store = await LevelStore.open(dir, { touchFlushMs: 20 });
    await store.tokenUpdate({ id: 'D', deviceId: 'D', type: 'device', active: true, createdAt: 'c', updatedAt: 'u' });
    await store.touch('D', at);
    expect((await store.keyCounts()).l ?? 0).toBe(0); // buffered, not written per call
    for (let i = 0; i < 100 && !(await store.keyCounts()).l; i++) await new Promise((r) => setTimeout(r, 10));
    expect((await store.keyCounts()).l).toBe(1);
    expect((await store.getEnrollment('D'))?.lastSeenAt).toBe(at.toISOString());
  });

  it('moves user channels out of the device id key space when it opens a format-1 database', async () => {
    await store.close();
    // Format 1 as it was written: a user channel's keys held its id `UDID:UserID` as is.
    const db = new Level<string, unknown>(dir, { valueEncoding: 'json' });
    const enr = (id: string, type: string) => ({
      id,
      deviceId: 'DEV',
      type,
      ...(type === 'user' ? { userId: 'U1' } : {}),
      active: true,
      createdAt: 'c',
      updatedAt: 'u',
      unlockToken: Buffer.from('k').toString('base64'),
    });
    const entry = { uuid: 'cmd-1', requestType: 'ProfileList', priority: 50, enqueuedAt: at.toISOString(), status: 'Pending' };
    await db.batch([
      { type: 'put', key: 'm\x00version', value: 1 },
      {
        type: 'put',
        key: 'd\x00DEV',
        value: {
          id: 'DEV',
          facts: { Topic: 't' },
          identity: { certHash: 'h', issuerHash: 'i', subject: 's', notAfter: 'n' },
          authenticatedAt: 'a',
          enrolledAt: 'a',
          reported: {},
        },
      },
      { type: 'put', key: 'c\x00h', value: 'DEV' },
      { type: 'put', key: 'e\x00DEV', value: enr('DEV', 'device') },
      { type: 'put', key: 'e\x00DEV:U1', value: enr('DEV:U1', 'user') },
      { type: 'put', key: 'i\x00DEV\x00DEV', value: 'DEV' },
      { type: 'put', key: 'i\x00DEV\x00DEV:U1', value: 'DEV:U1' },
      { type: 'put', key: 'l\x00DEV:U1', value: '2026-01-02T00:00:00.000Z' },
      { type: 'put', key: 'q\x00DEV:U1\x0050' + '1'.padStart(14, '0'), value: entry },
      { type: 'put', key: 'x\x00DEV:U1\x00cmd-1', value: { ...entry, seq: 1, notNowCount: 0 } },
      { type: 'put', key: 't\x00cmd-1\x00DEV:U1', value: '' },
      { type: 'put', key: 's\x00' + '1'.padStart(14, '0'), value: '' },
    ]);
    await db.put('p\x00cmd-1', Buffer.from('payload-1'), { valueEncoding: 'buffer' });
    await db.close();

    store = await LevelStore.open(dir);
    expect(await store.getEnrollment('DEV:U1')).toMatchObject({ id: 'DEV:U1', type: 'user', active: true, lastSeenAt: '2026-01-02T00:00:00.000Z' });
    expect((await store.getEnrollment('DEV:U1'))?.unlockToken?.toString()).toBe('k');
    expect((await store.listEnrollments('DEV')).map((e) => e.id).sort()).toEqual(['DEV', 'DEV:U1']);
    const next = await store.nextCommand('DEV:U1', { skipNotNow: false });
    expect(next?.payload.toString()).toBe('payload-1');
    expect(await store.recordResult('DEV:U1', 'cmd-1', ack(1))).toBe('recorded');
    expect((await store.getCommand('DEV:U1', 'cmd-1'))?.status).toBe('Acknowledged');
    // No key of the old layout is left; a second open changes nothing.
    await store.close();
    const raw = new Level<string, unknown>(dir, { valueEncoding: 'json' });
    const keys = await raw.keys().all();
    expect(await raw.get('m\x00version')).toBe(2);
    await raw.close();
    expect(keys.filter((k) => k.includes('DEV:U1'))).toEqual([]);
    store = await LevelStore.open(dir);
    expect((await store.getEnrollment('DEV:U1'))?.deviceId).toBe('DEV');
  });

  it('bounds its caches: the enrollment -> device cache and the touch buffer', async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
    dir = await tempDir();
    store = await LevelStore.open(dir, { cacheMax: 8, maxBufferedTouches: 16, touchFlushMs: 3600_000 });
    const idn = { certHash: 'h', issuerHash: 'i', subject: 's', notAfter: 'n' };
    for (let i = 0; i < 40; i++) {
      const dev = `D${i}`;
      await store.authenticate(dev, { Topic: 't' }, { ...idn, certHash: `h${i}` }, at);
      await store.tokenUpdate({ id: dev, deviceId: dev, type: 'device', active: true, createdAt: 'c', updatedAt: 'u' });
      await store.tokenUpdate({ id: `${dev}:U`, deviceId: dev, type: 'user', userId: 'U', active: true, createdAt: 'c', updatedAt: 'u' });
    }
    // Every enrollment answers (a result needs its device's lock), whatever was evicted.
    for (let i = 0; i < 40; i++) {
      await store.enqueue([`D${i}:U`], { uuid: `u${i}`, requestType: 'X', payload: Buffer.from('x') }, at);
      expect(await store.recordResult(`D${i}:U`, `u${i}`, ack(i))).toBe('recorded');
    }
    expect(store.cacheSizes().deviceOfEnrollment).toBeLessThanOrEqual(8);
    // 1,000 distinct channels touched: written out in bursts instead of held.
    for (let i = 0; i < 1000; i++) await store.touch(`T${i}`, new Date(at.getTime() + i));
    for (let i = 0; i < 500 && store.cacheSizes().bufferedTouches > 16; i++) await new Promise((r) => setTimeout(r, 10));
    expect(store.cacheSizes().bufferedTouches).toBeLessThanOrEqual(16);
    await store.touch('D3', new Date(at.getTime() + 5000));
    expect((await store.getEnrollment('D3'))?.lastSeenAt).toBe(new Date(at.getTime() + 5000).toISOString());
  });

  it('refuses a database written in another format version', async () => {
    await store.close();
    const db = new Level<string, unknown>(dir, { valueEncoding: 'json' });
    await db.put('m\x00version', 999);
    await db.close();
    await expect(LevelStore.open(dir)).rejects.toThrow(/format 999/);
    // afterEach closes `store` and removes `dir`: give it a fresh pair
    await rm(dir, { recursive: true, force: true });
    dir = await tempDir();
    store = await LevelStore.open(dir);
  });
});

describe('LevelStore crash safety', () => {
  const childScript = join(here, 'kill-child.mjs');
  const compiled = join(root, 'dist/src/store/leveldb.js');
  const payloadOf = (uuid: string) => Buffer.concat([Buffer.from(uuid), Buffer.from([0, 1, 2, 0xfe, 0xff])]);

  /** Run the child until it has acknowledged `atLeast` enqueues, SIGKILL it, return every acknowledged uuid. */
  async function runAndKill(dir: string, prefix: string, atLeast: number): Promise<string[]> {
    const child = spawn(process.execPath, [childScript, dir, prefix, '4'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const acked: string[] = [];
    let partial = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const closed = new Promise<void>((resolveClosed) => child.on('close', () => resolveClosed()));
    child.stdout.on('data', (d: Buffer) => {
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop() ?? '';
      acked.push(...lines);
      if (acked.length >= atLeast && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    await closed;
    expect(child.signalCode, `child did not die by SIGKILL; stderr: ${stderr}`).toBe('SIGKILL');
    return acked;
  }

  it('loses and duplicates nothing acknowledged when SIGKILLed mid-enqueue', async () => {
    if (!existsSync(compiled)) {
      throw new Error(`${compiled} is missing: run \`npx tsc -p tsconfig.json\` first (\`npm test\` does)`);
    }
    if (statSync(compiled).mtimeMs < statSync(join(root, 'src/store/leveldb.ts')).mtimeMs) {
      throw new Error(`${compiled} is older than src/store/leveldb.ts: run \`npx tsc -p tsconfig.json\` first`);
    }
    const dir = await tempDir();
    try {
      // Several kill rounds: each must order after the previous one and leave every batch whole.
      const rounds = ['a', 'b', 'c', 'd'];
      const ackedByRound: string[][] = [];
      for (const prefix of rounds) ackedByRound.push(await runAndKill(dir, prefix, 300));
      for (const acked of ackedByRound) expect(acked.length).toBeGreaterThanOrEqual(300);
      const allAcked = ackedByRound.flat();
      expect(new Set(allAcked).size).toBe(allAcked.length);

      const store = await LevelStore.open(dir);
      try {
        const t1 = (await allPages((p) => store.listCommands('T1', p))).map((c) => c.uuid);
        const t2 = (await allPages((p) => store.listCommands('T2', p))).map((c) => c.uuid);
        expect(new Set(t1).size).toBe(t1.length); // nothing duplicated
        expect(t2).toEqual(t1); // both targets of each batch, or neither
        const stored = new Set(t1);
        for (const u of allAcked) expect(stored.has(u), `acknowledged ${u} missing`).toBe(true);
        // at most the in-flight enqueue of each of the 4 workers per round committed unprinted
        const acked = new Set(allAcked);
        expect(t1.filter((u) => !acked.has(u)).length).toBeLessThanOrEqual(4 * rounds.length);

        await store.enqueue(['T1'], { uuid: 'after-1', requestType: 'X', payload: payloadOf('after-1') }, new Date());
        await store.enqueue(['T1'], { uuid: 'after-2', requestType: 'X', payload: payloadOf('after-2') }, new Date());
        const served: string[] = [];
        for (;;) {
          const next = await store.nextCommand('T1', { skipNotNow: false });
          if (!next) break;
          expect(next.payload.equals(payloadOf(next.uuid))).toBe(true);
          served.push(next.uuid);
          await store.recordResult('T1', next.uuid, { status: 'Acknowledged', at: new Date().toISOString(), raw: Buffer.alloc(0) });
        }
        expect(served).toHaveLength(t1.length + 2);
        // sequence numbers survived every crash: each round is served after the one before
        const roundOf = served.slice(0, -2).map((u) => u.split('-')[0]);
        expect(roundOf).toEqual([...roundOf].sort());
        expect(served.slice(-2)).toEqual(['after-1', 'after-2']);
      } finally {
        await store.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
