/**
 * The HTML status page against a real server following a real git repository with simulated devices
 * (one refuses its passcode profile, one has `<script>` in its name): plain HTTP for login, cookies,
 * escaping and headers, then a real headless Chromium (Debian's `chromium`, driven by playwright-core)
 * logging in through the form, reading the overview and the failed device's page, and taking a screenshot.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium } from 'playwright-core';
import { html, escapeHtml, StatusSessions, SECURITY_HEADERS, SESSION_COOKIE } from '../../src/http/status-page.js';
import type { SimulatedDevice } from '../../src/sim/device.js';
import type { FleetRepo } from '../gitops/helpers.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { startFailingFleet, type FailingFleet } from './fleet.js';

const ADMIN = 'status-admin-token-0123456789';
const READ = 'status-read-token-9876543210';
const EVIL = '<script>alert("x")</script> & Co';
const CHROMIUM = '/usr/bin/chromium';

let repo: FleetRepo;
let server: TestServer;
let macs: SimulatedDevice[];
let goodSha: string;

async function request(path: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}) {
  const res = await fetch(`${server.url}${path}`, { redirect: 'manual', ...init });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

async function login(token: string) {
  return request('/status/login', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token }).toString(),
  });
}

/** The session cookie `name=value` from a login answer. */
function sessionCookie(setCookie: string | null): string {
  expect(setCookie).toBeTruthy();
  return setCookie!.split(';')[0]!;
}

let fleet: FailingFleet;
beforeAll(async () => {
  // The server mounts the status page itself, with the tokens it is started with.
  fleet = await startFailingFleet({
    server: { adminToken: ADMIN, readToken: READ },
    mac: (i) => (i === 1 ? { deviceName: EVIL } : {}),
  });
  ({ repo, server, macs, goodSha } = fleet);
});
afterAll(async () => {
  await fleet?.stop();
});

describe('html escaping', () => {
  it('escapes every interpolated value, keeps nested html, drops null/undefined/false', () => {
    expect(escapeHtml(`<a href="x">'&'</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
    const inner = html`<b>${'<i>'}</b>`;
    expect(html`<p title="${'"onmouseover="x'}">${inner}${[1, '<', inner]}${undefined}${null}${false}${0}</p>`.value).toBe(
      '<p title="&quot;onmouseover=&quot;x"><b>&lt;i&gt;</b>1&lt;<b>&lt;i&gt;</b>0</p>',
    );
  });
});

describe('sessions', () => {
  it('are random server-side ids that do not contain the token, expire, and end on revoke or a restart', () => {
    const s = new StatusSessions({ adminToken: ADMIN, readToken: READ });
    const v = s.issue('read', 1_000);
    expect(v).toMatch(/^v2\.[A-Za-z0-9_-]{43}$/);
    expect(v).not.toContain(READ);
    expect(s.verify(v, 2_000)).toBe('read');
    expect(s.verify(v, 1_000 + 13 * 3600_000)).toBeUndefined();
    expect(s.verify(`${v.slice(0, -2)}AA`, 2_000)).toBeUndefined();
    expect(s.issue('admin', 1_000)).not.toBe(s.issue('admin', 1_000));
    // A new process (a restart, e.g. with a rotated token) knows no session of the old one.
    expect(new StatusSessions({ adminToken: ADMIN, readToken: READ }).verify(v, 2_000)).toBeUndefined();
    s.revoke(v);
    expect(s.verify(v, 2_000)).toBeUndefined();
    expect(s.roleOf(ADMIN)).toBe('admin');
    expect(s.roleOf(READ)).toBe('read');
    expect(s.roleOf('nope')).toBeUndefined();
    expect(() => new StatusSessions({ readToken: READ }).issue('admin')).toThrow(/no admin token/);
  });

  it('are bounded: past the limit the oldest ends', () => {
    const s = new StatusSessions({ readToken: READ }, 3600_000, 3);
    const [a, b, c, d] = [1, 2, 3, 4].map((t) => s.issue('read', t));
    expect(s.size).toBe(3);
    expect([a, b, c, d].map((v) => s.verify(v, 10))).toEqual([undefined, 'read', 'read', 'read']);
  });
});

describe('GET /status over plain HTTP', () => {
  it('without a session shows the login form, with the security headers', async () => {
    const res = await request('/status');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/html');
    expect(res.headers.get('content-security-policy')).toContain("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'");
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    expect(res.text).toContain('<form method="post" action="/status/login">');
    expect(res.text).toMatch(/<label for="token">[^<]+<\/label>\s*<input id="token" name="token" type="password"/);
    expect(res.text).not.toContain('MAC002');
    const detail = await request(`/status/devices/${macs[2]!.udid}`);
    expect(detail.status).toBe(401);
    expect(detail.text).not.toContain('Passcode policy refused');
  });

  it('refuses a wrong token with 403 and the form, and no cookie', async () => {
    const res = await login('wrong-token');
    expect(res.status).toBe(403);
    expect(res.text).toContain('That token is not valid.');
    expect(res.text).toContain('action="/status/login"');
    expect(res.headers.get('set-cookie')).toBeNull();
    expect((await login('')).status).toBe(403);
    const json = await request('/status/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: READ }) });
    expect(json.status).toBe(415);
  });

  it('the read token signs in: an HttpOnly SameSite=Strict cookie without the token, 303 to /status', async () => {
    const res = await login(READ);
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/status');
    const setCookie = res.headers.get('set-cookie')!;
    expect(setCookie).toMatch(new RegExp(`^${SESSION_COOKIE}=v2\\.`));
    expect(setCookie).toContain('HttpOnly');
    expect(setCookie).toContain('SameSite=Strict');
    expect(setCookie).toContain('Path=/status');
    expect(setCookie).not.toContain(READ);
    expect(setCookie).not.toContain(encodeURIComponent(READ));
    expect((await login(ADMIN)).headers.get('set-cookie')).not.toContain(ADMIN);

    const cookie = sessionCookie(setCookie);
    const page = await request('/status', { headers: { cookie } });
    expect(page.status).toBe(200);
    expect(page.text).toContain('<main>');
    expect(page.text).toContain(goodSha.slice(0, 12));
    expect(page.text).toMatch(/<td class="n" data-state="failed">1<\/td>/);
    expect(page.text).toMatch(/<td class="n" data-state="in-sync">2<\/td>/);
    expect(page.text).toMatch(/<caption>[^<]+<\/caption>/);
    expect(page.text).toContain('<th scope="col">');
    expect(page.text).not.toContain('<script');
    expect(page.text).not.toContain(READ);
    // A forged or altered cookie is not a session.
    expect((await request('/status', { headers: { cookie: `${cookie.slice(0, -3)}xyz` } })).text).toContain('action="/status/login"');

    const out = await request('/status/logout', { method: 'POST', headers: { cookie } });
    expect(out.status).toBe(303);
    expect(out.headers.get('set-cookie')).toMatch(new RegExp(`^${SESSION_COOKIE}=; Max-Age=0`));
  });

  it('signing out ends the session for every copy of the cookie', async () => {
    const cookie = sessionCookie((await login(READ)).headers.get('set-cookie'));
    const copy = cookie;
    expect((await request('/status', { headers: { cookie } })).text).toContain('<main>\n<h1>Fleet status');
    expect((await request('/status/logout', { method: 'POST', headers: { cookie } })).status).toBe(303);
    expect((await request('/status', { headers: { cookie: copy } })).text).toContain('action="/status/login"');
    const detail = await request(`/status/devices/${macs[2]!.udid}`, { headers: { cookie: copy } });
    expect(detail.status).toBe(401);
    expect(detail.text).not.toContain('Passcode policy refused');
    // Signing in again replaces (and ends) the session the browser still had.
    const first = sessionCookie((await login(READ)).headers.get('set-cookie'));
    const second = await request('/status/login', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: first },
      body: new URLSearchParams({ token: READ }).toString(),
    });
    expect(second.status).toBe(303);
    expect((await request('/status', { headers: { cookie: first } })).text).toContain('action="/status/login"');
    expect((await request('/status', { headers: { cookie: sessionCookie(second.headers.get('set-cookie')) } })).text).toContain('Fleet status');
  });

  it('refuses cross-site sign-in and sign-out (login CSRF) with 403; same-origin posts pass', async () => {
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    const body = new URLSearchParams({ token: READ }).toString();
    for (const h of <Record<string, string>[]>[
      { 'sec-fetch-site': 'cross-site' },
      { 'sec-fetch-site': 'same-site' },
      { origin: 'https://evil.example' },
      { origin: 'null' },
      { origin: `${server.url.replace('127.0.0.1', 'localhost')}` },
    ]) {
      const res = await request('/status/login', { method: 'POST', headers: { ...form, ...h }, body });
      expect(res.status, JSON.stringify(h)).toBe(403);
      expect(res.headers.get('set-cookie'), JSON.stringify(h)).toBeNull();
      expect(res.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    }
    expect(
      (await request('/status/login', { method: 'POST', headers: { ...form, 'sec-fetch-site': 'same-origin', origin: 'https://evil.example' }, body })).status,
    ).toBe(303);
    expect((await request('/status/login', { method: 'POST', headers: { ...form, origin: server.url }, body })).status).toBe(303);
    const cookie = sessionCookie((await login(READ)).headers.get('set-cookie'));
    const forced = await request('/status/logout', { method: 'POST', headers: { cookie, 'sec-fetch-site': 'cross-site' } });
    expect(forced.status).toBe(403);
    expect((await request('/status', { headers: { cookie } })).text).toContain('Fleet status');
  });

  it('every answer of the status page carries the security headers', async () => {
    const cookie = sessionCookie((await login(READ)).headers.get('set-cookie'));
    const answers = [
      await request('/status'),
      await request('/status', { headers: { cookie } }),
      await request('/status?state=bogus', { headers: { cookie } }),
      await request('/status/devices/NOPE', { headers: { cookie } }),
      await request('/status/devices/NOPE'),
      await login('wrong'),
      await request('/status/login', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' }),
      await request('/status/logout', { method: 'POST' }),
    ];
    expect(answers.map((a) => a.status)).toEqual([200, 200, 400, 404, 401, 403, 415, 303]);
    for (const a of answers) {
      for (const [k, v] of Object.entries(SECURITY_HEADERS)) expect(a.headers.get(k), `${a.status} ${k}`).toBe(v);
    }
  });

  it('finds a device by serial number too', async () => {
    const cookie = sessionCookie((await login(READ)).headers.get('set-cookie'));
    const page = await request('/status/devices/MAC002', { headers: { cookie } });
    expect(page.status).toBe(200);
    expect(page.text).toContain('Passcode policy refused');
  });

  it('escapes a device name containing <script> in the list and on its page', async () => {
    const cookie = sessionCookie((await login(READ)).headers.get('set-cookie'));
    const escaped = escapeHtml(EVIL);
    expect(escaped).toBe('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co');
    const list = await request('/status', { headers: { cookie } });
    expect(list.text).toContain(escaped);
    expect(list.text).not.toContain('<script');
    const page = await request(`/status/devices/${macs[1]!.udid}`, { headers: { cookie } });
    expect(page.status).toBe(200);
    expect(page.text).toContain(`<h1>${escaped}`);
    expect(page.text).not.toContain('<script');
  });

  it('filters the device list by state and blueprint; bad filters are answered', async () => {
    const cookie = sessionCookie((await login(READ)).headers.get('set-cookie'));
    const rows = (t: string) => [...t.matchAll(/<tr data-device="([^"]+)">/g)].map((m) => m[1]);
    expect(rows((await request('/status?state=failed', { headers: { cookie } })).text)).toEqual([macs[2]!.udid]);
    expect(rows((await request('/status?state=in-sync', { headers: { cookie } })).text).sort()).toEqual([macs[0]!.udid, macs[1]!.udid].sort());
    expect(rows((await request('/status?blueprint=macs', { headers: { cookie } })).text)).toHaveLength(3);
    expect(rows((await request('/status?state=stale', { headers: { cookie } })).text)).toHaveLength(0);
    // The select form submits empty values for "any".
    expect(rows((await request('/status?state=&blueprint=', { headers: { cookie } })).text)).toHaveLength(3);
    expect((await request('/status?state=bogus', { headers: { cookie } })).status).toBe(400);
    expect((await request('/status?blueprint=nope', { headers: { cookie } })).status).toBe(404);
    expect((await request('/status/devices/NOPE', { headers: { cookie } })).status).toBe(404);
  });

  it('the device page shows the failed profile with its ErrorChain and the commands', async () => {
    const cookie = sessionCookie((await login(READ)).headers.get('set-cookie'));
    const page = await request(`/status/devices/${encodeURIComponent(macs[2]!.udid)}`, { headers: { cookie } });
    expect(page.status).toBe(200);
    expect(page.text).toContain('com.example.passcode');
    expect(page.text).toContain('Passcode policy refused');
    expect(page.text).toContain('<code>MCProfileErrorDomain 4001</code>');
    expect(page.text).toContain('InstallProfile');
    expect(page.text).toContain('MAC002');
  });

  it('shows a rejected revision with its errors', async () => {
    const cookie = sessionCookie((await login(READ)).headers.get('set-cookie'));
    const bad = repo
      .write('blueprints/broken.yaml', 'apiVersion: orchard/v1\nkind: Blueprint\nmetadata: {name: broken}\nspec:\n  profiles: [nope]\n')
      .commit('broken');
    await server.source!.sync('test');
    try {
      const page = await request('/status', { headers: { cookie } });
      expect(page.text).toContain('Rejected revision');
      expect(page.text).toContain(bad.slice(0, 12));
      expect(page.text).toContain('blueprints/broken.yaml:');
      expect(page.text).toContain(goodSha.slice(0, 12));
    } finally {
      repo.remove('blueprints/broken.yaml').commit('fixed');
      await server.source!.sync('test');
    }
  });
});

describe('a restart with a rotated token', () => {
  it('ends the sessions of the old process', async () => {
    const first = await startTestServer({}, { adminToken: 'admin-before', readToken: 'read-before' });
    const dataDir = join(first.dir, 'data');
    let second: TestServer | undefined;
    try {
      const res = await fetch(`${first.url}/status/login`, {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'token=read-before',
      });
      const cookie = sessionCookie(res.headers.get('set-cookie'));
      expect(await (await fetch(`${first.url}/status`, { headers: { cookie } })).text()).toContain('Fleet status');
      await first.close();
      second = await startTestServer({ dataDir }, { adminToken: 'admin-after', readToken: 'read-after' });
      expect(await (await fetch(`${second.url}/status`, { headers: { cookie } })).text()).toContain('action="/status/login"');
    } finally {
      await second?.stop();
      rmSync(first.dir, { recursive: true, force: true });
    }
  });
});

describe('in a real headless Chromium', () => {
  it('logs in through the form, shows the failed device and its error, and takes a screenshot', async () => {
    // Installed by .ci/run from .ci/apt-packages; missing it is a failure, not a skip.
    expect(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium`).toBe(true);
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
    const dir = mkdtempSync(join(tmpdir(), 'orchard-shot-'));
    try {
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      const page = await context.newPage();
      const urls: string[] = [];
      page.on('request', (r) => urls.push(r.url()));
      page.on('framenavigated', (f) => urls.push(f.url()));
      const consoleErrors: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error') consoleErrors.push(m.text());
      });

      await page.goto(`${server.url}/status`);
      await page.getByLabel('API token (read or admin)').fill(READ);
      await Promise.all([page.waitForURL(`${server.url}/status`), page.getByRole('button', { name: 'Sign in' }).click()]);

      await expect.poll(() => page.locator('h1').textContent()).toBe('Fleet status');
      expect(await page.locator('td[data-state="failed"]').textContent()).toBe('1');
      expect(await page.locator('main').count()).toBe(1);
      // The <script> device name is shown as text, not run.
      expect(await page.getByRole('link', { name: EVIL }).count()).toBe(1);

      // Filter by the select form (a GET form, no JavaScript), then open the failed device.
      await page.getByLabel('State', { exact: true }).selectOption('failed');
      await Promise.all([page.waitForURL(/state=failed/), page.getByRole('button', { name: 'Filter' }).click()]);
      const rows = page.locator('tr[data-device]');
      expect(await rows.count()).toBe(1);
      await Promise.all([page.waitForURL(/\/status\/devices\//), rows.first().getByRole('link').click()]);
      const main = page.locator('main');
      await expect.poll(() => main.textContent()).toContain('Passcode policy refused');
      expect(await main.textContent()).toContain('MCProfileErrorDomain 4001');
      expect(await page.locator('h1').textContent()).toContain('failed');

      const shot = join(dir, 'status.png');
      await page.screenshot({ path: shot, fullPage: true });
      const png = readFileSync(shot);
      expect(png.length).toBeGreaterThan(1000);
      expect(png.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))).toBe(true);

      expect(urls.length).toBeGreaterThan(3);
      for (const u of urls) {
        expect(u).not.toContain(READ);
        expect(decodeURIComponent(u)).not.toContain(READ);
      }
      const cookies = await context.cookies();
      const session = cookies.find((c) => c.name === SESSION_COOKIE);
      expect(session).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/status' });
      expect(session!.value).not.toContain(READ);
      expect(consoleErrors).toEqual([]);

      // Signing out ends the session.
      await Promise.all([page.waitForURL(`${server.url}/status`), page.getByRole('button', { name: 'Sign out' }).click()]);
      expect(await page.getByLabel('API token (read or admin)').count()).toBe(1);
      await context.close();
    } finally {
      await browser.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
