/** ABM in `orchard serve`: the sync per imported token on the leader, token expiry and ABM's refusals surfaced. */
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DepStandin } from '../../src/sim/dep.js';
import { importAbmToken as importToken } from '../helpers/abm.js';
import { http, startTestServer, type TestServer } from '../helpers/server.js';

const creds = { consumerKey: 'CK_serve', consumerSecret: 'CS_serve_secret', accessToken: 'AT_serve', accessSecret: 'AS_serve_secret' };
const importAbmToken = (dataDir: string, name: string, expiry: Date, credentials = creds) => importToken(dataDir, name, expiry, credentials);
const DAY = 86_400_000;

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function webhookReceiver(): Promise<{ url: string; events: { type: string; data: Record<string, unknown> }[] }> {
  const events: { type: string; data: Record<string, unknown> }[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      events.push(JSON.parse(Buffer.concat(chunks).toString('utf8')) as { type: string; data: Record<string, unknown> });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, events };
}

async function setup(opts: { leader?: boolean; hook?: string } = {}): Promise<{ server: TestServer; dep: DepStandin }> {
  const dep = await new DepStandin({ credentials: creds }).start();
  cleanups.push(() => dep.stop());
  const server = await startTestServer(
    { abmUrl: dep.url, abmSyncIntervalMs: 0, eventWebhooks: opts.hook ? [opts.hook] : [] },
    { isLeader: () => opts.leader ?? true, eventSecret: 'event-secret' },
  );
  cleanups.push(() => server.stop());
  return { server, dep };
}

async function status(server: TestServer): Promise<{ abm?: { tokens: Record<string, unknown>[]; conditions: Record<string, unknown>[] } }> {
  const r = await http(`${server.url}/api/v1/status`, { headers: { authorization: `Bearer ${server.readToken}` } });
  expect(r.status).toBe(200);
  return r.json() as { abm?: { tokens: Record<string, unknown>[]; conditions: Record<string, unknown>[] } };
}

async function until(what: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !what(); i++) await new Promise((r) => setTimeout(r, 25));
  expect(what()).toBe(true);
}

describe('ABM sync in orchard serve', () => {
  it('syncs each imported token on the leader; an expiry within 30 days is in the log, the status, /metrics and one event', async () => {
    const hook = await webhookReceiver();
    const { server, dep } = await setup({ hook: hook.url });
    dep.add({ serial_number: 'C02SERVE0001', model: 'MacBook Air' });
    importAbmToken(server.cfg.dataDir, 'acme', new Date(Date.now() + 10 * DAY + 3600_000));

    await server.abm.runOnce();
    expect(dep.requests.map((r) => `${r.method} ${r.path} ${r.status}`)).toEqual(['GET /session 200', 'POST /server/devices 200']);
    const s = await status(server);
    expect(s.abm?.tokens).toEqual([
      expect.objectContaining({ name: 'acme', daysLeft: 10, expired: false, warning: expect.stringMatching(/expires in 10 days/) }),
    ]);
    expect(s.abm?.conditions).toEqual([expect.objectContaining({ token: 'acme', kind: 'token_expiring' })]);
    expect(server.logs.some((l) => l.level === 40 && /ABM token "acme" expires in 10 days/.test(l.msg))).toBe(true);

    const metrics = await http(`${server.url}/metrics`, { headers: { authorization: `Bearer ${server.readToken}` } });
    const m = /orchard_abm_token_expiry_seconds\{token="acme"\} (\d+)/.exec(metrics.text);
    expect(Number(m?.[1])).toBeGreaterThan(10 * 86_400);
    expect(Number(m?.[1])).toBeLessThan(11 * 86_400);
    expect(metrics.text).toMatch(/orchard_abm_conditions\{kind="token_expiring"\} 1/);

    // The second pass syncs incrementally and announces nothing new.
    await server.abm.runOnce();
    expect(dep.requests.at(-1)).toMatchObject({ path: '/devices/sync', status: 200 });
    await until(() => hook.events.some((e) => e.type === 'abm.condition'));
    expect(hook.events.filter((e) => e.type === 'abm.condition')).toEqual([
      expect.objectContaining({ data: expect.objectContaining({ token: 'acme', kind: 'token_expiring' }) }),
    ]);
  });

  it('terms not accepted in ABM and a rejected token are conditions with what to do, cleared when fixed; no secret in them', async () => {
    const { server, dep } = await setup();
    importAbmToken(server.cfg.dataDir, 'acme', new Date(Date.now() + 200 * DAY));
    dep.termsSigned = false;
    await server.abm.runOnce();
    let s = await status(server);
    expect(s.abm?.conditions).toEqual([expect.objectContaining({ token: 'acme', kind: 'terms_not_signed', message: expect.stringMatching(/accept/) })]);
    expect(s.abm?.tokens[0]).toMatchObject({ lastError: { reason: 'terms_not_signed' } });
    expect(server.logs.some((l) => l.level === 40 && l.condition === 'terms_not_signed')).toBe(true);

    dep.termsSigned = true;
    await server.abm.runOnce();
    s = await status(server);
    expect(s.abm?.conditions).toEqual([]);
    expect(s.abm?.tokens[0]?.lastSyncAt).toEqual(expect.any(String));

    // A token ABM no longer accepts (replaced in ABM): its sessions are refused.
    importAbmToken(server.cfg.dataDir, 'other', new Date(Date.now() + 200 * DAY), { ...creds, accessToken: 'AT_revoked' });
    await server.abm.runOnce();
    s = await status(server);
    expect(s.abm?.conditions).toEqual([
      expect.objectContaining({ token: 'other', kind: 'token_rejected', message: expect.stringMatching(/orchard abm token import/) }),
    ]);
    expect(JSON.stringify(s)).not.toContain(creds.consumerSecret);
    expect(JSON.stringify(server.logs)).not.toContain(creds.accessSecret);
  });

  it('a replica that is not the leader does not call ABM', async () => {
    const { server, dep } = await setup({ leader: false });
    importAbmToken(server.cfg.dataDir, 'acme', new Date(Date.now() + 200 * DAY));
    await server.abm.runOnce();
    expect(dep.requests).toEqual([]);
    expect((await status(server)).abm).toBeUndefined();
  });
});
