/**
 * Leader election over the store's lease: two replicas on one in-memory store (the same data, two
 * Store instances), driven by a clock the test moves, and a lone LevelDB server that is leader at once.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Leadership } from '../../src/cluster/leadership.js';
import { LevelStore } from '../../src/store/leveldb.js';
import { MemoryData, MemoryStore } from '../../src/store/memory.js';
import { captureLog } from '../gitops/helpers.js';

describe('Leadership', () => {
  it('one of two replicas leads; when it stops renewing the other takes over with a larger token; the old one stands down', async () => {
    const data = new MemoryData();
    let now = Date.parse('2026-01-01T00:00:00.000Z');
    const clock = () => new Date(now);
    const log = captureLog().log;
    const a = new Leadership({ store: await MemoryStore.open(data), log, holder: 'A', ttlMs: 1000, now: clock });
    const b = new Leadership({ store: await MemoryStore.open(data), log, holder: 'B', ttlMs: 1000, now: clock });
    const events: string[] = [];
    a.on('elected', (t) => events.push(`A elected ${t}`)).on('deposed', () => events.push('A deposed'));
    b.on('elected', (t) => events.push(`B elected ${t}`)).on('deposed', () => events.push('B deposed'));

    await a.renew();
    await b.renew();
    expect([a.isLeader, b.isLeader]).toEqual([true, false]);
    now += 600;
    await a.renew();
    await b.renew();
    expect([a.isLeader, b.isLeader, a.token]).toEqual([true, false, 1]);

    // A stops renewing (killed, or its event loop stuck): B takes over once A's lease ran out.
    now += 999;
    await b.renew();
    expect(b.isLeader).toBe(false);
    now += 1;
    await b.renew();
    expect([b.isLeader, b.token]).toEqual([true, 2]);
    // A comes back: its lease is gone, so it stands down instead of leading beside B.
    await a.renew();
    expect(a.isLeader).toBe(false);

    // B shuts down cleanly: A need not wait for B's lease to run out.
    await b.stop();
    await a.renew();
    expect([a.isLeader, a.token]).toEqual([true, 3]);
    expect(events).toEqual(['A elected 1', 'B elected 2', 'A deposed', 'B deposed', 'A elected 3']);
    await a.stop();
  });

  it('a replica whose store fails stands down', async () => {
    const store = await MemoryStore.open(new MemoryData());
    const l = new Leadership({ store, log: captureLog().log, ttlMs: 60_000 });
    await l.renew();
    expect(l.isLeader).toBe(true);
    await store.close();
    await l.renew();
    expect(l.isLeader).toBe(false);
  });

  it('the single process on LevelDB is leader as soon as start() resolves, and releases the lease at stop()', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'orchard-lease-'));
    const store = await LevelStore.open(dir);
    try {
      const l = new Leadership({ store, log: captureLog().log, holder: 'only' });
      await l.start();
      expect(l.isLeader).toBe(true);
      expect((await store.getLease('leader'))?.holder).toBe('only');
      await l.stop();
      expect(await store.getLease('leader')).toBeUndefined();
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('on LevelDB a lease left by a killed process does not hold up the next one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'orchard-lease-'));
    let store = await LevelStore.open(dir);
    try {
      // The first process took the lease and died without releasing it.
      expect(await store.acquireLease('leader', 'dead', 3_600_000)).toMatchObject({ token: 1 });
      await store.close();
      store = await LevelStore.open(dir);
      const l = new Leadership({ store, log: captureLog().log, holder: 'next' });
      await l.start();
      expect([l.isLeader, l.token]).toEqual([true, 2]);
      await l.stop();
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
