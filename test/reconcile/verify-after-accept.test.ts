/**
 * An accepted install is verified by a ProfileList the device answers after it. The verifying
 * ProfileList queued beside an earlier command can be answered before the install (the reconcile
 * after DeviceConfigured races the device's next poll); the acceptance then queues a new one, so
 * the profile reaches `verified` instead of staying `acknowledged` until a drift check. Real
 * LevelDB store, real fleet repository, the reconciler driven one answer at a time.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { loadFleet } from '../../src/gitops/load.js';
import type { Reconciler } from '../../src/reconcile/reconciler.js';
import { LevelStore } from '../../src/store/leveldb.js';
import { blueprint, makeRepo, passcodePayload, profile } from '../gitops/repo.js';
import { storeReconciler } from '../helpers/reconciler.js';

const ID = 'DEV-1';
const PROFILE = 'com.example.passcode';
let dir: string;
let store: LevelStore;
let reconciler: Reconciler;
let clock = Date.parse('2026-06-01T00:00:00.000Z');
const tick = () => new Date((clock += 1000));

async function answer(uuid: string, profileList?: { PayloadIdentifier: string; PayloadUUID: string }[]): Promise<void> {
  const at = tick().toISOString();
  await store.recordResult(
    ID,
    uuid,
    { status: 'Acknowledged', at, raw: Buffer.from('r') },
    profileList ? { ProfileList: { at, commandUUID: uuid, value: profileList } } : undefined,
  );
  await reconciler.reconcileDevice(ID);
}

const pendingProfileLists = async () =>
  (await store.listCommands(ID)).items.filter((c) => c.requestType === 'ProfileList' && c.status === 'Pending').map((c) => c.uuid);

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'orchard-verify-'));
  store = await LevelStore.open(join(dir, 'data'));
  const at = tick();
  await store.authenticate(
    ID,
    { UDID: ID, Topic: 't', SerialNumber: 'SER1', Model: 'Mac14,2', ProductName: 'Mac14,2', OSVersion: '15.1' },
    { certHash: 'c1', issuerHash: 'i', subject: '', notAfter: '' },
    at,
  );
  await store.tokenUpdate({ id: ID, deviceId: ID, type: 'device', active: true, createdAt: at.toISOString(), updatedAt: at.toISOString() });
  await store.enqueue([ID], { uuid: 'pl-0', requestType: 'ProfileList', payload: Buffer.from('x') }, at);
  await store.recordResult(
    ID,
    'pl-0',
    { status: 'Acknowledged', at: at.toISOString(), raw: Buffer.from('r') },
    { ProfileList: { at: at.toISOString(), commandUUID: 'pl-0', value: [] } },
  );
  reconciler = storeReconciler(store, { now: () => new Date(clock) });
  const fleet = (
    await loadFleet(makeRepo({ 'p.yaml': profile('passcode', PROFILE, passcodePayload), 'b.yaml': blueprint('macs', '    platforms: [macOS]', ['passcode']) }))
  ).fleet!;
  await reconciler.apply({ info: { commit: 'rev1', contentHash: fleet.contentHash }, fleet });
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

async function queued(): Promise<{ install: string; verify: string; uuid: string }> {
  const state = (await store.getArtifacts(ID))!;
  const a = state.artifacts[PROFILE]!;
  expect(a.phase).toBe('pending');
  return { install: a.commandUUID!, verify: state.inventory!.verify!, uuid: a.uuid };
}

it('the verifying ProfileList answered before the install: accepting the install queues a new one, which verifies it', async () => {
  const { install, verify, uuid } = await queued();
  await answer(verify, []);
  await answer(install);
  expect((await store.getArtifacts(ID))!.artifacts[PROFILE]!.phase).toBe('acknowledged');
  const [again, ...more] = await pendingProfileLists();
  expect(again).toBeDefined();
  expect(more).toEqual([]);
  expect((await store.getArtifacts(ID))!.inventory?.verify).toBe(again);
  await answer(again!, [{ PayloadIdentifier: PROFILE, PayloadUUID: uuid }]);
  expect((await store.getArtifacts(ID))!.artifacts[PROFILE]!.phase).toBe('verified');
  expect((await store.getStatus(ID))!.profiles!.state).toBe('in-sync');
});

it('the verifying ProfileList answered after the install verifies it, and no second one is queued', async () => {
  const { install, verify, uuid } = await queued();
  await answer(install);
  expect(await pendingProfileLists()).toEqual([verify]);
  await answer(verify, [{ PayloadIdentifier: PROFILE, PayloadUUID: uuid }]);
  expect((await store.getArtifacts(ID))!.artifacts[PROFILE]!.phase).toBe('verified');
  expect(await pendingProfileLists()).toEqual([]);
});
