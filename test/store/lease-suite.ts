/**
 * Backend-independent behaviour of `LeaseStore` (src/store/lease.ts): every backend runs it as
 * `leaseSuite('MyStore', open)` with the harness of `test/store/suite.ts`.
 */
import { describe, expect, it } from 'vitest';
import { openEach } from './suite.js';
import type { LeaseStore } from '../../src/store/lease.js';

const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const at = (ms: number): Date => new Date(T0 + ms);

export function leaseSuite(name: string, open: () => Promise<{ store: LeaseStore; cleanup: () => Promise<void> }>): void {
  describe(`${name}: lease`, () => {
    let store: LeaseStore;
    openEach(open, (opened) => (store = opened.store));

    it('one holder at a time; a renewal keeps the token; after expiry the next holder gets a larger one', async () => {
      const a = await store.acquireLease('leader', 'A', 1000, at(0));
      expect(a).toMatchObject({ name: 'leader', holder: 'A', token: 1 });
      expect(await store.acquireLease('leader', 'B', 1000, at(500))).toBeUndefined();
      expect(await store.acquireLease('leader', 'A', 1000, at(900))).toMatchObject({ holder: 'A', token: 1, expiresAt: at(1900) });
      expect(await store.acquireLease('leader', 'B', 1000, at(1899))).toBeUndefined();
      expect((await store.getLease('leader', at(1899)))?.holder).toBe('A');
      expect(await store.getLease('leader', at(1900))).toBeUndefined();
      expect(await store.acquireLease('leader', 'B', 1000, at(1900))).toMatchObject({ holder: 'B', token: 2 });
      // The old holder coming back is refused, and does not get its old token back later either.
      expect(await store.acquireLease('leader', 'A', 1000, at(2000))).toBeUndefined();
      expect(await store.acquireLease('leader', 'A', 1000, at(5000))).toMatchObject({ holder: 'A', token: 3 });
      expect(await store.acquireLease('other', 'B', 1000, at(5000))).toMatchObject({ holder: 'B', token: 1 });
    });

    it('a release lets the next holder in at once; a release by a non-holder changes nothing', async () => {
      await store.acquireLease('leader', 'A', 60_000, at(0));
      await store.releaseLease('leader', 'B');
      expect(await store.acquireLease('leader', 'B', 60_000, at(1))).toBeUndefined();
      await store.releaseLease('leader', 'A');
      expect(await store.getLease('leader', at(2))).toBeUndefined();
      expect(await store.acquireLease('leader', 'B', 60_000, at(2))).toMatchObject({ holder: 'B', token: 2 });
    });

    it('of many replicas asking at once, exactly one is granted', async () => {
      const grants = await Promise.all(Array.from({ length: 20 }, (_, i) => store.acquireLease('leader', `R${i}`, 60_000, at(0))));
      expect(grants.filter(Boolean)).toHaveLength(1);
    });

    it('refuses a lease without a time to live', async () => {
      await expect(store.acquireLease('leader', 'A', 0, at(0))).rejects.toThrow(RangeError);
    });
  });
}
