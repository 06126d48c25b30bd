/**
 * Every route the server mounts, read from its routers (so a new route cannot be forgotten) and
 * checked against the OpenAPI document, asked with other spellings of its path (case, slashes,
 * %-escapes, dot segments, `;` parameters) and every method, without a token and with the read
 * token, on a real server on loopback with an enrolled device and a followed repository, then on
 * `orchard serve` as a child process: nothing may reach a handler (no 2xx, no device data, no
 * command queued, no sync, no challenge issued).
 */
import { createHmac } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enrollmentOptions } from '../../src/cli/enroll.js';
import Router from '@koa/router';
import { bearerAuth, ROUTER_OPTIONS } from '../../src/http/api.js';
import { createApp, mountedRoutes, pathProblem, type MountedRoute } from '../../src/http/app.js';
import { UnconfiguredPusher } from '../../src/push/push.js';
import { OPENAPI } from '../../src/http/openapi.js';
import { createCA, createDeviceIdentity } from '../../src/identity/ca.js';
import { SimulatedDevice } from '../../src/sim/device.js';
import { FleetRepo, GOOD } from '../gitops/helpers.js';
import { blueprint } from '../gitops/repo.js';
import { spawnServer, waitExit } from '../helpers/process.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];
const SERIAL = 'C02SECRET0001';
const ERASE = JSON.stringify({ targets: ['<UDID>'], command: { RequestType: 'EraseDevice', PIN: '123456' } });
const agent = new Agent({ keepAlive: true, maxSockets: 8 });

interface Answer {
  status: number;
  text: string;
  headers: Record<string, string | string[] | undefined>;
}

/** A request with the path sent exactly as given (fetch would normalize dot segments and backslashes). */
function raw(base: string, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<Answer> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        method,
        path,
        agent,
        headers: { ...(body ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) } : {}), ...headers },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          text += d;
        });
        res.on('end', () => resolve({ status: res.statusCode!, text, headers: res.headers }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

type Kind = 'case' | 'syntax';

/** Other spellings of `path` that must not reach its route: the case of a static segment, or a non-canonical form. */
function variants(path: string, pattern: string): { path: string; kind: Kind }[] {
  const segs = path.slice(1).split('/');
  const isStatic = pattern
    .slice(1)
    .split('/')
    .map((s) => !s.startsWith(':'));
  const at = (i: number, seg: string) => `/${segs.map((s, j) => (j === i ? seg : s)).join('/')}`;
  const out: { path: string; kind: Kind }[] = [];
  const add = (p: string, kind: Kind) => {
    if (p !== path && !out.some((v) => v.path === p)) out.push({ path: p, kind });
  };
  add(path.toUpperCase(), 'case');
  segs.forEach((s, i) => {
    if (isStatic[i]) {
      add(at(i, s[0]!.toUpperCase() + s.slice(1)), 'case');
      add(at(i, s.toUpperCase()), 'case');
      add(at(i, s.slice(0, -1) + s.slice(-1).toUpperCase()), 'case');
    }
    const hex = s.charCodeAt(0).toString(16);
    add(at(i, `%${hex}${s.slice(1)}`), 'syntax');
    add(at(i, `%${hex.toUpperCase()}${s.slice(1)}`), 'syntax');
    add(at(i, `${s};x=1`), 'syntax');
    add(at(i, `${s};`), 'syntax');
    add(at(i, `${s}/.`), 'syntax');
    add(at(i, `${s}/%2e`), 'syntax');
    add(at(i, `./${s}`), 'syntax');
    add(at(i, `x/../${s}`), 'syntax');
    add(at(i, `x/%2E%2E/${s}`), 'syntax');
    add(at(i, `x/%2e%2e/${s}`), 'syntax');
    add(at(i, `/${s}`), 'syntax');
    if (i > 0) {
      add(`/${segs.slice(0, i).join('/')}%2F${segs.slice(i).join('/')}`, 'syntax');
      add(`/${segs.slice(0, i).join('/')}%2f${segs.slice(i).join('/')}`, 'syntax');
      add(`/${segs.slice(0, i).join('/')}\\${segs.slice(i).join('/')}`, 'syntax');
      add(`/${segs.slice(0, i).join('/')}%5C${segs.slice(i).join('/')}`, 'syntax');
    }
  });
  add(`${path}/`, 'syntax');
  add(`/${path}`, 'syntax');
  add(`${path}%00`, 'syntax');
  add(`${path}%`, 'syntax');
  add(`${path}%zz`, 'syntax');
  return out;
}

let repo: FleetRepo;
let server: TestServer;
let off: TestServer;
let mac: SimulatedDevice;
let routes: MountedRoute[];
let syncs: string[];

/** The route's path with real values (the device's UDID, a blueprint): a bypass would answer with real data. */
const concrete = (pattern: string, udid: string) => pattern.replace(':id', udid).replace(':name', 'macs');

/** A running server to sweep, and the enrolled device whose data must not leak. */
interface Target {
  url: string;
  readToken: string;
  disabled: boolean;
  device: SimulatedDevice;
}

beforeAll(async () => {
  repo = new FleetRepo();
  repo
    .write('secrets/wifi.yaml', GOOD)
    .write('blueprints/macs.yaml', blueprint('macs', '    platforms: [macOS]', []))
    .commit('good');
  server = await startTestServer(
    { repo: repo.url, pollIntervalMs: 0, driftIntervalMs: 0, dataDir: join(repo.root, 'server') },
    { webhookSecret: 'hook-secret', enrollment: enrollmentOptions({ topic: 'com.apple.mgmt.test' }, {}) },
  );
  // The admin API "disabled": no token at all.
  off = await startTestServer({}, { adminToken: undefined, readToken: undefined, enrollment: enrollmentOptions({}, {}) });
  mac = server.device({ serialNumber: SERIAL, model: 'Mac14,2' });
  await mac.enroll();
  await mac.connect();
  routes = mountedRoutes(server.app);
  syncs = [];
  const sync = server.source!.sync.bind(server.source);
  server.source!.sync = (reason: string) => {
    syncs.push(reason);
    return sync(reason);
  };
}, 30_000);
afterAll(async () => {
  agent.destroy();
  await server?.stop();
  await off?.stop();
  repo?.cleanup();
});

describe('the mounted routes', () => {
  it('are read from the routers and match the OpenAPI document; every admin route carries the bearer check', () => {
    const key = (r: { method: string; path: string }) => `${r.method} ${r.path}`;
    const mounted = new Set(routes.map(key));
    for (const must of [
      'PUT /mdm/checkin',
      'PUT /mdm/connect',
      'GET /status',
      'POST /status/login',
      'POST /status/logout',
      'GET /status/devices/:id',
      'GET /metrics',
      'GET /api/v1/push',
      'POST /api/v1/push',
      'POST /api/v1/enrollments',
      'GET /api/v1/report/devices/:id',
      'POST /api/v1/commands',
    ]) {
      expect(mounted, must).toContain(must);
    }
    const documented = Object.entries(OPENAPI.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p.replace(/\{(\w+)\}/g, ':$1')}`));
    const admin = routes.filter((r) => r.path.startsWith('/api/') || r.path === '/metrics');
    expect(admin.map(key).sort()).toEqual([...documented].sort());
    for (const r of admin) expect(r.guard, key(r)).toBe(r.path === '/api/v1/hooks/git' ? 'public: HMAC-signed git webhook' : 'bearer');
  });

  it('the server refuses to start with a case-insensitive route or an admin route without its check', () => {
    const parts = {
      log: server.log,
      store: server.store,
      service: server.service,
      trust: server.trust,
      pusher: new UnconfiguredPusher(server.log),
      maxBodyBytes: 1024,
    };
    const ok = () => undefined;
    expect(() => createApp({ ...parts, routes: [new Router().get('/things', ok)] })).toThrow(/matches case-insensitively/);
    expect(() => createApp({ ...parts, routes: [new Router(ROUTER_OPTIONS).get('/api/v1/things', ok)] })).toThrow(/has no access check/);
    expect(() => createApp({ ...parts, routes: [new Router(ROUTER_OPTIONS).get('/metrics', ok)] })).toThrow(/has no access check/);
    // A router.use() guard does not count: it is matched apart from the route.
    const used = new Router(ROUTER_OPTIONS);
    used.use(bearerAuth('x'));
    used.get('/api/v1/things', ok);
    expect(() => createApp({ ...parts, routes: [used] })).toThrow(/has no access check/);
    expect(() => createApp({ ...parts, routes: [new Router(ROUTER_OPTIONS).get('/api/v1/things', bearerAuth('x'), ok)] })).not.toThrow();
  });

  it('canonical paths are the only spellings: the path rules', () => {
    for (const p of ['/', '/api/v1/devices', '/api/v1/devices/ABC-123', '/api/v1/devices/A%3AB', '/status/devices/%E2%9C%93'])
      expect(pathProblem(p), p).toBeUndefined();
    const cases: [string, RegExp][] = [
      ['/api/v1/devices/', /trailing slash/],
      ['//api/v1/devices', /empty path segment/],
      ['/api//v1', /empty path segment/],
      ['/api/./v1', /dot segment/],
      ['/api/x/../v1', /dot segment/],
      ['/api/v1;x/devices', /path parameter/],
      ['/%61pi/v1', /needless percent-encoding/],
      ['/api/v1/%2e%2e/x', /needless/],
      ['/api%2Fv1', /slash/],
      ['/api%5cv1', /backslash/],
      ['/api\\v1', /must be percent-encoded/],
      ['/api/v1/devices%', /malformed/],
      ['/api/%C0%AF', /not UTF-8/],
      ['/api/%00', /control/],
      ['/api/%25', /percent/],
    ];
    for (const [p, why] of cases) expect(pathProblem(p), p).toMatch(why);
  });
});

/**
 * Every mounted path x every spelling x every method, without a token and (for writes) with the read
 * token: the answers that reached something, as lines to report.
 */
async function sweep(s: Target, list: MountedRoute[]): Promise<string[]> {
  const bad: string[] = [];
  const udid = s.device.udid;
  const secrets = [udid, s.device.serialNumber, udid.toLowerCase()];
  const byPath = new Map<string, { pattern: string; methods: string[]; bearer: boolean }>();
  for (const r of list) {
    const e = byPath.get(concrete(r.path, udid)) ?? { pattern: r.path, methods: [], bearer: r.guard === 'bearer' };
    e.methods.push(r.method, ...(r.method === 'GET' ? ['HEAD'] : []));
    byPath.set(concrete(r.path, udid), e);
  }
  for (const [path, route] of byPath) {
    for (const v of [{ path, kind: 'canonical' as const }, ...variants(path, route.pattern)]) {
      for (const method of METHODS) {
        const write = !['GET', 'HEAD', 'OPTIONS'].includes(method);
        for (const token of write ? [undefined, s.readToken] : [undefined]) {
          const a = await raw(s.url, method, v.path, token ? { authorization: `Bearer ${token}` } : {}, write ? ERASE.replace('<UDID>', udid) : undefined);
          const what = `${method} ${v.path} (${token ? 'read token' : 'no token'}) -> ${a.status}`;
          if (secrets.some((x) => a.text.includes(x))) bad.push(`${what}: answered device data`);
          if (v.kind === 'syntax' && a.status !== 400) bad.push(`${what}: expected 400`);
          if (v.kind === 'case' && a.status !== (method === 'OPTIONS' ? 405 : 404)) bad.push(`${what}: expected 404`);
          if (v.kind === 'canonical' && route.bearer) {
            // 401 without a token, 403 for the read token writing or with the API disabled; 405 for a method the path has not.
            const want = !route.methods.includes(method) ? 405 : token || s.disabled ? 403 : 401;
            if (a.status !== want) bad.push(`${what}: expected ${want}`);
          }
          if (a.status >= 200 && a.status < 300 && write) bad.push(`${what}: a write succeeded`);
        }
      }
    }
  }
  return bad;
}

describe('without the right token nothing reaches a handler', () => {
  it('no spelling of any route, with any method, answers 2xx or data, and nothing happens', async () => {
    const logsBefore = server.logs.length;
    const challengesBefore = (await server.store.listMaterial('challenge')).items.length;
    const bad = await sweep({ url: server.url, readToken: server.readToken, disabled: false, device: mac }, routes);
    expect(bad).toEqual([]);
    // No handler ran: no command queued, no sync started, no one-time challenge issued, no request with an outcome.
    expect((await server.store.listCommands(mac.udid)).items.map((c) => c.requestType)).not.toContain('EraseDevice');
    expect(syncs).toEqual([]);
    expect((await server.store.listMaterial('challenge')).items.length).toBe(challengesBefore);
    const reached = server.logs
      .slice(logsBefore)
      .filter(
        (l) => l.msg.startsWith('request') && (l.outcome !== undefined || (l.status! < 300 && !['/status', '/healthz', '/readyz'].includes(l.path as string))),
      );
    expect(reached.map((l) => `${l.method} ${l.path} ${l.status} ${l.outcome}`)).toEqual([]);
  }, 300_000);

  it('with the admin API disabled, the same', async () => {
    const admin = mountedRoutes(off.app).filter((r) => r.guard === 'bearer');
    expect(admin.length).toBeGreaterThan(10);
    expect(await sweep({ url: off.url, readToken: off.readToken, disabled: true, device: mac }, admin)).toEqual([]);
  }, 300_000);

  it('the reported exploit: EraseDevice through /API/v1/commands, the device list through /API/V1/devices', async () => {
    const erase = await raw(server.url, 'POST', '/API/v1/commands', {}, ERASE.replace('<UDID>', mac.udid));
    expect(erase.status).toBe(404);
    const list = await raw(server.url, 'GET', '/API/V1/devices');
    expect(list.status).toBe(404);
    expect(list.text).not.toContain(mac.udid);
    expect((await raw(off.url, 'POST', '/API/v1/commands', {}, ERASE)).status).toBe(404);
    expect((await raw(server.url, 'GET', '/api/v1/devices/')).status).toBe(400);
    expect((await raw(server.url, 'GET', '/api/v1/devices')).status).toBe(401);
    expect((await server.store.listCommands(mac.udid)).items.map((c) => c.requestType)).not.toContain('EraseDevice');
  });

  it('the status page under another spelling is not served (so never without its security headers)', async () => {
    for (const p of ['/STATUS', '/Status', '/status/', '//status', '/status;x', '/%73tatus', '/STATUS/devices/x']) {
      const a = await raw(server.url, 'GET', p);
      expect([400, 404], p).toContain(a.status);
      expect(a.text, p).not.toContain('<form');
    }
    const page = await raw(server.url, 'GET', '/status');
    expect(page.status).toBe(200);
    expect(page.headers['content-security-policy']).toContain("frame-ancestors 'none'");
    expect(page.headers['x-frame-options']).toBe('DENY');
  });
});

describe('the device endpoints and the tokens still work', () => {
  it('a device checks in and connects at its exact URLs; the admin token reads and queues', async () => {
    const other = server.device({ serialNumber: 'C02OTHER0002' });
    await other.enroll();
    expect((await server.store.getEnrollment(other.udid))?.active).toBe(true);
    const auth = { authorization: `Bearer ${server.adminToken}` };
    const queued = await raw(
      server.url,
      'POST',
      '/api/v1/commands',
      auth,
      JSON.stringify({ targets: [other.udid], command: { RequestType: 'DeviceInformation', Queries: ['OSVersion'] } }),
    );
    expect(queued.status).toBe(201);
    const handled = await other.connect();
    expect(handled.map((h) => h.requestType)).toContain('DeviceInformation');
    expect((await raw(server.url, 'GET', '/api/v1/devices', { authorization: `Bearer ${server.readToken}` })).text).toContain(other.udid);
    expect((await raw(server.url, 'GET', `/api/v1/devices/${other.udid}`, auth)).status).toBe(200);
    // The same check-in at another spelling is refused before anything reads it.
    expect((await raw(server.url, 'PUT', '/MDM/checkin', { 'content-type': 'application/x-apple-aspen-mdm-checkin' }, '<plist/>')).status).toBe(404);
    expect((await raw(server.url, 'PUT', '/mdm//checkin', { 'content-type': 'application/x-apple-aspen-mdm-checkin' }, '<plist/>')).status).toBe(400);
  });

  it('the git webhook answers at its exact path only', async () => {
    const body = '{"variant":"check"}';
    const sig = `sha256=${createHmac('sha256', 'hook-secret').update(body).digest('hex')}`;
    expect((await raw(server.url, 'POST', '/API/v1/hooks/git', { 'x-orchard-signature': sig }, body)).status).toBe(404);
    expect((await raw(server.url, 'POST', '/api/v1/hooks/git', { 'x-orchard-signature': sig }, body)).status).toBe(202);
  });
});

describe('against `orchard serve` as a process', () => {
  it('the same sweep finds nothing either (production wiring: the CLI routes, tokens from the environment)', async () => {
    const dir = join(repo.root, 'process');
    mkdirSync(dir, { recursive: true });
    const ca = createCA({ commonName: 'Route Variants CA' });
    writeFileSync(join(dir, 'ca.pem'), ca.certPem);
    const srv = await spawnServer(
      ['--data-dir', join(dir, 'data'), '--trust-ca', join(dir, 'ca.pem'), '--repo', repo.url, '--poll-interval', '0', '--drift-interval', '0'],
      { ORCHARD_API_TOKEN: 'process-admin', ORCHARD_READ_TOKEN: 'process-read', ORCHARD_WEBHOOK_SECRET: 'process-hook', ORCHARD_SCEP_CHALLENGE: '' },
    );
    try {
      const device = new SimulatedDevice({ serverUrl: srv.url, identity: createDeviceIdentity(ca, 'process-mac'), serialNumber: 'C02PROCESS01' });
      await device.enroll();
      const auth = { authorization: 'Bearer process-read' };
      expect((await raw(srv.url, 'GET', `/api/v1/devices/${device.udid}`, auth)).status).toBe(200);
      expect(await sweep({ url: srv.url, readToken: 'process-read', disabled: false, device }, routes)).toEqual([]);
      expect((await raw(srv.url, 'GET', `/api/v1/devices/${device.udid}/commands`, auth)).text).not.toContain('EraseDevice');
    } finally {
      srv.child.kill('SIGTERM');
      await waitExit(srv.child);
    }
  }, 300_000);
});
