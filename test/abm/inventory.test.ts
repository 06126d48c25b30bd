/**
 * ABM devices in the inventory: listed before they enroll, selected by `selector.abm` (true, false
 * or ABM fields) before and after they enroll, gone when ABM releases them (an enrolled device
 * stays managed).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { DepStandin } from '../../src/sim/dep.js';
import { FleetRepo, waitFor } from '../gitops/helpers.js';
import { blueprint, passcodePayload, profile } from '../gitops/repo.js';
import { importAbmToken } from '../helpers/abm.js';
import { http, startTestServer, type TestServer } from '../helpers/server.js';

const creds = { consumerKey: 'CK_inv', consumerSecret: 'CS_inv_secret', accessToken: 'AT_inv', accessSecret: 'AS_inv_secret' };

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function get<T>(server: TestServer, path: string): Promise<T> {
  const r = await http(`${server.url}${path}`, { headers: { authorization: `Bearer ${server.readToken}` } });
  expect(r.status, r.text).toBe(200);
  return r.json() as T;
}

interface AbmList {
  total: number;
  enrolled: number;
  awaitingEnrollment: number;
  devices: { serialNumber: string; model?: string; color?: string; assignedBy?: string; profileStatus?: string; deviceId?: string; blueprints: string[] }[];
  nextCursor?: string;
}

describe('ABM devices in the inventory', () => {
  it('are listed before they enroll, selected by ABM fields before and after, and leave when ABM releases them', async () => {
    const dep = await new DepStandin({ credentials: creds }).start();
    cleanups.push(() => dep.stop());
    dep.add({
      serial_number: 'ABMAIR000001',
      model: 'MacBook Air',
      color: 'MIDNIGHT',
      os: 'OSX',
      device_family: 'Mac',
      device_assigned_by: 'buyer@example.com',
    });
    dep.add({ serial_number: 'ABMPAD000002', model: 'iPad Pro', os: 'iOS', device_family: 'iPad', device_assigned_by: 'buyer@example.com' });
    dep.add({ serial_number: 'ABMPAD000003', model: 'iPad Air', os: 'iOS', device_family: 'iPad' });

    const repo = new FleetRepo();
    cleanups.push(() => repo.cleanup());
    repo
      .write('profiles/passcode.yaml', profile('passcode', 'com.example.passcode', passcodePayload))
      .write('profiles/byod.yaml', profile('byod', 'com.example.byod', passcodePayload))
      .write('blueprints/airs.yaml', blueprint('airs', '    abm:\n      models: [MacBook Air]', ['passcode']))
      .write('blueprints/all-abm.yaml', blueprint('all-abm', '    abm: true\n    platforms: [iPadOS]', []))
      .write('blueprints/byod.yaml', blueprint('byod', '    abm: false', ['byod']));
    repo.commit('abm selectors');
    const dataDir = join(repo.root, 'server');
    importAbmToken(dataDir, 'acme', new Date(Date.now() + 300 * 86_400_000), creds);
    const server = await startTestServer({ repo: repo.url, pollIntervalMs: 0, driftIntervalMs: 0, dataDir, abmUrl: dep.url, abmSyncIntervalMs: 0 });
    cleanups.push(() => server.stop());
    await server.abm.runOnce();

    let list = await get<AbmList>(server, '/api/v1/abm/devices');
    expect(list).toMatchObject({ total: 3, enrolled: 0, awaitingEnrollment: 3 });
    expect(list.devices).toEqual([
      expect.objectContaining({
        serialNumber: 'ABMAIR000001',
        model: 'MacBook Air',
        color: 'MIDNIGHT',
        assignedBy: 'buyer@example.com',
        profileStatus: 'empty',
        blueprints: ['airs'],
      }),
      expect.objectContaining({ serialNumber: 'ABMPAD000002', model: 'iPad Pro', blueprints: ['all-abm'] }),
      expect.objectContaining({ serialNumber: 'ABMPAD000003', blueprints: ['all-abm'] }),
    ]);
    expect(list.devices[0]).not.toHaveProperty('deviceId');
    const page = await get<AbmList>(server, '/api/v1/abm/devices?limit=2');
    expect(page.devices.map((d) => d.serialNumber)).toEqual(['ABMAIR000001', 'ABMPAD000002']);
    const rest = await get<AbmList>(server, `/api/v1/abm/devices?limit=2&cursor=${page.nextCursor}`);
    expect(rest.devices.map((d) => d.serialNumber)).toEqual(['ABMPAD000003']);
    expect((await http(`${server.url}/api/v1/abm/devices?limit=0`, { headers: { authorization: `Bearer ${server.readToken}` } })).status).toBe(400);
    expect((await get<{ abm: { devices: unknown } }>(server, '/api/v1/status')).abm.devices).toEqual({ total: 3, enrolled: 0, awaitingEnrollment: 3 });

    // The ABM MacBook Air enrolls: bound to its ABM record, it gets the "airs" profile; a device ABM does not know gets "byod".
    const air = server.device({ serialNumber: 'ABMAIR000001' });
    const other = server.device({ serialNumber: 'NOTABM000009' });
    await air.enroll();
    await other.enroll();
    await waitFor(
      'profiles',
      async () => {
        await air.connect();
        await other.connect();
        return (air.profiles.has('com.example.passcode') && other.profiles.has('com.example.byod')) || undefined;
      },
      15_000,
    );
    expect(air.profiles.has('com.example.byod')).toBe(false);
    expect(other.profiles.has('com.example.passcode')).toBe(false);
    await server.abm.runOnce();
    list = await get<AbmList>(server, '/api/v1/abm/devices');
    expect(list).toMatchObject({ total: 3, enrolled: 1, awaitingEnrollment: 2 });
    expect(list.devices[0]).toMatchObject({ serialNumber: 'ABMAIR000001', deviceId: air.udid });

    // Released in ABM: they leave ABM's list; the enrolled one stays managed.
    dep.remove('ABMPAD000003');
    dep.remove('ABMAIR000001');
    await server.abm.runOnce();
    list = await get<AbmList>(server, '/api/v1/abm/devices');
    expect(list.devices.map((d) => d.serialNumber)).toEqual(['ABMPAD000002']);
    expect(list).toMatchObject({ total: 1, enrolled: 0 });
    const report = await get<{ state: string; blueprints: string[] }>(server, `/api/v1/report/devices/${air.udid}`);
    expect(report.blueprints).toEqual(['airs']);
  });
});
