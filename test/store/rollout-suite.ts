/**
 * Backend-independent behaviour of the rollout store role (src/store/rollouts.ts). Every backend runs it:
 *   rolloutStoreSuite('MyStore', async () => ({ store, reopen, cleanup }))
 */
import { describe, expect, it } from 'vitest';
import { openEach } from './suite.js';
import type { RolloutState, RolloutStore } from '../../src/store/rollouts.js';

export interface RolloutStoreHarness {
  store: RolloutStore;
  /** Close and open the same data again; persistence is not checked without it. */
  reopen?: () => Promise<RolloutStore>;
  cleanup: () => Promise<void>;
}

const state = (blueprint: string, step: number, extra: Partial<RolloutState> = {}): RolloutState => ({
  blueprint,
  contentKey: `key-${blueprint}`,
  revision: 'a'.repeat(40),
  step,
  startedAt: '2026-01-01T00:00:00.000Z',
  stepStartedAt: '2026-01-01T01:00:00.000Z',
  acceptedFailures: 0,
  ...extra,
});

export function rolloutStoreSuite(name: string, open: () => Promise<RolloutStoreHarness>): void {
  describe(`RolloutStore: ${name}`, () => {
    let h: RolloutStoreHarness;
    let store: RolloutStore;
    openEach(open, (opened) => {
      h = opened;
      store = opened.store;
    });

    it('keeps one state per blueprint: put replaces, delete forgets, list has them all', async () => {
      expect(await store.listRollouts()).toEqual([]);
      expect(await store.getRollout('macs')).toBeUndefined();
      await store.putRollout(state('macs', 0));
      await store.putRollout(state('ipads', 1));
      await store.putRollout(state('macs', 2, { halted: { at: '2026-01-01T02:00:00.000Z', reason: '3 of 5 failed' } }));
      expect(await store.getRollout('macs')).toEqual(state('macs', 2, { halted: { at: '2026-01-01T02:00:00.000Z', reason: '3 of 5 failed' } }));
      expect((await store.listRollouts()).map((r) => [r.blueprint, r.step]).sort()).toEqual([
        ['ipads', 1],
        ['macs', 2],
      ]);
      await store.deleteRollout('ipads');
      await store.deleteRollout('never-there');
      expect((await store.listRollouts()).map((r) => r.blueprint)).toEqual(['macs']);
    });

    it('values are copies: changing what was put or got changes nothing stored', async () => {
      const s = state('macs', 0);
      await store.putRollout(s);
      s.step = 9;
      const got = (await store.getRollout('macs'))!;
      expect(got.step).toBe(0);
      got.step = 7;
      expect((await store.getRollout('macs'))!.step).toBe(0);
    });

    it('survives a reopen', async () => {
      if (!h.reopen) return;
      await store.putRollout(state('macs', 1, { completedAt: '2026-01-01T03:00:00.000Z', acceptedFailures: 2 }));
      store = await h.reopen();
      expect(await store.getRollout('macs')).toEqual(state('macs', 1, { completedAt: '2026-01-01T03:00:00.000Z', acceptedFailures: 2 }));
    });
  });
}
