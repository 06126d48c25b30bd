/**
 * The HTML status page: the same reports as /api/v1/status, /blueprints and /report/devices, server-rendered
 * for a browser. No JavaScript; every value is escaped by the `html` tagged template.
 *
 *   GET  /status                  without a session: a login form; with one: fleet overview, blueprints and the
 *                                 device list (?state=failed|pending|in-sync|drifted|unenrolled|stale, ?blueprint=NAME, ?page=N);
 *   POST /status/login            form field `token` (the read or admin token); sets the session cookie, 303 to /status;
 *   POST /status/logout           ends the session and clears its cookie, 303 to /status;
 *   GET  /status/devices/:id      one device (UDID, enrollment id or serial number): facts, each desired profile with phase and last error, recent commands.
 *
 * The token never appears in a URL or a cookie. A session is server-side: the cookie holds `v2.<id>`, a
 * random 256-bit id, and the server keeps a SHA-256 of each id with its role and expiry (in memory). So
 * signing out ends the session for every copy of the cookie, and a restart (e.g. with rotated tokens) ends
 * every session. The cookie is HttpOnly, SameSite=Strict, Path=/status (Secure over https) and lasts
 * SESSION_TTL_MS. Sign-in and sign-out refuse cross-site posts (Sec-Fetch-Site, else Origin) with 403.
 * Every route sets SECURITY_HEADERS itself (not a router.use() that another spelling could skip).
 */
import { convergenceChart, rolloutChart } from '../report/charts.js';
import type { ConvergenceView } from '../report/progress.js';
import type { RolloutView } from '../reconcile/rollout.js';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import Router from '@koa/router';
import type { Context, Middleware } from 'koa';
import getRawBody from 'raw-body';
import {
  DEVICE_STATES,
  DEFAULT_STALE_DAYS,
  blueprintReports,
  deviceDetail,
  rowSummary,
  type DeviceDetail,
  type DeviceState,
  type FleetSummary,
} from '../report/status.js';
import type { ErrorChainItem } from '../store/types.js';
import type { StatusDdm } from '../store/status.js';
import { deviceDeclarations, type DeviceDeclarations } from '../ddm/report.js';
import type { RouteDeps } from './deps.js';
import { ApiError, ROUTER_OPTIONS, findDevice } from './api.js';
import { fleetReport, reportContext } from './report-routes.js';
import { allPages } from '../store/paging.js';

export const SESSION_COOKIE = 'orchard_status';
export const SESSION_TTL_MS = 12 * 3600_000;
/** Live sessions kept at most; signing in beyond it ends the oldest. */
export const MAX_SESSIONS = 10_000;
/** Devices per page of the device list. */
export const PAGE_SIZE = 200;
const LOGIN_BODY_LIMIT = 8 * 1024;

export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy': "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'X-Frame-Options': 'DENY',
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
};

// ---------------------------------------------------------------- escaping

/** Markup that is already safe (made by `html`); anything else interpolated into `html` is escaped. */
export class Html {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}

function render(v: unknown): string {
  if (v instanceof Html) return v.value;
  if (v === undefined || v === null || v === false) return '';
  if (Array.isArray(v)) return v.map(render).join('');
  return escapeHtml(String(v));
}

/** Tagged template: interpolated values are escaped (arrays joined, Html kept, null/undefined/false empty). */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1]!;
  return new Html(out);
}

// ---------------------------------------------------------------- sessions

type Role = 'admin' | 'read';

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

interface Session {
  role: Role;
  expires: number;
}

export class StatusSessions {
  private readonly digests: [Role, Buffer][] = [];
  /** SHA-256 of the session id (base64url) -> its session; a dump of this map holds no usable cookie. */
  private readonly live = new Map<string, Session>();

  constructor(
    tokens: { adminToken?: string; readToken?: string },
    private readonly ttlMs = SESSION_TTL_MS,
    private readonly max = MAX_SESSIONS,
  ) {
    for (const [role, token] of [
      ['admin', tokens.adminToken],
      ['read', tokens.readToken],
    ] as const) {
      if (token) this.digests.push([role, digest(token)]);
    }
  }

  get enabled(): boolean {
    return this.digests.length > 0;
  }

  /** How many sessions are live (expired ones are dropped as they are met). */
  get size(): number {
    return this.live.size;
  }

  /** Which role a token has, compared in constant time (undefined: not a token). */
  roleOf(token: string): Role | undefined {
    const given = digest(token);
    let role: Role | undefined;
    for (const [r, d] of this.digests) if (timingSafeEqual(given, d) && !role) role = r;
    return role;
  }

  private static key(value: string | undefined): string | undefined {
    const m = value ? /^v2\.([A-Za-z0-9_-]{43})$/.exec(value) : null;
    return m ? digest(m[1]!).toString('base64url') : undefined;
  }

  /** A new session for `role`: the cookie value. */
  issue(role: Role, now = Date.now()): string {
    if (!this.digests.some(([r]) => r === role)) throw new Error(`no ${role} token: cannot issue a ${role} session`);
    for (const [k, s] of this.live) if (s.expires <= now) this.live.delete(k);
    while (this.live.size >= this.max) this.live.delete(this.live.keys().next().value!);
    const value = `v2.${randomBytes(32).toString('base64url')}`;
    this.live.set(StatusSessions.key(value)!, { role, expires: now + this.ttlMs });
    return value;
  }

  verify(value: string | undefined, now = Date.now()): Role | undefined {
    const k = StatusSessions.key(value);
    const s = k ? this.live.get(k) : undefined;
    if (!s) return undefined;
    if (s.expires <= now) {
      this.live.delete(k!);
      return undefined;
    }
    return s.role;
  }

  /** Ends the session (every copy of its cookie). */
  revoke(value: string | undefined): void {
    const k = StatusSessions.key(value);
    if (k) this.live.delete(k);
  }
}

// ---------------------------------------------------------------- page pieces

const STYLE = `
:root{color-scheme:light dark;--fg:#1b1b1b;--bg:#fff;--mut:#5a5a5a;--line:#d0d0d0;--bad:#a40000;--warn:#8a5a00;--ok:#1d6b1d;--acc:#0b5cad}
@media (prefers-color-scheme:dark){:root{--fg:#e8e8e8;--bg:#161616;--mut:#a8a8a8;--line:#3a3a3a;--bad:#ff8080;--warn:#f0c060;--ok:#7fd07f;--acc:#8cc4ff}}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg)}
header{display:flex;justify-content:space-between;align-items:center;gap:1rem;padding:.6rem 1.2rem;border-bottom:1px solid var(--line)}
header a{font-weight:600;text-decoration:none;color:var(--fg)}
main{padding:1rem 1.2rem;max-width:90rem}
h1{font-size:1.4rem;margin:.2rem 0 1rem}h2{font-size:1.15rem;margin:1.6rem 0 .6rem}
a{color:var(--acc)}
table{border-collapse:collapse;margin:.4rem 0 1rem;min-width:20rem}
caption{text-align:left;font-weight:600;padding:.3rem 0;color:var(--mut)}
th,td{border-bottom:1px solid var(--line);padding:.3rem .6rem;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.state{font-weight:600}.s-failed,.s-drifted,.bad{color:var(--bad)}.s-pending,.s-unenrolled,.warn{color:var(--warn)}.s-in-sync,.ok{color:var(--ok)}
.mut{color:var(--mut)}code{font-size:.92em}
ul.chain{margin:.2rem 0;padding-left:1.1rem}
nav.filters a{margin-right:.8rem}nav.filters a[aria-current]{font-weight:700;color:var(--fg)}
form.inline{display:flex;flex-wrap:wrap;gap:.6rem;align-items:end;margin:.6rem 0}
form.inline div{display:flex;flex-direction:column}form.inline label{font-size:.9rem}
input,select,button{font:inherit;padding:.25rem .4rem}
.alert{border:1px solid var(--bad);padding:.5rem .8rem;margin:.6rem 0}
.login{max-width:24rem}.login label{display:block;margin:.6rem 0 .2rem}.login input{width:100%}.login button{margin-top:.8rem}
`;

function layout(title: string, body: Html, signedIn: boolean): Html {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${title} · Orchard</title>
<style>${new Html(STYLE)}</style>
</head>
<body>
<header><a href="/status">Orchard status</a>${signedIn ? html`<form method="post" action="/status/logout"><button type="submit">Sign out</button></form>` : ''}</header>
<main>
${body}
</main>
</body>
</html>
`;
}

function loginPage(problem?: string): Html {
  return layout(
    'Sign in',
    html`<h1>Sign in</h1>
<div class="login">
${problem ? html`<p class="alert" role="alert">${problem}</p>` : ''}
<form method="post" action="/status/login">
<label for="token">API token (read or admin)</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button>
</form>
</div>`,
    false,
  );
}

function messagePage(title: string, message: string): Html {
  return layout(title, html`<h1>${title}</h1><p>${message}</p><p><a href="/status">Back to the overview</a></p>`, true);
}

function when(iso: string | undefined): Html | string {
  if (!iso) return html`<span class="mut">—</span>`;
  const t = Date.parse(iso);
  const text = Number.isNaN(t)
    ? iso
    : new Date(t)
        .toISOString()
        .replace('T', ' ')
        .replace(/\.\d{3}Z$/, 'Z');
  return html`<time datetime="${iso}">${text}</time>`;
}

function short(rev: string | null | undefined): string {
  return rev ? rev.slice(0, 12) : '';
}

function stateBadge(state: DeviceState): Html {
  return html`<span class="state s-${state}">${state}</span>`;
}

function deviceHref(id: string): string {
  return `/status/devices/${encodeURIComponent(id)}`;
}

function listHref(q: { state?: string; blueprint?: string; page?: number }): string {
  const p = new URLSearchParams();
  if (q.state) p.set('state', q.state);
  if (q.blueprint) p.set('blueprint', q.blueprint);
  if (q.page && q.page > 1) p.set('page', String(q.page));
  const s = p.toString();
  return s ? `/status?${s}#devices` : '/status#devices';
}

function errorChain(chain: ErrorChainItem[] | undefined): Html | string {
  if (!chain?.length) return '';
  return html`<ul class="chain">${chain.map((e) => html`<li><code>${e.ErrorDomain} ${e.ErrorCode}</code>${(e.LocalizedDescription ?? e.USEnglishDescription) ? html`: ${e.LocalizedDescription ?? e.USEnglishDescription}` : ''}</li>`)}</ul>`;
}

function overview(f: FleetSummary): Html {
  const rev = f.applied;
  const latest = f.latest;
  return html`<section aria-labelledby="h-overview">
<h2 id="h-overview">Fleet overview</h2>
<table>
<caption>Revision and source</caption>
<tbody>
<tr><th scope="row">Applied revision</th><td>${
    rev
      ? html`<code>${short(rev.commit) || rev.contentHash.slice(0, 12)}</code> ${rev.message ? html`“${rev.message.split('\n')[0]}”` : ''} <span class="mut">${rev.author ?? ''}${rev.time ? html`, ${when(rev.time)}` : ''}</span>`
      : html`<span class="warn">none applied yet</span>`
  }</td></tr>
${f.source ? html`<tr><th scope="row">Repository</th><td><code>${f.source.repo}</code>${f.source.branch ? html` (${f.source.branch})` : ''}, last fetch ${when(f.source.lastFetchAt)}</td></tr>` : ''}
${f.source?.lastError ? html`<tr><th scope="row">Fetch error</th><td class="bad">${f.source.lastError.message} <span class="mut">${when(f.source.lastError.at)}</span></td></tr>` : ''}
${
  f.latestRejected && latest
    ? html`<tr><th scope="row">Rejected revision</th><td class="bad"><code>${short(latest.commit) || latest.contentHash.slice(0, 12)}</code> ${latest.message ? html`“${latest.message.split('\n')[0]}”` : ''}: ${latest.errorCount} error${latest.errorCount === 1 ? '' : 's'}
<ul>${latest.errors.map((e) => html`<li><code>${e.file}:${e.line}:${e.col}</code> ${e.message} <span class="mut">[${e.rule}]</span></li>`)}</ul></td></tr>`
    : ''
}
${f.push ? html`<tr><th scope="row">Push certificate</th><td class="${f.push.expired || f.push.problem ? 'bad' : f.push.warning ? 'warn' : ''}">${f.push.topic ?? ''}${f.push.notAfter ? html`, expires ${when(f.push.notAfter)} (${f.push.daysLeft} days)` : ''}${f.push.problem ? html` — ${f.push.problem}` : ''}</td></tr>` : ''}
${(f.abm?.tokens ?? []).map((t) => html`<tr><th scope="row">ABM token <code>${t.name}</code></th><td class="${t.expired || t.lastError ? 'bad' : t.warning ? 'warn' : ''}">expires ${when(t.expiresAt)} (${t.daysLeft} days)${t.lastSyncAt ? html`, last sync ${when(t.lastSyncAt)}` : ''}</td></tr>`)}
${(f.abm?.conditions ?? []).map((c) => html`<tr><th scope="row">ABM <code>${c.token}</code></th><td class="bad">${c.message}${c.serials ? html` <span class="mut">(${c.serials.slice(0, 10).join(', ')}${c.serials.length > 10 ? ', …' : ''})</span>` : ''}</td></tr>`)}
</tbody>
</table>
<table>
<caption>Devices by state (${f.devices.total} devices, ${f.devices.enrolled} enrolled)</caption>
<thead><tr><th scope="col">State</th><th scope="col" class="n">Devices</th></tr></thead>
<tbody>
${DEVICE_STATES.map((s) => html`<tr><th scope="row"><a href="${listHref({ state: s })}">${stateBadge(s)}</a></th><td class="n" data-state="${s}">${f.devices.byState[s]}</td></tr>`)}
<tr><th scope="row"><a href="${listHref({ state: 'stale' })}">stale</a> <span class="mut">(not seen for ${f.devices.staleDays} days)</span></th><td class="n" data-state="stale">${f.devices.stale}</td></tr>
</tbody>
</table>
</section>`;
}

function blueprintsTable(bps: ReturnType<typeof blueprintReports>): Html {
  if (bps.length === 0)
    return html`<section aria-labelledby="h-bp"><h2 id="h-bp">Blueprints</h2><p class="mut">No blueprints in the applied revision.</p></section>`;
  return html`<section aria-labelledby="h-bp">
<h2 id="h-bp">Blueprints</h2>
<table>
<caption>Per blueprint: devices reached, and per profile and declaration how many devices have it verified, pending or failed (a software update: at the target)</caption>
<thead><tr><th scope="col">Blueprint</th><th scope="col" class="n">Devices (selected / matched)</th><th scope="col">Profile</th><th scope="col" class="n">Verified</th><th scope="col" class="n">Pending</th><th scope="col" class="n">Failed</th></tr></thead>
${bps.map((b) => {
  // Profiles, then declarations (DDM), then the software update target: one row each.
  const items: { label: Html | string; note: string; verified: number; pending: number; failed: number }[] = [
    ...b.profiles.map((p) => ({ label: p.profile, note: p.identifier, ...p })),
    ...b.declarations.map((d) => ({ label: html`declaration ${d.declaration}`, note: d.identifier, ...d })),
    ...(b.softwareUpdate
      ? [
          {
            label: html`software update to ${b.softwareUpdate.target}`,
            note: Object.entries(b.softwareUpdate.reasons)
              .map(([why, n]) => `${n} ${why}`)
              .join(', '),
            verified: b.softwareUpdate.atTarget,
            pending: b.softwareUpdate.pending,
            failed: b.softwareUpdate.failed,
          },
        ]
      : []),
  ];
  const rows = Math.max(1, items.length);
  const notes = [b.suspended ? 'suspended' : '', b.rolloutPercent !== undefined ? `rollout ${b.rolloutPercent}%` : ''].filter(Boolean).join(', ');
  const head = html`<th scope="rowgroup" rowspan="${rows}"><a href="${listHref({ blueprint: b.name })}">${b.name}</a>${notes ? html` <span class="warn">(${notes})</span>` : ''}<br><span class="mut">${b.file}</span></th>
<td class="n" rowspan="${rows}">${b.selected} / ${b.matched}</td>`;
  if (items.length === 0) return html`<tbody><tr>${head}<td colspan="4" class="mut">no profiles</td></tr></tbody>`;
  return html`<tbody>${items.map((p, i) => html`<tr>${i === 0 ? head : ''}<td>${p.label} <span class="mut">${p.note}</span></td><td class="n ok">${p.verified}</td><td class="n${p.pending ? ' warn' : ''}">${p.pending}</td><td class="n${p.failed ? ' bad' : ''}">${p.failed}</td></tr>`)}</tbody>`;
})}
</table>
</section>`;
}

interface ListQuery {
  state?: string;
  blueprint?: string;
  page: number;
}

/** `list`: the page `page` of the matching devices (filtered and paged in the store) and how many match. */
function deviceList(list: { total: number; rows: ReturnType<typeof rowSummary>[]; page: number }, q: ListQuery, blueprintNames: string[]): Html {
  const pages = Math.max(1, Math.ceil(list.total / PAGE_SIZE));
  const { page, rows } = list;
  const filters = ['all', ...DEVICE_STATES, 'stale'];
  const describe = [q.state ? `state ${q.state}` : '', q.blueprint ? `blueprint ${q.blueprint}` : ''].filter(Boolean).join(', ');
  return html`<section aria-labelledby="devices">
<h2 id="devices">Devices</h2>
<nav class="filters" aria-label="Filter devices by state">${filters.map((s) => {
    const state = s === 'all' ? undefined : s;
    const current = state === q.state;
    return html`<a href="${listHref({ state, blueprint: q.blueprint })}"${current ? html` aria-current="page"` : ''}>${s}</a>`;
  })}</nav>
<form class="inline" method="get" action="/status">
<div><label for="f-state">State</label>
<select id="f-state" name="state">
<option value="">any</option>
${[...DEVICE_STATES, 'stale'].map((s) => html`<option value="${s}"${s === q.state ? html` selected` : ''}>${s}</option>`)}
</select></div>
<div><label for="f-blueprint">Blueprint</label>
<select id="f-blueprint" name="blueprint">
<option value="">any</option>
${blueprintNames.map((b) => html`<option value="${b}"${b === q.blueprint ? html` selected` : ''}>${b}</option>`)}
</select></div>
<button type="submit">Filter</button>
</form>
<table>
<caption>${list.total} device${list.total === 1 ? '' : 's'}${describe ? html` with ${describe}` : ''}${pages > 1 ? html`, page ${page} of ${pages}` : ''}</caption>
<thead><tr><th scope="col">Device</th><th scope="col">Serial</th><th scope="col">Model</th><th scope="col">OS</th><th scope="col">State</th><th scope="col" class="n">Profiles (verified / pending / failed)</th><th scope="col" class="n">Declarations (verified / pending / failed)</th><th scope="col">Last seen</th><th scope="col">Blueprints</th></tr></thead>
<tbody>
${rows.length === 0 ? html`<tr><td colspan="9" class="mut">No devices match.</td></tr>` : ''}
${rows.map((s) => html`<tr data-device="${s.id}"><th scope="row"><a href="${deviceHref(s.id)}">${s.deviceName ?? s.serialNumber ?? s.id}</a></th><td>${s.serialNumber ?? ''}</td><td>${s.model ?? s.productName ?? ''}</td><td>${s.osVersion ?? ''}</td><td>${stateBadge(s.state)}${s.stale ? html` <span class="warn">stale</span>` : ''}</td><td class="n">${s.profiles.verified} / ${s.profiles.pending} / ${s.profiles.failed}</td><td class="n">${ddmCell(s.ddm)}</td><td>${when(s.lastSeenAt)}</td><td>${s.blueprints.join(', ')}</td></tr>`)}
</tbody>
</table>
${pages > 1 ? html`<nav aria-label="Pages">${page > 1 ? html`<a href="${listHref({ ...q, page: page - 1 })}">Previous</a> ` : ''}${page < pages ? html`<a href="${listHref({ ...q, page: page + 1 })}">Next</a>` : ''}</nav>` : ''}
</section>`;
}

/** A device's declarations in the list: counts, its software update, or that its OS has no DDM. */
function ddmCell(d: StatusDdm | undefined): Html | string {
  if (!d) return '';
  if (d.unsupported) return html`<span class="warn" title="${d.unsupported}">no DDM</span>`;
  const su = d.softwareUpdate;
  const update = su?.target
    ? html`<br><span class="${su.phase === 'failed' ? 'bad' : su.phase === 'at-target' ? 'ok' : 'warn'}">update ${su.target}: ${su.phase ?? ''}${su.failureReason ? ` (${su.failureReason})` : ''}</span>`
    : '';
  return html`${d.declarations.verified} / ${d.declarations.pending} / ${d.declarations.failed}${update}`;
}

/** The device page's declarations: each one's phase and Apple's reasons, the software update status, or why there are none. */
function declarationsSection(v: DeviceDeclarations): Html {
  const su = Object.entries(v.softwareUpdate ?? {});
  return html`<h2 id="h-declarations">Declarations</h2>
${v.unsupported ? html`<p class="warn">${v.unsupported}</p>` : ''}
<table aria-labelledby="h-declarations">
<thead><tr><th scope="col">Declaration</th><th scope="col">Channel</th><th scope="col">Phase</th><th scope="col">Reasons</th></tr></thead>
<tbody>
${v.declarations.length === 0 ? html`<tr><td colspan="4" class="mut">No declarations.</td></tr>` : ''}
${v.declarations.map((d) => html`<tr><th scope="row">${d.declaration}<br><span class="mut">${d.identifier} (${d.type})</span></th><td>${d.channel}</td><td class="${d.phase === 'failed' ? 'bad' : d.phase === 'verified' ? 'ok' : 'warn'}">${d.phase}</td><td>${(d.reasons ?? []).map((r) => html`<code>${r.code}</code> ${r.description ?? r.meaning ?? ''}<br>`)}</td></tr>`)}
</tbody>
</table>
${su.length ? html`<table><caption>Software update (reported over DDM${v.statusAt ? html`, ${when(v.statusAt)}` : ''})</caption><tbody>${su.map(([k, val]) => html`<tr><th scope="row">${k}</th><td><code>${JSON.stringify(val)}</code></td></tr>`)}</tbody></table>` : ''}`;
}

function devicePage(d: DeviceDetail, ddm?: DeviceDeclarations): Html {
  const name = d.deviceName ?? d.serialNumber ?? d.id;
  const facts = Object.entries(d.facts).filter(([, v]) => v !== undefined && v !== '');
  return layout(
    name,
    html`<p><a href="/status">← Overview</a></p>
<h1>${name} ${stateBadge(d.state)}${d.stale ? html` <span class="warn">stale</span>` : ''}</h1>
<table>
<caption>Device</caption>
<tbody>
<tr><th scope="row">ID</th><td><code>${d.id}</code></td></tr>
<tr><th scope="row">Enrolled</th><td>${d.enrolled ? 'yes' : html`<span class="warn">no</span>`}${d.enrolledAt ? html`, since ${when(d.enrolledAt)}` : ''}${d.checkedOutAt ? html`, checked out ${when(d.checkedOutAt)}` : ''}</td></tr>
<tr><th scope="row">Last seen</th><td>${when(d.lastSeenAt)}</td></tr>
<tr><th scope="row">Blueprints</th><td>${d.blueprints.length ? d.blueprints.join(', ') : html`<span class="mut">none</span>`}</td></tr>
<tr><th scope="row">Revision reconciled</th><td><code>${short(d.revision)}</code></td></tr>
</tbody>
</table>
<table>
<caption>Facts</caption>
<tbody>${facts.map(([k, v]) => html`<tr><th scope="row">${k}</th><td>${String(v)}</td></tr>`)}</tbody>
</table>
<h2 id="h-profiles">Profiles</h2>
<table aria-labelledby="h-profiles">
<caption>${d.profiles.total} desired: ${d.profiles.verified} verified, ${d.profiles.pending} pending, ${d.profiles.failed} failed</caption>
<thead><tr><th scope="col">Profile</th><th scope="col">Phase</th><th scope="col">Revision</th><th scope="col" class="n">Attempts</th><th scope="col" class="n">Drift</th><th scope="col">Updated</th><th scope="col">Last error</th></tr></thead>
<tbody>
${d.profileStatus.length === 0 ? html`<tr><td colspan="7" class="mut">No profiles.</td></tr>` : ''}
${d.profileStatus.map((p) => html`<tr><th scope="row">${p.profile}<br><span class="mut">${p.identifier}</span>${p.desired ? '' : html` <span class="mut">(not desired)</span>`}</th><td class="${p.phase === 'failed' ? 'bad' : p.phase === 'verified' ? 'ok' : 'warn'}">${p.phase}</td><td><code>${short(p.revision)}</code></td><td class="n">${p.attempts}</td><td class="n">${p.drift}</td><td>${when(p.verifiedAt ?? p.updatedAt)}${p.retryAt ? html`<br><span class="mut">retry ${when(p.retryAt)}</span>` : ''}</td><td>${p.renderError ? html`<span class="bad">cannot render: ${p.renderError}</span>` : ''}${p.lastError ? html`<span class="bad">${p.lastError.message}</span> <span class="mut">${when(p.lastError.at)}</span>${errorChain(p.lastError.errorChain)}` : ''}</td></tr>`)}
</tbody>
</table>
${ddm && (ddm.unsupported || ddm.declarations.length) ? declarationsSection(ddm) : ''}
<h2 id="h-commands">Recent commands</h2>
<table aria-labelledby="h-commands">
<caption>Newest first (at most 20)</caption>
<thead><tr><th scope="col">Command</th><th scope="col">Status</th><th scope="col">Queued</th><th scope="col">Updated</th><th scope="col" class="n">NotNow</th><th scope="col">Errors</th></tr></thead>
<tbody>
${d.recentCommands.length === 0 ? html`<tr><td colspan="6" class="mut">No commands.</td></tr>` : ''}
${d.recentCommands.map((c) => html`<tr><th scope="row">${c.requestType}<br><span class="mut"><code>${c.commandUUID}</code></span></th><td class="${c.status === 'Error' ? 'bad' : ''}">${c.status}</td><td>${when(c.enqueuedAt)}</td><td>${when(c.updatedAt)}</td><td class="n">${c.notNowCount}</td><td>${errorChain(c.errorChain)}</td></tr>`)}
</tbody>
</table>`,
    true,
  );
}

// ---------------------------------------------------------------- routes

function one(v: string | string[] | undefined): string | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  return s === '' ? undefined : s;
}

function send(ctx: Context, status: number, page: Html): void {
  ctx.status = status;
  ctx.type = 'text/html; charset=utf-8';
  ctx.body = page.value;
}

function cookieAttrs(ctx: Context): string {
  return `HttpOnly; SameSite=Strict; Path=/status${ctx.protocol === 'https' ? '; Secure' : ''}`;
}

/** Sets the security headers on whatever this route answers, errors included. */
const secure: Middleware = async (ctx, next) => {
  ctx.set(SECURITY_HEADERS as Record<string, string>);
  await next();
};

/**
 * Whether a state-changing post comes from another site (login CSRF, forced sign-out). Browsers send
 * Sec-Fetch-Site; older ones at least Origin, compared with our own host and the public URL. A
 * request with neither is not from a browser (curl, scripts) and has nothing to forge.
 */
function crossSite(ctx: Context, publicUrl: string | undefined): boolean {
  const site = ctx.get('sec-fetch-site').toLowerCase();
  if (site) return site !== 'same-origin' && site !== 'none';
  const origin = ctx.get('origin');
  if (!origin) return false;
  let host: string;
  try {
    host = new URL(origin).host;
  } catch {
    return true; // "null" (sandboxed frames, privacy redirects) or garbage
  }
  let publicHost: string | undefined;
  try {
    publicHost = publicUrl ? new URL(publicUrl).host : undefined;
  } catch {
    /* not a URL: only the Host header counts */
  }
  // The host alone: behind a TLS proxy the scheme we see is http while the browser's is https.
  return host !== ctx.host && host !== publicHost;
}

/** What the status page draws (src/report/charts.ts): the applied revision's convergence, each staged rollout. */
export interface StatusPictures {
  convergence?: ConvergenceView;
  rollouts: RolloutView[];
}

function pictures(p: StatusPictures | undefined): Html | string {
  if (!p || (!p.convergence && p.rollouts.length === 0)) return '';
  return html`<section aria-labelledby="h-progress">
<h2 id="h-progress">Rollout progress</h2>
${p.convergence ? html`<figure>${new Html(convergenceChart(p.convergence))}<figcaption class="mut">Devices of revision <code>${short(p.convergence.revision)}</code> over the time since it was applied</figcaption></figure>` : ''}
${p.rollouts.map((r) => html`<figure data-rollout="${r.blueprint}">${new Html(rolloutChart(r))}<figcaption>Staged rollout of <b>${r.blueprint}</b>${r.halted ? html` <span class="bad">halted: ${r.halted.reason}</span>` : ''}</figcaption></figure>`)}
</section>`;
}

export function statusPageRoutes(deps: RouteDeps): Router {
  const getContext = deps.reports;
  const getPictures = (): StatusPictures => ({ convergence: deps.convergence.view(), rollouts: deps.rollouts?.views() ?? [] });
  const sessions = new StatusSessions({ adminToken: deps.adminToken, readToken: deps.readToken });
  {
    const router = new Router(ROUTER_OPTIONS);

    const session = (ctx: Context): boolean => sessions.verify(ctx.cookies.get(SESSION_COOKIE)) !== undefined;
    const disabled = (ctx: Context): boolean => {
      if (sessions.enabled) return false;
      send(ctx, 403, layout('Disabled', html`<h1>Status page disabled</h1><p>Set ORCHARD_API_TOKEN (and optionally ORCHARD_READ_TOKEN) to use it.</p>`, false));
      return true;
    };
    const sameSite = (ctx: Context): boolean => {
      if (!crossSite(ctx, deps.cfg.publicUrl)) return true;
      if (ctx.state.log) ctx.state.log.reason = 'status page: cross-site post refused';
      send(ctx, 403, loginPage('Sign in from this site’s own form.'));
      return false;
    };

    router.post('/status/login', secure, async (ctx) => {
      if (disabled(ctx) || !sameSite(ctx)) return;
      const type = (ctx.get('content-type').split(';')[0] ?? '').trim().toLowerCase();
      if (type !== 'application/x-www-form-urlencoded') return send(ctx, 415, loginPage('Sign in with the form.'));
      let raw: string;
      try {
        raw = (await getRawBody(ctx.req, { limit: LOGIN_BODY_LIMIT, length: ctx.get('content-length') || undefined })).toString('utf8');
      } catch {
        return send(ctx, 400, loginPage('Could not read the form.'));
      }
      const token = new URLSearchParams(raw).get('token')?.trim() ?? '';
      const role = token ? sessions.roleOf(token) : undefined;
      if (!role) {
        if (ctx.state.log) ctx.state.log.reason = 'status page: invalid token';
        return send(ctx, 403, loginPage('That token is not valid.'));
      }
      // A session cookie the browser already had is replaced, and ended (no fixation, no leftovers).
      sessions.revoke(ctx.cookies.get(SESSION_COOKIE));
      ctx.set('Set-Cookie', `${SESSION_COOKIE}=${sessions.issue(role)}; Max-Age=${Math.floor(SESSION_TTL_MS / 1000)}; ${cookieAttrs(ctx)}`);
      ctx.status = 303;
      ctx.redirect('/status');
    });

    router.post('/status/logout', secure, (ctx) => {
      if (!sameSite(ctx)) return;
      sessions.revoke(ctx.cookies.get(SESSION_COOKIE));
      ctx.set('Set-Cookie', `${SESSION_COOKIE}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; ${cookieAttrs(ctx)}`);
      ctx.status = 303;
      ctx.redirect('/status');
    });

    router.get('/status', secure, async (ctx) => {
      if (disabled(ctx)) return;
      if (!session(ctx)) return send(ctx, 200, loginPage());
      const state = one(ctx.query.state);
      if (state !== undefined && state !== 'stale' && !DEVICE_STATES.includes(state as DeviceState)) {
        return send(ctx, 400, messagePage('Bad filter', `state must be one of ${[...DEVICE_STATES, 'stale'].join(', ')}`));
      }
      const pageQ = one(ctx.query.page);
      const page = pageQ === undefined ? 1 : Number(pageQ);
      if (!Number.isInteger(page) || page < 1) return send(ctx, 400, messagePage('Bad page', 'page must be a positive integer'));
      const rc = reportContext(getContext());
      const blueprint = one(ctx.query.blueprint);
      if (blueprint !== undefined && !rc.fleet?.blueprints.has(blueprint)) return send(ctx, 404, messagePage('No such blueprint', `no blueprint ${blueprint}`));
      const bps = rc.fleet ? blueprintReports(await deps.store.blueprintCounts([...rc.fleet.blueprints.keys()]), rc.fleet) : [];
      const fleet = await fleetReport(deps.store, rc);
      const listQuery = {
        state: state as DeviceState | 'stale' | undefined,
        blueprint,
        now: rc.now ?? new Date(),
        staleDays: rc.staleDays ?? DEFAULT_STALE_DAYS,
      };
      // A page past the end shows the last one.
      let list = await deps.store.queryStatus({ ...listQuery, offset: (page - 1) * PAGE_SIZE, limit: PAGE_SIZE });
      let shown = page;
      if (list.devices.length === 0 && page > 1) {
        shown = Math.max(1, Math.ceil(list.total / PAGE_SIZE));
        list = await deps.store.queryStatus({ ...listQuery, offset: (shown - 1) * PAGE_SIZE, limit: PAGE_SIZE });
      }
      const rows = list.devices.map((r) => rowSummary(r, rc));
      send(
        ctx,
        200,
        layout(
          'Fleet status',
          html`<h1>Fleet status</h1>
${overview(fleet)}
${pictures(getPictures?.())}
${blueprintsTable(bps)}
${deviceList(
  { total: list.total, rows, page: shown },
  { state, blueprint, page },
  bps.map((b) => b.name),
)}`,
          true,
        ),
      );
    });

    router.get('/status/devices/:id', secure, async (ctx) => {
      if (disabled(ctx)) return;
      if (!session(ctx)) return send(ctx, 401, loginPage('Sign in to see this device.'));
      let d;
      try {
        d = await findDevice(deps.store, ctx.params.id!);
      } catch (err) {
        if (err instanceof ApiError) return send(ctx, err.status, messagePage('No such device', err.message));
        throw err;
      }
      const rc = reportContext(getContext());
      const enrollments = await deps.store.listEnrollments(d.id);
      const snap = { devices: [d], enrollments: new Map([[d.id, enrollments]]), artifacts: new Map() };
      const arts = await deps.store.getArtifacts(d.id);
      if (arts) snap.artifacts.set(d.id, arts);
      const ddm = await deviceDeclarations(deps.ddmStore, enrollments);
      send(ctx, 200, devicePage(deviceDetail(snap, d, await allPages((p) => deps.store.listCommands(d.id, p)), rc), ddm));
    });

    return router;
  }
}
