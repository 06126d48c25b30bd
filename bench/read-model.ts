/**
 * Reports at fleet scale: N devices (default 100,000) with status rows in a real store (LevelDB or PostgreSQL, bench/backend.ts),
 * served by a real `orchard serve` child process. Measures the latency of `GET /api/v1/status`
 * and `GET /metrics` (sequential scrapes), and the latency of signed device Idles without and
 * while a scraper hits both back to back (goal: p99 < 100 ms, device latency unchanged).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCA, createDeviceIdentity } from '../src/identity/ca.js';
import { SimulatedDevice } from '../src/sim/device.js';
import type { StatusProfiles } from '../src/store/status.js';
import { benchBackend, type BenchBackendKind } from './backend.js';
import { seedEnrolled } from './seed.js';
import { cloneDevices } from './pg-bulk.js';
import { PgStore } from '../src/store/postgres.js';
import { phase, procCpuMs, startBenchServer, type PhaseResult } from './protocol.js';

export interface ReadModelBenchResult {
  devices: number;
  backend: BenchBackendKind;
  seedSeconds: number;
  /** PostgreSQL: median ms of the fleet and blueprint counts read from the store, and of the GROUP BY recount they replace. */
  countsMs?: { kept: number; recount: number };
  scrapes: { path: string; count: number; p50ms: number; p99ms: number; maxMs: number; serverCpuMs: number; dbCpuMs: number }[];
  idle: PhaseResult;
  idleWhileScraped: PhaseResult;
  scrapesDuringIdle: number;
}

const STATES: StatusProfiles['state'][] = ['in-sync', 'in-sync', 'in-sync', 'pending', 'failed', 'drifted'];
/** Devices whose verdicts have every shape (n % 6 states by n % 9 blueprints). */
const TEMPLATES = 18;

/** What the reconciler would write for device n: one of 10 blueprints of 3 profiles plus the all-Macs one. */
function verdict(n: number): StatusProfiles {
  const state = STATES[n % STATES.length]!;
  const blueprints = ['b0', `b${1 + (n % 9)}`];
  const ids = blueprints.flatMap((b) => [0, 1, 2].map((k) => `com.example.bench.${b}.p${k}`));
  const phase = state === 'in-sync' ? 'verified' : state === 'failed' ? 'failed' : 'pending';
  return {
    state,
    blueprints,
    matched: blueprints,
    revision: 'rev1',
    profiles: {
      total: ids.length,
      verified: phase === 'verified' ? ids.length : 0,
      pending: phase === 'pending' ? ids.length : 0,
      failed: phase === 'failed' ? ids.length : 0,
    },
    phases: Object.fromEntries(ids.map((id) => [id, phase])),
    problems: state === 'failed' ? [{ identifier: ids[0]!, phase: 'failed', message: 'The profile was refused' }] : [],
  };
}

function percentile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : NaN;
}

/** One scrape (fetch keeps its connection alive), in ms including the whole body. */
async function scrape(url: string): Promise<number> {
  const t = performance.now();
  const res = await fetch(url, { headers: { authorization: 'Bearer bench-token' } });
  await res.arrayBuffer();
  if (res.status !== 200) throw new Error(`${url}: ${res.status}`);
  return performance.now() - t;
}

const BLUEPRINTS = Array.from({ length: 10 }, (_, i) => `b${i}`);

/** The GROUP BY queries over every status row that the kept counts (migration 008) replaced: fleet ($1 the stale cut), then per blueprint ($1 the names). */
const RECOUNT_FLEET =
  'SELECT state, count(*) AS n, count(*) FILTER (WHERE enrolled) AS enrolled, count(*) FILTER (WHERE seen < $1) AS stale FROM status_rows GROUP BY state';
const RECOUNT_BLUEPRINTS = [
  'SELECT b, count(*) AS n FROM status_rows, unnest(matched) AS b WHERE b = ANY($1) GROUP BY b',
  'SELECT b, state, count(*) AS n FROM status_rows, unnest(blueprints) AS b WHERE b = ANY($1) GROUP BY b, state',
  `SELECT b, p.key AS id, p.value AS phase, count(*) AS n FROM status_rows, unnest(blueprints) AS b, json_each_text(phases) AS p
   WHERE b = ANY($1) AND state <> 'unenrolled' AND p.value <> 'pending' GROUP BY 1, 2, 3`,
];

/** Median of 20 runs: what one scrape's counts cost the store now, and what recounting them cost. */
async function countQueries(store: PgStore, pool: import('pg').Pool): Promise<{ kept: number; recount: number }> {
  const median = async (fn: () => Promise<unknown>) => {
    const ms: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t = performance.now();
      await fn();
      ms.push(performance.now() - t);
    }
    return ms.sort((a, b) => a - b)[10]!;
  };
  const now = new Date();
  const cut = new Date(now.getTime() - 7 * 86_400_000);
  return {
    kept: await median(() => Promise.all([store.fleetCounts({ now, staleDays: 7 }), store.blueprintCounts(BLUEPRINTS)])),
    recount: await median(() => Promise.all([pool.query(RECOUNT_FLEET, [cut]), ...RECOUNT_BLUEPRINTS.map((q) => pool.query(q, [BLUEPRINTS]))])),
  };
}

export async function benchReadModel(devices: number, backendKind: BenchBackendKind = 'leveldb', scrapes = 200): Promise<ReadModelBenchResult> {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-bench-read-model-'));
  const backend = await benchBackend(backendKind, dir);
  try {
    const t0 = performance.now();
    const store = await backend.open();
    const at = new Date();
    // On PostgreSQL one device per verdict shape goes through the store, the rest are copies (bench/pg-bulk.ts).
    const pool = store instanceof PgStore ? store.sharedPool() : undefined;
    const throughStore = pool ? Math.min(devices, TEMPLATES) : devices;
    await seedEnrolled(
      store,
      throughStore,
      at,
      async (id, n) => {
        await store.commitReconcile(id, { deviceId: id, artifacts: {}, revision: 'rev1' }, { enqueue: [], cancel: [], status: verdict(n) }, at, 0);
      },
      (n) => ({ DeviceName: `Mac ${n}` }),
    );
    if (pool && store instanceof PgStore) {
      await cloneDevices(pool, throughStore, devices);
      await store.foldCounts();
    }
    const seeded = await store.fleetCounts({ now: at, staleDays: 7 });
    if (seeded.total !== devices || seeded.byState.failed !== Math.floor((devices + 1) / STATES.length)) {
      throw new Error(`seeded ${devices} devices, the store counts ${JSON.stringify(seeded)}`);
    }
    const seedSeconds = (performance.now() - t0) / 1000;
    const countsMs = pool && store instanceof PgStore ? await countQueries(store, pool) : undefined;
    await store.close();

    const ca = createCA({ commonName: 'Bench CA' });
    writeFileSync(join(dir, 'ca.pem'), ca.certPem);
    const server = await startBenchServer(dir, join(dir, 'ca.pem'), backend.serveArgs);
    const agent = new Agent({ keepAlive: true, maxSockets: 16 });
    try {
      const key = createDeviceIdentity(ca, 'bench-key').key;
      const sims = Array.from(
        { length: 16 },
        (_, i) => new SimulatedDevice({ serverUrl: server.url, identity: createDeviceIdentity(ca, `rm-${i}`, { key }), agent, serialNumber: `RM${i}` }),
      );
      for (const d of sims) await d.enroll();
      const idleJobs = (rounds: number) =>
        Array.from({ length: rounds }, () =>
          sims.map((d) => async () => {
            const r = await d.report({ Status: 'Idle', UDID: d.udid });
            if (r.status !== 200) throw new Error(`idle: ${r.status}`);
            return 1;
          }),
        ).flat();

      const out: ReadModelBenchResult['scrapes'] = [];
      for (const path of ['/api/v1/status', '/metrics', '/api/v1/report/devices?state=failed&limit=100']) {
        await scrape(server.url + path); // warm
        const ms: number[] = [];
        const cpu0 = procCpuMs(server.pid);
        const db0 = backend.dbCpuMs();
        for (let i = 0; i < scrapes; i++) ms.push(await scrape(server.url + path));
        const serverCpuMs = (procCpuMs(server.pid) - cpu0) / scrapes;
        const dbCpuMs = (backend.dbCpuMs() - db0) / scrapes;
        ms.sort((a, b) => a - b);
        out.push({ path, count: scrapes, p50ms: percentile(ms, 50), p99ms: percentile(ms, 99), maxMs: ms[ms.length - 1]!, serverCpuMs, dbCpuMs });
      }

      const idle = await phase('signed Idle (16 devices), nobody scraping', server.pid, 8, idleJobs(50), backend.dbCpuMs);
      let scraping = true;
      let scraped = 0;
      const scraper = (async () => {
        while (scraping) {
          await scrape(server.url + '/api/v1/status');
          await scrape(server.url + '/metrics');
          scraped += 2;
        }
      })();
      const idleWhileScraped = await phase(
        'signed Idle (16 devices), /api/v1/status and /metrics scraped back to back',
        server.pid,
        8,
        idleJobs(50),
        backend.dbCpuMs,
      );
      scraping = false;
      await scraper;
      return {
        devices,
        backend: backendKind,
        seedSeconds,
        ...(countsMs ? { countsMs } : {}),
        scrapes: out,
        idle,
        idleWhileScraped,
        scrapesDuringIdle: scraped,
      };
    } finally {
      agent.destroy();
      await server.stop();
    }
  } finally {
    await backend.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
