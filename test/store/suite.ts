/**
 * Backend-independent behaviour of `Store`. Every backend runs this suite:
 *   storeSuite('MyStore', async () => ({ store, reopen, cleanup }))
 * `reopen` (optional) closes the store and opens the same data again; persistence tests are
 * skipped without it. `cleanup` closes whatever store is open and removes its data.
 * Lists are read through pages of 2, so every test walks cursors too.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Conflict, Malformed, NotFound } from '../../src/errors.js';
import { VersionConflictError } from '../../src/store/errors.js';
import { MAX_ID_LENGTH } from '../../src/store/ids.js';
import { allPages } from '../../src/store/paging.js';
import { recordAndNext } from '../../src/store/roles/results.js';
import type { CommandResult, DeviceFacts, EnrollmentRecord, IdentityBinding, NewCommand, OutboxEntry, ReportedState, Store } from '../../src/store/types.js';

export interface StoreHarness {
  store: Store;
  reopen?: () => Promise<Store>;
  cleanup: () => Promise<void>;
}

/**
 * Every test of a suite on a harness of its own: `open` before each, its `cleanup` after, and
 * `use` given the open one (suites keep it and its store in variables of their own).
 */
export function openEach<H extends { cleanup: () => Promise<void> }>(open: () => Promise<H>, use: (opened: H) => void): void {
  let current: H | undefined;
  beforeEach(async () => {
    current = await open();
    use(current);
  });
  afterEach(async () => {
    await current?.cleanup();
    current = undefined;
  });
}

const T0 = Date.parse('2026-01-01T00:00:00.000Z');
/** A time `s` seconds after T0. */
const at = (s: number): Date => new Date(T0 + s * 1000);
const iso = (s: number): string => at(s).toISOString();

const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

function facts(udid: string, extra: Partial<DeviceFacts> = {}): DeviceFacts {
  return { UDID: udid, Topic: 'com.apple.mgmt.External.test', SerialNumber: `SN-${udid}`, OSVersion: '18.1', ...extra };
}

function identity(certHash: string): IdentityBinding {
  return { certHash, issuerHash: 'issuer-1', subject: `CN=${certHash}`, notAfter: '2027-01-01T00:00:00.000Z' };
}

function enrollment(id: string, deviceId: string, s: number, extra: Partial<EnrollmentRecord> = {}): EnrollmentRecord {
  const user = id !== deviceId;
  return {
    id,
    deviceId,
    type: user ? 'user' : 'device',
    ...(user ? { userId: id.slice(deviceId.length + 1) } : {}),
    active: true,
    push: { token: 'ab'.repeat(32), pushMagic: `magic-${id}`, topic: 'com.apple.mgmt.External.test' },
    createdAt: iso(s),
    updatedAt: iso(s),
    ...extra,
  };
}

/** Payload bytes unique to the uuid and containing every byte value. */
function payloadFor(uuid: string): Buffer {
  return Buffer.concat([Buffer.from(`<plist>${uuid}</plist>`), ALL_BYTES]);
}

function cmd(uuid: string, priority?: number, requestType = 'DeviceInformation'): NewCommand {
  return { uuid, requestType, payload: payloadFor(uuid), ...(priority === undefined ? {} : { priority }) };
}

function res(status: CommandResult['status'], s: number, raw: Buffer = Buffer.from(`raw-${status}-${s}`)): CommandResult {
  return { status, at: iso(s), raw };
}

/** Offer-and-acknowledge until empty; returns the uuids in the order they were offered. */
async function drain(store: Store, eid: string, s = 10_000): Promise<string[]> {
  const seen: string[] = [];
  for (let i = 0; i < 10_000; i++) {
    const next = await store.nextCommand(eid, { skipNotNow: false });
    if (!next) return seen;
    seen.push(next.uuid);
    expect(await store.recordResult(eid, next.uuid, res('Acknowledged', s))).toBe('recorded');
  }
  throw new Error(`queue of ${eid} did not drain`);
}

export function storeSuite(name: string, open: () => Promise<StoreHarness>): void {
  describe(name, () => {
    let h: StoreHarness;
    let store: Store;

    openEach(open, (opened) => {
      h = opened;
      store = opened.store;
    });

    // Every list through pages of 2: the paging code runs under every assertion.
    const listCommands = (eid: string) => allPages((p) => store.listCommands(eid, p), 2);
    const listDevices = () => allPages((p) => store.listDevices(p), 2);
    const listDeviceIds = () => allPages((p) => store.listDeviceIds(p), 2);
    const listArtifacts = () => allPages((p) => store.listArtifacts(p), 2);

    /** Authenticate + device-channel TokenUpdate (+ user channels). */
    async function enroll(dev: string, s = 0, users: string[] = []): Promise<void> {
      await store.authenticate(dev, facts(dev), identity(`cert-${dev}`), at(s));
      await store.tokenUpdate(enrollment(dev, dev, s + 1));
      for (const u of users) await store.tokenUpdate(enrollment(`${dev}:${u}`, dev, s + 1));
    }

    describe('devices and check-in', () => {
      it('starts empty', async () => {
        expect(await store.getDevice('D1')).toBeUndefined();
        expect(await store.deviceForCert('cert-D1')).toBeUndefined();
        expect(await listDevices()).toEqual([]);
        expect(await listDeviceIds()).toEqual([]);
        expect(await store.getEnrollment('D1')).toBeUndefined();
        expect(await store.listEnrollments('D1')).toEqual([]);
        expect(await store.nextCommand('D1', { skipNotNow: false })).toBeUndefined();
        expect(await listCommands('D1')).toEqual([]);
        expect(await store.getBootstrapToken('D1')).toBeUndefined();
      });

      it('authenticate creates the device and binds its certificate', async () => {
        await store.authenticate('D1', facts('D1', { Model: 'iPhone17,1' }), identity('h1'), at(5));
        const dev = await store.getDevice('D1');
        expect(dev).toEqual({
          id: 'D1',
          facts: facts('D1', { Model: 'iPhone17,1' }),
          identity: identity('h1'),
          authenticatedAt: iso(5),
          reported: {},
        });
        expect(dev?.enrolledAt).toBeUndefined();
        expect(await store.deviceForCert('h1')).toBe('D1');
        expect(await store.deviceForCert('h2')).toBeUndefined();
        await store.authenticate('D2', facts('D2'), identity('h2'), at(6));
        expect((await listDevices()).map((d) => d.id).sort()).toEqual(['D1', 'D2']);
        expect(await store.deviceForCert('h2')).toBe('D2');
      });

      it('re-authenticate moves the certificate binding, updates facts, keeps reported, clears enrolledAt', async () => {
        await enroll('D1');
        expect((await store.getDevice('D1'))?.enrolledAt).toBe(iso(1));
        await store.enqueue(['D1'], cmd('q1', undefined, 'ProfileList'), at(2));
        const reported: ReportedState = { ProfileList: { at: iso(3), commandUUID: 'q1', value: [{ PayloadIdentifier: 'p' }] } };
        expect(await store.recordResult('D1', 'q1', res('Acknowledged', 3), reported)).toBe('recorded');

        await store.authenticate('D1', facts('D1', { OSVersion: '18.2' }), identity('cert-new'), at(10));
        const dev = await store.getDevice('D1');
        expect(dev?.identity.certHash).toBe('cert-new');
        expect(dev?.facts.OSVersion).toBe('18.2');
        expect(dev?.authenticatedAt).toBe(iso(10));
        expect(dev?.enrolledAt).toBeUndefined();
        expect(dev?.reported).toEqual(reported);
        expect(await store.deviceForCert('cert-D1')).toBeUndefined();
        expect(await store.deviceForCert('cert-new')).toBe('D1');
      });

      it("an identity change that is a re-enrollment drops the old identity's secrets and reported state; a renewal keeps them", async () => {
        await enroll('D1', 0, ['U1']);
        await store.tokenUpdate(enrollment('D1', 'D1', 2, { unlockToken: Buffer.from('unlock-D1') }));
        await store.tokenUpdate(enrollment('D1:U1', 'D1', 2, { unlockToken: Buffer.from('unlock-U1') }));
        await store.setBootstrapToken('D1', Buffer.from('bootstrap-D1'));
        await store.enqueue(['D1'], cmd('q1', undefined, 'ProfileList'), at(3));
        const reported: ReportedState = { ProfileList: { at: iso(4), commandUUID: 'q1', value: [] } };
        expect(await store.recordResult('D1', 'q1', res('Acknowledged', 4), reported)).toBe('recorded');
        const change = (kind: 'renewal' | 're-enrollment', from: string, to: string, s: number) => ({
          at: iso(s),
          kind,
          from: { certHash: from, subject: `CN=${from}`, notAfter: 'n' },
          to: { certHash: to, subject: `CN=${to}`, notAfter: 'n' },
        });

        await store.authenticate('D1', facts('D1'), identity('cert-renewed'), at(10), change('renewal', 'cert-D1', 'cert-renewed', 10));
        expect((await store.getBootstrapToken('D1'))?.toString()).toBe('bootstrap-D1');
        expect((await store.getEnrollment('D1'))?.unlockToken?.toString()).toBe('unlock-D1');
        expect((await store.getDevice('D1'))?.reported).toEqual(reported);

        await store.authenticate('D1', facts('D1'), identity('cert-other'), at(20), {
          ...change('re-enrollment', 'cert-renewed', 'cert-other', 20),
          reason: 'test',
        });
        expect(await store.getBootstrapToken('D1')).toBeUndefined();
        expect((await store.getEnrollment('D1'))?.unlockToken).toBeUndefined();
        expect((await store.getEnrollment('D1:U1'))?.unlockToken).toBeUndefined();
        expect((await store.getEnrollment('D1:U1'))?.active).toBe(false);
        const dev = await store.getDevice('D1');
        expect(dev?.reported).toEqual({});
        expect(dev?.identityChanges?.map((c) => [c.kind, c.from.certHash, c.to.certHash])).toEqual([
          ['renewal', 'cert-D1', 'cert-renewed'],
          ['re-enrollment', 'cert-renewed', 'cert-other'],
        ]);
        // A rebind (renewal without Authenticate) is recorded too; the history keeps the latest 10.
        for (let i = 0; i < 12; i++) await store.rebindIdentity('D1', identity(`r${i}`), change('renewal', i ? `r${i - 1}` : 'cert-other', `r${i}`, 30 + i));
        const changes = (await store.getDevice('D1'))?.identityChanges ?? [];
        expect(changes.length).toBe(10);
        expect(changes.at(-1)?.to.certHash).toBe('r11');
      });

      it("keeps device ids and user channels apart: a device id never contains ':'", async () => {
        await enroll('D1', 0, ['U1']);
        await store.enqueue(['D1:U1'], cmd('u1'), at(2));
        await expect(store.authenticate('D1:U1', facts('D1:U1'), identity('intruder'), at(3))).rejects.toThrow(/':'/);
        await expect(store.authenticate('D1:U1', facts('D1:U1'), identity('intruder'), at(3))).rejects.toThrow(Malformed);
        await expect(store.tokenUpdate(enrollment('D1:U1', 'D1:U1', 3))).rejects.toThrow(Malformed);
        await expect(store.tokenUpdate({ ...enrollment('D2:U1', 'D2', 3), type: 'device' })).rejects.toThrow(Malformed);
        await expect(store.tokenUpdate(enrollment('D1:U2', 'D2', 3))).rejects.toThrow(Malformed);
        expect(await store.getDevice('D1:U1')).toBeUndefined();
        expect(await store.deviceForCert('intruder')).toBeUndefined();
        expect(await store.getEnrollment('D1:U1')).toMatchObject({ deviceId: 'D1', type: 'user', active: true });
        expect((await store.nextCommand('D1:U1', { skipNotNow: false }))?.uuid).toBe('u1');
        expect(await store.nextCommand('D1', { skipNotNow: false })).toBeUndefined();
        expect((await store.listEnrollments('D1')).map((e) => e.id).sort()).toEqual(['D1', 'D1:U1']);
      });

      it("an acknowledged EraseDevice on the device channel records erasedAt; a user channel's does not", async () => {
        await enroll('D1', 0, ['U1']);
        await store.enqueue(['D1:U1'], cmd('e0', undefined, 'EraseDevice'), at(2));
        expect(await store.recordResult('D1:U1', 'e0', res('Acknowledged', 3))).toBe('recorded');
        expect((await store.getDevice('D1'))?.erasedAt).toBeUndefined();
        await store.enqueue(['D1'], cmd('e1', undefined, 'EraseDevice'), at(4));
        expect(await store.recordResult('D1', 'e1', res('Error', 5))).toBe('recorded');
        expect((await store.getDevice('D1'))?.erasedAt).toBeUndefined();
        await store.enqueue(['D1'], cmd('e2', undefined, 'EraseDevice'), at(6));
        expect(await store.recordResult('D1', 'e2', res('Acknowledged', 7))).toBe('recorded');
        expect((await store.getDevice('D1'))?.erasedAt).toBe(iso(7));
        // The next Authenticate starts a new identity: the erasure belongs to the old one.
        await store.authenticate('D1', facts('D1'), identity('cert-new'), at(8));
        expect((await store.getDevice('D1'))?.erasedAt).toBeUndefined();
      });

      it('re-authenticating a device does not unbind a certificate now bound to another device', async () => {
        await store.authenticate('D1', facts('D1'), identity('shared'), at(0));
        await store.authenticate('D2', facts('D2'), identity('shared'), at(1));
        expect(await store.deviceForCert('shared')).toBe('D2');
        await store.authenticate('D1', facts('D1'), identity('own'), at(2));
        expect(await store.deviceForCert('shared')).toBe('D2');
        expect(await store.deviceForCert('own')).toBe('D1');
      });

      it('tokenUpdate activates the enrollment and reports whether it was new or inactive', async () => {
        await store.authenticate('D1', facts('D1'), identity('h1'), at(0));
        expect(await store.tokenUpdate(enrollment('D1', 'D1', 1))).toEqual({ activated: true });
        expect(await store.tokenUpdate(enrollment('D1', 'D1', 2))).toEqual({ activated: false });
        const e = await store.getEnrollment('D1');
        expect(e?.active).toBe(true);
        expect(e?.deviceId).toBe('D1');
        expect(e?.type).toBe('device');
        expect(e?.push).toEqual(enrollment('D1', 'D1', 0).push);
        expect(e?.updatedAt).toBe(iso(2));
        // enrolledAt is set by the first TokenUpdate only
        expect((await store.getDevice('D1'))?.enrolledAt).toBe(iso(1));

        expect(await store.tokenUpdate(enrollment('D1:501', 'D1', 3, { userShortName: 'ann' }))).toEqual({ activated: true });
        expect((await store.getDevice('D1'))?.enrolledAt).toBe(iso(1));
        const list = await store.listEnrollments('D1');
        expect(list.map((x) => x.id).sort()).toEqual(['D1', 'D1:501']);
        expect(list.find((x) => x.id === 'D1:501')?.userShortName).toBe('ann');
        expect(list.find((x) => x.id === 'D1:501')?.type).toBe('user');

        await store.authenticate('D1', facts('D1'), identity('h1'), at(4));
        expect((await store.getEnrollment('D1'))?.active).toBe(false);
        expect((await store.getEnrollment('D1:501'))?.active).toBe(false);
        expect(await store.tokenUpdate(enrollment('D1', 'D1', 5))).toEqual({ activated: true });
        expect((await store.getDevice('D1'))?.enrolledAt).toBe(iso(5));
        expect((await store.getEnrollment('D1:501'))?.active).toBe(false);
      });

      it('keeps the unlock token byte for byte', async () => {
        await store.authenticate('D1', facts('D1'), identity('h1'), at(0));
        await store.tokenUpdate(enrollment('D1', 'D1', 1, { unlockToken: ALL_BYTES }));
        const e = await store.getEnrollment('D1');
        expect(Buffer.isBuffer(e?.unlockToken)).toBe(true);
        expect(e?.unlockToken?.equals(ALL_BYTES)).toBe(true);
        const listed = await store.listEnrollments('D1');
        expect(listed[0]?.unlockToken?.equals(ALL_BYTES)).toBe(true);
      });

      it('checkOut of the device channel deactivates every channel, drops their queues and sets checkedOutAt', async () => {
        await enroll('D1', 0, ['501']);
        await store.enqueue(['D1'], cmd('c1'), at(2));
        await store.enqueue(['D1:501'], cmd('u1'), at(2));
        await store.enqueue(['D1'], cmd('done'), at(2));
        expect(await store.recordResult('D1', 'done', res('Acknowledged', 3))).toBe('recorded');

        await store.checkOut('D1', at(7));
        expect((await store.getEnrollment('D1'))?.active).toBe(false);
        expect((await store.getEnrollment('D1:501'))?.active).toBe(false);
        expect(await store.nextCommand('D1', { skipNotNow: false })).toBeUndefined();
        expect(await store.nextCommand('D1:501', { skipNotNow: false })).toBeUndefined();
        expect((await listCommands('D1')).map((c) => c.uuid)).toEqual(['done']);
        expect(await listCommands('D1:501')).toEqual([]);
        expect(await store.recordResult('D1', 'c1', res('Acknowledged', 8))).toBe('unknown');
        const dev = await store.getDevice('D1');
        expect(dev?.checkedOutAt).toBe(iso(7));
        expect(dev?.enrolledAt).toBeUndefined();
        expect(await store.tokenUpdate(enrollment('D1', 'D1', 9))).toEqual({ activated: true });
      });

      it('checkOut of a user channel leaves the device channel alone', async () => {
        await enroll('D1', 0, ['501']);
        await store.enqueue(['D1', 'D1:501'], cmd('c1'), at(2));
        await store.checkOut('D1:501', at(3));
        expect((await store.getEnrollment('D1:501'))?.active).toBe(false);
        expect(await store.nextCommand('D1:501', { skipNotNow: false })).toBeUndefined();
        expect((await store.getEnrollment('D1'))?.active).toBe(true);
        expect((await store.nextCommand('D1', { skipNotNow: false }))?.uuid).toBe('c1');
        const dev = await store.getDevice('D1');
        expect(dev?.checkedOutAt).toBeUndefined();
        expect(dev?.enrolledAt).toBe(iso(1));
      });

      it('getEnrollment and listEnrollments reflect the latest touch', async () => {
        await enroll('D1', 0, ['501']);
        await store.touch('D1', at(20));
        expect((await store.getEnrollment('D1'))?.lastSeenAt).toBe(iso(20));
        await store.touch('D1', at(30));
        await store.touch('D1:501', at(25));
        expect((await store.getEnrollment('D1'))?.lastSeenAt).toBe(iso(30));
        const list = await store.listEnrollments('D1');
        expect(list.find((e) => e.id === 'D1')?.lastSeenAt).toBe(iso(30));
        expect(list.find((e) => e.id === 'D1:501')?.lastSeenAt).toBe(iso(25));
      });

      it('sets, replaces and clears the bootstrap token', async () => {
        await enroll('D1');
        await store.setBootstrapToken('D1', ALL_BYTES);
        const got = await store.getBootstrapToken('D1');
        expect(Buffer.isBuffer(got)).toBe(true);
        expect(got?.equals(ALL_BYTES)).toBe(true);
        expect(await store.getBootstrapToken('D2')).toBeUndefined();
        await store.setBootstrapToken('D1', Buffer.from([0xff, 0x00, 0xfe]));
        expect((await store.getBootstrapToken('D1'))?.equals(Buffer.from([0xff, 0x00, 0xfe]))).toBe(true);
        await store.setBootstrapToken('D1', null);
        expect(await store.getBootstrapToken('D1')).toBeUndefined();
      });
    });

    describe('command queue', () => {
      it('follows the NanoMDM queue sequence', async () => {
        await enroll('D1');
        await store.enqueue(['D1'], cmd('cmd1'), at(10));
        await store.enqueue(['D1'], cmd('cmd2'), at(11));
        expect((await store.nextCommand('D1', { skipNotNow: false }))?.uuid).toBe('cmd1');
        expect(await store.recordResult('D1', 'cmd1', res('Acknowledged', 12))).toBe('recorded');
        expect((await store.nextCommand('D1', { skipNotNow: false }))?.uuid).toBe('cmd2');
        expect(await store.recordResult('D1', 'cmd2', res('NotNow', 13))).toBe('notnow');
        // in reply to that NotNow: nothing, or the device loops
        expect(await store.nextCommand('D1', { skipNotNow: true })).toBeUndefined();
        // on a later Idle: offered again
        const again = await store.nextCommand('D1', { skipNotNow: false });
        expect(again?.uuid).toBe('cmd2');
        expect(again?.status).toBe('NotNow');
        expect(await store.recordResult('D1', 'cmd2', res('Acknowledged', 14))).toBe('recorded');
        expect(await store.nextCommand('D1', { skipNotNow: false })).toBeUndefined();
        expect(await store.nextCommand('D1', { skipNotNow: true })).toBeUndefined();
      });

      it('offers the command exactly as enqueued, and offering does not consume it', async () => {
        await enroll('D1');
        await store.enqueue(['D1'], cmd('c1', 70, 'ProfileList'), at(10));
        const want = { uuid: 'c1', requestType: 'ProfileList', priority: 70, status: 'Pending', enqueuedAt: iso(10) };
        const first = await store.nextCommand('D1', { skipNotNow: false });
        expect(first).toMatchObject(want);
        expect(Buffer.isBuffer(first?.payload)).toBe(true);
        expect(first?.payload.equals(payloadFor('c1'))).toBe(true);
        const second = await store.nextCommand('D1', { skipNotNow: true });
        expect(second).toMatchObject(want);
        expect(second?.payload.equals(payloadFor('c1'))).toBe(true);
      });

      it('serves higher priority first, then oldest; default priority is 50', async () => {
        await enroll('D1');
        await store.enqueue(['D1'], cmd('low', 10), at(1));
        await store.enqueue(['D1'], cmd('mid1'), at(2));
        await store.enqueue(['D1'], cmd('high', 90), at(3));
        await store.enqueue(['D1'], cmd('bottom', 0), at(4));
        await store.enqueue(['D1'], cmd('mid2', 50), at(5));
        await store.enqueue(['D1'], cmd('top', 99), at(6));
        await store.enqueue(['D1'], cmd('mid3'), at(6));
        expect((await store.nextCommand('D1', { skipNotNow: false }))?.priority).toBe(99);
        const mid = (await listCommands('D1')).find((c) => c.uuid === 'mid1');
        expect(mid?.priority).toBe(50);
        expect(await drain(store, 'D1')).toEqual(['top', 'high', 'mid1', 'mid2', 'mid3', 'low', 'bottom']);
      });

      it('a NotNow command keeps its place for Idle but is skipped after a NotNow', async () => {
        await enroll('D1');
        for (const [i, u] of ['c1', 'c2', 'c3'].entries()) await store.enqueue(['D1'], cmd(u), at(i));
        expect(await store.recordResult('D1', 'c1', res('NotNow', 5))).toBe('notnow');
        expect((await store.nextCommand('D1', { skipNotNow: false }))?.uuid).toBe('c1');
        expect((await store.nextCommand('D1', { skipNotNow: true }))?.uuid).toBe('c2');
        expect(await store.recordResult('D1', 'c2', res('NotNow', 6))).toBe('notnow');
        expect((await store.nextCommand('D1', { skipNotNow: true }))?.uuid).toBe('c3');
        expect((await store.nextCommand('D1', { skipNotNow: false }))?.uuid).toBe('c1');
        // a higher-priority NotNow command still comes first on Idle
        await store.enqueue(['D1'], cmd('urgent', 95), at(7));
        expect(await store.recordResult('D1', 'urgent', res('NotNow', 8))).toBe('notnow');
        expect((await store.nextCommand('D1', { skipNotNow: false }))?.uuid).toBe('urgent');
        expect((await store.nextCommand('D1', { skipNotNow: true }))?.uuid).toBe('c3');
      });

      it('an answer and the command to offer in reply come as recordResult then nextCommand (skipping NotNow) would give them', async () => {
        await enroll('D1', 0, ['501']);
        for (const [i, u] of ['c1', 'c2', 'c3'].entries()) await store.enqueue(['D1'], cmd(u, undefined, 'ProfileList'), at(i));
        await store.enqueue(['D1:501'], cmd('u1'), at(3));
        const pl: ReportedState = { ProfileList: { at: iso(5), commandUUID: 'c1', value: [{ PayloadIdentifier: 'one' }] } };
        const first = await recordAndNext(store, 'D1', 'c1', res('Acknowledged', 5), pl);
        expect(first.outcome).toBe('recorded');
        expect(first.next).toMatchObject({ uuid: 'c2', requestType: 'ProfileList', status: 'Pending', enqueuedAt: iso(1) });
        expect(first.next?.payload.equals(payloadFor('c2'))).toBe(true);
        expect((await store.getDevice('D1'))?.reported).toEqual(pl);
        // A NotNow is not offered again in reply to an answer; an Idle gets it.
        expect(await recordAndNext(store, 'D1', 'c2', res('NotNow', 6))).toMatchObject({ outcome: 'notnow', next: { uuid: 'c3' } });
        expect(await recordAndNext(store, 'D1', 'c3', res('Error', 7))).toEqual({ outcome: 'recorded', next: undefined });
        expect((await store.nextCommand('D1', { skipNotNow: false }))?.uuid).toBe('c2');
        expect(await recordAndNext(store, 'D1', 'c1', res('Acknowledged', 8), pl)).toEqual({ outcome: 'duplicate', next: undefined });
        expect(await recordAndNext(store, 'D1', 'nope', res('Acknowledged', 8))).toEqual({ outcome: 'unknown', next: undefined });
        // A user channel's queue is its own.
        expect(await recordAndNext(store, 'D1:501', 'u1', res('Acknowledged', 9))).toEqual({ outcome: 'recorded', next: undefined });
        expect((await listCommands('D1')).map((c) => [c.uuid, c.status])).toEqual([
          ['c1', 'Acknowledged'],
          ['c2', 'NotNow'],
          ['c3', 'Error'],
        ]);
      });

      it('counts NotNow answers and keeps the final result', async () => {
        await enroll('D1');
        await store.enqueue(['D1'], cmd('c1', 60), at(1));
        expect(await store.recordResult('D1', 'c1', res('NotNow', 2))).toBe('notnow');
        expect(await store.recordResult('D1', 'c1', res('NotNow', 3))).toBe('notnow');
        let [view] = await listCommands('D1');
        expect(view).toMatchObject({ uuid: 'c1', status: 'NotNow', notNowCount: 2, updatedAt: iso(3), priority: 60 });
        expect(view?.result).toBeUndefined();

        const errorChain = [{ ErrorCode: 12021, ErrorDomain: 'MCMDMErrorDomain', LocalizedDescription: 'nope' }];
        const raw = Buffer.concat([Buffer.from('<plist>'), ALL_BYTES]);
        const outcome = await store.recordResult('D1', 'c1', { status: 'Error', at: iso(4), raw, errorChain });
        expect(outcome).toBe('recorded');
        [view] = await listCommands('D1');
        expect(view).toMatchObject({
          uuid: 'c1',
          requestType: 'DeviceInformation',
          status: 'Error',
          notNowCount: 2,
          updatedAt: iso(4),
          enqueuedAt: iso(1),
        });
        expect(view?.result?.status).toBe('Error');
        expect(view?.result?.at).toBe(iso(4));
        expect(view?.result?.errorChain).toEqual(errorChain);
        expect(Buffer.isBuffer(view?.result?.raw)).toBe(true);
        expect(view?.result?.raw.equals(raw)).toBe(true);
        expect(await store.nextCommand('D1', { skipNotNow: false })).toBeUndefined();
      });

      it('treats CommandFormatError as final', async () => {
        await enroll('D1');
        await store.enqueue(['D1'], cmd('c1'), at(1));
        expect(await store.recordResult('D1', 'c1', res('CommandFormatError', 2))).toBe('recorded');
        expect(await store.nextCommand('D1', { skipNotNow: false })).toBeUndefined();
        expect((await listCommands('D1'))[0]?.status).toBe('CommandFormatError');
      });

      it('queues one command for many targets independently', async () => {
        await enroll('A');
        await enroll('B');
        await enroll('C');
        await store.enqueue(['A', 'B', 'C'], cmd('fan'), at(1));
        for (const t of ['A', 'B', 'C']) {
          const next = await store.nextCommand(t, { skipNotNow: false });
          expect(next?.uuid).toBe('fan');
          expect(next?.payload.equals(payloadFor('fan'))).toBe(true);
        }
        expect(await store.recordResult('A', 'fan', res('Acknowledged', 2))).toBe('recorded');
        expect(await store.recordResult('B', 'fan', res('NotNow', 2))).toBe('notnow');
        expect(await store.nextCommand('A', { skipNotNow: false })).toBeUndefined();
        expect((await store.nextCommand('B', { skipNotNow: false }))?.uuid).toBe('fan');
        expect((await store.nextCommand('C', { skipNotNow: true }))?.uuid).toBe('fan');
        expect((await listCommands('A'))[0]?.status).toBe('Acknowledged');
        expect((await listCommands('B'))[0]?.status).toBe('NotNow');
        expect((await listCommands('C'))[0]?.status).toBe('Pending');
      });

      it('refuses a uuid that already exists for a target, atomically', async () => {
        await enroll('A');
        await enroll('B');
        await store.enqueue(['A'], cmd('c1'), at(1));
        await expect(store.enqueue(['A'], cmd('c1'), at(2))).rejects.toThrow(Conflict);
        await expect(store.enqueue(['B', 'A'], cmd('c1'), at(2))).rejects.toThrow(Conflict);
        expect((await listCommands('A')).map((c) => c.uuid)).toEqual(['c1']);
        expect(await listCommands('B')).toEqual([]);
        expect(await store.nextCommand('B', { skipNotNow: false })).toBeUndefined();
        // still refused once finished: the history is the same command
        expect(await store.recordResult('A', 'c1', res('Acknowledged', 3))).toBe('recorded');
        await expect(store.enqueue(['A'], cmd('c1'), at(4))).rejects.toThrow(Conflict);
        expect(await store.nextCommand('A', { skipNotNow: false })).toBeUndefined();
        expect(await listCommands('A')).toHaveLength(1);
      });

      it('does not duplicate a target listed twice', async () => {
        await enroll('A');
        await store.enqueue(['A', 'A'], cmd('c1'), at(1));
        expect(await listCommands('A')).toHaveLength(1);
        expect(await drain(store, 'A')).toEqual(['c1']);
      });

      it('enqueue to no targets stores nothing', async () => {
        await enroll('A');
        await store.enqueue([], cmd('c1'), at(1));
        expect(await store.nextCommand('A', { skipNotNow: false })).toBeUndefined();
        await store.enqueue(['A'], cmd('c1'), at(2));
        expect((await store.nextCommand('A', { skipNotNow: false }))?.enqueuedAt).toBe(iso(2));
      });

      it('answers unknown and duplicate results without changing anything', async () => {
        await enroll('A');
        await enroll('B');
        await store.enqueue(['A'], cmd('c1', undefined, 'ProfileList'), at(1));
        await store.enqueue(['A'], cmd('c2'), at(2));
        const reported: ReportedState = { ProfileList: { at: iso(3), commandUUID: 'c1', value: [{ PayloadIdentifier: 'x' }] } };
        expect(await store.recordResult('A', 'c1', res('Acknowledged', 3), reported)).toBe('recorded');

        const beforeA = await listCommands('A');
        const beforeDev = await store.getDevice('A');
        const beforeDevB = await store.getDevice('B');
        const other: ReportedState = { ProfileList: { at: iso(9), commandUUID: 'zzz', value: [] } };

        expect(await store.recordResult('A', 'c1', res('Error', 9), other)).toBe('duplicate');
        expect(await store.recordResult('A', 'c1', res('NotNow', 9))).toBe('duplicate');
        expect(await store.recordResult('A', 'nope', res('Acknowledged', 9), other)).toBe('unknown');
        expect(await store.recordResult('A', 'nope', res('NotNow', 9))).toBe('unknown');
        // queued for A only
        expect(await store.recordResult('B', 'c2', res('Acknowledged', 9), other)).toBe('unknown');
        expect(await store.recordResult('nobody', 'c2', res('Acknowledged', 9))).toBe('unknown');

        expect(await listCommands('A')).toEqual(beforeA);
        expect(await listCommands('B')).toEqual([]);
        expect(await store.getDevice('A')).toEqual(beforeDev);
        expect(await store.getDevice('B')).toEqual(beforeDevB);
        expect((await store.nextCommand('A', { skipNotNow: true }))?.uuid).toBe('c2');
      });

      it('merges reported state per key on final results only', async () => {
        await enroll('D1');
        for (const u of ['q1', 'q2', 'q3', 'q4']) await store.enqueue(['D1'], cmd(u), at(1));
        const pl1: ReportedState = { ProfileList: { at: iso(2), commandUUID: 'q1', value: [{ PayloadIdentifier: 'one' }] } };
        const di: ReportedState = { DeviceInformation: { at: iso(3), commandUUID: 'q2', value: { OSVersion: '18.1' } } };
        const pl2: ReportedState = { ProfileList: { at: iso(4), commandUUID: 'q3', value: [{ PayloadIdentifier: 'two' }] } };
        expect(await store.recordResult('D1', 'q1', res('Acknowledged', 2), pl1)).toBe('recorded');
        expect((await store.getDevice('D1'))?.reported).toEqual(pl1);
        expect(await store.recordResult('D1', 'q2', res('Acknowledged', 3), di)).toBe('recorded');
        expect((await store.getDevice('D1'))?.reported).toEqual({ ...pl1, ...di });
        expect(await store.recordResult('D1', 'q3', res('Acknowledged', 4), pl2)).toBe('recorded');
        expect((await store.getDevice('D1'))?.reported).toEqual({ ...di, ...pl2 });
        const si: ReportedState = { SecurityInfo: { at: iso(5), commandUUID: 'q4', value: { PasscodePresent: true } } };
        expect(await store.recordResult('D1', 'q4', res('NotNow', 5), si)).toBe('notnow');
        expect((await store.getDevice('D1'))?.reported).toEqual({ ...di, ...pl2 });
      });

      it('authenticate drops pending commands of every channel but keeps finished history and reported state', async () => {
        await enroll('D1', 0, ['501']);
        for (const u of ['c1', 'c2', 'c3']) await store.enqueue(['D1'], cmd(u), at(2));
        await store.enqueue(['D1:501'], cmd('u1'), at(2));
        const reported: ReportedState = { DeviceInformation: { at: iso(3), commandUUID: 'c1', value: { DeviceName: 'x' } } };
        const raw = Buffer.concat([ALL_BYTES, Buffer.from('c1')]);
        expect(await store.recordResult('D1', 'c1', res('Acknowledged', 3, raw), reported)).toBe('recorded');
        expect(await store.recordResult('D1', 'c2', res('NotNow', 4))).toBe('notnow');

        await store.authenticate('D1', facts('D1'), identity('cert-D1'), at(10));
        for (const skipNotNow of [false, true]) {
          expect(await store.nextCommand('D1', { skipNotNow })).toBeUndefined();
          expect(await store.nextCommand('D1:501', { skipNotNow })).toBeUndefined();
        }
        const hist = await listCommands('D1');
        expect(hist.map((c) => [c.uuid, c.status])).toEqual([['c1', 'Acknowledged']]);
        expect(hist[0]?.result?.raw.equals(raw)).toBe(true);
        expect(await listCommands('D1:501')).toEqual([]);
        expect((await store.getDevice('D1'))?.reported).toEqual(reported);
        expect(await store.recordResult('D1', 'c2', res('Acknowledged', 11))).toBe('unknown');
        expect(await store.recordResult('D1', 'c1', res('Acknowledged', 11))).toBe('duplicate');

        // the new enrollment starts with an empty queue; old commands do not come back
        await store.tokenUpdate(enrollment('D1', 'D1', 12));
        await store.enqueue(['D1'], cmd('c4'), at(13));
        expect(await drain(store, 'D1')).toEqual(['c4']);
      });

      it('lists pending and finished commands in enqueue order', async () => {
        await enroll('D1');
        await store.enqueue(['D1'], cmd('a', 10), at(1));
        await store.enqueue(['D1'], cmd('b', 90, 'ProfileList'), at(2));
        await store.enqueue(['D1'], cmd('c'), at(3));
        expect(await store.recordResult('D1', 'b', res('Acknowledged', 4))).toBe('recorded');
        expect(await store.recordResult('D1', 'c', res('NotNow', 5))).toBe('notnow');
        const list = await listCommands('D1');
        expect(list.map((c) => [c.uuid, c.status, c.priority, c.enqueuedAt, c.notNowCount])).toEqual([
          ['a', 'Pending', 10, iso(1), 0],
          ['b', 'Acknowledged', 90, iso(2), 0],
          ['c', 'NotNow', 50, iso(3), 1],
        ]);
        expect(list[0]?.updatedAt).toBeUndefined();
        expect(list[1]?.requestType).toBe('ProfileList');
        expect(list[1]?.result?.raw.toString()).toBe(`raw-Acknowledged-4`);
        expect(list[2]?.updatedAt).toBe(iso(5));
      });

      it('keeps ids apart whatever characters they contain', async () => {
        await enroll('D', 0, ['U']);
        await enroll('D2', 0);
        // Everything inside the identifier domain (see the refusal test for what is outside).
        const ids = [
          'D',
          'D2',
          'D:U',
          'D:U:V',
          'D\x01x',
          'D\x01',
          'D\x02',
          'D\x01\x01',
          'Dé',
          'D\uFFFD',
          'D\uD83D\uDE00',
          'D\uE000',
          'D/..',
          "D'; --",
          'D%',
          'D_',
        ];
        for (const [i, id] of ids.entries()) {
          await store.enqueue([id], cmd(`${id}|cmd`, undefined, `T${i}`), at(10 + i));
        }
        for (const [i, id] of ids.entries()) {
          const next = await store.nextCommand(id, { skipNotNow: false });
          expect(next?.uuid).toBe(`${id}|cmd`);
          expect(next?.requestType).toBe(`T${i}`);
          expect(next?.payload.equals(payloadFor(`${id}|cmd`))).toBe(true);
          expect((await listCommands(id)).map((c) => c.uuid)).toEqual([`${id}|cmd`]);
        }
        // uuids differing only in control characters are different commands
        await store.enqueue(['D'], cmd('u\x01'), at(50));
        await store.enqueue(['D'], cmd('u\x02'), at(51));
        expect((await listCommands('D')).map((c) => c.uuid)).toEqual(['D|cmd', 'u\x01', 'u\x02']);
        expect((await store.listEnrollments('D')).map((e) => e.id).sort()).toEqual(['D', 'D:U']);
        expect((await store.listEnrollments('D2')).map((e) => e.id)).toEqual(['D2']);

        // re-authenticating device 'D' clears its channels only
        await store.authenticate('D', facts('D'), identity('cert-D'), at(200));
        expect(await store.nextCommand('D', { skipNotNow: false })).toBeUndefined();
        expect(await store.nextCommand('D:U', { skipNotNow: false })).toBeUndefined();
        expect((await store.nextCommand('D2', { skipNotNow: false }))?.uuid).toBe('D2|cmd');
        expect((await store.nextCommand('D\x01x', { skipNotNow: false }))?.uuid).toBe('D\x01x|cmd');
        expect((await store.getEnrollment('D2'))?.active).toBe(true);
        expect((await store.getEnrollment('D:U'))?.active).toBe(false);

        await store.setBootstrapToken('D\x01', Buffer.from('a'));
        await store.setBootstrapToken('D\x02', Buffer.from('b'));
        expect((await store.getBootstrapToken('D\x01'))?.toString()).toBe('a');
        expect((await store.getBootstrapToken('D\x02'))?.toString()).toBe('b');
        expect(await store.getBootstrapToken('D')).toBeUndefined();
      });

      it('round-trips large binary payloads and results byte for byte', async () => {
        await enroll('D1');
        const big = Buffer.alloc(1 << 20);
        for (let i = 0; i < big.length; i++) big[i] = (i * 7919 + (i >> 8)) & 0xff;
        await store.enqueue(['D1'], { uuid: 'big', requestType: 'InstallProfile', payload: big }, at(1));
        await store.enqueue(['D1'], { uuid: 'empty', requestType: 'InstallProfile', payload: Buffer.alloc(0) }, at(2));
        const next = await store.nextCommand('D1', { skipNotNow: false });
        expect(next?.payload.length).toBe(big.length);
        expect(next?.payload.equals(big)).toBe(true);
        const invalidUtf8 = Buffer.from([0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1, 0xf0, 0x90, 0x28, 0xbc, 0xff, 0xfe, 0x00]);
        expect(await store.recordResult('D1', 'big', res('Acknowledged', 3, invalidUtf8))).toBe('recorded');
        const empty = await store.nextCommand('D1', { skipNotNow: false });
        expect(empty?.uuid).toBe('empty');
        expect(empty?.payload.length).toBe(0);
        expect(await store.recordResult('D1', 'empty', res('Acknowledged', 4, Buffer.alloc(0)))).toBe('recorded');
        const [a, b] = await listCommands('D1');
        expect(a?.result?.raw.equals(invalidUtf8)).toBe(true);
        expect(b?.result?.raw.length).toBe(0);
      });

      it('compacts finished commands older than the cut-off only', async () => {
        await enroll('A');
        await enroll('B');
        await enroll('C');
        await store.enqueue(['A', 'B'], cmd('old'), at(0));
        await store.enqueue(['A', 'B'], cmd('shared'), at(0));
        await store.enqueue(['A'], cmd('pending'), at(0));
        await store.enqueue(['A'], cmd('notnow'), at(0));
        await store.enqueue(['A'], cmd('edge'), at(0));
        await store.enqueue(['A'], cmd('recent'), at(0));
        expect(await store.recordResult('A', 'old', res('Acknowledged', 100))).toBe('recorded');
        expect(await store.recordResult('B', 'old', res('Error', 200))).toBe('recorded');
        expect(await store.recordResult('A', 'shared', res('Acknowledged', 100))).toBe('recorded');
        expect(await store.recordResult('A', 'notnow', res('NotNow', 50))).toBe('notnow');
        expect(await store.recordResult('A', 'edge', res('Acknowledged', 500))).toBe('recorded');
        expect(await store.recordResult('A', 'recent', res('Acknowledged', 1000))).toBe('recorded');

        expect(await store.compact(at(500))).toBe(3); // old on A and B, shared on A
        expect((await listCommands('A')).map((c) => [c.uuid, c.status])).toEqual([
          ['pending', 'Pending'],
          ['notnow', 'NotNow'],
          ['edge', 'Acknowledged'],
          ['recent', 'Acknowledged'],
        ]);
        expect((await listCommands('B')).map((c) => [c.uuid, c.status])).toEqual([['shared', 'Pending']]);
        expect(await store.compact(at(500))).toBe(0);

        // a target still waiting keeps the shared payload
        const shared = await store.nextCommand('B', { skipNotNow: false });
        expect(shared?.uuid).toBe('shared');
        expect(shared?.payload.equals(payloadFor('shared'))).toBe(true);
        // compacted history is gone: answers are unknown, and the uuid is free again with new bytes
        expect(await store.recordResult('A', 'old', res('Acknowledged', 600))).toBe('unknown');
        const fresh = Buffer.from('new payload for old');
        await store.enqueue(['C'], { uuid: 'old', requestType: 'DeviceInformation', payload: fresh }, at(700));
        expect((await store.nextCommand('C', { skipNotNow: false }))?.payload.equals(fresh)).toBe(true);
        // pending work is never compacted
        expect(await store.compact(at(1_000_000))).toBe(2);
        expect((await listCommands('A')).map((c) => c.uuid)).toEqual(['pending', 'notnow']);
        expect((await store.nextCommand('A', { skipNotNow: false }))?.payload.equals(payloadFor('pending'))).toBe(true);
      });

      it('serializes concurrent answers to one command', async () => {
        await enroll('D1');
        await store.enqueue(['D1'], cmd('c1'), at(1));
        await store.enqueue(['D1'], cmd('c2'), at(1));
        const outcomes = await Promise.all(Array.from({ length: 10 }, (_, i) => store.recordResult('D1', 'c1', res('Acknowledged', 2 + i))));
        expect(outcomes.filter((o) => o === 'recorded')).toHaveLength(1);
        expect(outcomes.filter((o) => o === 'duplicate')).toHaveLength(9);
        await Promise.all(Array.from({ length: 6 }, (_, i) => store.recordResult('D1', 'c2', res('NotNow', 20 + i))));
        const c2 = (await listCommands('D1')).find((c) => c.uuid === 'c2');
        expect(c2?.notNowCount).toBe(6);
        expect(c2?.status).toBe('NotNow');
      });

      it('does not lose reported state merged concurrently', async () => {
        await enroll('D1');
        const keys = ['DeviceInformation', 'SecurityInfo', 'ProfileList', 'InstalledApplicationList', 'CertificateList'] as const;
        for (const k of keys) await store.enqueue(['D1'], cmd(k), at(1));
        await Promise.all(
          keys.map((k) => {
            const value = k === 'DeviceInformation' || k === 'SecurityInfo' ? { k } : [{ k }];
            const reported = { [k]: { at: iso(2), commandUUID: k, value } } as ReportedState;
            return store.recordResult('D1', k, res('Acknowledged', 2), reported);
          }),
        );
        expect(Object.keys((await store.getDevice('D1'))?.reported ?? {}).sort()).toEqual([...keys].sort());
      });

      it('accepts exactly one of concurrent enqueues of the same uuid, and orders concurrent distinct ones', async () => {
        await enroll('D1');
        const same = await Promise.allSettled(Array.from({ length: 5 }, () => store.enqueue(['D1'], cmd('dup'), at(1))));
        expect(same.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
        const uuids = Array.from({ length: 50 }, (_, i) => `par-${i}`);
        await Promise.all(uuids.map((u) => store.enqueue(['D1'], cmd(u), at(2))));
        const listed = (await listCommands('D1')).map((c) => c.uuid);
        expect(listed).toHaveLength(51);
        expect(new Set(listed).size).toBe(51);
        const drained = await drain(store, 'D1');
        expect(drained).toEqual(listed);
      });
    });

    describe('reconciler state', () => {
      const artifact = (identifier: string, commandUUID?: string) => ({
        kind: 'profile' as const,
        identifier,
        profile: identifier,
        blueprints: ['b'],
        uuid: `U-${identifier}`,
        templateHash: 'h',
        phase: 'pending' as const,
        revision: 'r1',
        commandUUID,
        attempts: 1,
        prune: true,
        updatedAt: iso(5),
        drift: 0,
      });

      it('rebinds a renewed identity without touching the queue or the enrollment', async () => {
        await enroll('D1');
        await store.enqueue(['D1'], cmd('c1'), at(2));
        await store.rebindIdentity('D1', identity('cert-D1-renewed'));
        expect((await store.getDevice('D1'))?.identity.certHash).toBe('cert-D1-renewed');
        expect(await store.deviceForCert('cert-D1-renewed')).toBe('D1');
        expect(await store.deviceForCert('cert-D1')).toBeUndefined();
        expect((await store.getEnrollment('D1'))?.active).toBe(true);
        expect((await store.nextCommand('D1', { skipNotNow: false }))?.uuid).toBe('c1');
        await expect(store.rebindIdentity('nobody', identity('x'))).rejects.toThrow(NotFound);
      });

      it('lists device ids without records, whatever characters they hold', async () => {
        const ids = ['D2', 'D1', 'odd\x01id\x7fx', 'pair-\uD83D\uDE00', 'private-\uE000', 'D1 ', 'é'];
        for (const id of ids) await store.authenticate(id, facts(id), identity(`cert-${id}`), at(1));
        expect((await listDeviceIds()).sort()).toEqual([...ids].sort());
      });

      it('commits state, new commands and cancellations in one step', async () => {
        await enroll('D1');
        await store.enqueue(['D1'], cmd('old'), at(2));
        expect(await store.getArtifacts('D1')).toBeUndefined();
        const state = { deviceId: 'D1', artifacts: { a: artifact('a', 'new') }, revision: 'r1' };
        const out = await store.commitReconcile(
          'D1',
          state,
          {
            enqueue: [{ targets: ['D1'], cmd: cmd('new', 50, 'InstallProfile') }],
            cancel: [
              { enrollmentId: 'D1', uuid: 'old' },
              { enrollmentId: 'D1', uuid: 'never-queued' },
            ],
          },
          at(3),
          0,
        );
        expect(out).toEqual({ cancelled: ['old'], version: 1 });
        expect(await store.getArtifacts('D1')).toEqual({ ...state, version: 1 });
        expect((await listArtifacts()).map((a) => a.deviceId)).toEqual(['D1']);
        expect((await listCommands('D1')).map((c) => c.uuid)).toEqual(['new']);
        expect((await store.nextCommand('D1', { skipNotNow: false }))?.uuid).toBe('new');
        expect(await store.getCommand('D1', 'old')).toBeUndefined();
      });

      it('does not withdraw a command that was answered meanwhile', async () => {
        await enroll('D1');
        await store.enqueue(['D1'], cmd('c1'), at(2));
        expect(await store.recordResult('D1', 'c1', res('Acknowledged', 3))).toBe('recorded');
        const out = await store.commitReconcile(
          'D1',
          { deviceId: 'D1', artifacts: {} },
          { enqueue: [], cancel: [{ enrollmentId: 'D1', uuid: 'c1' }] },
          at(4),
          0,
        );
        expect(out.cancelled).toEqual([]);
        const c = await store.getCommand('D1', 'c1');
        expect(c?.status).toBe('Acknowledged');
        expect(c?.result?.raw.toString()).toBe('raw-Acknowledged-3');
      });

      it('keeps reconciler state across reopen', async (t) => {
        if (!h.reopen) return t.skip();
        await enroll('D1');
        const state = { deviceId: 'D1', artifacts: { a: artifact('a', 'x1') } };
        await store.commitReconcile('D1', state, { enqueue: [{ targets: ['D1'], cmd: cmd('x1') }], cancel: [] }, at(2), 0);
        await store.commitReconcile('D1', state, { enqueue: [], cancel: [] }, at(3), 1);
        store = await h.reopen();
        expect(await store.getArtifacts('D1')).toEqual({ ...state, version: 2 });
        expect((await store.nextCommand('D1', { skipNotNow: true }))?.uuid).toBe('x1');
        await expect(store.commitReconcile('D1', state, { enqueue: [], cancel: [] }, at(4), 1)).rejects.toThrow(VersionConflictError);
      });

      it('commits only on the expected version: a stale writer gets a conflict and changes nothing', async () => {
        await enroll('D1');
        await store.enqueue(['D1'], cmd('queued'), at(1));
        const first = { deviceId: 'D1', artifacts: { a: artifact('a', 'i1') }, revision: 'r1' };
        expect((await store.commitReconcile('D1', first, { enqueue: [{ targets: ['D1'], cmd: cmd('i1') }], cancel: [] }, at(2), 0)).version).toBe(1);
        // A second writer that read "no state yet", and one that read version 1 after another moved on.
        const stale = { deviceId: 'D1', artifacts: { b: artifact('b', 'i2') }, revision: 'r2' };
        const change = { enqueue: [{ targets: ['D1'], cmd: cmd('i2') }], cancel: [{ enrollmentId: 'D1', uuid: 'queued' }] };
        const err = await store.commitReconcile('D1', stale, change, at(3), 0).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(VersionConflictError);
        expect(err).toBeInstanceOf(Conflict);
        expect(err).toMatchObject({ expected: 0, actual: 1 });
        expect(await store.getArtifacts('D1')).toEqual({ ...first, version: 1 });
        expect((await listCommands('D1')).map((c) => c.uuid)).toEqual(['queued', 'i1']);
        // The version on a state read back is ignored in what is stored.
        const read = (await store.getArtifacts('D1'))!;
        expect((await store.commitReconcile('D1', { ...read, revision: 'r3' }, { enqueue: [], cancel: [] }, at(4), read.version)).version).toBe(2);
        await expect(store.commitReconcile('D1', stale, change, at(5), 1)).rejects.toThrow(VersionConflictError);
        await expect(store.commitReconcile('D1', stale, change, at(5), 3)).rejects.toThrow(VersionConflictError);
        expect(await store.getArtifacts('D1')).toEqual({ ...first, revision: 'r3', version: 2 });
        expect((await store.nextCommand('D1', { skipNotNow: false }))?.uuid).toBe('queued');
        // Each device has versions of its own.
        await enroll('D2');
        expect((await store.commitReconcile('D2', { deviceId: 'D2', artifacts: {} }, { enqueue: [], cancel: [] }, at(6), 0)).version).toBe(1);
      });

      it('lets exactly one of concurrent writers of the same version win', async () => {
        await enroll('D1');
        const outcomes = await Promise.allSettled(
          Array.from({ length: 6 }, (_, i) =>
            store.commitReconcile(
              'D1',
              { deviceId: 'D1', artifacts: {}, revision: `r${i}` },
              { enqueue: [{ targets: ['D1'], cmd: cmd(`w${i}`) }], cancel: [] },
              at(1),
              0,
            ),
          ),
        );
        const won = outcomes.flatMap((o, i) => (o.status === 'fulfilled' ? [i] : []));
        expect(won).toHaveLength(1);
        for (const o of outcomes) if (o.status === 'rejected') expect(o.reason).toBeInstanceOf(VersionConflictError);
        expect(await store.getArtifacts('D1')).toMatchObject({ revision: `r${won[0]}`, version: 1 });
        expect((await listCommands('D1')).map((c) => c.uuid)).toEqual([`w${won[0]}`]);
      });

      it('pages reconcile states in device id order', async () => {
        for (const id of ['D3', 'D1', 'D5', 'D2', 'D4']) {
          await store.commitReconcile(id, { deviceId: id, artifacts: {} }, { enqueue: [], cancel: [] }, at(1), 0);
        }
        const states = await listArtifacts();
        expect(states.map((a) => [a.deviceId, a.version])).toEqual(['D1', 'D2', 'D3', 'D4', 'D5'].map((id) => [id, 1]));
      });
    });

    describe('paging', () => {
      it('walks devices and ids page by page, each exactly once, in one order', async () => {
        const ids = Array.from({ length: 7 }, (_, i) => `P${i}`).reverse();
        for (const id of ids) await store.authenticate(id, facts(id), identity(`cert-${id}`), at(1));
        const first = await store.listDevices({ limit: 3 });
        expect(first.items).toHaveLength(3);
        expect(first.next).toBeDefined();
        const second = await store.listDevices({ cursor: first.next, limit: 3 });
        const third = await store.listDevices({ cursor: second.next, limit: 3 });
        expect(third.items).toHaveLength(1);
        expect(third.next).toBeUndefined();
        const walked = [...first.items, ...second.items, ...third.items].map((d) => d.id);
        expect(walked).toEqual([...ids].sort());
        const idPages = [await store.listDeviceIds({ limit: 4 })];
        idPages.push(await store.listDeviceIds({ cursor: idPages[0]!.next, limit: 4 }));
        expect(idPages.flatMap((p) => p.items)).toEqual(walked);
        expect(idPages[1]!.next).toBeUndefined();
        // A full last page says so: no empty page after it.
        expect((await store.listDeviceIds({ limit: 7 })).next).toBeUndefined();
        expect((await store.listDeviceIds()).items).toEqual(walked);
      });

      it('a device created behind the cursor is not seen, one ahead of it is, nothing twice', async () => {
        for (const id of ['B', 'D', 'F']) await store.authenticate(id, facts(id), identity(`cert-${id}`), at(1));
        const page = await store.listDeviceIds({ limit: 2 });
        expect(page.items).toEqual(['B', 'D']);
        await store.authenticate('A', facts('A'), identity('cert-A'), at(2));
        await store.authenticate('E', facts('E'), identity('cert-E'), at(2));
        const rest = await store.listDeviceIds({ cursor: page.next, limit: 2 });
        expect(rest.items).toEqual(['E', 'F']);
        expect(rest.next).toBeUndefined();
      });

      it("pages an enrollment's commands in enqueue order, finished and pending alike", async () => {
        await enroll('D1');
        const uuids = Array.from({ length: 9 }, (_, i) => `c${i}`);
        for (const [i, u] of uuids.entries()) await store.enqueue(['D1'], cmd(u, i % 2 ? 90 : 10), at(i));
        for (const u of ['c1', 'c4', 'c8']) expect(await store.recordResult('D1', u, res('Acknowledged', 20))).toBe('recorded');
        const pages: string[][] = [];
        let cursor: string | undefined;
        do {
          const page = await store.listCommands('D1', cursor === undefined ? { limit: 4 } : { cursor, limit: 4 });
          pages.push(page.items.map((c) => c.uuid));
          cursor = page.next;
        } while (cursor !== undefined);
        expect(pages).toEqual([uuids.slice(0, 4), uuids.slice(4, 8), uuids.slice(8)]);
        const finished = (await listCommands('D1')).filter((c) => c.result).map((c) => c.result!.raw.toString());
        expect(finished).toEqual(['raw-Acknowledged-20', 'raw-Acknowledged-20', 'raw-Acknowledged-20']);
        expect((await store.listCommands('nobody', { limit: 1 })).items).toEqual([]);
      });

      it('refuses a limit outside 1..10,000 and a cursor outside the identifier domain', async () => {
        await enroll('D1');
        for (const limit of [0, -1, 1.5, 10_001, Number.NaN]) {
          await expect(store.listDevices({ limit })).rejects.toThrow(Malformed);
          await expect(store.listDeviceIds({ limit })).rejects.toThrow(Malformed);
          await expect(store.listArtifacts({ limit })).rejects.toThrow(Malformed);
          await expect(store.listCommands('D1', { limit })).rejects.toThrow(Malformed);
        }
        await expect(store.listDevices({ cursor: 'x\x00' })).rejects.toThrow(Malformed);
        await expect(store.listDeviceIds({ cursor: '\uD800' })).rejects.toThrow(Malformed);
        expect((await store.listDeviceIds({ limit: 10_000 })).items).toEqual(['D1']);
      });
    });

    describe('identifier domain', () => {
      const outside: [string, string][] = [
        ['U+0000', 'D\x00x'],
        ['U+0000 alone', '\x00'],
        ['a lone high surrogate', 'D\uD800'],
        ['a lone low surrogate', '\uDC00D'],
        ['surrogates in the wrong order', 'D\uDE00\uD83D'],
        ['the empty string', ''],
        ['an over-long id', 'x'.repeat(MAX_ID_LENGTH + 1)],
      ];

      it.each(outside)('refuses an id with %s on every method, and stores nothing', async (_why, bad) => {
        await enroll('D1');
        const refused = async (p: Promise<unknown>) => {
          const err = await p.then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(err).toBeInstanceOf(Malformed);
          // Says what, without echoing control characters or surrogates raw.
          expect((err as Error).message).not.toMatch(/[\x00\uD800-\uDFFF]/);
        };
        await refused(store.authenticate(bad, facts('D1'), identity('fresh'), at(1)));
        await refused(store.authenticate('D9', facts('D9'), identity(bad), at(1)));
        await refused(store.tokenUpdate(enrollment(bad, bad, 1)));
        await refused(store.tokenUpdate(enrollment(`D1:${bad}`, 'D1', 1)));
        await refused(store.checkOut(bad, at(1)));
        await refused(store.rebindIdentity(bad, identity('x'), undefined));
        await refused(store.rebindIdentity('D1', identity(bad), undefined));
        await refused(store.touch(bad, at(1)));
        await refused(store.setBootstrapToken(bad, Buffer.from('t')));
        await refused(store.getBootstrapToken(bad));
        await refused(store.getDevice(bad));
        await refused(store.deviceForCert(bad));
        await refused(store.getEnrollment(bad));
        await refused(store.listEnrollments(bad));
        await refused(store.enqueue([bad], cmd('ok'), at(1)));
        await refused(store.enqueue(['D1', bad], cmd('ok'), at(1)));
        await refused(store.enqueue(['D1'], cmd(bad), at(1)));
        await refused(store.nextCommand(bad, { skipNotNow: false }));
        await refused(store.recordResult(bad, 'ok', res('Acknowledged', 2)));
        await refused(store.recordResult('D1', bad, res('Acknowledged', 2)));
        await refused(store.getCommand(bad, 'ok'));
        await refused(store.getCommand('D1', bad));
        await refused(store.listCommands(bad));
        await refused(store.getArtifacts(bad));
        await refused(store.commitReconcile(bad, { deviceId: bad, artifacts: {} }, { enqueue: [], cancel: [] }, at(1), 0));
        await refused(store.commitReconcile('D1', { deviceId: 'D1', artifacts: {} }, { enqueue: [{ targets: [bad], cmd: cmd('ok') }], cancel: [] }, at(1), 0));
        await refused(store.commitReconcile('D1', { deviceId: 'D1', artifacts: {} }, { enqueue: [{ targets: ['D1'], cmd: cmd(bad) }], cancel: [] }, at(1), 0));
        await refused(store.commitReconcile('D1', { deviceId: 'D1', artifacts: {} }, { enqueue: [], cancel: [{ enrollmentId: 'D1', uuid: bad }] }, at(1), 0));
        // Nothing of it was stored, and the store still serves.
        expect(await listDeviceIds()).toEqual(['D1']);
        expect(await listCommands('D1')).toEqual([]);
        expect(await store.getArtifacts('D1')).toBeUndefined();
        expect((await store.listEnrollments('D1')).map((e) => e.id)).toEqual(['D1']);
        expect(await store.deviceForCert('cert-D1')).toBe('D1');
        await store.enqueue(['D1'], cmd('ok'), at(3));
        expect((await store.nextCommand('D1', { skipNotNow: false }))?.uuid).toBe('ok');
      });

      it('accepts the longest id and a surrogate pair at either end', async () => {
        const ids = ['x'.repeat(MAX_ID_LENGTH), '\uD83D\uDE00D', 'D\uD83D\uDE00'];
        for (const [i, id] of ids.entries()) {
          await store.authenticate(id, facts(id), identity(`cert-${i}`), at(1));
          await store.tokenUpdate(enrollment(id, id, 2));
          await store.enqueue([id], cmd(id), at(3));
          expect((await store.nextCommand(id, { skipNotNow: false }))?.uuid).toBe(id);
        }
        expect((await listDeviceIds()).sort()).toEqual([...ids].sort());
      });
    });

    describe('webhook events written with their cause', () => {
      const URLS = ['http://hooks.test/a', 'http://hooks.test/b?x=1'];
      const entry = (type: string, data: Record<string, unknown> = {}): OutboxEntry => ({ urls: URLS, event: { id: `id-${type}`, type, at: iso(0), data } });
      /** An event the store cannot encode: its write fails, and so must its cause's. */
      const unwritable = (): OutboxEntry => ({ urls: URLS, event: { id: 'bad', type: 'bad', at: iso(0), data: { n: 1n } } });
      const queued = async (url: string) => (await store.pendingEvents(url, 100)).map((r) => r.event.type);
      const renewal = (from: string, to: string) => ({
        at: iso(5),
        kind: 'renewal' as const,
        from: { certHash: from, subject: `CN=${from}`, notAfter: '2027-01-01T00:00:00.000Z' },
        to: { certHash: to, subject: `CN=${to}`, notAfter: '2027-01-01T00:00:00.000Z' },
      });

      it('each check-in change queues its event for every URL, in order, and keeps it across a reopen; a TokenUpdate of an active channel queues none', async () => {
        await store.authenticate('D1', facts('D1'), identity('h1'), at(0), undefined, entry('authenticated'));
        await store.tokenUpdate(enrollment('D1', 'D1', 1), entry('device.enrolled'));
        await store.tokenUpdate(enrollment('D1', 'D1', 2), entry('active.again'));
        await store.tokenUpdate(enrollment('D1:U1', 'D1', 3), entry('user.enrolled'));
        await store.rebindIdentity('D1', identity('h2'), renewal('h1', 'h2'), entry('device.identity_changed'));
        await expect(store.rebindIdentity('D-none', identity('h3'), undefined, entry('no.device'))).rejects.toBeInstanceOf(NotFound);
        await store.checkOut('D1:U1', at(6), entry('user.checked_out'));
        await store.checkOut('D1', at(7), entry('device.checked_out'));
        const expected = ['authenticated', 'device.enrolled', 'user.enrolled', 'device.identity_changed', 'user.checked_out', 'device.checked_out'];
        expect(await queued(URLS[0]!)).toEqual(expected);
        expect(await queued(URLS[1]!)).toEqual(expected);
        expect((await store.pendingEvents(URLS[0]!, 1))[0]!.event).toEqual(entry('authenticated').event);
        // The changes are there with them.
        expect(await store.deviceForCert('h2')).toBe('D1');
        expect((await store.getDevice('D1'))?.checkedOutAt).toBe(iso(7));
        expect(await store.countEvents()).toBe(12);
        if (h.reopen) {
          store = await h.reopen();
          expect(await queued(URLS[1]!)).toEqual(expected);
          await store.tokenUpdate(enrollment('D1', 'D1', 8), entry('re.enrolled'));
          expect((await queued(URLS[0]!)).at(-1)).toBe('re.enrolled');
        }
      });

      it('an answer queues its event when it is recorded or NotNow, on every path; a duplicate or unknown answer queues none', async () => {
        await enroll('D1');
        for (const u of ['c1', 'c2', 'c3']) await store.enqueue(['D1'], cmd(u), at(2));
        await store.enqueue(['D1'], cmd('c4', undefined, 'DeviceInformation'), at(2));
        const failed = { ...res('Error', 3), errorChain: [{ ErrorCode: 12021, ErrorDomain: 'MCInstallationErrorDomain' }] };
        expect(await store.recordResult('D1', 'c1', failed, undefined, entry('failed.c1'))).toBe('recorded');
        expect(await store.recordResult('D1', 'c1', res('Error', 4), undefined, entry('duplicate'))).toBe('duplicate');
        expect(await store.recordResult('D1', 'c-none', res('Error', 4), undefined, entry('unknown'))).toBe('unknown');
        expect(await store.recordResult('D1', 'c2', res('NotNow', 5), undefined, entry('notnow.c2'))).toBe('notnow');
        expect((await recordAndNext(store, 'D1', 'c3', res('CommandFormatError', 6), undefined, entry('failed.c3'))).outcome).toBe('recorded');
        const reported: ReportedState = { DeviceInformation: { at: iso(7), commandUUID: 'c4', value: { OSVersion: '18.3' } } };
        expect((await recordAndNext(store, 'D1', 'c4', res('Acknowledged', 7), reported, entry('reported.c4'))).outcome).toBe('recorded');
        expect(await queued(URLS[0]!)).toEqual(['failed.c1', 'notnow.c2', 'failed.c3', 'reported.c4']);
        expect((await store.getCommand('D1', 'c1'))?.result?.errorChain).toEqual(failed.errorChain);
      });

      it('a value written with its event (the source state) keeps both; a value not written (ifAbsent) or an unwritable event, neither', async () => {
        const state = (s: string) => Buffer.from(`{"commit":"${s}"}`);
        expect(await store.putMaterial('blob', 'source-state', state('c1'), { event: entry('revision.applied') })).toBe(true);
        expect(await store.putMaterial('blob', 'source-state', state('c2'), { ifAbsent: true, event: entry('not.written') })).toBe(false);
        await expect(store.putMaterial('blob', 'source-state', state('c3'), { event: unwritable() })).rejects.toThrow();
        expect(await store.getMaterial('blob', 'source-state')).toEqual(state('c1'));
        expect(await queued(URLS[0]!)).toEqual(['revision.applied']);
        expect(await store.countEvents()).toBe(2);
      });

      it('an event that cannot be written leaves its cause undone, and the store goes on (both or neither)', async () => {
        await enroll('D1');
        await store.enqueue(['D1'], cmd('c1'), at(2));
        await expect(store.recordResult('D1', 'c1', res('Error', 3), undefined, unwritable())).rejects.toThrow();
        expect((await store.getCommand('D1', 'c1'))?.status).toBe('Pending');
        await expect(recordAndNext(store, 'D1', 'c1', res('NotNow', 3), undefined, unwritable())).rejects.toThrow();
        expect((await store.getCommand('D1', 'c1'))?.status).toBe('Pending');
        await expect(store.tokenUpdate(enrollment('D1:U1', 'D1', 4), unwritable())).rejects.toThrow();
        expect(await store.getEnrollment('D1:U1')).toBeUndefined();
        await expect(store.rebindIdentity('D1', identity('h9'), undefined, unwritable())).rejects.toThrow();
        expect(await store.deviceForCert('cert-D1')).toBe('D1');
        await expect(store.checkOut('D1', at(5), unwritable())).rejects.toThrow();
        expect((await store.getEnrollment('D1'))?.active).toBe(true);
        await expect(store.authenticate('D1', facts('D1', { OSVersion: '19.0' }), identity('h8'), at(6), undefined, unwritable())).rejects.toThrow();
        expect((await store.getDevice('D1'))?.facts.OSVersion).toBe('18.1');
        expect(await store.countEvents()).toBe(0);
        expect(await store.recordResult('D1', 'c1', res('Error', 7), undefined, entry('failed.c1'))).toBe('recorded');
        expect(await queued(URLS[1]!)).toEqual(['failed.c1']);
        expect(await store.nextCommand('D1', { skipNotNow: false })).toBeUndefined();
      });
    });

    describe('persistence', () => {
      it('keeps everything across reopen', async (t) => {
        if (!h.reopen) return t.skip();
        await enroll('D1', 0, ['501']);
        await store.tokenUpdate(enrollment('D1', 'D1', 2, { unlockToken: ALL_BYTES }));
        await store.setBootstrapToken('D1', ALL_BYTES);
        await store.touch('D1', at(40));
        for (const u of ['c1', 'c2', 'c3']) await store.enqueue(['D1', 'D1:501'], cmd(u), at(3));
        const reported: ReportedState = { SecurityInfo: { at: iso(4), commandUUID: 'c1', value: { FDE_Enabled: true } } };
        expect(await store.recordResult('D1', 'c1', res('Acknowledged', 4, ALL_BYTES), reported)).toBe('recorded');
        expect(await store.recordResult('D1', 'c2', res('NotNow', 5))).toBe('notnow');
        const before = {
          dev: await store.getDevice('D1'),
          enr: await store.listEnrollments('D1'),
          cmds: await listCommands('D1'),
          user: await listCommands('D1:501'),
        };
        expect(before.enr.find((e) => e.id === 'D1')?.lastSeenAt).toBe(iso(40));

        store = await h.reopen();
        expect(await store.getDevice('D1')).toEqual(before.dev);
        expect(await store.deviceForCert('cert-D1')).toBe('D1');
        const enr = await store.listEnrollments('D1');
        expect(enr).toEqual(before.enr);
        expect(enr.find((e) => e.id === 'D1')?.unlockToken?.equals(ALL_BYTES)).toBe(true);
        expect((await store.getEnrollment('D1'))?.lastSeenAt).toBe(iso(40));
        expect((await store.getBootstrapToken('D1'))?.equals(ALL_BYTES)).toBe(true);
        const cmds = await listCommands('D1');
        expect(cmds).toEqual(before.cmds);
        expect(cmds[0]?.result?.raw.equals(ALL_BYTES)).toBe(true);
        expect(await listCommands('D1:501')).toEqual(before.user);
        expect(await store.nextCommand('D1', { skipNotNow: true })).toMatchObject({ uuid: 'c3', status: 'Pending' });
        const c2 = await store.nextCommand('D1', { skipNotNow: false });
        expect(c2).toMatchObject({ uuid: 'c2', status: 'NotNow' });
        expect(c2?.payload.equals(payloadFor('c2'))).toBe(true);
        expect(await store.recordResult('D1', 'c1', res('Acknowledged', 6))).toBe('duplicate');
      });

      it('orders commands enqueued after reopen after the older ones', async (t) => {
        if (!h.reopen) return t.skip();
        await enroll('D1');
        for (const u of ['c1', 'c2', 'c3']) await store.enqueue(['D1'], cmd(u), at(1));
        store = await h.reopen();
        await store.enqueue(['D1'], cmd('c4'), at(2));
        store = await h.reopen();
        await store.enqueue(['D1'], cmd('c5'), at(3));
        expect((await listCommands('D1')).map((c) => c.uuid)).toEqual(['c1', 'c2', 'c3', 'c4', 'c5']);
        expect(await drain(store, 'D1')).toEqual(['c1', 'c2', 'c3', 'c4', 'c5']);
      });
    });
  });
}
