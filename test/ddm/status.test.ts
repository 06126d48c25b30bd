/**
 * What devices report over DDM, in the read model and the reports: the software update status per
 * device and per blueprint (at the target, pending, failed and why), each declaration's phase,
 * and facts (OS version) that re-evaluate selectors without DeviceInformation polling.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SimulatedDevice } from '../../src/sim/device.js';
import { phaseOf } from '../../src/ddm/status.js';
import type { BlueprintReport, DeviceSummary } from '../../src/report/status.js';
import type { StatusProblem } from '../../src/store/status.js';
import { FleetRepo, waitFor } from '../gitops/helpers.js';
import { http, startTestServer, type TestServer } from '../helpers/server.js';
import { ddmBlueprint, passcodeDecl } from './fleet.js';

let repo: FleetRepo;
let server: TestServer;
let mac: SimulatedDevice;
let other: SimulatedDevice;

const api = async <T>(path: string): Promise<T> => {
  const r = await http(`${server.url}/api/v1${path}`, { headers: { authorization: `Bearer ${server.readToken}` } });
  expect(r.status).toBe(200);
  return r.json() as T;
};
const blueprint = async (name: string) => (await api<{ blueprints: BlueprintReport[] }>('/blueprints')).blueprints.find((b) => b.name === name)!;
const row = async (d: SimulatedDevice) =>
  (await api<{ devices: (DeviceSummary & { problems: StatusProblem[] })[] }>('/report/devices')).devices.find((r) => r.id === d.udid)!;

async function verified(d: SimulatedDevice): Promise<boolean> {
  const set = await server.ddmStore.getDeclarationSet(d.udid, 'current');
  const status = await server.ddmStore.getDdmStatus(d.udid);
  return !!set && Object.values(set.entries).every((e) => phaseOf(e, status).phase === 'verified');
}

beforeAll(async () => {
  repo = new FleetRepo();
  repo
    .write('declarations/passcode.yaml', passcodeDecl('passcode', 8))
    .write('declarations/new-os.yaml', passcodeDecl('new-os', 12))
    .write('blueprints/update.yaml', ddmBlueprint('update', ['passcode'], '  softwareUpdate: {targetOSVersion: "15.2", deadline: "2026-12-24T18:00:00"}\n'))
    .write(
      'blueprints/new-os.yaml',
      `apiVersion: orchard/v1
kind: Blueprint
metadata: {name: new-os}
spec:
  selector: {platforms: [macOS], osVersion: ">=15.2"}
  declarations: [new-os]
`,
    );
  repo.commit('software update');
  server = await startTestServer({ repo: repo.url, pollIntervalMs: 0, driftIntervalMs: 0, dataDir: join(repo.root, 'server') });
  mac = server.device({ serialNumber: 'MACS01', model: 'Mac14,2', osVersion: '15.1', buildVersion: '24B83' });
  other = server.device({ serialNumber: 'MACS02', model: 'Mac14,2', osVersion: '15.1', buildVersion: '24B83' });
  for (const d of [mac, other]) await d.enroll();
  await waitFor(
    'both converged',
    async () => {
      for (const d of [mac, other]) await d.connect();
      for (const d of [mac, other]) if (!(await verified(d))) return undefined;
      return true;
    },
    30_000,
  );
});
afterAll(async () => {
  await server.stop();
  repo.cleanup();
});

describe('DDM status in the read model', () => {
  it('per device: declarations verified, the software update pending with what the device reported', async () => {
    const r = await waitFor('row with declarations', async () => {
      const x = await row(mac);
      return x.ddm?.declarations.verified === x.ddm?.declarations.total && x.ddm?.softwareUpdate?.installState ? x : undefined;
    });
    expect(r.ddm!.declarations).toMatchObject({ failed: 0, pending: 0 });
    expect(r.ddm!.declarations.total).toBeGreaterThanOrEqual(3);
    expect(r.ddm!.softwareUpdate).toMatchObject({ target: '15.2', phase: 'pending', installState: 'downloading', pendingVersion: '15.2', osVersion: '15.1' });
    expect(r.state).toBe('in-sync');
    // Both devices' rows are written after their last status report.
    const b = await waitFor('both counted', async () => {
      const x = await blueprint('update');
      return x.declarations.every((d) => d.verified === 2) && x.softwareUpdate?.pending === 2 ? x : undefined;
    });
    // The repository's declaration and the ones Orchard generates (activation, software update, subscriptions).
    expect(b.declarations.find((d) => d.declaration === 'passcode')).toEqual({
      declaration: 'passcode',
      identifier: 'com.example.passcode',
      verified: 2,
      pending: 0,
      failed: 0,
    });
    expect(b.declarations.map((d) => d.identifier).sort()).toEqual([
      'com.example.passcode',
      'orchard.blueprint.update.activation',
      'orchard.blueprint.update.softwareupdate',
      'orchard.status-subscriptions',
    ]);
    expect(b.softwareUpdate).toEqual({ target: '15.2', atTarget: 0, pending: 2, failed: 0, reasons: {} });
  });

  it('a failed update counts per blueprint with the reason the device gave', async () => {
    other.ddm.updateFailure = 'Not enough free space';
    await other.ddm.sync();
    const b = await waitFor('failed counted', async () => {
      const x = await blueprint('update');
      return x.softwareUpdate?.failed === 1 ? x : undefined;
    });
    expect(b.softwareUpdate).toEqual({ target: '15.2', atTarget: 0, pending: 1, failed: 1, reasons: { 'Not enough free space': 1 } });
    const r = await row(other);
    expect(r.ddm!.softwareUpdate).toMatchObject({ phase: 'failed', installState: 'failed', failureReason: 'Not enough free space' });
    expect(r.problems.map((p) => p.identifier)).toContain('softwareupdate:15.2');
  });

  it('an OS version reported over DDM updates the facts: the device reaches the target and an OS-version selector picks it, without DeviceInformation', async () => {
    const before = mac.handled.length;
    expect((await server.ddmStore.getDeclarationSet(mac.udid, 'current'))!.entries['com.example.new-os']).toBeUndefined();
    mac.updateOs('15.2', '24C101');
    await mac.ddm.sync();
    await waitFor(
      'new-os declaration delivered',
      async () => {
        await mac.connect();
        return (mac.ddm.held().has('com.example.new-os') && (await verified(mac))) || undefined;
      },
      30_000,
    );
    const since = mac.handled.slice(before).map((c) => c.requestType);
    expect(since).toContain('DeclarativeManagement');
    expect(since).not.toContain('DeviceInformation');
    const b = await waitFor('at target', async () => {
      const x = await blueprint('update');
      return x.softwareUpdate?.atTarget === 1 ? x : undefined;
    });
    expect(b.softwareUpdate).toMatchObject({ atTarget: 1, failed: 1, pending: 0 });
    await waitFor(
      'new-os verified in the counts',
      async () => (await blueprint('new-os')).declarations.find((d) => d.identifier === 'com.example.new-os')?.verified === 1 || undefined,
    );
    expect((await row(mac)).ddm!.softwareUpdate).toMatchObject({ phase: 'at-target', osVersion: '15.2', buildVersion: '24C101' });
  });

  it('a declaration the device refuses makes the device failed, with the reason', async () => {
    other.ddm.fail = (d) =>
      d.Identifier === 'com.example.passcode' ? { code: 'Error.ConfigurationCannotBeApplied', description: 'simulated refusal' } : undefined;
    repo.write('declarations/passcode.yaml', passcodeDecl('passcode', 9));
    repo.commit('passcode 9');
    await server.source!.sync('test');
    const r = await waitFor(
      'declaration failed in the row',
      async () => {
        await other.connect();
        const x = await row(other);
        return x.problems.some((p) => p.identifier === 'declaration:com.example.passcode') ? x : undefined;
      },
      30_000,
    );
    expect(r.state).toBe('failed');
    expect(r.problems.find((p) => p.identifier === 'declaration:com.example.passcode')!.message).toBe('simulated refusal');
    expect((await blueprint('update')).declarations.find((d) => d.identifier === 'com.example.passcode')).toMatchObject({ failed: 1 });
  });
});

describe('devices whose OS has no DDM', () => {
  it('are reported as such in the row', async () => {
    const old = server.device({ serialNumber: 'MACOLD', model: 'Mac14,2', osVersion: '12.6', buildVersion: '21G115' });
    await old.enroll();
    const r = await waitFor('unsupported row', async () => {
      await old.connect();
      return (await row(old)).ddm?.unsupported ? row(old) : undefined;
    });
    expect(r.ddm!.unsupported).toContain('has no Declarative Device Management');
    expect(r.ddm!.declarations.total).toBe(0);
  });
});
