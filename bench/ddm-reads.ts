/**
 * What DDM adds to reconciling a device, in store calls: N enrolled Macs in a real LevelDB store,
 * a blueprint delivering 5 declarations (7 with Orchard's activation and status subscriptions).
 * Each device is reconciled as the reconciler's DDM part does it (its DDM facts for the device
 * view, the declaration sets, the row), once for a revision that changes one declaration and
 * once more for the same revision (nothing to do). Counted: reads (get, list) and writes of the
 * Store and the DdmStore. Usage: node dist/bench/ddm-reads.js [devices]
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { DdmReconciler } from '../src/ddm/reconcile.js';
import { ddmRow } from '../src/ddm/report.js';
import { withDdmFacts } from '../src/ddm/status.js';
import { loadFleet } from '../src/gitops/load.js';
import type { Fleet } from '../src/gitops/model.js';
import { openStores } from '../src/store/open.js';
import { seedEnrolled } from './seed.js';

function writeFleet(dir: string, minLength: number): void {
  mkdirSync(dir, { recursive: true });
  const docs = Array.from(
    { length: 5 },
    (_, i) =>
      `apiVersion: orchard/v1\nkind: Declaration\nmetadata: {name: d${i}}\nspec:\n  Type: com.apple.configuration.passcode.settings\n  Identifier: com.example.d${i}\n  Payload: {MinimumLength: ${i === 0 ? minLength : 6 + i}}\n`,
  );
  docs.push(`apiVersion: orchard/v1\nkind: Blueprint\nmetadata: {name: macs}\nspec:\n  selector: {platforms: [macOS]}\n  declarations: [d0, d1, d2, d3, d4]\n`);
  writeFileSync(join(dir, 'fleet.yaml'), docs.join('---\n'));
}

/** Counts the calls of an object's methods by kind: reads (get*, list*) and writes (the others). */
function counted<T extends object>(target: T, counts: { reads: number; writes: number }): T {
  return new Proxy(target, {
    get(t, prop, receiver) {
      const v = Reflect.get(t, prop, receiver) as unknown;
      if (typeof v !== 'function' || typeof prop !== 'string') return v;
      return (...args: unknown[]) => {
        if (/^(get|list)/.test(prop)) counts.reads++;
        else counts.writes++;
        return (v as (...a: unknown[]) => unknown).apply(t, args);
      };
    },
  });
}

const devices = Number(process.argv[2] ?? 1000);
const dir = mkdtempSync(join(tmpdir(), 'orchard-bench-ddm-reads-'));
try {
  const fleets: Fleet[] = [];
  for (const v of [8, 12]) {
    writeFleet(join(dir, `rev${v}`), v);
    const r = await loadFleet(join(dir, `rev${v}`));
    if (!r.fleet) throw new Error(JSON.stringify(r.diagnostics.slice(0, 3)));
    fleets.push(r.fleet);
  }
  const stores = await openStores({ dataDir: join(dir, 'data') });
  await seedEnrolled(stores.store, devices, new Date(), async () => undefined);
  const counts = { reads: 0, writes: 0 };
  const store = counted(stores.store, counts);
  const ddm = counted(stores.ddm, counts);
  const reconciler = new DdmReconciler({ store, ddm, pusher: { push: async () => undefined }, log: pino({ level: 'warn' }), secrets: () => undefined });
  const rows: string[] = [];
  const pass = async (label: string, fleet: Fleet, revision: string) => {
    counts.reads = counts.writes = 0;
    const t = performance.now();
    for (let n = 0; n < devices; n++) {
      const record = (await stores.store.getDevice(`DEV-${n}`))!;
      // The reconciler's DDM hooks (src/root.ts): facts for the device view, the declarations, the row.
      const device = withDdmFacts(record, await ddm.getDdmStatus(record.id));
      await reconciler.reconcile(device, fleet, revision);
      if (await ddm.getDeclarationSet(record.id, 'current')) await ddmRow(ddm, await store.listEnrollments(record.id));
    }
    const ms = performance.now() - t;
    rows.push(
      `| ${label} | ${devices} | ${(counts.reads / devices).toFixed(2)} | ${(counts.writes / devices).toFixed(2)} | ${((ms * 1000) / devices).toFixed(0)} |`,
    );
  };
  await pass('first revision (7 declarations new)', fleets[0]!, 'rev1');
  await pass('one declaration changed', fleets[1]!, 'rev2');
  await pass('same revision again (nothing to do)', fleets[1]!, 'rev2');
  process.stdout.write(
    `| reconcile | devices | store reads per device | store writes per device | µs per device |\n|---|---|---|---|---|\n${rows.join('\n')}\n`,
  );
  await stores.store.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
