/**
 * The simulator's Mdm-Signature modes, checked by openssl as the independent peer: SHA-1 without
 * signed attributes by default, SHA-256 with contentType, signingTime and messageDigest on
 * request, every request signed afresh unless `reuseSignature` is asked for.
 */
import { createServer, type Server } from 'node:http';
import { type AddressInfo } from 'node:net';
import { createPrivateKey } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimulatedDevice, type SimSigning } from '../../src/sim/device.js';
import { openssl, opensslCa, opensslDevice, pemFileToDer, tempDir, type OpensslCa } from '../identity/openssl.js';

interface Captured {
  body: Buffer;
  signature: string;
}

const tmp = tempDir();
let ca: OpensslCa;
let rsa: { cert: string; key: string };
let ec: { cert: string; key: string };
let server: Server;
let url: string;
const captured: Captured[] = [];

beforeAll(async () => {
  ca = opensslCa(tmp.dir, 'Sim Signing CA');
  rsa = opensslDevice(tmp.dir, ca, 'sim-rsa');
  ec = opensslDevice(tmp.dir, ca, 'sim-ec', { ec: true });
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      captured.push({ body: Buffer.concat(chunks), signature: String(req.headers['mdm-signature'] ?? '') });
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((r) => server.close(r));
  tmp.cleanup();
});

function device(id: { cert: string; key: string }, signing?: SimSigning): SimulatedDevice {
  return new SimulatedDevice({
    serverUrl: url,
    identity: { certDer: pemFileToDer(id.cert), key: createPrivateKey(readFileSync(id.key)) },
    ...(signing ? { signing } : {}),
  });
}

/** Two identical Idle bodies from one device; returns what the server received. */
async function twoIdles(d: SimulatedDevice): Promise<Captured[]> {
  captured.length = 0;
  await d.report({ Status: 'Idle', UDID: d.udid });
  await d.report({ Status: 'Idle', UDID: d.udid });
  expect(captured).toHaveLength(2);
  expect(captured[0]!.body.equals(captured[1]!.body)).toBe(true);
  return [...captured];
}

let n = 0;
/** `openssl cms -verify` of the detached signature against the body and the CA; and its printout. */
function opensslVerify(c: Captured): string {
  const base = join(tmp.dir, `sig${++n}`);
  writeFileSync(`${base}.der`, Buffer.from(c.signature, 'base64'));
  writeFileSync(`${base}.body`, c.body);
  openssl([
    'cms',
    '-verify',
    '-binary',
    '-inform',
    'DER',
    '-in',
    `${base}.der`,
    '-content',
    `${base}.body`,
    '-CAfile',
    ca.cert,
    '-purpose',
    'any',
    '-out',
    `${base}.out`,
  ]);
  expect(readFileSync(`${base}.out`).equals(c.body)).toBe(true);
  return openssl(['cms', '-cmsout', '-print', '-inform', 'DER', '-in', `${base}.der`]).toString();
}

describe('SimulatedDevice signing', () => {
  it('signs SHA-1 without signed attributes by default, as captured devices do', async () => {
    for (const c of await twoIdles(device(rsa))) {
      const printed = opensslVerify(c);
      expect(printed).toMatch(/digestAlgorithm:\s*\n\s*algorithm: sha1/);
      expect(printed).toMatch(/signedAttrs:\s*\n?\s*<ABSENT>/);
    }
  });

  it('signs every request afresh by default: an EC device never re-sends a signature', async () => {
    const [a, b] = await twoIdles(device(ec));
    expect(a!.signature).not.toBe(b!.signature); // ECDSA is randomized; a re-sent one would be equal
    opensslVerify(a!);
    opensslVerify(b!);
  });

  it('re-sends the previous signature for a repeated body only with reuseSignature', async () => {
    const [a, b] = await twoIdles(device(ec, { mode: 'signature', reuseSignature: true }));
    expect(b!.signature).toBe(a!.signature);
    opensslVerify(b!);
  });

  it('signs SHA-256 with contentType, signingTime and messageDigest, a new signing time per request', async () => {
    for (const id of [rsa, ec]) {
      const sent = await twoIdles(device(id, { mode: 'signature', digest: 'sha256', signedAttributes: true }));
      expect(sent[0]!.signature).not.toBe(sent[1]!.signature);
      const times = sent.map((c) => {
        const printed = opensslVerify(c);
        expect(printed).toMatch(/digestAlgorithm:\s*\n\s*algorithm: sha256/);
        expect(printed).toContain('contentType');
        expect(printed).toContain('messageDigest');
        const m = /signingTime[\s\S]*?UTCTIME:([^\n]+)/.exec(printed);
        expect(m).not.toBeNull();
        return m![1]!.trim();
      });
      expect(times[0]).not.toBe(times[1]);
    }
  });
});
