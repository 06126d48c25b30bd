/**
 * Issue 13's first Done-when point: two `orchard serve` processes on one PostgreSQL database,
 * 200 simulated devices spread over both, converged to a revision; a new revision is pushed and
 * the leader is SIGKILLed in the middle of its fleet-wide reconcile. The other replica takes the
 * leader lease and the dead one's work rows over, and every device ends with exactly one
 * InstallProfile per profile version, counted from the commands the devices received.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createCA, createDeviceIdentity } from '../../src/identity/ca.js';
import { SimulatedDevice, type SimOptions } from '../../src/sim/device.js';
import { FleetRepo, waitFor } from '../gitops/helpers.js';
import { blueprint, profile } from '../gitops/repo.js';
import { missingPostgres, usePostgres } from '../helpers/postgres.js';
import { spawnServer, waitExit, type ServerProcess } from '../helpers/process.js';

const DEVICES = 200;
const cluster = usePostgres();
const dir = mkdtempSync(join(tmpdir(), 'orchard-e2e-failover-'));
const repo = new FleetRepo();
const servers: ServerProcess[] = [];
afterAll(async () => {
  for (const s of servers) if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
  await Promise.all(servers.map((s) => waitExit(s.child)));
  repo.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

const restrictions = (camera: boolean) =>
  profile('camera', 'com.example.camera', `    - type: com.apple.applicationaccess\n      keys:\n        allowCamera: ${camera}\n`);

/** Each device answers what it is given, 20 at a time, until `done` holds for all of them. */
async function converge(devices: SimulatedDevice[], what: string, done: (d: SimulatedDevice) => boolean): Promise<void> {
  await waitFor(
    what,
    async () => {
      const left = devices.filter((d) => !done(d));
      for (let i = 0; i < left.length; i += 20) await Promise.all(left.slice(i, i + 20).map((d) => d.connect().catch(() => undefined)));
      return devices.every(done) || undefined;
    },
    40_000,
  );
}

if (!cluster.available) missingPostgres('two replicas, the leader SIGKILLed mid-reconcile', cluster.reason);
(cluster.available ? describe : () => undefined)('two replicas on one PostgreSQL, the leader SIGKILLed mid-reconcile', () => {
  it('the other replica takes over and every device gets exactly one InstallProfile per profile version', { timeout: 90_000 }, async () => {
    const url = await cluster.cluster().database();
    const ca = createCA({ commonName: 'Failover e2e CA' });
    writeFileSync(join(dir, 'ca.pem'), ca.certPem);
    repo.write('profiles/camera.yaml', restrictions(false)).write('blueprints/b.yaml', blueprint('macs', '    platforms: [macOS]', ['camera']));
    repo.commit('camera off');
    const env = { ORCHARD_API_TOKEN: 'failover-admin', ORCHARD_MATERIAL_KEY: 'the failover e2e material key' };
    const args = (data: string) => [
      ...['--store', url, '--data-dir', join(dir, data), '--trust-ca', join(dir, 'ca.pem')],
      ...['--repo', repo.url, '--poll-interval', '1s', '--leader-lease', '2s'],
    ];
    // The first one alone takes the leader lease; the second follows.
    const leader = await spawnServer(args('a'), env);
    servers.push(leader);
    const follower = await spawnServer(args('b'), env);
    servers.push(follower);

    // One key for every device's certificate: 200 RSA key generations would be most of the test's time.
    const key = createDeviceIdentity(ca, 'failover-key').key;
    const options: SimOptions[] = [];
    const devices = Array.from({ length: DEVICES }, (_, i) => {
      const o: SimOptions = { serverUrl: (i % 2 ? follower : leader).url, identity: createDeviceIdentity(ca, `failover-${i}`, { key }), udid: `FAILOVER-${i}` };
      options.push(o);
      return new SimulatedDevice(o);
    });
    for (let i = 0; i < devices.length; i += 20) await Promise.all(devices.slice(i, i + 20).map((d) => d.enroll()));
    const camera = (d: SimulatedDevice) => d.profiles.get('com.example.camera');
    await converge(devices, 'every device has the first version', (d) => camera(d) !== undefined);
    const first = camera(devices[0]!)!.PayloadUUID;

    // A new version; the leader starts its fleet-wide reconcile and dies in the middle of it.
    repo.write('profiles/camera.yaml', restrictions(true)).commit('camera on');
    const runs = () => leader.output().split('"msg":"reconciling fleet"').length - 1;
    await waitFor('the leader reconciling the new revision', async () => runs() >= 2 || undefined, 20_000);
    leader.child.kill('SIGKILL');
    await waitExit(leader.child);
    // Killed mid-run: the second fleet-wide reconcile had not finished.
    expect(leader.output().split('"msg":"fleet reconciled"').length - 1).toBe(1);

    // The devices of the dead replica come to the other one.
    for (const o of options) o.serverUrl = follower.url;
    await converge(devices, 'every device has the second version', (d) => camera(d) !== undefined && camera(d)!.PayloadUUID !== first);
    expect(follower.output()).toContain('leader lease taken');

    // Counted from what each device received: one InstallProfile per version, none twice.
    for (const d of devices) {
      const installs = d.handled.filter((h) => h.requestType === 'InstallProfile');
      expect({ device: d.udid, installs: installs.length }).toEqual({ device: d.udid, installs: 2 });
      expect(installs.every((h) => h.status === 'Acknowledged')).toBe(true);
    }
  });
});
