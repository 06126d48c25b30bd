/**
 * SIGKILL the real server process during a burst of enqueues and connects, restart it on the
 * same data directory: every enqueued command is still there exactly once, and drains.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from 'node:http';
import { afterAll, expect, it } from 'vitest';
import { createCA, createDeviceIdentity } from '../../src/identity/ca.js';
import { SimulatedDevice } from '../../src/sim/device.js';
import { LevelStore } from '../../src/store/leveldb.js';
import { spawnServer, waitExit } from '../helpers/process.js';

const dir = mkdtempSync(join(tmpdir(), 'orchard-crash-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('SIGKILL during a burst loses and duplicates nothing', async () => {
  const ca = createCA({ commonName: 'Crash CA' });
  writeFileSync(join(dir, 'ca.pem'), ca.certPem);
  const args = ['--data-dir', join(dir, 'data'), '--trust-ca', join(dir, 'ca.pem')];
  const env = { ORCHARD_API_TOKEN: 'crash-token' };
  let srv = await spawnServer(args, env);
  const agent = new Agent({ keepAlive: false });
  const key = createDeviceIdentity(ca, 'k').key;
  const identities = Array.from({ length: 20 }, (_, i) => createDeviceIdentity(ca, `crash-${i}`, { key }));
  const devices = identities.map((identity, i) => new SimulatedDevice({ serverUrl: srv.url, identity, udid: `CRASH-${String(i).padStart(4, '0')}`, agent }));
  for (const d of devices) await d.enroll();

  const acknowledged = new Map<string, string>(); // commandUUID -> target
  let stop = false;
  const enqueuer = async (w: number) => {
    for (let n = 0; !stop; n++) {
      const target = devices[(n * 7 + w) % devices.length]!.udid;
      try {
        const res = await fetch(`${srv.url}/api/v1/commands`, {
          method: 'POST',
          headers: { authorization: 'Bearer crash-token', 'content-type': 'application/json' },
          body: JSON.stringify({ targets: [target], command: { RequestType: 'ProfileList' } }),
        });
        if (res.status === 201) acknowledged.set(((await res.json()) as { commandUUID: string }).commandUUID, target);
      } catch {
        return; // the server is gone
      }
    }
  };
  const connector = async (w: number) => {
    for (let n = 0; !stop; n++) {
      try {
        await devices[(n + w * 5) % devices.length]!.connect({ maxCommands: 5 });
      } catch {
        if (stop) return;
      }
    }
  };
  const burst = [0, 1, 2, 3].map(enqueuer).concat([0, 1, 2].map(connector));
  // Kill once a few hundred commands are acknowledged, mid-burst.
  while (acknowledged.size < 300) await new Promise((r) => setTimeout(r, 10));
  srv.child.kill('SIGKILL');
  stop = true;
  await waitExit(srv.child);
  await Promise.allSettled(burst);

  // Inspect the store directly: each acknowledged command exactly once for its target.
  const store = await LevelStore.open(join(dir, 'data'));
  for (const d of devices) {
    const cmds = (await store.listCommands(d.udid)).items;
    const uuids = cmds.map((c) => c.uuid);
    expect(new Set(uuids).size).toBe(uuids.length);
  }
  for (const [uuid, target] of acknowledged) {
    const cmds = (await store.listCommands(target)).items;
    expect(cmds.filter((c) => c.uuid === uuid).length, `command ${uuid} for ${target}`).toBe(1);
  }
  await store.close();

  // Restart; devices drain everything still pending, and nothing is left afterwards.
  srv = await spawnServer(args, env);
  for (const [i, d] of devices.entries()) {
    const again = new SimulatedDevice({ serverUrl: srv.url, identity: identities[i]!, udid: d.udid, agent });
    await again.connect({ maxCommands: 10_000 });
    expect(await again.connect()).toEqual([]);
  }
  srv.child.kill('SIGTERM');
  await waitExit(srv.child);
  const after = await LevelStore.open(join(dir, 'data'));
  for (const [uuid, target] of acknowledged) {
    const c = (await after.listCommands(target)).items.filter((x) => x.uuid === uuid);
    expect(c.length).toBe(1);
    expect(c[0]!.status).toBe('Acknowledged');
  }
  await after.close();
}, 180_000);
