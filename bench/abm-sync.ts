/**
 * ABM sync at fleet scale: the stand-in of Apple's device enrollment service (src/sim/dep.ts, in
 * this process) lists N devices; a full fetch into a LevelDB ABM store, then an incremental sync
 * of 1% changes. Reports wall time, pages and the process's peak RSS (stand-in included).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DepClient } from '../src/abm/client.js';
import { AbmSync } from '../src/abm/sync.js';
import { DepStandin } from '../src/sim/dep.js';
import { LevelAbmStore } from '../src/store/abm.js';

export interface AbmSyncResult {
  devices: number;
  fullMs: number;
  fullPages: number;
  syncMs: number;
  syncChanges: number;
  peakRssMb: number;
  heapMb: number;
}

function peakRssMb(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m?.[1] ? Number(m[1]) / 1024 : process.memoryUsage().rss / 1048576;
}

export async function benchAbmSync(devices: number): Promise<AbmSyncResult> {
  const credentials = { consumerKey: 'CK_bench', consumerSecret: 'CS_bench', accessToken: 'AT_bench', accessSecret: 'AS_bench' };
  const standin = await new DepStandin({ credentials }).start();
  const dir = mkdtempSync(join(tmpdir(), 'orchard-bench-abm-'));
  const store = await LevelAbmStore.open(dir);
  try {
    const models = ['MacBook Pro', 'MacBook Air', 'iMac', 'iPad Pro', 'iPhone 16'];
    for (let i = 0; i < devices; i++) {
      standin.add({
        serial_number: `C02${String(i).padStart(9, '0')}`,
        model: models[i % models.length],
        os: i % 2 ? 'OSX' : 'iOS',
        description: 'bench device',
        color: 'SILVER',
        device_assigned_by: 'buyer@example.com',
      });
    }
    const client = new DepClient({ credentials, baseUrl: standin.url });
    const sync = new AbmSync(store, 1000);
    let t = performance.now();
    const full = await sync.run('bench', client);
    const fullMs = performance.now() - t;
    const changes = Math.max(1, Math.floor(devices / 100));
    for (let i = 0; i < changes; i++) standin.modify(`C02${String((i * 97) % devices).padStart(9, '0')}`, { color: 'SPACE GRAY' });
    t = performance.now();
    const inc = await sync.run('bench', client);
    const syncMs = performance.now() - t;
    return {
      devices,
      fullMs,
      fullPages: full.pages,
      syncMs,
      syncChanges: inc.upserts + inc.deletes,
      peakRssMb: peakRssMb(),
      heapMb: process.memoryUsage().heapUsed / 1048576,
    };
  } finally {
    await store.close();
    await standin.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
