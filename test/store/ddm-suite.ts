/**
 * Backend-independent behaviour of the DDM store role (src/store/ddm.ts). Every backend runs it:
 *   ddmStoreSuite('MyStore', async () => ({ store, reopen, cleanup }))
 */
import { describe, expect, it } from 'vitest';
import { openEach } from './suite.js';
import type { DdmStatus, DeclarationSet } from '../../src/ddm/model.js';
import type { DdmStore } from '../../src/store/ddm.js';
import type { WorkStore } from '../../src/store/types.js';

export interface DdmStoreHarness {
  store: DdmStore;
  /** Close and open the same data again; persistence is not checked without it. */
  reopen?: () => Promise<DdmStore>;
  cleanup: () => Promise<void>;
  /** The main store the DDM store writes its work rows into (as the server wires them). */
  work: () => WorkStore;
}

/** A declaration set of one passcode declaration (ServerToken `st-<minLength>`). */
export const set = (token: string, minLength: number): DeclarationSet => ({
  declarationsToken: token,
  revision: 'rev-1',
  at: '2026-01-01T00:00:00.000Z',
  entries: {
    'com.example.passcode': {
      class: 'configuration',
      source: 'passcode',
      blueprints: ['office'],
      templateToken: `st-${minLength}`,
      declaration: {
        Type: 'com.apple.configuration.passcode.settings',
        Identifier: 'com.example.passcode',
        ServerToken: `st-${minLength}`,
        Payload: { MinimumLength: minLength },
      },
    },
  },
});
/** A status that reports `set(_, 8)`'s declaration valid and active. */
export const status: DdmStatus = {
  declarations: { 'com.example.passcode': { class: 'configuration', serverToken: 'st-8', active: true, valid: 'valid' } },
  items: { 'device.operating-system.version': '15.1' },
  at: '2026-01-01T00:00:01.000Z',
};

export function ddmStoreSuite(name: string, open: () => Promise<DdmStoreHarness>): void {
  describe(`DdmStore: ${name}`, () => {
    let h: DdmStoreHarness;
    let store: DdmStore;
    openEach(open, (opened) => {
      h = opened;
      store = opened.store;
    });

    it('keeps the current and the given set apart, per enrollment and channel', async () => {
      await store.putDeclarationSet('DEV1', 'current', set('t2', 10));
      await store.putDeclarationSet('DEV1', 'given', set('t1', 8));
      await store.putDeclarationSet('DEV1:USER1', 'current', set('u1', 4));
      expect((await store.getDeclarationSet('DEV1', 'current'))!.declarationsToken).toBe('t2');
      expect((await store.getDeclarationSet('DEV1', 'given'))!.entries['com.example.passcode']!.declaration.Payload).toEqual({ MinimumLength: 8 });
      expect((await store.getDeclarationSet('DEV1:USER1', 'current'))!.declarationsToken).toBe('u1');
      expect(await store.getDeclarationSet('DEV1:USER1', 'given')).toBeUndefined();
      expect(await store.getDeclarationSet('DEV2', 'current')).toBeUndefined();
    });

    it('a returned set is a copy: changing it changes nothing stored', async () => {
      await store.putDeclarationSet('DEV1', 'current', set('t1', 8));
      const got = (await store.getDeclarationSet('DEV1', 'current'))!;
      got.declarationsToken = 'mutated';
      expect((await store.getDeclarationSet('DEV1', 'current'))!.declarationsToken).toBe('t1');
    });

    it('stores status, resets an enrollment without touching another, lists enrollments', async () => {
      await store.putDdmStatus('DEV1', status);
      await store.putDeclarationSet('DEV1', 'current', set('t1', 8));
      await store.putDeclarationSet('DEV2', 'current', set('t9', 9));
      expect(await store.getDdmStatus('DEV1')).toEqual(status);
      expect(await store.listDdmEnrollments()).toEqual(['DEV1', 'DEV2']);
      await store.resetDdm('DEV1');
      expect(await store.getDdmStatus('DEV1')).toBeUndefined();
      expect(await store.getDeclarationSet('DEV1', 'current')).toBeUndefined();
      expect((await store.getDeclarationSet('DEV2', 'current'))!.declarationsToken).toBe('t9');
      expect(await store.listDdmEnrollments()).toEqual(['DEV2']);
    });

    it("a status report that is a cause to reconcile writes its device's work row with it (a user channel's too); others write none", async () => {
      await store.putDdmStatus('DEV1', status);
      expect(await h.work().countWork()).toBe(0);
      await store.putDdmStatus('DEV1:USER1', status, { reconcile: true });
      expect(await store.getDdmStatus('DEV1:USER1')).toEqual(status);
      const work = h.work();
      const [c] = await work.claimWork({ holder: 'A', limit: 10, leaseMs: 1000 });
      expect(c?.deviceId).toBe('DEV1');
      expect(await work.finishWork(c!)).toBe(true);
      await store.putDdmStatus('DEV2', status, { reconcile: false });
      expect(await work.countWork()).toBe(0);
    });

    it('survives a reopen', async () => {
      if (!h.reopen) return;
      await store.putDeclarationSet('DEV1', 'given', set('t1', 8));
      await store.putDdmStatus('DEV1', status);
      store = await h.reopen();
      expect((await store.getDeclarationSet('DEV1', 'given'))!.declarationsToken).toBe('t1');
      expect(await store.getDdmStatus('DEV1')).toEqual(status);
    });
  });
}
