/** Start a real Orchard server on a loopback port with a real LevelDB directory and a real CA. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { DEFAULTS, type ServerConfig } from '../../src/config.js';
import { createCA, createDeviceIdentity, type CertifiedKey } from '../../src/identity/ca.js';
import { startServer, type RunningServer, type StartOptions } from '../../src/server.js';
import { SimulatedDevice, type SimOptions } from '../../src/sim/device.js';

export interface LogLine {
  level: number;
  msg: string;
  status?: number;
  reason?: string;
  device?: string;
  outcome?: string;
  [key: string]: unknown;
}

export interface TestServer extends RunningServer {
  dir: string;
  ca: CertifiedKey;
  caFile: string;
  logs: LogLine[];
  adminToken: string;
  readToken: string;
  device(opts?: Partial<SimOptions> & { cn?: string }): SimulatedDevice;
  stop(): Promise<void>;
}

export async function startTestServer(overrides: Partial<ServerConfig> = {}, opts: StartOptions = {}): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-test-'));
  const ca = createCA({ commonName: 'Orchard Test CA' });
  const caFile = join(dir, 'ca.pem');
  writeFileSync(caFile, ca.certPem);
  const logs: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as LogLine);
      cb();
    },
  });
  const cfg: ServerConfig = {
    ...DEFAULTS,
    listen: { host: '127.0.0.1', port: 0 },
    dataDir: join(dir, 'data'),
    trustCa: [caFile],
    ...overrides,
  };
  const adminToken = 'admin-secret-token';
  const readToken = 'read-secret-token';
  const server = await startServer(cfg, { log: pino({ level: 'info' }, sink), adminToken, readToken, ...opts });
  let n = 0;
  return {
    ...server,
    dir,
    ca,
    caFile,
    logs,
    adminToken,
    readToken,
    device(o = {}) {
      const identity = createDeviceIdentity(ca, o.cn ?? `device-${++n}`);
      return new SimulatedDevice({ serverUrl: server.url, identity, ...o });
    },
    async stop() {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A loopback port free now, for a server that must know its own URL before it listens (--public-url). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** A plain HTTP request to the server (for hand-made bodies and the admin API). */
export async function http(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: Buffer | string } = {},
): Promise<{ status: number; text: string; json: () => unknown }> {
  // A type-only cast: fetch's BodyInit wants a Buffer over an ArrayBuffer, and every Buffer here is one.
  const res = await fetch(url, { method: init.method ?? 'GET', headers: init.headers, body: init.body as Uint8Array<ArrayBuffer> | string | undefined });
  const text = await res.text();
  return { status: res.status, text, json: () => JSON.parse(text) };
}
