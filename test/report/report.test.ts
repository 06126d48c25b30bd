/**
 * Status reports over the admin API, against a real server following a real git repository with
 * simulated devices: three Macs get a passcode profile, one of them refuses it (its ErrorChain must
 * show in every report), an iPad is selected by nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Koa from 'koa';
import Router from '@koa/router';
import { enrollmentOptions } from '../../src/cli/enroll.js';
import { runStatus } from '../../src/cli/status.js';
import { mountedRoutes } from '../../src/http/app.js';
import { createMetrics, httpMetrics } from '../../src/http/metrics.js';
import { OPENAPI } from '../../src/http/openapi.js';
import type { ReportSources } from '../../src/http/report-routes.js';
import { deviceSummary, loadSnapshot, problemsOf, stateOf, type DeviceProfileStatus } from '../../src/report/status.js';
import type { SimulatedDevice } from '../../src/sim/device.js';
import { FleetRepo, waitFor } from '../gitops/helpers.js';
import { blueprint } from '../gitops/repo.js';
import { http, type TestServer } from '../helpers/server.js';
import { startFailingFleet, type FailingFleet } from './fleet.js';

let repo: FleetRepo;
let server: TestServer;
let macs: SimulatedDevice[];
let goodSha: string;
const sources: ReportSources & { staleDays?: number } = {};
const metrics = createMetrics();

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the report API's JSON bodies, read loosely: the assertions check their shape
type Json = any;

async function get(path: string, token: string = server.readToken): Promise<{ status: number; body: Json }> {
  const res = await http(`${server.url}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  return { status: res.status, body: res.text.startsWith('{') ? res.json() : res.text };
}

let fleet: FailingFleet;
beforeAll(async () => {
  fleet = await startFailingFleet({
    files: { 'blueprints/empty.yaml': blueprint('ipads', '    platforms: [iPadOS]', []) },
    others: [{ serialNumber: 'IPAD001', model: 'iPad13,1', productName: 'iPad13,1', osVersion: '18.1' }],
    onServer: (s) => {
      server = s;
    },
    server: {
      // The reports and metrics read the stand-ins the tests put into `sources`.
      reports: ({ source }) => ({ ...sources, source }),
      metrics,
      enrollment: enrollmentOptions({}, {}),
    },
  });
  ({ repo, macs, goodSha } = fleet);
});
afterAll(async () => {
  await fleet?.stop();
});

describe('GET /api/v1/status', () => {
  it('summarizes the applied revision and counts devices by state', async () => {
    const { status, body } = await get('/api/v1/status');
    expect(status).toBe(200);
    expect(body.applied.commit).toBe(goodSha);
    expect(body.applied.author).toContain('Ada Admin');
    expect(body.applied.time).toBeTruthy();
    expect(body.latestRejected).toBe(false);
    expect(body.devices).toMatchObject({ total: 4, enrolled: 4, stale: 0, byState: { 'in-sync': 3, failed: 1, pending: 0, drifted: 0, unenrolled: 0 } });
    expect(body.blueprints).toBe(2);
    expect(body.push).toBeUndefined();
  });

  it('shows the push certificate expiry when an APNs status is available', async () => {
    sources.apns = {
      status: () => ({
        topic: 'com.apple.mgmt.test',
        certificate: { notAfter: new Date('2030-01-01T00:00:00Z'), daysLeft: 12, expired: false, warning: 'push certificate expires in 12 days' },
      }),
    };
    try {
      const { body } = await get('/api/v1/status');
      expect(body.push).toMatchObject({ topic: 'com.apple.mgmt.test', notAfter: '2030-01-01T00:00:00.000Z', daysLeft: 12, expired: false });
    } finally {
      delete sources.apns;
    }
  });
});

describe('GET /api/v1/blueprints', () => {
  it('counts selected devices and per-profile outcomes', async () => {
    const { status, body } = await get('/api/v1/blueprints');
    expect(status).toBe(200);
    expect(body.revision).toBe(goodSha);
    const macsB = body.blueprints.find((b: Json) => b.name === 'macs');
    expect(macsB).toMatchObject({ matched: 3, selected: 3, suspended: false, devices: { byState: { 'in-sync': 2, failed: 1 } } });
    expect(macsB.profiles).toEqual([{ profile: 'passcode', identifier: 'com.example.passcode', verified: 2, pending: 0, failed: 1 }]);
    expect(body.blueprints.find((b: Json) => b.name === 'ipads')).toMatchObject({ selected: 1, profiles: [] });
  });

  it('one blueprint lists its devices; an unknown one is 404', async () => {
    const { body } = await get('/api/v1/blueprints/macs');
    expect(body.selectedDevices.map((d: Json) => d.serialNumber).sort()).toEqual(['MAC000', 'MAC001', 'MAC002']);
    expect(body.selectedDevices.find((d: Json) => d.serialNumber === 'MAC002').state).toBe('failed');
    expect((await get('/api/v1/blueprints/nope')).status).toBe(404);
  });
});

describe('the read model', () => {
  it('every row says what a live recomputation of its device from the store and the applied revision says', async () => {
    const snap = await loadSnapshot(server.store);
    const rc = { fleet: server.source!.current()!.fleet, now: new Date() };
    const { body } = await get('/api/v1/report/devices');
    expect(body.devices).toHaveLength(snap.devices.length);
    for (const d of snap.devices) {
      const { profileStatus, ...live } = deviceSummary(snap, d, rc);
      const row = body.devices.find((x: Json) => x.id === d.id);
      expect({ ...row, lastSeenAt: undefined, stale: undefined }).toEqual(
        JSON.parse(JSON.stringify({ ...live, problems: problemsOf(profileStatus), lastSeenAt: undefined, stale: undefined })),
      );
    }
  });
});

describe('GET /api/v1/report/devices', () => {
  it('filters by state and shows why a device failed', async () => {
    const { body } = await get('/api/v1/report/devices?state=failed');
    expect(body.total).toBe(1);
    expect(body.devices[0]).toMatchObject({ id: macs[2]!.udid, serialNumber: 'MAC002', state: 'failed', profiles: { total: 1, failed: 1 } });
    expect(body.devices[0].problems[0].message).toContain('Passcode policy refused');
    expect((await get('/api/v1/report/devices?state=in-sync')).body.total).toBe(3);
    expect((await get('/api/v1/report/devices?blueprint=macs')).body.total).toBe(3);
    expect((await get('/api/v1/report/devices?blueprint=macs&state=in-sync')).body.total).toBe(2);
    expect((await get('/api/v1/report/devices?state=bogus')).status).toBe(400);
    expect((await get('/api/v1/report/devices?blueprint=nope')).status).toBe(404);
  });

  it('stale follows the configured number of days', async () => {
    expect((await get('/api/v1/report/devices?state=stale')).body.total).toBe(0);
    sources.staleDays = -1;
    try {
      expect((await get('/api/v1/report/devices?state=stale')).body.total).toBe(4);
      expect((await get('/api/v1/status')).body.devices.stale).toBe(4);
    } finally {
      delete sources.staleDays;
    }
  });

  it('pages with limit and cursor, in id order, without gaps or repeats', async () => {
    const all = (await get('/api/v1/report/devices')).body;
    expect(all.total).toBe(4);
    expect(all.nextCursor).toBeUndefined();
    const ids: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const { body } = await get(`/api/v1/report/devices?limit=3${cursor ? `&cursor=${cursor}` : ''}`);
      ids.push(...body.devices.map((d: Json) => d.id));
      cursor = body.nextCursor;
      pages++;
    } while (cursor && pages < 10);
    expect(pages).toBe(2);
    expect(ids).toEqual(all.devices.map((d: Json) => d.id));
    expect([...ids].sort()).toEqual(ids);
    expect((await get('/api/v1/report/devices?limit=0')).status).toBe(400);
    expect((await get('/api/v1/report/devices?cursor=%%%')).status).toBe(400);
  });

  it('one device: facts, profile with its ErrorChain, recent commands with results', async () => {
    const { status, body } = await get(`/api/v1/report/devices/${macs[2]!.udid}`);
    expect(status).toBe(200);
    expect(body).toMatchObject({ serialNumber: 'MAC002', model: 'Mac14,2', enrolled: true, state: 'failed', blueprints: ['macs'] });
    expect(body.lastSeenAt).toBeTruthy();
    const p = body.profileStatus.find((x: Json) => x.identifier === 'com.example.passcode');
    expect(p).toMatchObject({ phase: 'failed', revision: goodSha, blueprints: ['macs'], desired: true });
    expect(p.lastError.errorChain[0]).toMatchObject({ ErrorCode: 4001, ErrorDomain: 'MCProfileErrorDomain' });
    const install = body.recentCommands.find((c: Json) => c.requestType === 'InstallProfile');
    expect(install).toMatchObject({ status: 'Error' });
    expect(install.errorChain[0].ErrorCode).toBe(4001);
    expect((await get('/api/v1/report/devices/NOPE')).status).toBe(404);
  });
});

describe('auth', () => {
  const paths = ['/api/v1/status', '/api/v1/blueprints', '/api/v1/blueprints/macs', '/api/v1/report/devices', '/api/v1/openapi.json'];
  it('401 without a token, 403 with a wrong one, 200 with the read or admin token', async () => {
    for (const p of paths) {
      expect((await get(p, '')).status, p).toBe(401);
      expect((await get(p, 'wrong')).status, p).toBe(403);
      expect((await get(p, server.readToken)).status, p).toBe(200);
      expect((await get(p, server.adminToken)).status, p).toBe(200);
    }
  });

  it('the read token cannot write', async () => {
    const auth = { authorization: `Bearer ${server.readToken}`, 'content-type': 'application/json' };
    const cmd = await http(`${server.url}/api/v1/commands`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ targets: [macs[0]!.udid], command: { RequestType: 'DeviceLock' } }),
    });
    expect(cmd.status).toBe(403);
    expect((await server.store.listCommands(macs[0]!.udid)).items.some((c) => c.requestType === 'DeviceLock')).toBe(false);
    expect((await http(`${server.url}/api/v1/push`, { method: 'POST', headers: auth, body: '{"targets":["x"]}' })).status).toBe(403);
  });
});

describe('orchard status', () => {
  const opts = () => ({ server: server.url, token: server.readToken });

  it('markdown for a pull request: the failed device with its error, the blueprint counts', async () => {
    const out = await runStatus({ ...opts(), format: 'markdown' });
    expect(out.exitCode).toBe(1);
    const md = out.stdout;
    expect(md).toContain('## Orchard fleet status ⚠️');
    expect(md).toContain(`- **Applied revision:** ${goodSha.slice(0, 12)} "passcode on macs" by Ada Admin`);
    expect(md).toContain('4 total: 3 in sync, 0 pending, 0 drifted, 1 failed, 0 unenrolled');
    expect(md).toContain('| Blueprint | Devices | Profile | Verified | Pending | Failed |');
    expect(md).toContain('| macs | 3 | passcode | 2 | 0 | 1 |');
    expect(md).toContain('### Failed devices (1)');
    const row = md.split('\n').find((l) => l.startsWith('| MAC002 |'));
    expect(row).toContain(macs[2]!.udid);
    expect(row).toContain('com.example.passcode: failed');
    expect(row).toContain('Passcode policy refused');
  });

  it('a table for the terminal, JSON for scripts', async () => {
    const t = await runStatus({ ...opts(), format: 'table' });
    expect(t.exitCode).toBe(1);
    expect(t.stdout).toMatch(/^Blueprint\s+Devices\s+Profile\s+Verified\s+Pending\s+Failed$/m);
    expect(t.stdout).toMatch(/^macs\s+3\s+passcode\s+2\s+0\s+1$/m);
    expect(t.stdout).toMatch(/^MAC002\s+\S+\s+Mac14,2/m);
    const j = JSON.parse((await runStatus({ ...opts(), format: 'json' })).stdout);
    expect(j.status.devices.byState.failed).toBe(1);
    expect(j.failed.devices[0].serialNumber).toBe('MAC002');
  });

  it('one device: its profiles with the ErrorChain and its commands', async () => {
    const out = await runStatus({ ...opts(), device: macs[2]!.udid, format: 'markdown' });
    expect(out.exitCode).toBe(1);
    expect(out.stdout).toContain('## Device MAC002: failed');
    expect(out.stdout).toMatch(/\| com\.example\.passcode \| failed \| [0-9a-f]{12} \| \d+ \| .*MCProfileErrorDomain 4001: Passcode policy refused \|/);
    expect(out.stdout).toMatch(/\| InstallProfile \| Error \| .* \| MCProfileErrorDomain 4001: Passcode policy refused \|/);
    const ok = await runStatus({ ...opts(), device: macs[0]!.udid, format: 'table' });
    expect(ok.exitCode).toBe(0);
    expect(ok.stdout).toMatch(/^State\s+in-sync$/m);
  });

  it('exit 2 with the reason when the server refuses or is unreachable', async () => {
    const noToken = await runStatus({ server: server.url, format: 'table' });
    expect(noToken.exitCode).toBe(2);
    expect(noToken.stderr).toContain('401');
    const unknown = await runStatus({ ...opts(), device: 'NOPE', format: 'table' });
    expect(unknown).toMatchObject({ exitCode: 2 });
    expect(unknown.stderr).toContain('no device NOPE');
    const down = await runStatus({ server: 'http://127.0.0.1:1', token: 'x', format: 'json' });
    expect(down.exitCode).toBe(2);
    expect(down.stderr).toContain('cannot reach');
  });
});

describe('a revision that fails validation', () => {
  it('is reported as the latest, rejected, with its errors; the applied one stays', async () => {
    const bad = repo
      .write('blueprints/broken.yaml', 'apiVersion: orchard/v1\nkind: Blueprint\nmetadata: {name: broken}\nspec:\n  profiles: [nope]\n')
      .commit('broken');
    await server.source!.sync('test');
    const { body } = await get('/api/v1/status');
    expect(body.applied.commit).toBe(goodSha);
    expect(body.latest.commit).toBe(bad);
    expect(body.latest.valid).toBe(false);
    expect(body.latestRejected).toBe(true);
    expect(body.latest.errorCount).toBeGreaterThan(0);
    expect(body.latest.errors[0].file).toContain('broken.yaml');
    const md = (await runStatus({ server: server.url, token: server.readToken, format: 'markdown' })).stdout;
    expect(md).toContain(`- **Latest revision:** ${bad.slice(0, 12)} REJECTED`);
    expect(md).toMatch(/\| .*broken\.yaml \| \d+:\d+ \| .+ \|/);
    repo.remove('blueprints/broken.yaml').commit('fixed');
    await server.source!.sync('test');
  });
});

/** The value of one sample in Prometheus text, 0 when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries(
      (m[2] ?? '')
        .split(',')
        .filter(Boolean)
        .map((kv) => {
          const [k, v] = kv.split('=');
          return [k, JSON.parse(v!)];
        }),
    );
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return 0;
}

describe('GET /metrics', () => {
  const scrape = async () => {
    const res = await http(`${server.url}/metrics`, { headers: { authorization: `Bearer ${server.readToken}` } });
    expect(res.status).toBe(200);
    return res.text;
  };

  it('needs a token', async () => {
    expect((await http(`${server.url}/metrics`)).status).toBe(401);
  });

  it('devices by state, the applied revision, the refused install', async () => {
    const text = await scrape();
    expect(sample(text, 'orchard_devices', { state: 'in-sync' })).toBe(3);
    expect(sample(text, 'orchard_devices', { state: 'failed' })).toBe(1);
    expect(sample(text, 'orchard_devices_stale')).toBe(0);
    const appliedAt = sample(text, 'orchard_revision_applied_timestamp_seconds');
    expect(appliedAt).toBeGreaterThan(Date.now() / 1000 - 600);
    expect(sample(text, 'orchard_mdm_commands_total', { request_type: 'InstallProfile', outcome: 'queued' })).toBeGreaterThanOrEqual(3);
    expect(sample(text, 'orchard_mdm_commands_total', { request_type: 'InstallProfile', outcome: 'error' })).toBe(1);
    expect(sample(text, 'orchard_mdm_commands_total', { request_type: 'InstallProfile', outcome: 'acknowledged' })).toBe(2);
  });

  it('command counters move with a device cycle', async () => {
    const before = await scrape();
    const key = (outcome: string) => ({ request_type: 'DeviceInformation', outcome });
    const res = await http(`${server.url}/api/v1/commands`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ targets: [macs[0]!.udid, macs[1]!.udid], command: { RequestType: 'DeviceInformation', Queries: ['OSVersion'] } }),
    });
    expect(res.status).toBe(201);
    expect(sample(await scrape(), 'orchard_mdm_commands_total', key('queued')) - sample(before, 'orchard_mdm_commands_total', key('queued'))).toBe(2);
    await macs[0]!.connect();
    await macs[1]!.connect();
    await waitFor(
      'acknowledged counted',
      async () =>
        sample(await scrape(), 'orchard_mdm_commands_total', key('acknowledged')) - sample(before, 'orchard_mdm_commands_total', key('acknowledged')) === 2 ||
        undefined,
    );
  });

  it('push outcomes and certificate expiry come from the APNs client status', async () => {
    sources.apns = {
      status: () => ({
        certificate: { notAfter: '2030-01-01T00:00:00.000Z', daysLeft: 99, expired: false },
        counters: { sent: 5, unregistered: 2, failed: 0 },
      }),
    };
    try {
      const text = await scrape();
      expect(sample(text, 'orchard_push_notifications_total', { outcome: 'sent' })).toBe(5);
      expect(sample(text, 'orchard_push_notifications_total', { outcome: 'unregistered' })).toBe(2);
      expect(sample(text, 'orchard_push_certificate_expiry_timestamp_seconds')).toBe(Date.parse('2030-01-01T00:00:00Z') / 1000);
    } finally {
      delete sources.apns;
    }
  });

  /** orchard_event_loop_delay_seconds by quantile, as scraped. */
  const loopDelays = (text: string) =>
    Object.fromEntries([...text.matchAll(/^orchard_event_loop_delay_seconds\{quantile="([^"]+)"\} (\S+)$/gm)].map((m) => [m[1]!, Number(m[2])]));

  it('event-loop delay: quantiles 0.5, 0.9, 0.99 and the max, non-negative and ordered, after device traffic', async () => {
    await macs[2]!.connect();
    const d = loopDelays(await scrape());
    expect(Object.keys(d).sort()).toEqual(['0.5', '0.9', '0.99', '1']);
    for (const v of Object.values(d)) {
      expect(Number.isFinite(v)).toBe(true);
      expect(v).toBeGreaterThanOrEqual(0);
    }
    expect(d['0.5']).toBeLessThanOrEqual(d['0.9']!);
    expect(d['0.9']).toBeLessThanOrEqual(d['0.99']!);
    expect(d['0.99']).toBeLessThanOrEqual(d['1']!);
  });

  it('event-loop delay: a blocked loop shows as the max, kept across scrapes; nothing is sampled before start or after stop', async () => {
    const m = createMetrics({ defaultMetrics: false });
    expect(loopDelays(await m.registry.metrics())).toEqual({});
    const block = async (ms: number) => {
      await new Promise((res) => setTimeout(res, 30));
      const until = Date.now() + ms;
      while (Date.now() < until);
      await new Promise((res) => setTimeout(res, 30));
    };
    const stop = m.monitorEventLoop();
    let max: number | undefined;
    try {
      // Held synchronously for 150 ms: the monitor's 10 ms timer runs at least 140 ms late.
      await block(150);
      max = loopDelays(await m.registry.metrics())['1'];
      expect(max).toBeGreaterThanOrEqual(0.1);
      // Not reset by a scrape: the next one still holds the block.
      expect(loopDelays(await m.registry.metrics())['1']).toBe(max);
    } finally {
      stop();
    }
    // Stopped: a longer block is not recorded, the last figures stay.
    await block(300);
    expect(loopDelays(await m.registry.metrics())['1']).toBe(max);
  });

  it('httpMetrics counts requests by route pattern and status', async () => {
    const m = createMetrics({ defaultMetrics: false });
    const app = new Koa();
    app.use(httpMetrics(m));
    const r = new Router();
    r.get('/things/:id', (ctx) => {
      ctx.body = 'ok';
    });
    r.get('/boom', () => {
      throw new Error('boom');
    });
    app.use(r.routes());
    app.silent = true;
    const srv = app.listen(0, '127.0.0.1');
    await new Promise((res) => srv.once('listening', res));
    try {
      const base = `http://127.0.0.1:${(srv.address() as import('node:net').AddressInfo).port}`;
      for (const p of ['/things/1', '/things/2', '/nowhere', '/boom']) await fetch(base + p);
      const text = await m.registry.metrics();
      expect(sample(text, 'orchard_http_requests_total', { route: '/things/:id', status: '200', method: 'GET' })).toBe(2);
      expect(sample(text, 'orchard_http_requests_total', { route: 'unmatched', status: '404' })).toBe(1);
      expect(sample(text, 'orchard_http_requests_total', { route: '/boom', status: '500' })).toBe(1);
      expect(sample(text, 'orchard_http_request_duration_seconds_count', { route: '/things/:id' })).toBe(2);
    } finally {
      await new Promise((res) => srv.close(res));
    }
  });
});

describe('OpenAPI document', () => {
  const documented = () =>
    Object.entries(OPENAPI.paths)
      .flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`))
      .sort();

  it('is served at /api/v1/openapi.json', async () => {
    const { status, body } = await get('/api/v1/openapi.json');
    expect(status).toBe(200);
    expect(body.openapi).toBe('3.1.0');
    expect(Object.keys(body.paths)).toContain('/api/v1/report/devices');
  });

  it('describes exactly the routes the server mounts under /api/v1 and /metrics', () => {
    // Every route the running server's app mounts (the composition root builds them all).
    const actual = new Set<string>();
    for (const r of mountedRoutes(server.app)) {
      if (!r.path.startsWith('/api/v1') && r.path !== '/metrics') continue;
      actual.add(`${r.method} ${r.path.replace(/:(\w+)/g, '{$1}')}`);
    }
    expect([...actual].sort()).toEqual(documented());
  });

  it('every documented operation answers on the running server (no 404/405 from routing)', async () => {
    for (const op of documented()) {
      const [method, path] = op.split(' ') as [string, string];
      const url = server.url + path.replace('{id}', macs[0]!.udid).replace('{name}', 'macs').replace('{blueprint}', 'macs');
      const res = await http(url, {
        method,
        headers: { authorization: `Bearer ${server.adminToken}`, ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) },
        ...(method === 'POST' ? { body: '{}' } : {}),
      });
      // A handler's own 404 is a JSON {error} (e.g. no staged rollout for the blueprint); routing's is not.
      const routed = !(res.status === 404 && res.text.startsWith('{"error":'));
      expect(routed ? [404, 405, 501] : [405, 501], `${op} answered ${res.status}: ${res.text.slice(0, 200)}`).not.toContain(res.status);
    }
  });
});

describe('stateOf', () => {
  const p = (over: Partial<DeviceProfileStatus>): DeviceProfileStatus => ({
    identifier: 'a',
    profile: 'a',
    blueprints: ['b'],
    desired: true,
    phase: 'verified',
    attempts: 1,
    drift: 0,
    ...over,
  });
  it('orders failed > drifted > pending > in-sync, unenrolled first', () => {
    expect(stateOf(true, [p({})])).toBe('in-sync');
    expect(stateOf(true, [])).toBe('in-sync');
    expect(stateOf(true, [p({ drift: 2 })])).toBe('in-sync');
    expect(stateOf(true, [p({ phase: 'pending', drift: 1 })])).toBe('drifted');
    expect(stateOf(true, [p({ phase: 'acknowledged' })])).toBe('pending');
    expect(stateOf(true, [p({ phase: 'not-reconciled' })])).toBe('pending');
    expect(stateOf(true, [p({ desired: false, phase: 'removing' })])).toBe('pending');
    expect(stateOf(true, [p({ phase: 'pending', drift: 1 }), p({ identifier: 'b', phase: 'failed' })])).toBe('failed');
    expect(stateOf(false, [p({ phase: 'failed' })])).toBe('unenrolled');
  });
});

describe('POST /api/v1/commands with a commandUUID already used', () => {
  const post = (body: object) =>
    http(`${server.url}/api/v1/commands`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  const cmd = (uuid: string, udid = macs[0]!.udid) => ({
    targets: [udid],
    commandUUID: uuid,
    command: { RequestType: 'DeviceInformation', Queries: ['OSVersion'] },
  });

  it('answers 409 naming it, and queues nothing more', async () => {
    expect((await post(cmd('REUSED-UUID-1'))).status).toBe(201);
    const again = await post(cmd('REUSED-UUID-1'));
    expect(again.status).toBe(409);
    expect((again.json() as { error: string }).error).toContain('REUSED-UUID-1');
    expect((await server.store.listCommands(macs[0]!.udid)).items.filter((c) => c.uuid === 'REUSED-UUID-1')).toHaveLength(1);
    // Also when the first one is finished (recorded), and when only one of several targets has it.
    await macs[0]!.connect();
    expect((await server.store.getCommand(macs[0]!.udid, 'REUSED-UUID-1'))?.status).toBe('Acknowledged');
    expect((await post(cmd('REUSED-UUID-1'))).status).toBe(409);
    expect((await post({ ...cmd('REUSED-UUID-1'), targets: [macs[1]!.udid, macs[0]!.udid] })).status).toBe(409);
    expect(await server.store.getCommand(macs[1]!.udid, 'REUSED-UUID-1')).toBeUndefined();
  });

  it('two requests racing with one commandUUID: one 201, one 409, never 500', async () => {
    const answers = await Promise.all(Array.from({ length: 6 }, () => post(cmd('RACED-UUID-1', macs[1]!.udid))));
    expect(answers.map((a) => a.status).sort()).toEqual([201, 409, 409, 409, 409, 409]);
  });
});

describe('devices by any of their names', () => {
  const read = () => ({ authorization: `Bearer ${server.readToken}` });

  it('the report, the device and its commands by UDID, serial number (any case) or enrollment id', async () => {
    await macs[2]!.tokenUpdate({ userId: 'USER-1', shortName: 'ada' });
    const enrollment = (await server.store.listEnrollments(macs[2]!.udid)).find((e) => e.type !== 'device')!.id;
    for (const id of [macs[2]!.udid, 'MAC002', 'mac002', enrollment]) {
      const report = await get(`/api/v1/report/devices/${encodeURIComponent(id)}`);
      expect(report.status, id).toBe(200);
      expect(report.body).toMatchObject({ id: macs[2]!.udid, serialNumber: 'MAC002', state: 'failed' });
      const dev = await http(`${server.url}/api/v1/devices/${encodeURIComponent(id)}`, { headers: read() });
      expect(dev.status, id).toBe(200);
      expect((dev.json() as { id: string }).id).toBe(macs[2]!.udid);
    }
    const bySerial = await http(`${server.url}/api/v1/devices/MAC002/commands`, { headers: read() });
    expect(bySerial.json() as { enrollment: string; commands: { requestType: string }[] }).toMatchObject({ enrollment: macs[2]!.udid });
    expect((bySerial.json() as { commands: { requestType: string }[] }).commands.map((c) => c.requestType)).toContain('InstallProfile');
    expect(
      (await http(`${server.url}/api/v1/devices/${encodeURIComponent(enrollment)}/commands`, { headers: read() }).then((r) => r.json())) as object,
    ).toMatchObject({ enrollment });
    expect((await get('/api/v1/report/devices/NOPE')).body.error).toBe('no device NOPE (by UDID, enrollment id or serial number)');
  });

  it('orchard status --device SERIAL (as the README says), or the UDID', async () => {
    for (const device of ['MAC002', macs[2]!.udid]) {
      const out = await runStatus({ server: server.url, token: server.readToken, device, format: 'markdown' });
      expect(out.exitCode, device).toBe(1);
      expect(out.stdout).toContain('## Device MAC002: failed');
    }
  });

  it('a serial number two device records share is refused as ambiguous (409), not guessed', async () => {
    const twin = server.device({ serialNumber: 'MAC001', model: 'Mac14,2' });
    await twin.enroll();
    const res = await get('/api/v1/report/devices/MAC001');
    expect(res.status).toBe(409);
    expect(res.body.error).toContain('name one by UDID');
    expect((await get(`/api/v1/report/devices/${twin.udid}`)).status).toBe(200);
    const cli = await runStatus({ server: server.url, token: server.readToken, device: 'MAC001', format: 'table' });
    expect(cli.exitCode).toBe(2);
    expect(cli.stderr).toContain('matches 2 devices');
  });
});

describe('a new revision that only changes who is selected', () => {
  it('moves the blueprint counts and the rows without any device checking in', async () => {
    repo.write('blueprints/tablets.yaml', blueprint('tablets', '    platforms: [iPadOS]', [])).commit('tablets');
    await server.source!.sync('test');
    try {
      const tablets = await waitFor('the tablets blueprint counted', async () => {
        const b = (await get('/api/v1/blueprints')).body.blueprints?.find((x: Json) => x.name === 'tablets');
        return b?.selected === 1 ? b : undefined;
      });
      expect(tablets).toMatchObject({ matched: 1, selected: 1, devices: { byState: { 'in-sync': 1 } } });
      const ipad = (await get('/api/v1/report/devices?blueprint=tablets')).body;
      expect(ipad.devices.map((d: Json) => d.serialNumber)).toEqual(['IPAD001']);
      expect(ipad.devices[0].blueprints).toEqual(['ipads', 'tablets']);
    } finally {
      repo.remove('blueprints/tablets.yaml').commit('no tablets');
      await server.source!.sync('test');
    }
    await waitFor(
      'the tablets blueprint gone from the rows',
      async () => (await get('/api/v1/report/devices?blueprint=ipads')).body.devices?.[0]?.blueprints.length === 1,
    );
  });
});
