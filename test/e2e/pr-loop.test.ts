/**
 * The pull-request loop end to end, on a real git repository, a real server and simulated
 * devices, with a local stand-in of GitHub's commit-status API (test/report/git-host.ts):
 * a one-key change is planned (the key, old and new values, the right devices) with the read
 * token only; after the merge the server applies it and the commit gets pending, then success.
 * A staged rollout whose change the devices refuse halts at its first step: only that step's
 * devices got it, an event webhook fires, the commit gets failure; a resume goes on to the next
 * step, which the gate halts again.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runPlan } from '../../src/cli/plan.js';
import { runRollout } from '../../src/cli/rollout.js';
import { rolloutBucket } from '../../src/reconcile/desired.js';
import type { RolloutView } from '../../src/reconcile/rollout.js';
import type { SimulatedDevice } from '../../src/sim/device.js';
import { FleetRepo, waitFor } from '../gitops/helpers.js';
import { blueprint, profile } from '../gitops/repo.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { GitHostStandIn } from '../report/git-host.js';

const TOKEN = 'ghp_prLoopToken';
const passcode = (min: number) =>
  profile(
    'passcode',
    'com.example.passcode',
    `    - type: com.apple.mobiledevice.passwordpolicy\n      keys:\n        minLength: ${min}\n        requireAlphanumeric: true\n`,
  );

const firewall = profile('firewall', 'com.example.firewall', '    - type: com.apple.security.firewall\n      keys:\n        EnableFirewall: true\n');

let repo: FleetRepo;
let host: GitHostStandIn;
let server: TestServer;
let macs: SimulatedDevice[];
let devices: SimulatedDevice[];
let events: { type: string; data: Record<string, unknown> }[];
let receiver: Server;

/** Every device checks in until `done` holds. */
async function converge(what: string, done: () => boolean, timeoutMs = 60_000): Promise<void> {
  await waitFor(
    what,
    async () => {
      for (const d of devices) await d.connect();
      return done() || undefined;
    },
    timeoutMs,
  );
}

beforeAll(async () => {
  host = await new GitHostStandIn(TOKEN).start();
  events = [];
  receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      events.push(JSON.parse(body) as { type: string; data: Record<string, unknown> });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  repo = new FleetRepo();
  repo.write('profiles/passcode.yaml', passcode(8)).write('blueprints/macs.yaml', blueprint('macs', '    platforms: [macOS]', ['passcode']));
  repo.commit('main');
  server = await startTestServer(
    {
      repo: repo.url,
      pollIntervalMs: 0,
      driftIntervalMs: 0,
      dataDir: join(repo.root, 'server'),
      publicUrl: 'https://mdm.example.com',
      commitStatus: { provider: 'github', repo: 'acme/fleet', url: host.url },
      eventWebhooks: [`http://127.0.0.1:${(receiver.address() as AddressInfo).port}/events`],
    },
    { commitStatusToken: TOKEN, commitStatusIntervalMs: 50, rolloutTickMs: 100, eventSecret: 'event-secret' },
  );
  macs = [0, 1, 2].map((i) => server.device({ serialNumber: `LOOP${i}` }));
  devices = [...macs, server.device({ serialNumber: 'LOOPIPAD', model: 'iPad13,1', productName: 'iPad13,1' })];
  for (const d of devices) await d.enroll();
  await converge('the first revision', () => macs.every((d) => d.profiles.has('com.example.passcode')));
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await host?.stop();
  await new Promise((r) => receiver?.close(r));
  repo?.cleanup();
});

describe('the pull-request loop', () => {
  it('the first revision: success before any device (none selected), pending while they converge, then success', async () => {
    const sha = repo.head();
    await waitFor('success', () => host.states(sha).at(-1) === 'success', 30_000);
    expect(host.posted.find((p) => p.sha === sha)).toMatchObject({ state: 'success', description: 'no enrolled device selected' });
    expect(host.states(sha)).toContain('pending');
    const last = host.posted.filter((p) => p.sha === sha).at(-1)!;
    expect(last).toMatchObject({ repo: 'acme/fleet', context: 'orchard', description: 'all 3 devices verified', targetUrl: 'https://mdm.example.com/status' });
    expect(host.refused).toEqual([]);
  });

  it('a one-key change: the plan names the key with old and new values for the Macs, with the read token only', async () => {
    repo.write('profiles/passcode.yaml', passcode(12));
    const plan = await runPlan({ path: repo.work, server: server.url, token: server.readToken, base: 'HEAD', format: 'markdown' });
    expect(plan.exitCode).toBe(2);
    expect(plan.stdout).toContain('**3 updates on 3 of 4 devices.**');
    expect(plan.stdout).toContain('<details><summary><b>update</b> <code>passcode</code> (com.example.passcode) on 3 devices: LOOP0, LOOP1, LOOP2</summary>');
    expect(plan.stdout).toMatch(/^- +minLength: 8\n\+ +minLength: 12$/m);
    expect(plan.stdout).not.toContain('requireAlphanumeric');
    expect(plan.stdout).not.toContain('LOOPIPAD');
    const json = JSON.parse((await runPlan({ path: repo.work, server: server.url, token: server.readToken, format: 'json' })).stdout) as {
      changes: { serial: string; diff: number }[];
      diffs: { payloads: { keys: unknown[] }[] }[];
    };
    // Without --base: against the revision the devices have, read from the clone.
    expect(json.changes.map((c) => c.serial).sort()).toEqual(['LOOP0', 'LOOP1', 'LOOP2']);
    expect(json.diffs[json.changes[0]!.diff]!.payloads[0]!.keys).toEqual([{ op: 'change', path: 'minLength', old: '8', new: '12' }]);
  });

  it('after the merge the server applies it: the commit gets pending, then success', async () => {
    const sha = repo.commit('passcode: 12 characters');
    await server.source!.sync('test');
    await waitFor('pending', () => host.states(sha).length > 0, 30_000);
    expect(host.states(sha)[0]).toBe('pending');
    await converge(
      'the merged revision',
      () => macs.every((d) => d.profiles.get('com.example.passcode')?.PayloadUUID !== undefined) && host.states(sha).at(-1) === 'success',
    );
    expect(host.states(sha).at(-1)).toBe('success');
    expect(host.refused).toEqual([]);
  }, 180_000);

  it('a change the devices refuse halts the staged rollout at its first step; the commit gets failure; resume goes on', async () => {
    // The first step holds exactly the Mac with the lowest bucket (the same hash as `percent`).
    const buckets = macs.map((d) => ({ d, at: rolloutBucket(d.serialNumber, 'macs') })).sort((a, b) => a.at - b.at);
    const first = Number(((buckets[0]!.at + buckets[1]!.at) / 2).toFixed(4));
    const staged = blueprint('macs', '    platforms: [macOS]', ['passcode', 'firewall']) + `  rollout: {steps: [${first}, 100], wait: 0s, maxFailures: 0}\n`;
    repo.write('blueprints/macs.yaml', staged).write('profiles/firewall.yaml', firewall);
    for (const d of macs)
      d.fail = (requestType, command) =>
        requestType === 'InstallProfile' && Buffer.from(command.Payload as Uint8Array).includes('com.example.firewall')
          ? { ErrorCode: 4001, ErrorDomain: 'MCInstallationErrorDomain', LocalizedDescription: 'The firewall payload could not be installed' }
          : undefined;
    const plan = await runPlan({ path: repo.work, server: server.url, token: server.readToken, base: 'HEAD', format: 'text' });
    expect(plan.stdout).toMatch(new RegExp(`install +1 +${buckets[0]!.d.serialNumber}\\n`));
    const sha = repo.commit('firewall, staged');
    await server.source!.sync('test');
    // A sample may post the device's failure before the rollout gate has halted (both are failures); the halt follows.
    const halted = () => host.posted.filter((p) => p.sha === sha && p.state === 'failure' && /^rollout halted/.test(p.description ?? ''));
    await converge('the halt', () => halted().length > 0);
    const failure = halted().at(-1)!;
    expect(failure.description).toMatch(/^rollout halted: macs: 1 of 1 devices failed at step 1 of 2/);
    expect(failure.targetUrl).toBe('https://mdm.example.com/status');
    const attempted = (d: SimulatedDevice) => d.handled.some((h) => h.requestType === 'InstallProfile' && h.status === 'Error');
    expect(macs.filter(attempted)).toEqual([buckets[0]!.d]);
    const list = await runRollout({ server: server.url, token: server.readToken, action: 'list' });
    expect(list.stdout).toMatch(/^macs: halted, step 1 of 2 \([\d.]+%\), 0 verified, 0 pending, 1 failed of 1: 1 of 1 devices failed/);
    await waitFor('the webhook', () => events.find((e) => e.type === 'rollout.halted'), 30_000);
    expect(events.find((e) => e.type === 'rollout.halted')!.data).toMatchObject({ blueprint: 'macs', revision: sha, step: 1, devices: 1, failed: 1 });

    // Halted stays halted: more check-ins do not move it on, and the read token may not resume.
    for (const d of devices) await d.connect();
    expect(macs.filter(attempted)).toEqual([buckets[0]!.d]);
    expect((await runRollout({ server: server.url, token: server.readToken, action: 'resume', blueprint: 'macs' })).exitCode).toBe(1);
    expect((await runRollout({ server: server.url, token: server.adminToken, action: 'resume', blueprint: 'nope' })).stderr).toMatch(/404/);
    const resumed = await runRollout({ server: server.url, token: server.adminToken, action: 'resume', blueprint: 'macs' });
    expect(resumed.exitCode).toBe(0);
    // The first step's failure is accepted; step 2 reaches the other Macs, which refuse it too: halted again.
    await converge(
      'step 2 halts',
      () => macs.every(attempted) && host.posted.filter((p) => p.sha === sha && /at step 2 of 2/.test(p.description ?? '')).length > 0,
    );
    // The third device's answer reaches the status rows through its work row, maybe after the commit status: wait for it.
    const views = await waitFor(
      'the rollout counts all three failures',
      async () => {
        const v = (await (await fetch(`${server.url}/api/v1/rollouts`, { headers: { authorization: `Bearer ${server.readToken}` } })).json()) as {
          rollouts: RolloutView[];
        };
        return v.rollouts[0]?.counts.failed === 3 && v;
      },
      30_000,
    );
    expect(views.rollouts[0]).toMatchObject({ blueprint: 'macs', step: 1, phase: 'halted', acceptedFailures: 1, counts: { devices: 3, failed: 3 } });
    expect(events.map((e) => e.type).filter((t) => t.startsWith('rollout.'))).toEqual(['rollout.halted', 'rollout.resumed', 'rollout.step', 'rollout.halted']);

    // The status page draws it: the revision's convergence and the rollout's steps, as inline SVG.
    const login = await fetch(`${server.url}/status/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `token=${server.readToken}`,
      redirect: 'manual',
    });
    const cookie = login.headers.get('set-cookie')!.split(';')[0]!;
    const page = await (await fetch(`${server.url}/status`, { headers: { cookie } })).text();
    expect(page).toContain(`<svg class="chart convergence"`);
    expect(page).toContain(`Convergence of revision ${sha.slice(0, 12)}`);
    expect(page).toMatch(/<figure data-rollout="macs"><svg class="chart rollout"[^]*data-step="1" data-state="done"[^]*data-step="2" data-state="halted"/);
    expect(page).not.toContain('<script');
  }, 240_000);
});
