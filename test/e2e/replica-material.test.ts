/**
 * All enrollment state in the store: a real `orchard serve --store postgres://...` process enrolls
 * a device through SCEP (its built-in CA, a one-time challenge bound to the device's serial, the
 * imported push certificate's topic) and mints a second challenge; then it stops, and a second
 * process given only the database URL and the material key (a fresh, empty data directory)
 * serves that device's signed requests, accepts the challenge the first minted (once), renews
 * the first device's identity, and builds enrollment profiles with the push certificate's topic.
 * A process with another material key refuses to start.
 */
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { importPushCertificate } from '../../src/push/push-cert.js';
import { SimulatedDevice } from '../../src/sim/device.js';
import { enrollFromProfile, getCACert, renewIdentity, ScepEnrollError } from '../../src/sim/scep-enroll.js';
import { PgStore } from '../../src/store/postgres.js';
import { missingPostgres, usePostgres } from '../helpers/postgres.js';
import { CLI, spawnServer, waitExit, type ServerProcess } from '../helpers/process.js';
import { makePushCert } from '../push/helpers.js';
import { spawn } from 'node:child_process';

const cluster = usePostgres();
const dir = mkdtempSync(join(tmpdir(), 'orchard-e2e-material-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const TOKEN = 'material-admin';
const KEY = 'the material key both replicas are given';

async function mint(srv: ServerProcess, bind: Record<string, string>): Promise<string> {
  const res = await fetch(`${srv.url}/api/v1/enrollments`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(bind),
  });
  expect(res.status).toBe(201);
  return ((await res.json()) as { challenge: string }).challenge;
}

async function stop(srv: ServerProcess): Promise<void> {
  srv.child.kill('SIGTERM');
  await waitExit(srv.child);
}

/** A server that must not start: its exit code and what it said. */
function failedStart(args: string[], env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'serve', '--listen', '127.0.0.1:0', ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

if (!cluster.available) missingPostgres('a second replica serves enrollment from the store', cluster.reason);
(cluster.available ? describe : () => undefined)('a second replica serves enrollment from the store', () => {
  it('given only the database URL and the material key: signed requests, a challenge minted by the first (once), renewal, profiles', async () => {
    const url = await cluster.cluster().database();
    const push = makePushCert();
    writeFileSync(join(dir, 'push.pem'), push.certPem);
    writeFileSync(join(dir, 'push.key'), push.keyPem);
    importPushCertificate(join(dir, 'data-a'), join(dir, 'push.pem'), join(dir, 'push.key'));
    const env = { ORCHARD_API_TOKEN: TOKEN, ORCHARD_MATERIAL_KEY: KEY };
    // APNs is a closed port: pushes fail, which changes nothing here.
    const args = (data: string) => ['--store', url, '--data-dir', join(dir, data), '--apns-url', 'https://127.0.0.1:9'];

    const a = await spawnServer(args('data-a'), env);
    let first;
    let later: string;
    try {
      const challenge = await mint(a, { serial: 'C02REPLICA01' });
      first = await enrollFromProfile({ profileUrl: `${a.url}/mdm/enroll?c=${challenge}` });
      expect(first.device.topic).toBe(push.topic);
      const device = new SimulatedDevice({ ...first.device, udid: 'REPLICA-DEVICE-1', serialNumber: 'C02REPLICA01' });
      await device.enroll();
      await device.connect();
      later = await mint(a, {});
    } finally {
      await stop(a);
    }

    const b = await spawnServer(args('data-b'), env);
    try {
      // The same CA, from the store.
      expect((await getCACert(`${b.url}/scep`)).equals(first.caCertDer)).toBe(true);
      // The device the first server enrolled: its signed requests are served here.
      const again = new SimulatedDevice({ ...first.device, serverUrl: b.url, udid: 'REPLICA-DEVICE-1', serialNumber: 'C02REPLICA01' });
      expect(await again.connect()).toEqual([]);
      // What its certificate was issued for came along: it may not speak as another serial.
      const liar = new SimulatedDevice({ ...first.device, serverUrl: b.url, udid: 'REPLICA-DEVICE-9', serialNumber: 'C02OTHER0009' });
      expect((await liar.authenticate()).status).toBe(403);

      // The challenge the first server minted works here, once; the profile carries the push certificate's topic.
      const second = await enrollFromProfile({ profileUrl: `${b.url}/mdm/enroll?c=${later}` });
      expect(second.device.topic).toBe(push.topic);
      expect(new X509Certificate(second.identity.certDer).checkIssued(new X509Certificate(first.caCertDer))).toBe(true);
      const other = new SimulatedDevice({ ...second.device, udid: 'REPLICA-DEVICE-2', serialNumber: 'C02REPLICA02' });
      await other.enroll();
      expect(await other.connect()).not.toBeUndefined();
      expect((await fetch(`${b.url}/mdm/enroll?c=${later}`)).status).toBe(403);

      // A renewal of the identity the first server issued, on the second.
      const renewed = await renewIdentity(`${b.url}/scep`, first.identity);
      const moved = new SimulatedDevice({ ...first.device, serverUrl: b.url, identity: renewed, udid: 'REPLICA-DEVICE-1', serialNumber: 'C02REPLICA01' });
      expect(await moved.connect()).toEqual([]);
      await expect(renewIdentity(`${b.url}/scep`, first.identity)).rejects.toBeInstanceOf(ScepEnrollError);
    } finally {
      await stop(b);
    }
    // The second server kept none of it in its data directory.
    for (const gone of ['ca', 'enroll', 'push', 'material.key']) expect(existsSync(join(dir, 'data-b', gone))).toBe(false);
    expect(readdirSync(join(dir, 'data-b'))).toContain('scep-ca.pem');

    // Another material key cannot open what the store holds: the server says so and exits.
    const wrong = await failedStart(args('data-c'), { ...env, ORCHARD_MATERIAL_KEY: 'some other material key, long enough' });
    expect(wrong.code).not.toBe(0);
    expect(wrong.out).toMatch(/another material key/);
    expect(wrong.out).not.toContain(KEY);

    // In the database: the CA and the push certificate sealed, no challenge left unused.
    const store = await PgStore.open(url);
    try {
      for (const blob of ['ca', 'profile-signer', 'push-certificate'])
        expect((await store.getMaterial('blob', blob))?.toString('latin1')).not.toMatch(/PRIVATE KEY/);
      expect((await store.listMaterial('challenge')).items).toEqual([]);
      expect((await store.listMaterial('issuance')).items.length).toBeGreaterThanOrEqual(2);
      expect((await store.listMaterial('scep-transaction')).items.length).toBeGreaterThanOrEqual(2);
    } finally {
      await store.close();
    }
  });
});
