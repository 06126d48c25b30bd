/**
 * `orchard plan`: what merging a change would do. Exit codes: 0 no changes, 2 changes, 1 errors
 * (an invalid repository, an unreadable inventory, or a profile that cannot be rendered for a
 * device: everything that would make the apply fail).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadFleet } from '../gitops/load.js';
import type { Diagnostic, Fleet } from '../gitops/model.js';
import { planAgainstInventory, planBetween, type InventoryDevice, type Plan, type PlannedChange } from '../reconcile/plan.js';

export interface PlanOptions {
  path: string;
  inventory?: string;
  server?: string;
  token?: string;
  base?: string;
  format: 'text' | 'markdown' | 'json';
  /** Devices listed per line before "and N more". */
  maxDevices?: number;
}

export interface PlanOutput {
  exitCode: 0 | 1 | 2;
  stdout: string;
}

class PlanFailure extends Error {}

async function loadOrFail(dir: string, label: string): Promise<Fleet> {
  const r = await loadFleet(dir);
  if (!r.fleet) {
    const lines = r.diagnostics
      .filter((d: Diagnostic) => d.severity === 'error')
      .slice(0, 20)
      .map((d) => `  ${d.file}:${d.line}:${d.col}: ${d.message}`);
    throw new PlanFailure(`${label} is invalid:\n${lines.join('\n')}`);
  }
  return r.fleet;
}

async function readInventory(opts: PlanOptions): Promise<InventoryDevice[]> {
  let json: unknown;
  if (opts.inventory) {
    try {
      json = JSON.parse(readFileSync(opts.inventory, 'utf8'));
    } catch (err) {
      throw new PlanFailure(`cannot read inventory ${opts.inventory}: ${(err as Error).message}`);
    }
  } else if (opts.server) {
    const url = new URL('/api/v1/devices', opts.server);
    let res: Response;
    try {
      res = await fetch(url, { headers: opts.token ? { authorization: `Bearer ${opts.token}` } : {} });
    } catch (err) {
      throw new PlanFailure(`cannot reach ${url.origin}: ${(err as Error).message}`);
    }
    if (!res.ok) throw new PlanFailure(`${url} answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
    json = await res.json();
  } else {
    throw new PlanFailure('give --inventory FILE or --server URL');
  }
  const devices = (json as { devices?: unknown }).devices;
  if (!Array.isArray(devices)) throw new PlanFailure('inventory has no "devices" array (expected the JSON of GET /api/v1/devices)');
  return devices.map((d, i) => {
    const x = d as InventoryDevice;
    if (!x || typeof x.id !== 'string' || typeof x.facts !== 'object') throw new PlanFailure(`inventory device #${i} has no id or facts`);
    return { ...x, reported: x.reported ?? {} };
  });
}

/** The repository at PATH as of REV, extracted to a temp dir (PATH may be a folder inside the repo). */
function checkoutRevision(path: string, rev: string): { dir: string; cleanup: () => void } {
  const tmp = mkdtempSync(join(tmpdir(), 'orchard-plan-'));
  try {
    const prefix = execFileSync('git', ['-C', path, 'rev-parse', '--show-prefix'], { encoding: 'utf8' }).trim();
    const tar = join(tmp, 'base.tar');
    const tree = prefix ? `${rev}:${prefix.replace(/\/$/, '')}` : `${rev}:`;
    execFileSync('git', ['-C', path, 'archive', '--format=tar', '-o', tar, tree], { stdio: ['ignore', 'ignore', 'pipe'] });
    execFileSync('tar', ['-xf', tar, '-C', tmp]);
    rmSync(tar);
    return { dir: tmp, cleanup: () => rmSync(tmp, { recursive: true, force: true }) };
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    const msg = (err as { stderr?: Buffer }).stderr?.toString().trim() || (err as Error).message;
    throw new PlanFailure(`cannot read revision ${rev} of ${path}: ${msg}`);
  }
}

export async function runPlan(opts: PlanOptions): Promise<PlanOutput> {
  try {
    const root = resolve(opts.path);
    const head = await loadOrFail(root, opts.path);
    const inventory = await readInventory(opts);
    let plan: Plan;
    if (opts.base) {
      const base = checkoutRevision(root, opts.base);
      try {
        plan = planBetween(await loadOrFail(base.dir, `revision ${opts.base}`), head, inventory);
      } finally {
        base.cleanup();
      }
    } else {
      plan = planAgainstInventory(head, inventory);
    }
    const stdout = opts.format === 'json' ? `${JSON.stringify(plan, null, 2)}\n` : opts.format === 'markdown' ? markdown(plan, opts) : text(plan, opts);
    return { exitCode: plan.errors.length ? 1 : plan.changes.length ? 2 : 0, stdout };
  } catch (err) {
    if (err instanceof PlanFailure) return { exitCode: 1, stdout: `orchard plan: ${err.message}\n` };
    throw err;
  }
}

interface Group {
  blueprints: string;
  profile: string;
  identifier: string;
  byKind: Map<PlannedChange['kind'], string[]>;
}

function groups(plan: Plan): Group[] {
  const map = new Map<string, Group>();
  for (const c of plan.changes) {
    const key = `${c.blueprints.join(', ')}\0${c.profile}`;
    let g = map.get(key);
    if (!g) map.set(key, (g = { blueprints: c.blueprints.join(', '), profile: c.profile, identifier: c.identifier, byKind: new Map() }));
    const list = g.byKind.get(c.kind) ?? [];
    list.push(c.serial ?? c.device);
    g.byKind.set(c.kind, list);
  }
  return [...map.values()].sort((a, b) => a.blueprints.localeCompare(b.blueprints) || a.profile.localeCompare(b.profile));
}

const KINDS: PlannedChange['kind'][] = ['install', 'update', 'remove', 'unmanage'];

function devicesList(list: string[], max: number): string {
  const sorted = [...list].sort();
  return sorted.length > max ? `${sorted.slice(0, max).join(', ')} and ${sorted.length - max} more` : sorted.join(', ');
}

function summary(plan: Plan): string {
  const count = (k: PlannedChange['kind']) => plan.changes.filter((c) => c.kind === k).length;
  const devices = new Set(plan.changes.map((c) => c.device)).size;
  if (plan.changes.length === 0) return `No changes for ${plan.devices} device${plan.devices === 1 ? '' : 's'}.`;
  const parts = KINDS.map((k) => [k, count(k)] as const)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${n} ${k}${n === 1 ? '' : 's'}`);
  return `${parts.join(', ')} on ${devices} of ${plan.devices} devices.`;
}

function text(plan: Plan, opts: PlanOptions): string {
  const max = opts.maxDevices ?? 10;
  const out: string[] = [];
  for (const g of groups(plan)) {
    out.push(`blueprint ${g.blueprints} / profile ${g.profile} (${g.identifier})`);
    for (const k of KINDS) {
      const list = g.byKind.get(k);
      if (list) out.push(`  ${k.padEnd(8)} ${String(list.length).padStart(5)}  ${devicesList(list, max)}`);
    }
  }
  for (const e of plan.errors) out.push(`error: device ${e.serial ?? e.device}: ${e.message}`);
  out.push(summary(plan));
  return `${out.join('\n')}\n`;
}

function markdown(plan: Plan, opts: PlanOptions): string {
  const max = opts.maxDevices ?? 10;
  const out: string[] = [`### Orchard plan${opts.base ? ` (changes since \`${opts.base}\`)` : ''}`, '', `**${summary(plan)}**`, ''];
  const gs = groups(plan);
  if (gs.length) {
    out.push('| blueprint | profile | change | devices | which |', '|---|---|---|---:|---|');
    for (const g of gs) {
      for (const k of KINDS) {
        const list = g.byKind.get(k);
        if (list) out.push(`| ${g.blueprints} | \`${g.profile}\` | ${k} | ${list.length} | ${devicesList(list, max)} |`);
      }
    }
    out.push('');
  }
  if (plan.errors.length) {
    out.push('#### Errors (the apply would fail for these devices)', '');
    for (const e of plan.errors) out.push(`- \`${e.serial ?? e.device}\`: ${e.message}`);
    out.push('');
  }
  return `${out.join('\n')}\n`;
}
