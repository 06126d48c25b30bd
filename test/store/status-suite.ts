/**
 * Backend-independent behaviour of the read model (`StatusStore`, src/store/status.ts): every
 * backend runs it as `statusSuite('MyStore', open)` with the harness of `test/store/suite.ts`.
 * Rows follow the writes they summarize; counts, filters and pages are answered from them.
 */
import { describe, expect, it } from 'vitest';
import { DEVICE_STATES, type StatusProfiles } from '../../src/store/status.js';
import type { DeviceFacts, EnrollmentRecord, IdentityBinding, Store } from '../../src/store/types.js';
import { openEach, type StoreHarness } from './suite.js';

const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const at = (s: number): Date => new Date(T0 + s * 1000);
const DAY_S = 86_400;

function facts(udid: string, extra: Partial<DeviceFacts> = {}): DeviceFacts {
  return { UDID: udid, Topic: 'com.apple.mgmt.External.test', SerialNumber: `SN-${udid}`, OSVersion: '18.1', DeviceName: `name-${udid}`, ...extra };
}

function identity(certHash: string): IdentityBinding {
  return { certHash, issuerHash: 'issuer-1', subject: `CN=${certHash}`, notAfter: '2027-01-01T00:00:00.000Z' };
}

function channel(id: string, s: number): EnrollmentRecord {
  return {
    id,
    deviceId: id,
    type: 'device',
    active: true,
    push: { token: 'ab'.repeat(32), pushMagic: `magic-${id}`, topic: 'com.apple.mgmt.External.test' },
    createdAt: at(s).toISOString(),
    updatedAt: at(s).toISOString(),
  };
}

/** A reconciler verdict: `blueprints` select the device, each wants profile `p.<blueprint>` in `phase`. */
function verdict(state: StatusProfiles['state'], blueprints: string[], phase: 'verified' | 'pending' | 'failed' = 'verified'): StatusProfiles {
  const phases = Object.fromEntries(blueprints.map((b) => [`p.${b}`, phase]));
  const n = blueprints.length;
  return {
    state,
    blueprints,
    matched: [...blueprints, 'suspended-one'],
    revision: 'r1',
    profiles: { total: n, verified: phase === 'verified' ? n : 0, pending: phase === 'pending' ? n : 0, failed: phase === 'failed' ? n : 0 },
    phases,
    problems: phase === 'failed' ? blueprints.map((b) => ({ identifier: `p.${b}`, phase: 'failed', message: 'refused' })) : [],
  };
}

/** A small seeded generator: the same "random" sequence on every backend and every run. */
function lcg(seed: number): () => number {
  let x = seed;
  return () => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x / 2 ** 31;
  };
}

export function statusSuite(name: string, open: () => Promise<StoreHarness>): void {
  describe(`${name}: read model`, () => {
    let h: StoreHarness;
    let store: Store;
    openEach(open, (opened) => {
      h = opened;
      store = opened.store;
    });

    async function enroll(id: string, s = 1): Promise<void> {
      await store.authenticate(id, facts(id), identity(`cert-${id}`), at(s));
      await store.tokenUpdate(channel(id, s + 1));
    }
    const reconcile = async (id: string, p: StatusProfiles) =>
      store.commitReconcile(id, { deviceId: id, artifacts: {} }, { enqueue: [], cancel: [], status: p }, at(5), (await store.getArtifacts(id))?.version ?? 0);
    const counts = (s = 10) => store.fleetCounts({ now: at(s), staleDays: 7 });

    it('a device gets its row at Authenticate: facts from the message, unenrolled until TokenUpdate', async () => {
      expect(await store.getStatus('D1')).toBeUndefined();
      await store.authenticate('D1', facts('D1', { Model: 'Mac14,2' }), identity('c1'), at(1));
      const row = await store.getStatus('D1');
      expect(row?.facts).toMatchObject({ serialNumber: 'SN-D1', deviceName: 'name-D1', model: 'Mac14,2', osVersion: '18.1', enrolled: false });
      expect(row?.profiles).toBeUndefined();
      expect((await counts()).byState.unenrolled).toBe(1);
      await store.tokenUpdate(channel('D1', 2));
      expect((await store.getStatus('D1'))?.facts).toMatchObject({ enrolled: true, enrolledAt: at(2).toISOString() });
      // Enrolled and not looked at by the reconciler yet: nothing is wanted of it.
      expect(await counts()).toMatchObject({ total: 1, enrolled: 1, byState: { 'in-sync': 1, unenrolled: 0 } });
    });

    it('commitReconcile writes the verdict with the state; CheckOut and a new Authenticate make it unenrolled and keep the verdict', async () => {
      await enroll('D1');
      await reconcile('D1', verdict('failed', ['macs'], 'failed'));
      expect((await store.getStatus('D1'))?.profiles).toEqual(verdict('failed', ['macs'], 'failed'));
      expect((await counts()).byState.failed).toBe(1);
      await store.checkOut('D1', at(6));
      const out = await store.getStatus('D1');
      expect(out?.facts).toMatchObject({ enrolled: false, checkedOutAt: at(6).toISOString() });
      expect(out?.profiles?.state).toBe('failed');
      expect((await counts()).byState).toMatchObject({ failed: 0, unenrolled: 1 });
      await enroll('D1', 7);
      expect((await counts()).byState).toMatchObject({ failed: 1, unenrolled: 0 });
    });

    it('a DeviceInformation result updates the facts in the same step; other results leave the row alone', async () => {
      await enroll('D1');
      await store.enqueue(['D1'], { uuid: 'di', requestType: 'DeviceInformation', payload: Buffer.from('x') }, at(3));
      const reported = { DeviceInformation: { at: at(4).toISOString(), commandUUID: 'di', value: { DeviceName: 'Renamed', OSVersion: '26.0' } } };
      await store.recordResult('D1', 'di', { status: 'Acknowledged', at: at(4).toISOString(), raw: Buffer.from('r') }, reported);
      expect((await store.getStatus('D1'))?.facts).toMatchObject({ deviceName: 'Renamed', osVersion: '26.0', serialNumber: 'SN-D1' });
    });

    it('putStatus replaces the verdict of a known device and ignores an unknown one', async () => {
      await enroll('D1');
      await reconcile('D1', verdict('pending', ['macs'], 'pending'));
      await store.putStatus('D1', verdict('in-sync', ['macs', 'all']));
      await store.putStatus('nobody', verdict('in-sync', []));
      expect(await store.getStatus('nobody')).toBeUndefined();
      expect((await store.getStatus('D1'))?.profiles?.blueprints).toEqual(['macs', 'all']);
      expect(await counts()).toMatchObject({ total: 1, byState: { 'in-sync': 1, pending: 0 } });
    });

    it('counts per blueprint: matched, selected by state, per profile verified and failed (unenrolled devices count for neither)', async () => {
      for (const id of ['A', 'B', 'C', 'D']) await enroll(id);
      await reconcile('A', verdict('in-sync', ['macs', 'all']));
      await reconcile('B', verdict('failed', ['macs'], 'failed'));
      await reconcile('C', verdict('pending', ['all'], 'pending'));
      await reconcile('D', verdict('in-sync', ['macs']));
      await store.checkOut('D', at(6));
      const c = await store.blueprintCounts(['macs', 'all', 'none']);
      expect(c.macs).toMatchObject({ matched: 3, selected: 3, byState: { 'in-sync': 1, failed: 1, unenrolled: 1 } });
      expect(c.macs!.verified['p.macs']).toBe(1);
      expect(c.macs!.failed['p.macs']).toBe(1);
      expect(c.all).toMatchObject({ matched: 2, selected: 2, byState: { 'in-sync': 1, pending: 1 } });
      expect(c.all!.verified['p.all']).toBe(1);
      expect(c.all!.failed['p.all'] ?? 0).toBe(0);
      expect(c['suspended-one']).toBeUndefined();
      expect(c.none).toMatchObject({ matched: 0, selected: 0, byState: Object.fromEntries(DEVICE_STATES.map((s) => [s, 0])) });
    });

    it('filters by state and blueprint and pages in id order without gaps or repeats', async () => {
      const ids = Array.from({ length: 25 }, (_, i) => `D${String(i).padStart(2, '0')}`);
      for (const id of [...ids].reverse()) await enroll(id);
      for (const [i, id] of ids.entries()) await reconcile(id, i % 3 === 0 ? verdict('failed', ['macs'], 'failed') : verdict('in-sync', ['macs']));
      const q = { now: at(10), staleDays: 7 };
      const seen: string[] = [];
      let after: string | undefined;
      for (;;) {
        const page = await store.queryStatus({ ...q, after, limit: 4 });
        expect(page.total).toBe(25);
        if (!page.devices.length) break;
        seen.push(...page.devices.map((d) => d.id));
        after = page.devices[page.devices.length - 1]!.id;
      }
      expect(seen).toEqual(ids);
      const failed = await store.queryStatus({ ...q, state: 'failed', limit: 3 });
      expect(failed.total).toBe(9);
      expect(failed.devices.map((d) => d.id)).toEqual(['D00', 'D03', 'D06']);
      const next = await store.queryStatus({ ...q, state: 'failed', after: 'D06', limit: 100 });
      expect(next.devices.map((d) => d.id)).toEqual(['D09', 'D12', 'D15', 'D18', 'D21', 'D24']);
      const offset = await store.queryStatus({ ...q, state: 'failed', offset: 7, limit: 5 });
      expect(offset.devices.map((d) => d.id)).toEqual(['D21', 'D24']);
      expect((await store.queryStatus({ ...q, blueprint: 'macs', state: 'in-sync', limit: 1 })).total).toBe(16);
      expect((await store.queryStatus({ ...q, blueprint: 'other', limit: 10 })).total).toBe(0);
      expect(failed.devices[0]!.profiles?.problems).toEqual([{ identifier: 'p.macs', phase: 'failed', message: 'refused' }]);
    });

    it('stale follows the last contact on any channel and the number of days asked for', async () => {
      await enroll('OLD', 1);
      await enroll('NEW', 1);
      await store.touch('NEW:501', at(9 * DAY_S));
      const c = await store.fleetCounts({ now: at(10 * DAY_S), staleDays: 7 });
      expect(c.stale).toBe(1);
      expect((await store.fleetCounts({ now: at(10 * DAY_S), staleDays: 30 })).stale).toBe(0);
      const stale = await store.queryStatus({ state: 'stale', now: at(10 * DAY_S), staleDays: 7, limit: 10 });
      expect(stale.devices.map((d) => d.id)).toEqual(['OLD']);
      expect((await store.getStatus('NEW'))?.lastSeenAt).toBe(at(9 * DAY_S).toISOString());
    });

    it('a contact shows in the device row at once, whichever channel made it', async () => {
      await enroll('T', 1);
      await store.touch('T:501', at(5 * DAY_S));
      expect((await store.getStatus('T'))?.lastSeenAt).toBe(at(5 * DAY_S).toISOString());
      await store.touch('T', at(6 * DAY_S));
      expect((await store.getStatus('T'))?.lastSeenAt).toBe(at(6 * DAY_S).toISOString());
    });

    it('counts equal a recount of the rows after a random sequence of check-ins, check-outs and verdicts', async () => {
      const rand = lcg(13);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
      const BPS = ['macs', 'all', 'lab'];
      const IDS = ['R1', 'R2', 'R3', 'R4', 'R5', 'R6'];
      for (let i = 0; i < 80; i++) {
        const id = pick(IDS);
        const s = 10 + i;
        const op = pick(['authenticate', 'enroll', 'checkOut', 'verdict', 'verdict', 'putStatus'] as const);
        const bps = BPS.filter(() => rand() < 0.5);
        const p: StatusProfiles = {
          ...verdict(pick(['in-sync', 'pending', 'drifted', 'failed'] as const), bps, pick(['verified', 'pending', 'failed'] as const)),
          // Some devices have a profile of their own, in another phase than their blueprints'.
          ...(rand() < 0.3 ? { phases: { ...Object.fromEntries(bps.map((b) => [`p.${b}`, 'failed' as const])), 'p.extra': 'verified' as const } } : {}),
        };
        if (op === 'authenticate') await store.authenticate(id, facts(id), identity(`cert-${id}-${i % 2}`), at(s));
        else if ((await store.getStatus(id)) === undefined) await enroll(id, s);
        else if (op === 'enroll') await store.tokenUpdate(channel(id, s));
        else if (op === 'checkOut') await store.checkOut(id, at(s));
        else if (op === 'verdict') await reconcile(id, p);
        else await store.putStatus(id, p);
      }
      const now = at(100);
      const rows = (await store.queryStatus({ now, staleDays: 7, limit: 1000 })).devices;
      expect(rows.length).toBeGreaterThan(0);
      const stateOf = (r: (typeof rows)[number]) => (r.facts.enrolled ? (r.profiles?.state ?? 'in-sync') : 'unenrolled');
      const c = await store.fleetCounts({ now, staleDays: 7 });
      expect(c.total).toBe(rows.length);
      expect(c.enrolled).toBe(rows.filter((r) => r.facts.enrolled).length);
      for (const st of DEVICE_STATES) expect(c.byState[st], st).toBe(rows.filter((r) => stateOf(r) === st).length);
      const bc = await store.blueprintCounts(BPS);
      for (const b of BPS) {
        const selected = rows.filter((r) => r.profiles?.blueprints.includes(b));
        expect(bc[b]!.matched, b).toBe(rows.filter((r) => r.profiles?.matched.includes(b)).length);
        for (const st of DEVICE_STATES) expect(bc[b]!.byState[st], `${b} ${st}`).toBe(selected.filter((r) => stateOf(r) === st).length);
        const reached = selected.filter((r) => r.facts.enrolled);
        for (const profile of [...BPS.map((x) => `p.${x}`), 'p.extra']) {
          expect(bc[b]!.verified[profile] ?? 0, `${b} ${profile}`).toBe(reached.filter((r) => r.profiles!.phases[profile] === 'verified').length);
          expect(bc[b]!.failed[profile] ?? 0, `${b} ${profile}`).toBe(reached.filter((r) => r.profiles!.phases[profile] === 'failed').length);
        }
        for (const st of DEVICE_STATES) {
          const page = await store.queryStatus({ now, staleDays: 7, state: st, blueprint: b, limit: 1000 });
          expect(page.total).toBe(bc[b]!.byState[st]);
          expect(page.devices.map((r) => r.id)).toEqual(selected.filter((r) => stateOf(r) === st).map((r) => r.id));
        }
      }
    });

    it('keeps rows, counts and last contact across reopen', async (t) => {
      if (!h.reopen) return t.skip();
      await enroll('A');
      await enroll('B');
      await reconcile('A', verdict('failed', ['macs'], 'failed'));
      await store.touch('B', at(3 * DAY_S));
      store = await h.reopen();
      expect((await store.getStatus('A'))?.profiles).toEqual(verdict('failed', ['macs'], 'failed'));
      expect(await store.fleetCounts({ now: at(9 * DAY_S), staleDays: 7 })).toMatchObject({ total: 2, stale: 1, byState: { failed: 1, 'in-sync': 1 } });
      expect((await store.blueprintCounts(['macs'])).macs!.failed['p.macs']).toBe(1);
      expect((await store.queryStatus({ now: at(9 * DAY_S), staleDays: 7, limit: 10 })).devices.map((d) => d.id)).toEqual(['A', 'B']);
    });
  });
}
