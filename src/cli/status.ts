/**
 * `orchard status`: where the fleet stands, read from a running server's admin API (the read token
 * suffices). Formats: a table for the terminal, markdown for a pull request or a ticket, JSON.
 *
 * Exit codes: 0 all well; 1 something needs attention (a failed or drifted device, a rejected
 * revision, an expired push certificate, an ABM problem other than a token expiring soon; for one
 * device: it is failed or drifted); 2 the server could not be asked (unreachable, refused, unknown
 * device).
 */
import { Unavailable } from '../errors.js';

export interface StatusOptions {
  server: string;
  token?: string;
  /** One device's report instead of the fleet's: its UDID, serial number or enrollment id (the server resolves it). */
  device?: string;
  format: 'table' | 'json' | 'markdown';
  /** How many failed/drifted devices to list (default 50). */
  limit?: number;
}

export interface StatusOutput {
  exitCode: number;
  stdout: string;
  stderr?: string;
}

/** The server could not be asked, or refused (exit 2). */
class StatusFailure extends Unavailable {}

/* eslint-disable @typescript-eslint/no-explicit-any */
type Json = any;

async function api(opts: StatusOptions, path: string, allow404 = false): Promise<Json | undefined> {
  const url = new URL(path, opts.server.endsWith('/') ? opts.server : `${opts.server}/`);
  let res: Response;
  try {
    res = await fetch(url, { headers: opts.token ? { authorization: `Bearer ${opts.token}` } : {} });
  } catch (err) {
    throw new StatusFailure(`cannot reach ${url.origin}: ${(err as Error).message}`);
  }
  if (res.status === 404 && allow404) return undefined;
  const text = await res.text();
  if (!res.ok) {
    let msg = text.slice(0, 200);
    try {
      msg = (JSON.parse(text) as { error?: string }).error ?? msg;
    } catch {
      /* not JSON */
    }
    throw new StatusFailure(`${url.pathname} answered ${res.status}: ${msg}`);
  }
  return JSON.parse(text) as Json;
}

export async function runStatus(opts: StatusOptions): Promise<StatusOutput> {
  try {
    if (opts.device) {
      const d = await api(opts, `api/v1/report/devices/${encodeURIComponent(opts.device)}`);
      const exitCode = d.state === 'failed' || d.state === 'drifted' ? 1 : 0;
      if (opts.format === 'json') return { exitCode, stdout: `${JSON.stringify(d, null, 2)}\n` };
      return { exitCode, stdout: renderDevice(d, opts.format === 'markdown') };
    }
    const limit = opts.limit ?? 50;
    const status = await api(opts, 'api/v1/status');
    const blueprints = (await api(opts, 'api/v1/blueprints', true))?.blueprints ?? [];
    const failed = await api(opts, `api/v1/report/devices?state=failed&limit=${limit}`);
    const drifted = await api(opts, `api/v1/report/devices?state=drifted&limit=${limit}`);
    const report = { status, blueprints, failed, drifted };
    // A token that only expires soon is a warning (as a push certificate that does); every other ABM condition needs an admin.
    const abmAttention = (status.abm?.conditions ?? []).some((c: Json) => c.kind !== 'token_expiring');
    const attention = failed.total > 0 || drifted.total > 0 || status.latestRejected || status.push?.expired === true || abmAttention;
    const exitCode = attention ? 1 : 0;
    if (opts.format === 'json') return { exitCode, stdout: `${JSON.stringify(report, null, 2)}\n` };
    return { exitCode, stdout: renderFleet(report, opts.format === 'markdown') };
  } catch (err) {
    if (err instanceof StatusFailure) return { exitCode: 2, stdout: '', stderr: `orchard status: ${err.message}\n` };
    throw err;
  }
}

// ---------------------------------------------------------------- rendering

function short(commit: string | null | undefined, hash?: string): string {
  return commit ? commit.slice(0, 12) : hash ? `content ${hash.slice(0, 12)}` : '-';
}

/** Aligned columns for the terminal, a pipe table for markdown. */
export function table(headers: string[], rows: (string | number | undefined)[][], markdown: boolean): string {
  const cells = rows.map((r) => r.map((c) => (c === undefined || c === '' ? '-' : String(c))));
  if (markdown) {
    const esc = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
    return [`| ${headers.join(' | ')} |`, `|${headers.map(() => '---').join('|')}|`, ...cells.map((r) => `| ${r.map(esc).join(' | ')} |`)].join('\n') + '\n';
  }
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i]!.length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...cells.map(line)].join('\n') + '\n';
}

function heading(text: string, md: boolean, level = 2): string {
  return md ? `${'#'.repeat(level)} ${text}\n\n` : `${text.toUpperCase()}\n`;
}

function problemText(p: { identifier: string; phase: string; message?: string }): string {
  return `${p.identifier}: ${p.phase}${p.message ? ` (${p.message})` : ''}`;
}

function renderFleet(r: { status: Json; blueprints: Json[]; failed: Json; drifted: Json }, md: boolean): string {
  const s = r.status;
  const out: string[] = [];
  const kv: [string, string][] = [];
  if (s.source) kv.push(['Repository', `${s.source.repo}${s.source.branch ? ` (${s.source.branch})` : ''}`]);
  if (s.applied) {
    kv.push([
      'Applied revision',
      `${short(s.applied.commit, s.applied.contentHash)}${s.applied.message ? ` "${s.applied.message.split('\n')[0]}"` : ''}${s.applied.author ? ` by ${s.applied.author}` : ''}${s.applied.time ? ` at ${s.applied.time}` : ''}`,
    ]);
  } else {
    kv.push(['Applied revision', 'none']);
  }
  if (s.latestRejected && s.latest) kv.push(['Latest revision', `${short(s.latest.commit, s.latest.contentHash)} REJECTED: ${s.latest.errorCount} error(s)`]);
  if (s.source?.lastError) kv.push(['Fetch error', `${s.source.lastError.message} (${s.source.lastError.at})`]);
  const by = s.devices.byState;
  kv.push([
    'Devices',
    `${s.devices.total} total: ${by['in-sync']} in sync, ${by.pending} pending, ${by.drifted} drifted, ${by.failed} failed, ${by.unenrolled} unenrolled; ${s.devices.stale} not seen for ${s.devices.staleDays} days`,
  ]);
  if (s.push?.notAfter)
    kv.push([
      'Push certificate',
      `${s.push.expired ? 'EXPIRED' : 'expires'} ${s.push.notAfter.slice(0, 10)} (${s.push.daysLeft} days)${s.push.warning ? `: ${s.push.warning}` : ''}`,
    ]);
  if (s.push?.problem) kv.push(['Push problem', s.push.problem]);
  for (const t of s.abm?.tokens ?? []) {
    const sync = t.lastError ? `last sync FAILED at ${t.lastError.at}` : t.lastSyncAt ? `last sync ${t.lastSyncAt}` : 'not synced yet';
    kv.push([`ABM token ${t.name}`, `${t.expired ? 'EXPIRED' : 'expires'} ${String(t.expiresAt).slice(0, 10)} (${t.daysLeft} days), ${sync}`]);
  }
  if (s.abm?.devices)
    kv.push(['ABM devices', `${s.abm.devices.total}: ${s.abm.devices.enrolled} enrolled, ${s.abm.devices.awaitingEnrollment} not enrolled yet`]);

  if (md) {
    const bad = by.failed + by.drifted;
    out.push(`## Orchard fleet status ${bad > 0 || s.latestRejected ? '⚠️' : '✅'}\n\n`);
    out.push(kv.map(([k, v]) => `- **${k}:** ${v}`).join('\n') + '\n\n');
  } else {
    const w = Math.max(...kv.map(([k]) => k.length));
    out.push(kv.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n') + '\n\n');
  }
  if (s.latestRejected && s.latest?.errors?.length) {
    out.push(heading('Validation errors of the latest revision', md, 3));
    out.push(
      table(
        ['File', 'Line', 'Message'],
        s.latest.errors.map((e: Json) => [e.file, `${e.line}:${e.col}`, e.message]),
        md,
      ) + '\n',
    );
  }
  if (s.abm?.conditions?.length) {
    out.push(heading('Apple Business Manager', md, 3));
    out.push(
      table(
        ['Token', 'Problem', 'Since', 'What to do', 'Serials'],
        s.abm.conditions.map((c: Json) => [c.token, c.kind, c.since, c.message, abmSerials(c.serials)]),
        md,
      ) + '\n',
    );
  }
  if (r.blueprints.length > 0) {
    out.push(heading('Blueprints', md, 3));
    const rows: (string | number)[][] = [];
    for (const b of r.blueprints) {
      const name = `${b.name}${b.suspended ? ' (suspended)' : ''}${b.rolloutPercent !== undefined ? ` (${b.rolloutPercent}%)` : ''}`;
      if (b.profiles.length === 0) rows.push([name, b.selected, '-', '-', '-', '-']);
      for (const p of b.profiles) rows.push([name, b.selected, p.profile, p.verified, p.pending, p.failed]);
    }
    out.push(table(['Blueprint', 'Devices', 'Profile', 'Verified', 'Pending', 'Failed'], rows, md) + '\n');
  }
  for (const [title, page] of [
    ['Failed devices', r.failed],
    ['Drifted devices', r.drifted],
  ] as const) {
    if (page.total === 0) continue;
    out.push(heading(`${title} (${page.total})`, md, 3));
    out.push(
      table(
        ['Serial', 'Device', 'Model', 'Last seen', 'Problem'],
        page.devices.map((d: Json) => [d.serialNumber, d.id, d.model, d.lastSeenAt, d.problems.map(problemText).join('; ')]),
        md,
      ),
    );
    if (page.nextCursor) out.push(`${md ? '\n_' : ''}... and ${page.total - page.devices.length} more${md ? '_' : ''}\n`);
    out.push('\n');
  }
  return out.join('').replace(/\n+$/, '\n');
}

/** The serials an ABM condition concerns, the first few of them. */
function abmSerials(serials: string[] | undefined): string | undefined {
  if (!serials?.length) return undefined;
  return serials.length > 10 ? `${serials.slice(0, 10).join(', ')} and ${serials.length - 10} more` : serials.join(', ');
}

function renderDevice(d: Json, md: boolean): string {
  const out: string[] = [];
  const kv: [string, string | undefined][] = [
    ['Device', d.id],
    ['Serial', d.serialNumber],
    ['Name', d.deviceName],
    ['Model', d.model],
    ['OS', d.osVersion],
    ['Enrolled', d.enrolled ? `yes${d.enrolledAt ? ` (since ${d.enrolledAt})` : ''}` : `no${d.checkedOutAt ? ` (checked out ${d.checkedOutAt})` : ''}`],
    ['Last seen', `${d.lastSeenAt ?? 'never'}${d.stale ? ' (stale)' : ''}`],
    ['State', d.state],
    ['Blueprints', d.blueprints.join(', ') || 'none'],
    ['Revision', short(d.revision)],
  ];
  if (md) {
    out.push(`## Device ${d.serialNumber ?? d.id}: ${d.state}\n\n`);
    out.push(kv.map(([k, v]) => `- **${k}:** ${v ?? '-'}`).join('\n') + '\n\n');
  } else {
    const w = Math.max(...kv.map(([k]) => k.length));
    out.push(kv.map(([k, v]) => `${k.padEnd(w)}  ${v ?? '-'}`).join('\n') + '\n\n');
  }
  out.push(heading('Profiles', md, 3));
  out.push(
    table(
      ['Identifier', 'Phase', 'Revision', 'Attempts', 'Last error'],
      d.profileStatus.map((p: Json) => [
        `${p.identifier}${p.desired ? '' : ' (not desired)'}`,
        p.phase,
        short(p.revision),
        p.attempts,
        p.lastError ? errorText(p.lastError) : p.renderError,
      ]),
      md,
    ) + '\n',
  );
  out.push(heading('Recent commands', md, 3));
  out.push(
    table(
      ['Command', 'Type', 'Status', 'Queued', 'Error'],
      d.recentCommands.map((c: Json) => [
        c.commandUUID,
        c.requestType,
        c.status,
        c.enqueuedAt,
        c.errorChain?.map((e: Json) => `${e.ErrorDomain} ${e.ErrorCode}: ${e.LocalizedDescription ?? e.USEnglishDescription ?? ''}`.trim()).join('; '),
      ]),
      md,
    ),
  );
  return out.join('');
}

/** The reconciler's message, with the ErrorChain codes when the message does not carry them already. */
function errorText(e: { message: string; errorChain?: { ErrorDomain: string; ErrorCode: number }[] }): string {
  const codes = (e.errorChain ?? []).map((c) => `${c.ErrorDomain} ${c.ErrorCode}`).filter((c) => !e.message.includes(c));
  return codes.length ? `${e.message} [${codes.join(', ')}]` : e.message;
}
