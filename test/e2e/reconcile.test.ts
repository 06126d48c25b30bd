/**
 * End to end: a real git repository, a real server following it, simulated devices. Commits turn
 * into InstallProfile / RemoveProfile for exactly the devices they select, verified from what the
 * devices report.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ArtifactStatus } from '../../src/reconcile/types.js';
import type { SimulatedDevice } from '../../src/sim/device.js';
import { FleetRepo, waitFor } from '../gitops/helpers.js';
import { blueprint, profile } from '../gitops/repo.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

let repo: FleetRepo;
let server: TestServer;
let macs: SimulatedDevice[];
let ipad: SimulatedDevice;

const passcode = (min: number) =>
  profile('passcode', 'com.example.passcode', `    - type: com.apple.mobiledevice.passwordpolicy\n      keys:\n        minLength: ${min}\n`);
const groups = `apiVersion: orchard/v1\nkind: DeviceGroup\nmetadata: {name: design}\nspec:\n  devices:\n    - {serial: MAC000, tags: [design]}\n`;

async function syncAndConverge(done: () => Promise<boolean> | boolean, devices: SimulatedDevice[] = [...macs, ipad]): Promise<void> {
  await server.source!.sync('test');
  await waitFor(
    'convergence',
    async () => {
      for (const d of devices) await d.connect();
      return (await done()) || undefined;
    },
    15_000,
  );
}

async function artifacts(d: SimulatedDevice): Promise<Record<string, ArtifactStatus>> {
  return (await server.store.getArtifacts(d.udid))?.artifacts ?? {};
}

beforeAll(async () => {
  repo = new FleetRepo();
  repo
    .write('profiles/passcode.yaml', passcode(8))
    .write('groups.yaml', groups)
    .write('blueprints/b.yaml', blueprint('macs', '    platforms: [macOS]', []));
  repo.commit('empty blueprint');
  server = await startTestServer(
    { repo: repo.url, pollIntervalMs: 0, driftIntervalMs: 0, dataDir: join(repo.root, 'server') },
    { retry: { maxAttempts: 3, baseMs: 300, maxMs: 600 } },
  );
  macs = [0, 1, 2].map((i) => server.device({ serialNumber: `MAC00${i}`, model: 'Mac14,2' }));
  ipad = server.device({ serialNumber: 'IPAD001', model: 'iPad13,1', productName: 'iPad13,1', osVersion: '18.1' });
  for (const d of [...macs, ipad]) await d.enroll();
  // Enrollment queues an inventory; let the devices answer it.
  for (const d of [...macs, ipad]) await d.connect();
});
afterAll(async () => {
  await server.stop();
  repo.cleanup();
});

describe('reconciler', () => {
  it('a commit installs the profile on the selected devices only, verified from ProfileList', async () => {
    const sha = repo.write('blueprints/b.yaml', blueprint('macs', '    platforms: [macOS]', ['passcode'])).commit('passcode on macs');
    await syncAndConverge(async () => {
      for (const m of macs) if ((await artifacts(m))['com.example.passcode']?.phase !== 'verified') return false;
      return true;
    });
    for (const m of macs) {
      expect(m.profiles.has('com.example.passcode')).toBe(true);
      const a = (await artifacts(m))['com.example.passcode']!;
      expect(a.revision).toBe(sha);
      expect(a.uuid).toBe(m.profiles.get('com.example.passcode')!.PayloadUUID);
    }
    expect(ipad.profiles.size).toBe(0);
    expect(await artifacts(ipad)).toEqual({});
  });

  it('the same revision again queues nothing', async () => {
    const before = await Promise.all(macs.map(async (m) => (await server.store.listCommands(m.udid)).items));
    await server.reconciler.apply(server.source!.current()!);
    const after = await Promise.all(macs.map(async (m) => (await server.store.listCommands(m.udid)).items));
    expect(after.map((l) => l.length)).toEqual(before.map((l) => l.length));
  });

  it('editing the profile updates it: a new UUID, same identifier', async () => {
    const old = macs[0]!.profiles.get('com.example.passcode')!.PayloadUUID;
    repo.write('profiles/passcode.yaml', passcode(12)).commit('longer passcodes');
    await syncAndConverge(async () => {
      for (const m of macs) {
        const a = (await artifacts(m))['com.example.passcode'];
        if (a?.phase !== 'verified' || a.uuid === old) return false;
      }
      return true;
    });
    for (const m of macs) expect(m.profiles.get('com.example.passcode')!.PayloadUUID).not.toBe(old);
  });

  it('a profile deleted on a device comes back at the next drift check', async () => {
    const m = macs[1]!;
    m.profiles.delete('com.example.passcode');
    await server.reconciler.driftCheck();
    await waitFor(
      'reinstall',
      async () => {
        await m.connect();
        const a = (await artifacts(m))['com.example.passcode'];
        return (m.profiles.has('com.example.passcode') && a?.phase === 'verified' && a.drift === 1) || undefined;
      },
      10_000,
    );
  });

  it('a failing install is recorded with the device error, then retried', async () => {
    const m = macs[2]!;
    let failures = 1;
    m.fail = (type) =>
      type === 'InstallProfile' && failures-- > 0
        ? { ErrorCode: 4001, ErrorDomain: 'MCProfileErrorDomain', LocalizedDescription: 'Passcode policy refused' }
        : undefined;
    m.profiles.delete('com.example.passcode');
    await server.reconciler.driftCheck();
    const failed = await waitFor(
      'failure',
      async () => {
        await m.connect();
        const a = (await artifacts(m))['com.example.passcode'];
        return (a?.lastError?.message.includes('Passcode policy refused') && a) || undefined;
      },
      10_000,
    );
    expect(failed.phase).toBe('failed');
    expect(failed.lastError!.errorChain![0]!.ErrorCode).toBe(4001);
    // No nudge from the test: the reconciler comes back at the retry time by itself.
    await waitFor(
      'retry succeeds',
      async () => {
        await m.connect();
        const a = (await artifacts(m))['com.example.passcode'];
        return (a?.phase === 'verified' && m.profiles.has('com.example.passcode')) || undefined;
      },
      10_000,
    );
    expect((await artifacts(m))['com.example.passcode']!.attempts).toBe(2);
  });

  it('taking the profile out of the blueprint removes it', async () => {
    repo.write('blueprints/b.yaml', blueprint('macs', '    platforms: [macOS]', [])).commit('no more passcode');
    await syncAndConverge(async () => {
      for (const m of macs) if (m.profiles.has('com.example.passcode') || (await artifacts(m))['com.example.passcode']) return false;
      return true;
    });
    const removes = (await server.store.listCommands(macs[0]!.udid)).items.filter((c) => c.requestType === 'RemoveProfile');
    expect(removes.map((c) => c.status)).toEqual(['Acknowledged']);
  });

  it('never touches a profile Orchard did not install', async () => {
    const m = macs[0]!;
    m.profiles.set('com.vendor.other', { PayloadIdentifier: 'com.vendor.other', PayloadUUID: 'ABC', PayloadVersion: 1, PayloadContent: [] });
    await server.reconciler.driftCheck();
    for (let i = 0; i < 3; i++) await m.connect();
    expect(m.profiles.has('com.vendor.other')).toBe(true);
  });

  it('a suspended blueprint queues nothing; tags select through DeviceGroups', async () => {
    repo
      .write('blueprints/design.yaml', blueprint('design', '    tags: [design]', ['passcode']).replace('  profiles:', '  suspend: true\n  profiles:'))
      .commit('suspended');
    await server.source!.sync('test');
    for (const d of [...macs, ipad]) await d.connect();
    expect(macs[0]!.profiles.has('com.example.passcode')).toBe(false);
    repo.write('blueprints/design.yaml', blueprint('design', '    tags: [design]', ['passcode'])).commit('resumed');
    await syncAndConverge(async () => (await artifacts(macs[0]!))['com.example.passcode']?.phase === 'verified');
    expect(macs[1]!.profiles.has('com.example.passcode')).toBe(false);
  });
});
