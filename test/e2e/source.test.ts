/** The git source inside `orchard serve`: a real server following a real repository over file://. */
import { createHmac } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
const hook = (body: string, secret = 'hook-secret') =>
  http(`${server.url}/api/v1/hooks/git`, {
    method: 'POST',
    body,
    headers: {
      'content-type': 'application/json',
      'x-github-event': 'push',
      'x-hub-signature-256': `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`,
    },
  });

it('serves the applied revision, refuses a bad commit with file:line, and takes the next good one', async () => {
  const s0 = await status();
  expect(s0.applied?.commit).toBe(first);
  expect(s0.applied?.author).toBe('Ada Admin <ada@example.com>');

  const bad = repo.write('secrets/broken.yaml', BAD).commit('break it');
  expect((await hook('{"ref":"refs/heads/main"}', 'wrong')).status).toBe(403);
  expect((await hook('{"ref":"refs/heads/main"}')).status).toBe(202);
  const s1 = await waitFor('the bad commit to be tried', async () => {
    const s = await status();
    return s.lastAttempt?.commit === bad && s;
  });
  expect(s1.applied?.commit).toBe(first);
  expect(s1.lastAttempt?.valid).toBe(false);
  expect(s1.lastAttempt?.errors[0]).toMatchObject({ file: 'secrets/broken.yaml', line: 3, col: 1 });
  expect(server.source!.current()?.info.commit).toBe(first);

  const fixed = repo.remove('secrets/broken.yaml').commit('fix it');
  expect((await hook('{}')).status).toBe(202);
  const s2 = await waitFor('the fix to be applied', async () => {
    const s = await status();
    return s.applied?.commit === fixed && s;
  });
  expect(s2.history.map((h) => h.commit)).toEqual([fixed, bad, first]);
});

it('the source status needs a token', async () => {
  expect((await http(`${server.url}/api/v1/source`)).status).toBe(401);
});

describe('replayed webhooks', () => {
  /** How often the webhook asked the source for a sync. */
  let calls: string[];
  let sync: (reason: string) => Promise<SourceStatus>;
  beforeAll(() => {
    calls = [];
    sync = server.source!.sync.bind(server.source);
    server.source!.sync = (reason: string) => {
      calls.push(reason);
      return sync(reason);
    };
  });
  const github = (body: string, delivery: string) =>
    http(`${server.url}/api/v1/hooks/git`, {
      method: 'POST',
      body,
      headers: {
        'content-type': 'application/json',
        'x-github-event': 'push',
        'x-github-delivery': delivery,
        'x-hub-signature-256': `sha256=${createHmac('sha256', 'hook-secret').update(body).digest('hex')}`,
      },
    });
  const settled = async (n: number) => {
    await waitFor(`${n} webhook syncs`, () => calls.length >= n);
    await sync('test'); // queued behind any webhook sync still running
    return calls.length;
  };

  it('the same GitHub delivery 50 times: one sync, 49 answered as duplicates', async () => {
    const before = calls.length;
    const head = repo.write('secrets/replay-1.yaml', GOOD.replace('wifi', 'replay-1')).commit('replay 1');
    const body = JSON.stringify({ ref: 'refs/heads/main', after: head });
    const answers = [];
    for (let i = 0; i < 50; i++) answers.push(await github(body, 'delivery-aaaa-0001'));
    expect(answers[0]).toMatchObject({ status: 202 });
    expect(answers.slice(1).every((a) => a.status === 200 && a.text === '{"accepted":false,"duplicate":true}')).toBe(true);
    expect(await settled(before + 1)).toBe(before + 1);
    expect((await status()).applied?.commit).toBe(head);
  });

  it('the same signed body with made-up delivery ids (the header is not signed): one sync', async () => {
    const before = calls.length;
    const head = repo.write('secrets/replay-2.yaml', GOOD.replace('wifi', 'replay-2')).commit('replay 2');
    const body = JSON.stringify({ ref: 'refs/heads/main', after: head });
    const answers = [];
    for (let i = 0; i < 50; i++) answers.push(await github(body, `forged-${i}`));
    expect(answers.filter((a) => a.status === 202)).toHaveLength(1);
    expect(answers.filter((a) => a.status === 200)).toHaveLength(49);
    expect(await settled(before + 1)).toBe(before + 1);
  });

  it('50 generic calls at once (same body, no delivery id): coalesced into at most one running and one waiting, and the last commit is applied', async () => {
    const before = calls.length;
    const head = repo.write('secrets/replay-3.yaml', GOOD.replace('wifi', 'replay-3')).commit('replay 3');
    const sig = `sha256=${createHmac('sha256', 'hook-secret').update('{}').digest('hex')}`;
    const answers = await Promise.all(
      Array.from({ length: 50 }, () => http(`${server.url}/api/v1/hooks/git`, { method: 'POST', body: '{}', headers: { 'x-orchard-signature': sig } })),
    );
    expect(answers.every((a) => a.status === 202)).toBe(true);
    const n = await settled(before + 1);
    expect(n - before).toBeGreaterThanOrEqual(1);
    expect(n - before).toBeLessThanOrEqual(2);
    await waitFor('the commit to be applied', async () => (await status()).applied?.commit === head);
  });
});
