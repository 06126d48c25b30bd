/**
 * Rollout and crash safety against a real `orchard serve` process: SIGKILL in the middle of
 * convergence, restart, and every device ends with the profile installed by exactly one command.
 */
import { createHmac } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { createCA, createDeviceIdentity, type CertifiedKey } from '../../src/identity/ca.js';
import { inRollout } from '../../src/reconcile/desired.js';
import { SimulatedDevice } from '../../src/sim/device.js';
import { LevelStore } from '../../src/store/leveldb.js';
import { FleetRepo, waitFor } from '../gitops/helpers.js';
import { blueprint, passcodePayload, profile } from '../gitops/repo.js';
import { spawnServer, waitExit, type ServerProcess } from '../helpers/process.js';

const repo = new FleetRepo();
afterAll(() => repo.cleanup());

const SECRET = 'hook';
async function hook(url: string): Promise<void> {
  const body = '{}';
  const res = await fetch(`${url}/api/v1/hooks/git`, {
    method: 'POST',
    body,
    headers: { 'x-orchard-signature': `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}` },
  });
  expect(res.status).toBe(202);
}

it('rollout selects a stable subset; SIGKILL mid-convergence, restart: each device gets the profile exactly once', async () => {
  const ca: CertifiedKey = createCA({ commonName: 'Reconcile CA' });
  writeFileSync(join(repo.root, 'ca.pem'), ca.certPem);
  repo
    .write('profiles/p.yaml', profile('passcode', 'com.example.passcode', passcodePayload))
    .write('blueprints/b.yaml', blueprint('macs', '    platforms: [macOS]', []));
  repo.commit('start');
  const args = [
    '--data-dir',
    join(repo.root, 'data'),
    '--trust-ca',
    join(repo.root, 'ca.pem'),
    '--repo',
    repo.url,
    '--poll-interval',
    '0',
    '--drift-interval',
    '0',
  ];
  const env = { ORCHARD_WEBHOOK_SECRET: SECRET, ORCHARD_API_TOKEN: 'admin' };
  let srv: ServerProcess = await spawnServer(args, env);
  const agent = new Agent({ keepAlive: false });
  const key = createDeviceIdentity(ca, 'k').key;
  const ids = Array.from({ length: 30 }, (_, i) => createDeviceIdentity(ca, `mac-${i}`, { key }));
  const make = (url: string) =>
    ids.map((identity, i) => new SimulatedDevice({ serverUrl: url, identity, udid: `RC-${i}`, serialNumber: `C02RC${String(i).padStart(5, '0')}`, agent }));
  let devices = make(srv.url);
  for (const d of devices) await d.enroll();
  for (const d of devices) await d.connect();

  // Rollout at 20%: exactly the devices whose bucket is under 20 get it.
  repo
    .write('blueprints/b.yaml', blueprint('macs', '    platforms: [macOS]', ['passcode']).replace('  profiles:', '  rollout: {percent: 20}\n  profiles:'))
    .commit('rollout 20%');
  await hook(srv.url);
  const chosen = devices.filter((d) => inRollout({ name: 'macs', rollout: { percent: 20 } } as never, d.serialNumber));
  expect(chosen.length).toBeGreaterThan(0);
  expect(chosen.length).toBeLessThan(15);
  await waitFor(
    'rollout',
    async () => {
      for (const d of devices) await d.connect();
      return chosen.every((d) => d.profiles.has('com.example.passcode')) || undefined;
    },
    20_000,
  );
  expect(devices.filter((d) => d.profiles.has('com.example.passcode')).map((d) => d.udid)).toEqual(chosen.map((d) => d.udid));

  // Everyone now; kill the server while devices are converging.
  repo.write('blueprints/b.yaml', blueprint('macs', '    platforms: [macOS]', ['passcode'])).commit('100%');
  await hook(srv.url);
  let stop = false;
  const connecting = (async () => {
    while (!stop) for (const d of devices) await d.connect().catch(() => undefined);
  })();
  await waitFor('some convergence', () => devices.filter((d) => d.profiles.has('com.example.passcode')).length > chosen.length + 3 || undefined, 20_000);
  srv.child.kill('SIGKILL');
  await waitExit(srv.child);
  stop = true;
  await connecting;

  srv = await spawnServer(args, env);
  devices = make(srv.url).map((d, i) => {
    for (const p of devices[i]!.profiles.values()) d.profiles.set(p.PayloadIdentifier, p);
    return d;
  });
  await waitFor(
    'full convergence after restart',
    async () => {
      for (const d of devices) await d.connect();
      return devices.every((d) => d.profiles.has('com.example.passcode')) || undefined;
    },
    30_000,
  );
  for (let i = 0; i < 2; i++) for (const d of devices) await d.connect();
  srv.child.kill('SIGTERM');
  await waitExit(srv.child);

  const store = await LevelStore.open(join(repo.root, 'data'));
  try {
    for (const d of devices) {
      const installs = (await store.listCommands(d.udid)).items.filter((c) => c.requestType === 'InstallProfile');
      expect(installs.length, `${d.udid} installs`).toBe(1);
      expect(installs[0]!.status).toBe('Acknowledged');
      expect((await store.getArtifacts(d.udid))!.artifacts['com.example.passcode']!.phase).toBe('verified');
    }
  } finally {
    await store.close();
  }
}, 180_000);
