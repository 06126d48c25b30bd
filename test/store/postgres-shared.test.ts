/**
 * Two Store instances on one PostgreSQL database, as two replicas would be: what one writes the
 * other reads, concurrent answers and compare-and-set commits are decided once, and a schema
 * newer than the server knows is refused.
 */
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Conflict, Unavailable } from '../../src/errors.js';
import { VersionConflictError } from '../../src/store/errors.js';
import { LATEST_SCHEMA } from '../../src/store/migrations/index.js';
import { PgStore } from '../../src/store/postgres.js';
import { missingPostgres, usePostgres } from '../helpers/postgres.js';

const cluster = usePostgres();
const at = (s: number) => new Date(Date.parse('2026-01-01T00:00:00.000Z') + s * 1000);
const identity = (h: string) => ({ certHash: h, issuerHash: 'i', subject: `CN=${h}`, notAfter: '2027-01-01T00:00:00.000Z' });
const payload = (u: string) => Buffer.from(`<plist>${u}</plist>`);

if (!cluster.available) missingPostgres('two PgStores on one database', cluster.reason);
(cluster.available ? describe : () => undefined)('two PgStores on one database', () => {
  let url: string;
  let a: PgStore;
  let b: PgStore;

  beforeEach(async () => {
    url = await cluster.cluster().database();
    [a, b] = await Promise.all([PgStore.open(url), PgStore.open(url)]);
  });
  afterEach(async () => {
    await Promise.all([a.close(), b.close()]);
  });

  async function enroll(id: string): Promise<void> {
    await a.authenticate(id, { UDID: id, Topic: 't' }, identity(`cert-${id}`), at(0));
    await a.tokenUpdate({ id, deviceId: id, type: 'device', active: true, createdAt: at(1).toISOString(), updatedAt: at(1).toISOString() });
  }

  it("work: two claimers never get the same row; a dead claimer's rows are reclaimed once its lease ran out", async () => {
    const ids = Array.from({ length: 40 }, (_, i) => `D${String(i).padStart(2, '0')}`);
    for (const id of ids) await a.addWork(id, at(0));
    // Both claim at once, a few rows at a time, until none is left.
    const got: Record<'A' | 'B', string[]> = { A: [], B: [] };
    await Promise.all(
      (['A', 'B'] as const).map(async (holder) => {
        const s = holder === 'A' ? a : b;
        for (;;) {
          const claims = await s.claimWork({ holder, limit: 3, leaseMs: 60_000, now: at(1) });
          if (claims.length === 0) return;
          got[holder].push(...claims.map((c) => c.deviceId));
        }
      }),
    );
    expect([...got.A, ...got.B].sort()).toEqual(ids);
    expect(got.A.filter((id) => got.B.includes(id))).toEqual([]);
    // A "dies" holding its rows: B takes them once A's claims ran out, and finishes them.
    expect(await b.claimWork({ holder: 'B', limit: 100, leaseMs: 60_000, now: at(30) })).toEqual([]);
    const reclaimed = await b.claimWork({ holder: 'B', limit: 100, leaseMs: 60_000, now: at(62) });
    expect(reclaimed.map((c) => c.deviceId).sort()).toEqual([...got.A, ...got.B].sort());
    for (const c of reclaimed) expect(await b.finishWork(c)).toBe(true);
    expect(await a.countWork()).toBe(0);
  });

  it('one writes, the other reads: devices, queue, results', async () => {
    await enroll('D1');
    expect((await b.getDevice('D1'))?.enrolledAt).toBe(at(1).toISOString());
    expect(await b.deviceForCert('cert-D1')).toBe('D1');
    await b.enqueue(['D1'], { uuid: 'c1', requestType: 'ProfileList', payload: payload('c1') }, at(2));
    expect((await a.nextCommand('D1', { skipNotNow: false }))?.payload.equals(payload('c1'))).toBe(true);
    expect(await a.recordResult('D1', 'c1', { status: 'Acknowledged', at: at(3).toISOString(), raw: Buffer.from('r') })).toBe('recorded');
    expect((await b.getCommand('D1', 'c1'))?.status).toBe('Acknowledged');
    expect(await b.nextCommand('D1', { skipNotNow: false })).toBeUndefined();
  });

  it('concurrent answers to one command from both: exactly one is recorded, NotNows all counted', async () => {
    await enroll('D1');
    await a.enqueue(['D1'], { uuid: 'c1', requestType: 'X', payload: payload('c1') }, at(1));
    await a.enqueue(['D1'], { uuid: 'c2', requestType: 'X', payload: payload('c2') }, at(1));
    const outcomes = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        (i % 2 ? a : b).recordResult('D1', 'c1', { status: 'Acknowledged', at: at(2 + i).toISOString(), raw: Buffer.from(`r${i}`) }),
      ),
    );
    expect(outcomes.filter((o) => o === 'recorded')).toHaveLength(1);
    expect(outcomes.filter((o) => o === 'duplicate')).toHaveLength(11);
    await Promise.all(
      Array.from({ length: 8 }, (_, i) => (i % 2 ? a : b).recordResult('D1', 'c2', { status: 'NotNow', at: at(20 + i).toISOString(), raw: Buffer.alloc(0) })),
    );
    expect((await a.getCommand('D1', 'c2'))?.notNowCount).toBe(8);
  });

  it('concurrent enqueues of one uuid from both: exactly one is queued, the rest are Conflict', async () => {
    await enroll('D1');
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) => (i % 2 ? a : b).enqueue(['D1'], { uuid: 'dup', requestType: 'X', payload: payload('dup') }, at(1))),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(Conflict);
    expect((await b.listCommands('D1')).items.map((c) => c.uuid)).toEqual(['dup']);
  });

  it('reconcile state: a writer that read a stale version loses, nothing of its change lands, and a retry wins', async () => {
    await enroll('D1');
    const readA = (await a.getArtifacts('D1'))?.version ?? 0;
    const readB = (await b.getArtifacts('D1'))?.version ?? 0;
    expect([readA, readB]).toEqual([0, 0]);
    const change = (u: string) => ({ enqueue: [{ targets: ['D1'], cmd: { uuid: u, requestType: 'InstallProfile', payload: payload(u) } }], cancel: [] });
    const [ra, rb] = await Promise.allSettled([
      a.commitReconcile('D1', { deviceId: 'D1', artifacts: {}, revision: 'from-a' }, change('from-a'), at(2), readA),
      b.commitReconcile('D1', { deviceId: 'D1', artifacts: {}, revision: 'from-b' }, change('from-b'), at(2), readB),
    ]);
    const won = [ra, rb].filter((r) => r.status === 'fulfilled');
    const lost = [ra, rb].filter((r) => r.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect((lost[0] as PromiseRejectedResult).reason).toBeInstanceOf(VersionConflictError);
    const winner = ra.status === 'fulfilled' ? 'from-a' : 'from-b';
    const state = await b.getArtifacts('D1');
    expect(state).toMatchObject({ revision: winner, version: 1 });
    expect((await a.listCommands('D1')).items.map((c) => c.uuid)).toEqual([winner]);
    // The loser reads again and commits on top.
    const loser = ra.status === 'fulfilled' ? b : a;
    const again = (await loser.getArtifacts('D1'))!;
    expect((await loser.commitReconcile('D1', { ...again, revision: 'retry' }, change('retry'), at(3), again.version)).version).toBe(2);
    expect((await a.listCommands('D1')).items.map((c) => c.uuid)).toEqual([winner, 'retry']);
  });

  it('group commit: of many commits asked for at once, a device whose state the other store moved on fails alone, and so does one with a Conflict', async () => {
    const ids = Array.from({ length: 20 }, (_, i) => `G${String(i).padStart(2, '0')}`);
    for (const id of ids) await enroll(id);
    const install = (u: string, bytes = u) => ({ uuid: u, requestType: 'InstallProfile', payload: payload(bytes) });
    // B moves G03 on; G07's command reuses a uuid B stored with other bytes.
    await b.commitReconcile('G03', { deviceId: 'G03', artifacts: {}, revision: 'b' }, { enqueue: [], cancel: [] }, at(1), 0);
    await b.enqueue(['G00'], install('taken', 'other bytes'), at(1));
    const results = await Promise.allSettled(
      ids.map((id) =>
        a.commitReconcile(
          id,
          { deviceId: id, artifacts: {}, revision: 'a' },
          { enqueue: [{ targets: [id], cmd: id === 'G07' ? install('taken') : install('shared') }], cancel: [] },
          at(2),
          0,
        ),
      ),
    );
    const failed = ids.filter((_, i) => results[i]!.status === 'rejected');
    expect(failed).toEqual(['G03', 'G07']);
    expect((results[3] as PromiseRejectedResult).reason).toBeInstanceOf(VersionConflictError);
    expect((results[7] as PromiseRejectedResult).reason).toBeInstanceOf(Conflict);
    for (const id of ids) {
      const state = await b.getArtifacts(id);
      const queued = (await b.listCommands(id)).items.map((c) => c.uuid);
      if (id === 'G03') expect([state?.revision, state?.version, queued]).toEqual(['b', 1, []]);
      else if (id === 'G07') expect([state, queued]).toEqual([undefined, []]);
      else if (id === 'G00') expect([state?.revision, queued]).toEqual(['a', ['taken', 'shared']]);
      else expect([state?.revision, state?.version, queued]).toEqual(['a', 1, ['shared']]);
    }
  });

  it('one install committed for many devices from both at once: each gets it, one payload; other bytes under its uuid are a Conflict; the payload goes with its last command', async () => {
    const payloadRows = async (uuid: string) => {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        return (await c.query<{ n: string }>('SELECT count(*) AS n FROM payloads WHERE uuid = $1', [uuid])).rows[0]!.n;
      } finally {
        await c.end();
      }
    };
    const ids = Array.from({ length: 12 }, (_, i) => `R${i}`);
    for (const id of [...ids, 'Z', 'W']) await enroll(id);
    const install = { uuid: 'same-install', requestType: 'InstallProfile', payload: payload('v1') };
    const add = (s: PgStore, id: string, cmd = install, version = 0) =>
      s.commitReconcile(id, { deviceId: id, artifacts: {}, revision: 'r1' }, { enqueue: [{ targets: [id], cmd }], cancel: [] }, at(2), version);
    await Promise.all(ids.map((id, i) => add(i % 2 ? a : b, id)));
    for (const id of ids) expect((await a.nextCommand(id, { skipNotNow: false }))?.payload).toEqual(install.payload);
    expect(await payloadRows('same-install')).toBe('1');

    await expect(add(a, 'Z', { ...install, payload: payload('v2') })).rejects.toBeInstanceOf(Conflict);
    expect(await a.getArtifacts('Z')).toBeUndefined();
    expect((await b.listCommands('Z')).items).toEqual([]);

    // Every device cancels its copy while W adds one: the payload stays for W, then goes with W's.
    const cancel = (s: PgStore, id: string, version: number) =>
      s.commitReconcile(
        id,
        { deviceId: id, artifacts: {}, revision: 'r2' },
        { enqueue: [], cancel: [{ enrollmentId: id, uuid: 'same-install' }] },
        at(3),
        version,
      );
    const [, ...cancelled] = await Promise.all([add(b, 'W'), ...ids.map((id, i) => cancel(i % 2 ? b : a, id, 1))]);
    expect(cancelled.every((r) => r.cancelled.length === 1)).toBe(true);
    expect((await a.nextCommand('W', { skipNotNow: false }))?.payload).toEqual(install.payload);
    expect(await payloadRows('same-install')).toBe('1');
    await cancel(a, 'W', 1);
    expect(await payloadRows('same-install')).toBe('0');
  });

  it('an Authenticate on one and results on the other never interleave: no answer to a dropped command is recorded', async () => {
    await enroll('D1');
    for (let i = 0; i < 20; i++) await a.enqueue(['D1'], { uuid: `q${i}`, requestType: 'X', payload: payload(`q${i}`) }, at(1));
    const answers = Array.from({ length: 20 }, (_, i) =>
      b.recordResult('D1', `q${i}`, { status: 'Acknowledged', at: at(5).toISOString(), raw: Buffer.from('r') }),
    );
    const reauth = a.authenticate('D1', { UDID: 'D1', Topic: 't' }, identity('cert-D1'), at(4));
    const outcomes = await Promise.all(answers);
    await reauth;
    const recorded = outcomes.flatMap((o, i) => (o === 'recorded' ? [`q${i}`] : []));
    // Whatever was answered before the Authenticate is history; the rest was dropped, unanswered.
    const listed = (await a.listCommands('D1')).items;
    expect(listed.map((c) => c.uuid).sort()).toEqual([...recorded].sort());
    expect(listed.every((c) => c.status === 'Acknowledged')).toBe(true);
    expect(outcomes.every((o) => o === 'recorded' || o === 'unknown')).toBe(true);
    expect(await b.nextCommand('D1', { skipNotNow: false })).toBeUndefined();
  });

  it('a one-time value taken concurrently from both is handed out exactly once (DELETE ... RETURNING)', async () => {
    for (let round = 0; round < 5; round++) {
      const key = `challenge-${round}`;
      expect(await a.putMaterial('challenge', key, Buffer.from(`secret-${round}`))).toBe(true);
      const takes = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).takeMaterial('challenge', key)));
      const got = takes.filter((t) => t !== undefined);
      expect(got).toHaveLength(1);
      expect(got[0]!.toString()).toBe(`secret-${round}`);
      expect(await b.getMaterial('challenge', key)).toBeUndefined();
    }
    // First writer wins across servers too.
    const puts = await Promise.all(Array.from({ length: 6 }, (_, i) => (i % 2 ? a : b).putMaterial('blob', 'ca', Buffer.from(`ca-${i}`), { ifAbsent: true })));
    expect(puts.filter(Boolean)).toHaveLength(1);
    expect((await a.getMaterial('blob', 'ca'))?.toString()).toBe(`ca-${puts.indexOf(true)}`);
  });

  it('the leader lease asked for by both at once: one holder; the other takes it with a larger token once it expires', async () => {
    const grants = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).acquireLease('leader', `R${i}`, 1000, at(0))));
    const granted = grants.filter((g) => g !== undefined);
    expect(granted).toHaveLength(1);
    const first = granted[0]!;
    expect((await (first.holder === 'R0' ? b : a).getLease('leader', at(0.5)))?.holder).toBe(first.holder);
    const next = first.holder === 'R1' ? 'R2' : 'R1';
    expect(await b.acquireLease('leader', next, 1000, at(0.9))).toBeUndefined();
    expect(await b.acquireLease('leader', next, 1000, at(1))).toMatchObject({ holder: next, token: first.token + 1 });
  });

  it('refuses a database whose schema is newer than this server knows, and one behind when told not to migrate', async () => {
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      await admin.query('INSERT INTO orchard_migrations (version, name) VALUES ($1, $2)', [LATEST_SCHEMA + 1, 'from-the-future']);
      await expect(PgStore.open(url)).rejects.toThrow(Unavailable);
      await expect(PgStore.open(url)).rejects.toThrow(
        new RegExp(`schema is at version ${LATEST_SCHEMA + 1}, newer than this server knows \\(${LATEST_SCHEMA}\\)`),
      );
      expect(await a.health()).toMatchObject({ ready: false, reason: expect.stringMatching(/schema version/) });
    } finally {
      await admin.end();
    }
    const fresh = await cluster.cluster().database();
    await expect(PgStore.open(fresh, { migrate: false })).rejects.toThrow(/orchard migrate/);
    const migrated = await PgStore.open(fresh);
    expect(await migrated.health()).toEqual({ backend: 'postgres', ready: true });
    await migrated.close();
  });
});
