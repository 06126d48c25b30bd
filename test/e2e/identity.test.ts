import { readFileSync } from 'node:fs';
import { createPrivateKey, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCA, createDeviceIdentity } from '../../src/identity/ca.js';
import { MdmService } from '../../src/mdm/service.js';
import { decodeCheckin, decodeReport } from '../../src/protocol/messages.js';
import { buildPlist } from '../../src/protocol/plist.js';
import type { LevelStore } from '../../src/store/leveldb.js';
import { SimulatedDevice } from '../../src/sim/device.js';
import { opensslPki, opensslSign, pemToDer, type OpensslPki } from '../helpers/openssl.js';
import { http, startTestServer, type TestServer } from '../helpers/server.js';

let server: TestServer;
let pki: OpensslPki;

beforeAll(async () => {
  pki = opensslPki();
  // Trust both our own CA (from the helper) and the openssl-made one.
  server = await startTestServer();
  server.trust.addCa(readFileSync(pki.caCert, 'utf8'));
});
afterAll(async () => {
  await server.stop();
});

function put(path: string, body: Buffer, headers: Record<string, string>) {
  return http(`${server.url}${path}`, { method: 'PUT', body, headers: { 'content-type': 'application/x-apple-aspen-mdm-checkin', ...headers } });
}

function authenticate(udid: string): Buffer {
  return buildPlist({
    MessageType: 'Authenticate',
    UDID: udid,
    Topic: 'com.apple.mgmt.External.test',
    SerialNumber: `SN${udid.slice(0, 6)}`,
    Model: 'Mac14,2',
  });
}

describe('Mdm-Signature made by openssl cms -sign', () => {
  for (const mode of ['sha1-noattr', 'sha256-attr'] as const) {
    it(`accepts ${mode} and binds the certificate`, async () => {
      const { cert, key } = pki.issue(`openssl-${mode}`);
      const udid = `OPENSSL-${mode}`.toUpperCase();
      const body = authenticate(udid);
      const res = await put('/mdm/checkin', body, { 'mdm-signature': opensslSign(body, cert, key, mode) });
      expect(res.status).toBe(200);
      const dev = await server.store.getDevice(udid);
      expect(dev?.identity.subject).toContain(`openssl-${mode}`);
      // The same body with one byte changed no longer matches its signature.
      const tampered = Buffer.from(body);
      const at = tampered.indexOf('Mac14,2');
      tampered.writeUInt8(tampered.readUInt8(at) ^ 1, at);
      const bad = await put('/mdm/checkin', tampered, { 'mdm-signature': opensslSign(body, cert, key, mode) });
      expect(bad.status).toBe(403);
    });
  }
});

describe('refusals', () => {
  it('a certificate from an untrusted CA is refused with 403 and a log line', async () => {
    const rogue = createCA({ commonName: 'Rogue CA' });
    const dev = new SimulatedDevice({ serverUrl: server.url, identity: createDeviceIdentity(rogue, 'rogue-device') });
    const res = await dev.authenticate();
    expect(res.status).toBe(403);
    const line = server.logs.find((l) => l.status === 403 && /trust|issuer/i.test(String(l.reason)));
    expect(line).toBeDefined();
  });

  it('an expired certificate is refused with 403', async () => {
    const identity = createDeviceIdentity(server.ca, 'expired', { notBefore: new Date(Date.now() - 20 * 86400e3), notAfter: new Date(Date.now() - 86400e3) });
    const dev = new SimulatedDevice({ serverUrl: server.url, identity });
    const res = await dev.authenticate();
    expect(res.status).toBe(403);
    expect(res.body.toString()).toMatch(/expired|not valid/i);
  });

  it("device A's valid certificate cannot speak for device B", async () => {
    const identityA = createDeviceIdentity(server.ca, 'device-a');
    const a = new SimulatedDevice({ serverUrl: server.url, identity: identityA });
    const b = server.device({ cn: 'device-b' });
    await a.enroll();
    await b.enroll();
    // A's identity, B's UDID: every kind of message is refused.
    const impostor = new SimulatedDevice({ serverUrl: server.url, identity: identityA, udid: b.udid });
    expect((await impostor.report({ Status: 'Idle', UDID: b.udid })).status).toBe(403);
    expect((await impostor.tokenUpdate()).status).toBe(403);
    expect((await impostor.authenticate()).status).toBe(403);
    // B itself still works.
    expect((await b.report({ Status: 'Idle', UDID: b.udid })).status).toBe(200);
  });

  it('another certificate from the same CA does not take over an enrolled device; after its CheckOut it may re-enroll', async () => {
    const first = createDeviceIdentity(server.ca, 'reenroll-me');
    const dev = new SimulatedDevice({ serverUrl: server.url, identity: first, udid: 'RENEW-0001' });
    await dev.enroll();
    const second = new SimulatedDevice({ serverUrl: server.url, identity: createDeviceIdentity(server.ca, 'reenroll-me'), udid: 'RENEW-0001' });
    expect((await second.report({ Status: 'Idle', UDID: 'RENEW-0001' })).status).toBe(403);
    const refused = await second.authenticate();
    expect(refused.status).toBe(403);
    expect(refused.body.toString()).toMatch(/re-enroll policy same-serial-challenge/);
    expect((await dev.report({ Status: 'Idle', UDID: 'RENEW-0001' })).status).toBe(200);
    // The device leaves (CheckOut with its own certificate): a new identity may enroll it again.
    expect((await dev.checkOut()).status).toBe(200);
    await second.enroll();
    expect((await second.report({ Status: 'Idle', UDID: 'RENEW-0001' })).status).toBe(200);
    // The old certificate is no longer accepted.
    expect((await dev.report({ Status: 'Idle', UDID: 'RENEW-0001' })).status).toBe(403);
    expect((await server.store.getDevice('RENEW-0001'))?.identityChanges?.at(-1)).toMatchObject({
      kind: 're-enrollment',
      reason: 'same-serial-challenge: the device had checked out',
    });
  });

  it('no signature at all is a 403, never a 401', async () => {
    const res = await put('/mdm/checkin', authenticate('NOSIG-1'), {});
    expect(res.status).toBe(403);
  });
});

describe('client certificate from a TLS-terminating proxy (--cert-header)', () => {
  let proxied: TestServer;
  beforeAll(async () => {
    proxied = await startTestServer({ certHeader: 'X-Client-Cert' });
  });
  afterAll(async () => {
    await proxied.stop();
  });

  it('accepts RFC 9440 and nginx escaped PEM forms', async () => {
    for (const format of ['rfc9440', 'nginx'] as const) {
      const dev = proxied.device({ signing: { mode: 'header', header: 'X-Client-Cert', format } });
      await dev.enroll();
      expect((await dev.report({ Status: 'Idle', UDID: dev.udid })).status).toBe(200);
    }
  });

  it('accepts an openssl-made certificate, refuses a missing header with 403', async () => {
    proxied.trust.addCa(readFileSync(pki.caCert, 'utf8'));
    const { cert, key } = pki.issue('proxied');
    const dev = new SimulatedDevice({
      serverUrl: proxied.url,
      identity: { certDer: pemToDer(cert), key: createPrivateKey(readFileSync(key)) },
      signing: { mode: 'header', header: 'X-Client-Cert', format: 'rfc9440' },
    });
    await dev.enroll();
    const res = await http(`${proxied.url}/mdm/connect`, {
      method: 'PUT',
      body: buildPlist({ Status: 'Idle', UDID: dev.udid }),
      headers: { 'content-type': 'application/x-apple-aspen-mdm' },
    });
    expect(res.status).toBe(403);
  });
});

describe('identity caches are bounded', () => {
  it('requests naming unknown devices or users leave nothing behind in the caches', async () => {
    const d = server.device({ cn: 'cache-probe' });
    await d.enroll();
    const before = server.service.cacheSizes();
    const storeBefore = (server.store as LevelStore).cacheSizes();
    for (let i = 0; i < 300; i++) {
      const r = await d.report({ Status: 'Idle', UDID: randomUUID().toUpperCase() });
      expect(r.status).toBe(403);
    }
    expect(server.service.cacheSizes().bindings).toBe(before.bindings);
    // A bound device naming ever new user channels: a few per device are remembered, no more.
    for (let i = 0; i < 100; i++) expect((await d.report({ Status: 'Idle', UDID: d.udid, UserID: randomUUID().toUpperCase() })).status).toBe(200);
    expect(server.service.cacheSizes().active).toBeLessThanOrEqual(before.active + 32);
    expect((server.store as LevelStore).cacheSizes().deviceOfEnrollment).toBe(storeBefore.deviceOfEnrollment);
  });

  it('a full cache drops the least recently used device, which still works from the store', async () => {
    const service = new MdmService(server.store, { cacheMax: 3 });
    const devices = Array.from({ length: 6 }, (_, i) => ({
      udid: `LRU-${i}`,
      identity: server.trust.check(createDeviceIdentity(server.ca, `lru-${i}`).certDer),
    }));
    for (const { udid, identity } of devices) {
      await service.checkin(decodeCheckin({ MessageType: 'Authenticate', UDID: udid, Topic: 't', SerialNumber: udid }), identity);
      await service.checkin(decodeCheckin({ MessageType: 'TokenUpdate', UDID: udid, Topic: 't', Token: new Uint8Array([1]), PushMagic: 'm' }), identity);
      expect(service.cacheSizes().bindings).toBeLessThanOrEqual(3);
      expect(service.cacheSizes().active).toBeLessThanOrEqual(3);
    }
    for (const { udid, identity } of devices) {
      expect((await service.report(decodeReport({ Status: 'Idle', UDID: udid }), Buffer.alloc(0), identity)).outcome).toBe('Idle');
      // And the evicted ones are still checked: another device's certificate is refused.
      await expect(
        service.report(decodeReport({ Status: 'Idle', UDID: udid }), Buffer.alloc(0), devices[(devices.findIndex((x) => x.udid === udid) + 1) % 6]!.identity),
      ).rejects.toMatchObject({ status: 403 });
    }
    expect(service.cacheSizes().bindings).toBe(3);
  });
});
