/**
 * The whole front door: a simulated device fetches the served profile, verifies it, enrolls
 * through SCEP, and then speaks the MDM protocol with the issued identity, which the server
 * trusts with no extra configuration. Also: the renewed identity keeps the device.
 */
import { X509Certificate, createHash, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCA, createDeviceIdentity, issueCertificate } from '../../src/identity/ca.js';
import { SimulatedDevice } from '../../src/sim/device.js';
import { enrollFromProfile, renewIdentity, ScepEnrollError, type ScepEnrollment } from '../../src/sim/scep-enroll.js';
import { http, startTestServer } from '../helpers/server.js';
import { requireScepclient, scepclient, startEnrollServer, tempDir, TOPIC, type EnrollServer } from './helpers.js';

const STATIC = 'device-test-challenge';
let server: EnrollServer;

beforeAll(async () => {
  server = await startEnrollServer({ staticChallenge: STATIC });
});
afterAll(async () => {
  await server.stop();
});

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const auth = () => ({ authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' });

interface DeviceView {
  id: string;
  enrolled: boolean;
  identity: { certHash: string; issuerHash: string };
  enrollments: { id: string; active: boolean; topic?: string }[];
  reported: { DeviceInformation?: { value: Record<string, unknown> } };
}

async function deviceView(udid: string): Promise<DeviceView> {
  const r = await http(`${server.url}/api/v1/devices/${udid}`, { headers: auth() });
  expect(r.status).toBe(200);
  return r.json() as DeviceView;
}

async function queue(udid: string, command: Record<string, unknown>): Promise<string> {
  const r = await http(`${server.url}/api/v1/commands`, { method: 'POST', headers: auth(), body: JSON.stringify({ targets: [udid], command }) });
  expect(r.status).toBe(201);
  return (r.json() as { commandUUID: string }).commandUUID;
}

describe('a simulated device enrolling through the served profile and SCEP', () => {
  let enrollment: ScepEnrollment;
  let device: SimulatedDevice;

  it('gets an identity from our SCEP CA and the MDM settings from the profile', async () => {
    enrollment = await enrollFromProfile({ profileUrl: `${server.url}/mdm/enroll`, trustedCa: server.caPem });
    const cert = new X509Certificate(enrollment.identity.certDer);
    expect(cert.checkIssued(new X509Certificate(server.enroll.caStore.ca.certDer))).toBe(true);
    expect(cert.checkIssued(new X509Certificate(server.ca.certDer))).toBe(false); // not the test CA the server was started with
    expect(cert.subject).toBe('O=Orchard\nCN=Orchard MDM identity');
    expect(cert.publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
    expect(enrollment.device).toMatchObject({ serverUrl: server.url, topic: TOPIC, checkinPath: '/mdm/checkin', connectPath: '/mdm/connect' });
    expect(server.logs.some((l) => l.path === '/scep' && /^PKCSReq SUCCESS/.test(String(l.outcome)))).toBe(true);
  });

  it('then Authenticate, TokenUpdate and Idle pass the identity checks, and commands flow', async () => {
    device = new SimulatedDevice({ ...enrollment.device, udid: 'SCEP-DEVICE-0001', serialNumber: 'SCEPSIM0001' });
    await device.enroll();
    await device.connect(); // whatever the server queues on enrollment (inventory)
    expect(await device.connect()).toEqual([]);
    const uuid = await queue(device.udid, { RequestType: 'DeviceInformation', Queries: ['SerialNumber', 'OSVersion'] });
    expect(await device.connect()).toEqual([{ commandUUID: uuid, requestType: 'DeviceInformation', status: 'Acknowledged' }]);
    const view = await deviceView(device.udid);
    expect(view.enrolled).toBe(true);
    expect(view.identity.certHash).toBe(sha256(enrollment.identity.certDer));
    expect(view.identity.issuerHash).toBe(sha256(server.enroll.caStore.ca.certDer));
    expect(view.enrollments[0]).toMatchObject({ id: device.udid, active: true, topic: TOPIC });
    expect(view.reported.DeviceInformation?.value).toMatchObject({ SerialNumber: 'SCEPSIM0001' });
  });

  it('a server without the enrollment routes does not trust that identity (the routes add the CA)', async () => {
    const plain = await startTestServer();
    try {
      const stranger = new SimulatedDevice({ ...enrollment.device, serverUrl: plain.url, udid: 'SCEP-DEVICE-0001' });
      const r = await stranger.authenticate();
      expect(r.status).toBe(403);
      expect(r.body.toString()).toMatch(/issuer not trusted: O=Orchard, CN=Orchard SCEP CA/);
    } finally {
      await plain.stop();
    }
  });

  it('renewal: a RenewalReq signed by the current identity; the device keeps its record and enrollment under the new certificate', async () => {
    const renewed = await renewIdentity(enrollment.scepUrl, enrollment.identity);
    const newCert = new X509Certificate(renewed.certDer);
    const oldCert = new X509Certificate(enrollment.identity.certDer);
    expect(newCert.serialNumber).not.toBe(oldCert.serialNumber);
    expect(newCert.subject).toBe(oldCert.subject);
    expect(newCert.checkIssued(new X509Certificate(server.enroll.caStore.ca.certDer))).toBe(true);
    expect(server.logs.some((l) => String(l.outcome) === `RenewalReq SUCCESS serial ${newCert.serialNumber} (renewal)`)).toBe(true);

    // A command queued before the renewal survives it: renewal is not re-enrollment.
    const before = await queue(device.udid, { RequestType: 'SecurityInfo' });
    // The device checks in with the renewed identity, without a new Authenticate: the CA recorded
    // which certificate the renewal replaced, so the binding moves and the queue stays.
    const again = new SimulatedDevice({ ...enrollment.device, identity: renewed, udid: device.udid, serialNumber: device.serialNumber });
    expect(await again.connect()).toContainEqual({ commandUUID: before, requestType: 'SecurityInfo', status: 'Acknowledged' });
    const view = await deviceView(device.udid);
    expect(view.identity.certHash).toBe(sha256(renewed.certDer));
    expect(view.enrolled).toBe(true);
    expect(view.enrollments[0]).toMatchObject({ id: device.udid, active: true });
    expect(view.reported.DeviceInformation?.value).toMatchObject({ SerialNumber: 'SCEPSIM0001' }); // history kept
    const uuid = await queue(device.udid, { RequestType: 'ProfileList' });
    expect(await again.connect()).toContainEqual({ commandUUID: uuid, requestType: 'ProfileList', status: 'Acknowledged' });
    // The old certificate no longer speaks for the device.
    const old = await device.report({ Status: 'Idle', UDID: device.udid });
    expect(old.status).toBe(403);
  });

  it('refuses renewals signed by a foreign identity or an expired one of ours', async () => {
    const foreign = createDeviceIdentity(createCA({ commonName: 'Foreign CA' }), 'foreign');
    await expect(renewIdentity(enrollment.scepUrl, foreign, { key: foreign.key })).rejects.toMatchObject({ failInfo: 'badMessageCheck' });
    const expired = issueCertificate(server.enroll.caStore.ca, {
      publicKey: enrollment.identity.key,
      commonName: 'old',
      notBefore: new Date(Date.now() - 400 * 86_400_000),
      notAfter: new Date(Date.now() - 86_400_000),
    });
    const err = await renewIdentity(enrollment.scepUrl, { certDer: expired.certDer, key: enrollment.identity.key }, { key: enrollment.identity.key }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ScepEnrollError);
    expect((err as ScepEnrollError).failInfo).toBe('badTime');
  });
});

describe('other ways in', () => {
  it('a one-time profile URL from the admin API enrolls once; GET PKIOperation with 3DES works too', async () => {
    const r = await http(`${server.url}/api/v1/enrollments`, { method: 'POST', headers: auth() });
    const { profileUrl } = r.json() as { profileUrl: string };
    const e = await enrollFromProfile({ profileUrl, trustedCa: server.caPem, method: 'GET', cipher: 'des-ede3-cbc' });
    expect(server.logs.some((l) => l.method === 'GET' && l.path === '/scep' && /^PKCSReq SUCCESS/.test(String(l.outcome)))).toBe(true);
    const d = new SimulatedDevice({ ...e.device, udid: 'SCEP-DEVICE-0002' });
    await d.enroll();
    await expect(enrollFromProfile({ profileUrl, trustedCa: server.caPem })).rejects.toThrow(/HTTP 403/);
  });

  it('a profile signed by someone else is refused before any SCEP request', async () => {
    const before = server.logs.filter((l) => l.path === '/scep').length;
    await expect(enrollFromProfile({ profileUrl: `${server.url}/mdm/enroll`, trustedCa: createCA({ commonName: 'Not Ours' }).certPem })).rejects.toThrow(
      /issuer not trusted/,
    );
    expect(server.logs.filter((l) => l.path === '/scep').length).toBe(before);
  });

  it('an identity micromdm scepclient obtained passes the identity checks too', async () => {
    requireScepclient();
    const dir = tempDir();
    const run = await scepclient(server.url, dir, ['-challenge', STATIC, '-cn', 'scepclient-device']);
    expect(run.code).toBe(0);
    const certDer = new X509Certificate(readFileSync(join(dir, 'client.pem'))).raw;
    const key = createPrivateKey(readFileSync(join(dir, 'key.pem')));
    const d = new SimulatedDevice({ serverUrl: server.url, identity: { certDer, key }, udid: 'SCEP-DEVICE-0003', topic: TOPIC });
    await d.enroll();
    expect((await deviceView('SCEP-DEVICE-0003')).identity.certHash).toBe(sha256(certDer));
  });
});
