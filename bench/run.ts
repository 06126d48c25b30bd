/**
 * `npm run bench`: every benchmark, printed as Markdown (paste into BENCHMARKS.md with the
 * command line). Options: --devices N (default 1000), --concurrency N (default 16),
 * --idle-rounds N (default 3), --only protocol|ddm|protocol-openssl|cms|store|validate|validate-real|push|scep|reconcile|cli|reconcile-latency|hostile|read-model|abm-sync, --reconcile-devices N (default 100000;
 * --read-model-devices N (default 100000) for read-model; --abm-devices N (default 100000) for abm-sync; --ddm-devices N (default 10000), --ddm-declarations N (default 5) for ddm;
 * --big-devices N (default 200) and --big-profile-mb N (default 5) for reconcile-latency;
 * run it in a process started with --max-old-space-size=640 for the RSS bound, as `npm run bench` does).
 * protocol-openssl (signatures from `openssl cms -sign`, a key per device): --key-type rsa2048|p256
 * (default rsa2048), --rounds N Idles per device per phase (default 2), --phases a,b (default all:
 * sha1-keepalive,sha1-newconn,sha256-keepalive,sha256-newconn,cycle,sha1-keepalive-first1000; `apps`, asked for
 * by name only: --apps-devices N (default 100) devices send a 1 MB InstalledApplicationList among the others' Idles).
 * --backend leveldb|postgres (default leveldb; postgres starts a throwaway cluster, bench/backend.ts) for
 * protocol-openssl, reconcile and read-model; --replicas N `orchard serve` processes on the one
 * PostgreSQL database for protocol-openssl (default 1).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { benchCms } from './cms.js';
import { benchProtocol } from './protocol.js';
import { benchProtocolOpenssl, type RealisticPhase } from './protocol-openssl.js';
import { benchStore } from './store.js';
import { benchValidate } from './validate.js';
import { benchPush } from './push.js';
import { benchScep, formatScep } from './scep.js';
import { benchReconcile } from './reconcile.js';
import { benchHostile, benchParse, benchParseHostile, formatHostile } from './hostile.js';
import { benchReconcileLatency } from './reconcile-latency.js';
import { benchCli } from './cli.js';
import { benchValidateReal } from './validate-real.js';
import { benchReadModel } from './read-model.js';
import { benchAbmSync } from './abm-sync.js';
import { benchDdm } from './ddm.js';
import { parseBackend } from './backend.js';

const { values } = parseArgs({
  options: {
    devices: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '16' },
    'idle-rounds': { type: 'string', default: '3' },
    only: { type: 'string' },
    'reconcile-devices': { type: 'string', default: '100000' },
    'read-model-devices': { type: 'string', default: '100000' },
    'abm-devices': { type: 'string', default: '100000' },
    'big-devices': { type: 'string', default: '200' },
    'big-profile-mb': { type: 'string', default: '5' },
    'key-type': { type: 'string', default: 'rsa2048' },
    rounds: { type: 'string', default: '2' },
    phases: { type: 'string' },
    'ddm-devices': { type: 'string', default: '10000' },
    'ddm-declarations': { type: 'string', default: '5' },
    backend: { type: 'string', default: 'leveldb' },
    replicas: { type: 'string', default: '1' },
    'apps-devices': { type: 'string', default: '100' },
  },
});
const only = values.only;
const backend = parseBackend(values.backend);
const storeName = backend === 'postgres' ? 'PostgreSQL' : 'LevelDB';
const f = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '-');

console.log(`# Orchard benchmarks\n\nNode ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${new Date().toISOString()}\n`);

if (!only || only === 'cms') {
  const r = await benchCms();
  console.log(
    `## Mdm-Signature (CMS) on one core\n\n| operation | per second |\n|---|---|\n| verify (detached SignedData, RSA-2048) | ${f(r.verifyPerSec, 0)} |\n| sign (simulator) | ${f(r.signPerSec, 0)} |\n\n${r.notes}\n`,
  );
}

if (!only || only === 'store') {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-bench-store-'));
  try {
    const r = await benchStore(dir);
    console.log(
      `## LevelDB store\n\n| operation | per second |\n|---|---|\n${Object.entries(r)
        .map(([k, v]) => `| ${k} | ${f(v, 0)} |`)
        .join('\n')}\n`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (!only || only === 'read-model') {
  const r = await benchReadModel(Number(values['read-model-devices']), backend);
  const p = (x: { p50ms: number; p99ms: number }) => `${f(x.p50ms)} / ${f(x.p99ms)}`;
  console.log(
    `## Reports from the read model: ${r.devices} devices (${storeName}, \`orchard serve\` child process)\n\nSeeded in ${f(r.seedSeconds)} s.${r.countsMs ? ` Counts of one scrape (fleet and 10 blueprints) in the store: ${f(r.countsMs.kept)} ms kept, ${f(r.countsMs.recount)} ms recounted with GROUP BY (medians of 20).` : ''}\n\n| request (sequential) | count | p50 / p99 ms | max ms | server CPU ms/request | database CPU ms/request |\n|---|---|---|---|---|---|\n${r.scrapes
      .map((s) => `| \`GET ${s.path}\` | ${s.count} | ${p(s)} | ${f(s.maxMs)} | ${f(s.serverCpuMs, 2)} | ${f(s.dbCpuMs, 2)} |`)
      .join('\n')}\n\n| device requests | requests/s | p50 / p99 ms | server CPU ms/request | database CPU ms/request |\n|---|---|---|---|---|\n${[
      r.idle,
      r.idleWhileScraped,
    ]
      .map((x) => `| ${x.name} | ${f(x.requestsPerSec, 0)} | ${p(x)} | ${f(x.serverCpuMsPerRequest, 2)} | ${f(x.dbCpuMsPerRequest, 2)} |`)
      .join('\n')}\n\n${r.scrapesDuringIdle} scrapes during the second Idle phase. Goal: p99 < 100 ms, device latency unchanged while scraped.\n`,
  );
}

if (!only || only === 'abm-sync') {
  const load = loadavg();
  const r = await benchAbmSync(Number(values['abm-devices']));
  console.log(
    `## ABM device sync (stand-in in a child process, LevelDB)\n\nLoad average at the start: ${load
      .map((x) => f(x, 2))
      .join(
        ', ',
      )}.\n\n| devices | full fetch s | pages | sync of ${r.syncChanges} changes ms | RSS before MB | peak RSS MB | peak heap MB | heap after MB |\n|---|---|---|---|---|---|---|---|\n| ${r.devices} | ${f(r.fullMs / 1000, 2)} | ${r.fullPages} | ${f(r.syncMs, 0)} | ${f(r.baseRssMb, 0)} | ${f(r.peakRssMb, 0)} | ${f(r.peakHeapMb, 0)} | ${f(r.heapAfterMb, 0)} |\n`,
  );
}

if (!only || only === 'cli') {
  const rows = benchCli();
  console.log(
    `## CLI start-up: whole processes, median of 9\n\n| command | wall ms | CPU ms |\n|---|---|---|\n${rows.map((r) => `| \`${r.command}\` | ${f(r.wallMs, 0)} | ${f(r.cpuMs, 0)} |`).join('\n')}\n\nGoals: \`--help\` under 300 ms, \`validate\` of the example under 600 ms (wall).\n`,
  );
}

if (!only || only === 'validate-real') {
  const runs = [benchValidateReal(), benchValidateReal(), benchValidateReal()];
  if (runs.some((r) => r.errors > 0)) throw new Error(`the real-profile fleet did not validate: ${runs[0]!.errors} errors`);
  const ms = runs.map((r) => r.cliMs).sort((a, b) => a - b);
  console.log(
    `## Validation: ${runs[0]!.profiles} real public profiles (test/fixtures/real-profiles, copied round-robin)\n\n| how | ms (min / median / max of 3) | errors | warnings |\n|---|---|---|---|\n| \`orchard validate --format json\` (new process, wall clock) | ${f(ms[0]!, 0)} / ${f(ms[1]!, 0)} / ${f(ms[2]!, 0)} | ${runs[0]!.errors} | ${runs[0]!.warnings} |\n\nGoal: under 3,000 ms.\n`,
  );
}

if (!only || only === 'validate') {
  const r = await benchValidate();
  if (r.errors > 0 || r.profiles !== 1000) throw new Error(`generated fleet did not validate: ${r.errors} errors`);
  console.log(
    `## Validation: ${r.profiles} profiles (3 payloads each), ${r.blueprints} blueprints\n\n| how | ms |\n|---|---|\n| \`orchard validate\` (new process, wall clock) | ${f(r.cliMs, 0)} |\n| loadFleet, warm | ${f(r.warmMs, 0)} |\n\nGoal: under 3,000 ms.\n`,
  );
}

if (!only || only === 'protocol') {
  const r = await benchProtocol({ devices: Number(values.devices), concurrency: Number(values.concurrency), idleRounds: Number(values['idle-rounds']) });
  console.log(`## Protocol: ${r.devices} simulated devices, ${r.concurrency} concurrent, signed requests on loopback\n`);
  console.log('| phase | requests | req/s | server CPU ms/req | p50 ms | p99 ms |\n|---|---|---|---|---|---|');
  for (const p of r.phases)
    console.log(`| ${p.name} | ${p.requests} | ${f(p.requestsPerSec, 0)} | ${f(p.serverCpuMsPerRequest, 3)} | ${f(p.p50ms, 2)} | ${f(p.p99ms, 2)} |`);
  console.log(
    `\nCommand cycles/s: ${f(r.cyclesPerSec, 0)}. Server RSS: ${f(r.serverRssAtStartMb, 1)} MB when listening, ${f(r.serverRssMb, 1)} MB after the run.\n`,
  );
}

if (!only || only === 'ddm') {
  const r = await benchDdm({
    devices: Number(values['ddm-devices']),
    concurrency: Number(values.concurrency),
    declarations: Number(values['ddm-declarations']),
  });
  console.log(`## DDM sync: ${r.devices} simulated devices, ${r.declarationsPerDevice} declarations each, ${r.concurrency} concurrent, certificate header\n`);
  console.log('| phase | requests | req/s | server CPU ms/req | server CPU ms/device | p50 ms | p99 ms |\n|---|---|---|---|---|---|---|');
  for (const p of r.phases)
    console.log(
      `| ${p.name} | ${p.requests} | ${f(p.requestsPerSec, 0)} | ${f(p.serverCpuMsPerRequest, 3)} | ${f((p.serverCpuMsPerRequest * p.requests) / r.devices, 2)} | ${f(p.p50ms, 2)} | ${f(p.p99ms, 2)} |`,
    );
  console.log(`\nServer RSS after the run: ${f(r.serverRssMb, 1)} MB.\n`);
}

if (!only || only === 'protocol-openssl') {
  const keyType = values['key-type'] === 'p256' ? 'p256' : 'rsa2048';
  const r = await benchProtocolOpenssl({
    devices: Number(values.devices),
    concurrency: Number(values.concurrency),
    rounds: Number(values.rounds),
    keyType,
    backend,
    replicas: Number(values.replicas),
    appsDevices: Number(values['apps-devices']),
    ...(values.phases ? { phases: values.phases.split(',') as RealisticPhase[] } : {}),
  });
  console.log(
    `## Protocol, openssl-made signatures: ${r.devices} devices, each its own ${keyType === 'rsa2048' ? 'RSA-2048' : 'EC P-256'} key and certificate, ${r.concurrency} concurrent, ${r.rounds} Idle(s) per device per phase, ${storeName}${r.replicas > 1 ? `, ${r.replicas} replicas` : ''}\n`,
  );
  console.log(
    '| phase | requests | req/s | server CPU ms/req | database CPU ms/req | p50 ms | p99 ms | server RSS after MB | event-loop max ms |\n|---|---|---|---|---|---|---|---|---|',
  );
  // The server's event-loop max is cumulative: a phase that did not raise it blocked at most that long ("≤").
  for (const p of r.phases)
    console.log(
      `| ${p.name} | ${p.requests} | ${f(p.requestsPerSec, 0)} | ${f(p.serverCpuMsPerRequest, 3)} | ${f(p.dbCpuMsPerRequest, 3)} | ${f(p.p50ms, 2)} | ${f(p.p99ms, 2)} | ${f(p.rssAfterMb, 1)} | ${p.loopMaxRose ? '' : '≤ '}${f(p.loopAfter.max, 1)} |`,
    );
  for (const p of r.phases)
    if (p.idleP99ms !== undefined)
      console.log(
        `\n${p.name}: the Idles' p99 ${f(p.idleP99ms, 2)} ms; a report's upload and answer p50 ${f(p.reportP50ms!, 1)} ms, p99 ${f(p.reportP99ms!, 1)} ms.`,
      );
  console.log(
    `\nServer event-loop delay (orchard_event_loop_delay_seconds, since start): ${f(r.loopAtStart.max, 1)} ms max once listening; after the run p99 ${f(r.phases.at(-1)?.loopAfter.p99 ?? NaN, 1)} ms, max ${f(r.phases.at(-1)?.loopAfter.max ?? NaN, 1)} ms.`,
  );
  console.log(
    `\nServer RSS: ${f(r.serverRssAtStartMb, 1)} MB listening, ${f(r.serverRssAfterEnrollMb, 1)} MB after enrolling ${r.devices}, ${f(r.serverRssMb, 1)} MB after the run. Signing ahead of the run: ${f(r.signSeconds, 0)} s (key generation ${f(r.keygenSeconds, 0)} s).\n`,
  );
}

if (!only || only === 'scep') {
  console.log(formatScep(await benchScep()));
}

if (!only || only === 'hostile') {
  console.log(formatHostile(benchParse(), benchParseHostile(), await benchHostile()));
}

if (only === 'parse') {
  // The parser-speed table of `hostile` alone (the 1 MB InstalledApplicationList goal of issue 18).
  console.log(formatHostile(benchParse(), [], []).split('\n## Plist parser alone')[0]!);
}

if (!only || only === 'push') {
  const r = await benchPush();
  console.log(
    `## APNs push: ${r.pushes} pushes to the local HTTP/2 stand-in\n\n| pushes/s | sessions | peak RSS (client + stand-in) | live heap with ${r.queuedAtPeak} waiting | after |\n|---|---|---|---|---|\n| ${f(r.pushesPerSec, 0)} | ${r.sessions} | ${f(r.rssMb)} MB | ${f(r.heapLiveQueuedMb)} MB | ${f(r.heapAfterMb)} MB |\n\nGoal: 5,000 pushes/s.\n`,
  );
}

if (!only || only === 'reconcile') {
  const sizes = [...new Set([10_000, Number(values['reconcile-devices'])])].filter((n) => n > 0).sort((a, b) => a - b);
  console.log(`## Reconciler (${storeName}): 30 profiles across 10 blueprints, one profile changed for half the fleet\n`);
  console.log(
    '| devices | full plan s | plan peak RSS MB | reconcile s (compile + diff + enqueue) | reconcile peak RSS MB | commands queued |\n|---|---|---|---|---|---|',
  );
  for (const n of sizes) {
    const r = await benchReconcile(n, backend);
    console.log(`| ${n} | ${f(r.planSeconds, 2)} | ${f(r.planPeakRssMb, 0)} | ${f(r.reconcileSeconds, 2)} | ${f(r.reconcilePeakRssMb, 0)} | ${r.queued} |`);
  }
  console.log(
    '\nGoals at 100,000 devices: plan under 10 s, reconcile under 20 s, RSS under 1 GiB. Plan and reconcile each run in a fresh process on the seeded store; peak RSS is that of the phase process.\n',
  );
}

if (!only || only === 'reconcile-latency') {
  const r = await benchReconcileLatency(Number(values['big-devices']), Number(values['big-profile-mb']));
  const lat = (l: { p50ms: number; p99ms: number; maxMs: number; requests: number; errors: number }) =>
    `${f(l.p50ms)} / ${f(l.p99ms)} / ${f(l.maxMs, 0)} (${l.requests}${l.errors ? `, ${l.errors} failed` : ''})`;
  console.log(`## Reconcile of a ${f(r.profileMb)} MB per-device profile (\${device.SerialNumber}) for ${r.devices} devices, server answering meanwhile\n`);
  console.log(
    '| reconcile s | commands queued | server RSS before / peak during MB | /healthz idle p50 / p99 / max ms | /healthz during reconcile p50 / p99 / max ms (n) | signed Idle during p50 / p99 / max ms (n) |\n|---|---|---|---|---|---|',
  );
  console.log(
    `| ${f(r.reconcileSeconds)} | ${r.queued} | ${f(r.rssBeforeMb, 0)} / ${f(r.peakRssMb, 0)} | ${lat(r.healthzIdle)} | ${lat(r.healthz)} | ${lat(r.deviceIdle)} |`,
  );
  console.log(
    '\nThe server runs in its own process on a seeded store; requests are sent at a steady rate (/healthz every 20 ms, Idle every 100 ms) and timed from when they were due.\n',
  );
}
