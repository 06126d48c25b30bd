/**
 * Setup Assistant on the real server: a device enrolling with AwaitingConfiguration gets the
 * items of `setup: true` blueprints first, DeviceConfigured once it accepted them all, and the
 * other items only after; a setup item the device refuses keeps it waiting and its status says
 * which item and the device's error. `setup` is checked by the blueprint schema with file:line.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadFleet } from '../../src/gitops/load.js';
import type { SimulatedDevice } from '../../src/sim/device.js';
import { FleetRepo, waitFor } from '../gitops/helpers.js';
import { blueprint, makeRepo, passcodePayload, profile } from '../gitops/repo.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const restrictions = (id: string) => profile(id, `com.example.${id}`, `    - type: com.apple.applicationaccess\n      keys:\n        allowCamera: false\n`);
const setupBlueprint = `${blueprint('first', '    platforms: [macOS]', ['wifi', 'camera'])}  setup: true\n`;

let repo: FleetRepo;
let server: TestServer;

/** Connect until `done`, as a device in Setup Assistant polls. */
async function until(d: SimulatedDevice, what: string, done: () => boolean | Promise<boolean>): Promise<void> {
  await waitFor(
    what,
    async () => {
      await d.connect();
      return (await done()) || undefined;
    },
    15_000,
  );
}

const requestTypes = (d: SimulatedDevice) => d.handled.filter((h) => h.status === 'Acknowledged').map((h) => h.requestType);

beforeAll(async () => {
  repo = new FleetRepo();
  repo
    .write('profiles/wifi.yaml', restrictions('wifi'))
    .write('profiles/camera.yaml', restrictions('camera'))
    .write('profiles/passcode.yaml', profile('passcode', 'com.example.passcode', passcodePayload))
    .write('blueprints/first.yaml', setupBlueprint)
    .write('blueprints/later.yaml', blueprint('later', '    platforms: [macOS]', ['passcode']));
  repo.commit('setup items and the rest');
  server = await startTestServer(
    { repo: repo.url, pollIntervalMs: 0, driftIntervalMs: 0, dataDir: join(repo.root, 'server') },
    { retry: { maxAttempts: 20, baseMs: 200, maxMs: 400 } },
  );
  await server.source!.sync('test');
});
afterAll(async () => {
  await server.stop();
  repo.cleanup();
});

describe('Setup Assistant (await_device_configured)', () => {
  it('installs the setup items, then sends DeviceConfigured, then the other items', async () => {
    const mac = server.device({ serialNumber: 'SETUP001', awaitingConfiguration: true });
    await mac.enroll();
    expect((await server.store.getEnrollment(mac.udid))?.awaitingConfiguration).toBe(true);
    await until(mac, 'every profile installed', () => mac.profiles.has('com.example.passcode'));

    // Released with exactly its setup items installed; the rest came after DeviceConfigured.
    expect(mac.awaitingConfiguration).toBe(false);
    expect(mac.configuredWith?.sort()).toEqual(['com.example.camera', 'com.example.wifi']);
    const types = requestTypes(mac);
    expect(types.filter((t) => t === 'DeviceConfigured')).toHaveLength(1);
    expect(types.lastIndexOf('InstallProfile')).toBeGreaterThan(types.indexOf('DeviceConfigured'));
    const setup = (await server.store.getArtifacts(mac.udid))?.setup;
    expect(setup?.releasedAt).toBeDefined();
    await until(mac, 'in sync', async () => (await server.store.getStatus(mac.udid))?.profiles?.state === 'in-sync');
    expect((await server.store.getStatus(mac.udid))?.profiles?.problems).toEqual([]);

    // Once released, it is never sent again (a new revision, a drift check).
    await server.reconciler.apply(server.source!.current()!);
    await mac.connect();
    expect(requestTypes(mac).filter((t) => t === 'DeviceConfigured')).toHaveLength(1);
  });

  it('a setup item the device refuses keeps it waiting, says which and why, and a successful retry releases it', async () => {
    const mac = server.device({ serialNumber: 'SETUP002', awaitingConfiguration: true });
    const refuse = { ErrorCode: 4001, ErrorDomain: 'MCRestrictionsErrorDomain', LocalizedDescription: 'Camera restriction not allowed here' };
    mac.fail = (type, cmd) => (type === 'InstallProfile' && Buffer.from(cmd.Payload as Uint8Array).includes('com.example.camera') ? refuse : undefined);
    await mac.enroll();
    await until(mac, 'the refusal in the status', async () => {
      const row = await server.store.getStatus(mac.udid);
      return !!row?.profiles?.problems.some((p) => p.identifier === 'DeviceConfigured' && p.phase === 'failed');
    });
    const row = (await server.store.getStatus(mac.udid))!.profiles!;
    expect(row.state).toBe('failed');
    const waiting = row.problems.find((p) => p.identifier === 'DeviceConfigured')!;
    expect(waiting.message).toContain('waiting in Setup Assistant');
    expect(waiting.message).toContain('com.example.camera failed');
    expect(waiting.message).toContain('MCRestrictionsErrorDomain 4001: Camera restriction not allowed here');
    expect(waiting.message).not.toContain('com.example.wifi');
    // Still waiting, and nothing beyond the setup items reached it.
    expect(mac.awaitingConfiguration).toBe(true);
    expect(requestTypes(mac)).not.toContain('DeviceConfigured');
    expect(mac.profiles.has('com.example.wifi')).toBe(true);
    expect(mac.profiles.has('com.example.passcode')).toBe(false);

    // The device accepts it on a retry: released, then the rest.
    mac.fail = undefined;
    await until(mac, 'released and complete', () => !mac.awaitingConfiguration && mac.profiles.has('com.example.passcode'));
    expect(mac.configuredWith?.sort()).toEqual(['com.example.camera', 'com.example.wifi']);
  });

  it('a device not awaiting configuration gets everything and no DeviceConfigured', async () => {
    const mac = server.device({ serialNumber: 'SETUP003' });
    await mac.enroll();
    await until(mac, 'every profile installed', () => mac.profiles.size === 3);
    expect(requestTypes(mac)).not.toContain('DeviceConfigured');
    expect((await server.store.getArtifacts(mac.udid))?.setup).toBeUndefined();
  });

  it('setup must be a boolean, reported with file:line', async () => {
    const diags = (
      await loadFleet(
        makeRepo({
          'profiles/passcode.yaml': profile('passcode', 'com.example.passcode', passcodePayload),
          'b.yaml': `${blueprint('b', '    platforms: [macOS]', ['passcode'])}  setup: yes please\n`,
        }),
      )
    ).diagnostics;
    const d = diags.find((x) => x.severity === 'error' && x.file === 'b.yaml');
    expect(d).toMatchObject({ rule: 'schema', line: 9 });
    expect(d?.message).toMatch(/setup/);
  });
});
