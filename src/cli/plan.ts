/**
 * `orchard plan`: what merging a change would do, to enrolled devices and in Apple Business
 * Manager (src/plan/abm.ts). Exit codes: 0 no changes, 2 changes, 1 errors
 * (an invalid repository, an unreadable inventory, or a profile that cannot be rendered for a
 * device: everything that would make the apply fail).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Malformed } from '../errors.js';
import { loadFleet } from '../gitops/load.js';
import type { Diagnostic, Fleet } from '../gitops/model.js';
import type { AbmInventoryDevice } from '../abm/service.js';
import { abmChanges, planAbm } from '../plan/abm.js';
import { markdownPlan, textPlan } from '../plan/format.js';
import { planAgainstInventory, planBetween, type InventoryDevice, type Plan } from '../reconcile/plan.js';

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

class PlanFailure extends Malformed {}

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

interface Inventory {
  devices: InventoryDevice[];
  /** ABM's devices (enrolled or not yet), when the inventory has them. */
  abm?: AbmInventoryDevice[];
  /** The revision the server applied (--server), the base of the ABM part when there is no --base. */
  applied?: string;
}

async function getJson(opts: PlanOptions, path: string, allow404 = false): Promise<unknown> {
  const url = new URL(path, opts.server);
  let res: Response;
  try {
    res = await fetch(url, { headers: opts.token ? { authorization: `Bearer ${opts.token}` } : {} });
  } catch (err) {
    throw new PlanFailure(`cannot reach ${url.origin}: ${(err as Error).message}`);
  }
  if (res.status === 404 && allow404) return undefined;
  if (!res.ok) throw new PlanFailure(`${url} answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
  return res.json();
}

/** Every page of the server's ABM device list. */
async function serverAbmDevices(opts: PlanOptions): Promise<AbmInventoryDevice[]> {
  const out: AbmInventoryDevice[] = [];
  for (let cursor: string | undefined, first = true; first || cursor; first = false) {
    const page = (await getJson(opts, `/api/v1/abm/devices?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)) as {
      devices?: AbmInventoryDevice[];
      nextCursor?: string;
    };
    out.push(...(page.devices ?? []));
    cursor = page.nextCursor;
  }
  return out;
}

function checkedAbm(list: unknown, where: string): AbmInventoryDevice[] {
  if (!Array.isArray(list)) throw new PlanFailure(`${where}: "abm.devices" is not an array (expected the JSON of GET /api/v1/abm/devices)`);
  return list.map((d, i) => {
    if (!d || typeof (d as AbmInventoryDevice).serialNumber !== 'string') throw new PlanFailure(`${where}: ABM device #${i} has no serialNumber`);
    return d as AbmInventoryDevice;
  });
}

async function readInventory(opts: PlanOptions): Promise<Inventory> {
  let json: unknown;
  let abm: AbmInventoryDevice[] | undefined;
  let applied: string | undefined;
  if (opts.inventory) {
    try {
      json = JSON.parse(readFileSync(opts.inventory, 'utf8'));
    } catch (err) {
      throw new PlanFailure(`cannot read inventory ${opts.inventory}: ${(err as Error).message}`);
    }
    // The ABM device list may sit beside the devices: { "devices": [...], "abm": <GET /api/v1/abm/devices> }.
    const a = (json as { abm?: { devices?: unknown } }).abm;
    if (a !== undefined) abm = checkedAbm(a?.devices, opts.inventory);
  } else if (opts.server) {
    json = await getJson(opts, '/api/v1/devices');
    abm = await serverAbmDevices(opts);
    applied = ((await getJson(opts, '/api/v1/status')) as { applied?: { commit?: string } }).applied?.commit;
  } else {
    throw new PlanFailure('give --inventory FILE or --server URL');
  }
  const devices = (json as { devices?: unknown }).devices;
  if (!Array.isArray(devices)) throw new PlanFailure('inventory has no "devices" array (expected the JSON of GET /api/v1/devices)');
  return {
    devices: devices.map((d, i) => {
      const x = d as InventoryDevice;
      if (!x || typeof x.id !== 'string' || typeof x.facts !== 'object') throw new PlanFailure(`inventory device #${i} has no id or facts`);
      return { ...x, reported: x.reported ?? {} };
    }),
    ...(abm ? { abm } : {}),
    ...(applied ? { applied } : {}),
  };
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

/** Distinct installed revisions read at most; a fleet mid-rollout has a few. */
const MAX_REVISIONS = 5;

/**
 * The revisions the inventory's devices have installed, loaded from the local repository where it
 * has them: an update's diff is then against what the device really has. Revisions the repository
 * does not have (a shallow clone, a local directory) just leave those diffs out.
 */
async function installedRevisions(root: string, inventory: InventoryDevice[]): Promise<Map<string, Fleet>> {
  const counts = new Map<string, number>();
  for (const d of inventory)
    for (const a of d.profiles ?? []) if (/^[0-9a-f]{40,64}$/.test(a.revision)) counts.set(a.revision, (counts.get(a.revision) ?? 0) + 1);
  const fleets = new Map<string, Fleet>();
  const wanted = [...counts].sort((a, b) => b[1] - a[1]).slice(0, MAX_REVISIONS);
  for (const [rev] of wanted) {
    const fleet = await fleetAt(root, rev);
    if (fleet) fleets.set(rev, fleet);
  }
  return fleets;
}

/** The fleet of a commit, when the local repository has it (a shallow clone may not) and it loads. */
async function fleetAt(root: string, commit: string | undefined): Promise<Fleet | undefined> {
  if (!commit || !/^[0-9a-f]{40,64}$/.test(commit)) return undefined;
  try {
    execFileSync('git', ['-C', root, 'cat-file', '-e', `${commit}^{commit}`], { stdio: 'ignore' });
  } catch {
    return undefined;
  }
  const co = checkoutRevision(root, commit);
  try {
    return (await loadFleet(co.dir)).fleet;
  } finally {
    co.cleanup();
  }
}

export async function runPlan(opts: PlanOptions): Promise<PlanOutput> {
  try {
    const root = resolve(opts.path);
    const head = await loadOrFail(root, opts.path);
    const { devices: inventory, abm, applied } = await readInventory(opts);
    let plan: Plan;
    let base: Fleet | undefined;
    if (opts.base) {
      const co = checkoutRevision(root, opts.base);
      try {
        base = await loadOrFail(co.dir, `revision ${opts.base}`);
      } finally {
        co.cleanup();
      }
      plan = planBetween(base, head, inventory);
    } else {
      const revisions = await installedRevisions(root, inventory);
      plan = planAgainstInventory(head, inventory, (rev) => revisions.get(rev));
    }
    if (abm) plan.abm = planAbm(head, base ?? (await fleetAt(root, applied)), abm);
    const format = { maxDevices: opts.maxDevices, base: opts.base };
    const stdout =
      opts.format === 'json' ? `${JSON.stringify(plan, null, 2)}\n` : opts.format === 'markdown' ? markdownPlan(plan, format) : textPlan(plan, format);
    return { exitCode: plan.errors.length ? 1 : plan.changes.length || abmChanges(plan.abm) ? 2 : 0, stdout };
  } catch (err) {
    if (err instanceof PlanFailure) return { exitCode: 1, stdout: `orchard plan: ${err.message}\n` };
    throw err;
  }
}
