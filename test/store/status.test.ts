/**
 * The read model and the material role on LevelDB (the shared suites), the one-time backfill of stores written
 * before it, and the in-memory index against a recount from its rows under random changes.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { Level } from 'level';
import { describe, expect, it } from 'vitest';
import { LevelStore } from '../../src/store/leveldb.js';
import { DAY_MS, DEVICE_STATES, StatusIndex, rowState, type DeviceStatus, type StatusQuery } from '../../src/store/status.js';
import { leaseSuite } from './lease-suite.js';
import { workSuite } from './work-suite.js';
import { materialSuite } from './material-suite.js';
import { levelHarness } from './harness.js';
import { statusSuite } from './status-suite.js';

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'orchard-status-'));
}

statusSuite('LevelStore', levelHarness);
materialSuite('LevelStore', levelHarness, { persistent: true });
leaseSuite('LevelStore', levelHarness);
workSuite('LevelStore', levelHarness);

describe('LevelStore read model', () => {
  it('gives every device of a store written before the read model a row, once, at open', async () => {
    const dir = await tempDir();
    try {
      let store = await LevelStore.open(dir);
      const at = new Date('2026-01-01T00:00:00.000Z');
      for (const id of ['A', 'B', 'C']) {
        await store.authenticate(
          id,
          { UDID: id, Topic: 't', SerialNumber: `SN-${id}` },
          { certHash: id, issuerHash: 'i', subject: 's', notAfter: at.toISOString() },
          at,
        );
      }
      await store.close();
      // What an older version left: no rows and no marker.
      const db = new Level<string, unknown>(dir, { valueEncoding: 'json' });
      await db.open();
      const rows = await db.keys({ gte: 'v\x00', lt: 'v\x01' }).all();
      expect(rows).toHaveLength(3);
      await db.batch([...rows.map((key) => ({ type: 'del' as const, key })), { type: 'del', key: 'm\x00status' }]);
      await db.close();
      store = await LevelStore.open(dir);
      expect((await store.fleetCounts({ now: at, staleDays: 7 })).byState.unenrolled).toBe(3);
      expect((await store.getStatus('B'))?.facts.serialNumber).toBe('SN-B');
      await store.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('StatusIndex', () => {
  // Not on an hour: the stale cut falls inside an hour of contacts.
  const NOW = Date.parse('2026-03-01T00:29:31.500Z');
  const BPS = ['a', 'b', 'c'];
  const PROFILES = ['p1', 'p2'];
  const phase = fc.constantFrom('verified' as const, 'pending' as const, 'failed' as const);
  const row = (id: string): fc.Arbitrary<DeviceStatus> =>
    fc
      .record({
        enrolled: fc.boolean(),
        ageDays: fc.integer({ min: 0, max: 20 }),
        profiles: fc.option(
          fc.record({
            state: fc.constantFrom('in-sync' as const, 'pending' as const, 'drifted' as const, 'failed' as const),
            blueprints: fc.subarray(BPS),
            extra: fc.subarray(BPS),
            phases: fc.dictionary(fc.constantFrom(...PROFILES), phase),
          }),
          { nil: undefined },
        ),
      })
      .map(({ enrolled, ageDays, profiles }) => ({
        id,
        facts: { enrolled, authenticatedAt: new Date(NOW - ageDays * DAY_MS).toISOString() },
        ...(profiles
          ? {
              profiles: {
                state: profiles.state,
                blueprints: profiles.blueprints,
                matched: [...new Set([...profiles.blueprints, ...profiles.extra])],
                profiles: { total: 0, verified: 0, pending: 0, failed: 0 },
                phases: profiles.phases,
                problems: [],
              },
            }
          : {}),
      }));
  const ID = fc.constantFrom('d1', 'd2', 'd3', 'd4', 'd5', 'D6', 'e', '');
  const op = fc.oneof(
    ID.chain((id) => fc.tuple(fc.constant(id), fc.option(row(id), { nil: undefined }))),
    // A contact at any millisecond of the last 20 days (stale counts walk the hour of the cut).
    fc
      .tuple(ID, fc.oneof(fc.integer({ min: 0, max: 20 * DAY_MS }), fc.integer({ min: 7 * DAY_MS - 3_600_000, max: 7 * DAY_MS + 3_600_000 })))
      .map(([id, ago]) => [id, NOW - ago] as const),
  );

  it('always answers what a recount of its rows says', () => {
    fc.assert(
      fc.property(
        fc.array(op, { maxLength: 40 }),
        fc.constantFrom(undefined, ...DEVICE_STATES, 'stale' as const),
        fc.constantFrom(undefined, ...BPS),
        (ops, state, blueprint) => {
          const index = new StatusIndex();
          const rows = new Map<string, DeviceStatus>();
          // Last contact never goes back: the latest authenticatedAt or contact since the row appeared
          // (a contact before it counts when it appears).
          const seen = new Map<string, number>();
          const before = new Map<string, number>();
          for (const [id, r] of ops) {
            if (typeof r === 'number') {
              index.touch(id, r);
              if (rows.has(id)) seen.set(id, Math.max(seen.get(id)!, r));
              else before.set(id, Math.max(before.get(id) ?? 0, r));
              continue;
            }
            index.set(id, r);
            if (r) {
              rows.set(id, r);
              seen.set(id, Math.max(seen.get(id) ?? 0, before.get(id) ?? 0, Date.parse(r.facts.authenticatedAt)));
              before.delete(id);
            } else {
              rows.delete(id);
              seen.delete(id);
            }
          }
          const all = [...rows.values()].sort((x, y) => (x.id < y.id ? -1 : 1));
          const cut = NOW - 7 * DAY_MS;
          const stale = (r: DeviceStatus) => seen.get(r.id)! < cut;
          const counts = index.fleet(new Date(NOW), 7);
          expect(counts.total).toBe(all.length);
          expect(counts.enrolled).toBe(all.filter((r) => r.facts.enrolled).length);
          expect(counts.stale).toBe(all.filter(stale).length);
          for (const s of DEVICE_STATES) expect(counts.byState[s]).toBe(all.filter((r) => rowState(r) === s).length);
          const bps = index.blueprints(BPS);
          for (const b of BPS) {
            const sel = all.filter((r) => r.profiles?.blueprints.includes(b));
            expect(bps[b]!.matched).toBe(all.filter((r) => r.profiles?.matched.includes(b)).length);
            expect(bps[b]!.selected).toBe(sel.length);
            for (const p of PROFILES) {
              const reached = sel.filter((r) => r.facts.enrolled);
              expect(bps[b]!.verified[p] ?? 0).toBe(reached.filter((r) => r.profiles!.phases[p] === 'verified').length);
              expect(bps[b]!.failed[p] ?? 0).toBe(reached.filter((r) => r.profiles!.phases[p] === 'failed').length);
            }
          }
          const q: StatusQuery = { state, blueprint, limit: 2, now: new Date(NOW), staleDays: 7 };
          const matching = all.filter(
            (r) =>
              (state === undefined || (state === 'stale' ? stale(r) : rowState(r) === state)) &&
              (blueprint === undefined || !!r.profiles?.blueprints.includes(blueprint)),
          );
          const paged: string[] = [];
          let after: string | undefined;
          for (let i = 0; i < 50; i++) {
            const page = index.query({ ...q, after });
            expect(page.total).toBe(matching.length);
            if (!page.ids.length) break;
            paged.push(...page.ids);
            after = page.ids[page.ids.length - 1];
          }
          expect(paged).toEqual(matching.map((r) => r.id));
          expect(index.query({ ...q, offset: 1, limit: 3 }).ids).toEqual(matching.slice(1, 4).map((r) => r.id));
        },
      ),
      { numRuns: 300 },
    );
  });
});
