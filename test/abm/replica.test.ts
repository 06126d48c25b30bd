/**
 * ABM on a replica that has only the database URL and the material key: the first server keeps the
 * key pair and token `orchard abm` wrote into its data directory in the store (sealed; the files
 * stay); it stops and its directory goes; a second server with a fresh data directory syncs ABM
 * with that token.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DepStandin } from '../../src/sim/dep.js';
import { importAbmToken } from '../helpers/abm.js';
import { missingPostgres, usePostgres } from '../helpers/postgres.js';
import { http, startTestServer } from '../helpers/server.js';

const pg = usePostgres();
const dir = mkdtempSync(join(tmpdir(), 'orchard-abm-replica-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const creds = { consumerKey: 'CK_replica', consumerSecret: 'CS_replica_secret', accessToken: 'AT_replica', accessSecret: 'AS_replica_secret' };
const materialKey = 'the material key both ABM replicas are given';

if (!pg.available) missingPostgres('ABM from the store', pg.reason);
(pg.available ? describe : () => undefined)('ABM from the store', () => {
  it('a replica with a fresh data directory syncs ABM with the token another imported; the store holds it sealed', async () => {
    const url = await pg.cluster().database();
    const dep = await new DepStandin({ credentials: creds }).start();
    try {
      dep.add({ serial_number: 'C02ABMREPL01', model: 'MacBook Pro' });
      const first = join(dir, 'first');
      importAbmToken(first, 'acme', new Date(Date.now() + 300 * 86_400_000), creds);
      const a = await startTestServer({ store: url, dataDir: first, abmUrl: dep.url, abmSyncIntervalMs: 0 }, { materialKey });
      await a.stop();
      // The files `orchard abm` wrote stay where they were.
      expect(existsSync(join(first, 'abm', 'tokens', 'acme.json'))).toBe(true);
      rmSync(first, { recursive: true, force: true });

      const b = await startTestServer({ store: url, abmUrl: dep.url, abmSyncIntervalMs: 0 }, { materialKey, isLeader: () => true });
      try {
        await b.abm.runOnce();
        expect(dep.requests.map((r) => `${r.method} ${r.path} ${r.status}`)).toEqual(['GET /session 200', 'POST /server/devices 200']);
        const status = await http(`${b.url}/api/v1/status`, { headers: { authorization: `Bearer ${b.readToken}` } });
        expect((status.json() as { abm: { tokens: { name: string; expired: boolean }[] } }).abm.tokens).toEqual([
          expect.objectContaining({ name: 'acme', expired: false }),
        ]);
        expect((await b.abmStore.getAbmDevice('C02ABMREPL01'))?.model).toBe('MacBook Pro');
        expect(existsSync(join(b.cfg.dataDir, 'abm'))).toBe(false);
        // Sealed in the store: no OAuth secret and no private key in the clear.
        const raw = [(await b.store.getMaterial('blob', 'abm-keypair'))!, ...(await b.store.listMaterial('abm-token')).items.map((i) => i.value)];
        expect(raw).toHaveLength(2);
        for (const v of raw) expect(v.toString('latin1')).not.toMatch(/PRIVATE KEY|CS_replica_secret|AS_replica_secret|AT_replica/);
      } finally {
        await b.stop();
      }
    } finally {
      await dep.stop();
    }
  });
});
