/**
 * The device lifecycle on PostgreSQL: a real `orchard serve --store postgres://...` process and
 * simulated devices (enroll, Idle, a command, its result), then a restart on the same database
 * with an empty data directory of its own: the queue, the results and the identities are in the
 * database. `/readyz` says the store is ready, and says why not while the schema is behind or
 * ahead of what the server knows (a replica left on the old version during an upgrade).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createCA, createDeviceIdentity } from '../../src/identity/ca.js';
import { SimulatedDevice } from '../../src/sim/device.js';
import pg from 'pg';
// The version before the latest: numbers are taken by helpers in parallel, so they may have gaps.
import { LATEST_SCHEMA, MIGRATIONS } from '../../src/store/migrations/index.js';
import { PgStore } from '../../src/store/postgres.js';
import { missingPostgres, usePostgres } from '../helpers/postgres.js';
import { spawnServer, waitExit } from '../helpers/process.js';

const cluster = usePostgres();
const dir = mkdtempSync(join(tmpdir(), 'orchard-e2e-pg-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

if (!cluster.available) missingPostgres('orchard serve --store postgres://', cluster.reason);
(cluster.available ? describe : () => undefined)('orchard serve --store postgres://', () => {
  it('enrolls devices, serves Idle, queues a command, records its result; a restart finds it all in the database', async () => {
    const url = await cluster.cluster().database();
    const ca = createCA({ commonName: 'PG e2e CA' });
    writeFileSync(join(dir, 'ca.pem'), ca.certPem);
    // Both processes are given the material key: the CA in the database is sealed with it.
    const env = { ORCHARD_API_TOKEN: 'pg-admin', ORCHARD_MATERIAL_KEY: 'the e2e material key of both processes' };
    const args = (data: string) => ['--store', url, '--data-dir', join(dir, data), '--trust-ca', join(dir, 'ca.pem')];
    let srv = await spawnServer(args('data-1'), env);
    try {
      const ready = await fetch(`${srv.url}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toEqual({ backend: 'postgres', ready: true });

      const identities = [0, 1, 2].map((i) => createDeviceIdentity(ca, `pg-${i}`));
      const at = (serverUrl: string) => identities.map((identity, i) => new SimulatedDevice({ serverUrl, identity, udid: `PG-E2E-${i}` }));
      const devices = at(srv.url);
      for (const d of devices) await d.enroll();
      // Whatever the server queues at enrollment (inventory), answered; then the queue is empty.
      for (const d of devices) await d.connect();
      for (const d of devices) expect(await d.connect()).toEqual([]);

      const res = await fetch(`${srv.url}/api/v1/commands`, {
        method: 'POST',
        headers: { authorization: 'Bearer pg-admin', 'content-type': 'application/json' },
        body: JSON.stringify({ targets: devices.map((d) => d.udid), command: { RequestType: 'SecurityInfo' }, priority: 70 }),
      });
      expect(res.status).toBe(201);
      const { commandUUID } = (await res.json()) as { commandUUID: string };
      const handled = await devices[0]!.connect();
      expect(handled.map((c) => [c.commandUUID, c.requestType, c.status])).toEqual([[commandUUID, 'SecurityInfo', 'Acknowledged']]);

      const listed = await fetch(`${srv.url}/api/v1/devices/${devices[0]!.udid}/commands`, { headers: { authorization: 'Bearer pg-admin' } });
      const cmds = ((await listed.json()) as { commands: { commandUUID: string; status: string }[] }).commands;
      expect(cmds.find((c) => c.commandUUID === commandUUID)?.status).toBe('Acknowledged');

      // SIGTERM, then a new process with an empty data directory of its own on the same database.
      srv.child.kill('SIGTERM');
      await waitExit(srv.child);
      expect(srv.child.exitCode).toBe(0);
      srv = await spawnServer(args('data-2'), env);
      // Devices 1 and 2 still have the command waiting; device 0's answer is not asked again.
      const again = at(srv.url);
      for (const d of again.slice(1)) expect((await d.connect()).map((c) => c.commandUUID)).toEqual([commandUUID]);
      expect(await again[0]!.connect()).toEqual([]);
    } finally {
      srv.child.kill('SIGTERM');
      await waitExit(srv.child);
    }
    // What the processes wrote, read through the store directly.
    const store = await PgStore.open(url);
    try {
      expect((await store.listDeviceIds()).items).toEqual(['PG-E2E-0', 'PG-E2E-1', 'PG-E2E-2']);
      for (const id of ['PG-E2E-0', 'PG-E2E-1', 'PG-E2E-2']) expect((await store.getEnrollment(id))?.active).toBe(true);
      const security = (await store.getDevice('PG-E2E-1'))?.reported.SecurityInfo;
      expect(security?.commandUUID).toBeDefined();
    } finally {
      await store.close();
    }
  });

  it('readyz: 503 naming both versions while the schema is ahead of or behind this server or misses a middle migration, 200 again once it matches', async () => {
    const url = await cluster.cluster().database();
    const env = { ORCHARD_API_TOKEN: 'pg-admin', ORCHARD_MATERIAL_KEY: 'the readyz material key' };
    const srv = await spawnServer(['--store', url, '--data-dir', join(dir, 'data-ready')], env);
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    const readyz = async () => {
      const res = await fetch(`${srv.url}/readyz`);
      return { status: res.status, body: (await res.json()) as unknown };
    };
    try {
      expect(await readyz()).toEqual({ status: 200, body: { backend: 'postgres', ready: true } });
      // A newer Orchard migrated the database on: this server's queries may no longer fit it.
      await db.query('INSERT INTO orchard_migrations (version, name) VALUES ($1, $2)', [LATEST_SCHEMA + 1, 'from-a-newer-server']);
      expect(await readyz()).toEqual({
        status: 503,
        body: { backend: 'postgres', ready: false, reason: `schema version ${LATEST_SCHEMA + 1}, this server needs ${LATEST_SCHEMA}` },
      });
      await db.query('DELETE FROM orchard_migrations WHERE version = $1', [LATEST_SCHEMA + 1]);
      expect((await readyz()).status).toBe(200);
      // Behind: the latest migration's record gone (restored from an older backup, say).
      const { rows } = await db.query<{ name: string; applied_at: Date }>('DELETE FROM orchard_migrations WHERE version = $1 RETURNING name, applied_at', [
        LATEST_SCHEMA,
      ]);
      expect(rows).toHaveLength(1);
      expect(await readyz()).toEqual({
        status: 503,
        body: { backend: 'postgres', ready: false, reason: `schema version ${MIGRATIONS.at(-2)!.version}, this server needs ${LATEST_SCHEMA}` },
      });
      // Not ready is not down: devices are still answered (the load balancer decides where they go).
      expect((await fetch(`${srv.url}/healthz`)).status).toBe(200);
      await db.query('INSERT INTO orchard_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [LATEST_SCHEMA, rows[0]!.name, rows[0]!.applied_at]);
      expect(await readyz()).toEqual({ status: 200, body: { backend: 'postgres', ready: true } });
      // A middle migration's record gone while the latest is there: its tables may be missing too.
      const middle = MIGRATIONS[Math.floor(MIGRATIONS.length / 2)]!;
      const gone = await db.query<{ name: string; applied_at: Date }>('DELETE FROM orchard_migrations WHERE version = $1 RETURNING name, applied_at', [
        middle.version,
      ]);
      expect(gone.rows).toHaveLength(1);
      expect(await readyz()).toEqual({
        status: 503,
        body: { backend: 'postgres', ready: false, reason: `schema version ${LATEST_SCHEMA} without ${middle.version}, this server needs ${LATEST_SCHEMA}` },
      });
      await db.query('INSERT INTO orchard_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [
        middle.version,
        gone.rows[0]!.name,
        gone.rows[0]!.applied_at,
      ]);
      expect(await readyz()).toEqual({ status: 200, body: { backend: 'postgres', ready: true } });
    } finally {
      await db.end();
      srv.child.kill('SIGTERM');
      await waitExit(srv.child);
    }
  });
});
