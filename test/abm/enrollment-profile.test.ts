/**
 * `kind: EnrollmentProfile` from git: validated with file:line:col (skip keys from Apple's list),
 * defined in ABM (the stand-in checks what Apple checks), assigned to the ABM devices its rules
 * select, reassigned when the rule changes in git, removed from devices no rule selects.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { SKIP_KEYS } from '../../src/abm/apple/skip-keys.js';
import { loadFleet } from '../../src/gitops/load.js';
import { DepStandin } from '../../src/sim/dep.js';
import { FleetRepo, waitFor } from '../gitops/helpers.js';
import { makeRepo } from '../gitops/repo.js';
import { abmServerConfig } from '../helpers/abm.js';
import { http, startTestServer } from '../helpers/server.js';

const creds = { consumerKey: 'CK_prof', consumerSecret: 'CS_prof_secret', accessToken: 'AT_prof', accessSecret: 'AS_prof_secret' };

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const enrollmentProfile = (assign: string, extra = '') => `apiVersion: orchard/v1
kind: EnrollmentProfile
metadata:
  name: staff
spec:
  is_supervised: true
  is_mandatory: true
  await_device_configured: true
  department: IT
  support_email_address: it@example.com
  skip_setup_items: [Siri, Privacy]
${extra}  assign:
${assign}
`;

describe('EnrollmentProfile documents', () => {
  it("the skip keys are Apple's (the vendored skipkeys.yaml)", () => {
    const doc = parse(readFileSync(join(import.meta.dirname, '../../src/abm/apple/skipkeys.yaml'), 'utf8')) as { payloadkeys: { key: string }[] };
    expect([...SKIP_KEYS]).toEqual(doc.payloadkeys.map((k) => k.key));
  });

  it('an unknown skip key, a wrong type and a missing assign are errors at their line and column', async () => {
    const dir = makeRepo({
      'abm/staff.yaml': enrollmentProfile('    serials: [C02X]', '  skip_setup_items: [Siri, siri2, privacy]\n').replace(
        '  skip_setup_items: [Siri, Privacy]\n',
        '',
      ),
      'abm/bad.yaml': 'apiVersion: orchard/v1\nkind: EnrollmentProfile\nmetadata: {name: bad}\nspec:\n  is_supervised: yes-please\n',
    });
    const r = await loadFleet(dir);
    expect(r.ok).toBe(false);
    const at = (d: { file: string; line: number; col: number; message: string; rule: string }) => `${d.file}:${d.line}:${d.col} ${d.rule} ${d.message}`;
    const lines = r.diagnostics.map(at);
    expect(lines).toEqual([
      'abm/bad.yaml:5:3 schema spec: missing required key "assign"',
      'abm/bad.yaml:5:18 schema spec.is_supervised must be boolean',
      `abm/staff.yaml:11:28 skip-setup-items "siri2" is not one of Apple's Setup Assistant skip keys`,
      `abm/staff.yaml:11:35 skip-setup-items "privacy" is not one of Apple's Setup Assistant skip keys (did you mean "Privacy"?)`,
    ]);
  });
});

/** ABM with `devices`, a repo whose staff profile is for MacBook Airs, and the config of a server on them with an imported token. */
async function profileSetup(devices: { serial_number: string; model: string; device_family: string }[]) {
  const dep = await new DepStandin({ credentials: creds }).start();
  cleanups.push(() => dep.stop());
  for (const d of devices) dep.add(d);
  const repo = new FleetRepo();
  cleanups.push(() => repo.cleanup());
  repo.write('abm/staff.yaml', enrollmentProfile('    models: [MacBook Air]')).commit('enrollment profile');
  const cfg = abmServerConfig(repo, dep, creds);
  return { dep, repo, cfg };
}

describe('EnrollmentProfile reconciled against ABM', () => {
  it('defined with the enrollment URL, assigned by the rule, reassigned when the rule changes in git; a serial not assigned here is a condition', async () => {
    const { dep, repo, cfg } = await profileSetup([
      { serial_number: 'PROFAIR00001', model: 'MacBook Air', device_family: 'Mac' },
      { serial_number: 'PROFAIR00002', model: 'MacBook Air', device_family: 'Mac' },
      { serial_number: 'PROFPAD00003', model: 'iPad Pro', device_family: 'iPad' },
    ]);
    const server = await startTestServer(cfg);
    cleanups.push(() => server.stop());
    await server.abm.runOnce();

    expect([...dep.profiles.values()]).toEqual([
      expect.objectContaining({
        profile_name: 'staff',
        url: 'https://mdm.example.com/mdm/enroll',
        is_supervised: true,
        await_device_configured: true,
        skip_setup_items: ['Siri', 'Privacy'],
        department: 'IT',
      }),
    ]);
    const [uuid] = [...dep.profiles.keys()];
    expect(dep.devices.get('PROFAIR00001')).toMatchObject({ profile_uuid: uuid, profile_status: 'assigned' });
    expect(dep.devices.get('PROFAIR00002')).toMatchObject({ profile_uuid: uuid, profile_status: 'assigned' });
    expect(dep.devices.get('PROFPAD00003')).toMatchObject({ profile_status: 'empty' });

    // Nothing changed: no new definition, no assignment.
    const calls = () => dep.requests.filter((r) => r.path.startsWith('/profile')).length;
    const before = calls();
    await server.abm.runOnce();
    expect(calls()).toBe(before);

    // The rule changes in git: the iPad gets the profile, the Macs lose it.
    repo.write('abm/staff.yaml', enrollmentProfile('    deviceFamilies: [iPad]')).commit('staff profile for iPads');
    await server.source!.sync('test');
    await waitFor('reassigned', async () => {
      await server.abm.runOnce();
      return dep.devices.get('PROFPAD00003')?.profile_status === 'assigned' || undefined;
    });
    expect(dep.devices.get('PROFPAD00003')).toMatchObject({ profile_uuid: uuid });
    expect(dep.devices.get('PROFAIR00001')).toMatchObject({ profile_status: 'removed' });

    // The content changes: defined again, and the device moves to the new definition.
    repo.write('abm/staff.yaml', enrollmentProfile('    deviceFamilies: [iPad]', '  support_phone_number: "+1 555 0100"\n')).commit('phone');
    await server.source!.sync('test');
    await waitFor('redefined', async () => {
      await server.abm.runOnce();
      return (dep.profiles.size === 2 && dep.devices.get('PROFPAD00003')?.profile_uuid !== uuid) || undefined;
    });

    // Released in ABM after the last sync: ABM answers NOT_ACCESSIBLE, and that is a condition naming the serial.
    repo.write('abm/staff.yaml', enrollmentProfile('    all: true')).commit('everyone');
    await server.source!.sync('test');
    dep.devices.delete('PROFAIR00002');
    await server.abm.runOnce();
    const status = (await http(`${server.url}/api/v1/status`, { headers: { authorization: `Bearer ${server.readToken}` } })).json() as {
      abm: { conditions: { kind: string; serials?: string[] }[] };
    };
    expect(status.abm.conditions).toEqual([expect.objectContaining({ kind: 'not_accessible', serials: ['PROFAIR00002'] })]);
  });

  it('a restarted server does not define an unchanged profile again, and still clears the devices of its earlier definition', async () => {
    const { dep, repo, cfg } = await profileSetup([
      { serial_number: 'RSTAIR00001', model: 'MacBook Air', device_family: 'Mac' },
      { serial_number: 'RSTPAD00002', model: 'iPad Pro', device_family: 'iPad' },
    ]);
    const first = await startTestServer(cfg);
    await first.abm.runOnce();
    await first.stop();
    const defines = () => dep.requests.filter((r) => r.method === 'POST' && r.path === '/profile').length;
    expect(defines()).toBe(1);
    const [uuid] = [...dep.profiles.keys()];
    expect(dep.devices.get('RSTAIR00001')).toMatchObject({ profile_uuid: uuid, profile_status: 'assigned' });

    const second = await startTestServer(cfg);
    cleanups.push(() => second.stop());
    await second.abm.runOnce();
    expect(defines()).toBe(1);
    expect(dep.profiles.size).toBe(1);

    // The rule moves to iPads: the Mac holds the profile the first server defined, so it is cleared.
    repo.write('abm/staff.yaml', enrollmentProfile('    deviceFamilies: [iPad]')).commit('staff profile for iPads');
    await second.source!.sync('test');
    await waitFor('reassigned', async () => {
      await second.abm.runOnce();
      return dep.devices.get('RSTPAD00002')?.profile_status === 'assigned' || undefined;
    });
    expect(defines()).toBe(1);
    expect(dep.devices.get('RSTAIR00001')).toMatchObject({ profile_status: 'removed' });
  });

  it('the stand-in refuses what Apple refuses', async () => {
    const dep = await new DepStandin({ credentials: creds }).start();
    cleanups.push(() => dep.stop());
    const { DepClient } = await import('../../src/abm/client.js');
    const client = new DepClient({ credentials: creds, baseUrl: dep.url });
    await expect(client.defineProfile({ profile_name: 'x', url: 'not a url' })).rejects.toThrow(/URL_INVALID/);
    await expect(client.defineProfile({ profile_name: 'x', url: 'https://a.example', anchor_certs: ['bm90IGEgY2VydA=='] })).rejects.toThrow(
      /CERTIFICATE_INVALID/,
    );
    await expect(client.defineProfile({ profile_name: 'x', url: 'https://a.example', support_email_address: 'nobody' })).rejects.toThrow(/EMAIL_INVALID/);
  });
});
