/**
 * The fleet source's state and the applied revision in the store: a second process on the same
 * store, with a data directory of its own and no state.json, continues where the first stopped.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadFleet } from '../../src/gitops/load.js';
import type { LoadResult } from '../../src/gitops/model.js';
import { FleetSource, type ValidatedRevision, type SourceOptions } from '../../src/gitops/source.js';
import { loadAppliedRevision, saveAppliedRevision, storeSourceState } from '../../src/gitops/source-state.js';
import { LevelStore } from '../../src/store/leveldb.js';
import { BAD, captureLog, FleetRepo, GOOD, tempDir } from './helpers.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(): Promise<{ r: FleetRepo; store: LevelStore }> {
  const r = new FleetRepo();
  cleanups.push(() => r.cleanup());
  const store = await LevelStore.open(join(tempDir('orchard-state-store-'), 'store'));
  cleanups.push(() => store.close());
  return { r, store };
}

function source(opts: Partial<SourceOptions> & Pick<SourceOptions, 'repo' | 'dataDir'>): {
  source: FleetSource;
  applied: ValidatedRevision[];
  loads: string[];
} {
  const loads: string[] = [];
  const loader = async (dir: string): Promise<LoadResult> => {
    loads.push(dir);
    return loadFleet(dir);
  };
  const s = new FleetSource({ branch: 'main', pollIntervalMs: 0, loader, log: captureLog().log, ...opts });
  const applied: ValidatedRevision[] = [];
  s.on('validated', (a) => applied.push(a));
  cleanups.push(() => s.stop());
  return { source: s, applied, loads };
}

describe('source state in the store', () => {
  it('a second source on the same store, with an empty data directory, serves the applied commit and does not validate the rejected one again', async () => {
    const { r, store } = await setup();
    const good = r.write('profiles/wifi.yaml', GOOD).commit('good');
    const first = source({ repo: r.url, dataDir: join(r.root, 'one'), state: storeSourceState(store) });
    await first.source.start();
    const bad = r.write('profiles/broken.yaml', BAD).commit('bad');
    const st = await first.source.sync('test');
    expect(st.applied?.commit).toBe(good);
    expect(st.lastAttempt).toMatchObject({ commit: bad, valid: false });
    await first.source.stop();
    expect(existsSync(join(r.root, 'one', 'source', 'state.json'))).toBe(false);

    const second = source({ repo: r.url, dataDir: join(r.root, 'two'), state: storeSourceState(store) });
    await second.source.start();
    const st2 = second.source.status();
    expect(st2.applied?.commit).toBe(good);
    expect(second.applied.map((a) => a.info.commit)).toEqual([good]);
    expect(st2.lastAttempt).toMatchObject({ commit: bad, valid: false });
    // It validated the good commit to serve it, never the bad head it knows is refused.
    expect(second.loads).toHaveLength(1);
  });

  it('reads the state.json of an install from before once, then keeps it in the store', async () => {
    const { r, store } = await setup();
    const good = r.write('profiles/wifi.yaml', GOOD).commit('good');
    const dataDir = join(r.root, 'old');
    const legacy = join(dataDir, 'source', 'state.json');
    const old = source({ repo: r.url, dataDir });
    await old.source.start();
    await old.source.stop();
    expect(existsSync(legacy)).toBe(true);
    const state = storeSourceState(store, legacy);
    expect(JSON.parse((await state.read())!)).toMatchObject({ commit: good });
    const next = source({ repo: r.url, dataDir, state });
    await next.source.start();
    expect(next.source.status().applied?.commit).toBe(good);
    expect(JSON.parse((await store.getMaterial('blob', 'source-state'))!.toString())).toMatchObject({ commit: good });
  });

  it("a validated revision's webhook event is written with the state that records it, a rejected one has none; a state file takes none", async () => {
    const { r, store } = await setup();
    const good = r.write('profiles/wifi.yaml', GOOD).commit('good');
    const s = source({ repo: r.url, dataDir: join(r.root, 'ev'), state: storeSourceState(store) });
    const url = 'http://hooks.test/a';
    const registered = s.source.useAppliedEvent((info) => ({
      urls: [url],
      event: { id: `applied-${info.commit}`, type: 'revision.applied', at: '2026-01-01T00:00:00.000Z', data: { commit: info.commit } },
    }));
    expect(registered).toBe(true);
    await s.source.start();
    expect((await store.pendingEvents(url, 10)).map((row) => row.event.data.commit)).toEqual([good]);
    expect(JSON.parse((await store.getMaterial('blob', 'source-state'))!.toString())).toMatchObject({ commit: good });
    r.write('profiles/broken.yaml', BAD).commit('bad');
    expect((await s.source.sync('test')).applied?.commit).toBe(good);
    expect(await store.countEvents()).toBe(1);
    // A state.json cannot hold an event: the caller is told to emit it after 'validated' itself.
    expect(source({ repo: r.url, dataDir: join(r.root, 'file') }).source.useAppliedEvent(() => undefined)).toBe(false);
  });

  it('an unreadable saved state is ignored with a warning, not a crash', async () => {
    const { r, store } = await setup();
    const good = r.write('profiles/wifi.yaml', GOOD).commit('good');
    await store.putMaterial('blob', 'source-state', Buffer.from('{not json'));
    const s = source({ repo: r.url, dataDir: join(r.root, 'x'), state: storeSourceState(store) });
    await s.source.start();
    expect(s.source.status().applied?.commit).toBe(good);
  });
});

describe('the applied revision in the store', () => {
  it('comes back as it was applied (Maps and Sets included), with a digest; altered bytes are refused', async () => {
    const { r, store } = await setup();
    r.write('profiles/wifi.yaml', GOOD).commit('good');
    const s = source({ repo: r.url, dataDir: join(r.root, 'a'), state: storeSourceState(store) });
    await s.source.start();
    const rev = s.applied[0]!;
    expect(await loadAppliedRevision(store)).toBeUndefined();
    const digest = await saveAppliedRevision(store, rev);
    const back = await loadAppliedRevision(store);
    expect(back?.digest).toBe(digest);
    expect(back?.revision.info).toEqual(rev.info);
    expect(back?.revision.fleet.contentHash).toBe(rev.fleet.contentHash);
    expect([...back!.revision.fleet.secrets.keys()]).toEqual([...rev.fleet.secrets.keys()]);
    expect(back?.revision.fleet).toEqual(rev.fleet);
    const raw = (await store.getMaterial('blob', 'applied-revision'))!;
    raw.writeUInt8(raw.readUInt8(raw.length - 1) ^ 1, raw.length - 1);
    await store.putMaterial('blob', 'applied-revision', raw);
    await expect(loadAppliedRevision(store)).rejects.toThrow('does not match its digest');
  });
});
