/**
 * `orchard validate` and `orchard plan` on declarations, as CLI processes: findings with
 * file:line:col and rule ids; a plan against a real server's inventory (simulated devices that
 * synced their declarations), and between two revisions.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { phaseOf } from '../../src/ddm/status.js';
import { FleetRepo, waitFor } from '../gitops/helpers.js';
import { makeRepo, profile } from '../gitops/repo.js';
import { CLI } from '../helpers/process.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import type { SimulatedDevice } from '../../src/sim/device.js';
import { LEGACY_WIFI_DECL, ddmBlueprint, passcodeDecl, startLegacyServer } from './fleet.js';

const exec = promisify(execFile);
async function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string }> {
  try {
    const r = await exec(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } });
    return { code: 0, stdout: r.stdout };
  } catch (err) {
    const e = err as { code: number; stdout: string };
    return { code: e.code, stdout: e.stdout };
  }
}

describe('orchard validate on declarations', () => {
  it('a valid repository with declarations and a software update: exit 0', async () => {
    const root = makeRepo({
      'd.yaml': passcodeDecl(),
      'b.yaml': ddmBlueprint('office', ['passcode'], '  softwareUpdate: {targetOSVersion: "15.2", deadline: "2026-12-24T18:00:00"}\n'),
    });
    const r = await cli(['validate', root]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/\b0 errors\b/);
  });

  it('findings name file:line:col and the rule; exit 1', async () => {
    const root = makeRepo({
      'd.yaml': passcodeDecl('passcode', 8, '    MaximumFailedAttempts: many\n'),
      'b.yaml': ddmBlueprint('office', ['passcode', 'missing'], '  softwareUpdate: {targetOSVersion: "15.2", deadline: "2026-02-30T18:00:00"}\n'),
    });
    const r = await cli(['validate', root, '--format', 'json']);
    expect(r.code).toBe(1);
    const findings = JSON.parse(r.stdout) as { diagnostics: { file: string; line: number; col: number; rule: string }[] };
    const at = (rule: string) => findings.diagnostics.filter((d) => d.rule === rule).map((d) => `${d.file}:${d.line}:${d.col}`);
    expect(at('apple-type')).toEqual(['d.yaml:10:28']);
    expect(at('ref-missing-declaration')).toEqual(['b.yaml:6:28']);
    expect(at('software-update')).toHaveLength(1);
  });
});

describe('orchard plan on declarations', () => {
  let repo: FleetRepo;
  let server: TestServer;
  let inventory: string;

  beforeAll(async () => {
    repo = new FleetRepo();
    repo.write('declarations/passcode.yaml', passcodeDecl('passcode', 8)).write('blueprints/macs.yaml', ddmBlueprint('macs', ['passcode']));
    repo.commit('main');
    server = await startTestServer({ repo: repo.url, pollIntervalMs: 0, driftIntervalMs: 0, dataDir: join(repo.root, 'server') });
    const devices = [0, 1].map((i) => server.device({ serialNumber: `DDM${i}` })).concat([server.device({ serialNumber: 'OLDMAC', osVersion: '12.6' })]);
    for (const d of devices) await d.enroll();
    await waitFor(
      'declarations verified',
      async () => {
        for (const d of devices) await d.connect();
        for (const d of devices.slice(0, 2)) {
          const s = await server.ddmStore.getDeclarationSet(d.udid, 'current');
          const st = await server.ddmStore.getDdmStatus(d.udid);
          if (!s || Object.values(s.entries).some((e) => phaseOf(e, st).phase !== 'verified')) return undefined;
        }
        return true;
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

  it('the device view shows each declaration verified, and the old Mac as having no DDM', async () => {
    const devices = JSON.parse((await import('node:fs')).readFileSync(inventory, 'utf8')) as {
      devices: { serialNumber: string; ddm?: { unsupported?: string; declarations: { identifier: string; phase: string }[] } }[];
    };
    const bySerial = new Map(devices.devices.map((d) => [d.serialNumber, d]));
    expect(
      bySerial
        .get('DDM0')!
        .ddm!.declarations.map((d) => `${d.identifier} ${d.phase}`)
        .sort(),
    ).toEqual(['com.example.passcode verified', 'orchard.blueprint.macs.activation verified', 'orchard.status-subscriptions verified']);
    expect(bySerial.get('OLDMAC')!.ddm!.unsupported).toMatch(/macOS 12\.6 has no Declarative Device Management/);
  });

  it('no change: exit 0; a changed declaration: an update per device, with the key diff against --base', async () => {
    expect((await cli(['plan', repo.work, '--inventory', inventory])).code).toBe(0);
    repo.write('declarations/passcode.yaml', passcodeDecl('passcode', 12));
    const r = await cli(['plan', repo.work, '--inventory', inventory]);
    expect(r.code).toBe(2);
    expect(r.stdout).toContain('blueprint macs / declaration passcode (com.example.passcode)');
    expect(r.stdout).toMatch(/update +2 +DDM0, DDM1/);
    expect(r.stdout).not.toContain('OLDMAC');
    repo.commit('pr');
    const base = await cli(['plan', repo.work, '--inventory', inventory, '--base', 'HEAD~1']);
    expect(base.code).toBe(2);
    expect(base.stdout).toContain('- MinimumLength: 8\n      + MinimumLength: 12');
  });

  it('a new declaration is an install, a dropped one a removal', async () => {
    repo
      .write('declarations/other.yaml', passcodeDecl('other', 6))
      .write('blueprints/macs.yaml', ddmBlueprint('macs', ['other']))
      .remove('declarations/passcode.yaml');
    const r = await cli(['plan', repo.work, '--server', server.url], { ORCHARD_READ_TOKEN: server.readToken });
    expect(r.code).toBe(2);
    expect(r.stdout).toContain('blueprint macs / declaration other (com.example.other)');
    expect(r.stdout).toMatch(/install +2 +DDM0, DDM1/);
    expect(r.stdout).toMatch(/remove +2 +DDM0, DDM1/);
  });
});

describe('orchard plan on a legacy declaration (a profile delivered over DDM)', () => {
  const LEGACY = LEGACY_WIFI_DECL;
  // Device values and a secret in the profile: the plan renders neither the server's URL nor the secret.
  const WIFI = profile(
    'wifi',
    'com.example.wifi',
    `    - type: com.apple.wifi.managed\n      keys:\n        SSID_STR: corp-\${device.SerialNumber}\n        EncryptionType: WPA2\n        Password: \${secret:psk}\n`,
  );
  let repo: FleetRepo;
  let server: TestServer;
  let macs: SimulatedDevice[];

  const inventory = async () => {
    const file = join(repo.root, 'legacy-inventory.json');
    const res = await fetch(`${server.url}/api/v1/devices`, { headers: { authorization: `Bearer ${server.readToken}` } });
    writeFileSync(file, await res.text());
    return file;
  };
  const converged = (sha: string, identifier: string) =>
    waitFor(
      `${identifier} verified`,
      async () => {
        for (const d of macs) {
          await d.connect();
          const s = await server.ddmStore.getDeclarationSet(d.udid, 'current');
          const e = s?.entries[identifier];
          if (s?.revision !== sha || !e || phaseOf(e, await server.ddmStore.getDdmStatus(d.udid)).phase !== 'verified') return undefined;
        }
        return true;
      },
      20_000,
    );

  beforeAll(async () => {
    repo = new FleetRepo();
    repo
      .write('declarations/passcode.yaml', passcodeDecl('passcode', 8))
      .write('profiles/wifi.yaml', WIFI)
      .write('secrets.yaml', 'apiVersion: orchard/v1\nkind: Secret\nmetadata: {name: psk}\nspec: {}\n')
      .write('blueprints/macs.yaml', ddmBlueprint('macs', ['passcode']));
    const sha = repo.commit('main');
    server = await startLegacyServer(repo);
    macs = [0, 1].map((i) => server.device({ serialNumber: `LEG${i}` }));
    for (const d of macs) await d.enroll();
    await converged(sha, 'com.example.passcode');
  });
  afterAll(async () => {
    await server.stop();
    repo.cleanup();
  });

  it('a legacy declaration a revision adds is an install; once the devices report it, no change', async () => {
    repo.write('declarations/wifi.yaml', LEGACY).write('blueprints/macs.yaml', ddmBlueprint('macs', ['passcode', 'wifi-legacy']));
    const added = await cli(['plan', repo.work, '--inventory', await inventory()]);
    expect(added.code).toBe(2);
    expect(added.stdout).toContain('blueprint macs / declaration wifi-legacy (com.example.wifi-legacy)');
    expect(added.stdout).toMatch(/install +2 +LEG0, LEG1/);
    expect(added.stdout).not.toMatch(/remove/);
    expect(added.stdout).not.toContain('psk-value');

    const sha = repo.commit('legacy wifi');
    await server.source!.sync('test');
    await converged(sha, 'com.example.wifi-legacy');
    const held = await cli(['plan', repo.work, '--inventory', await inventory()]);
    expect(held.stdout).not.toContain('wifi-legacy');
    expect(held.code).toBe(0);
    const live = await cli(['plan', repo.work, '--server', server.url], { ORCHARD_READ_TOKEN: server.readToken });
    expect(live.code).toBe(0);
  });

  it('a changed profile is an update of the legacy declaration, on each device', async () => {
    repo.write('profiles/wifi.yaml', WIFI.replace('EncryptionType: WPA2', 'EncryptionType: WPA3'));
    const r = await cli(['plan', repo.work, '--server', server.url], { ORCHARD_READ_TOKEN: server.readToken });
    expect(r.code).toBe(2);
    expect(r.stdout).toContain('blueprint macs / declaration wifi-legacy (com.example.wifi-legacy)');
    expect(r.stdout).toMatch(/update +2 +LEG0, LEG1/);
  });
});
