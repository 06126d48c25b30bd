/**
 * ABM sync at fleet scale: the stand-in of Apple's device enrollment service (src/sim/dep.ts) runs
 * in a child process (bench/abm-standin.ts) and lists N devices; this process does a full fetch
 * into a LevelDB ABM store, then an incremental sync of 1% changes. Reports wall time, pages, this
 * process's peak RSS (VmHWM) and the peak of its V8 heap, sampled every 20 ms during each phase.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DepClient } from '../src/abm/client.js';
import { AbmSync } from '../src/abm/sync.js';
import { LevelAbmStore } from '../src/store/abm.js';
import { BENCH_CREDENTIALS } from './abm-standin.js';

export interface AbmSyncResult {
  devices: number;
  fullMs: number;
  fullPages: number;
  syncMs: number;
  syncChanges: number;
  /** Before the first fetch: what the process holds without any ABM device. */
  baseRssMb: number;
  peakRssMb: number;
  peakHeapMb: number;
  heapAfterMb: number;
}

function peakRssMb(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m?.[1] ? Number(m[1]) / 1024 : process.memoryUsage().rss / 1048576;
}

function ask<T>(child: ChildProcess, msg: Record<string, number>): Promise<T> {
  return new Promise((resolve, reject) => {
    child.once('message', (m) => resolve(m as T));
    child.once('exit', (code) => reject(new Error(`the stand-in exited (${code})`)));
    child.send(msg);
  });
}

/** The highest heapUsed seen while `work` runs. */
async function heapPeak<T>(work: () => Promise<T>): Promise<{ value: T; peakMb: number }> {
  let peak = process.memoryUsage().heapUsed;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().heapUsed)), 20);
  try {
    const value = await work();
    peak = Math.max(peak, process.memoryUsage().heapUsed);
    return { value, peakMb: peak / 1048576 };
  } finally {
    clearInterval(timer);
  }
}

export async function benchAbmSync(devices: number): Promise<AbmSyncResult> {
  const child = fork(new URL('./abm-standin.js', import.meta.url), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const dir = mkdtempSync(join(tmpdir(), 'orchard-bench-abm-'));
  const store = await LevelAbmStore.open(dir);
  try {
    const { url } = await ask<{ url: string }>(child, { seed: devices });
    const client = new DepClient({ credentials: BENCH_CREDENTIALS, baseUrl: url });
    const sync = new AbmSync(store, 1000);
    const baseRssMb = process.memoryUsage().rss / 1048576;
    let t = performance.now();
    const full = await heapPeak(() => sync.run('bench', client));
    const fullMs = performance.now() - t;
    await ask(child, { modify: Math.max(1, Math.floor(devices / 100)) });
    t = performance.now();
    const inc = await heapPeak(() => sync.run('bench', client));
    const syncMs = performance.now() - t;
    return {
      devices,
      fullMs,
      fullPages: full.value.pages,
      syncMs,
      syncChanges: inc.value.upserts + inc.value.deletes,
      baseRssMb,
      peakRssMb: peakRssMb(),
      peakHeapMb: Math.max(full.peakMb, inc.peakMb),
      heapAfterMb: process.memoryUsage().heapUsed / 1048576,
    };
  } finally {
    await store.close();
    child.disconnect();
    rmSync(dir, { recursive: true, force: true });
  }
}
