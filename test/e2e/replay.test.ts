/**
 * Replayed check-in messages. The protocol has no nonce and a device's signature (RSA PKCS#1
 * v1.5, no signed attributes) is deterministic, so a device's resend and an attacker's replay are
 * the same bytes: both are answered 200 without being applied again.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { ReplayGuard } from '../../src/mdm/replay.js';
import { buildPlist, parsePlistDict, type PlistDict } from '../../src/protocol/plist.js';
import { openssl, opensslPki, opensslSign, type OpensslPki } from '../helpers/openssl.js';
import { http, startTestServer, type TestServer } from '../helpers/server.js';

let server: TestServer;
let pki: OpensslPki;
beforeAll(async () => {
  pki = opensslPki('Replay Test CA');
  server = await startTestServer();
  server.trust.addCa(readFileSync(pki.caCert, 'utf8'));
});
afterAll(async () => {
  await server.stop();
});

const TOPIC = 'com.apple.mgmt.External.replay';

/** A device whose every message is signed by `openssl cms -sign`, as a real one signs (SHA-1, no attributes). */
function opensslDevice(udid: string, srv: TestServer = server) {
  let id = pki.issue(udid);
  const send = (path: string, msg: PlistDict, signature?: (body: Buffer) => string) => {
    const body = buildPlist(msg);
    const sig = (signature ?? ((b) => opensslSign(b, id.cert, id.key, 'sha1-noattr')))(body);
    const type = path === '/mdm/connect' ? 'application/x-apple-aspen-mdm' : 'application/x-apple-aspen-mdm-checkin';
    return { body, sig, res: http(`${srv.url}${path}`, { method: 'PUT', body, headers: { 'content-type': type, 'mdm-signature': sig } }) };
  };
  return {
    udid,
    get cert() {
      return id;
    },
    newIdentity() {
      id = pki.issue(`${udid}-again`);
    },
    checkin: (msg: PlistDict, signature?: (body: Buffer) => string) => send('/mdm/checkin', { Topic: TOPIC, UDID: udid, ...msg }, signature),
    idle: () => send('/mdm/connect', { Status: 'Idle', UDID: udid }).res,
    authenticate: () => send('/mdm/checkin', { MessageType: 'Authenticate', Topic: TOPIC, UDID: udid, SerialNumber: `SN-${udid}`, Model: 'Mac14,2' }),
    tokenUpdate: (extra: PlistDict = {}) =>
      send('/mdm/checkin', { MessageType: 'TokenUpdate', Topic: TOPIC, UDID: udid, Token: new Uint8Array(32).fill(7), PushMagic: `magic-${udid}`, ...extra }),
  };
}

/** The exact request again: same body, same Mdm-Signature. */
function replay(sent: { body: Buffer; sig: string }, srv: TestServer = server, path = '/mdm/checkin') {
  return http(`${srv.url}${path}`, {
    method: 'PUT',
    body: sent.body,
    headers: { 'content-type': 'application/x-apple-aspen-mdm-checkin', 'mdm-signature': sent.sig },
  });
}

async function enqueue(target: string) {
  const res = await http(`${server.url}/api/v1/commands`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ targets: [target], command: { RequestType: 'ProfileList' } }),
  });
  return res;
}

function logsSince(n: number) {
  return server.logs.slice(n);
}

describe('replayed check-ins signed by openssl cms -sign', () => {
  it('a replayed Authenticate does not wipe the queue, in any envelope the signature allows', async () => {
    const dev = opensslDevice('REPLAY-AUTH');
    const auth = dev.authenticate();
    expect((await auth.res).status).toBe(200);
    expect((await dev.tokenUpdate().res).status).toBe(200);
    expect((await enqueue(dev.udid)).status).toBe(201);

    const before = server.logs.length;
    const same = await replay(auth);
    expect(same.status).toBe(200);
    expect(same.text).toBe('');
    // Without the key anyone can re-wrap the signature: an extra certificate in the SignedData...
    const dir = join(pki.dir, 'rewrap');
    writeFileSync(`${dir}.body`, auth.body);
    const rewrapped = openssl([
      'cms',
      '-sign',
      '-binary',
      '-in',
      `${dir}.body`,
      '-signer',
      dev.cert.cert,
      '-inkey',
      dev.cert.key,
      '-certfile',
      pki.caCert,
      '-outform',
      'DER',
      '-noattr',
      '-md',
      'sha1',
    ]).toString('base64');
    expect(rewrapped).not.toBe(auth.sig);
    expect((await replay({ body: auth.body, sig: rewrapped })).status).toBe(200);
    // ...and a device that signs its resend afresh, with signed attributes (signingTime), is the same message too.
    const resigned = opensslSign(auth.body, dev.cert.cert, dev.cert.key, 'sha256-attr');
    expect((await replay({ body: auth.body, sig: resigned })).status).toBe(200);

    const lines = logsSince(before).filter((l) => l.device === dev.udid);
    expect(lines.map((l) => l.outcome)).toEqual(['Authenticate: replay ignored', 'Authenticate: replay ignored', 'Authenticate: replay ignored']);
    // Still enrolled, queue intact: the command is offered.
    const idle = await dev.idle();
    expect(idle.status).toBe(200);
    expect(String((parsePlistDict(Buffer.from(idle.text)).Command as PlistDict).RequestType)).toBe('ProfileList');
  });

  it('a device that resends each step after a lost answer enrolls normally', async () => {
    const dev = opensslDevice('REPLAY-RESEND');
    const auth = dev.authenticate();
    expect((await auth.res).status).toBe(200);
    expect((await replay(auth)).status).toBe(200);
    const token = dev.tokenUpdate({ UnlockToken: new Uint8Array(16).fill(1) });
    expect((await token.res).status).toBe(200);
    expect((await replay(token)).status).toBe(200);
    expect((await server.store.getEnrollment(dev.udid))?.active).toBe(true);
    expect((await enqueue(dev.udid)).status).toBe(201);
    expect((await dev.idle()).text).toContain('ProfileList');
  });

  it('a replayed CheckOut does not unenroll a device that enrolled again with the same certificate', async () => {
    const dev = opensslDevice('REPLAY-CHECKOUT');
    expect((await dev.authenticate().res).status).toBe(200);
    expect((await dev.tokenUpdate({ UnlockToken: new Uint8Array(16).fill(1) }).res).status).toBe(200);
    const checkOut = dev.checkin({ MessageType: 'CheckOut' });
    expect((await checkOut.res).status).toBe(200);
    expect((await server.store.getEnrollment(dev.udid))?.active).toBe(false);
    // Enrolled again with the same identity (its Authenticate is the same bytes, so a no-op; the
    // new enrollment's TokenUpdate carries a new UnlockToken).
    expect((await dev.authenticate().res).status).toBe(200);
    expect((await dev.tokenUpdate({ UnlockToken: new Uint8Array(16).fill(2) }).res).status).toBe(200);
    expect((await server.store.getEnrollment(dev.udid))?.active).toBe(true);

    const before = server.logs.length;
    expect((await replay(checkOut)).status).toBe(200);
    expect(logsSince(before).find((l) => l.device === dev.udid)?.outcome).toBe('CheckOut: replay ignored');
    expect((await server.store.getEnrollment(dev.udid))?.active).toBe(true);
    expect((await enqueue(dev.udid)).status).toBe(201);
  });

  it('a CheckOut signed by a certificate the device no longer has: ignored within the window, refused 403 by the identity layer after it', async () => {
    // Here "after the window" is a server with the window off (as after a restart: the memory is gone).
    const after = await startTestServer({ replayWindowMs: 0 });
    after.trust.addCa(readFileSync(pki.caCert, 'utf8'));
    try {
      for (const [srv, expected] of [
        [server, 200],
        [after, 403],
      ] as const) {
        const dev = opensslDevice('REPLAY-OLD-CERT', srv);
        expect((await dev.authenticate().res).status).toBe(200);
        expect((await dev.tokenUpdate().res).status).toBe(200);
        const checkOut = dev.checkin({ MessageType: 'CheckOut' });
        expect((await checkOut.res).status).toBe(200);
        dev.newIdentity(); // re-enrolled through the profile: a new SCEP identity
        expect((await dev.authenticate().res).status).toBe(200);
        expect((await dev.tokenUpdate().res).status).toBe(200);
        expect((await replay(checkOut, srv)).status).toBe(expected);
        expect((await srv.store.getEnrollment(dev.udid))?.active).toBe(true);
      }
    } finally {
      await after.stop();
    }
  });

  it('a replayed SetBootstrapToken does not bring back the old token', async () => {
    const dev = opensslDevice('REPLAY-BOOTSTRAP');
    expect((await dev.authenticate().res).status).toBe(200);
    expect((await dev.tokenUpdate().res).status).toBe(200);
    const first = dev.checkin({ MessageType: 'SetBootstrapToken', BootstrapToken: new Uint8Array(Buffer.from('first-token')) });
    expect((await first.res).status).toBe(200);
    expect((await dev.checkin({ MessageType: 'SetBootstrapToken', BootstrapToken: new Uint8Array(Buffer.from('second-token')) }).res).status).toBe(200);
    expect((await replay(first)).status).toBe(200);
    expect((await server.store.getBootstrapToken(dev.udid))?.toString()).toBe('second-token');
    // Reading it is not a state change: asked twice, answered twice.
    const get = dev.checkin({ MessageType: 'GetBootstrapToken' });
    expect((await get.res).text).toContain('<data>');
    expect((await replay(get)).text).toContain('<data>');
  });

  it('a refused message is not remembered: sent again once it is allowed, it is applied', async () => {
    const dev = opensslDevice('REPLAY-REFUSED');
    expect((await dev.authenticate().res).status).toBe(200);
    const user = dev.tokenUpdate({ UserID: 'B0B0B0B0-0000-0000-0000-000000000001', UserShortName: 'bob' });
    expect((await user.res).status).toBe(400); // the device channel is not enrolled yet
    expect((await dev.tokenUpdate().res).status).toBe(200);
    expect((await replay(user)).status).toBe(200);
    expect((await server.store.getEnrollment(`${dev.udid}:B0B0B0B0-0000-0000-0000-000000000001`))?.active).toBe(true);
  });
});

describe('replayed check-ins from the simulator', () => {
  it('its byte-identical resends of Authenticate and CheckOut are answered 200 and change nothing', async () => {
    const dev = server.device();
    await dev.enroll();
    expect((await enqueue(dev.udid)).status).toBe(201);
    expect((await dev.authenticate()).status).toBe(200);
    expect((await dev.connect()).map((c) => c.requestType)).toEqual(['ProfileList']);
    expect((await dev.checkOut()).status).toBe(200);
    await dev.tokenUpdate(); // enrolls again (a new UnlockToken)
    expect((await dev.checkOut()).status).toBe(200);
    expect((await server.store.getEnrollment(dev.udid))?.active).toBe(true);
  });
});

describe('configuration', () => {
  it('--replay-window (default 24h, 0: off) and --replay-cache-size (default 100000), as flags or file keys', () => {
    const d = loadConfig({});
    expect([d.replayWindowMs, d.replayCacheSize]).toEqual([86_400_000, 100_000]);
    expect(loadConfig({ replayWindow: '0' }).replayWindowMs).toBe(0);
    const file = join(pki.dir, 'replay.yaml');
    writeFileSync(file, 'replayWindow: 2h\nreplayCacheSize: 5000\n');
    const f = loadConfig({ config: file });
    expect([f.replayWindowMs, f.replayCacheSize]).toEqual([7_200_000, 5000]);
    expect(loadConfig({ config: file, replayWindow: '10m' }).replayWindowMs).toBe(600_000);
    expect(() => loadConfig({ replayCacheSize: '0' })).toThrow(/replay-cache-size/);
  });
});

describe('ReplayGuard', () => {
  const applied = () => Promise.resolve(200);
  const ok = (s: number) => s === 200;

  it('remembers for the window, then applies again; 0 turns it off', async () => {
    let now = 0;
    const g = new ReplayGuard({ windowMs: 1000, maxEntries: 10, now: () => now });
    const k = ReplayGuard.key('cert', Buffer.from('body'));
    expect((await g.once(k, 'D', applied, ok)).replay).toBe(false);
    now = 999;
    expect((await g.once(k, 'D', applied, ok)).replay).toBe(true);
    now = 1001;
    expect((await g.once(k, 'D', applied, ok)).replay).toBe(false);
    const off = new ReplayGuard({ windowMs: 0, maxEntries: 10 });
    expect((await off.once(k, 'D', applied, ok)).replay).toBe(false);
    expect((await off.once(k, 'D', applied, ok)).replay).toBe(false);
  });

  it('the same body signed by another certificate is another message', () => {
    expect(ReplayGuard.key('a', Buffer.from('x'))).not.toBe(ReplayGuard.key('b', Buffer.from('x')));
  });

  it('is bounded: the oldest is forgotten first, and one device cannot push out another', async () => {
    const g = new ReplayGuard({ windowMs: 60_000, maxEntries: 4, maxPerDevice: 2 });
    const key = (s: string) => ReplayGuard.key('c', Buffer.from(s));
    await g.once(key('victim'), 'VICTIM', applied, ok);
    for (let i = 0; i < 50; i++) await g.once(key(`flood-${i}`), 'FLOODER', applied, ok);
    expect(g.size).toBe(3);
    expect((await g.once(key('victim'), 'VICTIM', applied, ok)).replay).toBe(true);
    expect((await g.once(key('flood-0'), 'FLOODER', applied, ok)).replay).toBe(false);
    // Past the global cap the oldest entry goes, whoever it belongs to.
    for (const d of ['A', 'B', 'C', 'E']) await g.once(key(d), d, applied, ok);
    expect(g.size).toBe(4);
    expect((await g.once(key('victim'), 'VICTIM', applied, ok)).replay).toBe(false);
  });

  it('applies identical concurrent messages once; a failed first attempt lets the next one through', async () => {
    const g = new ReplayGuard({ windowMs: 60_000, maxEntries: 10 });
    const k = ReplayGuard.key('c', Buffer.from('concurrent'));
    let calls = 0;
    let release!: () => void;
    const slow = () => {
      calls++;
      return new Promise<number>((resolve) => {
        release = () => resolve(200);
      });
    };
    const a = g.once(k, 'D', slow, ok);
    const b = g.once(k, 'D', slow, ok);
    await new Promise((r) => setImmediate(r));
    release();
    expect([(await a).replay, (await b).replay]).toEqual([false, true]);
    expect(calls).toBe(1);

    const k2 = ReplayGuard.key('c', Buffer.from('fails first'));
    const failing = g.once(k2, 'D', () => Promise.reject(new Error('store down')), ok);
    const retry = g.once(k2, 'D', applied, ok);
    await expect(failing).rejects.toThrow('store down');
    expect((await retry).replay).toBe(false);
  });
});
