/**
 * The pull-request loop end to end, on a real git repository, a real server and simulated
 * devices, with a local stand-in of GitHub's commit-status API (test/report/git-host.ts):
 * a one-key change is planned (the key, old and new values, the right devices) with the read
 * token only; after the merge the server applies it and the commit gets pending, then success.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runPlan } from '../../src/cli/plan.js';
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

let repo: FleetRepo;
let host: GitHostStandIn;
let server: TestServer;
let macs: SimulatedDevice[];
let devices: SimulatedDevice[];

/** Every device checks in until `done` holds. */
async function converge(what: string, done: () => boolean, timeoutMs = 30_000): Promise<void> {
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
    },
    { commitStatusToken: TOKEN, commitStatusIntervalMs: 50 },
  );
  macs = [0, 1, 2].map((i) => server.device({ serialNumber: `LOOP${i}` }));
  devices = [...macs, server.device({ serialNumber: 'LOOPIPAD', model: 'iPad13,1', productName: 'iPad13,1' })];
  for (const d of devices) await d.enroll();
  await converge('the first revision', () => macs.every((d) => d.profiles.has('com.example.passcode')));
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await host?.stop();
  repo?.cleanup();
});

describe('the pull-request loop', () => {
  it('the first revision: success before any device (none selected), pending while they converge, then success', async () => {
    const sha = repo.head();
    await waitFor('success', () => host.states(sha).at(-1) === 'success', 15_000);
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
    await waitFor('pending', () => host.states(sha).length > 0, 15_000);
    expect(host.states(sha)[0]).toBe('pending');
    await converge(
      'the merged revision',
      () => macs.every((d) => d.profiles.get('com.example.passcode')?.PayloadUUID !== undefined) && host.states(sha).at(-1) === 'success',
    );
    expect(host.states(sha).at(-1)).toBe('success');
    expect(host.refused).toEqual([]);
  });
});
