/**
 * A big per-device profile against a live server (issue 10 item 5): a ~5 MB profile that uses
 * `${device.SerialNumber}`, selected for 200 enrolled devices that do not have it yet. The server
 * runs in a child process on a seeded LevelDB store; this process measures, while the child
 * reconciles, the latency of `GET /healthz` (every 20 ms) and of a signed device `Idle` (every
 * 100 ms), each sent when due whether or not the previous one was answered. Reported: reconcile
 * wall time, the child's peak RSS during the reconcile (VmHWM, reset after the fleet is loaded),
 * and the latency percentiles during the reconcile.
 *
 * Standalone: `node dist/bench/reconcile-latency.js [devices] [profileMb]`; ORCHARD_BENCH_PROF=DIR
 * writes the server's CPU profile there (`node bench/profile-summary.mjs DIR/*.cpuprofile`).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pino } from 'pino';
import { createCA, createDeviceIdentity } from '../src/identity/ca.js';
import { loadFleet } from '../src/gitops/load.js';
import type { Pusher } from '../src/push/push.js';
import { DEFAULTS } from '../src/config.js';
import { startServer } from '../src/server.js';
import { SimulatedDevice } from '../src/sim/device.js';
import { LevelStore } from '../src/store/leveldb.js';

export interface LatencyStats {
  requests: number;
  /** Requests that failed (connection reset or refused by a stalled server); not in the percentiles. */
  errors: number;
  p50ms: number;
  p99ms: number;
  maxMs: number;
}

export interface ReconcileLatencyResult {
  devices: number;
  /** Size of one device's rendered profile (the InstallProfile payload). */
  profileMb: number;
  reconcileSeconds: number;
  queued: number;
  /** Child (server) RSS after loading the fleet, and its peak during the reconcile. */
  rssBeforeMb: number;
  peakRssMb: number;
  healthzIdle: LatencyStats;
  healthz: LatencyStats;
  deviceIdle: LatencyStats;
}

/** Notification settings for `entries` apps (the bulk), plus a Wi-Fi payload; the serial appears in both. */
export function bigProfileYaml(entries: number): string {
  const lines: string[] = [];
  for (let i = 0; i < entries; i++) {
    const id = i === Math.floor(entries / 2) ? 'com.example.device-${device.SerialNumber}' : `com.example.vendor${i % 97}.app${i}`;
    lines.push(
      `          - {BundleIdentifier: "${id}", NotificationsEnabled: true, ShowInNotificationCenter: ${i % 2 === 0}, ShowInLockScreen: false, AlertType: ${i % 3}, BadgesEnabled: true, SoundsEnabled: ${i % 5 === 0}}`,
    );
  }
  return `apiVersion: orchard/v1
kind: Profile
metadata: {name: big}
spec:
  identifier: com.example.big
  displayName: Big per-device profile
  payloads:
    - type: com.apple.wifi.managed
      keys: {SSID_STR: "lab-\${device.SerialNumber}", AutoJoin: true}
    - type: com.apple.notificationsettings
      keys:
        NotificationSettings:
${lines.join('\n')}
`;
}

const BLUEPRINT = 'apiVersion: orchard/v1\nkind: Blueprint\nmetadata: {name: macs}\nspec:\n  selector:\n    platforms: [macOS]\n  profiles: [big]\n';

function percentiles(xs: number[]): LatencyStats {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  const at = (p: number) => (s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : NaN);
  return { requests: xs.length, errors: xs.length - s.length, p50ms: at(50), p99ms: at(99), maxMs: s.length ? s[s.length - 1]! : NaN };
}

const agent = new Agent({ keepAlive: true });
function healthz(url: string): Promise<number> {
  const t = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(`${url}/healthz`, { agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(performance.now() - t));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * Requests at a steady rate, each timed from when it is due, whether or not earlier ones were
 * answered (as devices arrive): a server that stalls for 10 s shows 10 s of slow requests, not
 * one.
 */
function loop(fn: () => Promise<number>, everyMs: number): { stop: () => Promise<number[]> } {
  const pending: Promise<number>[] = [];
  // A failed request is NaN: counted as an error.
  const timer = setInterval(() => pending.push(fn().catch(() => NaN)), everyMs);
  return { stop: async () => (clearInterval(timer), Promise.all(pending)) };
}

export async function benchReconcileLatency(devices = 200, profileMb = 5): Promise<ReconcileLatencyResult> {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-bench-bigprofile-'));
  try {
    const fleetDir = join(dir, 'fleet');
    mkdirSync(fleetDir);
    // ~507 bytes of rendered plist per notification entry.
    writeFileSync(join(fleetDir, 'big.yaml'), bigProfileYaml(Math.round((profileMb * 1024 * 1024) / 507)));
    writeFileSync(join(fleetDir, 'blueprint.yaml'), BLUEPRINT);
    const ca = createCA({ commonName: 'Bench CA' });
    const caFile = join(dir, 'ca.pem');
    writeFileSync(caFile, ca.certPem);

    // Enrolled Macs that reported an empty ProfileList: every one needs the big profile.
    const store = await LevelStore.open(join(dir, 'data'));
    const at = new Date();
    for (let n = 0; n < devices; n++) {
      const id = `BIG-${n}`;
      const facts = { UDID: id, Topic: 't', SerialNumber: `C02BIG${String(n).padStart(5, '0')}`, Model: 'Mac14,2', ProductName: 'Mac14,2', OSVersion: '15.1' };
      await store.authenticate(id, facts, { certHash: `c${n}`, issuerHash: 'i', subject: '', notAfter: '' }, at);
      await store.tokenUpdate({ id, deviceId: id, type: 'device', active: true, createdAt: at.toISOString(), updatedAt: at.toISOString() });
      const uuid = `seed-${n}`;
      await store.enqueue([id], { uuid, requestType: 'ProfileList', payload: Buffer.from('x') }, at);
      await store.recordResult(
        id,
        uuid,
        { status: 'Acknowledged', at: at.toISOString(), raw: Buffer.from('r') },
        { ProfileList: { at: at.toISOString(), commandUUID: uuid, value: [] } },
      );
    }
    await store.close();

    // ORCHARD_BENCH_PROF=DIR: a CPU profile of the server process (node --cpu-prof).
    const prof = process.env.ORCHARD_BENCH_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.ORCHARD_BENCH_PROF] : [];
    const child = spawn(process.execPath, [...prof, new URL(import.meta.url).pathname, '--server', dir, caFile], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    const next = async <T>(): Promise<T> => {
      const { value, done } = await lines.next();
      if (done) throw new Error('server child exited');
      return JSON.parse(value as string) as T;
    };
    try {
      const { url } = await next<{ url: string }>();
      // A real enrolled device whose Idle is timed during the reconcile.
      const sim = new SimulatedDevice({
        serverUrl: url,
        identity: createDeviceIdentity(ca, 'bench-idle'),
        serialNumber: 'BENCHIDLE',
        model: 'iPad13,1',
        productName: 'iPad13,1',
      });
      await sim.enroll();
      const idle = async () => {
        const t = performance.now();
        await sim.report({ UDID: sim.udid, Status: 'Idle' });
        return performance.now() - t;
      };
      const quiet = loop(() => healthz(url), 20);
      await new Promise((r) => setTimeout(r, 1000));
      const healthzIdle = percentiles(await quiet.stop());

      child.stdin!.write('go\n');
      const loaded = await next<{ rssMb: number }>();
      const h = loop(() => healthz(url), 20);
      const d = loop(idle, 100);
      const r = await next<{ seconds: number; queued: number; peakRssMb: number; profileBytes: number }>();
      const [hs, ds] = [await h.stop(), await d.stop()];
      return {
        devices,
        profileMb: r.profileBytes / 1024 / 1024,
        reconcileSeconds: r.seconds,
        queued: r.queued,
        rssBeforeMb: loaded.rssMb,
        peakRssMb: r.peakRssMb,
        healthzIdle,
        healthz: percentiles(hs),
        deviceIdle: percentiles(ds),
      };
    } finally {
      child.stdin!.end();
      await new Promise((r) => child.once('exit', r));
    }
  } finally {
    agent.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

const status = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? NaN) / 1024;
const noPush: Pusher = { push: async () => undefined };

/** The server side, in its own process: listen, wait for "go", load the fleet, reconcile it. */
async function serve(dir: string, caFile: string): Promise<void> {
  const server = await startServer(
    { ...DEFAULTS, listen: { host: '127.0.0.1', port: 0 }, dataDir: join(dir, 'data'), trustCa: [caFile], driftIntervalMs: 0, logLevel: 'warn' },
    { log: pino({ level: 'warn' }, pino.destination(2)), pusher: noPush, adminToken: 'bench' },
  );
  const out = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);
  // The parent closes stdin when done, or by dying: never outlive it.
  process.stdin.once('end', () => process.exit(0));
  out({ url: server.url });
  const input = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  await input.next();
  // The loader's default limits refuse profiles over 4 MiB; this case is bigger on purpose. (Cast:
  // the commit measured as "before" predates the options.)
  const load = loadFleet as (dir: string, opts?: { limits?: Record<string, number> }) => ReturnType<typeof loadFleet>;
  const loaded = await load(join(dir, 'fleet'), { limits: { yamlFileBytes: 64 << 20, profileMaxBytes: 64 << 20, profileWarnBytes: 64 << 20 } });
  if (!loaded.fleet) throw new Error(JSON.stringify(loaded.diagnostics.slice(0, 3)));
  const fleet = loaded.fleet;
  // Peak RSS of the reconcile alone: reset the high-water mark after loading (Linux clear_refs 5).
  writeFileSync('/proc/self/clear_refs', '5');
  out({ rssMb: status('VmRSS') });
  const t = performance.now();
  const outcomes = await server.reconciler.apply({ info: { commit: 'big', contentHash: fleet.contentHash }, fleet });
  const seconds = (performance.now() - t) / 1000;
  const peakRssMb = status('VmHWM');
  // The InstallProfile (priority 50) comes before its verifying ProfileList; its payload is base64.
  const cmd = await server.store.nextCommand('BIG-0', { skipNotNow: false });
  const profileBytes = cmd?.requestType === 'InstallProfile' ? Math.round(cmd.payload.length * 0.75) : NaN;
  out({ seconds, queued: outcomes.reduce((n, o) => n + o.queued, 0), peakRssMb, profileBytes });
  await input.next();
  await server.close();
}

if (import.meta.url === `file://${process.argv[1]}`) {
  if (process.argv[2] === '--server') {
    await serve(process.argv[3]!, process.argv[4]!);
  } else {
    console.log(JSON.stringify(await benchReconcileLatency(Number(process.argv[2] ?? 200), Number(process.argv[3] ?? 5)), null, 2));
  }
}
