/**
 * Protocol benchmark on realistic traffic: every Mdm-Signature is made by `openssl cms -sign`
 * ahead of the timed phases, each device has its own key and certificate (openssl, issued by a
 * CA the server trusts with --trust-ca; see signatures.ts), and the client only sends bytes, so
 * the cores are left to the server. Server CPU per request comes from /proc/<pid>/stat of the
 * server process only.
 *
 * Signature modes:
 * - `sha1-noattr` (`-noattr -md sha1`), as captured devices sign: one signature per device and
 *   body, re-sent whenever the body repeats (a device's RSA signature of the same body is the
 *   same bytes);
 * - `sha256-attr` (`-md sha256`: contentType, signingTime, messageDigest), as other clients sign:
 *   a new signature for every request, `rounds` of them per device made beforehand.
 * Connections: keep-alive (one Agent, `concurrency` sockets) or a new connection per request.
 *
 * After each phase the bench scrapes the server's own event-loop delay from /metrics
 * (orchard_event_loop_delay_seconds, cumulative since the server started). The `apps` phase (not
 * run by default) mixes the largest legitimate report into the Idles: `appsDevices` devices answer
 * an InstalledApplicationList with a 1 MB report while every device sends its Idle, so the delay
 * shows how long one report held the others up (issue 18: no request blocks others > 100 ms).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildPlist } from '../src/protocol/plist.js';
import { installedApplicationListReport } from '../src/sim/app-list.js';
import { httpPut, type SimResponse } from '../src/sim/device.js';
import { benchBackend, type BenchBackendKind } from './backend.js';
import { loopDelayMs, percentile, phase, procRssMb, startBenchServer, type BenchServer, type LoopDelay, type PhaseResult } from './protocol.js';
import { benchPki, defaultPkiDir, distinctSignatures, opensslSignAll, type BenchDeviceKey, type BenchKeyType, type BenchSigMode } from './signatures.js';

export type RealisticPhase = 'sha1-keepalive' | 'sha1-newconn' | 'sha256-keepalive' | 'sha256-newconn' | 'cycle' | 'sha1-keepalive-first1000' | 'apps';

export const ALL_REALISTIC_PHASES: RealisticPhase[] = [
  'sha1-keepalive',
  'sha1-newconn',
  'sha256-keepalive',
  'sha256-newconn',
  'cycle',
  'sha1-keepalive-first1000',
  'apps',
];

/** Not in the default run: its reports grow the store and the RSS the default run reports. */
const OPT_IN_PHASES: RealisticPhase[] = ['apps'];

export interface RealisticOptions {
  devices: number;
  concurrency: number;
  /** Idle requests per device in each Idle phase. */
  rounds: number;
  keyType: BenchKeyType;
  phases?: RealisticPhase[];
  /** The store (default LevelDB). */
  backend?: BenchBackendKind;
  /** `orchard serve` processes on the one store (PostgreSQL only for more than one); device i talks to replica i mod N. */
  replicas?: number;
  /** Devices that send a 1 MB InstalledApplicationList in the `apps` phase (default 100). */
  appsDevices?: number;
}

export interface RealisticPhaseResult extends PhaseResult {
  rssAfterMb: number;
  /** The server's event-loop delay after the phase (cumulative since it started; the first replica's, or the worst of them). */
  loopAfter: LoopDelay;
  /** Whether the max rose in this phase (then it is this phase's longest block; else this phase's was at most that). */
  loopMaxRose: boolean;
  /** `apps` only: the Idles' p99 beside the reports, and the reports' own p50 / p99 (upload included). */
  idleP99ms?: number;
  reportP50ms?: number;
  reportP99ms?: number;
}

export interface RealisticResult {
  devices: number;
  concurrency: number;
  keyType: BenchKeyType;
  rounds: number;
  backend: BenchBackendKind;
  replicas: number;
  phases: RealisticPhaseResult[];
  /** The event-loop delay once listening (start-up included). */
  loopAtStart: LoopDelay;
  serverRssAtStartMb: number;
  serverRssAfterEnrollMb: number;
  serverRssMb: number;
  keygenSeconds: number;
  signSeconds: number;
  /** process.hrtime µs (CLOCK_MONOTONIC, the clock of V8 CPU profiles) of each phase. */
  windows: { name: string; startUs: number; endUs: number; requests: number }[];
}

const TOPIC = 'com.apple.mgmt.External.00000000-0000-0000-0000-0000000bench';
const COMMAND_UUID = '0B0E0C00-0000-4000-8000-00000000C0DE';
const APPS_COMMAND_UUID = '0B0E0C00-0000-4000-8000-0000000A9915';
/** 1,050 apps make a 1.00 MB report (bench/hostile.ts's parse benchmark uses the same). */
const APPS_PER_REPORT = 1050;

function h(seed: string): Buffer {
  return createHash('sha256').update(seed).digest();
}

function uuidOf(seed: string): string {
  const x = h(seed).toString('hex').toUpperCase();
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

/** What device i sends; deterministic, so cached signatures stay valid across runs. */
function bodies(keyType: BenchKeyType, i: number) {
  const udid = uuidOf(`bench-${keyType}-${i}`);
  const serial = `OBN${keyType === 'rsa2048' ? 'R' : 'E'}${String(i).padStart(8, '0')}`;
  return {
    udid,
    authenticate: buildPlist({
      MessageType: 'Authenticate',
      Topic: TOPIC,
      UDID: udid,
      SerialNumber: serial,
      Model: 'Mac14,2',
      ModelName: 'MacBook Air',
      ProductName: 'Mac14,2',
      OSVersion: '15.1',
      BuildVersion: '24B83',
      DeviceName: `Bench ${serial}`,
    }),
    tokenUpdate: buildPlist({
      MessageType: 'TokenUpdate',
      Topic: TOPIC,
      UDID: udid,
      Token: new Uint8Array(h(`token-${udid}`)),
      PushMagic: uuidOf(`magic-${udid}`),
      UnlockToken: new Uint8Array(Buffer.concat([h(`u1-${udid}`), h(`u2-${udid}`)])),
      AwaitingConfiguration: false,
    }),
    idle: buildPlist({ Status: 'Idle', UDID: udid }),
    ack: buildPlist({ Status: 'Acknowledged', CommandUUID: COMMAND_UUID, UDID: udid, ProfileList: [] }),
  };
}

type Sent = SimResponse;

function put(url: string, path: string, body: Buffer, signature: string, contentType: string, agent: Agent | false): Promise<Sent> {
  return httpPut(new URL(path, url), body, { 'content-type': contentType, 'content-length': String(body.length), 'mdm-signature': signature }, agent);
}

const CHECKIN = 'application/x-apple-aspen-mdm-checkin';
const CONNECT = 'application/x-apple-aspen-mdm';

export async function benchProtocolOpenssl(opts: RealisticOptions): Promise<RealisticResult> {
  const wanted = new Set(
    opts.phases ?? ALL_REALISTIC_PHASES.filter((p) => !OPT_IN_PHASES.includes(p) && (p !== 'sha1-keepalive-first1000' || opts.devices > 1000)),
  );
  const pki = await benchPki(opts.keyType, opts.devices);
  const devs = pki.devices;
  const b = devs.map((d) => bodies(opts.keyType, d.index));
  const cache = join(defaultPkiDir(), 'sigs', opts.keyType);

  // Every signature is made before the server starts, so openssl competes with nothing timed.
  const t = performance.now();
  const sha1 = async (what: 'authenticate' | 'tokenUpdate' | 'idle' | 'ack') =>
    opensslSignAll(
      devs.map((device) => ({ device, body: b[device.index]![what], mode: 'sha1-noattr' as BenchSigMode })),
      cache,
    );
  const sigAuth = await sha1('authenticate');
  const sigToken = await sha1('tokenUpdate');
  const sigIdle = await sha1('idle');
  const sigAck = wanted.has('cycle') ? await sha1('ack') : [];
  const idleOf = (d: BenchDeviceKey) => b[d.index]!.idle;
  const sig256Keep = wanted.has('sha256-keepalive') ? await distinctSignatures(devs, idleOf, opts.rounds) : [];
  const sig256New = wanted.has('sha256-newconn') ? await distinctSignatures(devs, idleOf, opts.rounds) : [];
  const reporters = wanted.has('apps') ? devs.slice(0, Math.min(devs.length, opts.appsDevices ?? 100)) : [];
  const reports = reporters.map((d) =>
    Buffer.from(buildPlist(installedApplicationListReport(APPS_PER_REPORT, { udid: b[d.index]!.udid, commandUUID: APPS_COMMAND_UUID }))),
  );
  const sigReports = await opensslSignAll(
    reporters.map((device, k) => ({ device, body: reports[k]!, mode: 'sha1-noattr' as BenchSigMode })),
    cache,
  );
  const signSeconds = (performance.now() - t) / 1000;

  const dir = mkdtempSync(join(tmpdir(), 'orchard-bench-openssl-'));
  const backendKind = opts.backend ?? 'leveldb';
  const replicas = opts.replicas ?? 1;
  if (replicas > 1 && backendKind !== 'postgres') throw new Error('--replicas > 1 needs --backend postgres (LevelDB is one process)');
  const backend = await benchBackend(backendKind, dir);
  const servers: BenchServer[] = [];
  for (let k = 0; k < replicas; k++) {
    const own = replicas === 1 ? dir : join(dir, `replica-${k}`);
    mkdirSync(own, { recursive: true });
    servers.push(await startBenchServer(own, pki.caCertPath, backend.serveArgs));
  }
  const server = servers[0]!;
  const pids = servers.map((s) => s.pid);
  const rssOf = () => pids.reduce((mb, p) => mb + procRssMb(p), 0);
  const loopOf = async (): Promise<LoopDelay> => {
    const all = await Promise.all(servers.map((s) => loopDelayMs(s.url)));
    return { p99: Math.max(...all.map((l) => l.p99)), max: Math.max(...all.map((l) => l.max)) };
  };
  const agent = new Agent({ keepAlive: true, maxSockets: opts.concurrency });
  const windows: RealisticResult['windows'] = [];
  const phases: RealisticResult['phases'] = [];
  const us = () => Number(process.hrtime.bigint() / 1000n);
  let loopBefore: LoopDelay | undefined;
  const timed = async (name: string, jobs: (() => Promise<number>)[]) => {
    const startUs = us();
    const r = await phase(name, pids, opts.concurrency, jobs, backend.dbCpuMs);
    windows.push({ name, startUs, endUs: us(), requests: r.requests });
    const loopAfter = await loopOf();
    phases.push({ ...r, rssAfterMb: rssOf(), loopAfter, loopMaxRose: loopAfter.max > loopBefore!.max });
    loopBefore = loopAfter;
    return r;
  };
  const expect = (r: Sent, what: string, empty = true) => {
    if (r.status !== 200 || (empty && r.body.length !== 0)) throw new Error(`${what}: ${r.status} ${r.body.toString().slice(0, 200)}`);
  };
  try {
    // Each device talks to one replica; the admin API call goes to the first.
    const url = server.url;
    const urlOf = (d: BenchDeviceKey) => servers[d.index % replicas]!.url;
    const rssAtStart = rssOf();
    const loopAtStart = await loopOf();
    loopBefore = loopAtStart;
    await timed(
      'enroll (Authenticate + TokenUpdate), SHA-1 no attributes, keep-alive',
      devs.map((d) => async () => {
        expect(await put(urlOf(d), '/mdm/checkin', b[d.index]!.authenticate, sigAuth[d.index]!, CHECKIN, agent), 'Authenticate', false);
        expect(await put(urlOf(d), '/mdm/checkin', b[d.index]!.tokenUpdate, sigToken[d.index]!, CHECKIN, agent), 'TokenUpdate', false);
        return 2;
      }),
    );
    const rssAfterEnroll = rssOf();

    const idleJobs = (sigs: (d: BenchDeviceKey, round: number) => string, a: Agent | false, subset = devs) => {
      const jobs: (() => Promise<number>)[] = [];
      for (let r = 0; r < opts.rounds; r++) {
        for (const d of subset)
          jobs.push(async () => {
            expect(await put(urlOf(d), '/mdm/connect', b[d.index]!.idle, sigs(d, r), CONNECT, a), 'Idle');
            return 1;
          });
      }
      return jobs;
    };
    if (wanted.has('sha1-keepalive'))
      await timed(
        'Idle, SHA-1 no attributes, keep-alive',
        idleJobs((d) => sigIdle[d.index]!, agent),
      );
    if (wanted.has('sha1-newconn'))
      await timed(
        'Idle, SHA-1 no attributes, new connection per request',
        idleJobs((d) => sigIdle[d.index]!, false),
      );
    if (wanted.has('sha256-keepalive'))
      await timed(
        'Idle, SHA-256 + signed attributes (new signature each), keep-alive',
        idleJobs((d, r) => sig256Keep[r]![d.index]!, agent),
      );
    if (wanted.has('sha256-newconn'))
      await timed(
        'Idle, SHA-256 + signed attributes (new signature each), new connection per request',
        idleJobs((d, r) => sig256New[r]![d.index]!, false),
      );
    if (wanted.has('sha1-keepalive-first1000') && devs.length > 1000) {
      await timed(
        'Idle, SHA-1 no attributes, keep-alive, only devices 0-999',
        idleJobs((d) => sigIdle[d.index]!, agent, devs.slice(0, 1000)),
      );
    }
    if (wanted.has('cycle')) {
      const res = await fetch(`${url}/api/v1/commands`, {
        method: 'POST',
        headers: { authorization: 'Bearer bench-token', 'content-type': 'application/json' },
        body: JSON.stringify({ targets: b.map((x) => x.udid), commandUUID: COMMAND_UUID, command: { RequestType: 'ProfileList' } }),
      });
      if (res.status !== 201) throw new Error(`enqueue failed: ${res.status} ${await res.text()}`);
      await timed(
        'command cycle (Idle -> ProfileList, Acknowledged -> empty), SHA-1 no attributes, keep-alive',
        devs.map((d) => async () => {
          const r = await put(urlOf(d), '/mdm/connect', b[d.index]!.idle, sigIdle[d.index]!, CONNECT, agent);
          if (r.status !== 200 || !r.body.includes(COMMAND_UUID)) throw new Error(`cycle Idle: ${r.status} ${r.body.toString().slice(0, 200)}`);
          expect(await put(urlOf(d), '/mdm/connect', b[d.index]!.ack, sigAck[d.index]!, CONNECT, agent), 'Acknowledged');
          return 2;
        }),
      );
    }
    if (wanted.has('apps')) {
      const res = await fetch(`${url}/api/v1/commands`, {
        method: 'POST',
        headers: { authorization: 'Bearer bench-token', 'content-type': 'application/json' },
        body: JSON.stringify({
          targets: reporters.map((d) => b[d.index]!.udid),
          commandUUID: APPS_COMMAND_UUID,
          command: { RequestType: 'InstalledApplicationList' },
        }),
      });
      if (res.status !== 201) throw new Error(`enqueue failed: ${res.status} ${await res.text()}`);
      const idleLatencies: number[] = [];
      const reportLatencies: number[] = [];
      const idle = (d: BenchDeviceKey) => async () => {
        const t0 = performance.now();
        expect(await put(urlOf(d), '/mdm/connect', b[d.index]!.idle, sigIdle[d.index]!, CONNECT, agent), 'Idle');
        idleLatencies.push(performance.now() - t0);
        return 1;
      };
      const report = (d: BenchDeviceKey, k: number) => async () => {
        const r = await put(urlOf(d), '/mdm/connect', b[d.index]!.idle, sigIdle[d.index]!, CONNECT, agent);
        if (r.status !== 200 || !r.body.includes(APPS_COMMAND_UUID)) throw new Error(`apps Idle: ${r.status} ${r.body.toString().slice(0, 200)}`);
        const t0 = performance.now();
        expect(await put(urlOf(d), '/mdm/connect', reports[k]!, sigReports[k]!, CONNECT, agent), 'InstalledApplicationList report');
        reportLatencies.push(performance.now() - t0);
        return 2;
      };
      // The reports spread evenly through the other devices' Idles.
      const others = devs.filter((d) => d.index >= reporters.length);
      const jobs: (() => Promise<number>)[] = [];
      const every = Math.max(1, Math.floor(others.length / Math.max(1, reporters.length)));
      let k = 0;
      others.forEach((d, i) => {
        if (i % every === 0 && k < reporters.length) jobs.push(report(reporters[k]!, k++));
        jobs.push(idle(d));
      });
      while (k < reporters.length) jobs.push(report(reporters[k]!, k++));
      await timed(`${reporters.length} devices send a 1 MB InstalledApplicationList among the others' Idles, SHA-1 no attributes, keep-alive`, jobs);
      const sorted = (xs: number[]) => [...xs].sort((x, y) => x - y);
      const row = phases[phases.length - 1]!;
      row.idleP99ms = percentile(sorted(idleLatencies), 99);
      row.reportP50ms = percentile(sorted(reportLatencies), 50);
      row.reportP99ms = percentile(sorted(reportLatencies), 99);
    }
    const rss = rssOf();
    return {
      devices: devs.length,
      concurrency: opts.concurrency,
      keyType: opts.keyType,
      rounds: opts.rounds,
      backend: backendKind,
      replicas,
      phases,
      loopAtStart,
      serverRssAtStartMb: rssAtStart,
      serverRssAfterEnrollMb: rssAfterEnroll,
      serverRssMb: rss,
      keygenSeconds: pki.generatedSeconds,
      signSeconds,
      windows,
    };
  } finally {
    agent.destroy();
    for (const s of servers) await s.stop();
    await backend.stop();
    if (process.env.ORCHARD_BENCH_PROF) writeFileSync(join(process.env.ORCHARD_BENCH_PROF, `windows-${server.pid}.json`), JSON.stringify(windows));
    rmSync(dir, { recursive: true, force: true });
  }
}
