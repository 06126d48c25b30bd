import { createHmac } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import Router from '@koa/router';
import Koa from 'koa';
import { afterEach, describe, expect, it } from 'vitest';
import type { LoadResult } from '../../src/gitops/model.js';
import { FleetSource, type ValidatedRevision, type SourceOptions, type SourceStatus } from '../../src/gitops/source.js';
import { errorHandler } from '../../src/http/errors.js';
import { sourceRoutes, sourceStatusRoute } from '../../src/http/source-routes.js';
import { loadFleet } from '../../src/gitops/load.js';
import { BAD, captureLog, doc, FleetRepo, git, GOOD, tempDir, waitFor, type CapturedLog } from './helpers.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function repo(): FleetRepo {
  const r = new FleetRepo();
  cleanups.push(() => r.cleanup());
  return r;
}

interface Harness {
  source: FleetSource;
  applied: ValidatedRevision[];
  statuses: SourceStatus[];
  logs: CapturedLog;
}

function harness(opts: Partial<SourceOptions> & Pick<SourceOptions, 'repo' | 'dataDir'>): Harness {
  const logs = captureLog();
  const source = new FleetSource({ branch: 'main', pollIntervalMs: 0, loader: loadFleet, log: logs.log, ...opts });
  const applied: ValidatedRevision[] = [];
  const statuses: SourceStatus[] = [];
  source.on('validated', (a) => applied.push(a));
  source.on('status', (s) => statuses.push(s));
  cleanups.push(() => source.stop());
  return { source, applied, statuses, logs };
}

function savedCommit(dataDir: string): string | undefined {
  const file = join(dataDir, 'source', 'state.json');
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as { commit: string }).commit : undefined;
}

describe('FleetSource following a remote branch (file://)', () => {
  it('applies a good commit, refuses a bad one (naming commit and file:line), then applies the fix', async () => {
    const r = repo();
    const a = r.write('profiles/wifi.yaml', GOOD).commit('add wifi');
    const { source, applied } = harness({ repo: r.url, dataDir: r.dataDir });
    await source.start();

    let st = source.status();
    expect(st.kind).toBe('remote');
    expect(st.branch).toBe('main');
    expect(st.lastError).toBeUndefined();
    expect(st.applied).toMatchObject({ commit: a, author: 'Ada Admin <ada@example.com>', message: 'add wifi', valid: true, errorCount: 0 });
    expect(st.applied?.time).toMatch(/^\d{4}-\d\d-\d\dT.*Z$/);
    expect(st.applied?.appliedAt).toBeDefined();
    expect(applied.map((x) => x.info.commit)).toEqual([a]);
    expect(source.current()?.info.commit).toBe(a);
    expect(savedCommit(r.dataDir)).toBe(a);

    // Same commit again: fetched, nothing new.
    const fetchedBefore = st.lastFetchAt;
    st = await source.sync('again');
    expect(st.history).toHaveLength(1);
    expect(st.lastFetchAt).not.toBe(fetchedBefore);
    expect(applied).toHaveLength(1);

    const b = r.write('profiles/broken.yaml', BAD).commit('break it');
    st = await source.sync('test');
    expect(st.applied?.commit).toBe(a);
    expect(st.lastAttempt).toMatchObject({ commit: b, message: 'break it', valid: false, errorCount: 1 });
    expect(st.lastAttempt?.appliedAt).toBeUndefined();
    expect(st.lastAttempt?.errors[0]).toMatchObject({ severity: 'error', file: 'profiles/broken.yaml', line: 3, col: 1 });
    expect(st.history.map((h) => h.commit)).toEqual([b, a]);
    expect(applied).toHaveLength(1);
    expect(source.current()?.info.commit).toBe(a);
    expect(savedCommit(r.dataDir)).toBe(a);

    // The bad head is not loaded again on every poll.
    st = await source.sync('poll');
    expect(st.history).toHaveLength(2);

    const c = r.remove('profiles/broken.yaml').commit('fix it');
    st = await source.sync('test');
    expect(st.applied).toMatchObject({ commit: c, valid: true });
    expect(st.lastAttempt?.commit).toBe(c);
    expect(applied.map((x) => x.info.commit)).toEqual([a, c]);
    expect(savedCommit(r.dataDir)).toBe(c);
  });

  it('follows a force-push that rewinds the branch', async () => {
    const r = repo();
    const a = r.write('profiles/wifi.yaml', GOOD).commit('one');
    const { source } = harness({ repo: r.url, dataDir: r.dataDir });
    await source.start();
    const hashA = source.status().applied!.contentHash;

    const b = r.write('profiles/vpn.yaml', doc('vpn')).commit('two');
    expect((await source.sync('test')).applied?.commit).toBe(b);
    expect(existsSync(join(r.dataDir, 'source', 'repo', 'profiles', 'vpn.yaml'))).toBe(true);

    r.rewind(a);
    // A stray file in the clone must not leak into the next revision.
    writeFileSync(join(r.dataDir, 'source', 'repo', 'profiles', 'stray.yaml'), BAD);
    const st = await source.sync('test');
    expect(st.applied?.commit).toBe(a);
    expect(st.applied?.contentHash).toBe(hashA);
    expect(existsSync(join(r.dataDir, 'source', 'repo', 'profiles', 'vpn.yaml'))).toBe(false);
    expect(existsSync(join(r.dataDir, 'source', 'repo', 'profiles', 'stray.yaml'))).toBe(false);

    // Rewinding onto a new line of history works the same way.
    const d = r.write('profiles/other.yaml', doc('other')).commit('diverge');
    expect((await source.sync('test')).applied?.commit).toBe(d);
  });

  it('keeps the last good revision while the remote is unreachable, and recovers by polling', async () => {
    const r = repo();
    const a = r.write('profiles/wifi.yaml', GOOD).commit('one');
    const { source } = harness({ repo: r.url, dataDir: r.dataDir, pollIntervalMs: 50 });
    await source.start();
    expect(source.status().applied?.commit).toBe(a);
    const fetchedAt = source.status().lastFetchAt;

    renameSync(r.bare, `${r.bare}.away`);
    const st = await waitFor('a fetch error', () => source.status().lastError && source.status());
    expect(st.lastError!.message).toMatch(/repository|not found|no such/i);
    expect(st.applied?.commit).toBe(a);
    expect(source.current()?.info.commit).toBe(a);
    expect(st.lastFetchAt).toBe(fetchedAt);

    renameSync(`${r.bare}.away`, r.bare);
    const b = r.write('profiles/vpn.yaml', doc('vpn')).commit('two');
    const after = await waitFor('the next commit by polling', () => {
      const s = source.status();
      return s.applied?.commit === b && s;
    });
    expect(after.lastError).toBeUndefined();
  });

  it('starts against an unreachable remote or a missing branch without throwing', async () => {
    const dataDir = tempDir();
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const gone = harness({ repo: 'file:///nonexistent/orchard-fleet.git', dataDir: join(dataDir, 'a') });
    await gone.source.start();
    expect(gone.source.status().lastError?.message).toBeTruthy();
    expect(gone.source.status().applied).toBeUndefined();
    expect(gone.source.current()).toBeUndefined();

    const r = repo();
    r.write('profiles/wifi.yaml', GOOD).commit('one');
    const nobranch = harness({ repo: r.url, branch: 'release', dataDir: join(dataDir, 'b') });
    await nobranch.source.start();
    expect(nobranch.source.status().lastError?.message).toMatch(/release/);
    expect(nobranch.source.status().applied).toBeUndefined();
  });

  it('never shows or logs the credentials in a remote URL', async () => {
    const dataDir = tempDir();
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    // Port 1 on loopback: refused at once.
    const h = harness({ repo: 'https://ada:s3cr3t-t0ken@127.0.0.1:1/fleet.git', dataDir });
    await h.source.start();
    const st = h.source.status();
    expect(st.repo).toBe('https://127.0.0.1:1/fleet.git');
    expect(st.lastError?.message).toBeTruthy();
    expect(JSON.stringify(st)).not.toContain('s3cr3t');
    expect(h.logs.text()).toContain('sync failed');
    expect(h.logs.text()).not.toContain('s3cr3t');
  });

  it('comes back after a restart with the last good commit even though the branch head is now bad', async () => {
    const r = repo();
    const a = r.write('profiles/wifi.yaml', GOOD).commit('good');
    const first = harness({ repo: r.url, dataDir: r.dataDir });
    await first.source.start();
    expect(first.source.status().applied?.commit).toBe(a);
    await first.source.stop();

    const b = r.write('profiles/broken.yaml', BAD).commit('bad');

    // Without the saved state the bad head leaves nothing applied...
    const fresh = harness({ repo: r.url, dataDir: join(r.root, 'fresh-data') });
    await fresh.source.start();
    expect(fresh.source.status().applied).toBeUndefined();
    expect(fresh.source.status().lastAttempt?.commit).toBe(b);

    // ...with it, the last good commit is served again and the bad head reported.
    const second = harness({ repo: r.url, dataDir: r.dataDir });
    await second.source.start();
    const st = second.source.status();
    expect(st.applied).toMatchObject({ commit: a, valid: true });
    expect(st.lastAttempt).toMatchObject({ commit: b, valid: false });
    expect(st.lastAttempt?.errors[0]).toMatchObject({ file: 'profiles/broken.yaml', line: 3 });
    expect(second.applied.map((x) => x.info.commit)).toEqual([a]);
    expect(savedCommit(r.dataDir)).toBe(a);
  });

  it('clones again when the configured repository changes', async () => {
    const r1 = repo();
    const a = r1.write('profiles/wifi.yaml', GOOD).commit('first repo');
    const r2 = repo();
    const x = r2.write('profiles/other.yaml', doc('other')).commit('second repo');
    const dataDir = r1.dataDir;

    const one = harness({ repo: r1.url, dataDir });
    await one.source.start();
    expect(one.source.status().applied?.commit).toBe(a);
    await one.source.stop();

    const two = harness({ repo: r2.url, dataDir });
    await two.source.start();
    const st = two.source.status();
    expect(st.applied?.commit).toBe(x);
    expect(st.history.map((h) => h.commit)).toEqual([x]);
    expect(git(join(dataDir, 'source', 'repo'), 'remote', 'get-url', 'origin')).toBe(r2.url);
  });
});

describe('git webhook', () => {
  const SECRET = 'webhook-test-secret';

  async function serve(src: FleetSource, webhookSecret?: string): Promise<string> {
    const app = new Koa();
    app.silent = true;
    app.use(errorHandler(captureLog().log));
    app.use(sourceRoutes({ source: src, webhookSecret, log: captureLog().log }).routes());
    const status = new Router();
    status.get('/api/v1/source', sourceStatusRoute(src));
    app.use(status.routes());
    const server: Server = createServer(app.callback());
    await new Promise<void>((res) => server.listen(0, '127.0.0.1', () => res()));
    cleanups.push(
      () =>
        new Promise<void>((res) => {
          server.close(() => res());
          server.closeAllConnections();
        }),
    );
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  function sign(body: string, secret = SECRET): string {
    return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
  }

  async function post(url: string, body: string, headers: Record<string, string>) {
    const res = await fetch(`${url}/api/v1/hooks/git`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  }

  /** Counts the syncs the routes ask for. */
  function spy(src: FleetSource): string[] {
    const calls: string[] = [];
    const orig = src.sync.bind(src);
    src.sync = (reason: string) => {
      calls.push(reason);
      return orig(reason);
    };
    return calls;
  }

  it('a signed call (GitHub or generic header) syncs the new commit; GET /api/v1/source reports it', async () => {
    const r = repo();
    const a = r.write('profiles/wifi.yaml', GOOD).commit('one');
    const { source: src } = harness({ repo: r.url, dataDir: r.dataDir });
    await src.start();
    const url = await serve(src, SECRET);

    const b = r.write('profiles/vpn.yaml', doc('vpn')).commit('two');
    const body = JSON.stringify({ ref: 'refs/heads/main', after: b });
    const gh = await post(url, body, { 'x-hub-signature-256': sign(body), 'x-github-event': 'push' });
    expect(gh).toEqual({ status: 202, json: { accepted: true } });
    await waitFor('the webhook sync (GitHub header)', () => src.current()?.info.commit === b);

    const c = r.write('profiles/mail.yaml', doc('mail')).commit('three');
    const generic = await post(url, '{"hello":1}', { 'x-orchard-signature': sign('{"hello":1}') });
    expect(generic).toEqual({ status: 202, json: { accepted: true } });
    await waitFor('the webhook sync (generic header)', () => src.current()?.info.commit === c);

    const res = await fetch(`${url}/api/v1/source`);
    expect(res.status).toBe(200);
    const st = (await res.json()) as SourceStatus;
    expect(st).toMatchObject({ kind: 'remote', branch: 'main', applied: { commit: c, valid: true } });
    expect(st.history.map((h) => h.commit)).toEqual([c, b, a]);
  });

  it('refuses a wrong, missing or malformed signature with 403, and a body over 1 MiB with 413; answers ping with 200', async () => {
    const r = repo();
    r.write('profiles/wifi.yaml', GOOD).commit('one');
    const { source: src } = harness({ repo: r.url, dataDir: r.dataDir });
    const calls = spy(src);
    const url = await serve(src, SECRET);
    const body = '{"ref":"refs/heads/main"}';

    expect((await post(url, body, { 'x-hub-signature-256': sign(body, 'some-other-secret') })).status).toBe(403);
    expect((await post(url, body, { 'x-orchard-signature': sign('{"ref":"refs/heads/evil"}') })).status).toBe(403);
    const missing = await post(url, body, {});
    expect(missing.status).toBe(403);
    expect(String(missing.json.error)).toMatch(/missing signature/);
    expect((await post(url, body, { 'x-orchard-signature': 'sha1=abcdef' })).status).toBe(403);
    expect((await post(url, body, { 'x-hub-signature-256': sign(body).slice(0, -2) })).status).toBe(403);

    const big = 'x'.repeat(1024 * 1024 + 1);
    expect((await post(url, big, { 'x-orchard-signature': sign(big) })).status).toBe(413);

    const ping = await post(url, '{"zen":"hi"}', { 'x-hub-signature-256': sign('{"zen":"hi"}'), 'x-github-event': 'ping' });
    expect(ping.status).toBe(200);
    expect(calls).toEqual([]);

    // The same body, rightly signed, does sync: the refusals above were about the signature.
    expect((await post(url, body, { 'x-hub-signature-256': sign(body) })).status).toBe(202);
    expect(calls).toEqual(['webhook']);
  });

  it('is disabled (403) without a secret', async () => {
    const r = repo();
    const { source: src } = harness({ repo: r.url, dataDir: r.dataDir });
    const calls = spy(src);
    const url = await serve(src, undefined);
    const body = '{}';
    const res = await post(url, body, { 'x-hub-signature-256': sign(body) });
    expect(res.status).toBe(403);
    expect(res.json.error).toBe('webhook disabled: set ORCHARD_WEBHOOK_SECRET');
    expect(calls).toEqual([]);
  });
});

describe('FleetSource on a local directory', () => {
  it('picks up an edit to a file and a new file (no git), and refuses an invalid edit', async () => {
    const dir = tempDir();
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'wifi.yaml'), GOOD);
    const { source: src, applied } = harness({ repo: dir, dataDir: join(dir, '.orchard-data'), debounceMs: 50 });
    await src.start();
    const first = src.status();
    expect(first.kind).toBe('local');
    expect(first.applied).toMatchObject({ commit: null, valid: true });
    expect(first.applied?.dirty).toBeUndefined();
    const h1 = first.applied!.contentHash;

    writeFileSync(join(dir, 'wifi.yaml'), `${GOOD}# edited\n`);
    const h2 = await waitFor('the edit', () => {
      const h = src.status().applied?.contentHash;
      return h !== h1 && h;
    });

    writeFileSync(join(dir, 'vpn.yaml'), doc('vpn'));
    // status() shows the revision before its state is written and listeners are told: wait for the event.
    await waitFor('the new file', () => {
      const h = src.status().applied?.contentHash;
      return applied.length === 3 && h !== h1 && h !== h2 && h;
    });
    expect(applied.map((a) => a.info.contentHash)).toEqual([h1, h2, src.status().applied!.contentHash]);

    writeFileSync(join(dir, 'broken.yaml'), BAD);
    const st = await waitFor('the invalid edit', () => {
      const s = src.status();
      return s.lastAttempt?.valid === false && s;
    });
    expect(st.lastAttempt?.errors[0]).toMatchObject({ file: 'broken.yaml', line: 3, col: 1 });
    expect(st.applied?.valid).toBe(true);
    expect(applied).toHaveLength(3);
  });

  it('reports HEAD and dirty for a git working tree', async () => {
    const dir = tempDir();
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    git(dir, 'init', '-q', '-b', 'main');
    writeFileSync(join(dir, 'wifi.yaml'), GOOD);
    git(dir, 'add', '-A');
    git(dir, 'commit', '-q', '-m', 'first');
    const a = git(dir, 'rev-parse', 'HEAD');
    const { source: src } = harness({ repo: dir, dataDir: tempDir(), debounceMs: 50 });
    await src.start();
    expect(src.status().applied).toMatchObject({ commit: a, dirty: false, message: 'first', author: 'Ada Admin <ada@example.com>' });
    expect(src.status().branch).toBe('main');

    writeFileSync(join(dir, 'wifi.yaml'), `${GOOD}# uncommitted\n`);
    await waitFor('the uncommitted edit', () => src.status().applied?.dirty === true);
    expect(src.status().applied?.commit).toBe(a);

    git(dir, 'commit', '-q', '-am', 'second');
    const b = git(dir, 'rev-parse', 'HEAD');
    const st = await src.sync('test');
    expect(st.applied).toMatchObject({ commit: b, dirty: false, message: 'second' });
  });
});

describe('FleetSource.sync concurrency', () => {
  it('never runs two syncs at once; calls during a sync share exactly one more, which sees later changes', async () => {
    const dir = tempDir();
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'wifi.yaml'), GOOD);
    let active = 0;
    let maxActive = 0;
    let calls = 0;
    let loaded = 0;
    let release!: () => void;
    const gate = new Promise<void>((res) => {
      release = res;
    });
    const loader = async (d: string): Promise<LoadResult> => {
      calls++;
      active++;
      maxActive = Math.max(maxActive, active);
      try {
        // Read first, then hold the first sync open while the test edits and calls again.
        const result = await loadFleet(d);
        loaded++;
        if (calls === 1) await gate;
        return result;
      } finally {
        active--;
      }
    };
    const { source: src, statuses } = harness({ repo: dir, dataDir: join(dir, '.data'), loader });

    const p1 = src.sync('one');
    // Edit only once the first load has read the files, or it could read the edit itself.
    await waitFor('the first load to have read the files', () => loaded === 1);
    writeFileSync(join(dir, 'wifi.yaml'), `${GOOD}# changed during the first sync\n`);
    const more = [src.sync('two'), src.sync('three'), src.sync('four')];
    release();
    const [s1, ...rest] = await Promise.all([p1, ...more]);

    expect(maxActive).toBe(1);
    expect(calls).toBe(2);
    expect(statuses).toHaveLength(2);
    expect(rest.every((s) => s.applied?.contentHash === rest[0]!.applied?.contentHash)).toBe(true);
    expect(rest[0]!.applied?.contentHash).not.toBe(s1.applied?.contentHash);
    expect(src.status().history).toHaveLength(2);
  });
});

// ---- issue 10: limits, durable rejections, history ----

/** state.json as the source wrote it. */
function savedState(dataDir: string): {
  commit?: string;
  validating?: { commit: string | null };
  rejected?: { reason: string; status: { commit: string | null } };
} {
  return JSON.parse(readFileSync(join(dataDir, 'source', 'state.json'), 'utf8'));
}

/** A loader stand-in: hangs (never settles, ignores its signal) on a checkout holding HANG, else the real loader. */
function hangingLoader(): { loader: (d: string) => Promise<LoadResult>; hangs: () => number } {
  let hangs = 0;
  return {
    hangs: () => hangs,
    loader: (d: string) => {
      if (!existsSync(join(d, 'HANG'))) return loadFleet(d);
      hangs++;
      return new Promise<LoadResult>(() => undefined);
    },
  };
}

/** The real loader, noting which commit of the clone each load saw. */
function countingLoader(): { loader: (d: string) => Promise<LoadResult>; loads: string[] } {
  const loads: string[] = [];
  return {
    loads,
    loader: (d: string) => {
      loads.push(git(d, 'rev-parse', 'HEAD'));
      return loadFleet(d);
    },
  };
}

describe('FleetSource time limits and shutdown', () => {
  it('cuts a validation that never ends at its time limit, rejects that commit, and still applies the next one', async () => {
    const r = repo();
    const a = r.write('profiles/wifi.yaml', GOOD).commit('good');
    const { loader, hangs } = hangingLoader();
    const { source, applied } = harness({ repo: r.url, dataDir: r.dataDir, loader, limits: { validationTimeoutMs: 300 } });
    await source.start();

    const b = r.write('HANG', 'x').commit('hangs the loader');
    let st = await source.sync('test');
    expect(st.applied?.commit).toBe(a);
    expect(st.lastAttempt).toMatchObject({ commit: b, valid: false, errorCount: 1 });
    expect(st.lastAttempt?.errors[0]).toMatchObject({ rule: 'validation-limit', message: 'validation exceeded the time limit (300 ms)' });
    expect(st.rejected).toMatchObject({ commit: b, reason: 'validation exceeded the time limit (300 ms)' });
    expect(savedState(r.dataDir)).toMatchObject({ commit: a, rejected: { status: { commit: b } } });
    expect(savedState(r.dataDir).validating).toBeUndefined();

    // Not tried again on the next poll.
    st = await source.sync('poll');
    expect(hangs()).toBe(1);
    expect(st.history.map((h) => h.commit)).toEqual([b, a]);

    const c = r.remove('HANG').commit('fix');
    st = await source.sync('test');
    expect(st.applied?.commit).toBe(c);
    expect(st.rejected).toBeUndefined();
    expect(applied.map((x) => x.info.commit)).toEqual([a, c]);
  });

  it('stop() completes while a validation hangs, and a clean stop leaves no crash mark', async () => {
    const r = repo();
    const a = r.write('profiles/wifi.yaml', GOOD).commit('good');
    const { loader, hangs } = hangingLoader();
    const { source } = harness({ repo: r.url, dataDir: r.dataDir, loader });
    await source.start();
    r.write('HANG', 'x').commit('hangs the loader');
    const syncing = source.sync('test');
    await waitFor('the hanging validation to start', () => hangs() === 1);
    expect(savedState(r.dataDir).validating).toBeDefined();

    await source.stop();
    const st = await syncing;
    expect(st.applied?.commit).toBe(a);
    // Stopped on purpose: the commit was neither rejected nor marked as having killed the server.
    expect(savedState(r.dataDir)).toMatchObject({ commit: a });
    expect(savedState(r.dataDir).validating).toBeUndefined();
    expect(savedState(r.dataDir).rejected).toBeUndefined();
  });

  /** A source on a "remote" that accepts the connection and never says a word. */
  function silentRemote(limits: SourceOptions['limits']): Harness {
    const root = tempDir();
    cleanups.push(() => rmSync(root, { recursive: true, force: true }));
    // git waits for the server to speak first; named ssh so git takes it for OpenSSH without probing it.
    const ssh = join(root, 'ssh');
    writeFileSync(ssh, '#!/bin/sh\nexec cat\n');
    chmodSync(ssh, 0o755);
    const prev = process.env.GIT_SSH_COMMAND;
    process.env.GIT_SSH_COMMAND = ssh;
    try {
      return harness({ repo: 'ssh://git@127.0.0.1/fleet.git', dataDir: join(root, 'data'), limits });
    } finally {
      if (prev === undefined) delete process.env.GIT_SSH_COMMAND;
      else process.env.GIT_SSH_COMMAND = prev;
    }
  }

  it('ends a fetch that hangs (an ssh transport that never answers) at the fetch time limit; stop() completes', async () => {
    const h = silentRemote({ fetchTimeoutMs: 500 });
    await h.source.start();
    const st = h.source.status();
    expect(st.lastError?.message).toBe('fetch exceeded the time limit (500 ms)');
    expect(st.lastFetchAt).toBeUndefined();
    expect(st.applied).toBeUndefined();
    const again = h.source.sync('poll');
    await h.source.stop();
    expect((await again).lastError?.message).toMatch(/time limit|stopping/);
  });

  it('start() stops waiting for a first sync that hangs after its bound, and stop() then ends that sync', async () => {
    const h = silentRemote({ fetchTimeoutMs: 600_000, startWaitMs: 300 });
    await h.source.start();
    // Returned while the fetch is still hanging: nothing fetched, nothing failed yet.
    expect(h.source.status().lastFetchAt).toBeUndefined();
    expect(h.source.status().lastError).toBeUndefined();
    await h.source.stop();
    expect(h.logs.text()).toContain('sync aborted by shutdown');
  });

  it('a FIFO in a local directory cannot freeze the source: later edits still apply (default loader, a child process)', async () => {
    const dir = tempDir();
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'wifi.yaml'), GOOD);
    mkdirSync(join(dir, 'files'));
    execFileSync('mkfifo', [join(dir, 'files', 'hang.mobileconfig')]);
    writeFileSync(join(dir, 'dock.yaml'), 'apiVersion: orchard/v1\nkind: Profile\nmetadata: {name: dock}\nspec:\n  file: files/hang.mobileconfig\n');
    // loader: undefined, so the source uses its default: loadFleet in a heap-capped child process.
    const { source: src } = harness({ repo: dir, dataDir: join(dir, '.data'), debounceMs: 50, loader: undefined, limits: { validationTimeoutMs: 5000 } });
    await src.start();
    // Refused, by the time limit or by the loader declining a file that is not a regular file.
    let st = src.status();
    expect(st.lastAttempt?.valid).toBe(false);
    expect(st.applied).toBeUndefined();
    expect(st.rejected).toBeDefined();
    expect(st.lastFetchAt).toBeDefined();

    rmSync(join(dir, 'dock.yaml'));
    rmSync(join(dir, 'files'), { recursive: true });
    st = await waitFor('the edit after the FIFO', () => src.status().applied?.valid && src.status(), 20_000);
    expect(st.rejected).toBeUndefined();
    await src.stop();
  });
});

describe('FleetSource remembers rejected revisions across restarts', () => {
  it('rejects, at the next start and without loading it, a revision that was being validated when the server died', async () => {
    const r = repo();
    const a = r.write('profiles/wifi.yaml', GOOD).commit('good');
    const hanging = hangingLoader();
    const first = harness({ repo: r.url, dataDir: r.dataDir, loader: hanging.loader });
    await first.source.start();
    const b = r.write('HANG', 'x').commit('takes the server down');
    void first.source.sync('test');
    await waitFor('the validation of the hostile commit to start', () => hanging.hangs() === 1);
    // The disk as a process killed at this moment (out of memory, SIGKILL) leaves it.
    const crashed = join(r.root, 'crashed-data');
    cpSync(r.dataDir, crashed, { recursive: true });
    expect(savedState(crashed).validating?.commit).toBe(b);

    const counting = countingLoader();
    const second = harness({ repo: r.url, dataDir: crashed, loader: counting.loader });
    await second.source.start();
    let st = second.source.status();
    expect(st.applied?.commit).toBe(a);
    expect(st.rejected?.commit).toBe(b);
    expect(st.rejected?.reason).toMatch(/^validation never finished: the server stopped while validating this revision/);
    expect(st.lastAttempt).toMatchObject({ commit: b, valid: false });
    expect(counting.loads).toEqual([a]); // the restore of the good one only
    expect(savedState(crashed).validating).toBeUndefined();

    await second.source.sync('poll');
    expect(counting.loads).toEqual([a]);
    const c = r.remove('HANG').commit('new commit');
    st = await second.source.sync('test');
    expect(st.applied?.commit).toBe(c);
    expect(st.rejected).toBeUndefined();
    expect(counting.loads).toEqual([a, c]);
  });

  it('does not load a rejected head again after a restart; changed validation limits give it another try', async () => {
    const r = repo();
    const a = r.write('profiles/wifi.yaml', GOOD).commit('good');
    const first = harness({ repo: r.url, dataDir: r.dataDir });
    await first.source.start();
    const b = r.write('profiles/broken.yaml', BAD).commit('bad');
    expect((await first.source.sync('test')).rejected?.commit).toBe(b);
    await first.source.stop();

    const counting = countingLoader();
    const second = harness({ repo: r.url, dataDir: r.dataDir, loader: counting.loader });
    await second.source.start();
    const st = second.source.status();
    expect(st.applied?.commit).toBe(a);
    expect(st.rejected).toMatchObject({ commit: b, reason: expect.stringMatching(/^1 error: profiles\/broken\.yaml:3:1: /) });
    expect(st.lastAttempt?.errors[0]).toMatchObject({ file: 'profiles/broken.yaml', line: 3, col: 1 });
    expect(counting.loads).toEqual([a]);
    await second.source.stop();

    const retry = countingLoader();
    const third = harness({ repo: r.url, dataDir: r.dataDir, loader: retry.loader, limits: { validationTimeoutMs: 30_000 } });
    await third.source.start();
    expect(retry.loads).toEqual([a, b]);
    expect(third.source.status().rejected?.commit).toBe(b);
  });

  it('a loader that throws rejects the revision once, instead of loading it again on every poll', async () => {
    const r = repo();
    const a = r.write('profiles/wifi.yaml', GOOD).commit('good');
    let throws = 0;
    const loader = (d: string) => {
      if (!existsSync(join(d, 'THROW'))) return loadFleet(d);
      throws++;
      return Promise.reject(new Error('disk on fire'));
    };
    const { source } = harness({ repo: r.url, dataDir: r.dataDir, loader });
    await source.start();
    const b = r.write('THROW', 'x').commit('breaks the loader');
    for (let i = 0; i < 3; i++) await source.sync('poll');
    const st = source.status();
    expect(throws).toBe(1);
    expect(st.rejected).toMatchObject({ commit: b, reason: 'loader failed: disk on fire' });
    expect(st.history.map((h) => h.commit)).toEqual([b, a]);
    expect(st.applied?.commit).toBe(a);
  });
});

describe('FleetSource status history and restore', () => {
  it('keeps one history entry per revision: a revision seen again moves up with its count', async () => {
    const r = repo();
    const a = r.write('profiles/wifi.yaml', GOOD).commit('good');
    const { source } = harness({ repo: r.url, dataDir: r.dataDir });
    await source.start();
    const b = r.write('profiles/broken.yaml', BAD).commit('bad');
    for (let i = 0; i < 3; i++) {
      await source.sync('push bad');
      r.rewind(a); // reverted...
      expect((await source.sync('revert')).lastAttempt?.commit).toBe(a);
      r.rewind(b); // ...and force-pushed again
    }
    const st = await source.sync('push bad');
    expect(st.history.map((h) => [h.commit, h.attempts])).toEqual([
      [b, 4],
      [a, 1],
    ]);
    expect(st.history[0]!.lastSeenAt! >= st.history[0]!.fetchedAt).toBe(true);
  });

  it('keeps the "could not restore" reason while nothing is applied', async () => {
    const r = repo();
    const a = r.write('profiles/wifi.yaml', GOOD).commit('good');
    const first = harness({ repo: r.url, dataDir: r.dataDir });
    await first.source.start();
    await first.source.stop();

    // History rewritten (the applied commit exists nowhere now), the new head is bad, and the
    // server's clone is gone (a new disk): the saved commit cannot be had.
    git(r.work, 'checkout', '-q', '--orphan', 'rewritten');
    git(r.work, 'rm', '-rqf', '.');
    r.write('profiles/broken.yaml', BAD);
    git(r.work, 'add', '-A');
    git(r.work, 'commit', '-q', '-m', 'rewritten');
    git(r.work, 'branch', '-q', '-M', 'rewritten', 'main');
    git(r.work, 'push', '-q', '--force', 'origin', 'main');
    git(r.bare, 'reflog', 'expire', '--expire=now', '--all');
    git(r.bare, 'gc', '-q', '--prune=now');
    rmSync(join(r.dataDir, 'source', 'repo'), { recursive: true, force: true });

    const second = harness({ repo: r.url, dataDir: r.dataDir });
    await second.source.start();
    let st = second.source.status();
    expect(st.applied).toBeUndefined();
    expect(st.rejected?.commit).toBe(r.head());
    expect(st.lastError?.message).toMatch(new RegExp(`^could not restore ${a}: `));
    st = await second.source.sync('poll');
    expect(st.lastError?.message).toMatch(new RegExp(`^could not restore ${a}: `));

    r.remove('profiles/broken.yaml').write('profiles/wifi.yaml', GOOD).commit('fixed');
    st = await second.source.sync('test');
    expect(st.applied?.commit).toBe(r.head());
    expect(st.lastError).toBeUndefined();
  });
});
