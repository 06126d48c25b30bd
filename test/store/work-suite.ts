/**
 * Backend-independent behaviour of `WorkStore` (src/store/roles/work.ts): durable per-device
 * reconcile work. Every backend runs it as `workSuite('MyStore', open)` with the harness of `test/store/suite.ts`.
 */
import { describe, expect, it } from 'vitest';
import type { Store } from '../../src/store/types.js';
import { openEach, type StoreHarness } from './suite.js';

const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const at = (ms: number): Date => new Date(T0 + ms);
const identity = (h: string) => ({ certHash: h, issuerHash: 'i', subject: `CN=${h}`, notAfter: '2027-01-01T00:00:00.000Z' });

export function workSuite(name: string, open: () => Promise<StoreHarness>): void {
  describe(`${name}: work`, () => {
    let h: StoreHarness;
    let store: Store;
    openEach(open, (opened) => {
      h = opened;
      store = opened.store;
    });

    it('a due row is claimed once while its claim lives; an expired claim is reclaimed; done removes it', async () => {
      await store.addWork('D1', at(0));
      await store.addWork('D2', at(100));
      await store.addWork('D3', at(10_000));
      // D3 is not due yet; earliest due first.
      const a = await store.claimWork({ holder: 'A', limit: 10, leaseMs: 1000, now: at(200) });
      expect(a.map((c) => c.deviceId)).toEqual(['D1', 'D2']);
      expect(await store.claimWork({ holder: 'B', limit: 10, leaseMs: 1000, now: at(300) })).toEqual([]);
      expect(await store.finishWork(a[0]!)).toBe(true);
      // A died holding D2: once its claim ran out, B gets it.
      const b = await store.claimWork({ holder: 'B', limit: 10, leaseMs: 1000, now: at(1200) });
      expect(b.map((c) => c.deviceId)).toEqual(['D2']);
      expect(await store.finishWork(b[0]!)).toBe(true);
      expect(await store.countWork()).toBe(1);
      expect((await store.claimWork({ holder: 'B', limit: 10, leaseMs: 1000, now: at(10_000) })).map((c) => c.deviceId)).toEqual(['D3']);
    });

    it('a cause written after the claim keeps the row for the next claim; a row keeps its earliest due time', async () => {
      await store.addWork('D1', at(500));
      await store.addWork('D1', at(0));
      await store.addWork('D1', at(900));
      expect(await store.getWork('D1')).toEqual({ dueAt: at(0) });
      expect(await store.getWork('D2')).toBeUndefined();
      const [c] = await store.claimWork({ holder: 'A', limit: 1, leaseMs: 60_000, now: at(0) });
      expect(c?.deviceId).toBe('D1');
      await store.addWork('D1', at(10));
      expect(await store.finishWork(c!)).toBe(false);
      // Free again at once, not after A's lease.
      const [again] = await store.claimWork({ holder: 'B', limit: 1, leaseMs: 60_000, now: at(20) });
      expect(again?.deviceId).toBe('D1');
      expect(await store.finishWork(again!)).toBe(true);
      expect(await store.countWork()).toBe(0);
    });

    it('a device answer on the device channel writes its row with the result, and the row outlives a reopen', async () => {
      await store.authenticate('D1', { UDID: 'D1', Topic: 't' }, identity('cert-D1'), at(0));
      await store.tokenUpdate({ id: 'D1', deviceId: 'D1', type: 'device', active: true, createdAt: at(1).toISOString(), updatedAt: at(1).toISOString() });
      await store.enqueue(['D1'], { uuid: 'c1', requestType: 'ProfileList', payload: Buffer.from('<plist/>') }, at(2));
      await store.enqueue(['D1'], { uuid: 'c2', requestType: 'ProfileList', payload: Buffer.from('<plist/>') }, at(2));
      expect(await store.countWork()).toBe(0);
      // NotNow is no answer yet: nothing to reconcile.
      await store.recordResult('D1', 'c1', { status: 'NotNow', at: at(3).toISOString(), raw: Buffer.from('r') });
      expect(await store.countWork()).toBe(0);
      await store.recordResult('D1', 'c1', { status: 'Acknowledged', at: at(4).toISOString(), raw: Buffer.from('r') });
      await store.recordResult('D1', 'c2', { status: 'Error', at: at(5).toISOString(), raw: Buffer.from('r') });
      expect(await store.countWork()).toBe(1);
      if (!h.reopen) throw new Error('the work suite needs a harness that reopens');
      store = await h.reopen();
      const [c] = await store.claimWork({ holder: 'A', limit: 10, leaseMs: 1000, now: at(10_000) });
      expect(c?.deviceId).toBe('D1');
      expect(await store.finishWork(c!)).toBe(true);
      expect(await store.countWork()).toBe(0);
    });

    it("a user channel's activation writes its device's row with the enrollment, and the row outlives a reopen", async () => {
      const channel = (id: string, type: 'device' | 'user', t: number) => ({
        id,
        deviceId: 'D1',
        type,
        ...(type === 'user' ? { userId: 'U1' } : {}),
        active: true,
        createdAt: at(t).toISOString(),
        updatedAt: at(t).toISOString(),
      });
      await store.authenticate('D1', { UDID: 'D1', Topic: 't' }, identity('cert-D1'), at(0));
      // The device channel's enrollment queues inventory (its answers write rows): no row of its own.
      await store.tokenUpdate(channel('D1', 'device', 1));
      expect(await store.countWork()).toBe(0);
      await store.tokenUpdate(channel('D1:U1', 'user', 2));
      expect(await store.countWork()).toBe(1);
      if (!h.reopen) throw new Error('the work suite needs a harness that reopens');
      store = await h.reopen();
      const [c] = await store.claimWork({ holder: 'A', limit: 10, leaseMs: 1000, now: new Date() });
      expect(c?.deviceId).toBe('D1');
      expect(await store.finishWork(c!)).toBe(true);
      // A TokenUpdate of a channel already active (a new push token) is no enrollment: no row.
      await store.tokenUpdate(channel('D1:U1', 'user', 3));
      expect(await store.countWork()).toBe(0);
      // Checked out and enrolled again: a row again.
      await store.checkOut('D1:U1', at(4));
      await store.tokenUpdate(channel('D1:U1', 'user', 5));
      expect(await store.countWork()).toBe(1);
    });

    it('refuses a claim with no lease and ids outside the domain', async () => {
      await expect(store.claimWork({ holder: 'A', limit: 1, leaseMs: 0 })).rejects.toThrow(/lease/);
      await expect(store.addWork('')).rejects.toThrow();
    });
  });
}
