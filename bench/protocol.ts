/**
 * Protocol benchmark: N simulated devices against a real `orchard serve` child process on
 * loopback. Every request is signed (Mdm-Signature) and verified. Server CPU is read from
 * /proc/<pid>/stat, so the figure is the server's own cost per request, not the client's.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SERVE_NODE_FLAGS } from '../src/cli/node-flags.js';
import { createCA, createDeviceIdentity } from '../src/identity/ca.js';
import { SimulatedDevice } from '../src/sim/device.js';

export interface ProtocolBenchOptions {
  devices: number;
  concurrency: number;
  idleRounds: number;
}

export interface PhaseResult {
  name: string;
  requests: number;
  seconds: number;
  requestsPerSec: number;
  serverCpuMsPerRequest: number;
  /** The database's CPU per request (PostgreSQL's backends; 0 on LevelDB, whose work is in the server). */
  dbCpuMsPerRequest: number;
  p50ms: number;
  p99ms: number;
}

export interface ProtocolBenchResult {
  devices: number;
  concurrency: number;
  phases: PhaseResult[];
  cyclesPerSec: number;
  serverRssMb: number;
  serverRssAtStartMb: number;
}

const CLK_TCK = 100; // Linux USER_HZ; /proc times are in these ticks.

export function procCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK; // utime + stime
}

export interface BenchServer {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/**
 * `orchard serve` as a child process on a fresh LevelDB store in `dir`, trusting `caPath`, with
 * production (`info`) logging. ORCHARD_BENCH_PROF=DIR writes a V8 CPU profile of the server
 * there (see BENCHMARKS.md).
 */
export async function startBenchServer(dir: string, caPath: string, extraArgs: string[] = []): Promise<BenchServer> {
  const cli = join(import.meta.dirname, '../src/cli/main.js');
  const prof = process.env.ORCHARD_BENCH_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.ORCHARD_BENCH_PROF}`] : [];
  // The server runs with the flags README recommends for `orchard serve` (npm start uses them);
  // ORCHARD_BENCH_SERVER_FLAGS replaces them, e.g. '' for Node's defaults, to compare.
  const flags = process.env.ORCHARD_BENCH_SERVER_FLAGS?.split(/\s+/).filter(Boolean) ?? SERVE_NODE_FLAGS;
  // ORCHARD_BENCH_SERVER_WRAP runs the server under a tool, e.g. 'heaptrack -o DIR/ht' for a native
  // memory profile (`heaptrack -p` cannot attach to this node: gdb finds no heaptrack_inject).
  const [command, ...wrap] = [...(process.env.ORCHARD_BENCH_SERVER_WRAP?.split(/\s+/).filter(Boolean) ?? []), process.execPath];
  const child = spawn(
    command!,
    [
      ...wrap,
      ...flags,
      ...prof,
      cli,
      'serve',
      '--listen',
      '127.0.0.1:0',
      '--data-dir',
      join(dir, 'data'),
      '--trust-ca',
      caPath,
      '--log-level',
      'info',
      ...extraArgs,
    ],
    {
      env: { ...process.env, ORCHARD_API_TOKEN: 'bench-token' },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const exited = new Promise((r) => child.once('exit', r));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const onData = (d: Buffer) => {
      out += d.toString();
      // The listening line, not any other line that carries a url (APNs, source).
      const m = /"url":"(http[^"]+)"[^\n]*"msg":"orchard listening"/.exec(out);
      if (m) {
        out = '';
        child.stdout!.off('data', onData);
        child.stdout!.resume(); // the request log: drained, not kept
        resolve(m[1]!);
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`server exited ${code}: ${out}`)));
  });
  return {
    url,
    // Under a wrapper, the server's own process (its CPU and RSS are what the bench reads).
    pid: wrap.length > 0 ? (nodeDescendant(child.pid!, cli) ?? child.pid!) : child.pid!,
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** The server's event-loop delay in ms (orchard_event_loop_delay_seconds, cumulative since it started: a max never falls). */
export interface LoopDelay {
  p99: number;
  max: number;
}

/** Scrapes a bench server's /metrics (the bench's API token) for its own event-loop delay. */
export async function loopDelayMs(url: string): Promise<LoopDelay> {
  const res = await fetch(`${url}/metrics`, { headers: { authorization: 'Bearer bench-token' } });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`/metrics: ${res.status} ${text.slice(0, 200)}`);
  const q = (quantile: string) => {
    const m = new RegExp(`^orchard_event_loop_delay_seconds\\{quantile="${quantile}"\\} (\\S+)$`, 'm').exec(text);
    if (!m) throw new Error(`/metrics has no orchard_event_loop_delay_seconds{quantile="${quantile}"}`);
    return Number(m[1]) * 1000;
  };
  return { p99: q('0.99'), max: q('1') };
}

/** The first process under `pid` (itself included) that is node running `script` (not a wrapper naming it). */
function nodeDescendant(pid: number, script: string): number | undefined {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    if (argv[0] === process.execPath && argv.includes(script)) return pid;
    for (const c of readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean)) {
      const found = nodeDescendant(Number(c), script);
      if (found !== undefined) return found;
    }
  } catch {
    // The process is gone.
  }
  return undefined;
}

export function procRssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** The p-th percentile of ascending `sorted` (NaN when empty). */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** `pid`: the server process, or every replica's; `dbCpuMs`: the database's CPU so far (bench/backend.ts). */
export async function phase(
  name: string,
  pid: number | number[],
  concurrency: number,
  jobs: (() => Promise<number>)[],
  dbCpuMs: () => number = () => 0,
): Promise<PhaseResult> {
  const latencies: number[] = [];
  let requests = 0;
  let next = 0;
  const serverCpu = () => [pid].flat().reduce((ms, p) => ms + procCpuMs(p), 0);
  const cpu0 = serverCpu();
  const db0 = dbCpuMs();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < jobs.length) {
        const job = jobs[next++]!;
        const start = performance.now();
        const n = await job();
        // A job is one or more requests; its latency is spread evenly over them.
        const each = (performance.now() - start) / n;
        for (let i = 0; i < n; i++) latencies.push(each);
        requests += n;
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const cpu = serverCpu() - cpu0;
  const db = dbCpuMs() - db0;
  latencies.sort((a, b) => a - b);
  return {
    name,
    requests,
    seconds,
    requestsPerSec: requests / seconds,
    serverCpuMsPerRequest: cpu / requests,
    dbCpuMsPerRequest: db / requests,
    p50ms: percentile(latencies, 50),
    p99ms: percentile(latencies, 99),
  };
}

export async function benchProtocol(opts: ProtocolBenchOptions): Promise<ProtocolBenchResult> {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-bench-'));
  const ca = createCA({ commonName: 'Bench CA' });
  writeFileSync(join(dir, 'ca.pem'), ca.certPem);
  const server = await startBenchServer(dir, join(dir, 'ca.pem'));
  try {
    const url = server.url;
    // Production log level: the one-line-per-request log is part of the cost being measured.
    const pid = server.pid;
    const rssAtStart = procRssMb(pid);
    const agent = new Agent({ keepAlive: true, maxSockets: opts.concurrency });
    // One key, distinct certificates: issuing is cheap, every device still has its own identity.
    const key = createDeviceIdentity(ca, 'bench-key').key;
    const devices = Array.from(
      { length: opts.devices },
      (_, i) =>
        new SimulatedDevice({
          serverUrl: url,
          identity: createDeviceIdentity(ca, `bench-${i}`, { key }),
          agent,
          serialNumber: `BENCH${String(i).padStart(6, '0')}`,
        }),
    );

    const phases: PhaseResult[] = [];
    phases.push(
      await phase(
        'enroll (Authenticate + TokenUpdate)',
        pid,
        opts.concurrency,
        devices.map((d) => async () => {
          await d.enroll();
          return 2;
        }),
      ),
    );

    const t = performance.now();
    const res = await fetch(`${url}/api/v1/commands`, {
      method: 'POST',
      headers: { authorization: 'Bearer bench-token', 'content-type': 'application/json' },
      body: JSON.stringify({ targets: devices.map((d) => d.udid), command: { RequestType: 'ProfileList' } }),
    });
    if (res.status !== 201) throw new Error(`enqueue failed: ${res.status} ${await res.text()}`);
    const enqueueMs = performance.now() - t;

    const cycle = await phase(
      'command cycle (Idle -> command, Acknowledged -> empty)',
      pid,
      opts.concurrency,
      devices.map((d) => async () => {
        const handled = await d.connect();
        if (handled.length !== 1) throw new Error(`expected one command, got ${handled.length}`);
        return 2;
      }),
    );
    phases.push(cycle);

    const idleJobs: (() => Promise<number>)[] = [];
    for (let r = 0; r < opts.idleRounds; r++) {
      for (const d of devices)
        idleJobs.push(async () => {
          const resp = await d.report({ Status: 'Idle', UDID: d.udid });
          if (resp.status !== 200 || resp.body.length !== 0) throw new Error(`idle: ${resp.status}`);
          return 1;
        });
    }
    phases.push(await phase('signed Idle, empty queue', pid, opts.concurrency, idleJobs));
    phases.push({
      name: `enqueue 1 command to ${opts.devices} targets (one API call)`,
      requests: 1,
      seconds: enqueueMs / 1000,
      requestsPerSec: NaN,
      serverCpuMsPerRequest: NaN,
      dbCpuMsPerRequest: NaN,
      p50ms: enqueueMs,
      p99ms: enqueueMs,
    });

    const rss = procRssMb(pid);
    agent.destroy();
    return {
      devices: opts.devices,
      concurrency: opts.concurrency,
      phases,
      cyclesPerSec: cycle.requestsPerSec / 2,
      serverRssMb: rss,
      serverRssAtStartMb: rssAtStart,
    };
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
