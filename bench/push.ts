/**
 * APNs push throughput: 100,000 pushes (distinct devices) through ApnsPusher's coalescing queue to
 * the local HTTP/2 + TLS stand-in, which runs in a worker thread so it does not share the
 * client's event loop. Run directly with `node dist/bench/push.js`, or through `npm run bench`.
 */
import { createPublicKey, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { pino } from 'pino';
import { createCA, issueCertificate } from '../src/identity/ca.js';
import { ApnsPusher, type PushCounters } from '../src/push/apns.js';
import { UID_OID } from '../src/push/push-cert.js';
import { ApnsStandIn } from '../src/sim/apns.js';
import type { EnrollmentRecord } from '../src/store/types.js';

export interface PushBenchOptions {
  pushes?: number;
  concurrency?: number;
  coalesceMs?: number;
}

export interface PushBenchResult {
  pushes: number;
  concurrency: number;
  durationMs: number;
  pushesPerSec: number;
  /** Peak resident set of the whole process (client + stand-in worker). */
  rssMb: number;
  rssStartMb: number;
  /** Peak V8 heap of the client thread, and before the run. */
  heapMb: number;
  heapStartMb: number;
  /** Live heap (after a full GC) with every push enqueued, most still waiting: what the queue holds. */
  heapLiveQueuedMb: number;
  /** How many were still waiting when that was measured. */
  queuedAtPeak: number;
  /** Live heap once the run is over. */
  heapAfterMb: number;
  sessions: number;
  standInMaxInFlight: number;
  counters: PushCounters;
}

interface WorkerReady {
  port: number;
  caPem: string;
}
interface WorkerDone {
  accepted: number;
  maxInFlight: number;
  sessionsOpened: number;
}

const MB = 1024 * 1024;

/** A full GC, to tell live memory from garbage not yet collected (works without --expose-gc). */
function collect(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

export async function benchPush(opts: PushBenchOptions = {}): Promise<PushBenchResult> {
  const pushes = opts.pushes ?? 100_000;
  const ca = createCA({ commonName: 'Bench Push CA' });
  const topic = `com.apple.mgmt.External.${randomUUID()}`;
  const key = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const { certPem } = issueCertificate(ca, {
    publicKey: createPublicKey(key),
    subject: [
      { name: UID_OID, value: topic },
      { name: 'CN', value: 'APSP:bench' },
    ],
    extKeyUsage: ['clientAuth'],
  });

  const worker = new Worker(new URL(import.meta.url), { workerData: { role: 'apns-standin', clientCa: ca.certPem } });
  const ready = await new Promise<WorkerReady>((resolve, reject) => {
    worker.once('message', (m: WorkerReady) => resolve(m));
    worker.once('error', reject);
  });

  const apns = new ApnsPusher(
    {
      url: `https://localhost:${ready.port}`,
      ca: ready.caPem,
      certPem,
      keyPem: key.export({ type: 'pkcs8', format: 'pem' }).toString(),
      ...(opts.concurrency ? { concurrency: opts.concurrency } : {}),
      coalesceMs: opts.coalesceMs ?? 100,
    },
    pino({ level: 'warn' }),
  );
  const concurrency = opts.concurrency ?? 500;

  // Warm up the session (TLS handshake, SETTINGS) outside the measurement.
  await apns.pushNow([enrollment(topic, 'warmup')]);
  collect();
  const start = process.memoryUsage();
  let rssPeak = start.rss;
  let heapPeak = start.heapUsed;
  const sampler = setInterval(() => {
    const m = process.memoryUsage();
    rssPeak = Math.max(rssPeak, m.rss);
    heapPeak = Math.max(heapPeak, m.heapUsed);
  }, 50);

  const t0 = performance.now();
  // Enqueue as a server would while a reconcile sweeps the fleet: batches, other work in between.
  for (let i = 0; i < pushes; i += 1000) {
    const batch: EnrollmentRecord[] = [];
    for (let j = i; j < Math.min(pushes, i + 1000); j++) batch.push(enrollment(topic, `DEV-${j}`));
    await apns.push(batch);
    await new Promise((r) => setImmediate(r));
  }
  const queued = apns.status().waiting;
  collect();
  const heapLiveQueued = process.memoryUsage().heapUsed;
  await apns.whenIdle();
  const durationMs = performance.now() - t0;
  clearInterval(sampler);
  const end = process.memoryUsage();
  rssPeak = Math.max(rssPeak, end.rss);
  heapPeak = Math.max(heapPeak, end.heapUsed);
  const counters = apns.status().counters;
  await apns.close();
  collect();
  const heapAfter = process.memoryUsage().heapUsed;

  worker.postMessage('stop');
  const done = await new Promise<WorkerDone>((resolve) => worker.once('message', (m: WorkerDone) => resolve(m)));
  await worker.terminate();
  if (counters.sent !== pushes + 1 || done.accepted !== pushes + 1) {
    throw new Error(`push bench: sent ${counters.sent}, stand-in accepted ${done.accepted}, expected ${pushes + 1}`);
  }
  return {
    pushes,
    concurrency,
    durationMs,
    pushesPerSec: pushes / (durationMs / 1000),
    rssMb: rssPeak / MB,
    rssStartMb: start.rss / MB,
    heapMb: heapPeak / MB,
    heapStartMb: start.heapUsed / MB,
    heapLiveQueuedMb: heapLiveQueued / MB,
    queuedAtPeak: queued,
    heapAfterMb: heapAfter / MB,
    sessions: done.sessionsOpened,
    standInMaxInFlight: done.maxInFlight,
    counters,
  };
}

function enrollment(topic: string, id: string): EnrollmentRecord {
  return {
    id,
    deviceId: id,
    type: 'device',
    active: true,
    push: { token: randomBytes(32).toString('hex'), pushMagic: randomUUID().toUpperCase(), topic },
    createdAt: '',
    updatedAt: '',
  };
}

async function runStandIn(clientCa: string): Promise<void> {
  const standIn = await ApnsStandIn.start({ clientCa, record: false });
  parentPort!.postMessage({ port: standIn.port, caPem: standIn.tls.caPem } satisfies WorkerReady);
  parentPort!.once('message', async () => {
    const done: WorkerDone = { accepted: standIn.accepted, maxInFlight: standIn.maxInFlight, sessionsOpened: standIn.sessionsOpened };
    await standIn.close();
    parentPort!.postMessage(done);
  });
}

if (!isMainThread && (workerData as { role?: string } | null)?.role === 'apns-standin') {
  await runStandIn((workerData as { clientCa: string }).clientCa);
} else if (isMainThread && import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const r = await benchPush({
    pushes: Number(process.env.PUSHES ?? 100_000),
    concurrency: process.env.CONCURRENCY ? Number(process.env.CONCURRENCY) : undefined,
  });
  const { counters, ...rest } = r;
  console.log(JSON.stringify({ ...rest, sent: counters.sent, retries: counters.retries, connects: counters.connects }, null, 2));
}
