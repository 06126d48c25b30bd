/**
 * A fleet-wide run with a big per-device profile holds a bounded amount of payload: devices
 * wait for room in the payload budget, and per-device commands are not kept for reuse. Real
 * LevelDB store, real fleet repository.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { bigProfileYaml } from '../../bench/reconcile-latency.js';
import { loadFleet } from '../../src/gitops/load.js';
import { parsePlistDict, type PlistDict } from '../../src/protocol/plist.js';
import { LevelStore } from '../../src/store/leveldb.js';
import { blueprint, makeRepo } from '../gitops/repo.js';
import { storeReconciler } from '../helpers/reconciler.js';

const DEVICES = 16;
const BUDGET = 1 << 20;
let dir: string;
let store: LevelStore;
const reconciler = () => storeReconciler(store, { concurrency: 16, payloadBudgetBytes: BUDGET });
const installOf = async (n: number, id: string) => {
  const cmds = (await store.listCommands(`DEV-${n}`)).items;
  const a = (await store.getArtifacts(`DEV-${n}`))!.artifacts[id]!;
  return cmds.find((c) => c.uuid === a.commandUUID && c.requestType === 'InstallProfile');
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'orchard-budget-'));
  store = await LevelStore.open(join(dir, 'data'));
  const at = new Date();
  for (let n = 0; n < DEVICES; n++) {
    const id = `DEV-${n}`;
    await store.authenticate(
      id,
      { UDID: id, Topic: 't', SerialNumber: `SER${n}`, Model: 'Mac14,2', ProductName: 'Mac14,2', OSVersion: '15.1' },
      { certHash: `c${n}`, issuerHash: 'i', subject: '', notAfter: '' },
      at,
    );
    await store.tokenUpdate({ id, deviceId: id, type: 'device', active: true, createdAt: at.toISOString(), updatedAt: at.toISOString() });
    // An answered ProfileList without the profile: the reconcile installs it.
    await store.enqueue([id], { uuid: `pl-${n}`, requestType: 'ProfileList', payload: Buffer.from('x') }, at);
    await store.recordResult(
      id,
      `pl-${n}`,
      { status: 'Acknowledged', at: at.toISOString(), raw: Buffer.from('r') },
      { ProfileList: { at: at.toISOString(), commandUUID: `pl-${n}`, value: [] } },
    );
  }
});
afterAll(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

it('holds at most the payload budget while installing a ~300 KB per-device profile on every device', async () => {
  const loaded = await loadFleet(makeRepo({ 'big.yaml': bigProfileYaml(600), 'b.yaml': blueprint('macs', '    platforms: [macOS]', ['big']) }));
  const fleet = loaded.fleet!;
  const r = reconciler();
  let held = 0;
  let running = true;
  const sample = () => {
    held = Math.max(held, r.heldPayloadBytes());
    if (running) setImmediate(sample);
  };
  sample();
  const outcomes = await r.apply({ info: { commit: 'big', contentHash: fleet.contentHash }, fleet });
  running = false;
  await r.stop();
  expect(outcomes.filter((o) => o.queued > 0)).toHaveLength(DEVICES);
  expect(held).toBeGreaterThan(0);
  expect(held).toBeLessThanOrEqual(BUDGET);
  expect(r.heldPayloadBytes()).toBeLessThan(4096); // the shared verify ProfileList, no profile
  for (let n = 0; n < DEVICES; n++) {
    const next = await store.nextCommand(`DEV-${n}`, { skipNotNow: false });
    const profile = parsePlistDict(Buffer.from((parsePlistDict(next!.payload).Command as PlistDict).Payload as Uint8Array));
    expect(next!.payload.length).toBeGreaterThan(300_000);
    expect((profile.PayloadContent as PlistDict[])[0]!.SSID_STR).toBe(`lab-SER${n}`);
  }
});

it('a big profile that is the same for every device is built once: one command, one payload, for the whole fleet', async () => {
  const same = bigProfileYaml(600)
    .replace(/\$\{device\.SerialNumber\}/g, 'all')
    .replace('name: big', 'name: same')
    .replace('com.example.big', 'com.example.same');
  const loaded = await loadFleet(makeRepo({ 'same.yaml': same, 'b.yaml': blueprint('macs', '    platforms: [macOS]', ['same']) }));
  const fleet = loaded.fleet!;
  const r = reconciler();
  await r.apply({ info: { commit: 'same', contentHash: fleet.contentHash }, fleet });
  await r.stop();
  const uuids = new Set<string>();
  for (let n = 0; n < DEVICES; n++) uuids.add((await installOf(n, 'com.example.same'))!.uuid);
  expect(uuids.size).toBe(1);
});
