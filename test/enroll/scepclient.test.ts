/**
 * Interoperability with a real SCEP client: Debian's `scep` package (micromdm's scepclient),
 * against a real server on loopback. Enrollment, a wrong challenge, one-time challenges (also
 * across a restart), renewal, and renewals that must be refused.
 */
import { X509Certificate, createHash, createPrivateKey, createPublicKey } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueCertificate } from '../../src/identity/ca.js';
import { SimulatedDevice } from '../../src/sim/device.js';
import { opensslPki } from '../helpers/openssl.js';
import { http } from '../helpers/server.js';
import { openssl, requireScepclient, scepclient, startEnrollServer, tempDir, TOPIC, type EnrollServer } from './helpers.js';

const STATIC = 'static-Challenge-42';
let server: EnrollServer;

beforeAll(async () => {
  requireScepclient();
  server = await startEnrollServer({ staticChallenge: STATIC });
});
afterAll(async () => {
  await server?.stop();
});

function cert(dir: string): X509Certificate {
  return new X509Certificate(readFileSync(join(dir, 'client.pem')));
}

function sameKey(c: X509Certificate, keyFile: string): boolean {
  return c.publicKey
    .export({ type: 'spki', format: 'der' })
    .equals(createPublicKey(createPrivateKey(readFileSync(keyFile))).export({ type: 'spki', format: 'der' }));
}

async function oneTime(): Promise<{ challenge: string; profileUrl: string; expiresAt: string }> {
  const r = await http(`${server.url}/api/v1/enrollments`, { method: 'POST', headers: { authorization: `Bearer ${server.adminToken}` } });
  expect(r.status).toBe(201);
  return r.json() as { challenge: string; profileUrl: string; expiresAt: string };
}

describe('SCEP with micromdm scepclient', () => {
  it('GetCACaps and GetCACert', async () => {
    const caps = await http(`${server.url}/scep?operation=GetCACaps`);
    expect(caps.status).toBe(200);
    const list = caps.text.split('\n');
    for (const c of ['POSTPKIOperation', 'SHA-256', 'AES', 'SCEPStandard', 'Renewal']) expect(list).toContain(c);
    const res = await fetch(`${server.url}/scep?operation=GetCACert`);
    expect(res.headers.get('content-type')).toBe('application/x-x509-ca-cert');
    expect(Buffer.from(await res.arrayBuffer()).equals(server.enroll.caStore.ca.certDer)).toBe(true);
    expect((await http(`${server.url}/scep?operation=Nonsense`)).status).toBe(400);
  });

  it('enrolls with the static challenge: a client certificate from our CA for its own key', async () => {
    const dir = tempDir();
    const run = await scepclient(server.url, dir, ['-challenge', STATIC, '-cn', 'scep-device-1']);
    expect(run.output).toContain('pkiStatus=SUCCESS');
    expect(run.code).toBe(0);
    const issued = cert(dir);
    expect(issued.subject).toContain('CN=scep-device-1');
    expect(sameKey(issued, join(dir, 'key.pem'))).toBe(true);
    expect(openssl(['verify', '-CAfile', server.enroll.caStore.caFile, '-purpose', 'sslclient', join(dir, 'client.pem')]).code).toBe(0);
    expect(issued.keyUsage).toContain('1.3.6.1.5.5.7.3.2');
    expect(server.logs.some((l) => l.path === '/scep' && /^PKCSReq SUCCESS serial [0-9A-F]+$/.test(String(l.outcome)))).toBe(true);
    expect(JSON.stringify(server.logs)).not.toContain(STATIC);
  });

  it('a wrong challenge gets a CertRep FAILURE with failInfo badRequest, and no certificate', async () => {
    const dir = tempDir();
    const run = await scepclient(server.url, dir, ['-challenge', 'not-the-challenge', '-cn', 'intruder']);
    expect(run.code).not.toBe(0);
    expect(run.output).toMatch(/PKCSReq \(19\) request failed, failInfo: badRequest/);
    expect(existsSync(join(dir, 'client.pem'))).toBe(false);
    const noChallenge = await scepclient(server.url, tempDir(), ['-cn', 'no-challenge']);
    expect(noChallenge.code).not.toBe(0);
    expect(noChallenge.output).toContain('failInfo: badRequest');
    expect(server.logs.some((l) => /PKCSReq FAILURE badRequest: challenge password not valid/.test(String(l.outcome)))).toBe(true);
    expect(server.logs.some((l) => /PKCSReq FAILURE badRequest: no challenge password/.test(String(l.outcome)))).toBe(true);
  });

  it('a one-time challenge from POST /api/v1/enrollments works exactly once', async () => {
    const { challenge, profileUrl, expiresAt } = await oneTime();
    expect(profileUrl).toBe(`${server.url}/mdm/enroll?c=${challenge}`);
    expect(Date.parse(expiresAt) - Date.now()).toBeGreaterThan(3500_000);
    const first = await scepclient(server.url, tempDir(), ['-challenge', challenge, '-cn', 'once']);
    expect(first.code).toBe(0);
    const second = await scepclient(server.url, tempDir(), ['-challenge', challenge, '-cn', 'twice']);
    expect(second.code).not.toBe(0);
    expect(second.output).toContain('failInfo: badRequest');
    expect(JSON.stringify(server.logs)).not.toContain(challenge);
    // Admin only: the read token may not mint challenges; no token is a 401 (admin API, not a device).
    expect((await http(`${server.url}/api/v1/enrollments`, { method: 'POST', headers: { authorization: `Bearer ${server.readToken}` } })).status).toBe(403);
    expect((await http(`${server.url}/api/v1/enrollments`, { method: 'POST' })).status).toBe(401);
  });

  it('renews: a RenewalReq signed by the bound certificate of an enrolled device, no challenge, gets a new certificate for the key, once', async () => {
    const dir = tempDir();
    expect((await scepclient(server.url, dir, ['-challenge', STATIC, '-cn', 'renew-me'])).code).toBe(0);
    const old = cert(dir);
    // Not bound to any device yet: nothing to renew.
    const early = await scepclient(server.url, dir, ['-cn', 'renew-me']);
    expect(early.code).not.toBe(0);
    expect(early.output).toContain('failInfo: badRequest');
    expect(
      server.logs.some((l) => /RenewalReq FAILURE badRequest: RenewalReq refused: the signer certificate is not bound to a device/.test(String(l.outcome))),
    ).toBe(true);
    const keep = tempDir();
    copyFileSync(join(dir, 'client.pem'), join(keep, 'client.pem'));
    copyFileSync(join(dir, 'key.pem'), join(keep, 'key.pem'));
    const device = new SimulatedDevice({
      serverUrl: server.url,
      identity: { certDer: old.raw, key: createPrivateKey(readFileSync(join(dir, 'key.pem'))) },
      udid: 'SCEPCLIENT-0001',
      topic: TOPIC,
    });
    await device.enroll();

    const run = await scepclient(server.url, dir, ['-cn', 'renew-me']);
    expect(run.output).toContain('pkiStatus=SUCCESS');
    expect(run.code).toBe(0);
    const renewed = cert(dir);
    expect(renewed.serialNumber).not.toBe(old.serialNumber);
    expect(renewed.subject).toContain('CN=renew-me');
    expect(sameKey(renewed, join(dir, 'key.pem'))).toBe(true);
    expect(openssl(['verify', '-CAfile', server.enroll.caStore.caFile, join(dir, 'client.pem')]).code).toBe(0);
    expect(server.logs.some((l) => String(l.outcome) === `RenewalReq SUCCESS serial ${renewed.serialNumber} (renewal)`)).toBe(true);
    // The binding moved at issuance: the old certificate speaks for nobody and cannot renew again.
    expect((await server.store.getDevice('SCEPCLIENT-0001'))?.identity.certHash).toBe(createHash('sha256').update(renewed.raw).digest('hex'));
    expect((await device.report({ Status: 'Idle', UDID: device.udid })).status).toBe(403);
    // scepclient derives its transaction id from the key: asking again is a retry of the same
    // exchange, answered with the same certificate, not a second one.
    const twice = await scepclient(server.url, keep, ['-cn', 'renew-me']);
    expect(twice.code).toBe(0);
    expect(cert(keep).serialNumber).toBe(renewed.serialNumber);
    expect(server.logs.some((l) => String(l.outcome) === `RenewalReq (retry) SUCCESS serial ${renewed.serialNumber} (renewal)`)).toBe(true);
  });

  it('refuses a renewal signed by a certificate from another CA (badMessageCheck) or an expired one of ours (badTime)', async () => {
    const pki = opensslPki('Foreign CA');
    const foreign = pki.issue('foreign-device');
    // scepclient reads PKCS#1 keys ("RSA PRIVATE KEY") only.
    const key = createPrivateKey(readFileSync(foreign.key));
    const pkcs1 = key.export({ type: 'pkcs1', format: 'pem' });
    const dir = tempDir();
    writeFileSync(join(dir, 'key.pem'), pkcs1);
    writeFileSync(join(dir, 'client.pem'), readFileSync(foreign.cert));
    const run = await scepclient(server.url, dir, ['-cn', 'foreign-device']);
    expect(run.code).not.toBe(0);
    expect(run.output).toContain('RenewalReq (17) request failed, failInfo: badMessageCheck');
    expect(readFileSync(join(dir, 'client.pem')).equals(readFileSync(foreign.cert))).toBe(true);

    // Our CA, our key, but expired yesterday.
    const dir2 = tempDir();
    mkdirSync(dir2, { recursive: true });
    writeFileSync(join(dir2, 'key.pem'), pkcs1);
    const expired = issueCertificate(server.enroll.caStore.ca, {
      publicKey: createPublicKey(key),
      commonName: 'expired',
      notBefore: new Date(Date.now() - 10 * 86_400_000),
      notAfter: new Date(Date.now() - 86_400_000),
      extKeyUsage: ['clientAuth'],
    });
    writeFileSync(join(dir2, 'client.pem'), expired.certPem);
    const run2 = await scepclient(server.url, dir2, ['-cn', 'expired']);
    expect(run2.code).not.toBe(0);
    expect(run2.output).toContain('failInfo: badTime');
  });
});

describe('one-time challenges across a restart', () => {
  it('a challenge minted before a restart is accepted after it, by the same CA', async () => {
    const dataDir = join(tempDir(), 'data');
    const first = await startEnrollServer({}, { dataDir });
    const r = await http(`${first.url}/api/v1/enrollments`, { method: 'POST', headers: { authorization: `Bearer ${first.adminToken}` } });
    const { challenge } = r.json() as { challenge: string };
    const caDer = first.enroll.caStore.ca.certDer;
    await first.close();

    const second = await startEnrollServer({}, { dataDir });
    try {
      expect(second.enroll.caStore.ca.certDer.equals(caDer)).toBe(true);
      const dir = tempDir();
      const run = await scepclient(second.url, dir, ['-challenge', challenge, '-cn', 'after-restart']);
      expect(run.code).toBe(0);
      expect(cert(dir).checkIssued(new X509Certificate(caDer))).toBe(true);
    } finally {
      await second.stop();
    }
  });
});
