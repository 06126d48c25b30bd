/**
 * The enrollment profile at GET /mdm/enroll and from `orchard enroll-profile`: signed so that
 * `openssl smime -verify` accepts it against our CA, with the payloads a device needs, checked
 * against Apple's schema.
 */
import { createPrivateKey } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runEnrollProfile } from '../../src/cli/enroll.js';
import { ConfigError } from '../../src/config.js';
import { topicFromPushCert, verifyEnrollmentProfile } from '../../src/enroll/profile.js';
import { validatePayload, validateTopLevel } from '../../src/gitops/apple/payloads.js';
import { parsePlistDict, type PlistDict } from '../../src/protocol/plist.js';
import { createCA } from '../../src/identity/ca.js';
import { SimulatedDevice } from '../../src/sim/device.js';
import { http } from '../helpers/server.js';
import { openssl, requireScepclient, scepclient, startEnrollServer, tempDir, TOPIC, VECTORS, type EnrollServer } from './helpers.js';

const STATIC = 'profile-static-challenge';
const PUBLIC = 'https://mdm.example.com/orchard';

async function get(url: string): Promise<{ status: number; type: string; disposition: string; body: Buffer }> {
  const res = await fetch(url);
  return {
    status: res.status,
    type: res.headers.get('content-type') ?? '',
    disposition: res.headers.get('content-disposition') ?? '',
    body: Buffer.from(await res.arrayBuffer()),
  };
}

/** `openssl smime -verify` against `caFile`; returns the signed content or the failure. */
function smimeVerify(der: Buffer, caFile: string): { ok: boolean; content: Buffer; stderr: string } {
  const file = join(tempDir(), 'enroll.mobileconfig');
  writeFileSync(file, der);
  const r = openssl(['smime', '-verify', '-inform', 'DER', '-in', file, '-CAfile', caFile]);
  return { ok: r.code === 0, content: r.stdout, stderr: r.stderr };
}

function payload(profile: PlistDict, type: string): PlistDict {
  const p = (profile.PayloadContent as PlistDict[]).find((x) => x.PayloadType === type);
  if (!p) throw new Error(`no ${type} payload`);
  return p;
}

describe('GET /mdm/enroll', () => {
  let server: EnrollServer;
  beforeAll(async () => {
    server = await startEnrollServer({ staticChallenge: STATIC }, { publicUrl: PUBLIC });
  });
  afterAll(async () => {
    await server.stop();
  });

  it('serves a profile openssl smime -verify accepts against our CA, as application/x-apple-aspen-config', async () => {
    const r = await get(`${server.url}/mdm/enroll`);
    expect(r.status).toBe(200);
    expect(r.type).toBe('application/x-apple-aspen-config');
    expect(r.disposition).toContain('enroll.mobileconfig');
    const v = smimeVerify(r.body, server.enroll.caStore.caFile);
    expect(v.stderr).toContain('Verification successful');
    expect(v.ok).toBe(true);
    const profile = parsePlistDict(v.content);
    expect(profile.PayloadType).toBe('Configuration');
    expect(profile.PayloadIdentifier).toBe('com.example.mdm.orchard.enroll');
    expect((profile.PayloadContent as PlistDict[]).map((p) => p.PayloadType)).toEqual(['com.apple.security.root', 'com.apple.security.scep', 'com.apple.mdm']);

    const root = payload(profile, 'com.apple.security.root');
    expect(Buffer.from(root.PayloadContent as Uint8Array).equals(server.enroll.caStore.ca.certDer)).toBe(true);
    const scep = payload(profile, 'com.apple.security.scep');
    expect(scep.PayloadContent).toMatchObject({
      URL: `${PUBLIC}/scep`,
      Challenge: STATIC,
      Keysize: 2048,
      'Key Type': 'RSA',
      Subject: [[['O', 'Orchard']], [['CN', 'Orchard MDM identity']]],
    });
    const mdm = payload(profile, 'com.apple.mdm');
    expect(mdm).toMatchObject({
      IdentityCertificateUUID: scep.PayloadUUID,
      Topic: TOPIC,
      ServerURL: `${PUBLIC}/mdm/connect`,
      CheckInURL: `${PUBLIC}/mdm/checkin`,
      SignMessage: true,
      CheckOutWhenRemoved: true,
      AccessRights: 8191,
      ServerCapabilities: ['com.apple.mdm.per-user-connections', 'com.apple.mdm.bootstraptoken'],
    });
    expect(new Set((profile.PayloadContent as PlistDict[]).map((p) => p.PayloadUUID)).size).toBe(3);
    expect(JSON.stringify(server.logs)).not.toContain(STATIC);
  });

  it('its payloads pass Apple schema validation (per-user-connections is Apple-documented but not in the vendored list)', async () => {
    const { profile } = verifyEnrollmentProfile((await get(`${server.url}/mdm/enroll`)).body, server.caPem);
    expect(validateTopLevel(profile).filter((i) => i.severity === 'error')).toEqual([]);
    for (const p of profile.PayloadContent as PlistDict[]) {
      const issues = validatePayload(String(p.PayloadType), p, { platforms: [], mode: 'complete' }).filter((i) => i.severity === 'error');
      const unexpected = issues.filter(
        (i) => !(p.PayloadType === 'com.apple.mdm' && i.path[0] === 'ServerCapabilities' && /per-user-connections/.test(i.message)),
      );
      expect(unexpected).toEqual([]);
    }
  });

  it('a changed byte, or another CA, fails openssl verification', async () => {
    const body = (await get(`${server.url}/mdm/enroll`)).body;
    const at = body.indexOf(Buffer.from('Orchard MDM identity'));
    expect(at).toBeGreaterThan(0);
    const tampered = Buffer.from(body);
    tampered[at] = 'X'.charCodeAt(0);
    const t = smimeVerify(tampered, server.enroll.caStore.caFile);
    expect(t.ok).toBe(false);
    expect(() => verifyEnrollmentProfile(tampered, server.caPem)).toThrow(/digest/);
    const otherCa = join(tempDir(), 'other.pem');
    writeFileSync(otherCa, createCA({ commonName: 'Someone Else' }).certPem);
    expect(smimeVerify(body, otherCa).ok).toBe(false);
    expect(() => verifyEnrollmentProfile(body, readFileSync(otherCa, 'utf8'))).toThrow(/issuer not trusted/);
  });
});

describe('profile access', () => {
  it('without a static challenge it takes a valid one-time link; links die when used up; no topic is a 503', async () => {
    requireScepclient();
    const server = await startEnrollServer({});
    try {
      expect((await get(`${server.url}/mdm/enroll`)).status).toBe(403);
      expect((await get(`${server.url}/mdm/enroll?c=0123456789abcdef0123456789abcdef01234567`)).status).toBe(403);
      const r = await http(`${server.url}/api/v1/enrollments`, { method: 'POST', headers: { authorization: `Bearer ${server.adminToken}` } });
      const { challenge, profileUrl } = r.json() as { challenge: string; profileUrl: string };
      const p = await get(profileUrl);
      expect(p.status).toBe(200);
      const v = verifyEnrollmentProfile(p.body, server.caPem);
      expect(v.scep.Challenge).toBe(challenge);
      expect(v.scep.URL).toBe(`${server.url}/scep`);
      expect((await get(profileUrl)).status).toBe(200); // still unused
      expect((await scepclient(server.url, tempDir(), ['-challenge', challenge])).code).toBe(0);
      expect((await get(profileUrl)).status).toBe(403);
      expect(server.logs.filter((l) => l.path === '/mdm/enroll').map((l) => l.status)).toEqual([403, 403, 200, 200, 403]);
    } finally {
      await server.stop();
    }
    const noTopic = await startEnrollServer({ staticChallenge: STATIC, topic: () => undefined });
    try {
      const r = await get(`${noTopic.url}/mdm/enroll`);
      expect(r.status).toBe(503);
      expect(r.body.toString()).toMatch(/push certificate/);
    } finally {
      await noTopic.stop();
    }
  });
});

describe('orchard enroll-profile', () => {
  it('writes the same kind of signed profile; its one-time challenge works in a server on the same store; a held store is a clear error', async () => {
    requireScepclient();
    const dataDir = join(tempDir(), 'data');
    // Minted while no server holds the embedded store: the CA and the challenges are in it.
    const out = await runEnrollProfile({ dataDir, publicUrl: 'http://127.0.0.1:1', pushCert: join(VECTORS, 'apple-certs/push-expired.pem') }, {});
    expect(out.notes.join('\n')).toMatch(/one-time SCEP challenge, valid for one enrollment until/);
    const withStatic = await runEnrollProfile({ dataDir, publicUrl: 'http://127.0.0.1:1', topic: TOPIC }, { ORCHARD_SCEP_CHALLENGE: STATIC });
    const forcedOneTime = await runEnrollProfile({ dataDir, publicUrl: 'http://127.0.0.1:1', topic: TOPIC, oneTime: true }, { ORCHARD_SCEP_CHALLENGE: STATIC });
    // --serial: a one-time challenge whose certificate speaks for that serial number only.
    const forSerial = await runEnrollProfile(
      { dataDir, publicUrl: 'http://127.0.0.1:1', topic: TOPIC, serial: 'C02CLI000001' },
      { ORCHARD_SCEP_CHALLENGE: STATIC },
    );
    expect(forSerial.notes.join('\n')).toContain('for serial C02CLI000001');
    await expect(runEnrollProfile({ dataDir, publicUrl: 'http://127.0.0.1:1', topic: TOPIC, udid: 'A:B' }, {})).rejects.toThrow(ConfigError);

    const server = await startEnrollServer({}, { dataDir });
    try {
      const v = smimeVerify(out.profile, server.enroll.caStore.caFile);
      expect(v.ok).toBe(true);
      const { scep, mdm } = verifyEnrollmentProfile(out.profile, server.caPem);
      expect(mdm.Topic).toBe('com.apple.mgmt.External.e0bd1eac-1f17-4c8e-8a63-dd17d3dd35d9');
      expect(scep.Challenge).toMatch(/^[0-9a-f]{40}$/);
      expect(out.notes.join('\n')).not.toContain(scep.Challenge!);
      expect((await scepclient(server.url, tempDir(), ['-challenge', scep.Challenge!])).code).toBe(0);
      // Used up: a second enrollment with it is refused.
      expect((await scepclient(server.url, tempDir(), ['-challenge', scep.Challenge!])).code).not.toBe(0);
      expect(verifyEnrollmentProfile(withStatic.profile, server.caPem).scep.Challenge).toBe(STATIC);
      expect(verifyEnrollmentProfile(forcedOneTime.profile, server.caPem).scep.Challenge).not.toBe(STATIC);
      const dir = tempDir();
      expect((await scepclient(server.url, dir, ['-challenge', verifyEnrollmentProfile(forSerial.profile, server.caPem).scep.Challenge!])).code).toBe(0);
      const identity = {
        certDer: Buffer.from(readFileSync(join(dir, 'client.pem'), 'utf8').replace(/-----[^-]+-----|\s/g, ''), 'base64'),
        key: createPrivateKey(readFileSync(join(dir, 'key.pem'))),
      };
      const liar = new SimulatedDevice({ serverUrl: server.url, identity, udid: '00008030-00000000000CL101', serialNumber: 'C02OTHER0001', topic: TOPIC });
      expect((await liar.authenticate()).status).toBe(403);
      const device = new SimulatedDevice({ serverUrl: server.url, identity, udid: '00008030-00000000000CL101', serialNumber: 'C02CLI000001', topic: TOPIC });
      await device.enroll();
      expect((await server.store.getDevice(device.udid))?.facts.provenSerialNumber).toBe('C02CLI000001');
      // The running server holds the embedded store: the CLI says so and names the API instead.
      await expect(runEnrollProfile({ dataDir, publicUrl: server.url, topic: TOPIC }, {})).rejects.toThrow(/POST \/api\/v1\/enrollments/);
    } finally {
      await server.stop();
    }
    await expect(runEnrollProfile({ dataDir, topic: TOPIC }, {})).rejects.toThrow(ConfigError);
    await expect(runEnrollProfile({ dataDir, publicUrl: 'https://x.example' }, {})).rejects.toThrow(/APNs topic/);
    const fromDefault = await runEnrollProfile(
      { dataDir, publicUrl: 'https://x.example' },
      {},
      { topic: (cfg) => (cfg.dataDir === dataDir ? TOPIC : undefined) },
    );
    expect(verifyEnrollmentProfile(fromDefault.profile).mdm.Topic).toBe(TOPIC);
  });

  it('reads the topic from a real push certificate and refuses a certificate that is not one', () => {
    expect(topicFromPushCert(readFileSync(join(VECTORS, 'apple-certs/push-expired.pem')))).toBe('com.apple.mgmt.External.e0bd1eac-1f17-4c8e-8a63-dd17d3dd35d9');
    expect(() => topicFromPushCert(createCA().certPem)).toThrow(/not an MDM push certificate/);
  });
});
