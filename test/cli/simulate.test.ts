/** `orchard serve` and `orchard simulate` as a user runs them: two real processes. */
import { execFile } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, expect, it } from 'vitest';
import { loadOrCreateCA } from '../../src/cli/simulate.js';
import { importPushCertificate } from '../../src/push/push-cert.js';
import { makePushCert } from '../push/helpers.js';
import { CLI, spawnServer, waitExit } from '../helpers/process.js';
import { FleetRepo, waitFor } from '../gitops/helpers.js';
import { ddmBlueprint, passcodeDecl } from '../ddm/fleet.js';
import type { SimDdmState } from '../../src/sim/ddm.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'orchard-sim-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('a server that does not trust the simulator: a one-line reason, exit 1', async () => {
  const srv = await spawnServer(['--data-dir', join(dir, 'untrusting')]);
  try {
    const stateDir = join(dir, 'other-ca');
    const r = await run(process.execPath, [CLI, 'simulate', '--server', srv.url, '--state-dir', stateDir, '--once']).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => err,
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`start it with --trust-ca ${join(stateDir, 'ca.pem')}`);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  } finally {
    srv.child.kill('SIGTERM');
    await waitExit(srv.child);
  }
});

it('--enroll-url: devices enroll from the served profile through SCEP, once', async () => {
  const dataDir = join(dir, 'scep-server');
  mkdirSync(dataDir, { recursive: true });
  const push = makePushCert();
  writeFileSync(join(dir, 'push.pem'), push.certPem);
  writeFileSync(join(dir, 'push.key'), push.keyPem);
  importPushCertificate(dataDir, join(dir, 'push.pem'), join(dir, 'push.key'));
  // APNs pointed at a closed local port: this test must never reach Apple.
  const srv = await spawnServer(['--data-dir', dataDir, '--apns-url', 'https://127.0.0.1:9'], {
    ORCHARD_API_TOKEN: 't0ken',
    ORCHARD_SCEP_CHALLENGE: 'sim-challenge',
  });
  try {
    const args = [
      CLI,
      'simulate',
      '--server',
      srv.url,
      '--enroll-url',
      `${srv.url}/mdm/enroll`,
      '--state-dir',
      join(dir, 'scep-sim'),
      '--count',
      '2',
      '--prefix',
      'SCEP',
      '--once',
    ];
    const first = await run(process.execPath, args);
    expect(first.stdout).toMatch(/enrolled SIM-SCEP000000/);
    expect(first.stdout).toMatch(/enrolled SIM-SCEP000001/);
    const second = await run(process.execPath, args);
    expect(second.stdout).not.toMatch(/enrolled/);
    const dev = (await (await fetch(`${srv.url}/api/v1/devices/SIM-SCEP000001`, { headers: { authorization: 'Bearer t0ken' } })).json()) as {
      enrolled: boolean;
      identity: { subject: string };
      enrollments: { topic: string }[];
    };
    expect(dev.enrolled).toBe(true);
    expect(dev.enrollments[0]!.topic).toBe(push.topic);
    expect(dev.identity.subject).toContain('Orchard MDM identity'); // issued by the server's own CA
  } finally {
    srv.child.kill('SIGTERM');
    await waitExit(srv.child);
  }
});

it('simulated devices enroll and answer a command queued through the admin API', async () => {
  const caDir = join(dir, 'ca');
  loadOrCreateCA(caDir);
  const srv = await spawnServer(['--data-dir', join(dir, 'data'), '--trust-ca', join(caDir, 'ca.pem')], { ORCHARD_API_TOKEN: 't0ken' });
  try {
    const first = await run(process.execPath, [CLI, 'simulate', '--server', srv.url, '--state-dir', caDir, '--count', '2', '--prefix', 'CLI', '--once']);
    expect(first.stdout).toMatch(/enrolled SIM-CLI000000/);
    expect(first.stdout).toMatch(/enrolled SIM-CLI000001/);
    const res = await fetch(`${srv.url}/api/v1/commands`, {
      method: 'POST',
      headers: { authorization: 'Bearer t0ken', 'content-type': 'application/json' },
      body: JSON.stringify({ targets: ['SIM-CLI000001'], command: { RequestType: 'DeviceInformation', Queries: ['SerialNumber'] } }),
    });
    expect(res.status).toBe(201);
    const { commandUUID } = (await res.json()) as { commandUUID: string };
    const second = await run(process.execPath, [CLI, 'simulate', '--server', srv.url, '--state-dir', caDir, '--count', '2', '--prefix', 'CLI', '--once']);
    expect(second.stdout).toContain(`SIM-CLI000001 DeviceInformation ${commandUUID} -> Acknowledged`);
    expect(second.stdout).not.toMatch(/enrolled/); // the same devices, not new enrollments
    const dev = (await (await fetch(`${srv.url}/api/v1/devices/SIM-CLI000001`, { headers: { authorization: 'Bearer t0ken' } })).json()) as {
      reported: { DeviceInformation: { value: unknown } };
    };
    expect(dev.reported.DeviceInformation.value).toEqual({ SerialNumber: 'CLI000001' });
  } finally {
    srv.child.kill('SIGTERM');
    await waitExit(srv.child);
  }
});

it('a server that lost its devices: a one-line reason naming --reenroll, which then enrolls them again', async () => {
  const caDir = join(dir, 'lost-ca');
  loadOrCreateCA(caDir);
  const sim = (extra: string[] = []) =>
    run(process.execPath, [CLI, 'simulate', '--server', srvUrl(), '--state-dir', caDir, '--prefix', 'LOST', '--once', ...extra]).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (err: { code: number; stdout: string; stderr: string }) => err,
    );
  let srv = await spawnServer(['--data-dir', join(dir, 'lost-1'), '--trust-ca', join(caDir, 'ca.pem')]);
  const srvUrl = () => srv.url;
  try {
    expect((await sim()).stdout).toMatch(/enrolled SIM-LOST000000/);
  } finally {
    srv.child.kill('SIGTERM');
    await waitExit(srv.child);
  }
  // A new data directory: the server has never seen the saved device.
  srv = await spawnServer(['--data-dir', join(dir, 'lost-2'), '--trust-ca', join(caDir, 'ca.pem')]);
  try {
    const refused = await sim();
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('SIM-LOST000000');
    expect(refused.stderr).toContain('--reenroll');
    expect(refused.stderr).not.toMatch(/\n\s+at /); // no stack trace
    const again = await sim(['--reenroll']);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('re-enrolled SIM-LOST000000');
    expect((await sim()).code).toBe(0);
  } finally {
    srv.child.kill('SIGTERM');
    await waitExit(srv.child);
  }
});

it('DDM: the simulated devices sync their declarations, and a second run continues from the saved DDM state', async () => {
  const repo = new FleetRepo();
  repo.write('declarations/passcode.yaml', passcodeDecl('passcode', 8)).write('declarations/other.yaml', passcodeDecl('other', 6));
  repo.write('blueprints/b.yaml', ddmBlueprint('macs', ['passcode', 'other']));
  repo.commit('start');
  const stateDir = join(dir, 'ddm-sim');
  loadOrCreateCA(stateDir);
  const srv = await spawnServer(
    ['--data-dir', join(dir, 'ddm-server'), '--trust-ca', join(stateDir, 'ca.pem'), '--repo', repo.url, '--poll-interval', '0', '--drift-interval', '0'],
    { ORCHARD_READ_TOKEN: 'read', ORCHARD_WEBHOOK_SECRET: 'hook' },
  );
  type View = { ddm?: { declarations: { identifier: string; phase: string; serverToken: string }[] } };
  const view = async () => (await (await fetch(`${srv.url}/api/v1/devices/SIM-DDMSIM000000`, { headers: { authorization: 'Bearer read' } })).json()) as View;
  const saved = () => (JSON.parse(readFileSync(join(stateDir, 'devices', 'DDMSIM000000.json'), 'utf8')) as { ddm: SimDdmState }).ddm;
  const simulateOnce = async () =>
    (await run(process.execPath, [CLI, 'simulate', '--server', srv.url, '--state-dir', stateDir, '--prefix', 'DDMSIM', '--once'])).stdout;
  /** `orchard simulate --once` until the server has every declaration verified and `done` holds; the output of every run. */
  const converge = (done: (v: View) => boolean) => {
    let out = '';
    return waitFor(
      'declarations verified',
      async () => {
        out += await simulateOnce();
        const v = await view();
        const ds = v.ddm?.declarations ?? [];
        return ds.length > 0 && ds.every((d) => d.phase === 'verified') && done(v) ? { v, out } : undefined;
      },
      30_000,
    );
  };
  const tokensOf = (v: View) => Object.fromEntries(v.ddm!.declarations.map((d) => [d.identifier, d.serverToken]));
  try {
    const first = await converge((v) => v.ddm!.declarations.some((d) => d.identifier === 'com.example.other'));
    const tokens = tokensOf(first.v);
    expect(Object.keys(tokens).sort()).toEqual([
      'com.example.other',
      'com.example.passcode',
      'orchard.blueprint.macs.activation',
      'orchard.status-subscriptions',
    ]);
    expect(first.out).toMatch(/SIM-DDMSIM000000 DeclarativeManagement \S+ -> Acknowledged/);
    expect(first.out).toMatch(/SIM-DDMSIM000000 DDM sync: fetched .*com\.example\.passcode/);
    // What the device holds is saved with the server's tokens.
    const state = saved();
    expect(Object.fromEntries(Object.entries(state.channels['']!).map(([id, h]) => [id, h.declaration.ServerToken]))).toEqual(tokens);
    expect(state.tokens['']).toMatch(/^[0-9a-f]{64}$/);

    repo.write('declarations/passcode.yaml', passcodeDecl('passcode', 12));
    repo.commit('passcode 12');
    const body = '{}';
    const hook = await fetch(`${srv.url}/api/v1/hooks/git`, {
      method: 'POST',
      body,
      headers: { 'x-orchard-signature': `sha256=${createHmac('sha256', 'hook').update(body).digest('hex')}` },
    });
    expect(hook.status).toBe(202);
    const second = await converge((v) => tokensOf(v)['com.example.passcode'] !== tokens['com.example.passcode']);
    // A device that had forgotten what it holds would fetch all four again.
    expect(second.out).toContain('SIM-DDMSIM000000 DDM sync: fetched com.example.passcode; removed none');
    expect(second.out).not.toMatch(/enrolled/);
    const now = tokensOf(second.v);
    expect(Object.keys(now).filter((id) => now[id] !== tokens[id])).toEqual(['com.example.passcode']);
    expect(saved().channels['']!['com.example.passcode']!.declaration.Payload.MinimumLength).toBe(12);
    expect(saved().tokens['']).not.toBe(state.tokens['']);
  } finally {
    srv.child.kill('SIGTERM');
    await waitExit(srv.child);
    repo.cleanup();
  }
});
