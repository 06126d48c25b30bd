/**
 * `setup: true` for declarations: a device waiting in Setup Assistant gets the declarations of
 * setup blueprints first, DeviceConfigured only once it reports them active (as for setup
 * profiles), and the other blueprints' declarations after it is released.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SimulatedDevice } from '../../src/sim/device.js';
import { FleetRepo, waitFor } from '../gitops/helpers.js';
import { profile } from '../gitops/repo.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { passcodeDecl } from './fleet.js';

const restrictions = profile('camera', 'com.example.camera', `    - type: com.apple.applicationaccess\n      keys:\n        allowCamera: false\n`);
const blueprint = (name: string, spec: string) => `apiVersion: orchard/v1
kind: Blueprint
metadata: {name: ${name}}
spec:
  selector: {platforms: [macOS]}
${spec}`;

let repo: FleetRepo;
let server: TestServer;

async function until(d: SimulatedDevice, what: string, done: () => boolean | Promise<boolean>): Promise<void> {
  await waitFor(
    what,
    async () => {
      await d.connect();
      return (await done()) || undefined;
    },
    20_000,
  );
}

beforeAll(async () => {
  repo = new FleetRepo();
  repo
    .write('profiles/camera.yaml', restrictions)
    .write('declarations/setuppass.yaml', passcodeDecl('setuppass'))
    .write('declarations/later.yaml', passcodeDecl('later', 12))
    .write('blueprints/first.yaml', blueprint('first', '  declarations: [setuppass]\n  setup: true\n'))
    .write('blueprints/later.yaml', blueprint('later', '  profiles: [camera]\n  declarations: [later]\n'));
  repo.commit('setup declarations and the rest');
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

describe('setup declarations (await_device_configured)', () => {
  it('delivers the setup declarations first, sends DeviceConfigured once they are active, then the others', async () => {
    const mac = server.device({ serialNumber: 'DDMSETUP01', awaitingConfiguration: true, osVersion: '15.1' });
    let heldAtRelease: string[] | undefined;
    mac.fail = (requestType) => {
      if (requestType === 'DeviceConfigured') heldAtRelease = [...mac.ddm.held().entries()].filter(([, h]) => h.active).map(([id]) => id);
      return undefined;
    };
    // It does not sync its declarations yet: DeviceConfigured must wait, and its status say for what.
    mac.ddmAutoSync = false;
    await mac.enroll();
    const problem = async () => (await server.store.getStatus(mac.udid))?.profiles?.problems.find((p) => p.identifier === 'DeviceConfigured');
    await until(mac, 'waiting for the setup declaration', async () =>
      /declaration com\.example\.setuppass not reported by the device yet/.test((await problem())?.message ?? ''),
    );
    for (let i = 0; i < 3; i++) await mac.connect();
    expect(mac.handled.map((h) => h.requestType)).not.toContain('DeviceConfigured');
    expect(mac.awaitingConfiguration).toBe(true);

    // Waiting: its set names the setup declaration only.
    await mac.ddm.sync();
    expect(mac.ddm.held().has('com.example.setuppass')).toBe(true);
    expect(mac.ddm.held().has('com.example.later')).toBe(false);
    mac.ddmAutoSync = true;

    await until(mac, 'the later declaration held', () => mac.ddm.held().has('com.example.later'));
    expect(mac.awaitingConfiguration).toBe(false);
    // Released once the setup declaration was active on it (no setup profile to wait for), not before; the rest after.
    expect(heldAtRelease).toContain('com.example.setuppass');
    expect(heldAtRelease).not.toContain('com.example.later');
    expect(mac.configuredWith).toEqual([]);
    await until(mac, 'the later profile installed', () => mac.profiles.has('com.example.camera'));
    expect((await server.store.getArtifacts(mac.udid))?.setup?.releasedAt).toBeDefined();
  });
});
