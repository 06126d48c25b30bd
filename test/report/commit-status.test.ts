/**
 * Commit statuses against a local stand-in of GitHub's and GitLab's APIs (test/report/git-host.ts):
 * the requests the clients send are the ones the real APIs accept; the reporter posts pending,
 * then success or failure, only when something changed, coalescing changes within its interval,
 * and keeps going when the host refuses or is down. The token never reaches the log.
 */
import { resolve } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { ConvergenceSeries, ProgressSampler } from '../../src/report/progress.js';
import {
  CommitStatusReporter,
  commitStatusClient,
  parseCommitStatusTarget,
  revisionProgress,
  statusOf,
  type RevisionProgress,
} from '../../src/report/commit-status.js';
import { captureLog } from '../gitops/helpers.js';
import { GitHostStandIn } from './git-host.js';

const TOKEN = 'ghp_commitStatusTestToken123';
const SHA = 'a'.repeat(40);
let host: GitHostStandIn;

beforeAll(async () => {
  host = await new GitHostStandIn(TOKEN).start();
});
afterAll(() => host.stop());

describe('clients', () => {
  it('GitHub: the path, bearer token, API headers and JSON fields the API wants', async () => {
    const gh = commitStatusClient({ provider: 'github', repo: 'acme/fleet', url: host.url }, TOKEN);
    await gh.post(SHA, { state: 'pending', description: 'x'.repeat(300), targetUrl: 'https://mdm.example/status' });
    const req = host.requests.at(-1)!;
    expect(req.path).toBe(`/repos/acme/fleet/statuses/${SHA}`);
    expect(req.headers.accept).toBe('application/vnd.github+json');
    expect(req.headers['x-github-api-version']).toBe('2022-11-28');
    expect(JSON.parse(req.body)).toEqual({ state: 'pending', description: 'x'.repeat(140), context: 'orchard', target_url: 'https://mdm.example/status' });
    expect(host.posted.at(-1)).toMatchObject({ provider: 'github', repo: 'acme/fleet', sha: SHA, state: 'pending', context: 'orchard' });
  });

  it('GitLab: the project path (a group path URL-encoded), PRIVATE-TOKEN, its state names', async () => {
    const gl = commitStatusClient({ provider: 'gitlab', repo: 'it/apple/fleet', url: `${host.url}/api/v4`, context: 'orchard/prod' }, TOKEN);
    await gl.post(SHA, { state: 'pending', description: 'converging' });
    await gl.post(SHA, { state: 'failure', description: '1 failed' });
    const req = host.requests.at(-2)!;
    expect(req.path).toBe(`/api/v4/projects/it%2Fapple%2Ffleet/statuses/${SHA}`);
    expect(req.headers['private-token']).toBe(TOKEN);
    expect(JSON.parse(req.body)).toEqual({ state: 'running', description: 'converging', name: 'orchard/prod' });
    expect(host.posted.slice(-2).map((p) => [p.repo, p.state, p.context])).toEqual([
      ['it/apple/fleet', 'running', 'orchard/prod'],
      ['it/apple/fleet', 'failed', 'orchard/prod'],
    ]);
  });

  it('a bad token is refused with 401 and the error says so without the token', async () => {
    for (const provider of ['github', 'gitlab'] as const) {
      const c = commitStatusClient({ provider, repo: 'acme/fleet', url: provider === 'github' ? host.url : `${host.url}/api/v4` }, 'wrong-token');
      const err = await c.post(SHA, { state: 'success', description: 'ok' }).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(err?.message).toMatch(/answered 401/);
      expect(err?.message).not.toContain('wrong-token');
    }
  });

  it('the stand-in refuses what the real API refuses: a state outside the list (422 on GitHub)', async () => {
    const res = await fetch(`${host.url}/repos/acme/fleet/statuses/${SHA}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', 'user-agent': 't' },
      body: JSON.stringify({ state: 'running' }),
    });
    expect(res.status).toBe(422);
    expect(((await res.json()) as { message: string }).message).toBe('Validation Failed');
  });

  it('orchard serve: --commit-status, --commit-status-url, --commit-status-token-file', () => {
    expect(loadConfig({ commitStatus: 'github:acme/fleet', commitStatusUrl: 'https://ghe.example/api/v3', commitStatusTokenFile: 'tok' }).commitStatus).toEqual(
      {
        provider: 'github',
        repo: 'acme/fleet',
        url: 'https://ghe.example/api/v3',
        tokenFile: resolve('tok'),
      },
    );
    expect(() => loadConfig({ commitStatusUrl: 'https://x' })).toThrow(ConfigError);
    expect(() => loadConfig({ commitStatus: 'svn:x' })).toThrow(/commit-status: "svn:x" is not/);
  });

  it('targets parse as github:OWNER/REPO or gitlab:PROJECT', () => {
    expect(parseCommitStatusTarget('github:acme/fleet')).toEqual({ provider: 'github', repo: 'acme/fleet' });
    expect(parseCommitStatusTarget('gitlab:1234')).toEqual({ provider: 'gitlab', repo: '1234' });
    expect(() => parseCommitStatusTarget('github:acme')).toThrow(/OWNER\/REPO/);
    expect(() => parseCommitStatusTarget('bitbucket:acme/fleet')).toThrow(/github:OWNER\/REPO or gitlab:PROJECT/);
  });
});

describe('statusOf and revisionProgress', () => {
  it('pending while devices converge, success when all are verified, failure with counts and the link', () => {
    const p = (x: Partial<RevisionProgress>): RevisionProgress => ({ commit: SHA, selected: 3, verified: 0, pending: 0, failed: 0, ...x });
    expect(statusOf(p({ verified: 1, pending: 2 }))).toEqual({ state: 'pending', description: '1 verified, 2 pending, 0 failed of 3 devices' });
    expect(statusOf(p({ verified: 3 }), 'https://mdm/status')).toEqual({
      state: 'success',
      description: 'all 3 devices verified',
      targetUrl: 'https://mdm/status',
    });
    expect(statusOf(p({ verified: 2, failed: 1 }), 'https://mdm/status')).toEqual({
      state: 'failure',
      description: '2 verified, 0 pending, 1 failed of 3 devices',
      targetUrl: 'https://mdm/status',
    });
    expect(statusOf(p({ selected: 0 })).description).toBe('no enrolled device selected');
    expect(statusOf(p({ verified: 3, waiting: 'macs: step 1 of 3 (5%)' })).state).toBe('pending');
    expect(statusOf(p({ verified: 1, pending: 2, halted: 'macs: 1 of 1 devices failed at step 1' })).description).toMatch(/^rollout halted: macs/);
  });

  it('counts only enrolled devices the revision manages something on', () => {
    const s = (state: string, total = 1, enrolled = true) => ({ state, enrolled, profiles: { total } });
    expect(revisionProgress(SHA, [s('in-sync'), s('failed'), s('pending'), s('drifted'), s('in-sync', 0), s('unenrolled', 1, false)])).toEqual({
      commit: SHA,
      selected: 4,
      verified: 1,
      failed: 1,
      pending: 2,
    });
  });
});

describe('CommitStatusReporter fed by the ProgressSampler', () => {
  const sampled = (reporter: CommitStatusReporter, progress: () => RevisionProgress, minIntervalMs: number, counter?: { n: number }) =>
    new ProgressSampler({
      progress: async () => {
        if (counter) counter.n++;
        return progress();
      },
      sinks: [(p) => reporter.report(p)],
      log: pino({ level: 'silent' }),
      minIntervalMs,
      pollMs: 60_000,
    });

  it('posts on change only, coalesces within the interval, survives a host that is down, never logs the token', async () => {
    const sha = 'b'.repeat(40);
    let progress: RevisionProgress = { commit: sha, selected: 2, verified: 0, pending: 2, failed: 0 };
    const calls = { n: 0 };
    const cap = captureLog();
    const reporter = new CommitStatusReporter({ client: commitStatusClient({ provider: 'github', repo: 'acme/fleet', url: host.url }, TOKEN), log: cap.log });
    const sampler = sampled(reporter, () => progress, 300, calls);
    sampler.start();
    await sampler.idle();
    expect(host.states(sha)).toEqual(['pending']);
    // The same state again: nothing posted.
    sampler.poke();
    await sampler.idle();
    expect(host.states(sha)).toEqual(['pending']);
    // Two changes within the interval: only the latest goes out.
    progress = { ...progress, verified: 1, pending: 1 };
    sampler.poke();
    progress = { ...progress, verified: 2, pending: 0 };
    sampler.poke();
    await sampler.idle();
    expect(host.states(sha)).toEqual(['pending', 'success']);
    expect(host.posted.filter((p) => p.sha === sha).at(-1)!.description).toBe('all 2 devices verified');
    expect(calls.n).toBeLessThanOrEqual(3);
    await sampler.stop();

    // The host down: logged, and posted with a later sample once it answers.
    const client = commitStatusClient({ provider: 'github', repo: 'acme/fleet', url: 'http://127.0.0.1:1' }, TOKEN);
    const down = new CommitStatusReporter({ client, log: cap.log });
    const sha2 = 'd'.repeat(40);
    await down.report({ ...progress, commit: sha2 });
    expect(cap.text()).toContain('commit status not posted');
    expect(host.states(sha2)).toEqual([]);
    const up = new CommitStatusReporter({ client: commitStatusClient({ provider: 'github', repo: 'acme/fleet', url: host.url }, TOKEN), log: cap.log });
    await up.report({ ...progress, commit: sha2 });
    expect(host.states(sha2)).toEqual(['success']);
    expect(cap.text()).toContain('commit status posted');
    expect(cap.text()).not.toContain(TOKEN);
  });

  it('GitLab gets state changes only (a repeated running status is refused there)', async () => {
    const sha = 'c'.repeat(40);
    const reporter = new CommitStatusReporter({
      client: commitStatusClient({ provider: 'gitlab', repo: '42', url: `${host.url}/api/v4` }, TOKEN),
      log: pino({ level: 'silent' }),
    });
    for (const [verified, pending] of [
      [0, 2],
      [1, 1],
      [2, 0],
    ] as const)
      await reporter.report({ commit: sha, selected: 2, verified, pending, failed: 0 });
    expect(host.states(sha)).toEqual(['running', 'success']);
    expect(host.refused.filter((r) => r.path.includes(sha))).toEqual([]);
  });
});

describe('ConvergenceSeries', () => {
  it('keeps a bounded series per revision: thinned when full (first and latest kept), new revision starts over', () => {
    const series = new ConvergenceSeries(10);
    const t0 = Date.parse('2026-01-01T00:00:00.000Z');
    for (let i = 0; i < 25; i++) series.record({ commit: SHA, selected: 25, verified: i, pending: 25 - i, failed: 0 }, new Date(t0 + i * 1000));
    const v = series.view()!;
    expect(v.revision).toBe(SHA);
    expect(v.since).toBe('2026-01-01T00:00:00.000Z');
    expect(v.points.length).toBeLessThanOrEqual(10);
    expect(v.points[0]).toEqual({ t: 0, verified: 0, pending: 25, failed: 0 });
    expect(v.points.at(-1)).toEqual({ t: 24_000, verified: 24, pending: 1, failed: 0 });
    expect(v.points.map((p) => p.t)).toEqual([...v.points.map((p) => p.t)].sort((a, b) => a - b));
    series.record({ commit: 'e'.repeat(40), selected: 1, verified: 0, pending: 1, failed: 0 }, new Date(t0 + 60_000));
    expect(series.view()).toEqual({ revision: 'e'.repeat(40), since: '2026-01-01T00:01:00.000Z', points: [{ t: 0, verified: 0, pending: 1, failed: 0 }] });
  });
});
