/**
 * LevelStore throughput, one operation at a time unless named `parallel`. Run directly with
 * `node dist/bench/store.js`, or through `npm run bench`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { LevelStore } from '../src/store/leveldb.js';

const DEVICES = 1000;
const PER_DEVICE = 10;
// Sizes of a typical small command plist and a DeviceInformation answer.
const PAYLOAD = Buffer.from(`<?xml version="1.0"?><plist version="1.0"><dict>${'<key>k</key><string>v</string>'.repeat(30)}</dict></plist>`);
const RAW = Buffer.alloc(2048, 0x61);

async function perSecond(n: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await fn(i);
  return n / (Number(process.hrtime.bigint() - start) / 1e9);
}

async function perSecondParallel(n: number, concurrency: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const start = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < n; i = next++) await fn(i);
    }),
  );
  return n / (Number(process.hrtime.bigint() - start) / 1e9);
}

export async function benchStore(dir: string): Promise<Record<string, number>> {
  const store = await LevelStore.open(dir);
  try {
    const dev = (i: number) => `DEV-${String(i % DEVICES).padStart(5, '0')}`;
    const t0 = new Date();
    for (let d = 0; d < DEVICES; d++) {
      const id = dev(d);
      await store.authenticate(
        id,
        { UDID: id, Topic: 'com.apple.mgmt.External.bench' },
        { certHash: `h${d}`, issuerHash: 'ca', subject: 'CN=x', notAfter: '2030' },
        t0,
      );
      await store.tokenUpdate({ id, deviceId: id, type: 'device', active: true, createdAt: t0.toISOString(), updatedAt: t0.toISOString() });
    }
    const n = DEVICES * PER_DEVICE;
    const out: Record<string, number> = {};
    const cmd = (uuid: string) => ({ uuid, requestType: 'DeviceInformation', payload: PAYLOAD });
    const ack = { status: 'Acknowledged' as const, at: t0.toISOString(), raw: RAW };

    out['enqueue (1 target)'] = await perSecond(n, (i) => store.enqueue([dev(i)], cmd(`c-${i}`), t0));
    out['nextCommand'] = await perSecond(n, (i) => store.nextCommand(dev(i), { skipNotNow: false }));
    out['nextCommand (skipNotNow)'] = await perSecond(n, (i) => store.nextCommand(dev(i), { skipNotNow: true }));
    // In enqueue order, so each answer is for the command at the head of its device's queue.
    out['recordResult (Acknowledged)'] = await perSecond(n, (i) => store.recordResult(dev(i), `c-${i}`, ack));

    for (let i = 0; i < n; i++) await store.enqueue([dev(i)], cmd(`d-${i}`), t0);
    out['recordResult (NotNow)'] = await perSecond(n, (i) => store.recordResult(dev(i), `d-${i}`, { ...ack, status: 'NotNow' }));
    // What a device's session does per command: take the head of the queue and answer it.
    out['request cycle: nextCommand + recordResult'] = await perSecond(n, async (i) => {
      const next = await store.nextCommand(dev(i), { skipNotNow: false });
      if (!next) throw new Error(`bench: ${dev(i)} has an empty queue`);
      await store.recordResult(dev(i), next.uuid, ack);
    });

    for (let i = 0; i < n; i++) await store.enqueue([dev(i)], cmd(`e-${i}`), t0);
    out['request cycle, 16 devices in parallel'] = await perSecondParallel(n, 16, async (i) => {
      const next = await store.nextCommand(dev(i), { skipNotNow: false });
      if (next) await store.recordResult(dev(i), next.uuid, ack);
    });

    const all = Array.from({ length: DEVICES }, (_, d) => dev(d));
    const fanOuts = 10;
    const fanPerSec = await perSecond(fanOuts, (i) => store.enqueue(all, cmd(`fan-${i}`), t0));
    out[`enqueue fan-out (targets/s, ${DEVICES} per command)`] = fanPerSec * DEVICES;

    await store.touch(dev(0), t0);
    out['touch'] = await perSecond(n, (i) => store.touch(dev(i), t0));

    const finished = 3 * n; // c-, d-, e- answered
    const start = process.hrtime.bigint();
    const removed = await store.compact(new Date(t0.getTime() + 1));
    if (removed !== finished) throw new Error(`bench: compact removed ${removed}, expected ${finished}`);
    out['compact (finished commands/s)'] = removed / (Number(process.hrtime.bigint() - start) / 1e9);
    return out;
  } finally {
    await store.close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const dir = await mkdtemp(join(tmpdir(), 'orchard-bench-store-'));
  try {
    const r = await benchStore(dir);
    for (const [k, v] of Object.entries(r)) console.log(`${k.padEnd(52)} ${Math.round(v).toString().padStart(9)} /s`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
