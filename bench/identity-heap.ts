/**
 * Live heap of a real server while it refuses requests that name ever new devices and users
 * (issue 11 item 7: the identity caches must not grow with them).
 *
 *   npx tsc -p tsconfig.json && node --expose-gc dist/bench/identity-heap.js [--requests 100000] [--concurrency 32]
 *
 * One enrolled device's certificate (from a proxy header, so the client spends no CPU on CMS)
 * sends Idle reports: half name a random unknown UDID (403), half its own UDID with a random
 * UserID (200, no such channel). After a forced GC at each checkpoint it prints the live heap and
 * the cache sizes as a Markdown table.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { DEFAULTS } from '../src/config.js';
import { createCA, createDeviceIdentity } from '../src/identity/ca.js';
import { buildPlist } from '../src/protocol/plist.js';
import { startServer } from '../src/server.js';

const { values } = parseArgs({ options: { requests: { type: 'string', default: '100000' }, concurrency: { type: 'string', default: '32' } } });
const total = Number(values.requests);
const concurrency = Number(values.concurrency);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

const dir = mkdtempSync(join(tmpdir(), 'orchard-identity-heap-'));
const ca = createCA({ commonName: 'Heap Bench CA' });
writeFileSync(join(dir, 'ca.pem'), ca.certPem);
const server = await startServer(
  { ...DEFAULTS, listen: { host: '127.0.0.1', port: 0 }, dataDir: join(dir, 'data'), trustCa: [join(dir, 'ca.pem')], certHeader: 'X-Client-Cert' },
  { log: pino({ level: 'silent' }) },
);
const url = new URL(server.url);
const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
const identity = createDeviceIdentity(ca, 'heap-probe');
const certHeader = `:${identity.certDer.toString('base64')}:`;
const UDID = 'B0B0B0B0-0000-4000-8000-000000000001';

function put(path: string, dict: Record<string, unknown>): Promise<number> {
  const body = buildPlist(dict as Parameters<typeof buildPlist>[0]);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path,
        method: 'PUT',
        agent,
        headers: { 'content-type': 'application/x-apple-aspen-mdm', 'content-length': body.length, 'x-client-cert': certHeader },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const topic = 'com.apple.mgmt.External.bench';
if ((await put('/mdm/checkin', { MessageType: 'Authenticate', UDID, Topic: topic, SerialNumber: 'HEAPBENCH01' })) !== 200)
  throw new Error('Authenticate failed');
if ((await put('/mdm/checkin', { MessageType: 'TokenUpdate', UDID, Topic: topic, Token: new Uint8Array([1, 2, 3]), PushMagic: 'm' })) !== 200)
  throw new Error('TokenUpdate failed');

const sizes = () => {
  const s = server.service as unknown as { cacheSizes?: () => Record<string, number> };
  const st = server.store as unknown as { cacheSizes?: () => Record<string, number> };
  return { ...(s.cacheSizes?.() ?? {}), ...(st.cacheSizes?.() ?? {}) };
};
const heapMiB = () => {
  gc();
  gc();
  return process.memoryUsage().heapUsed / 2 ** 20;
};

const checkpoints = [0, 10_000, 25_000, 50_000, 100_000, 200_000, 500_000].filter((n) => n <= total);
if (!checkpoints.includes(total)) checkpoints.push(total);
const rows: string[] = [];
const base = heapMiB();
let sent = 0;
const statuses = new Map<number, number>();
for (const cp of checkpoints) {
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (sent < cp) {
        const i = sent++;
        const dict = i % 2 === 0 ? { Status: 'Idle', UDID: randomUUID().toUpperCase() } : { Status: 'Idle', UDID, UserID: randomUUID().toUpperCase() };
        const status = await put('/mdm/connect', dict);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    }),
  );
  const h = heapMiB();
  rows.push(`| ${cp.toLocaleString('en-US')} | ${h.toFixed(1)} | ${(h - base).toFixed(1)} | ${JSON.stringify(sizes())} |`);
}
console.log(
  `Node ${process.version}; ${total.toLocaleString('en-US')} requests, concurrency ${concurrency}; answers ${JSON.stringify(Object.fromEntries(statuses))}\n`,
);
console.log('| requests | live heap MiB | growth MiB | caches |\n|---:|---:|---:|---|');
for (const r of rows) console.log(r);
agent.destroy();
await server.close();
rmSync(dir, { recursive: true, force: true });
