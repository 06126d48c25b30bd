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

describe('CommitStatusReporter', () => {
  it('posts on change only, coalesces within the interval, survives a host that is down, never logs the token', async () => {
    const sha = 'b'.repeat(40);
    let progress: RevisionProgress = { commit: sha, selected: 2, verified: 0, pending: 2, failed: 0 };
    let calls = 0;
    const cap = captureLog();
    const reporter = new CommitStatusReporter({
      client: commitStatusClient({ provider: 'github', repo: 'acme/fleet', url: host.url }, TOKEN),
      progress: async () => {
        calls++;
        return progress;
      },
      log: cap.log,
      minIntervalMs: 300,
      pollMs: 60_000,
    });
    reporter.start();
    await reporter.idle();
    expect(host.states(sha)).toEqual(['pending']);
    // The same state again: nothing posted.
    reporter.poke();
    await reporter.idle();
    expect(host.states(sha)).toEqual(['pending']);
    // Two changes within the interval: only the latest goes out.
    progress = { ...progress, verified: 1, pending: 1 };
    reporter.poke();
    progress = { ...progress, verified: 2, pending: 0 };
    reporter.poke();
    await reporter.idle();
    expect(host.states(sha)).toEqual(['pending', 'success']);
    expect(host.posted.filter((p) => p.sha === sha).at(-1)!.description).toBe('all 2 devices verified');
    expect(calls).toBeLessThanOrEqual(4);
    await reporter.stop();

    // The host down: logged, tried again later, then posted.
    const down = new CommitStatusReporter({
      client: commitStatusClient({ provider: 'github', repo: 'acme/fleet', url: 'http://127.0.0.1:1' }, TOKEN),
      progress: async () => progress,
      log: cap.log,
      minIntervalMs: 10,
    });
    down.poke(true);
    await down.idle();
    await down.stop();
    expect(cap.text()).toContain('commit status not posted');
    expect(cap.text()).toContain('commit status posted');
    expect(cap.text()).not.toContain(TOKEN);
  });

  it('GitLab gets state changes only (a repeated running status is refused there)', async () => {
    const sha = 'c'.repeat(40);
    let progress: RevisionProgress = { commit: sha, selected: 2, verified: 0, pending: 2, failed: 0 };
    const reporter = new CommitStatusReporter({
      client: commitStatusClient({ provider: 'gitlab', repo: '42', url: `${host.url}/api/v4` }, TOKEN),
      progress: async () => progress,
      log: pino({ level: 'silent' }),
      minIntervalMs: 10,
    });
    reporter.poke(true);
    await reporter.idle();
    progress = { ...progress, verified: 1, pending: 1 };
    reporter.poke(true);
    await reporter.idle();
    progress = { ...progress, verified: 2, pending: 0 };
    reporter.poke(true);
    await reporter.idle();
    await reporter.stop();
    expect(host.states(sha)).toEqual(['running', 'success']);
    expect(host.refused.filter((r) => r.path.includes(sha))).toEqual([]);
  });
});
