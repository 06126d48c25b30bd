/**
 * On PostgreSQL every store role is in the database: a server writes DDM sets and status, a
 * rollout's state and ABM devices; none of it is under its data directory, and a second server
 * with a fresh data directory on the same database sees all of it (while the first runs, and
 * after the first's data directory is gone).
 */
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { RolloutState } from '../../src/store/rollouts.js';
import { missingPostgres, usePostgres } from '../helpers/postgres.js';
import { http, startTestServer } from '../helpers/server.js';
import { set, status } from './ddm-suite.js';

const pg = usePostgres();

const rollout: RolloutState = {
  blueprint: 'office',
  contentKey: 'key-office',
  revision: 'a'.repeat(40),
  step: 1,
  startedAt: '2026-01-01T00:00:00.000Z',
  stepStartedAt: '2026-01-01T01:00:00.000Z',
  halted: { at: '2026-01-01T02:00:00.000Z', reason: 'over the gate' },
  acceptedFailures: 0,
};

if (!pg.available) missingPostgres('every store role on PostgreSQL', pg.reason);
(pg.available ? describe : () => undefined)('every store role on PostgreSQL', () => {
  it('a second server with a fresh data directory sees the DDM state, rollout state and ABM devices; the first wrote no files for them', async () => {
    const url = await pg.cluster().database();
    const a = await startTestServer({ store: url });
    const b = await startTestServer({ store: url });
    try {
      const dev = a.device();
      await dev.enroll();
      const id = dev.udid;
      await a.ddmStore.putDeclarationSet(id, 'current', set('tok-1', 8));
      await a.ddmStore.putDdmStatus(id, status);
      await a.rolloutStore.putRollout(rollout);
      await a.abmStore.applyAbmPage('main', {
        upserts: [{ serial_number: 'C02SHARED01', model: 'MacBook Air', token: 'main', syncedAt: '2026-01-01T00:00:00.000Z' }],
        deletes: [],
        cursor: 'cursor-1',
      });
      for (const role of ['ddm', 'rollouts', 'abm']) expect(existsSync(join(a.cfg.dataDir, role)), role).toBe(false);
      if (existsSync(a.cfg.dataDir)) expect(readdirSync(a.cfg.dataDir).filter((f) => /ddm|rollout|abm/.test(f))).toEqual([]);

      const seen = async (srv: typeof b) => {
        const auth = { authorization: `Bearer ${srv.adminToken}` };
        const device = await http(`${srv.url}/api/v1/devices/${encodeURIComponent(id)}`, { headers: auth });
        expect(device.status).toBe(200);
        const ddm = (device.json() as { ddm: { declarations: { identifier: string; phase: string }[] } }).ddm;
        expect(ddm.declarations).toMatchObject([{ identifier: 'com.example.passcode', phase: 'verified' }]);
        const abm = await http(`${srv.url}/api/v1/abm/devices`, { headers: auth });
        expect(abm.status).toBe(200);
        expect((abm.json() as { devices: { serialNumber: string }[] }).devices.map((d) => d.serialNumber)).toEqual(['C02SHARED01']);
        expect(await srv.rolloutStore.getRollout('office')).toEqual(rollout);
        expect(await srv.abmStore.getAbmCursor('main')).toBe('cursor-1');
      };
      await seen(b);

      // The first server stops and its data directory goes: a third, with a fresh one, still has it all.
      await a.stop();
      expect(existsSync(a.dir)).toBe(false);
      const c = await startTestServer({ store: url });
      try {
        await seen(c);
      } finally {
        await c.stop();
      }
    } finally {
      await b.stop();
      if (existsSync(a.dir)) await a.stop();
      rmSync(a.dir, { recursive: true, force: true });
    }
  });
});
