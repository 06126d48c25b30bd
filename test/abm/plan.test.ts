/**
 * `orchard plan` (a CLI process) with Apple Business Manager: ABM devices not enrolled yet counted
 * by the blueprints that select them, enrollment profiles redefined because their content changed,
 * serials newly assigned, reassigned and unassigned by the rules. From a real server synced with
 * the stand-in (`--server`, whose applied revision is the base), from a file, and with `--base`.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DepStandin } from '../../src/sim/dep.js';
import { FleetRepo } from '../gitops/helpers.js';
import { blueprint, passcodePayload, profile } from '../gitops/repo.js';
import { startAbmServer } from '../helpers/abm.js';
import { CLI } from '../helpers/process.js';
import type { TestServer } from '../helpers/server.js';

const exec = promisify(execFile);
const creds = { consumerKey: 'CK_plan', consumerSecret: 'CS_plan_secret', accessToken: 'AT_plan', accessSecret: 'AS_plan_secret' };

async function plan(args: string[]): Promise<{ code: number; stdout: string }> {
  try {
    const r = await exec(process.execPath, [CLI, 'plan', ...args], { env: { ...process.env, ORCHARD_READ_TOKEN: server.readToken } });
    return { code: 0, stdout: r.stdout };
  } catch (err) {
    const e = err as { code: number; stdout: string };
    return { code: e.code, stdout: e.stdout };
  }
}

const enrollmentProfile = (assign: string, department = 'IT') => `apiVersion: orchard/v1
kind: EnrollmentProfile
metadata:
  name: staff
spec:
  is_supervised: true
  department: ${department}
  assign:
${assign}
`;

let dep: DepStandin;
let repo: FleetRepo;
let server: TestServer;

beforeAll(async () => {
  dep = await new DepStandin({ credentials: creds }).start();
  dep.add({ serial_number: 'PLANAIR00001', model: 'MacBook Air', device_family: 'Mac' });
  dep.add({ serial_number: 'PLANAIR00002', model: 'MacBook Air', device_family: 'Mac' });
  dep.add({ serial_number: 'PLANPAD00003', model: 'iPad Pro', device_family: 'iPad' });
  repo = new FleetRepo();
  repo
    .write('profiles/passcode.yaml', profile('passcode', 'com.example.passcode', passcodePayload))
    .write('blueprints/airs.yaml', blueprint('airs', '    abm:\n      models: [MacBook Air]', ['passcode']))
    .write('blueprints/ipads.yaml', blueprint('ipads', '    abm: true\n    platforms: [iPadOS]', []))
    .write('abm/staff.yaml', enrollmentProfile('    models: [MacBook Air]'))
    .commit('abm');
  server = await startAbmServer(repo, dep, creds);
  await server.abm.runOnce();
  // The assignments of the first pass are in ABM; the second sync brings their profile status back.
  await server.abm.runOnce();
});
afterAll(async () => {
  await server?.stop();
  await dep?.stop();
  repo?.cleanup();
});

describe('orchard plan with ABM', () => {
  it('no change: ABM devices not enrolled yet counted per blueprint, nothing to do in ABM, exit 0', async () => {
    const r = await plan([repo.work, '--server', server.url]);
    expect(r.stdout).toContain('blueprint airs: 2 ABM devices not enrolled yet  PLANAIR00001, PLANAIR00002\n');
    expect(r.stdout).toContain('blueprint ipads: 1 ABM device not enrolled yet  PLANPAD00003\n');
    expect(r.stdout).toContain('ABM: 3 devices, 3 not enrolled yet; no change in ABM.');
    expect(r.code).toBe(0);
  });

  it('content and rule changed in the working copy: redefined with the key diff, reassigned, newly assigned; exit 2', async () => {
    repo.write('abm/staff.yaml', enrollmentProfile('    deviceFamilies: [Mac, iPad]', 'Sales'));
    const r = await plan([repo.work, '--server', server.url]);
    expect(r.code).toBe(2);
    expect(r.stdout).toContain('enrollment profile staff: redefine (its content changed)\n      - department: "IT"\n      + department: "Sales"\n');
    expect(r.stdout).toMatch(/ {2}assign +1 {2}staff: PLANPAD00003\n/);
    expect(r.stdout).toMatch(/ {2}reassign +2 {2}staff \(new definition\): PLANAIR00001, PLANAIR00002\n/);
    expect(r.stdout).toContain('ABM: 3 devices, 3 not enrolled yet; 1 enrollment profile change, 3 serials (re)assigned or unassigned.');

    const md = await plan([repo.work, '--server', server.url, '--format', 'markdown']);
    expect(md.stdout).toContain('| `staff` | assign | 1 | PLANPAD00003 |');
    expect(md.stdout).toContain('<details><summary><b>redefine</b> enrollment profile <code>staff</code></summary>');
    const json = JSON.parse((await plan([repo.work, '--server', server.url, '--format', 'json'])).stdout) as {
      abm: { assignments: { kind: string; serials: string[] }[] };
    };
    expect(json.abm.assignments.map((a) => `${a.kind} ${a.serials.length}`)).toEqual(['assign 1', 'reassign 2']);
  });

  it('--base: the rule narrowed takes the profile from the serials it no longer selects', async () => {
    repo.write('abm/staff.yaml', enrollmentProfile('    serials: [PLANAIR00001]')).commit('only one');
    const r = await plan([repo.work, '--server', server.url, '--base', 'HEAD~1']);
    expect(r.code).toBe(2);
    expect(r.stdout).toMatch(/ {2}unassign +1 {2}from staff: PLANAIR00002\n/);
    expect(r.stdout).not.toContain('redefine');
    expect((await plan([repo.work, '--server', server.url, '--base', 'HEAD'])).code).toBe(0);
  });

  it('an inventory file with ABM beside the devices: judged by ABM profile status; a bad ABM list is exit 1', async () => {
    const file = join(repo.root, 'inventory.json');
    const abm = {
      devices: [
        { serialNumber: 'FILEAIR00001', token: 'acme', model: 'MacBook Air', deviceFamily: 'Mac', profileStatus: 'empty' },
        { serialNumber: 'FILEPAD00002', token: 'acme', model: 'iPad Pro', deviceFamily: 'iPad', profileStatus: 'assigned', profileUuid: 'ABC' },
        { serialNumber: 'FILEAIR00003', token: 'acme', model: 'MacBook Air', deviceFamily: 'Mac', deviceId: 'UDID-3' },
      ],
    };
    writeFileSync(file, JSON.stringify({ devices: [], abm }));
    const r = await plan([repo.work, '--inventory', file]);
    expect(r.code).toBe(2);
    // The committed rule selects PLANAIR00001 only: none of the file's devices; the iPad holding a profile loses it.
    expect(r.stdout).toMatch(/ {2}unassign +1 {2}its profile: FILEPAD00002\n/);
    expect(r.stdout).toContain('blueprint airs: 1 ABM device not enrolled yet  FILEAIR00001\n');
    expect(r.stdout).toContain('ABM: 3 devices, 2 not enrolled yet;');

    repo.write('abm/staff.yaml', enrollmentProfile('    all: true'));
    expect((await plan([repo.work, '--inventory', file])).stdout).toMatch(/ {2}assign +2 {2}staff: FILEAIR00001, FILEAIR00003\n/);

    writeFileSync(file, JSON.stringify({ devices: [], abm: { devices: [{ model: 'no serial' }] } }));
    const bad = await plan([repo.work, '--inventory', file]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain('ABM device #0 has no serialNumber');
  });
});
