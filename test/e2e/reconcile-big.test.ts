/**
 * A big profile that varies per device (`${device.SerialNumber}`), selected for a fleet of
 * simulated Macs on a real server following a real git repository: every device gets its own,
 * correctly substituted, installed and verified; the server answers requests while it reconciles.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bigProfileYaml } from '../../bench/reconcile-latency.js';
import { parsePlistDict, type PlistDict } from '../../src/protocol/plist.js';
import type { SimulatedDevice } from '../../src/sim/device.js';
import { FleetRepo, waitFor } from '../gitops/helpers.js';
import { blueprint } from '../gitops/repo.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const ID = 'com.example.big';
let repo: FleetRepo;
let server: TestServer;
let macs: SimulatedDevice[];

beforeAll(async () => {
  repo = new FleetRepo();
  // ~660 KB rendered per device: big, yet its base64 within what a device's plist parser takes.
  repo.write('big.yaml', bigProfileYaml(1300)).write('macs.yaml', blueprint('macs', '    platforms: [macOS]', []));
  repo.commit('profile, not selected yet');
  server = await startTestServer({ repo: repo.url, pollIntervalMs: 0, driftIntervalMs: 0, dataDir: join(repo.root, 'server') });
  macs = Array.from({ length: 20 }, (_, i) => server.device({ serialNumber: `C02BIG${String(i).padStart(4, '0')}`, model: 'Mac14,2' }));
  for (const d of macs) await d.enroll();
  for (const d of macs) await d.connect(); // the inventory queued at enrollment
}, 30_000);
afterAll(async () => {
  await server?.stop();
  repo?.cleanup();
});

describe('a big per-device profile', () => {
  it('each device gets its own rendering, installed and verified; /healthz is answered before the reconcile ends', async () => {
    const sha = repo.write('macs.yaml', blueprint('macs', '    platforms: [macOS]', ['big'])).commit('big profile on every Mac');
    const reconciled = () => server.logs.some((l) => l.msg === 'fleet reconciled' && l.revision === sha);
    await server.source!.sync('test');
    // The reconcile has started (sync applied the revision); a request now must not wait for it.
    const health = await fetch(`${server.url}/healthz`);
    expect(health.status).toBe(200);
    expect(reconciled()).toBe(false);
    await waitFor('fleet reconciled', () => reconciled(), 60_000);

    const uuids = new Set<string>();
    for (const d of macs) {
      // The queued InstallProfile, as the device will receive it.
      const next = await server.store.nextCommand(d.udid, { skipNotNow: false });
      expect(next?.requestType).toBe('InstallProfile');
      const cmd = parsePlistDict(next!.payload).Command as PlistDict;
      const profile = parsePlistDict(Buffer.from(cmd.Payload as Uint8Array));
      const [wifi, notifications] = profile.PayloadContent as PlistDict[];
      expect(wifi!.SSID_STR).toBe(`lab-${d.serialNumber}`);
      const ids = (notifications!.NotificationSettings as PlistDict[]).map((n) => n.BundleIdentifier);
      expect(ids).toHaveLength(1300);
      expect(ids[650]).toBe(`com.example.device-${d.serialNumber}`);
      expect(ids.filter((x) => String(x).includes('${'))).toEqual([]);
      expect(profile.PayloadUUID).toBe((await server.store.getArtifacts(d.udid))!.artifacts[ID]!.uuid);
      uuids.add(String(profile.PayloadUUID));
    }
    expect(uuids.size).toBe(macs.length);

    await waitFor(
      'verified everywhere',
      async () => {
        for (const d of macs) await d.connect();
        for (const d of macs) if ((await server.store.getArtifacts(d.udid))?.artifacts[ID]?.phase !== 'verified') return false;
        return true;
      },
      30_000,
    );
    for (const d of macs) expect(d.profiles.get(ID)!.PayloadUUID).toBe((await server.store.getArtifacts(d.udid))!.artifacts[ID]!.uuid);
  }, 90_000);
});
