/**
 * The APNs client against a real HTTP/2 + TLS stand-in that requires the push certificate as
 * client certificate and answers like APNs (status codes, apns-id, {"reason"} bodies).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../src/store/memory.js';
import { Sealer } from '../../src/store/sealing.js';
import { ApnsPusher, apnsFromCredentials, type ApnsConfig } from '../../src/push/apns.js';
import { importPushCertificate, openStoredPushCredentials } from '../../src/push/push-cert.js';
import { ApnsStandIn, createStandInTls } from '../../src/sim/apns.js';
import type { EnrollmentRecord } from '../../src/store/types.js';
import { captureLog, makePushCert, pushEnrollment, standInConfig, until, type TestPushCert } from './helpers.js';

let cert: TestPushCert;
let standIn: ApnsStandIn;
const pushers: ApnsPusher[] = [];
const standIns: ApnsStandIn[] = [];
/** Longer than any test runs: a wait this long fails the test by its timeout. */
const HOUR = 3_600_000;

beforeAll(async () => {
  cert = makePushCert();
  standIn = await ApnsStandIn.start({ clientCa: cert.ca.certPem });
});
afterEach(async () => {
  await Promise.all(pushers.splice(0).map((p) => p.close(100)));
  await Promise.all(standIns.splice(0).map((s) => s.close()));
});
afterAll(async () => {
  await standIn.close();
});

function pusher(over: Partial<ApnsConfig> = {}, target: ApnsStandIn = standIn) {
  const { log, lines, text } = captureLog();
  const p = new ApnsPusher({ ...standInConfig(target, cert), ...over }, log);
  pushers.push(p);
  return { p, lines, text };
}

function enrollment(over: Partial<EnrollmentRecord> = {}, push: Partial<NonNullable<EnrollmentRecord['push']>> = {}): EnrollmentRecord {
  return pushEnrollment(cert.topic, over, push);
}

describe('APNs requests', () => {
  it('sends POST /3/device/<hex token> with the MDM headers and {"mdm": PushMagic}, over TLS with the push certificate', async () => {
    const { p } = pusher();
    const e = enrollment();
    const before = Math.floor(Date.now() / 1000);
    const [r] = await p.pushNow([e]);
    expect(r).toMatchObject({ target: e.id, result: 'pushed', status: 200 });
    expect(r!.apnsId).toMatch(/^[0-9A-F-]{36}$/);
    const [got] = standIn.pushesFor(e.push!.token);
    expect(got).toBeDefined();
    expect(got!.method).toBe('POST');
    expect(got!.path).toBe(`/3/device/${e.push!.token}`);
    expect(got!.headers['apns-topic']).toBe(cert.topic);
    expect(got!.headers['apns-push-type']).toBe('mdm');
    expect(got!.headers['apns-priority']).toBe('10');
    const exp = Number(got!.headers['apns-expiration']);
    expect(exp).toBeGreaterThanOrEqual(before + 86_400);
    expect(exp).toBeLessThanOrEqual(before + 86_400 + 5);
    expect(JSON.parse(got!.body)).toEqual({ mdm: e.push!.pushMagic });
    expect(got!.clientTopic).toBe(cert.topic);
    expect(p.status().counters).toMatchObject({ requested: 1, sent: 1, connects: 1 });
  });

  it('uses one session for many concurrent pushes and never has more than `concurrency` streams open', async () => {
    const { p } = pusher({ concurrency: 8 });
    const list = Array.from({ length: 60 }, () => enrollment());
    for (const e of list) standIn.answerNext(e.push!.token, { status: 200, delayMs: 30 });
    const sessions = standIn.sessionsOpened;
    standIn.maxInFlight = 0;
    const results = await p.pushNow(list);
    expect(results.every((r) => r.result === 'pushed')).toBe(true);
    expect(standIn.maxInFlight).toBeLessThanOrEqual(8);
    expect(standIn.maxInFlight).toBeGreaterThanOrEqual(4);
    expect(standIn.sessionsOpened - sessions).toBe(1);
    expect(p.status().counters.connects).toBe(1);
  });

  it("also keeps to the gateway's SETTINGS_MAX_CONCURRENT_STREAMS, so waiting pushes do not time out", async () => {
    const narrow = await ApnsStandIn.start({ clientCa: cert.ca.certPem, maxConcurrentStreams: 3 });
    standIns.push(narrow);
    // 30 pushes, 3 at a time, 60 ms each: 600 ms in all, twice the request timeout. Streams
    // opened beyond the gateway's limit would wait inside HTTP/2 with their timers running.
    const { p } = pusher({ concurrency: 100, requestTimeoutMs: 300 }, narrow);
    await p.pushNow([enrollment()]); // learn the gateway's settings
    const list = Array.from({ length: 30 }, () => enrollment());
    for (const e of list) narrow.answerNext(e.push!.token, { status: 200, delayMs: 60 });
    const results = await p.pushNow(list);
    expect(results.every((r) => r.result === 'pushed')).toBe(true);
    expect(narrow.maxInFlight).toBeLessThanOrEqual(3);
    expect(p.status().counters).toMatchObject({ timeouts: 0, retries: 0, sent: 31 });
  });
});

describe('coalescing', () => {
  it('turns many quick enqueues for one device into one push, and pushes each device once', async () => {
    const { p } = pusher({ coalesceMs: 150 });
    const a = enrollment();
    const b = enrollment();
    const c = enrollment();
    for (let i = 0; i < 20; i++) await p.push([a, ...(i % 5 === 0 ? [b, c] : [])]);
    await p.whenIdle();
    expect(standIn.pushesFor(a.push!.token)).toHaveLength(1);
    expect(standIn.pushesFor(b.push!.token)).toHaveLength(1);
    expect(standIn.pushesFor(c.push!.token)).toHaveLength(1);
    expect(p.status().counters).toMatchObject({ requested: 28, coalesced: 25, sent: 3 });
  });

  it('pushes again for an enqueue after the window has closed', async () => {
    const { p } = pusher({ coalesceMs: 20 });
    const a = enrollment();
    await p.push([a]);
    await p.whenIdle();
    await p.push([a]);
    await p.whenIdle();
    expect(standIn.pushesFor(a.push!.token)).toHaveLength(2);
  });

  it('waits for the window before pushing', async () => {
    const { p } = pusher({ coalesceMs: 300 });
    const a = enrollment();
    const t0 = Date.now();
    await p.push([a]);
    expect(p.status().waiting).toBe(1);
    await p.whenIdle();
    const [got] = standIn.pushesFor(a.push!.token);
    expect(got!.at - t0).toBeGreaterThanOrEqual(290);
  });
});

describe('APNs answers', () => {
  it('410 Unregistered: stops pushing that token until a TokenUpdate brings a different one', async () => {
    const { p, text } = pusher();
    const e = enrollment();
    standIn.unregister(e.push!.token);
    expect((await p.pushNow([e]))[0]).toMatchObject({ result: 'unregistered', status: 410, reason: 'Unregistered' });
    await p.push([e]);
    await p.push([e]);
    await p.whenIdle();
    expect((await p.pushNow([e]))[0]!.result).toBe('suppressed');
    expect(standIn.pushesFor(e.push!.token)).toHaveLength(1);
    expect(p.status().counters).toMatchObject({ unregistered: 1, suppressed: 3, sent: 0 });
    expect(p.status().suppressedTokens).toBe(1);

    // The same token again changes nothing.
    p.tokenUpdated(e.id, e.push!.token);
    expect((await p.pushNow([e]))[0]!.result).toBe('suppressed');

    const renewed = { ...e, push: { ...e.push!, token: randomBytes(32).toString('hex') } };
    p.tokenUpdated(e.id, renewed.push.token);
    expect(p.status().suppressedTokens).toBe(0);
    expect((await p.pushNow([renewed]))[0]!.result).toBe('pushed');
    expect(standIn.pushesFor(renewed.push.token)).toHaveLength(1);
    expect(text()).not.toContain(e.push!.token);
    expect(text()).not.toContain(e.push!.pushMagic);
  });

  it('a record with a new token lifts the suppression even without tokenUpdated()', async () => {
    const { p } = pusher();
    const e = enrollment();
    standIn.unregister(e.push!.token);
    await p.pushNow([e]);
    const renewed = { ...e, push: { ...e.push!, token: randomBytes(32).toString('hex') } };
    await p.push([renewed]);
    await p.whenIdle();
    expect(standIn.pushesFor(renewed.push.token)).toHaveLength(1);
  });

  it('400 BadDeviceToken: stops pushing that token and logs it (without the token)', async () => {
    const { p, lines, text } = pusher();
    const e = enrollment();
    standIn.answerNext(e.push!.token, { status: 400, reason: 'BadDeviceToken' });
    expect((await p.pushNow([e]))[0]).toMatchObject({ result: 'bad-token', status: 400, reason: 'BadDeviceToken' });
    await p.push([e]);
    await p.whenIdle();
    expect(standIn.pushesFor(e.push!.token)).toHaveLength(1);
    expect(p.status().counters).toMatchObject({ badDeviceToken: 1, suppressed: 1 });
    const warn = lines.find((l) => l.level === 40 && l.enrollment === e.id && /device token/.test(l.msg));
    expect(warn).toBeDefined();
    expect(warn!.token).toBe(`${e.push!.token.slice(0, 8)}…`);
    expect(text()).not.toContain(e.push!.token);
  });

  it('other 400s are not retried and do not suppress the token', async () => {
    const { p } = pusher();
    const e = enrollment();
    standIn.answerNext(e.push!.token, { status: 400, reason: 'BadExpirationDate' });
    expect((await p.pushNow([e]))[0]).toMatchObject({ result: 'rejected', reason: 'BadExpirationDate' });
    expect((await p.pushNow([e]))[0]!.result).toBe('pushed');
    expect(standIn.pushesFor(e.push!.token)).toHaveLength(2);
    expect(p.status().counters.badRequest).toBe(1);
  });

  it('403: a certificate problem, logged as an error and shown in the status, not retried', async () => {
    const { p, lines } = pusher();
    const e = enrollment();
    standIn.answerNext(e.push!.token, { status: 403, reason: 'BadCertificate' });
    expect((await p.pushNow([e]))[0]).toMatchObject({ result: 'certificate-problem', status: 403, reason: 'BadCertificate' });
    expect(standIn.pushesFor(e.push!.token)).toHaveLength(1);
    expect(p.status().certificateProblem).toMatchObject({ status: 403, reason: 'BadCertificate', count: 1 });
    expect(p.status().counters.certificateRejected).toBe(1);
    expect(lines.some((l) => l.level === 50 && /PUSH CERTIFICATE/.test(l.msg))).toBe(true);
    // Not suppressed, and a later accepted push clears the problem.
    expect((await p.pushNow([e]))[0]!.result).toBe('pushed');
    expect(p.status().certificateProblem).toBeUndefined();
  });

  it('429 and 5xx are retried with growing, jittered backoff', async () => {
    const { p } = pusher({ retryBaseMs: 40, retryMaxMs: 1000 });
    const e = enrollment();
    standIn.answerNext(
      e.push!.token,
      { status: 429, reason: 'TooManyRequests' },
      { status: 503, reason: 'ServiceUnavailable' },
      { status: 500, reason: 'InternalServerError' },
    );
    expect((await p.pushNow([e]))[0]!.result).toBe('pushed');
    const got = standIn.pushesFor(e.push!.token);
    expect(got).toHaveLength(4);
    const gaps = got.slice(1).map((g, i) => g.at - got[i]!.at);
    // Backoff n waits between half and all of 40 ms * 2^n.
    expect(gaps[0]).toBeGreaterThanOrEqual(18);
    expect(gaps[1]).toBeGreaterThanOrEqual(38);
    expect(gaps[2]).toBeGreaterThanOrEqual(78);
    expect(p.status().counters).toMatchObject({ tooManyRequests: 1, serverErrors: 2, retries: 3, sent: 1, failed: 0 });
  });

  it('gives up after the last retry and reports the failure', async () => {
    const { p } = pusher({ maxRetries: 2 });
    const e = enrollment();
    standIn.answerNext(e.push!.token, ...Array.from({ length: 3 }, () => ({ status: 503, reason: 'ServiceUnavailable' })));
    expect((await p.pushNow([e]))[0]).toMatchObject({ result: 'failed', status: 503 });
    expect(standIn.pushesFor(e.push!.token)).toHaveLength(3);
    expect(p.status().counters).toMatchObject({ serverErrors: 3, retries: 2, failed: 1 });
  });

  it('a push that gets no answer times out and is retried', async () => {
    const { p } = pusher({ requestTimeoutMs: 150 });
    const e = enrollment();
    standIn.answerNext(e.push!.token, { status: 200, silent: true });
    expect((await p.pushNow([e]))[0]!.result).toBe('pushed');
    expect(standIn.pushesFor(e.push!.token)).toHaveLength(2);
    expect(p.status().counters).toMatchObject({ timeouts: 1, networkErrors: 1, retries: 1, sent: 1 });
  });
});

describe('devices that cannot be pushed', () => {
  it('reports a device with no token (or an invalid one) instead of pushing it', async () => {
    const { p, lines } = pusher();
    const none = enrollment({ push: undefined });
    const bad = enrollment({}, { token: 'not-hex' });
    const results = await p.pushNow([none, bad]);
    expect(results.map((r) => r.result)).toEqual(['no-token', 'no-token']);
    await p.push([none]);
    await p.whenIdle();
    expect(p.status().counters).toMatchObject({ noToken: 3, sent: 0 });
    expect(standIn.pushesFor('not-hex')).toHaveLength(0);
    expect(lines.filter((l) => l.level === 40 && l.enrollment === none.id)).toHaveLength(1);
  });

  it('does not push an enrollment under another topic, nor an inactive one', async () => {
    const { p } = pusher();
    const other = enrollment({}, { topic: 'com.apple.mgmt.External.other' });
    const inactive = enrollment({ active: false });
    const results = await p.pushNow([other, inactive]);
    expect(results.map((r) => r.result)).toEqual(['wrong-topic', 'inactive']);
    expect(standIn.pushesFor(other.push!.token)).toHaveLength(0);
    expect(standIn.pushesFor(inactive.push!.token)).toHaveLength(0);
  });
});

describe('the connection', () => {
  it('reconnects after GOAWAY', async () => {
    const { p } = pusher();
    await p.pushNow([enrollment()]);
    const sessions = standIn.sessionsOpened;
    standIn.goawayAll();
    await until(() => !p.status().connected, 'the session to close');
    const e = enrollment();
    expect((await p.pushNow([e]))[0]!.result).toBe('pushed');
    expect(standIn.sessionsOpened).toBe(sessions + 1);
    expect(p.status().counters).toMatchObject({ connects: 2, goaways: 1, sent: 2 });
  });

  it('reconnects to a stand-in that was restarted, retrying pushes made while it was down', async () => {
    let gw = await ApnsStandIn.start({ clientCa: cert.ca.certPem });
    const { p } = pusher({ retryBaseMs: 50, retryMaxMs: 100, maxRetries: 20 }, gw);
    expect((await p.pushNow([enrollment()]))[0]!.result).toBe('pushed');
    await gw.close();
    await until(() => !p.status().connected, 'the session to drop');
    const e = enrollment();
    const pending = p.pushNow([e]);
    await until(() => p.status().counters.networkErrors >= 2, 'failed attempts while the stand-in is down');
    gw = await gw.restart();
    standIns.push(gw);
    expect((await pending)[0]!.result).toBe('pushed');
    expect(gw.pushesFor(e.push!.token)).toHaveLength(1);
    expect(p.status().counters.connects).toBe(2);
    expect(p.status().connected).toBe(true);
  });

  it('keeps an idle session alive with PINGs', async () => {
    const idle = await ApnsStandIn.start({ clientCa: cert.ca.certPem, idleTimeoutMs: 200 });
    standIns.push(idle);
    const { p } = pusher({ pingIntervalMs: 50 }, idle);
    await p.pushNow([enrollment()]);
    await until(() => idle.pingsReceived >= 10, 'ten pings', 5000);
    expect(p.status().connected).toBe(true);
    await p.pushNow([enrollment()]);
    expect(idle.sessionsOpened).toBe(1);
    expect(p.status().counters.connects).toBe(1);
  });

  it('without PINGs the gateway closes an idle session (the control for the test above)', async () => {
    const idle = await ApnsStandIn.start({ clientCa: cert.ca.certPem, idleTimeoutMs: 200 });
    standIns.push(idle);
    const { p } = pusher({ pingIntervalMs: 60_000 }, idle);
    await p.pushNow([enrollment()]);
    await until(() => !p.status().connected, 'the idle session to be closed');
    await p.pushNow([enrollment()]);
    expect(idle.sessionsOpened).toBe(2);
  });

  it('a gateway that refuses the client certificate with a TLS alert (openssl s_server) is a certificate problem', async () => {
    const stranger = makePushCert();
    const gw = await opensslGateway(cert.ca.certPem);
    try {
      const { log, lines } = captureLog();
      const p = new ApnsPusher({ url: gw.url, ca: gw.caPem, certPem: stranger.certPem, keyPem: stranger.keyPem, retryBaseMs: 10 }, log);
      pushers.push(p);
      const [r] = await p.pushNow([enrollment({}, { topic: stranger.topic })]);
      expect(r!.result).toBe('certificate-problem');
      expect(r!.reason).toMatch(/alert/);
      expect(p.status().certificateProblem?.reason).toMatch(/TLS handshake refused/);
      expect(p.status().counters).toMatchObject({ certificateRejected: 1, retries: 0 });
      expect(lines.some((l) => l.level === 50 && /PUSH CERTIFICATE/.test(l.msg))).toBe(true);
    } finally {
      gw.stop();
    }
  });

  it('a certificate from another CA: answered 403 BadCertificate by a gateway that says so', async () => {
    const strict = await ApnsStandIn.start({ clientCa: cert.ca.certPem, unauthorized: 'forbidden' });
    standIns.push(strict);
    const stranger = makePushCert();
    const { log } = captureLog();
    const p = new ApnsPusher({ url: strict.url, ca: strict.tls.caPem, certPem: stranger.certPem, keyPem: stranger.keyPem }, log);
    pushers.push(p);
    const [r] = await p.pushNow([enrollment({}, { topic: stranger.topic })]);
    expect(r).toMatchObject({ result: 'certificate-problem', status: 403, reason: 'BadCertificate' });
  });

  it('a certificate from another CA, dropped in the handshake: retried, then failed with a hint', async () => {
    const stranger = makePushCert();
    const { log } = captureLog();
    const p = new ApnsPusher(
      { url: standIn.url, ca: standIn.tls.caPem, certPem: stranger.certPem, keyPem: stranger.keyPem, maxRetries: 1, retryBaseMs: 10 },
      log,
    );
    pushers.push(p);
    const [r] = await p.pushNow([enrollment({}, { topic: stranger.topic })]);
    expect(r!.result).toBe('failed');
    expect(r!.reason).toMatch(/push certificate refused/);
  });

  it("refuses a configured topic that is not the certificate's", () => {
    const { log } = captureLog();
    expect(() => new ApnsPusher({ url: standIn.url, certPem: cert.certPem, keyPem: cert.keyPem, topic: 'com.apple.mgmt.External.x' }, log)).toThrow(
      /not the push certificate's/,
    );
  });

  it('picks the production or sandbox gateway by environment; a URL wins', () => {
    const { log } = captureLog();
    const prod = new ApnsPusher({ certPem: cert.certPem, keyPem: cert.keyPem }, log);
    const sandbox = new ApnsPusher({ certPem: cert.certPem, keyPem: cert.keyPem, environment: 'sandbox' }, log);
    const custom = new ApnsPusher({ certPem: cert.certPem, keyPem: cert.keyPem, environment: 'sandbox', url: 'https://localhost:1/' }, log);
    pushers.push(prod, sandbox, custom);
    expect([prod.url, sandbox.url, custom.url]).toEqual(['https://api.push.apple.com', 'https://api.sandbox.push.apple.com', 'https://localhost:1']);
  });

  it('the imported push certificate goes into the store (sealed); a replica with no files pushes with it; none before one is imported', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'orchard-apns-data-'));
    const store = await MemoryStore.open();
    const sealer = new Sealer(Buffer.from('a material key of the test, 32+ bytes'));
    try {
      const { log } = captureLog();
      expect(apnsFromCredentials(await openStoredPushCredentials(store, sealer, dir), { url: standIn.url }, log)).toBeUndefined();
      writeFileSync(join(dir, 'c.pem'), cert.certPem);
      writeFileSync(join(dir, 'k.pem'), cert.keyPem);
      importPushCertificate(join(dir, 'data'), join(dir, 'c.pem'), join(dir, 'k.pem'));
      expect((await openStoredPushCredentials(store, sealer, join(dir, 'data')))?.topic).toBe(cert.topic);
      const sealed = (await store.getMaterial('blob', 'push-certificate'))!;
      expect(sealed.toString('latin1')).not.toContain('PRIVATE KEY');
      await expect(openStoredPushCredentials(store, new Sealer(Buffer.from('another material key, 32+ bytes long')), join(dir, 'empty'))).rejects.toThrow(
        /another material key/,
      );
      const p = apnsFromCredentials(await openStoredPushCredentials(store, sealer, join(dir, 'empty')), { url: standIn.url, ca: standIn.tls.caPem }, log)!;
      pushers.push(p);
      expect(p.topic).toBe(cert.topic);
      expect((await p.pushNow([enrollment()]))[0]!.result).toBe('pushed');
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  // No duration is measured in these two: the coalescing window, the backoff and the request timeout are an hour away,
  // past the test timeout, so a close() that waited for any of them would fail the test by timing out.
  it('close() drops waiting pushes and cancels retries', async () => {
    const { p } = pusher({ coalesceMs: HOUR, retryBaseMs: HOUR, retryMaxMs: HOUR });
    const waiting = enrollment();
    const retrying = enrollment();
    standIn.answerNext(retrying.push!.token, { status: 503, reason: 'ServiceUnavailable' });
    await p.push([waiting]);
    const r = p.pushNow([retrying]);
    await until(() => p.status().counters.retries === 1, 'the first retry to be scheduled');
    await p.close(100);
    expect((await r)[0]!.result).toBe('closed');
    expect(standIn.pushesFor(waiting.push!.token)).toHaveLength(0);
  });

  it('close() does not wait for the backoff of pushes still in flight', async () => {
    const { p } = pusher({ retryBaseMs: HOUR, retryMaxMs: HOUR, requestTimeoutMs: HOUR });
    const e = enrollment();
    standIn.answerNext(e.push!.token, { status: 200, silent: true });
    const r = p.pushNow([e]);
    await until(() => standIn.pushesFor(e.push!.token).length === 1, 'the push to reach the stand-in');
    await p.close(50);
    expect((await r)[0]!.result).toBe('closed');
  });
});

describe('certificate expiry', () => {
  it('warns in the log and the status from 30 days before expiry', () => {
    const soon = makePushCert({ ca: cert.ca, notAfter: new Date(Date.now() + 10 * 86_400_000 + 60_000) });
    const { log, lines } = captureLog();
    const p = new ApnsPusher({ url: standIn.url, certPem: soon.certPem, keyPem: soon.keyPem }, log);
    pushers.push(p);
    const s = p.status();
    expect(s.certificate).toMatchObject({ daysLeft: 10, expired: false });
    expect(s.certificate.warning).toMatch(/expires in 10 days/);
    expect(lines.some((l) => l.level === 40 && /expires in 10 days/.test(l.msg))).toBe(true);
  });

  it('an expired certificate is an error in the log and the status', () => {
    const old = makePushCert({ ca: cert.ca, notBefore: new Date(Date.now() - 400 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) });
    const { log, lines } = captureLog();
    const p = new ApnsPusher({ url: standIn.url, certPem: old.certPem, keyPem: old.keyPem }, log);
    pushers.push(p);
    expect(p.status().certificate.expired).toBe(true);
    expect(lines.some((l) => l.level === 50 && /expired on/.test(l.msg))).toBe(true);
  });

  it('no warning with more than 30 days left', () => {
    const { lines } = pusher();
    expect(lines.some((l) => /expire/.test(l.msg))).toBe(false);
  });
});

/** openssl s_server demanding a client certificate from `clientCa` and aborting the handshake otherwise. */
async function opensslGateway(clientCa: string): Promise<{ url: string; caPem: string; stop: () => void }> {
  const tls = createStandInTls();
  const dir = mkdtempSync(join(tmpdir(), 'orchard-apns-openssl-'));
  for (const [f, t] of [
    ['cert.pem', tls.certPem],
    ['key.pem', tls.keyPem],
    ['ca.pem', clientCa],
  ] as const)
    writeFileSync(join(dir, f), t);
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port: p } = s.address() as { port: number };
      s.close(() => resolve(p));
    });
  });
  const child = spawn(
    'openssl',
    [
      's_server',
      '-accept',
      `127.0.0.1:${port}`,
      '-cert',
      join(dir, 'cert.pem'),
      '-key',
      join(dir, 'key.pem'),
      '-CAfile',
      join(dir, 'ca.pem'),
      '-Verify',
      '2',
      '-verify_return_error',
      '-alpn',
      'h2',
      '-quiet',
    ],
    { stdio: 'ignore' },
  );
  const stop = () => {
    child.kill();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await until(
      () =>
        new Promise<boolean>((resolve) => {
          const c = tcpConnect(port, '127.0.0.1', () => {
            c.destroy();
            resolve(true);
          });
          c.on('error', () => resolve(false));
        }),
      'openssl s_server to listen',
    );
  } catch (err) {
    stop();
    throw err;
  }
  return { url: `https://localhost:${port}`, caPem: tls.caPem, stop };
}
