/**
 * What admins hit with ABM, end to end from the stand-in answering as Apple documents: terms and
 * conditions not accepted (403 T_C_NOT_SIGNED), a token revoked or expired (401 on /session), a
 * serial ABM will not assign to this server (NOT_ACCESSIBLE, FAILED). Each is in the log, in
 * /api/v1/status, in /metrics and in `orchard status` (a real CLI process) with what to do; the
 * inventory stays as the last good sync left it.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DepStandin } from '../../src/sim/dep.js';
import { FleetRepo } from '../gitops/helpers.js';
import { importAbmToken, startAbmServer } from '../helpers/abm.js';
import { CLI } from '../helpers/process.js';
import { http, type TestServer } from '../helpers/server.js';

const exec = promisify(execFile);
const creds = { consumerKey: 'CK_err', consumerSecret: 'CS_err_secret', accessToken: 'AT_err', accessSecret: 'AS_err_secret' };
const DAY = 86_400_000;

interface Condition {
  token: string;
  kind: string;
  message: string;
  serials?: string[];
}
interface Status {
  abm: { tokens: { name: string; expired: boolean; lastError?: { reason: string } }[]; conditions: Condition[]; devices?: Record<string, number> };
}

let dep: DepStandin;
let repo: FleetRepo;
let server: TestServer;

const profileDoc = `apiVersion: orchard/v1
kind: EnrollmentProfile
metadata:
  name: staff
spec:
  is_supervised: true
  assign:
    all: true
`;

beforeAll(async () => {
  dep = await new DepStandin({ credentials: creds }).start();
  for (const s of ['ERRMAC000001', 'ERRMAC000002', 'ERRMAC000003']) dep.add({ serial_number: s, model: 'MacBook Air', device_family: 'Mac' });
  repo = new FleetRepo();
  repo.write('abm/staff.yaml', profileDoc).commit('enrollment profile');
  server = await startAbmServer(repo, dep, creds);
  await server.abm.runOnce();
});
afterAll(async () => {
  await server?.stop();
  await dep?.stop();
  repo?.cleanup();
});

async function get<T>(path: string): Promise<T> {
  const r = await http(`${server.url}${path}`, { headers: { authorization: `Bearer ${server.readToken}` } });
  expect(r.status, r.text).toBe(200);
  return r.json() as T;
}

async function cliStatus(): Promise<{ code: number; stdout: string }> {
  try {
    const r = await exec(process.execPath, [CLI, 'status', '--server', server.url], { env: { ...process.env, ORCHARD_READ_TOKEN: server.readToken } });
    return { code: 0, stdout: r.stdout };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout + e.stderr };
  }
}

async function metric(kind: string): Promise<number | undefined> {
  const r = await http(`${server.url}/metrics`, { headers: { authorization: `Bearer ${server.readToken}` } });
  const m = new RegExp(`orchard_abm_conditions\\{kind="${kind}"\\} (\\d+)`).exec(r.text);
  return m ? Number(m[1]) : undefined;
}

const serials = async () => (await get<{ devices: { serialNumber: string }[] }>('/api/v1/abm/devices')).devices.map((d) => d.serialNumber);
const warned = (kind: string) => server.logs.filter((l) => l.level === 40 && l.condition === kind);

/** Surfaced everywhere an admin looks, with the words that say what to do. */
async function expectSurfaced(kind: string, advice: RegExp): Promise<Condition> {
  const s = await get<Status>('/api/v1/status');
  const c = s.abm.conditions.find((x) => x.kind === kind);
  expect(c, JSON.stringify(s.abm.conditions)).toBeDefined();
  expect(c!.message).toMatch(advice);
  expect(warned(kind).length).toBeGreaterThan(0);
  expect(warned(kind)[0]!.msg).toMatch(advice);
  expect(await metric(kind)).toBe(1);
  const cli = await cliStatus();
  expect(cli.code).toBe(1);
  expect(cli.stdout).toContain('APPLE BUSINESS MANAGER');
  expect(cli.stdout).toMatch(new RegExp(`acme +${kind} `));
  expect(cli.stdout).toMatch(advice);
  expect(JSON.stringify(s)).not.toContain(creds.accessSecret);
  expect(JSON.stringify(server.logs)).not.toContain(creds.consumerSecret);
  return c!;
}

async function expectCleared(kind: string): Promise<void> {
  await server.abm.runOnce();
  const s = await get<Status>('/api/v1/status');
  expect(s.abm.conditions.map((c) => c.kind)).not.toContain(kind);
  expect(await metric(kind)).toBeUndefined();
}

describe('ABM errors admins hit', () => {
  it('terms not accepted: 403 T_C_NOT_SIGNED on /session; surfaced, the last good inventory kept, cleared once accepted', async () => {
    expect(await serials()).toEqual(['ERRMAC000001', 'ERRMAC000002', 'ERRMAC000003']);
    expect((await cliStatus()).stdout).toMatch(/ABM devices +3: 0 enrolled, 3 not enrolled yet/);
    dep.termsSigned = false;
    dep.expireSessions();
    dep.remove('ERRMAC000003');
    await server.abm.runOnce();
    expect(dep.requests.at(-1)).toEqual({ method: 'GET', path: '/session', status: 403 });
    await expectSurfaced('terms_not_signed', /accept/);
    expect(await serials()).toEqual(['ERRMAC000001', 'ERRMAC000002', 'ERRMAC000003']);
    expect((await cliStatus()).stdout).toMatch(/ABM token acme +expires \S+ \(\d+ days\), last sync FAILED/);

    dep.termsSigned = true;
    await expectCleared('terms_not_signed');
    expect(await serials()).toEqual(['ERRMAC000001', 'ERRMAC000002']);
  });

  it('a token revoked in ABM: sessions refused with 401; surfaced with how to renew it, inventory kept', async () => {
    dep.revoked = true;
    dep.add({ serial_number: 'ERRMAC000004', model: 'MacBook Air', device_family: 'Mac' });
    await server.abm.runOnce();
    expect(dep.requests.slice(-2).map((r) => `${r.path} ${r.status}`)).toEqual(['/devices/sync 401', '/session 401']);
    await expectSurfaced('token_rejected', /orchard abm token import/);
    expect(await serials()).toEqual(['ERRMAC000001', 'ERRMAC000002']);
    dep.revoked = false;
    await expectCleared('token_rejected');
    expect(await serials()).toEqual(['ERRMAC000001', 'ERRMAC000002', 'ERRMAC000004']);
  });

  it('a token past its expiry: expired in the status and rejected by ABM, both with what to do', async () => {
    const expiry = new Date(Date.now() - DAY);
    dep.tokenExpiry = expiry;
    importAbmToken(server.cfg.dataDir, 'acme', expiry, creds);
    dep.expireSessions();
    await server.abm.runOnce();
    await expectSurfaced('token_expired', /expired on .*orchard abm token import/);
    await expectSurfaced('token_rejected', /expired, revoked or replaced/);
    const s = await get<Status>('/api/v1/status');
    expect(s.abm.tokens).toEqual([expect.objectContaining({ name: 'acme', expired: true, lastError: expect.objectContaining({ reason: 'token_rejected' }) })]);
    expect((await cliStatus()).stdout).toMatch(/ABM token acme +EXPIRED/);

    // Renewed: a new token with a later expiry.
    const renewed = new Date(Date.now() + 300 * DAY);
    dep.tokenExpiry = renewed;
    importAbmToken(server.cfg.dataDir, 'acme', renewed, creds);
    await expectCleared('token_expired');
    await expectCleared('token_rejected');
  });

  it('serials ABM will not assign to this server: NOT_ACCESSIBLE and FAILED name the serials', async () => {
    const [uuid] = [...dep.profiles.keys()];
    expect(dep.devices.get('ERRMAC000001')).toMatchObject({ profile_uuid: uuid, profile_status: 'assigned' });
    dep.add({ serial_number: 'ERRMAC000005', model: 'MacBook Air', device_family: 'Mac' });
    dep.add({ serial_number: 'ERRMAC000006', model: 'MacBook Air', device_family: 'Mac' });
    dep.inaccessible.add('ERRMAC000005');
    dep.failing.add('ERRMAC000006');
    await server.abm.runOnce();
    const refused = await expectSurfaced('not_accessible', /not assigned to this MDM server/);
    expect(refused.serials).toEqual(['ERRMAC000005']);
    const s = await get<Status>('/api/v1/status');
    expect(s.abm.conditions.find((c) => c.kind === 'bad_request')).toMatchObject({ serials: ['ERRMAC000006'], message: expect.stringMatching(/failed for 1/) });
    expect((await cliStatus()).stdout).toMatch(/not_accessible .*ERRMAC000005/);
    // Still listed by ABM and kept in the inventory; assigned once ABM lets it.
    expect(await serials()).toContain('ERRMAC000005');
    dep.inaccessible.clear();
    dep.failing.clear();
    await expectCleared('not_accessible');
    expect(dep.devices.get('ERRMAC000005')).toMatchObject({ profile_uuid: uuid, profile_status: 'assigned' });
  });
});
