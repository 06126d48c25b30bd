/**
 * Slow and greedy clients on real sockets against a server configured with short limits: a body
 * trickled a byte at a time, a body shorter than declared, headers that never end, idle
 * keep-alive connections and too many connections are all answered 408 or closed, while other
 * devices keep being served.
 */
import { connect, type Socket } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { createDeviceIdentity } from '../../src/identity/ca.js';
import { signDetached } from '../../src/identity/cms-sign.js';
import { buildPlist } from '../../src/protocol/plist.js';
import { SimulatedDevice } from '../../src/sim/device.js';
import { openssl } from '../helpers/openssl.js';
import { http, startTestServer, type TestServer } from '../helpers/server.js';

// Short, yet long enough that a test process starved of CPU for a moment still reads the headers in time.
const HEADERS_MS = 1000;
const BODY_MS = 1500;
const KEEP_ALIVE_MS = 600;
// Generous: a connection still open this long after its bound is held open, not slow to close.
const CLOSED_WITHIN = 10 * (HEADERS_MS + BODY_MS);

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ headersTimeoutMs: HEADERS_MS, requestTimeoutMs: BODY_MS, keepAliveTimeoutMs: KEEP_ALIVE_MS, maxBodyBytes: 4096 });
});
afterAll(async () => {
  await server.stop();
});

/** A raw connection: what the server sent, and whether (and when) it closed. */
interface Raw {
  socket: Socket;
  received: () => string;
  /** Resolves when the server closes the connection; rejects if it is still open after `ms`. */
  closed: (ms?: number) => Promise<void>;
}

async function raw(url: string): Promise<Raw> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  let data = '';
  socket.on('data', (d: Buffer) => {
    data += d.toString('latin1');
  });
  socket.on('error', () => undefined); // a reset is one way of being closed
  const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return {
    socket,
    received: () => data,
    closed: (ms = CLOSED_WITHIN) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          socket.destroy();
          reject(new Error(`still open after ${ms} ms; received ${JSON.stringify(data.slice(0, 200))}`));
        }, ms);
        void ended.then(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}

const statusOf = (response: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(response)?.[1]);

function putHead(length: number, path = '/mdm/checkin'): string {
  return `PUT ${path} HTTP/1.1\r\nHost: device\r\nContent-Type: application/x-apple-aspen-mdm-checkin\r\nContent-Length: ${length}\r\n\r\n`;
}

/** Writes one byte every `everyMs` until the server closes the connection. */
function trickle(c: Raw, byte: string, everyMs: number): void {
  const timer = setInterval(() => {
    if (c.socket.destroyed || c.socket.writableEnded) clearInterval(timer);
    else c.socket.write(byte);
  }, everyMs);
  c.socket.once('close', () => clearInterval(timer));
}

/**
 * An enrolled device checking in over and over until `until` settles: every answer must be 200.
 * Enrolled before the slow connection opens: making its key blocks the event loop this test
 * shares with the server, and a loop blocked past the headers timeout times out headers that
 * arrived but were not read yet.
 */
async function servingDevice(): Promise<(until: Promise<unknown>) => Promise<number>> {
  const dev = server.device();
  await dev.enroll();
  return async (until) => {
    let done = false;
    void until.finally(() => {
      done = true;
    });
    let served = 0;
    while (!done) {
      const res = await dev.report({ Status: 'Idle', UDID: dev.udid });
      expect(res.status).toBe(200);
      served++;
    }
    return served;
  };
}

describe('slow clients', () => {
  it('a body trickled a byte at a time is answered 408 and closed, with a log line that quotes nothing of it', async () => {
    const keepServing = await servingDevice();
    const before = server.logs.length;
    const c = await raw(server.url);
    c.socket.write(putHead(3000));
    trickle(c, 'Q', 50);
    const served = await keepServing(c.closed());
    await c.closed();
    expect(statusOf(c.received())).toBe(408);
    expect(c.received()).toMatch(/\r\nconnection: close\r\n/i);
    expect(served).toBeGreaterThan(0);
    const line = server.logs.slice(before).find((l) => l.status === 408);
    expect(line?.reason).toBe(`body not complete within ${BODY_MS} ms`);
    expect(JSON.stringify(server.logs.slice(before))).not.toContain('QQQ');
  });

  it('a body shorter than its Content-Length is answered 408 and closed', async () => {
    const keepServing = await servingDevice();
    const c = await raw(server.url);
    c.socket.write(`${putHead(2000)}<?xml version="1.0"?><plist>`);
    const served = await keepServing(c.closed());
    await c.closed();
    expect(statusOf(c.received())).toBe(408);
    expect(served).toBeGreaterThan(0);
  });

  it('a chunked body that never ends is answered 408 and closed', async () => {
    const c = await raw(server.url);
    c.socket.write('PUT /mdm/connect HTTP/1.1\r\nHost: device\r\nContent-Type: application/x-apple-aspen-mdm\r\nTransfer-Encoding: chunked\r\n\r\n');
    trickle(c, '1\r\nx\r\n', 50);
    await c.closed();
    expect(statusOf(c.received())).toBe(408);
  });

  it('headers that never end, and a connection that sends nothing, are answered 408 and closed', async () => {
    const keepServing = await servingDevice();
    const partial = await raw(server.url);
    partial.socket.write('PUT /mdm/checkin HTTP/1.1\r\nHost: device\r\n');
    trickle(partial, 'X', 50); // one endless header line
    const silent = await raw(server.url);
    const served = await keepServing(Promise.all([partial.closed(), silent.closed()]));
    await Promise.all([partial.closed(), silent.closed()]);
    expect(statusOf(partial.received())).toBe(408);
    expect(served).toBeGreaterThan(0);
    // Nothing was asked, so any answer is Node's 408 or none at all: either way, closed.
    expect(silent.received()).toMatch(/^$|^HTTP\/1\.1 408/);
  });

  it('a declared body over the size limit is refused 413 at once and the connection closed, not drained', async () => {
    const c = await raw(server.url);
    c.socket.write(putHead(1_000_000));
    trickle(c, 'Z', 50);
    await c.closed();
    expect(statusOf(c.received())).toBe(413);
    // Closed by the server once answered, rather than drained until the request timeout.
    expect(c.received()).toMatch(/\r\nconnection: close\r\n/i);
  });

  it('a keep-alive connection serves a whole device session, and is closed once idle', async () => {
    const identity = createDeviceIdentity(server.ca, 'keep-alive');
    const dev = new SimulatedDevice({ serverUrl: server.url, identity });
    await dev.enroll();
    const idle = buildPlist({ Status: 'Idle', UDID: dev.udid });
    const req = `PUT /mdm/connect HTTP/1.1\r\nHost: device\r\nContent-Type: application/x-apple-aspen-mdm\r\nMdm-Signature: ${signDetached(idle, identity)}\r\nContent-Length: ${idle.length}\r\n\r\n${idle.toString('latin1')}`;
    const c = await raw(server.url);
    c.socket.write(req);
    c.socket.write(req);
    await c.closed();
    expect(c.received().match(/^HTTP\/1\.1 200/gm)).toHaveLength(2);
  });
});

describe('connection limit', () => {
  it('connections beyond --max-connections are closed as they arrive; others are served, and a freed slot is used again', async () => {
    const small = await startTestServer({ maxConnections: 3 });
    try {
      const held = await Promise.all([raw(small.url), raw(small.url), raw(small.url)]);
      // The three are accepted: each gets an answer on its connection.
      for (const h of held) h.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      await Promise.all(
        held.map(
          (h) =>
            new Promise<void>((resolve) => {
              const check = () => (statusOf(h.received()) === 200 ? resolve() : h.socket.once('data', check));
              check();
            }),
        ),
      );
      const extra = await raw(small.url);
      extra.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      await extra.closed();
      expect(extra.received()).toBe('');
      held[0]!.socket.destroy();
      await held[0]!.closed();
      expect((await http(`${small.url}/healthz`, { headers: { connection: 'close' } })).status).toBe(200);
      for (const h of held) h.socket.destroy();
    } finally {
      await small.stop();
    }
  });
});

describe('native TLS (--tls-cert)', () => {
  it('a connection that never finishes the TLS handshake is closed after the headers timeout', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'orchard-tls-'));
    const [cert, key] = [join(dir, 'cert.pem'), join(dir, 'key.pem')];
    openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1']);
    const tls = await startTestServer({ tlsCert: cert, tlsKey: key, headersTimeoutMs: HEADERS_MS, requestTimeoutMs: BODY_MS });
    try {
      const stalled = await raw(tls.url.replace('https:', 'http:'));
      stalled.socket.write(Buffer.from([0x16, 0x03, 0x01])); // the start of a ClientHello, and no more
      await stalled.closed();
      expect(stalled.received()).toBe('');
    } finally {
      await tls.stop();
    }
  });
});

describe('configuration', () => {
  it('flags and file keys set the limits; defaults are 10 s, 30 s, 65 s and 10,000', () => {
    const d = loadConfig({});
    expect([d.headersTimeoutMs, d.requestTimeoutMs, d.keepAliveTimeoutMs, d.maxConnections]).toEqual([10_000, 30_000, 65_000, 10_000]);
    const dir = mkdtempSync(join(tmpdir(), 'orchard-limits-'));
    const file = join(dir, 'orchard.yaml');
    writeFileSync(file, 'headersTimeout: 5s\nrequestTimeout: 1m\nkeepAliveTimeout: 2m\nmaxConnections: 500\n');
    const f = loadConfig({ config: file });
    expect([f.headersTimeoutMs, f.requestTimeoutMs, f.keepAliveTimeoutMs, f.maxConnections]).toEqual([5000, 60_000, 120_000, 500]);
    const g = loadConfig({ config: file, headersTimeout: '2s', requestTimeout: '20s', keepAliveTimeout: '90s', maxConnections: '42' });
    expect([g.headersTimeoutMs, g.requestTimeoutMs, g.keepAliveTimeoutMs, g.maxConnections]).toEqual([2000, 20_000, 90_000, 42]);
    expect(() => loadConfig({ requestTimeout: '0s' })).toThrow(ConfigError);
    expect(() => loadConfig({ maxConnections: '-1' })).toThrow(/max-connections/);
  });
});
