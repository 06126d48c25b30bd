/**
 * What `orchard store copy` relies on, per target backend: a device exported from a LevelDB store
 * (src/store/transfer.ts) and imported into a fresh LevelDB or PostgreSQL store reads back the
 * same through every read method, its queue delivers what was still queued in the same order,
 * commands queued afterwards come after it, and importing it twice is refused.
 */
import { describe, expect, it } from 'vitest';
import { Conflict } from '../../src/errors.js';
import { PgStore } from '../../src/store/postgres.js';
import { allPages } from '../../src/store/paging.js';
import { canImport, exportDevice, type DeviceTransfer } from '../../src/store/transfer.js';
import type { DeviceArtifacts } from '../../src/model/artifacts.js';
import type { StatusProfiles } from '../../src/store/status.js';
import type { Store } from '../../src/store/types.js';
import { missingPostgres, usePostgres } from '../helpers/postgres.js';
import { levelHarness } from './harness.js';
import type { StoreHarness } from './suite.js';

const pg = usePostgres();
const at = (s: number) => new Date(Date.parse('2026-01-01T00:00:00.000Z') + s * 1000);
const payload = (uuid: string) => Buffer.concat([Buffer.from(`<plist>${uuid}</plist>`), Buffer.from(Array.from({ length: 256 }, (_, i) => i))]);
const cmd = (uuid: string, priority?: number) => ({
  uuid,
  requestType: 'DeviceInformation',
  payload: payload(uuid),
  ...(priority === undefined ? {} : { priority }),
});

/** A source device with two channels, secrets, a queue in every state, reconcile state at version 2 and a status row. */
async function seed(store: Store): Promise<void> {
  await store.authenticate(
    'D1',
    { UDID: 'D1', SerialNumber: 'SN-D1', OSVersion: '18.1', Topic: 'com.apple.mgmt.External.t' },
    {
      certHash: 'cert-D1',
      issuerHash: 'issuer',
      subject: 'CN=D1',
      notAfter: '2027-01-01T00:00:00.000Z',
    },
    at(0),
  );
  const push = { token: 'ab'.repeat(32), pushMagic: 'magic', topic: 'com.apple.mgmt.External.t' };
  await store.tokenUpdate({
    id: 'D1',
    deviceId: 'D1',
    type: 'device',
    active: true,
    push,
    createdAt: at(1).toISOString(),
    updatedAt: at(1).toISOString(),
    unlockToken: Buffer.from('unlock'),
  });
  await store.tokenUpdate({
    id: 'D1:501',
    deviceId: 'D1',
    type: 'user',
    userId: '501',
    active: true,
    push,
    createdAt: at(1).toISOString(),
    updatedAt: at(1).toISOString(),
  });
  await store.setBootstrapToken('D1', Buffer.from('bootstrap'));
  await store.touch('D1', at(30));
  await store.enqueue(['D1', 'D1:501'], cmd('c1'), at(2));
  await store.enqueue(['D1'], cmd('c2'), at(3));
  await store.enqueue(['D1'], cmd('c3', 80), at(4));
  await store.enqueue(['D1'], cmd('c4'), at(5));
  expect(await store.recordResult('D1', 'c3', { status: 'Acknowledged', at: at(6).toISOString(), raw: Buffer.from('answer-c3') })).toBe('recorded');
  expect(
    await store.recordResult('D1', 'c1', {
      status: 'Error',
      at: at(7).toISOString(),
      raw: Buffer.from('answer-c1'),
      errorChain: [{ ErrorCode: 12021, ErrorDomain: 'MCMDMErrorDomain' }],
    }),
  ).toBe('recorded');
  expect(await store.recordResult('D1', 'c2', { status: 'NotNow', at: at(8).toISOString(), raw: Buffer.from('busy') })).toBe('notnow');
  const status: StatusProfiles = {
    state: 'pending',
    blueprints: ['office'],
    matched: ['office'],
    revision: 'r2',
    profiles: { total: 1, verified: 0, pending: 1, failed: 0 },
    phases: { 'com.example.wifi': 'pending' },
    problems: [],
  };
  const state: DeviceArtifacts = { deviceId: 'D1', artifacts: {}, revision: 'r1', reconciledAt: at(9).toISOString() };
  await store.commitReconcile('D1', state, { enqueue: [], cancel: [] }, at(9), 0);
  await store.commitReconcile('D1', { ...state, revision: 'r2' }, { enqueue: [], cancel: [], status }, at(10), 1);
}

async function snapshot(store: Store) {
  const commands = async (eid: string) => allPages((p) => store.listCommands(eid, p), 2);
  const { version: _version, ...artifacts } = (await store.getArtifacts('D1'))!;
  return {
    device: await store.getDevice('D1'),
    cert: await store.deviceForCert('cert-D1'),
    enrollments: await store.listEnrollments('D1'),
    bootstrap: (await store.getBootstrapToken('D1'))?.toString(),
    commands: await commands('D1'),
    user: await commands('D1:501'),
    artifacts,
    status: await store.getStatus('D1'),
    work: await store.getWork('D1'),
  };
}

function transferSuite(name: string, openTarget: () => Promise<StoreHarness>): void {
  describe(`export from LevelStore, import into ${name}`, () => {
    it('reads back the same, delivers the queue in order, numbers new commands after it, refuses a second import', async () => {
      const source = await levelHarness();
      const target = await openTarget();
      try {
        await seed(source.store);
        const exported = (await exportDevice(source.store as Store & DeviceTransfer, 'D1'))!;
        expect(canImport(target.store)).toBe(true);
        await (target.store as Store & DeviceTransfer).importDevice(exported);
        // Read back from disk, not from what the import left in memory.
        const into = (await target.reopen!()) as Store & DeviceTransfer;
        const before = await snapshot(source.store);
        const after = await snapshot(into);
        expect(after).toEqual(before);
        // Its work row (left by its answers, the earliest due) is carried, unclaimed.
        expect(after.work).toEqual({ dueAt: at(6) });
        expect(after.enrollments.find((e) => e.id === 'D1')?.unlockToken?.toString()).toBe('unlock');
        expect(after.commands.find((c) => c.uuid === 'c3')?.result?.raw.toString()).toBe('answer-c3');
        // The version restarts: the target's history of this state begins with the copy.
        expect((await into.getArtifacts('D1'))?.version).toBe(1);
        await expect(into.importDevice(exported)).rejects.toThrow(Conflict);

        await into.enqueue(['D1'], cmd('c5'), at(20));
        expect((await into.nextCommand('D1', { skipNotNow: true }))?.uuid).toBe('c4');
        const offered: string[] = [];
        for (let next = await into.nextCommand('D1', { skipNotNow: false }); next; next = await into.nextCommand('D1', { skipNotNow: false })) {
          expect(next.payload.equals(payload(next.uuid))).toBe(true);
          offered.push(next.uuid);
          expect(await into.recordResult('D1', next.uuid, { status: 'Acknowledged', at: at(21).toISOString(), raw: Buffer.from('ok') })).toBe('recorded');
        }
        expect(offered).toEqual(['c2', 'c4', 'c5']);
        expect((await allPages((p) => into.listCommands('D1', p))).map((c) => c.uuid)).toEqual(['c1', 'c2', 'c3', 'c4', 'c5']);
      } finally {
        await source.cleanup();
        await target.cleanup();
      }
    });
  });
}

transferSuite('LevelStore', levelHarness);

if (!pg.available) missingPostgres('store transfer into PgStore', pg.reason);
if (pg.available) {
  transferSuite('PgStore', async () => {
    const url = await pg.cluster().emptied();
    let current = await PgStore.open(url);
    return {
      store: current,
      reopen: async () => {
        await current.close();
        return (current = await PgStore.open(url));
      },
      cleanup: () => current.close(),
    };
  });
}
