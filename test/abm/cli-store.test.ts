/**
 * `orchard abm ... --store postgres://...` as a process: the key pair and the tokens go into the
 * store (sealed with the servers' material key), not into a data directory, so a replica with only
 * the database can run them; a server on that database then syncs with the token.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { serverTokenText } from '../../src/abm/token.js';
import { DepStandin } from '../../src/sim/dep.js';
import { openssl } from '../helpers/openssl.js';
import { missingPostgres, usePostgres } from '../helpers/postgres.js';
import { CLI } from '../helpers/process.js';
import { http, startTestServer } from '../helpers/server.js';

const run = promisify(execFile);
const pg = usePostgres();
const dir = mkdtempSync(join(tmpdir(), 'orchard-abm-cli-store-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const materialKey = 'the material key every replica is given';
const creds = { consumerKey: 'CK_store', consumerSecret: 'CS_never_printed', accessToken: 'AT_store', accessSecret: 'AS_never_printed' };

async function orchard(args: string[], env: Record<string, string | undefined>): Promise<{ code: number; stdout: string; stderr: string }> {
  const { ORCHARD_MATERIAL_KEY: _, ...base } = process.env;
  try {
    const r = await run(process.execPath, [CLI, ...args], { env: { ...base, ...env } });
    return { code: 0, ...r };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

if (!pg.available) missingPostgres('orchard abm --store', pg.reason);
(pg.available ? describe : () => undefined)('orchard abm --store', () => {
  it('keypair, token import and list work on the store with no data directory files; a server on that database has the token', async () => {
    const url = await pg.cluster().database();
    // An empty data directory: what a replica with only the database has.
    const data = join(dir, 'replica');
    const env = { ORCHARD_MATERIAL_KEY: materialKey };
    const where = ['--store', url, '--data-dir', data];

    const kp = await orchard(['abm', 'keypair', ...where], env);
    expect(kp.code).toBe(0);
    expect(kp.stdout).toMatch(/^-----BEGIN CERTIFICATE-----\n[\s\S]+-----END CERTIFICATE-----\n$/);
    expect(kp.stderr).toMatch(/made a new key pair in the store/);
    const again = await orchard(['abm', 'keypair', ...where], env);
    expect(again.stdout).toBe(kp.stdout);
    expect(again.stderr).toMatch(/kept the key pair in the store/);

    const certFile = join(dir, 'abm.pem');
    writeFileSync(certFile, kp.stdout);
    writeFileSync(join(dir, 'token.txt'), serverTokenText({ ...creds, accessTokenExpiry: new Date(Date.now() + 200 * 86_400_000) }));
    writeFileSync(join(dir, 'token.p7m'), openssl(['smime', '-encrypt', '-aes256', '-in', join(dir, 'token.txt'), certFile]));
    const imp = await orchard(['abm', 'token', 'import', join(dir, 'token.p7m'), '--name', 'acme', '--offline', ...where], env);
    expect(imp.code).toBe(0);
    expect(imp.stdout).toMatch(/imported ABM server token "acme"/);
    expect(imp.stdout + imp.stderr).not.toMatch(/never_printed/);

    const list = await orchard(['abm', 'token', 'list', ...where], env);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^acme$/m);
    expect(existsSync(join(data, 'abm'))).toBe(false);
    // Without --store the commands keep to the data directory, which has no token.
    expect((await orchard(['abm', 'token', 'list', '--data-dir', data], env)).code).toBe(1);

    const dep = await new DepStandin({ credentials: creds }).start();
    const server = await startTestServer({ store: url, abmUrl: dep.url, abmSyncIntervalMs: 0 }, { materialKey, isLeader: () => true });
    try {
      dep.add({ serial_number: 'C02ABMCLI001', model: 'MacBook Air' });
      await server.abm.runOnce();
      expect(dep.requests.map((r) => `${r.method} ${r.path} ${r.status}`)).toEqual(['GET /session 200', 'POST /server/devices 200']);
      const status = await http(`${server.url}/api/v1/status`, { headers: { authorization: `Bearer ${server.readToken}` } });
      expect((status.json() as { abm: { tokens: { name: string }[] } }).abm.tokens).toEqual([expect.objectContaining({ name: 'acme' })]);
      expect((await server.abmStore.getAbmDevice('C02ABMCLI001'))?.model).toBe('MacBook Air');
    } finally {
      await server.stop();
      await dep.stop();
    }
  });

  it('a wrong or missing material key is a clear error that quotes no secret', async () => {
    const url = await pg.cluster().database();
    const data = join(dir, 'keys');
    const where = ['--store', url, '--data-dir', data];
    expect((await orchard(['abm', 'keypair', ...where], { ORCHARD_MATERIAL_KEY: materialKey })).code).toBe(0);

    const wrongKey = 'another material key, not the servers';
    const wrong = await orchard(['abm', 'token', 'import', join(dir, 'token.p7m'), '--offline', ...where], { ORCHARD_MATERIAL_KEY: wrongKey });
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/^orchard abm token import: the abm-keypair in the store was sealed with another material key/);
    expect(wrong.stdout + wrong.stderr).not.toContain(wrongKey);
    expect(wrong.stdout + wrong.stderr).not.toContain(materialKey);
    expect(wrong.stdout + wrong.stderr).not.toMatch(/PRIVATE KEY/);

    const missing = await orchard(['abm', 'token', 'list', ...where], {});
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--store needs the servers' material key: set ORCHARD_MATERIAL_KEY, or --material-key-file FILE/);
    expect(existsSync(join(data, 'material.key'))).toBe(false);
  });
});
