/**
 * The kept status counts on PostgreSQL (migration 008): appended as deltas by the status row
 * trigger, folded by any replica. Two stores writing and folding at once stay exact, and an install
 * from before the migration gets its counts from a recount of its rows when it migrates.
 */
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PgStore } from '../../src/store/postgres.js';
import type { StatusProfiles } from '../../src/store/status.js';
import { missingPostgres, usePostgres } from '../helpers/postgres.js';

const cluster = usePostgres();
const at = (s: number) => new Date(Date.parse('2026-01-01T00:00:00.000Z') + s * 1000);
const identity = (h: string) => ({ certHash: h, issuerHash: 'i', subject: `CN=${h}`, notAfter: '2027-01-01T00:00:00.000Z' });

function verdict(n: number, round: number): StatusProfiles {
  const state = (['in-sync', 'pending', 'failed', 'drifted'] as const)[(n + round) % 4]!;
  const blueprints = ['all', `b${(n + round) % 3}`];
  const phase = state === 'in-sync' ? 'verified' : state === 'failed' ? 'failed' : 'pending';
  return {
    state,
    blueprints,
    matched: [...blueprints, 'suspended'],
    profiles: { total: 2, verified: 0, pending: 0, failed: 0 },
    phases: Object.fromEntries(blueprints.map((b) => [`p.${b}`, phase])),
    problems: [],
  };
}

async function sql<T extends pg.QueryResultRow>(url: string, text: string, values: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(text, values)).rows;
  } finally {
    await c.end();
  }
}

/** What the rows say, counted by the GROUP BY queries the counts replaced. */
async function recount(url: string): Promise<{ fleet: Record<string, number>; blueprints: Record<string, number>; phases: Record<string, number> }> {
  const fleet = await sql<{ state: string; n: string }>(url, 'SELECT state, count(*) AS n FROM status_rows GROUP BY state');
  const bps = await sql<{ b: string; state: string; n: string }>(url, 'SELECT b, state, count(*) AS n FROM status_rows, unnest(blueprints) AS b GROUP BY 1, 2');
  const phases = await sql<{ b: string; id: string; phase: string; n: string }>(
    url,
    `SELECT b, p.key AS id, p.value AS phase, count(*) AS n FROM status_rows, unnest(blueprints) AS b, json_each_text(phases) AS p
     WHERE state <> 'unenrolled' AND p.value <> 'pending' GROUP BY 1, 2, 3`,
  );
  return {
    fleet: Object.fromEntries(fleet.map((r) => [r.state, Number(r.n)])),
    blueprints: Object.fromEntries(bps.map((r) => [`${r.b} ${r.state}`, Number(r.n)])),
    phases: Object.fromEntries(phases.map((r) => [`${r.b} ${r.id} ${r.phase}`, Number(r.n)])),
  };
}

/** The same from the store's kept counts. */
async function kept(store: PgStore): Promise<Awaited<ReturnType<typeof recount>>> {
  const f = await store.fleetCounts({ now: at(0), staleDays: 7 });
  const b = await store.blueprintCounts(['all', 'b0', 'b1', 'b2']);
  const out: Awaited<ReturnType<typeof recount>> = { fleet: {}, blueprints: {}, phases: {} };
  for (const [st, n] of Object.entries(f.byState)) if (n) out.fleet[st] = n;
  for (const [name, c] of Object.entries(b)) {
    for (const [st, n] of Object.entries(c.byState)) if (n) out.blueprints[`${name} ${st}`] = n;
    for (const [id, n] of Object.entries(c.verified)) out.phases[`${name} ${id} verified`] = n;
    for (const [id, n] of Object.entries(c.failed)) out.phases[`${name} ${id} failed`] = n;
  }
  return out;
}

if (!cluster.available) missingPostgres('kept status counts on PostgreSQL', cluster.reason);
(cluster.available ? describe : () => undefined)('kept status counts on PostgreSQL', () => {
  let url: string;
  let a: PgStore;
  let b: PgStore;

  beforeEach(async () => {
    url = await cluster.cluster().database();
    // Folding only when asked, so the test decides when deltas are folded.
    [a, b] = await Promise.all([PgStore.open(url, { countFoldMs: 3_600_000 }), PgStore.open(url, { countFoldMs: 3_600_000 })]);
  });
  afterEach(async () => {
    await Promise.all([a.close(), b.close()]);
  });

  async function enroll(s: PgStore, id: string): Promise<void> {
    await s.authenticate(id, { UDID: id, Topic: 't' }, identity(`cert-${id}`), at(0));
    await s.tokenUpdate({ id, deviceId: id, type: 'device', active: true, createdAt: at(1).toISOString(), updatedAt: at(1).toISOString() });
  }

  it('two stores writing verdicts and folding at once: the counts always equal a recount, and a fold leaves no delta', async () => {
    const ids = Array.from({ length: 30 }, (_, i) => `D${String(i).padStart(2, '0')}`);
    await Promise.all(ids.map((id, i) => enroll(i % 2 ? a : b, id)));
    for (let round = 0; round < 3; round++) {
      await Promise.all([
        ...ids.map(async (id, n) => {
          const s = (n + round) % 2 ? a : b;
          const version = (await s.getArtifacts(id))?.version ?? 0;
          await s.commitReconcile(id, { deviceId: id, artifacts: {} }, { enqueue: [], cancel: [], status: verdict(n, round) }, at(2), version);
          if (n % 7 === round) await s.checkOut(id, at(3));
        }),
        a.foldCounts(),
        b.foldCounts(),
      ]);
      expect(await kept(a)).toEqual(await recount(url));
      expect(await kept(b)).toEqual(await recount(url));
    }
    await Promise.all([a.foldCounts(), b.foldCounts()]);
    await a.foldCounts();
    expect(await sql(url, 'SELECT * FROM status_count_deltas')).toEqual([]);
    expect(await kept(b)).toEqual(await recount(url));
    expect((await recount(url)).fleet.unenrolled).toBeGreaterThan(0);
    // A fold drops the keys nothing counts for any more.
    expect(await sql(url, 'SELECT * FROM status_counts WHERE n = 0')).toEqual([]);
  });

  it('a fold of a mass change vacuums the deltas, so later reads do not scan their dead rows', async () => {
    await enroll(a, 'V1');
    await a.foldCounts();
    const before = await kept(a);
    // What an adoption of the whole fleet leaves: tens of thousands of deltas, here netting to zero.
    await sql(url, `INSERT INTO status_count_deltas SELECT '', 'fleet', 'in-sync', CASE WHEN g % 2 = 0 THEN 1 ELSE -1 END FROM generate_series(1, 12000) AS g`);
    expect(await a.foldCounts()).toBe(12000);
    expect(await kept(a)).toEqual(before);
    // VACUUM truncated the emptied pages; a DELETE alone leaves them to be scanned until autovacuum.
    const [size] = await sql<{ bytes: string }>(url, "SELECT pg_relation_size('status_count_deltas') AS bytes");
    expect(Number(size!.bytes)).toBe(0);
  });

  it('an install from before migration 008 gets its counts from its rows when it migrates', async () => {
    for (let n = 0; n < 12; n++) {
      await enroll(a, `M${n}`);
      await a.commitReconcile(`M${n}`, { deviceId: `M${n}`, artifacts: {} }, { enqueue: [], cancel: [], status: verdict(n, 0) }, at(2), 0);
    }
    const expected = await recount(url);
    await Promise.all([a.close(), b.close()]);
    // What the schema was before 008: no counts, no trigger, the old state index.
    await sql(
      url,
      `DROP TRIGGER status_rows_count ON status_rows; DROP FUNCTION status_rows_count(); DROP FUNCTION status_count_keys(text, boolean, text[], text[], json);
       DROP TABLE status_counts, status_count_deltas; DROP INDEX status_rows_state, status_rows_seen;
       CREATE INDEX status_rows_state ON status_rows (state); DELETE FROM orchard_migrations WHERE version = 8`,
    );
    await expect(PgStore.open(url, { migrate: false })).rejects.toThrow(/this server needs \d+: run `orchard migrate/);
    a = await PgStore.open(url);
    b = await PgStore.open(url);
    expect((await sql<{ version: number }>(url, 'SELECT version FROM orchard_migrations WHERE version = 8')).length).toBe(1);
    expect(await kept(a)).toEqual(expected);
    expect(expected.fleet).toMatchObject({ 'in-sync': 3, pending: 3, failed: 3, drifted: 3 });
  });

  it('a migration recorded as missing below the newest applied one (landed later, developed side by side) is applied at open', async () => {
    await Promise.all([a.close(), b.close()]);
    await sql(url, 'DROP TABLE work; DELETE FROM orchard_migrations WHERE version = 6');
    await expect(PgStore.open(url, { migrate: false })).rejects.toThrow(/orchard migrate/);
    a = await PgStore.open(url);
    b = await PgStore.open(url);
    await a.addWork('W1', at(0));
    expect(await b.countWork()).toBe(1);
    expect((await sql<{ version: number }>(url, 'SELECT version FROM orchard_migrations WHERE version = 6')).length).toBe(1);
  });
});
