/**
 * Reconciler at fleet scale: N devices (default 100,000) in a real store (LevelDB or PostgreSQL, bench/backend.ts), a fleet of 30
 * profiles across 10 blueprints. Measures (1) a full `plan` of the fleet, (2) the reconcile after
 * a commit that changes one profile used by half the fleet (compile + diff + enqueue into
 * LevelDB), (3) peak RSS of this process.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadFleet } from '../src/gitops/load.js';
import { MdmService } from '../src/mdm/service.js';
import { desiredFor } from '../src/reconcile/desired.js';
import { planAgainstInventory, type InventoryDevice } from '../src/reconcile/plan.js';
import { Reconciler } from '../src/reconcile/reconciler.js';
import type { RenderedProfile } from '../src/reconcile/render.js';
import type { Pusher } from '../src/push/push.js';
import { openBackend } from '../src/store/open.js';
import { benchBackend, parseBackend, type BenchBackendKind } from './backend.js';
import { seedEnrolled, seedEnrolledPg } from './seed.js';
import { PgStore } from '../src/store/postgres.js';
import type { DeviceFacts } from '../src/store/types.js';
import { allPages } from '../src/store/paging.js';

const PAYLOADS = [
  (i: number, v: number) => `    - type: com.apple.mobiledevice.passwordpolicy\n      keys: {minLength: ${6 + ((i + v) % 8)}, requireAlphanumeric: true}\n`,
  (i: number) => `    - type: com.apple.security.firewall\n      keys: {EnableFirewall: true, EnableStealthMode: ${i % 2 === 0}}\n`,
  (i: number) => `    - type: com.apple.applicationaccess\n      keys: {allowAirDrop: ${i % 2 === 0}, allowCamera: true}\n`,
];

/** 30 profiles, 10 blueprints of 3 profiles; blueprint 0 selects every Mac, the others a tag each. Profile p0 (blueprint 0) changes with `version`. */
function writeFleet(dir: string, version: number): void {
  mkdirSync(dir, { recursive: true });
  const docs: string[] = [];
  for (let i = 0; i < 30; i++) {
    const serialVar = i === 29 ? `\n    - type: com.apple.wifi.managed\n      keys: {SSID_STR: "dev-\${device.SerialNumber}", AutoJoin: true}\n` : '';
    docs.push(
      `apiVersion: orchard/v1\nkind: Profile\nmetadata: {name: p${i}}\nspec:\n  identifier: com.example.bench.p${i}\n  displayName: P${i}\n  payloads:\n${PAYLOADS[i % 3]!(i, i === 0 ? version : 0)}${serialVar}`,
    );
  }
  for (let b = 0; b < 10; b++) {
    const selector = b === 0 ? '    platforms: [macOS]\n    tags: [half]' : `    tags: [team-${b}]`;
    docs.push(
      `apiVersion: orchard/v1\nkind: Blueprint\nmetadata: {name: b${b}}\nspec:\n  selector:\n${selector}\n  profiles: [p${b * 3}, p${b * 3 + 1}, p${b * 3 + 2}]\n`,
    );
  }
  writeFileSync(join(dir, 'fleet.yaml'), docs.join('---\n'));
}

function groups(n: number): string {
  // Half the fleet is tagged "half" (blueprint 0 with the profile that changes); every device one team.
  const lines = [];
  for (let i = 0; i < n; i++) lines.push(`    - {serial: S${i}, tags: [${i % 2 === 0 ? 'half, ' : ''}team-${1 + (i % 9)}]}`);
  return `apiVersion: orchard/v1\nkind: DeviceGroup\nmetadata: {name: all}\nspec:\n  devices:\n${lines.join('\n')}\n`;
}

/** A CPU profile of one phase only (PROF_RECONCILE=file.cpuprofile): seeding would drown it. */
async function startProfile(): Promise<() => Promise<unknown>> {
  const { Session } = await import('node:inspector/promises');
  const s = new Session();
  s.connect();
  await s.post('Profiler.enable');
  await s.post('Profiler.start');
  return async () => (await s.post('Profiler.stop')).profile;
}

/** 100,000 devices in one DeviceGroup are past the loader's default repository limits (limits.ts). */
const FLEET_LIMITS = { yamlFileBytes: 256 << 20, repoBytes: 1 << 30, nodes: 50_000_000, scalarChars: 1 << 30 };

const peak = () => {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
};

export interface ReconcileBenchResult {
  devices: number;
  backend: BenchBackendKind;
  seedSeconds: number;
  planSeconds: number;
  planChanges: number;
  reconcileSeconds: number;
  queued: number;
  /** Peak RSS of each phase's own process. */
  planPeakRssMb: number;
  reconcilePeakRssMb: number;
}

const noPush: Pusher = { push: async () => undefined };

/**
 * Seeds the store in this process, then runs the plan and the reconcile each in a fresh child
 * process on the same data (as `orchard plan` and `orchard serve` would run), so each phase's
 * peak RSS is its own.
 */
export async function benchReconcile(devices: number, backendKind: BenchBackendKind = 'leveldb'): Promise<ReconcileBenchResult> {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-bench-reconcile-'));
  const backend = await benchBackend(backendKind, dir);
  try {
    const repo = (v: number) => {
      const d = join(dir, `rev${v}`);
      writeFleet(d, v);
      writeFileSync(join(d, 'groups.yaml'), groups(devices));
      return d;
    };
    const rev1 = await loadFleet(repo(1), { limits: FLEET_LIMITS });
    const rev2 = await loadFleet(repo(2), { limits: FLEET_LIMITS });
    if (!rev1.fleet || !rev2.fleet) throw new Error(JSON.stringify([...rev1.diagnostics, ...rev2.diagnostics].slice(0, 3)));
    const store = await backend.open();
    const log = pino({ level: 'warn' });
    const service = new MdmService(store);

    // Seed: enrolled devices that already run revision 1 (their ProfileList shows its versions).
    const t0 = performance.now();
    const cache = new Map<string, RenderedProfile | Error>();
    const at = new Date();
    const profileList = (id: string, facts: DeviceFacts) => {
      const desired = desiredFor(rev1.fleet!, { id, facts, reported: {} }, () => undefined, cache as never);
      return [...desired.profiles.values()].map((p) => ({ PayloadIdentifier: p.identifier, PayloadUUID: p.rendered!.uuid }));
    };
    if (store instanceof PgStore)
      await seedEnrolledPg(store, devices, at, (id, n, facts) => ({
        ProfileList: { at: at.toISOString(), commandUUID: `seed-${n}`, value: profileList(id, facts) },
      }));
    else
      await seedEnrolled(store, devices, at, async (id, n, facts) => {
        const uuid = `seed-${n}`;
        await store.enqueue([id], { uuid, requestType: 'ProfileList', payload: Buffer.from('x') }, at);
        await store.recordResult(
          id,
          uuid,
          { status: 'Acknowledged', at: at.toISOString(), raw: Buffer.from('r') },
          { ProfileList: { at: at.toISOString(), commandUUID: uuid, value: profileList(id, facts) } },
        );
      });
    const reconciler = new Reconciler({ store, service, pusher: noPush, log, secrets: () => undefined, driftIntervalMs: 0, concurrency: 32 });
    // Adopt revision 1: everything is already there, so this verifies and queues nothing.
    const adopted = await reconciler.apply({ info: { commit: 'rev1', contentHash: rev1.fleet.contentHash }, fleet: rev1.fleet });
    if (adopted.some((o) => o.queued > 0)) throw new Error('adopting the current revision queued commands');
    const seedSeconds = (performance.now() - t0) / 1000;
    await reconciler.stop();
    await store.close();

    const plan = await phaseProcess<{ seconds: number; changes: number; peakRssMb: number }>('plan', dir, backend.location);
    await backend.resetStatements();
    const rec = await phaseProcess<{ seconds: number; queued: number; peakRssMb: number }>('reconcile', dir, backend.location);
    return {
      devices,
      backend: backendKind,
      seedSeconds,
      planSeconds: plan.seconds,
      planChanges: plan.changes,
      reconcileSeconds: rec.seconds,
      queued: rec.queued,
      planPeakRssMb: plan.peakRssMb,
      reconcilePeakRssMb: rec.peakRssMb,
    };
  } finally {
    await backend.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function phaseProcess<T>(phase: 'plan' | 'reconcile', dir: string, store: string): Promise<T> {
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--max-old-space-size=640', new URL(import.meta.url).pathname, '--phase', phase, dir, store],
    {
      maxBuffer: 1 << 20,
      env: process.env,
    },
  );
  return JSON.parse(stdout.trim().split('\n').pop()!) as T;
}

/** One phase on a seeded directory and store (a LevelDB directory or a postgres:// URL), in this (fresh) process. */
async function runPhase(phase: string, dir: string, location: string): Promise<object> {
  const fleet = (await loadFleet(join(dir, 'rev2'), { limits: FLEET_LIMITS })).fleet!;
  const store = await openBackend(location);
  try {
    if (phase === 'plan') {
      // What `orchard plan` holds: the whole inventory.
      const t = performance.now();
      const artifacts = new Map((await allPages((p) => store.listArtifacts(p))).map((a) => [a.deviceId, a]));
      const inventory: InventoryDevice[] = (await allPages((p) => store.listDevices(p))).map((d) => ({
        id: d.id,
        enrolled: true,
        facts: d.facts,
        reported: d.reported,
        profiles: Object.values(artifacts.get(d.id)?.artifacts ?? {}),
      }));
      const changes = planAgainstInventory(fleet, inventory).changes.length;
      return { seconds: (performance.now() - t) / 1000, changes, peakRssMb: peak() };
    }
    const reconciler = new Reconciler({
      store,
      service: new MdmService(store),
      pusher: noPush,
      log: pino({ level: 'warn' }),
      secrets: () => undefined,
      driftIntervalMs: 0,
      concurrency: 32,
    });
    const prof = process.env.PROF_RECONCILE ? await startProfile() : undefined;
    const t = performance.now();
    const outcomes = await reconciler.apply({ info: { commit: 'rev2', contentHash: fleet.contentHash }, fleet });
    const seconds = (performance.now() - t) / 1000;
    if (prof) writeFileSync(process.env.PROF_RECONCILE!, JSON.stringify(await prof()));
    await reconciler.stop();
    return { seconds, queued: outcomes.reduce((n, o) => n + o.queued, 0), peakRssMb: peak() };
  } finally {
    await store.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  if (process.argv[2] === '--phase') {
    console.log(JSON.stringify(await runPhase(process.argv[3]!, process.argv[4]!, process.argv[5]!)));
  } else {
    const n = Number(process.argv[2] ?? 10_000);
    console.log(JSON.stringify(await benchReconcile(n, parseBackend(process.argv[3]))));
  }
}
