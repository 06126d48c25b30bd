/**
 * Two replicas on one store (two MemoryStore instances on the same data), each with a real fleet
 * source on one git remote: only the leader syncs; the follower serves what the leader applied,
 * read from the store; a webhook on the follower makes the leader sync; when the leader stops, the
 * follower takes over and continues from the stored source state.
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Leadership } from '../../src/cluster/leadership.js';
import { Replica } from '../../src/cluster/replica.js';
import { loadFleet } from '../../src/gitops/load.js';
import { FleetSource, type ValidatedRevision } from '../../src/gitops/source.js';
import { storeSourceState } from '../../src/gitops/source-state.js';
import { MemoryData, MemoryStore } from '../../src/store/memory.js';
import { captureLog, FleetRepo, GOOD, waitFor } from '../gitops/helpers.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Node {
  replica: Replica;
  source: FleetSource;
  /** Revisions applied fleet-wide here (the leader's job). */
  applied: string[];
  /** Revisions served here: followed or applied. */
  served: string[];
}

async function node(data: MemoryData, r: FleetRepo, name: string, pinned?: () => boolean): Promise<Node> {
  const store = await MemoryStore.open(data);
  const log = captureLog().log;
  const leadership = new Leadership({ store, log, holder: name, ttlMs: 10_000 });
  const source = new FleetSource({
    repo: r.url,
    branch: 'main',
    dataDir: join(r.root, name),
    pollIntervalMs: 0,
    loader: (dir: string) => loadFleet(dir),
    state: storeSourceState(store),
    // The source asks the replica, as in src/root.ts: one answer for the role.
    isLeader: () => n.replica.isLeader,
    log,
  });
  const n: Node = { replica: undefined as unknown as Replica, source, applied: [], served: [] };
  const commit = (rev: ValidatedRevision) => rev.info.commit ?? '';
  n.replica = new Replica({ store, leadership, isLeader: pinned, source, follow: (rev) => n.served.push(commit(rev)), log, signalMs: 20 });
  source.on('validated', (rev) => {
    n.applied.push(commit(rev));
    n.served.push(commit(rev));
    void n.replica.publish(rev);
  });
  cleanups.push(async () => {
    await source.stop();
    await n.replica.stop();
    await store.close();
  });
  return n;
}

describe('Replica', () => {
  it('the leader syncs and publishes; the follower serves it; a webhook on the follower wakes the leader; the follower takes over', async () => {
    const r = new FleetRepo();
    cleanups.push(() => r.cleanup());
    const first = r.write('profiles/wifi.yaml', GOOD).commit('first');
    const data = new MemoryData();
    const a = await node(data, r, 'A');
    await a.replica.start();
    expect(a.replica.isLeader).toBe(true);
    expect(a.applied).toEqual([first]);
    const b = await node(data, r, 'B');
    await b.replica.start();
    expect(b.replica.isLeader).toBe(false);
    // B served A's revision from the store at start, and never synced the source itself.
    expect(b.served).toEqual([first]);
    expect(b.source.status().applied).toBeUndefined();
    expect((await b.source.sync('poll')).applied).toBeUndefined();

    // A git webhook reaching B: A syncs, publishes, B follows.
    const second = r.write('profiles/wifi.yaml', GOOD.replace('Corp', 'Corp2')).commit('second');
    await b.replica.syncSource();
    await waitFor('the leader synced', () => a.applied.includes(second) || undefined);
    await waitFor('the follower follows', () => b.served.includes(second) || undefined);
    expect(b.applied).toEqual([]);

    // A stops (releases the lease): B is elected, restores the stored applied commit, and leads.
    await a.source.stop();
    await a.replica.stop();
    // A follower tries for the lease every ttl/3 (3.3 s here), so it leads within that of the release.
    await waitFor('B leads', () => b.replica.isLeader || undefined, 15_000);
    await waitFor('B applied', () => b.applied.includes(second) || undefined, 15_000);
    expect(b.source.status().applied?.commit).toBe(second);
  });

  it('a role the caller pins is the answer: a pinned follower holding the lease neither syncs nor leads', async () => {
    const r = new FleetRepo();
    cleanups.push(() => r.cleanup());
    r.write('profiles/wifi.yaml', GOOD).commit('first');
    const data = new MemoryData();
    const a = await node(data, r, 'A', () => false);
    await a.replica.start();
    // Alone on the store, A holds the lease, yet the pinned role is what every part reads.
    const peek = await MemoryStore.open(data);
    cleanups.push(() => peek.close());
    const lease = await peek.getLease('leader');
    expect(lease?.holder).toBe('A');
    expect(a.replica.isLeader).toBe(false);
    expect(a.applied).toEqual([]);
    expect((await a.source.sync('poll')).applied).toBeUndefined();
    // A webhook on it leaves the leader a note instead of syncing here.
    await a.replica.syncSource();
    expect(a.applied).toEqual([]);
    expect((await peek.getMaterial('blob', 'leader-wake'))?.length).toBeGreaterThan(0);
  });

  it('a leader without a source reads no signal: an idle replica costs the store no read a second', async () => {
    const store = await MemoryStore.open(new MemoryData());
    cleanups.push(() => store.close());
    const reads: string[] = [];
    // The real store, its material reads noted.
    const counted = {
      getMaterial: (kind: Parameters<MemoryStore['getMaterial']>[0], key: string) => {
        reads.push(`${kind}/${key}`);
        return store.getMaterial(kind, key);
      },
      putMaterial: store.putMaterial.bind(store),
    };
    const log = captureLog().log;
    const leadership = new Leadership({ store, log, holder: 'lone', ttlMs: 10_000 });
    const replica = new Replica({ store: counted, leadership, follow: () => undefined, log, signalMs: 10 });
    cleanups.push(() => replica.stop());
    await replica.start();
    expect(replica.isLeader).toBe(true);
    const atStart = reads.length;
    // Many polls' worth of time: the lone leader has no source to wake, so it reads nothing.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(reads.slice(atStart)).toEqual([]);
    expect(reads.filter((r) => r.endsWith('leader-wake'))).toEqual([]);
  });
});
