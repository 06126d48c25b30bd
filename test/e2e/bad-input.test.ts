import { readdirSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDeviceIdentity } from '../../src/identity/ca.js';
import { signDetached } from '../../src/identity/cms-sign.js';
import { buildPlist } from '../../src/protocol/plist.js';
import { SimulatedDevice } from '../../src/sim/device.js';
import { http, startTestServer, type TestServer } from '../helpers/server.js';

const VECTORS = join(import.meta.dirname, '../fixtures/vectors/nanomdm');

let server: TestServer;
let sign: (body: Buffer) => string;
beforeAll(async () => {
  server = await startTestServer({ maxBodyBytes: 64 * 1024 });
  const identity = createDeviceIdentity(server.ca, 'bad-input');
  sign = (body) => signDetached(body, identity);
});
afterAll(async () => {
  await server.stop();
});

function put(body: Buffer | string, type = 'application/x-apple-aspen-mdm-checkin', path = '/mdm/checkin') {
  const buf = Buffer.isBuffer(body) ? body : Buffer.from(body);
  return http(`${server.url}${path}`, { method: 'PUT', body: buf, headers: { 'content-type': type, 'mdm-signature': sign(buf) } });
}

const plist = (inner: string) => `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">${inner}</plist>`;

describe('bad input: a 4xx with a clear reason in the log, and the server keeps serving', () => {
  const cases: [string, () => Promise<{ status: number; text: string }>, RegExp][] = [
    ['malformed XML', () => put(plist('<dict><key>MessageType</key><string>Authenticate</dict>')), /malformed plist/],
    ['a plist that is not a dict', () => put(plist('<array><string>x</string></array>')), /expected a dict/],
    ['missing UDID', () => put(plist('<dict><key>MessageType</key><string>Authenticate</string><key>Topic</key><string>t</string></dict>')), /missing UDID/],
    [
      'unknown MessageType',
      () => put(plist('<dict><key>MessageType</key><string>Reboot</string><key>UDID</key><string>X</string></dict>')),
      /unknown MessageType/,
    ],
    [
      'a DOCTYPE with entities',
      () =>
        put(
          `<?xml version="1.0"?><!DOCTYPE plist [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]><plist><dict><key>MessageType</key><string>&b;</string></dict></plist>`,
        ),
      /DOCTYPE|entit/,
    ],
    ['an undefined entity reference', () => put(plist('<dict><key>MessageType</key><string>&xxe;</string></dict>')), /entity/],
    ['a body over the size limit', () => put(plist(`<dict><key>Pad</key><string>${'x'.repeat(70 * 1024)}</string></dict>`)), /limit/],
    ['wrong content type', () => put(plist('<dict/>'), 'application/json'), /content type/],
    [
      'a JSON content type with a suffix',
      () => put(plist('<dict/>'), 'application/problem+json'),
      /content type "application\/problem\+json" is not an MDM plist/,
    ],
    ['a form upload', () => put(plist('<dict/>'), 'multipart/form-data; boundary=x'), /content type "multipart\/form-data" is not an MDM plist/],
    [
      "curl --data's default content type",
      () => put(plist('<dict/>'), 'application/x-www-form-urlencoded'),
      /content type "application\/x-www-form-urlencoded"/,
    ],
    ['a binary plist', () => put(Buffer.concat([Buffer.from('bplist00'), Buffer.alloc(40)])), /binary plist/],
    ['neither MessageType nor Status', () => put(plist('<dict><key>UDID</key><string>X</string></dict>')), /not an MDM message/],
    [
      'a report without CommandUUID',
      () =>
        put(
          plist('<dict><key>UDID</key><string>X</string><key>Status</key><string>Acknowledged</string></dict>'),
          'application/x-apple-aspen-mdm',
          '/mdm/connect',
        ),
      /CommandUUID/,
    ],
    [
      'a wrongly typed key',
      () => put(plist('<dict><key>MessageType</key><string>Authenticate</string><key>UDID</key><integer>5</integer></dict>')),
      /UDID is an? number, expected a string/,
    ],
    [
      'a malformed Mdm-Signature',
      () =>
        http(`${server.url}/mdm/checkin`, {
          method: 'PUT',
          body: plist('<dict/>'),
          headers: { 'content-type': 'application/x-apple-aspen-mdm-checkin', 'mdm-signature': 'bm90IGEgY21z' },
        }),
      /Mdm-Signature is not valid BER/,
    ],
  ];

  for (const [name, send, reason] of cases) {
    it(name, async () => {
      const before = server.logs.length;
      const res = await send();
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
      expect(res.status).not.toBe(401);
      const line = server.logs.slice(before).find((l) => l.msg === 'request refused');
      expect(line?.reason).toMatch(reason);
      expect(res.text).toMatch(reason);
    });
  }

  it('a device that sends no Content-Type (or an unusual one) is served: it gets its commands', async () => {
    const identity = createDeviceIdentity(server.ca, 'no-content-type');
    const dev = new SimulatedDevice({ serverUrl: server.url, identity });
    await dev.enroll();
    const queued = await http(`${server.url}/api/v1/commands`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ targets: [dev.udid], command: { RequestType: 'ProfileList' } }),
    });
    const uuid = (queued.json() as { commandUUID: string }).commandUUID;
    // node:http adds no Content-Type of its own, unlike fetch for a string body.
    const send = (report: Record<string, string>, type?: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const body = buildPlist({ UDID: dev.udid, ...report });
        const headers: Record<string, string> = { 'mdm-signature': signDetached(body, identity), 'content-length': String(body.length) };
        if (type) headers['content-type'] = type;
        const req = request(`${server.url}/mdm/connect`, { method: 'PUT', headers }, (res) => {
          let text = '';
          res.on('data', (d: Buffer) => {
            text += d.toString();
          });
          res.on('end', () => resolve({ status: res.statusCode!, body: text }));
        });
        req.on('error', reject);
        req.end(body);
      });
    const idle = await send({ Status: 'Idle' });
    expect(idle.status).toBe(200);
    expect(idle.body).toContain(uuid);
    const ack = await send({ Status: 'Acknowledged', CommandUUID: uuid }, 'application/octet-stream');
    expect(ack.status).toBe(200);
    expect((await server.store.listCommands(dev.udid)).items[0]?.status).toBe('Acknowledged');
  });

  it('still serves after all of that', async () => {
    const dev = server.device();
    await dev.enroll();
    expect((await dev.report({ Status: 'Idle', UDID: dev.udid })).status).toBe(200);
  });
});

/** Deterministic PRNG so a failing fuzz case can be replayed. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x100000000;
  };
}

function mutate(src: Buffer, others: Buffer[], r: () => number): Buffer<ArrayBuffer> {
  const b = Buffer.from(src);
  const pick = (n: number) => Math.floor(r() * n);
  switch (pick(8)) {
    case 0: {
      // flip bytes
      for (let i = 0, n = 1 + pick(8); i < n; i++) b[pick(b.length)] = pick(256);
      return b;
    }
    case 1:
      return b.subarray(0, pick(b.length)); // truncate
    case 2: {
      // insert XML-ish noise
      const noise = [
        '<',
        '>',
        '</dict>',
        '<dict>',
        '<key>',
        '&',
        '&amp;',
        '<![CDATA[',
        '<!--',
        '\u0000',
        '<string>',
        '<data>',
        '<integer>',
        '</plist>',
        '"',
        'é',
      ][pick(16)]!;
      const at = pick(b.length);
      return Buffer.concat([b.subarray(0, at), Buffer.from(noise), b.subarray(at)]);
    }
    case 3: {
      // delete a span
      const at = pick(b.length);
      return Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + pick(40))]);
    }
    case 4: {
      // splice two captures
      const o = others[pick(others.length)]!;
      return Buffer.concat([b.subarray(0, pick(b.length)), o.subarray(pick(o.length))]);
    }
    case 5: {
      // swap a value's type tag
      const s = b.toString('utf8');
      const tags = ['string', 'data', 'integer', 'true/', 'dict', 'array', 'date', 'real'];
      return Buffer.from(s.replace(/<(string|data|integer|true\/|dict|array)>/, `<${tags[pick(tags.length)]}>`));
    }
    case 6: {
      // duplicate a chunk
      const at = pick(b.length);
      const len = pick(200);
      return Buffer.concat([b.subarray(0, at + len), b.subarray(at, at + len), b.subarray(at + len)]);
    }
    default: {
      // rewrite a key name or MessageType/Status value
      const s = b.toString('utf8');
      const words = [
        'Authenticate',
        'TokenUpdate',
        'CheckOut',
        'Idle',
        'Acknowledged',
        'NotNow',
        'Error',
        'UDID',
        'Status',
        'MessageType',
        'CommandUUID',
        'UserID',
        'ErrorChain',
        '',
      ];
      return Buffer.from(
        s.replace(/<string>[^<]*<\/string>|<key>[^<]*<\/key>/, (m) =>
          m.startsWith('<key>') ? `<key>${words[pick(words.length)]}</key>` : `<string>${words[pick(words.length)]}</string>`,
        ),
      );
    }
  }
}

describe('fuzz', () => {
  it('10,000 mutated captures: no 5xx, no crash', async () => {
    const captures = readdirSync(VECTORS)
      .filter((f) => f.endsWith('.plist'))
      .map((f) => readFileSync(join(VECTORS, f)));
    const r = rng(0x0c4a4d);
    const statuses = new Map<number, number>();
    const failures: string[] = [];
    const total = 10_000;
    let i = 0;
    const worker = async () => {
      while (i < total) {
        const n = i++;
        const src = captures[n % captures.length]!;
        const body = mutate(src, captures, r);
        const path = n % 2 ? '/mdm/checkin' : '/mdm/connect';
        // Most bodies are signed so they reach the parser; some carry no or a stale signature.
        const headers: Record<string, string> = { 'content-type': n % 3 ? 'application/x-apple-aspen-mdm-checkin' : 'application/x-apple-aspen-mdm' };
        if (n % 10 !== 0) headers['mdm-signature'] = sign(n % 10 === 1 ? src : body);
        const res = await fetch(`${server.url}${path}`, { method: 'PUT', body, headers });
        await res.arrayBuffer();
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        if (res.status >= 500 || res.status === 401) failures.push(`#${n} ${res.status}: ${body.toString('utf8').slice(0, 200)}`);
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    expect(failures).toEqual([]);
    expect([...statuses.values()].reduce((a, b) => a + b, 0)).toBe(total);
    // The mutations exercise more than one path: parse failures and accepted messages alike.
    expect(statuses.get(400) ?? 0).toBeGreaterThan(1000);
    expect(statuses.get(403) ?? 0).toBeGreaterThan(100);
    const health = await http(`${server.url}/healthz`);
    expect(health.status).toBe(200);
  }, 240_000);
});
