/**
 * Hostile bodies against a real `orchard serve` child process: each is signed by an enrolled
 * device and posted to /mdm/connect while a probe in the server process
 * (ORCHARD_BENCH_LOOP_PROBE, perf_hooks.monitorEventLoopDelay) records how long the event loop
 * was blocked, and a second client polls /healthz. Also the parser alone: the new parser against
 * the `plist` package (xmldom DOM) on the real device captures and on a Mac's 2,000-app
 * InstalledApplicationList.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as packageParse } from 'plist';
import { createCA, createDeviceIdentity } from '../src/identity/ca.js';
import { signDetached } from '../src/identity/cms-sign.js';
import { buildPlist, parsePlist } from '../src/protocol/plist.js';
import { installedApplicationListReport } from '../src/sim/app-list.js';
import { SimulatedDevice } from '../src/sim/device.js';
import { procCpuMs } from './protocol.js';

export const MAX_BODY = 8 * 1024 * 1024;

const HEAD =
  '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n<plist version="1.0">\n';

/** A command report around `inner` (more keys of the top dict), as a device would send it. */
function report(udid: string, inner: string): string {
  return `${HEAD}<dict>\n<key>CommandUUID</key><string>0F6C1B77-2C5E-4E43-9A7B-3A1C2D4E5F60</string>\n<key>Status</key><string>Acknowledged</string>\n<key>UDID</key><string>${udid}</string>\n${inner}</dict>\n</plist>\n`;
}

/** Repeat `unit(i)` while the body stays under `budget` characters (or `count` times). */
function fill(budget: number, count: number, unit: (i: number) => string): string {
  const parts: string[] = [];
  let size = 0;
  for (let i = 0; i < count; i++) {
    const u = unit(i);
    if (size + u.length > budget) break;
    parts.push(u);
    size += u.length;
  }
  return parts.join('');
}

/** Named hostile bodies for one device, each at most `max` bytes. */
export function hostileBodies(udid: string, max = MAX_BODY): { name: string; body: Buffer<ArrayBuffer>; commandUUID?: string }[] {
  const room = max - report(udid, '').length - 64;
  const make = (inner: string) => Buffer.from(report(udid, inner));
  const bodies: [string, string][] = [
    ['200k keys (7.9 MB)', `<key>Q</key><dict>\n${fill(room - 20, 200_000, (i) => `<key>k${String(i).padStart(6, '0')}</key><string>v</string>\n`)}</dict>\n`],
    ['700k empty elements', `<key>Q</key><array>${fill(room - 20, 700_000, () => '<dict/>')}</array>\n`],
    ['8,000 levels of nesting', `<key>Q</key>${'<array>'.repeat(8000)}${'</array>'.repeat(8000)}\n`],
    ['1M levels of nesting (8 MB)', `<key>Q</key>${'<array>'.repeat(Math.floor(room / 15))}${'</array>'.repeat(Math.floor(room / 15))}\n`],
    ['one 8 MB string', `<key>Q</key><string>${'A'.repeat(room - 30)}</string>\n`],
    ['entity-dense strings within the string limit', fill(room, 1000, () => `<key>Q</key><string>${'&amp;&#x41;'.repeat(95_000)}</string>\n`)],
    ['1 MB data values', fill(room, 1000, (i) => `<key>D${i}</key><data>${'QUJD'.repeat(260_000)}</data>\n`)],
    ['127k integers, within the limits', `<key>Q</key><array>${fill(room - 20, 127_000, (i) => `<integer>${i * 7919}</integer>`)}</array>\n`],
    [
      '8,000 distinct long keys in one dict, within the limits',
      `<key>Q</key><dict>${fill(room - 20, 8000, (i) => `<key>com.example.preference.key.${String(i).padStart(8, '0')}.x</key><true/>`)}</dict>\n`,
    ],
    [
      '25k dicts of distinct shapes, within the limits',
      `<key>Q</key><array>${fill(room - 20, 25_000, (i) => `<dict><key>a${i % 4000}</key><true/><key>b${Math.floor(i / 4000)}</key><true/></dict>`)}</array>\n`,
    ],
    ["a Mac's InstalledApplicationList, 2,000 apps (legitimate, recorded)", 'apps:2000'],
    ["a Mac's InstalledApplicationList, 3,900 apps (within the limits)", 'apps:3900'],
    ['8 MB of whitespace', `<key>Q</key>${' '.repeat(room - 30)}<true/>\n`],
    ['comments', `<key>Q</key>${fill(room - 20, 2_000_000, () => '<!---->')}<true/>\n`],
    ['attributes', `<key>Q</key><dict ${fill(room - 20, 2_000_000, () => 'a="" ')}/>\n`],
    ['invalid date', '<key>QueryResponses</key><dict><key>At</key><date>not-a-date</date></dict>\n'],
  ];
  // The app lists answer a command of their own (queue it first to have the report recorded).
  return bodies.map(([name, inner]) => {
    if (!inner.startsWith('apps:')) return { name, body: make(inner) };
    const n = Number(inner.slice(5));
    const commandUUID = `APPS-${n}-0000-4000-8000-000000000000`;
    return { name, body: Buffer.from(buildPlist(installedApplicationListReport(n, { udid, commandUUID }))), commandUUID };
  });
}

export interface HostileRow {
  name: string;
  bytes: number;
  status: number;
  ms: number;
  serverCpuMs: number;
  maxBlockMs: number;
  healthzMaxMs: number;
}

export interface ParseRow {
  input: string;
  bytes: number;
  newMs: number;
  packageMs: number;
}

function timeEach(fn: () => void, minMs = 300): number {
  fn();
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < minMs || n < 3) {
    fn();
    n++;
  }
  return (performance.now() - t0) / n;
}

/** Parse times, ms per document (package: the `plist` package, as before this parser). */
export function benchParse(): ParseRow[] {
  // From bench/ (tests) or dist/bench/ (npm run bench): the captures are in the source tree.
  const root = import.meta.dirname.endsWith(join('dist', 'bench')) ? join(import.meta.dirname, '../..') : join(import.meta.dirname, '..');
  const dir = join(root, 'test/fixtures/vectors/nanomdm');
  const captures = readdirSync(dir)
    .filter((f) => f.endsWith('.plist'))
    .map((f) => readFileSync(join(dir, f)));
  const rows: ParseRow[] = [];
  const row = (input: string, docs: Buffer[]) => {
    const bytes = docs.reduce((a, d) => a + d.length, 0);
    const newMs =
      timeEach(() => {
        for (const d of docs) parsePlist(d);
      }) / docs.length;
    const packageMs =
      timeEach(() => {
        for (const d of docs) packageParse(d.toString('utf8'));
      }) / docs.length;
    rows.push({ input, bytes: Math.round(bytes / docs.length), newMs, packageMs });
  };
  row(`the ${captures.length} nanomdm device captures (mean)`, captures);
  // Issue 18's goal: a 1 MB InstalledApplicationList in under 20 ms (1,050 apps are 1.00 MB).
  row('InstalledApplicationList, 1 MB (1,050 apps)', [buildPlist(installedApplicationListReport(1050))]);
  row('InstalledApplicationList, 2,000 apps', [buildPlist(installedApplicationListReport(2000))]);
  row('InstalledApplicationList, 3,900 apps (~125k elements)', [buildPlist(installedApplicationListReport(3900))]);
  return rows;
}

/** The parser alone on each hostile body, in this process: ms per parse (to its value or its refusal). */
export function benchParseHostile(): { name: string; bytes: number; ms: number; outcome: string }[] {
  return hostileBodies('5A7E4C1D-0B2F-4E6A-9C8D-7F1E2D3C4B5A').map(({ name, body }) => {
    let outcome = 'value';
    const ms = timeEach(() => {
      try {
        parsePlist(body);
      } catch (err) {
        outcome = (err as Error).message.replace(/ at line \d+, col \d+$/, '');
      }
    });
    return { name, bytes: body.length, ms, outcome };
  });
}

export async function benchHostile(): Promise<HostileRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-bench-hostile-'));
  const ca = createCA({ commonName: 'Bench CA' });
  writeFileSync(join(dir, 'ca.pem'), ca.certPem);
  const cli = join(import.meta.dirname, '../src/cli/main.js');
  const probe = join(dir, 'probe.mjs');
  // Loaded into the server with --import: every 'block' request asks it for the worst delay
  // since the last one, through stdin/stdout so as not to touch the server's routes.
  writeFileSync(
    probe,
    `
import { monitorEventLoopDelay } from 'node:perf_hooks';
const h = monitorEventLoopDelay({ resolution: 5 });
h.enable();
process.stdin.on('data', (d) => {
  for (const line of d.toString().split('\\n')) {
    if (line.trim() !== 'block') continue;
    process.stderr.write('PROBE ' + (h.max / 1e6).toFixed(1) + '\\n');
    h.reset();
  }
});
`,
  );
  // ORCHARD_BENCH_PROF=DIR writes a V8 CPU profile of the server there, as in bench/protocol.ts.
  const prof = process.env.ORCHARD_BENCH_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.ORCHARD_BENCH_PROF}`] : [];
  const child = spawn(
    process.execPath,
    [
      ...prof,
      '--import',
      probe,
      cli,
      'serve',
      '--listen',
      '127.0.0.1:0',
      '--data-dir',
      join(dir, 'data'),
      '--trust-ca',
      join(dir, 'ca.pem'),
      '--log-level',
      'info',
    ],
    {
      env: { ...process.env, ORCHARD_API_TOKEN: 'bench-token' },
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );
  let err = '';
  const waiters: ((ms: number) => void)[] = [];
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    for (let m = /PROBE ([\d.]+)\n/.exec(err); m; m = /PROBE ([\d.]+)\n/.exec(err)) {
      err = err.slice(m.index + m[0].length);
      waiters.shift()?.(Number(m[1]));
    }
  });
  const maxBlock = () =>
    new Promise<number>((resolve) => {
      waiters.push(resolve);
      child.stdin!.write('block\n');
    });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      let listening = false;
      // One log line per request follows; only the listening line is wanted.
      child.stdout!.on('data', (d: Buffer) => {
        if (listening) return;
        out += d.toString();
        const m = /"url":"(http[^"]+)"[^\n]*"msg":"orchard listening"/.exec(out);
        if (m) {
          listening = true;
          resolve(m[1]!);
        }
      });
      child.once('exit', (code) => reject(new Error(`server exited ${code}: ${err}`)));
    });
    const identity = createDeviceIdentity(ca, 'hostile');
    const device = new SimulatedDevice({ serverUrl: url, identity });
    await device.enroll();
    const rows: HostileRow[] = [];
    for (const { name, body, commandUUID } of hostileBodies(device.udid)) {
      if (commandUUID) {
        const q = await fetch(`${url}/api/v1/commands`, {
          method: 'POST',
          headers: { authorization: 'Bearer bench-token', 'content-type': 'application/json' },
          body: JSON.stringify({ targets: [device.udid], commandUUID, command: { RequestType: 'InstalledApplicationList' } }),
        });
        if (q.status !== 201) throw new Error(`enqueue failed: ${q.status} ${await q.text()}`);
      }
      const sig = signDetached(body, identity);
      await new Promise((r) => setTimeout(r, 200));
      await maxBlock(); // reset
      // /healthz polled meanwhile: its slowest answer is what other requests waited.
      let polling = true;
      let healthzMax = 0;
      const poller = (async () => {
        while (polling) {
          const t = performance.now();
          await fetch(`${url}/healthz`).then((r) => r.arrayBuffer());
          healthzMax = Math.max(healthzMax, performance.now() - t);
          await new Promise((r) => setTimeout(r, 5));
        }
      })();
      const cpu0 = procCpuMs(child.pid!);
      const t0 = performance.now();
      const res = await fetch(`${url}/mdm/connect`, {
        method: 'PUT',
        body,
        headers: { 'content-type': 'application/x-apple-aspen-mdm', 'mdm-signature': sig },
      });
      await res.arrayBuffer();
      const ms = performance.now() - t0;
      const serverCpuMs = procCpuMs(child.pid!) - cpu0;
      await new Promise((r) => setTimeout(r, 50));
      polling = false;
      await poller;
      rows.push({ name, bytes: body.length, status: res.status, ms, serverCpuMs, maxBlockMs: await maxBlock(), healthzMaxMs: healthzMax });
    }
    return rows;
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

export function formatHostile(parse: ParseRow[], alone: ReturnType<typeof benchParseHostile>, rows: HostileRow[]): string {
  const f = (n: number, d = 1) => n.toFixed(d);
  const lines = [
    '## Plist parser: time per document, this parser vs the `plist` package (xmldom)\n',
    '| input | bytes | this parser ms | `plist` package ms | speed-up |',
    '|---|---|---|---|---|',
  ];
  for (const r of parse) lines.push(`| ${r.input} | ${r.bytes} | ${f(r.newMs, 3)} | ${f(r.packageMs, 3)} | ${f(r.packageMs / r.newMs)}× |`);
  lines.push('\n## Plist parser alone on the hostile bodies (device limits)\n', '| body | bytes | parse ms | outcome |', '|---|---|---|---|');
  for (const r of alone) lines.push(`| ${r.name} | ${r.bytes} | ${f(r.ms)} | ${r.outcome} |`);
  lines.push('\n## Hostile bodies: signed, to /mdm/connect of a real server, one at a time\n');
  lines.push(
    '| body | bytes | status | request ms | server CPU ms (all threads, 10 ms ticks) | worst event-loop block ms | slowest /healthz meanwhile ms |',
    '|---|---|---|---|---|---|---|',
  );
  for (const r of rows)
    lines.push(`| ${r.name} | ${r.bytes} | ${r.status} | ${f(r.ms)} | ${f(r.serverCpuMs, 0)} | ${f(r.maxBlockMs)} | ${f(r.healthzMaxMs)} |`);
  lines.push(
    "\nGoal: no request blocks the event loop for more than 100 ms. The block includes reading the body, verifying its signature and whatever the service does with an accepted body (recording a report and its reported state). On a loaded machine the block is stretched by other processes; the server CPU column is the request's own cost.\n",
  );
  return lines.join('\n');
}
