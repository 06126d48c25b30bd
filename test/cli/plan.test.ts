/**
 * `orchard plan` as in a pull request: a real server's inventory (simulated devices converged on
 * main), then a change in the working copy, planned with the CLI process.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetRepo, waitFor } from '../gitops/helpers.js';
import { blueprint, profile } from '../gitops/repo.js';
import { CLI } from '../helpers/process.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const exec = promisify(execFile);
async function plan(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string }> {
  try {
    const r = await exec(process.execPath, [CLI, 'plan', ...args], { env: { ...process.env, ...env } });
    return { code: 0, stdout: r.stdout };
  } catch (err) {
    const e = err as { code: number; stdout: string };
    return { code: e.code, stdout: e.stdout };
  }
}

const passcode = (min: number) =>
  profile('passcode', 'com.example.passcode', `    - type: com.apple.mobiledevice.passwordpolicy\n      keys:\n        minLength: ${min}\n`);
const firewall = profile('firewall', 'com.example.firewall', '    - type: com.apple.security.firewall\n      keys:\n        EnableFirewall: true\n');

let repo: FleetRepo;
let server: TestServer;
let inventory: string;
let serials: string[];

beforeAll(async () => {
  repo = new FleetRepo();
  repo.write('profiles/passcode.yaml', passcode(8)).write('blueprints/macs.yaml', blueprint('macs', '    platforms: [macOS]', ['passcode']));
  repo.commit('main');
  server = await startTestServer({ repo: repo.url, pollIntervalMs: 0, driftIntervalMs: 0, dataDir: join(repo.root, 'server') });
  const devices = [0, 1, 2]
    .map((i) => server.device({ serialNumber: `PLAN${i}` }))
    .concat([server.device({ serialNumber: 'PLANIPAD', model: 'iPad13,1', productName: 'iPad13,1' })]);
  serials = devices.map((d) => d.serialNumber);
  for (const d of devices) await d.enroll();
  await waitFor(
    'convergence',
    async () => {
      for (const d of devices) await d.connect();
      return devices.slice(0, 3).every((d) => d.profiles.has('com.example.passcode')) || undefined;
    },
    15_000,
  );
  const res = await fetch(`${server.url}/api/v1/devices`, { headers: { authorization: `Bearer ${server.readToken}` } });
  inventory = join(repo.root, 'inventory.json');
  writeFileSync(inventory, await res.text());
});
afterAll(async () => {
  await server.stop();
  repo.cleanup();
});

describe('orchard plan', () => {
  it('no change: exit 0', async () => {
    const r = await plan([repo.work, '--inventory', inventory]);
    expect(r.stdout).toMatch(/No changes for 4 devices/);
    expect(r.code).toBe(0);
  });

  it('a pull request that edits a profile and adds one: exit 2, per blueprint and profile, which devices', async () => {
    repo
      .write('profiles/passcode.yaml', passcode(12))
      .write('profiles/firewall.yaml', firewall)
      .write('blueprints/macs.yaml', blueprint('macs', '    platforms: [macOS]', ['passcode', 'firewall']));
    const r = await plan([repo.work, '--inventory', inventory]);
    expect(r.code).toBe(2);
    expect(r.stdout).toContain('blueprint macs / profile passcode (com.example.passcode)');
    expect(r.stdout).toMatch(/update +3 +PLAN0, PLAN1, PLAN2/);
    expect(r.stdout).toMatch(/install +3 +PLAN0, PLAN1, PLAN2/);
    expect(r.stdout).not.toContain('PLANIPAD');
    expect(r.stdout).toMatch(/3 installs, 3 updates on 3 of 4 devices/);
    // The devices' installed revision is in the clone: the update says what changes inside.
    expect(r.stdout).toContain(
      '        payload com.example.passcode.1.com.apple.mobiledevice.passwordpolicy (com.apple.mobiledevice.passwordpolicy)\n      -     minLength: 8\n      +     minLength: 12\n',
    );

    const md = await plan([repo.work, '--inventory', inventory, '--format', 'markdown']);
    expect(md.stdout).toContain('| macs | `firewall` | install | 3 | PLAN0, PLAN1, PLAN2 |');
    expect(md.stdout).toContain('<details><summary><b>update</b> <code>passcode</code> (com.example.passcode) on 3 devices: PLAN0, PLAN1, PLAN2</summary>');
    const json = JSON.parse((await plan([repo.work, '--inventory', inventory, '--format', 'json'])).stdout) as { changes: { kind: string }[] };
    expect(json.changes.filter((c) => c.kind === 'update')).toHaveLength(3);
  });

  it('--base shows only what the change does relative to another revision', async () => {
    repo.commit('pr');
    const r = await plan([repo.work, '--inventory', inventory, '--base', 'HEAD~1']);
    expect(r.code).toBe(2);
    expect(r.stdout).toMatch(/3 installs, 3 updates on 3 of 4 devices/);
    const same = await plan([repo.work, '--inventory', inventory, '--base', 'HEAD']);
    expect(same.code).toBe(0);
  });

  it('removals, and --server with a read token', async () => {
    repo.write('blueprints/macs.yaml', blueprint('macs', '    platforms: [macOS]', []));
    repo.remove('profiles/passcode.yaml').remove('profiles/firewall.yaml');
    const r = await plan([repo.work, '--server', server.url], { ORCHARD_READ_TOKEN: server.readToken });
    expect(r.code).toBe(2);
    expect(r.stdout).toMatch(/remove +3 +PLAN0, PLAN1, PLAN2/);
  });

  it('errors: exit 1 for an invalid repository, a bad inventory, or a profile that cannot render', async () => {
    repo.write('blueprints/macs.yaml', blueprint('macs', '    platforms: [macOS]', ['nope']));
    const invalid = await plan([repo.work, '--inventory', inventory]);
    expect(invalid.code).toBe(1);
    expect(invalid.stdout).toMatch(/blueprints\/macs\.yaml:8:\d+: profile "nope" is not defined/);
    repo
      .write('blueprints/macs.yaml', blueprint('macs', '    platforms: [macOS]', ['imei']))
      .write(
        'profiles/imei.yaml',
        profile('imei', 'com.example.imei', '    - type: com.apple.wifi.managed\n      keys:\n        SSID_STR: net-${device.IMEI}\n'),
      );
    const render = await plan([repo.work, '--inventory', inventory]);
    expect(render.code).toBe(1);
    expect(render.stdout).toMatch(/error: device PLAN0: profile "imei": the device has no IMEI/);
    expect((await plan([repo.work, '--inventory', join(repo.root, 'missing.json')])).code).toBe(1);
    expect(serials).toHaveLength(4);
  });
});
