/** The git source inside `orchard serve`: a real server following a real repository over file://. */
import { createHmac } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { SourceStatus } from '../../src/gitops/source.js';
import { BAD, FleetRepo, GOOD, waitFor } from '../gitops/helpers.js';
import { http, startTestServer, type TestServer } from '../helpers/server.js';

let repo: FleetRepo;
let server: TestServer;
let first: string;

beforeAll(async () => {
  repo = new FleetRepo();
  first = repo.write('secrets/wifi.yaml', GOOD).commit('good');
  server = await startTestServer({ repo: repo.url, pollIntervalMs: 0, dataDir: join(repo.root, 'server-data') }, { webhookSecret: 'hook-secret' });
});
afterAll(async () => {
  await server.stop();
  repo.cleanup();
});

const status = async () => (await http(`${server.url}/api/v1/source`, { headers: { authorization: `Bearer ${server.readToken}` } })).json() as SourceStatus;
const hook = (body: string, secret = 'hook-secret') => http(`${server.url}/api/v1/hooks/git`, {
  method: 'POST', body,
  headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-hub-signature-256': `sha256=${createHmac('sha256', secret).update(body).digest('hex')}` },
});

it('serves the applied revision, refuses a bad commit with file:line, and takes the next good one', async () => {
  const s0 = await status();
  expect(s0.applied?.commit).toBe(first);
  expect(s0.applied?.author).toBe('Ada Admin <ada@example.com>');

  const bad = repo.write('secrets/broken.yaml', BAD).commit('break it');
  expect((await hook('{"ref":"refs/heads/main"}', 'wrong')).status).toBe(403);
  expect((await hook('{"ref":"refs/heads/main"}')).status).toBe(202);
  const s1 = await waitFor('the bad commit to be tried', async () => { const s = await status(); return s.lastAttempt?.commit === bad && s; });
  expect(s1.applied?.commit).toBe(first);
  expect(s1.lastAttempt?.valid).toBe(false);
  expect(s1.lastAttempt?.errors[0]).toMatchObject({ file: 'secrets/broken.yaml', line: 3, col: 1 });
  expect(server.source!.current()?.info.commit).toBe(first);

  const fixed = repo.remove('secrets/broken.yaml').commit('fix it');
  expect((await hook('{}')).status).toBe(202);
  const s2 = await waitFor('the fix to be applied', async () => { const s = await status(); return s.applied?.commit === fixed && s; });
  expect(s2.history.map((h) => h.commit)).toEqual([fixed, bad, first]);
});

it('the source status needs a token', async () => {
  expect((await http(`${server.url}/api/v1/source`)).status).toBe(401);
});
