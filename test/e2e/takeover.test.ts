/**
 * Taking over an enrolled device with another certificate of a trusted CA (issue 11): the
 * re-enroll policies, renewals bound to their device, certificates issued for one serial number,
 * identifiers that name another device's user channel, and blueprints that require a proven
 * serial. Real servers on loopback, identities made by openssl and by micromdm's scepclient.
 */
import { importIssuanceFiles } from '../../src/enroll/renewals.js';
import { createHash, createPrivateKey } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, type ReenrollPolicy } from '../../src/config.js';
import type { WebhookEvent } from '../../src/report/webhooks.js';
import { parsePlistDict, type PlistDict } from '../../src/protocol/plist.js';
import { issueCertificate } from '../../src/identity/ca.js';
import { SimulatedDevice, type SimIdentity } from '../../src/sim/device.js';
import { renewIdentity, ScepEnrollError } from '../../src/sim/scep-enroll.js';
import { FleetRepo, waitFor } from '../gitops/helpers.js';
import { blueprint, profile } from '../gitops/repo.js';
import { opensslPki, pemToDer, type OpensslPki } from '../helpers/openssl.js';
import { http, startTestServer, type TestServer } from '../helpers/server.js';
import { requireScepclient, scepclient, startEnrollServer, tempDir, TOPIC, type EnrollServer } from '../enroll/helpers.js';

const STATIC = 'static-challenge-everyone-knows';
const sha256 = (der: Buffer) => createHash('sha256').update(der).digest('hex');

/** A receiver for the event webhooks. */
let receiver: Server;
let hookUrl: string;
const events: WebhookEvent[] = [];

let pki: OpensslPki;

beforeAll(async () => {
  requireScepclient();
  pki = opensslPki('Takeover Test CA');
  receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => {
      body += d.toString();
    });
    req.on('end', () => {
      events.push(JSON.parse(body) as WebhookEvent);
      res.end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', () => r()));
  hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/events`;
});
afterAll(async () => {
  await new Promise((r) => receiver.close(r));
});

function opensslIdentity(cn: string): SimIdentity {
  const { cert, key } = pki.issue(cn);
  return { certDer: pemToDer(cert), key: createPrivateKey(readFileSync(key)) };
}

/** An identity from our built-in CA, obtained by scepclient with `challenge`. */
async function scepIdentity(server: EnrollServer, challenge: string, cn: string): Promise<SimIdentity> {
  const dir = tempDir();
  const run = await scepclient(server.url, dir, ['-challenge', challenge, '-cn', cn]);
  if (run.code !== 0) throw new Error(`scepclient failed: ${run.output}`);
  return { certDer: pemToDer(join(dir, 'client.pem')), key: createPrivateKey(readFileSync(join(dir, 'key.pem'))) };
}

async function oneTimeFor(server: TestServer, bind: Record<string, string>): Promise<string> {
  const r = await http(`${server.url}/api/v1/enrollments`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify(bind),
  });
  expect(r.status).toBe(201);
  const body = r.json() as { challenge: string; serial?: string };
  expect(body).toMatchObject(bind);
  return body.challenge;
}

async function queue(server: TestServer, target: string, command: Record<string, unknown>): Promise<string> {
  const r = await http(`${server.url}/api/v1/commands`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ targets: [target], command }),
  });
  expect(r.status).toBe(201);
  return (r.json() as { commandUUID: string }).commandUUID;
}

const BOOTSTRAP = Buffer.from('victim-bootstrap-token-secret');

async function setBootstrap(d: SimulatedDevice): Promise<void> {
  expect((await d.checkin({ MessageType: 'SetBootstrapToken', UDID: d.udid, BootstrapToken: new Uint8Array(BOOTSTRAP) })).status).toBe(200);
}

/** The bootstrap token the server hands this device, or undefined; throws on a refusal. */
async function getBootstrap(d: SimulatedDevice): Promise<{ status: number; token?: Buffer }> {
  const r = await d.checkin({ MessageType: 'GetBootstrapToken', UDID: d.udid });
  if (r.status !== 200) return { status: r.status };
  const t = parsePlistDict(r.body).BootstrapToken;
  return { status: 200, token: t instanceof Uint8Array ? Buffer.from(t) : undefined };
}

/** An Idle: the next command's uuid, '' for none, or the refusal status. */
async function idle(d: SimulatedDevice, userId?: string): Promise<string | number> {
  const r = await d.report({ Status: 'Idle', UDID: d.udid, ...(userId ? { UserID: userId } : {}) });
  if (r.status !== 200) return r.status;
  return r.body.length ? String(parsePlistDict(r.body).CommandUUID) : '';
}

async function identityEvents(device: string): Promise<WebhookEvent[]> {
  return waitFor(`identity change events of ${device}`, () => {
    const found = events.filter((e) => e.type === 'device.identity_changed' && e.data.device === device);
    return found.length ? found : undefined;
  });
}

describe('another certificate of the same CA Authenticates as an enrolled UDID', () => {
  const policies: Record<ReenrollPolicy, TestServer | undefined> = { allow: undefined, 'same-serial-challenge': undefined, 'after-checkout': undefined };
  beforeAll(async () => {
    for (const p of Object.keys(policies) as ReenrollPolicy[]) {
      const s = await startTestServer({ reenroll: p, eventWebhooks: [hookUrl] }, { eventSecret: 'event-secret' });
      s.trust.addCa(readFileSync(pki.caCert, 'utf8'));
      policies[p] = s;
    }
  });
  afterAll(async () => {
    for (const s of Object.values(policies)) await s?.stop();
  });

  async function enrolledVictim(server: TestServer, udid: string) {
    const victimId = opensslIdentity(`victim-${udid}`);
    const attackerId = opensslIdentity(`attacker-${udid}`);
    const victim = new SimulatedDevice({ serverUrl: server.url, identity: victimId, udid, serialNumber: `SN${udid.slice(0, 8)}` });
    await victim.enroll();
    await setBootstrap(victim);
    const uuid = await queue(server, udid, { RequestType: 'DeviceInformation', Queries: ['OSVersion'] });
    const attacker = new SimulatedDevice({ serverUrl: server.url, identity: attackerId, udid, serialNumber: victim.serialNumber });
    return { victim, attacker, uuid, victimHash: sha256(victimId.certDer), attackerHash: sha256(attackerId.certDer) };
  }

  for (const policy of ['same-serial-challenge', 'after-checkout'] as const) {
    it(`is refused under ${policy}: the victim keeps its binding, queue and bootstrap token; the newcomer gets nothing`, async () => {
      const server = policies[policy]!;
      const udid = policy === 'after-checkout' ? 'A1B2C3D4-0000-4000-8000-00000000A001' : 'A1B2C3D4-0000-4000-8000-00000000A002';
      const { victim, attacker, uuid, victimHash } = await enrolledVictim(server, udid);
      const auth = await attacker.authenticate();
      expect(auth.status).toBe(403);
      expect(auth.body.toString()).toContain(`re-enroll policy ${policy}`);
      expect(await getBootstrap(attacker)).toEqual({ status: 403 });
      expect(await idle(attacker)).toBe(403);
      // The victim is untouched: same binding, its queued command, its bootstrap token.
      expect((await server.store.getDevice(udid))?.identity.certHash).toBe(victimHash);
      expect(await idle(victim)).toBe(uuid);
      expect((await getBootstrap(victim)).token?.equals(BOOTSTRAP)).toBe(true);
      expect(server.logs.some((l) => l.status === 403 && String(l.reason).includes('re-enroll policy'))).toBe(true);
    });
  }

  it("under allow the newcomer takes over, without the old identity's secrets, and the change is an event with both certificates", async () => {
    const server = policies.allow!;
    const udid = 'A1B2C3D4-0000-4000-8000-00000000A003';
    const { victim, attacker, victimHash: from, attackerHash: to } = await enrolledVictim(server, udid);
    expect((await server.store.getEnrollment(udid))?.unlockToken).toBeDefined();
    expect((await attacker.authenticate()).status).toBe(200);
    // Secrets of the old identity are never handed to a new one.
    expect((await server.store.getEnrollment(udid))?.unlockToken).toBeUndefined();
    expect((await attacker.tokenUpdate()).status).toBe(200);
    expect(await getBootstrap(attacker)).toEqual({ status: 200, token: undefined });
    expect(await idle(victim)).toBe(403);
    const [ev] = await identityEvents(udid);
    expect(ev!.data).toMatchObject({
      device: udid,
      kind: 're-enrollment',
      reason: 'allow: any certificate of the same CA',
      from: { certHash: from },
      to: { certHash: to },
    });
    expect(JSON.stringify(ev)).not.toContain(BOOTSTRAP.toString('base64'));
    expect((await server.store.getDevice(udid))?.identityChanges).toEqual([
      expect.objectContaining({ kind: 're-enrollment', from: expect.objectContaining({ certHash: from }), to: expect.objectContaining({ certHash: to }) }),
    ]);
    expect(server.logs.some((l) => l.msg === 'device identity changed' && l.device === udid)).toBe(true);
  });

  it('after an acknowledged EraseDevice, a new certificate may enroll the device under after-checkout', async () => {
    const server = policies['after-checkout']!;
    const udid = 'A1B2C3D4-0000-4000-8000-00000000A004';
    const { victim, attacker, uuid } = await enrolledVictim(server, udid);
    expect(await idle(victim)).toBe(uuid);
    expect((await victim.report({ Status: 'Acknowledged', UDID: udid, CommandUUID: uuid, QueryResponses: { OSVersion: '15.1' } })).status).toBe(200);
    const erase = await queue(server, udid, { RequestType: 'EraseDevice', PIN: '123456' });
    expect(await idle(victim)).toBe(erase);
    expect((await victim.report({ Status: 'Acknowledged', UDID: udid, CommandUUID: erase })).status).toBe(200);
    await attacker.enroll(); // the wiped device, with its new identity
    expect(await getBootstrap(attacker)).toEqual({ status: 200, token: undefined });
    expect((await server.store.getDevice(udid))?.identityChanges?.at(-1)?.reason).toBe('after-checkout: the device acknowledged EraseDevice');
  });
});

describe('the built-in CA: anyone with the static challenge, renewals, one-time enrollments for a serial', () => {
  let server: EnrollServer;
  let strict: EnrollServer;
  beforeAll(async () => {
    server = await startEnrollServer({ staticChallenge: STATIC }, { eventWebhooks: [hookUrl] });
    strict = await startEnrollServer({ staticChallenge: STATIC }, { reenroll: 'after-checkout' });
  });
  afterAll(async () => {
    await server?.stop();
    await strict?.stop();
  });

  const VICTIM = '00008030-001A2B3C4D5E6F01';
  let victim: SimulatedDevice;
  let victimId: SimIdentity;

  it('a certificate for the static challenge does not take over an enrolled device', async () => {
    victimId = await scepIdentity(server, STATIC, 'victim');
    victim = new SimulatedDevice({ serverUrl: server.url, identity: victimId, udid: VICTIM, serialNumber: 'C02VICTIM001', topic: TOPIC });
    await victim.enroll();
    await setBootstrap(victim);
    const minted = new SimulatedDevice({
      serverUrl: server.url,
      identity: await scepIdentity(server, STATIC, 'minted'),
      udid: VICTIM,
      serialNumber: 'C02VICTIM001',
      topic: TOPIC,
    });
    expect((await minted.authenticate()).status).toBe(403);
    expect(await idle(victim)).toBe('');
  });

  it('an enrolled device renews once; its renewal speaks for it only, and the renewed certificate for nobody', async () => {
    const own = await scepIdentity(server, STATIC, 'renewer');
    const device = new SimulatedDevice({ serverUrl: server.url, identity: own, udid: '00008030-00000000000000A1', topic: TOPIC });
    await device.enroll();
    await setBootstrap(device);
    const scepUrl = `${server.url}/scep`;
    const renewed = await renewIdentity(scepUrl, own);
    // The binding moved at issuance: the renewal works at once and keeps the device's secrets.
    const again = new SimulatedDevice({ serverUrl: server.url, identity: renewed, udid: device.udid, serialNumber: device.serialNumber, topic: TOPIC });
    expect(await idle(again)).toBe('');
    expect((await getBootstrap(again)).token?.equals(BOOTSTRAP)).toBe(true);
    expect(await idle(device)).toBe(403);
    expect((await identityEvents(device.udid))[0]!.data).toMatchObject({
      kind: 'renewal',
      from: { certHash: sha256(own.certDer) },
      to: { certHash: sha256(renewed.certDer) },
    });
    // The renewal cannot speak for the victim, whatever the policy.
    const hijack = new SimulatedDevice({ serverUrl: server.url, identity: renewed, udid: VICTIM, serialNumber: 'C02VICTIM001', topic: TOPIC });
    const r = await hijack.authenticate();
    expect(r.status).toBe(403);
    expect(r.body.toString()).toMatch(/belongs to device|renewal issued for another device/);
    // One renewal per certificate: the renewed one may not ask again (a new transaction, a new key).
    const second = await renewIdentity(scepUrl, own).catch((e: unknown) => e);
    expect(second).toBeInstanceOf(ScepEnrollError);
    expect((second as ScepEnrollError).failInfo).toBe('badRequest');
    expect(String((second as ScepEnrollError).message)).toMatch(/renewed already|not bound/);
    // Nor may it come back with an Authenticate (a new one: an identical replay is answered as before).
    const back = await new SimulatedDevice({ serverUrl: server.url, identity: own, udid: device.udid, osVersion: '15.2', topic: TOPIC }).authenticate();
    expect(back.body.toString()).toContain('it was renewed');
    expect(back.status).toBe(403);
    // A certificate nobody enrolled with cannot renew at all.
    const stray = await scepIdentity(server, STATIC, 'stray');
    await expect(renewIdentity(scepUrl, stray)).rejects.toMatchObject({ failInfo: 'badRequest' });
  });

  it('a renewal recorded by an earlier version (no device named) still takes over on first use', async () => {
    const own = await scepIdentity(server, STATIC, 'legacy');
    const device = new SimulatedDevice({ serverUrl: server.url, identity: own, udid: '00008030-00000000000000E1', topic: TOPIC });
    await device.enroll();
    // What the old RenewalReq path left behind: the new certificate, and a file naming the one it renewed.
    const renewed = issueCertificate(server.enroll.caStore.ca, {
      publicKey: own.key,
      commonName: 'legacy',
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 86_400_000),
      extKeyUsage: ['clientAuth'],
    });
    // (moved into the store as a server start does with an earlier version's data directory).
    const old = join(server.dir, 'legacy-enroll');
    mkdirSync(join(old, 'renewals'), { recursive: true });
    writeFileSync(join(old, 'renewals', sha256(renewed.certDer)), sha256(own.certDer));
    expect(await importIssuanceFiles(server.store, { issued: join(old, 'issued'), renewals: join(old, 'renewals') })).toBe(1);
    const again = new SimulatedDevice({ serverUrl: server.url, identity: { certDer: renewed.certDer, key: own.key }, udid: device.udid, topic: TOPIC });
    expect(await idle(again)).toBe('');
    expect((await server.store.getDevice(device.udid))?.identity.certHash).toBe(sha256(renewed.certDer));
    expect(await idle(device)).toBe(403);
    // It speaks for that device only.
    const elsewhere = new SimulatedDevice({
      serverUrl: server.url,
      identity: { certDer: renewed.certDer, key: own.key },
      udid: VICTIM,
      serialNumber: 'C02VICTIM001',
      topic: TOPIC,
    });
    expect((await elsewhere.authenticate()).status).toBe(403);
  });

  it('a wiped device re-enrolls through a one-time enrollment for its serial: a new identity, no old secrets, an event', async () => {
    const challenge = await oneTimeFor(server, { serial: 'C02VICTIM001' });
    const fresh = await scepIdentity(server, challenge, 'victim-after-wipe');
    // Issued for that serial: it cannot claim another one, on this or any UDID.
    const liar = new SimulatedDevice({ serverUrl: server.url, identity: fresh, udid: '00008030-00000000000000B1', serialNumber: 'C02OTHER0001', topic: TOPIC });
    const lie = await liar.authenticate();
    expect(lie.status).toBe(403);
    expect(lie.body.toString()).toContain('issued for another serial number');
    const wiped = new SimulatedDevice({ serverUrl: server.url, identity: fresh, udid: VICTIM, serialNumber: 'C02VICTIM001', topic: TOPIC });
    await wiped.enroll();
    expect(await getBootstrap(wiped)).toEqual({ status: 200, token: undefined });
    expect(await idle(victim)).toBe(403);
    const dev = await server.store.getDevice(VICTIM);
    expect(dev?.facts.provenSerialNumber).toBe('C02VICTIM001');
    expect(dev?.identity.issuedFor).toEqual({ serial: 'C02VICTIM001' });
    // The device's record in the admin API shows the change too.
    const view = await http(`${server.url}/api/v1/devices/${VICTIM}`, { headers: { authorization: `Bearer ${server.readToken}` } });
    expect((view.json() as { identityChanges: { kind: string; to: { certHash: string } }[] }).identityChanges.at(-1)).toMatchObject({
      kind: 're-enrollment',
      to: { certHash: sha256(fresh.certDer) },
    });
    const ev = (await identityEvents(VICTIM)).at(-1)!;
    expect(ev.data).toMatchObject({
      kind: 're-enrollment',
      reason: 'same-serial-challenge: the certificate was issued for this serial number',
      from: { certHash: sha256(victimId.certDer) },
      to: { certHash: sha256(fresh.certDer) },
    });
  });

  it('a one-time enrollment for a UDID binds to that UDID; under after-checkout it does not replace an enrolled identity', async () => {
    const udid = '00008030-00000000000000C1';
    const first = new SimulatedDevice({ serverUrl: strict.url, identity: await scepIdentity(strict, STATIC, 'c1'), udid, topic: TOPIC });
    await first.enroll();
    const bound = await scepIdentity(strict, await oneTimeFor(strict, { udid }), 'c1-bound');
    const elsewhere = new SimulatedDevice({ serverUrl: strict.url, identity: bound, udid: '00008030-00000000000000C2', topic: TOPIC });
    expect((await elsewhere.authenticate()).status).toBe(403);
    const replacement = new SimulatedDevice({ serverUrl: strict.url, identity: bound, udid, topic: TOPIC });
    const r = await replacement.authenticate();
    expect(r.status).toBe(403);
    expect(r.body.toString()).toContain('re-enroll policy after-checkout');
    expect((await first.checkOut()).status).toBe(200);
    await replacement.enroll();
  });

  it('POST /api/v1/enrollments refuses a malformed device binding', async () => {
    for (const body of ['{"serial": "C02 BAD"}', '{"udid": "A:B"}', '{"serial": 7}', '{"owner": "x"}', '[1]', 'not json']) {
      const r = await http(`${server.url}/api/v1/enrollments`, {
        method: 'POST',
        headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
        body,
      });
      expect(r.status, body).toBe(400);
    }
  });
});

describe("a UDID with ':' names another device's user channel", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
    server.trust.addCa(readFileSync(pki.caCert, 'utf8'));
  });
  afterAll(async () => {
    await server.stop();
  });

  it('is refused with 400; the victim keeps its user channel and its queue', async () => {
    const udid = 'B1B2C3D4-0000-4000-8000-00000000B001';
    const victim = new SimulatedDevice({ serverUrl: server.url, identity: opensslIdentity('colon-victim'), udid });
    await victim.enroll();
    expect((await victim.tokenUpdate({ userId: 'USER1' })).status).toBe(200);
    const uuid = await queue(server, `${udid}:USER1`, { RequestType: 'ProfileList' });
    const attacker = new SimulatedDevice({ serverUrl: server.url, identity: opensslIdentity('colon-attacker'), udid: `${udid}:USER1` });
    for (const step of [() => attacker.authenticate(), () => attacker.tokenUpdate(), () => attacker.report({ Status: 'Idle', UDID: `${udid}:USER1` })]) {
      const r = await step();
      expect(r.status).toBe(400);
      expect(r.body.toString()).toMatch(/not a device identifier/);
    }
    // Nor through UserID or EnrollmentID.
    const wrong: PlistDict[] = [
      { Status: 'Idle', UDID: udid, UserID: 'USER1:X' },
      { Status: 'Idle', EnrollmentID: `${udid}:USER1` },
      { Status: 'Idle', UDID: `${udid} ` },
    ];
    for (const dict of wrong) {
      const r = await victim.report(dict);
      expect(r.status).toBe(400);
    }
    expect(await idle(victim, 'USER1')).toBe(uuid);
    expect(await server.store.getEnrollment(`${udid}:USER1`)).toMatchObject({ deviceId: udid, type: 'user', active: true });
    expect(await server.store.getDevice(`${udid}:USER1`)).toBeUndefined();
  });

  it('accepts the identifiers real devices send (NanoMDM captures)', async () => {
    const vectors = join(import.meta.dirname, '../fixtures/vectors/nanomdm');
    for (const f of ['Authenticate.1.plist', 'Authenticate.2.plist']) {
      const dict = parsePlistDict(readFileSync(join(vectors, f)));
      const d = new SimulatedDevice({ serverUrl: server.url, identity: opensslIdentity(f), udid: String(dict.UDID) });
      expect((await d.checkin({ ...dict })).status).toBe(200);
    }
    // A user channel with a real macOS UserID (a UUID).
    const mac = new SimulatedDevice({ serverUrl: server.url, identity: opensslIdentity('mac-user'), udid: '66ADE930-5FDF-5EC4-8429-15640684C4AA' });
    await mac.enroll();
    expect((await mac.tokenUpdate({ userId: 'A1B2C3D4-0000-0000-0000-000000000501' })).status).toBe(200);
  });
});

describe('devices choose their own facts: blueprints with secrets can require a proven serial', () => {
  let repo: FleetRepo;
  let server: EnrollServer;
  beforeAll(async () => {
    repo = new FleetRepo();
    const wifi = profile(
      'wifi',
      'com.example.wifi',
      '    - type: com.apple.wifi.managed\n      keys:\n        SSID_STR: Example-Corp\n        EncryptionType: WPA2\n        Password: ${secret:psk}\n',
    );
    const secret = 'apiVersion: orchard/v1\nkind: Secret\nmetadata: {name: psk}\nspec: {description: fleet PSK}\n';
    repo
      .write('profiles/wifi.yaml', wifi)
      .write('secrets.yaml', secret)
      .write('blueprints/wifi.yaml', blueprint('office-wifi', '    serials: [C02PROVEN001]\n    proven: true', ['wifi']));
    repo.commit('wifi for a proven serial only');
    const dataDir = join(repo.root, 'server');
    server = await startEnrollServer(
      { staticChallenge: STATIC },
      { repo: repo.url, pollIntervalMs: 0, driftIntervalMs: 0, dataDir, secretsDir: join(repo.root, 'secrets') },
    );
    mkdirSync(join(repo.root, 'secrets'), { recursive: true });
    writeFileSync(join(repo.root, 'secrets', 'psk'), 'fleet-psk-value');
    await server.source!.sync('test');
  });
  afterAll(async () => {
    await server?.stop();
    repo?.cleanup();
  });

  it('a device claiming the serial gets nothing; the one whose certificate was issued for it gets the Wi-Fi profile', async () => {
    const impostor = new SimulatedDevice({
      serverUrl: server.url,
      identity: await scepIdentity(server, STATIC, 'impostor'),
      udid: '00008030-0000000000000D01',
      serialNumber: 'C02PROVEN001',
      topic: TOPIC,
    });
    const real = new SimulatedDevice({
      serverUrl: server.url,
      identity: await scepIdentity(server, await oneTimeFor(server, { serial: 'C02PROVEN001' }), 'real'),
      udid: '00008030-0000000000000D02',
      serialNumber: 'C02PROVEN001',
      topic: TOPIC,
    });
    for (const d of [impostor, real]) await d.enroll();
    await waitFor(
      'the real device to get the Wi-Fi profile',
      async () => {
        for (const d of [impostor, real]) await d.connect();
        return real.profiles.has('com.example.wifi') || undefined;
      },
      15_000,
    );
    for (let i = 0; i < 3; i++) await impostor.connect();
    expect(impostor.profiles.has('com.example.wifi')).toBe(false);
    expect(impostor.handled.some((c) => c.requestType === 'InstallProfile')).toBe(false);
    expect((await server.store.getDevice(impostor.udid))?.facts.provenSerialNumber).toBeUndefined();
    // The plan says the same from the inventory the admin API serves.
    const inv = await http(`${server.url}/api/v1/devices`, { headers: { authorization: `Bearer ${server.readToken}` } });
    const facts = (inv.json() as { devices: { id: string; facts: { provenSerialNumber?: string } }[] }).devices.map((d) => [d.id, d.facts.provenSerialNumber]);
    expect(Object.fromEntries(facts)).toMatchObject({ [real.udid]: 'C02PROVEN001', [impostor.udid]: undefined });
  });
});

describe('the re-enroll policy setting', () => {
  it('defaults to same-serial-challenge; --reenroll and the reenroll key choose another; anything else is refused', () => {
    expect(loadConfig({}).reenroll).toBe('same-serial-challenge');
    expect(loadConfig({ reenroll: 'after-checkout' }).reenroll).toBe('after-checkout');
    const file = join(tempDir(), 'orchard.yaml');
    writeFileSync(file, 'reenroll: allow\n');
    expect(loadConfig({ config: file }).reenroll).toBe('allow');
    expect(() => loadConfig({ reenroll: 'always' })).toThrow(ConfigError);
    writeFileSync(file, 'reenroll: always\n');
    expect(() => loadConfig({ config: file })).toThrow(/reenroll: "always" is not one of allow, same-serial-challenge, after-checkout/);
  });
});
