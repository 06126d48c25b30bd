/**
 * The composition root: parts are built once, from the config, in src/root.ts. Route factories only
 * build routers (building them again creates nothing on disk and changes no part), and a test's
 * pusher replaces APNs without taking the push routes away.
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { mountedRoutes } from '../src/http/app.js';
import { buildRoutes, ROUTES } from '../src/root.js';
import type { PushResult } from '../src/push/apns.js';
import type { EnrollmentRecord } from '../src/store/types.js';
import { http, startTestServer, type TestServer } from './helpers/server.js';

/** Every file under `dir` with its size and modification time. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else out.push(`${p.slice(dir.length)} ${st.size} ${st.mtimeMs}`);
    }
  };
  walk(dir);
  return out;
}

const servers: TestServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
});
async function start(...args: Parameters<typeof startTestServer>): Promise<TestServer> {
  const s = await startTestServer(...args);
  servers.push(s);
  return s;
}

describe('composition root', () => {
  it('enrollment is opened once by the root: building every route again creates nothing on disk or in the store and trusts nothing more', async () => {
    const server = await start({}, { enrollment: { topic: 'com.apple.mgmt.External.root-test' } });
    expect(server.enrollment).toBeDefined();
    const blobs = async () => (await server.store.listMaterial('blob')).items.map((i) => [i.key, i.value.toString('base64')]);
    const stored = await blobs();
    expect(stored.map(([k]) => k)).toEqual(expect.arrayContaining(['ca', 'profile-signer']));
    // The CA is trusted: the one the test harness made, and the built-in one.
    expect(server.trust.size).toBe(2);
    const before = snapshot(server.cfg.dataDir).filter((f) => !f.startsWith('/store/'));
    const first = buildRoutes(ROUTES, server.deps);
    const second = buildRoutes(ROUTES, server.deps);
    expect(second.length).toBe(first.length);
    expect(snapshot(server.cfg.dataDir).filter((f) => !f.startsWith('/store/'))).toEqual(before);
    expect(await blobs()).toEqual(stored);
    expect(server.trust.size).toBe(2);
    // And the routers built again are the same routes.
    const paths = (rs: typeof first) => rs.flatMap((r) => (r.stack as { path: string }[]).map((l) => l.path)).sort();
    expect(paths(second)).toEqual(paths(first));
    expect(paths(first)).toContain('/scep');
  });

  it('without enrollment there is no CA (on disk or in the store) and no SCEP route', async () => {
    const server = await start();
    expect(readdirSync(server.cfg.dataDir)).not.toContain('ca');
    expect(await server.store.getMaterial('blob', 'ca')).toBeUndefined();
    expect(mountedRoutes(server.app).map((r) => r.path)).not.toContain('/scep');
    expect((await http(`${server.url}/scep?operation=GetCACaps`)).status).toBe(404);
  });

  it('a test pusher keeps the push routes: they say push is not configured', async () => {
    const pushed: string[][] = [];
    const server = await start({}, { pusher: { push: async (es: EnrollmentRecord[]) => void pushed.push(es.map((e) => e.id)) } });
    expect(
      mountedRoutes(server.app)
        .filter((r) => r.path === '/api/v1/push')
        .map((r) => r.method),
    ).toEqual(expect.arrayContaining(['GET', 'POST']));
    const get = await http(`${server.url}/api/v1/push`, { headers: { authorization: `Bearer ${server.readToken}` } });
    expect([get.status, (get.json() as { configured: boolean }).configured]).toEqual([200, false]);
    const post = await http(`${server.url}/api/v1/push`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.adminToken}` },
      body: '{"targets":["x"]}',
    });
    expect(post.status).toBe(503);
    // The pusher itself is the one commands wake devices with.
    const mac = server.device();
    await mac.enroll();
    const res = await http(`${server.url}/api/v1/commands`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ targets: [mac.udid], command: { RequestType: 'DeviceInformation', Queries: ['OSVersion'] } }),
    });
    expect(res.status).toBe(201);
    await expect.poll(() => pushed.flat()).toContain(mac.udid);
  });

  it('a test pusher that can push on demand serves POST /api/v1/push', async () => {
    const status = { topic: 'com.apple.mgmt.External.stand-in', counters: { sent: 1 } };
    const pusher = {
      push: async () => undefined,
      pushNow: async (es: EnrollmentRecord[]): Promise<PushResult[]> => es.map((e) => ({ target: e.id, result: 'pushed' })),
      status: () => status as never,
    };
    const server = await start({}, { pusher });
    const get = await http(`${server.url}/api/v1/push`, { headers: { authorization: `Bearer ${server.readToken}` } });
    expect(get.json()).toMatchObject({ configured: true, topic: 'com.apple.mgmt.External.stand-in' });
    const mac = server.device();
    await mac.enroll();
    const post = await http(`${server.url}/api/v1/push`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.adminToken}` },
      body: JSON.stringify({ targets: [mac.udid] }),
    });
    expect(post.status).toBe(200);
    expect((post.json() as { summary: Record<string, number> }).summary).toEqual({ pushed: 1 });
  });
});
