/**
 * `orchard store copy --from ./data --to postgres://...` as an operator runs it: a LevelDB server
 * with an enrolled device (a command answered, one still queued), DDM state, a rollout, an ABM
 * device (its sync cursor, two definitions of a profile) and material is stopped; the copy reports what it carried; a second copy into the now
 * full database is refused; a server on the database with a fresh data directory serves the
 * device, which checks in with its old identity and gets its queued command. Then back: the
 * database into a new data directory, which a LevelDB server serves with the queue as it was.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { createDeviceIdentity } from '../../src/identity/ca.js';
import { SimulatedDevice } from '../../src/sim/device.js';
import type { RolloutState } from '../../src/store/rollouts.js';
import { missingPostgres, usePostgres } from '../helpers/postgres.js';
import { CLI } from '../helpers/process.js';
import { http, startTestServer, type TestServer } from '../helpers/server.js';
import { set, status } from './ddm-suite.js';

const pg = usePostgres();
const dir = mkdtempSync(join(tmpdir(), 'orchard-copy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const rollout: RolloutState = {
  blueprint: 'office',
  contentKey: 'key-office',
  revision: 'b'.repeat(40),
  step: 2,
  startedAt: '2026-01-01T00:00:00.000Z',
  stepStartedAt: '2026-01-01T01:00:00.000Z',
  acceptedFailures: 1,
};

async function queue(srv: TestServer, target: string): Promise<string> {
  const res = await http(`${srv.url}/api/v1/commands`, {
    method: 'POST',
    headers: { authorization: `Bearer ${srv.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ targets: [target], command: { RequestType: 'ProfileList' } }),
  });
  expect(res.status).toBe(201);
  return (res.json() as { commandUUID: string }).commandUUID;
}

function copy(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return promisify(execFile)(process.execPath, [CLI, 'store', 'copy', ...args]).then(
    (r) => ({ code: 0, out: r.stdout, err: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout, err: e.stderr }),
  );
}

if (!pg.available) missingPostgres('orchard store copy', pg.reason);
(pg.available ? describe : () => undefined)('orchard store copy', () => {
  it('LevelDB -> PostgreSQL -> LevelDB: counts, a non-empty target refused, a server on each target serves the copied device', async () => {
    const url = await pg.cluster().database();
    const dataDir = join(dir, 'data');
    const first = await startTestServer({ dataDir });
    const caFile = join(dir, 'ca.pem');
    writeFileSync(caFile, first.ca.certPem);
    const identity = createDeviceIdentity(first.ca, 'copied-device');
    const before = new SimulatedDevice({ serverUrl: first.url, identity });
    let answered: string;
    let queued: string;
    let queuedOnDatabase: string;
    try {
      await before.enroll();
      answered = await queue(first, before.udid);
      expect((await before.connect()).map((c) => c.status)).toEqual(['Acknowledged']);
      queued = await queue(first, before.udid);
      await first.ddmStore.putDeclarationSet(before.udid, 'current', set('tok-copy', 8));
      await first.ddmStore.putDdmStatus(before.udid, status);
      await first.rolloutStore.putRollout(rollout);
      await first.abmStore.applyAbmPage('acme', {
        upserts: [{ serial_number: 'C02COPY0001', model: 'MacBook Air', token: 'acme', syncedAt: '2026-01-01T00:00:00.000Z' }],
        deletes: [],
        cursor: 'abm-cursor-7',
      });
      await first.abmStore.putAbmProfile('acme', 'staff', { digest: 'old', uuid: 'PROFILE-OLD' });
      await first.abmStore.putAbmProfile('acme', 'staff', { digest: 'now', uuid: 'PROFILE-NOW' });
      await first.store.putMaterial('blob', 'copy-test', Buffer.from('kept'));
    } finally {
      await first.close();
    }

    const done = await copy(['--from', dataDir, '--to', url]);
    expect(done.err).toBe('');
    expect(done.code).toBe(0);
    expect(done.out).toMatch(
      /: 1 devices \(1 enrollments, 2 commands\), \d+ material items, DDM state of 1 enrollments, 1 rollouts, 1 ABM devices, 1 ABM enrollment profiles\n$/,
    );
    expect(done.out).not.toContain('skipped');

    const again = await copy(['--from', dataDir, '--to', url]);
    expect(again.code).toBe(2);
    expect(again.err).toMatch(
      /store copy: the target store is not empty \(it has devices, material \(blob\), DDM state, rollouts, ABM devices\): pass --force/,
    );
    const forced = await copy(['--from', dataDir, '--to', url, '--force']);
    expect(forced.code).toBe(0);
    expect(forced.out).toContain(': 0 devices (0 enrollments, 0 commands), 1 devices already there skipped');

    const second = await startTestServer({ store: url, trustCa: [caFile] });
    try {
      const auth = { authorization: `Bearer ${second.adminToken}` };
      const device = (await http(`${second.url}/api/v1/devices/${before.udid}`, { headers: auth })).json() as {
        ddm: { declarations: { identifier: string; phase: string }[] };
      };
      expect(device.ddm.declarations).toMatchObject([{ identifier: 'com.example.passcode', phase: 'verified' }]);
      expect(await second.rolloutStore.getRollout('office')).toEqual(rollout);
      expect((await second.abmStore.getAbmDevice('C02COPY0001'))?.token).toBe('acme');
      expect(await second.abmStore.getAbmCursor('acme')).toBe('abm-cursor-7');
      expect(await second.abmStore.getAbmProfile('acme', 'staff')).toEqual({ digest: 'now', uuid: 'PROFILE-NOW' });
      expect(await second.abmStore.listAbmProfileUuids()).toEqual(['PROFILE-NOW', 'PROFILE-OLD']);
      expect((await second.store.getMaterial('blob', 'copy-test'))?.toString()).toBe('kept');

      // The device enrolled before the copy: same identity and UDID, now against the server on the database.
      const after = new SimulatedDevice({ serverUrl: second.url, identity, udid: before.udid });
      const handled = await after.connect();
      expect(handled.map((c) => [c.commandUUID, c.status])).toEqual([[queued, 'Acknowledged']]);
      const commands = (await http(`${second.url}/api/v1/devices/${before.udid}/commands`, { headers: auth })).json() as {
        commands: { commandUUID: string; status: string; result?: { response?: Record<string, unknown> } }[];
      };
      expect(commands.commands.map((c) => [c.commandUUID, c.status])).toEqual([
        [answered, 'Acknowledged'],
        [queued, 'Acknowledged'],
      ]);
      // The answer recorded before the copy came with it, the device's report included.
      expect(commands.commands[0]!.result?.response).toHaveProperty('ProfileList');
      queuedOnDatabase = await queue(second, before.udid);
    } finally {
      await second.stop();
    }

    // And back: the database into a new data directory, which a LevelDB server then serves.
    const backDir = join(dir, 'back');
    const back = await copy(['--from', url, '--to', backDir]);
    expect(back.err).toBe('');
    expect(back.code).toBe(0);
    expect(back.out).toMatch(
      /: 1 devices \(1 enrollments, 3 commands\), \d+ material items, DDM state of 1 enrollments, 1 rollouts, 1 ABM devices, 1 ABM enrollment profiles\n$/,
    );
    const refused = await copy(['--from', url, '--to', backDir]);
    expect(refused.code).toBe(2);
    expect(refused.err).toMatch(/store copy: the target store is not empty \(it has devices, .*\): pass --force/);
    const both = await copy(['--from', dataDir, '--to', backDir]);
    expect(both.code).toBe(2);
    expect(both.err).toContain('one of them must be a postgres:// URL');

    copyFileSync(join(dataDir, 'material.key'), join(backDir, 'material.key'));
    const third = await startTestServer({ dataDir: backDir, trustCa: [caFile] });
    try {
      const auth = { authorization: `Bearer ${third.adminToken}` };
      expect(await third.rolloutStore.getRollout('office')).toEqual(rollout);
      expect(await third.abmStore.getAbmCursor('acme')).toBe('abm-cursor-7');
      expect(await third.abmStore.getAbmProfile('acme', 'staff')).toEqual({ digest: 'now', uuid: 'PROFILE-NOW' });
      expect((await third.store.getMaterial('blob', 'copy-test'))?.toString()).toBe('kept');
      expect((await third.ddmStore.getDeclarationSet(before.udid, 'current'))?.declarationsToken).toBe('tok-copy');
      const after = new SimulatedDevice({ serverUrl: third.url, identity, udid: before.udid });
      const handled = await after.connect();
      // The command queued on the database is still queued in the data directory, and only it.
      expect(handled.map((c) => [c.commandUUID, c.status])).toEqual([[queuedOnDatabase, 'Acknowledged']]);
      const commands = (await http(`${third.url}/api/v1/devices/${before.udid}/commands`, { headers: auth })).json() as {
        commands: { commandUUID: string; status: string }[];
      };
      expect(commands.commands.map((c) => [c.commandUUID, c.status])).toEqual([
        [answered, 'Acknowledged'],
        [queued, 'Acknowledged'],
        [queuedOnDatabase, 'Acknowledged'],
      ]);
    } finally {
      await third.stop();
    }
  });
});
