/**
 * A hostile commit against the real server process (started from dist with a small heap): the
 * revision is validated in a heap-capped child process, refused, and the server stays up serving
 * the last good revision; after a restart the refused head is not loaded again.
 */
import { createHmac } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import type { SourceStatus } from '../../src/gitops/source.js';
import { doc, FleetRepo, GOOD, waitFor } from '../gitops/helpers.js';
import { spawnServer, waitExit, type ServerProcess } from '../helpers/process.js';

const repo = new FleetRepo();
const servers: ServerProcess[] = [];
afterAll(async () => {
  for (const s of servers) {
    s.child.kill('SIGKILL');
    await waitExit(s.child);
  }
  repo.cleanup();
});

const READ = 'hostile-read-token';
const HOOK = 'hostile-hook-secret';
const dataDir = join(repo.root, 'server-data');
const args = ['--repo', repo.url, '--data-dir', dataDir, '--poll-interval', '0', '--validation-memory', '64'];
// A small heap for the server itself: it must never hold a hostile revision.
const env = { NODE_OPTIONS: '--max-old-space-size=128', ORCHARD_READ_TOKEN: READ, ORCHARD_WEBHOOK_SECRET: HOOK };

async function start(): Promise<ServerProcess> {
  const s = await spawnServer(args, env);
  servers.push(s);
  return s;
}

async function status(s: ServerProcess): Promise<SourceStatus> {
  const res = await fetch(`${s.url}/api/v1/source`, { headers: { authorization: `Bearer ${READ}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as SourceStatus;
}

async function hook(s: ServerProcess): Promise<void> {
  const body = '{"ref":"refs/heads/main"}';
  const res = await fetch(`${s.url}/api/v1/hooks/git`, {
    method: 'POST',
    body,
    headers: { 'content-type': 'application/json', 'x-orchard-signature': `sha256=${createHmac('sha256', HOOK).update(body).digest('hex')}` },
  });
  expect(res.status).toBe(202);
}

/** One DeviceGroup with `n` devices, written in pieces (the 50 MB one would be a big string). */
function writeDeviceGroup(rel: string, n: number): void {
  mkdirSync(dirname(join(repo.work, rel)), { recursive: true });
  const fd = openSync(join(repo.work, rel), 'w');
  writeSync(fd, 'apiVersion: orchard/v1\nkind: DeviceGroup\nmetadata: {name: everyone}\nspec:\n  devices:\n');
  for (let i = 0; i < n; i += 10_000) {
    let chunk = '';
    for (let j = i; j < Math.min(n, i + 10_000); j++) chunk += `    - {serial: C${String(j).padStart(11, '0')}, tags: [t]}\n`;
    writeSync(fd, chunk);
  }
  closeSync(fd);
}

/** Lines of the server's log saying it started validating `commit`. */
const validations = (s: ServerProcess, commit: string) =>
  s
    .output()
    .split('\n')
    .filter((l) => l.includes('"msg":"fleet source: validating"') && l.includes(`"commit":"${commit}"`)).length;

/** Peak resident memory of a process so far (Linux), MB. */
const peakRssMb = (pid: number) => Math.round(Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024);

it('a hostile commit is refused without taking the server down, and stays refused across a restart', async () => {
  const good = repo.write('secrets/wifi.yaml', GOOD).commit('good');
  let srv = await start();
  expect((await status(srv)).applied?.commit).toBe(good);

  // The commit: 50 MB of YAML, 1.25 M devices in one DeviceGroup.
  writeDeviceGroup('groups/everyone.yaml', 1_250_000);
  const huge = repo.commit('1.25 M devices');
  await hook(srv);
  let st = await waitFor(
    'the 50 MB commit to be refused',
    async () => {
      const s = await status(srv);
      return s.rejected?.commit === huge && s;
    },
    60_000,
  );
  // Refused by the validator's heap cap, or earlier by a loader limit on file size: either way not applied.
  expect(st.rejected!.reason).toMatch(/validation exceeded the memory limit \(64 MB\)|limit yamlFileBytes/);
  expect(st.applied?.commit).toBe(good);

  // 25 k devices (1 MB, under the loader's size limits) still need more than a 64 MB heap to validate.
  writeDeviceGroup('groups/everyone.yaml', 25_000);
  const big = repo.commit('25 k devices');
  await hook(srv);
  st = await waitFor(
    'the 1 MB commit to be refused',
    async () => {
      const s = await status(srv);
      return s.rejected?.commit === big && s;
    },
    60_000,
  );
  expect(st.rejected!.reason).toBe('validation exceeded the memory limit (64 MB)');
  expect(st.lastAttempt).toMatchObject({ commit: big, valid: false });
  expect(st.lastAttempt!.errors[0]).toMatchObject({ rule: 'validation-limit', message: 'validation exceeded the memory limit (64 MB)' });
  expect(st.applied?.commit).toBe(good);
  expect(st.history.map((h) => h.commit)).toEqual([big, huge, good]);

  // Still up and serving.
  expect(srv.child.exitCode).toBeNull();
  expect((await fetch(`${srv.url}/healthz`)).status).toBe(200);
  console.info(`hostile commits refused; server peak RSS ${peakRssMb(srv.child.pid!)} MB`);

  // A clean shutdown, then a restart: the last good revision is served again, the refused head
  // is reported but not validated again.
  srv.child.kill('SIGTERM');
  await waitExit(srv.child);
  expect(srv.child.exitCode).toBe(0);
  srv = await start();
  st = await status(srv);
  expect(st.applied?.commit).toBe(good);
  expect(st.rejected).toMatchObject({ commit: big, reason: 'validation exceeded the memory limit (64 MB)' });
  expect(st.lastAttempt?.commit).toBe(big);
  expect(validations(srv, good)).toBe(1); // the restore
  expect(validations(srv, big)).toBe(0);
  await hook(srv);
  await waitFor('the webhook sync', async () => (await status(srv)).lastFetchAt !== st.lastFetchAt);
  expect(validations(srv, big)).toBe(0);

  // Until a new commit.
  repo.remove('groups/everyone.yaml').write('secrets/vpn.yaml', doc('vpn'));
  const fixed = repo.commit('fixed');
  await hook(srv);
  st = await waitFor(
    'the fix to be applied',
    async () => {
      const s = await status(srv);
      return s.applied?.commit === fixed && s;
    },
    30_000,
  );
  expect(st.rejected).toBeUndefined();
  srv.child.kill('SIGTERM');
  await waitExit(srv.child);
  expect(srv.child.exitCode).toBe(0);
}, 180_000);
