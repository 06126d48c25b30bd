/**
 * Issue 16's end to end: a real `orchard serve` process on a fleet repository, the ABM stand-in,
 * and `orchard simulate --abm` as the devices. Serials seeded in the stand-in appear in the
 * inventory, get the enrollment profile the rule in git assigns, enroll from Setup Assistant
 * (serial proven), receive their setup profiles, then DeviceConfigured, then the rest; a change
 * of the rule in git reassigns; devices deleted in ABM leave the inventory, and an enrolled one
 * stays managed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importPushCertificate } from '../../src/push/push-cert.js';
import { DepStandin } from '../../src/sim/dep.js';
import { FleetRepo, waitFor } from '../gitops/helpers.js';
import { profile } from '../gitops/repo.js';
import { importAbmToken } from '../helpers/abm.js';
import { CLI, spawnServer, waitExit, type ServerProcess } from '../helpers/process.js';
import { freePort } from '../helpers/server.js';
import { makePushCert } from '../push/helpers.js';

const creds = { consumerKey: 'CK_e2e', consumerSecret: 'CS_e2e_secret', accessToken: 'AT_e2e', accessSecret: 'AS_e2e_secret' };
const TOKEN = 'e2e-admin-token';
const restrictions = (id: string) => profile(id, `com.example.${id}`, `    - type: com.apple.applicationaccess\n      keys:\n        allowCamera: false\n`);
const staff = (models: string) => `apiVersion: orchard/v1
kind: EnrollmentProfile
metadata: {name: staff}
spec:
  is_supervised: true
  is_mandatory: true
  await_device_configured: true
  assign:
    models: [${models}]
`;
const blueprint = (name: string, profiles: string, extra = '') =>
  `apiVersion: orchard/v1\nkind: Blueprint\nmetadata: {name: ${name}}\nspec:\n  selector: {platforms: [macOS]}\n  profiles: [${profiles}]\n${extra}`;

const dir = mkdtempSync(join(tmpdir(), 'orchard-abm-e2e-'));
let dep: DepStandin;
let repo: FleetRepo;
let srv: ServerProcess;
let sim: ChildProcess | undefined;
let simOut = '';

async function api<T>(path: string): Promise<T> {
  const r = await fetch(`${srv.url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  expect(r.status).toBe(200);
  return (await r.json()) as T;
}
const inventory = async () => (await api<{ devices: { serialNumber: string; deviceId?: string }[] }>('/api/v1/abm/devices?limit=100')).devices;
const saved = (serial: string) =>
  JSON.parse(readFileSync(join(dir, 'sim', 'devices', `${serial}.json`), 'utf8')) as {
    profiles: { PayloadIdentifier: string }[];
    awaitingConfiguration?: boolean;
  };

beforeAll(async () => {
  dep = await new DepStandin({ credentials: creds }).start();
  for (const s of ['ADE000000', 'ADE000001', 'ADE000003']) dep.add({ serial_number: s, model: 'MacBook Air', device_family: 'Mac' });
  dep.add({ serial_number: 'ADE000002', model: 'iPad Pro', device_family: 'iPad' });
  repo = new FleetRepo();
  repo
    .write('abm/staff.yaml', staff('MacBook Air'))
    .write('profiles/camera.yaml', restrictions('camera'))
    .write('profiles/later.yaml', restrictions('later'))
    .write('blueprints/setup.yaml', blueprint('setup', 'camera', '  setup: true\n'))
    .write('blueprints/later.yaml', blueprint('later', 'later'))
    .commit('ABM enrollment profile, a setup blueprint and the rest');

  const dataDir = join(dir, 'server');
  mkdirSync(dataDir, { recursive: true });
  importAbmToken(dataDir, 'acme', new Date(Date.now() + 300 * 86_400_000), creds);
  const push = makePushCert();
  writeFileSync(join(dir, 'push.pem'), push.certPem);
  writeFileSync(join(dir, 'push.key'), push.keyPem);
  importPushCertificate(dataDir, join(dir, 'push.pem'), join(dir, 'push.key'));
  // The enrollment profile's url is the server's own: it must know its URL before it listens.
  const port = await freePort();
  srv = await spawnServer(
    [
      ...['--listen', `127.0.0.1:${port}`, '--public-url', `http://127.0.0.1:${port}`, '--data-dir', dataDir, '--repo', repo.url],
      ...['--poll-interval', '1s', '--abm-url', dep.url, '--abm-sync-interval', '1s'],
      // APNs pointed at a closed local port: this test must never reach Apple.
      ...['--apns-url', 'https://127.0.0.1:9'],
    ],
    { ORCHARD_API_TOKEN: TOKEN },
  );
}, 60_000);

afterAll(async () => {
  sim?.kill('SIGTERM');
  if (sim) await waitExit(sim);
  srv?.child.kill('SIGTERM');
  if (srv) await waitExit(srv.child);
  await dep?.stop();
  repo?.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

describe('ABM devices enroll themselves (issue 16)', () => {
  it('seeded serials are in the inventory and get the profile the git rule assigns', async () => {
    await waitFor('the ABM devices in the inventory', async () => ((await inventory()).length === 4 ? true : undefined), 30_000);
    expect((await inventory()).map((d) => d.serialNumber)).toEqual(['ADE000000', 'ADE000001', 'ADE000002', 'ADE000003']);
    await waitFor('the MacBook Airs assigned', () => (dep.devices.get('ADE000003')?.profile_status === 'assigned' ? true : undefined), 30_000);
    const [uuid] = [...dep.profiles.keys()];
    expect(dep.profiles.get(uuid!)).toMatchObject({ profile_name: 'staff', url: `${srv.url}/mdm/enroll`, await_device_configured: true });
    for (const s of ['ADE000000', 'ADE000001']) expect(dep.devices.get(s)).toMatchObject({ profile_uuid: uuid, profile_status: 'assigned' });
    expect(dep.devices.get('ADE000002')?.profile_status).toBe('empty');
  });

  it('they enroll through the simulator from Setup Assistant, get their setup profile, then DeviceConfigured, then the rest', async () => {
    sim = spawn(
      process.execPath,
      [CLI, 'simulate', '--server', srv.url, '--abm', dep.url, '--state-dir', join(dir, 'sim'), '--count', '2', '--prefix', 'ADE', '--interval', '0.3'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    sim.stdout!.on('data', (d: Buffer) => (simOut += d.toString()));
    sim.stderr!.on('data', (d: Buffer) => (simOut += d.toString()));
    const released = (serial: string) => simOut.includes(`SIM-${serial} released from Setup Assistant (DeviceConfigured) with 1 profile(s)`);
    await waitFor('both released from Setup Assistant', () => (released('ADE000000') && released('ADE000001') ? true : undefined), 60_000);
    for (const s of ['ADE000000', 'ADE000001'])
      expect(simOut).toContain(`enrolled SIM-${s} (${s}) from Setup Assistant through ${srv.url}/mdm/enroll, waiting in Setup Assistant for DeviceConfigured`);
    // After the release, the other blueprint's profile.
    const has = (serial: string, id: string) => saved(serial).profiles.some((p) => p.PayloadIdentifier === id);
    await waitFor('the rest installed', () => (has('ADE000000', 'com.example.later') && has('ADE000001', 'com.example.later') ? true : undefined), 60_000);
    expect(saved('ADE000000').awaitingConfiguration).toBeUndefined();

    const dev = await api<{ enrolled: boolean; facts: { provenSerialNumber?: string; abm?: { token: string } }; setup?: { releasedAt?: string } }>(
      '/api/v1/devices/SIM-ADE000000',
    );
    expect(dev).toMatchObject({
      enrolled: true,
      facts: { provenSerialNumber: 'ADE000000', abm: { token: 'acme' } },
      setup: { releasedAt: expect.any(String) },
    });
  });

  it('a change of the rule in git reassigns', async () => {
    const [uuid] = [...dep.profiles.keys()];
    repo.write('abm/staff.yaml', staff('iPad Pro')).commit('the staff profile for iPads');
    // One pass assigns the iPad and removes the profile from the Macs.
    const moved = () =>
      dep.devices.get('ADE000002')?.profile_status === 'assigned' &&
      ['ADE000000', 'ADE000001', 'ADE000003'].every((s) => dep.devices.get(s)?.profile_status === 'removed');
    await waitFor('reassigned', () => (moved() ? true : undefined), 30_000);
    expect(dep.devices.get('ADE000002')?.profile_uuid).toBe(uuid);
  });

  it('devices deleted in ABM leave the inventory; an enrolled one stays managed', async () => {
    dep.remove('ADE000000');
    dep.remove('ADE000003');
    await waitFor('gone from the inventory', async () => ((await inventory()).length === 2 ? true : undefined), 30_000);
    expect((await inventory()).map((d) => d.serialNumber)).toEqual(['ADE000001', 'ADE000002']);
    expect((await api<{ enrolled: boolean }>('/api/v1/devices/SIM-ADE000000')).enrolled).toBe(true);

    // Still managed: a command queued for it is answered.
    const r = await fetch(`${srv.url}/api/v1/commands`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ targets: ['SIM-ADE000000'], command: { RequestType: 'DeviceInformation', Queries: ['SerialNumber'] } }),
    });
    expect(r.status).toBe(201);
    const { commandUUID } = (await r.json()) as { commandUUID: string };
    await waitFor('answered', () => (simOut.includes(`SIM-ADE000000 DeviceInformation ${commandUUID} -> Acknowledged`) ? true : undefined), 30_000);
  });
});
