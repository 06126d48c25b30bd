/**
 * APNs wired into a real Orchard server: commands queued over the admin API wake the device with
 * one (coalesced) push at the APNs stand-in; POST/GET /api/v1/push.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDeviceIdentity } from '../../src/identity/ca.js';
import { ApnsPusher } from '../../src/push/apns.js';
import { ApnsStandIn } from '../../src/sim/apns.js';
import { SimulatedDevice } from '../../src/sim/device.js';
import { http, startTestServer, type TestServer } from '../helpers/server.js';
import { captureLog, makePushCert, until, type TestPushCert } from './helpers.js';

let cert: TestPushCert;
let standIn: ApnsStandIn;
let apns: ApnsPusher;
let server: TestServer;

beforeAll(async () => {
  cert = makePushCert();
  standIn = await ApnsStandIn.start({ clientCa: cert.ca.certPem });
  apns = new ApnsPusher(
    { url: standIn.url, ca: standIn.tls.caPem, certPem: cert.certPem, keyPem: cert.keyPem, coalesceMs: 200, retryBaseMs: 20 },
    captureLog().log,
  );
  server = await startTestServer({}, { pusher: apns });
});
afterAll(async () => {
  await server?.stop();
  await apns?.close();
  await standIn?.close();
});

const admin = () => ({ authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' });

/** An enrolled device that has been pushed once (on demand), so every test starts from one push. */
async function enrolled(): Promise<{ dev: SimulatedDevice; token: string; magic: string }> {
  const dev = server.device({ topic: cert.topic });
  await dev.enroll();
  const e = await server.store.getEnrollment(dev.udid);
  const token = e!.push!.token;
  await apns.whenIdle();
  // Without a fleet repository, enrolling queues nothing, so nothing is pushed.
  expect(standIn.pushesFor(token)).toHaveLength(0);
  expect((await push([dev.udid])).status).toBe(200);
  await until(() => standIn.pushesFor(token).length >= 1, 'the first push');
  await apns.whenIdle();
  expect(standIn.pushesFor(token)).toHaveLength(1);
  return { dev, token, magic: e!.push!.pushMagic };
}

function command(udid: string, requestType = 'ProfileList') {
  return http(`${server.url}/api/v1/commands`, {
    method: 'POST',
    headers: admin(),
    body: JSON.stringify({ targets: [udid], command: { RequestType: requestType } }),
  });
}

function push(targets: unknown, headers: Record<string, string> = admin()) {
  return http(`${server.url}/api/v1/push`, { method: 'POST', headers, body: JSON.stringify({ targets }) });
}

interface PushAnswer {
  results: { target: string; result: string; status?: number; reason?: string }[];
  summary: Record<string, number>;
}

describe('push through the server', () => {
  it('several quick commands for a device cause exactly one push, with its token and PushMagic', async () => {
    const { dev, token, magic } = await enrolled();
    const uuids: string[] = [];
    for (const t of ['ProfileList', 'SecurityInfo', 'CertificateList', 'InstalledApplicationList']) {
      const r = await command(dev.udid, t);
      expect(r.status).toBe(201);
      uuids.push((r.json() as { commandUUID: string }).commandUUID);
    }
    await apns.whenIdle();
    const got = standIn.pushesFor(token);
    expect(got).toHaveLength(2);
    expect(JSON.parse(got[1]!.body)).toEqual({ mdm: magic });
    expect(got[1]!.headers['apns-topic']).toBe(cert.topic);
    // The push did its job: the device connects and gets all four.
    const session = await dev.connect();
    expect(session.map((c) => c.commandUUID)).toEqual(expect.arrayContaining(uuids));
  });

  it('POST /api/v1/push pushes now and answers per target', async () => {
    const a = await enrolled();
    const b = await enrolled();
    const r = await push([a.dev.udid, b.dev.udid, a.dev.udid]);
    expect(r.status).toBe(200);
    const body = r.json() as PushAnswer;
    expect(body.results.map((x) => [x.target, x.result, x.status])).toEqual([
      [a.dev.udid, 'pushed', 200],
      [b.dev.udid, 'pushed', 200],
    ]);
    expect(body.summary).toEqual({ pushed: 2 });
    expect(standIn.pushesFor(a.token)).toHaveLength(2);
    expect(standIn.pushesFor(b.token)).toHaveLength(2);
  });

  it('a token APNs unregistered is not pushed again until the device sends a new one', async () => {
    const { dev, token } = await enrolled();
    standIn.unregister(token);
    await expect(push([dev.udid]).then((r) => r.json() as PushAnswer)).resolves.toMatchObject({ results: [{ result: 'unregistered', status: 410 }] });
    await command(dev.udid);
    await apns.whenIdle();
    expect(standIn.pushesFor(token)).toHaveLength(2);
    expect(((await push([dev.udid])).json() as PushAnswer).results[0]!.result).toBe('suppressed');

    // The same device enrolled again with a new token (after a restore it checks out, then
    // enrolls with a new identity, which the default re-enroll policy allows): pushed again.
    await dev.checkOut();
    const identity = createDeviceIdentity(server.ca, `renewed-${dev.udid}`);
    const again = new SimulatedDevice({ serverUrl: server.url, identity, udid: dev.udid, topic: cert.topic });
    await again.enroll();
    const newToken = (await server.store.getEnrollment(dev.udid))!.push!.token;
    expect(newToken).not.toBe(token);
    expect(((await push([dev.udid])).json() as PushAnswer).results[0]!.result).toBe('pushed');
    await apns.whenIdle();
    expect(standIn.pushesFor(newToken).length).toBeGreaterThanOrEqual(1);
    expect(standIn.pushesFor(token)).toHaveLength(2);
  });

  it('reports a checked-out device instead of pushing it; unknown targets are a 404', async () => {
    const { dev, token } = await enrolled();
    await dev.checkOut();
    expect(((await push([dev.udid])).json() as PushAnswer).results[0]!.result).toBe('inactive');
    expect(standIn.pushesFor(token)).toHaveLength(1);
    const unknown = await push([dev.udid, 'NO-SUCH-DEVICE']);
    expect(unknown.status).toBe(404);
    expect(unknown.text).toContain('NO-SUCH-DEVICE');
  });

  it('checks the body and the token', async () => {
    expect((await push([])).status).toBe(400);
    expect((await push('x')).status).toBe(400);
    expect((await http(`${server.url}/api/v1/push`, { method: 'POST', headers: admin(), body: '{' })).status).toBe(400);
    expect((await push(['x'], { 'content-type': 'application/json' })).status).toBe(401);
    expect((await push(['x'], { authorization: `Bearer ${server.readToken}` })).status).toBe(403);
  });

  it("GET /api/v1/push shows the topic, the certificate's expiry and the counters (read token)", async () => {
    const r = await http(`${server.url}/api/v1/push`, { headers: { authorization: `Bearer ${server.readToken}` } });
    expect(r.status).toBe(200);
    const s = r.json() as {
      configured: boolean;
      topic: string;
      certificate: { notAfter: string; daysLeft: number; expired: boolean };
      counters: Record<string, number>;
    };
    expect(s.configured).toBe(true);
    expect(s.topic).toBe(cert.topic);
    expect(s.certificate.expired).toBe(false);
    expect(s.certificate.daysLeft).toBeGreaterThan(300);
    expect(s.counters.sent).toBeGreaterThanOrEqual(5);
    expect(s.counters.unregistered).toBe(1);
    expect(s.counters.inactive).toBe(1);
    expect(r.text).not.toMatch(/PRIVATE KEY|BEGIN CERTIFICATE/);
    expect((await http(`${server.url}/api/v1/push`)).status).toBe(401);
  });

  it('the webhook and the rest of the API under /api/v1 are not affected by these routes', async () => {
    const r = await http(`${server.url}/api/v1/devices`, { headers: { authorization: `Bearer ${server.readToken}` } });
    expect(r.status).toBe(200);
  });
});

describe('without a push certificate', () => {
  it('the routes say push is not configured', async () => {
    const bare = await startTestServer();
    try {
      const get = await http(`${bare.url}/api/v1/push`, { headers: { authorization: `Bearer ${bare.readToken}` } });
      expect(get.status).toBe(200);
      expect(get.json()).toMatchObject({ configured: false });
      const post = await http(`${bare.url}/api/v1/push`, {
        method: 'POST',
        headers: { authorization: `Bearer ${bare.adminToken}` },
        body: '{"targets":["x"]}',
      });
      expect(post.status).toBe(503);
      expect(post.text).toContain('push-cert import');
    } finally {
      await bare.stop();
    }
  });
});
