/**
 * Backend-independent behaviour of `MaterialStore` (src/store/material.ts): every backend runs it
 * as `materialSuite('MyStore', open)` with the harness of `test/store/suite.ts`.
 */
import { describe, expect, it } from 'vitest';
import { openEach } from './suite.js';
import { Malformed } from '../../src/errors.js';
import type { MaterialStore } from '../../src/store/material.js';

/** The harness of `test/store/suite.ts`, for anything that implements the role. */
export interface MaterialHarness {
  store: MaterialStore;
  reopen?: () => Promise<MaterialStore>;
  cleanup: () => Promise<void>;
}

const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const at = (s: number): Date => new Date(T0 + s * 1000);
const bytes = (s: string) => Buffer.from(s, 'utf8');

/** `persistent`: the backend keeps data across reopen (the harness has `reopen`). */
export function materialSuite(name: string, open: () => Promise<MaterialHarness>, opts: { persistent: boolean }): void {
  describe(`${name}: material`, () => {
    let h: MaterialHarness;
    let store: MaterialStore;
    openEach(open, (opened) => {
      h = opened;
      store = opened.store;
    });

    it('keeps bytes per kind and key; kinds do not share keys', async () => {
      const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      expect(await store.putMaterial('blob', 'ca', all)).toBe(true);
      await store.putMaterial('challenge', 'ca', bytes('other'));
      expect(await store.getMaterial('blob', 'ca')).toEqual(all);
      expect(await store.getMaterial('challenge', 'ca')).toEqual(bytes('other'));
      expect(await store.getMaterial('issuance', 'ca')).toBeUndefined();
      await store.deleteMaterial('blob', 'ca');
      expect(await store.getMaterial('blob', 'ca')).toBeUndefined();
      expect(await store.getMaterial('challenge', 'ca')).toEqual(bytes('other'));
    });

    it('ifAbsent: the first writer wins, an expired value counts as absent', async () => {
      expect(await store.putMaterial('blob', 'ca', bytes('first'), { ifAbsent: true })).toBe(true);
      expect(await store.putMaterial('blob', 'ca', bytes('second'), { ifAbsent: true })).toBe(false);
      expect(await store.getMaterial('blob', 'ca')).toEqual(bytes('first'));
      await store.putMaterial('challenge', 'c', bytes('old'), { expiresAt: new Date(Date.now() - 1000) });
      expect(await store.putMaterial('challenge', 'c', bytes('new'), { ifAbsent: true })).toBe(true);
      expect(await store.getMaterial('challenge', 'c')).toEqual(bytes('new'));
    });

    it('lists the live values of a kind in key order, page by page, with their expiry', async () => {
      const keys = Array.from({ length: 7 }, (_, i) => `k${i}`);
      for (const k of [...keys].reverse()) await store.putMaterial('issuance', k, bytes(k), k === 'k3' ? { expiresAt: at(100) } : {});
      await store.putMaterial('issuance', 'gone', bytes('x'), { expiresAt: at(1) });
      await store.putMaterial('challenge', 'k0', bytes('other kind'));
      const first = await store.listMaterial('issuance', { limit: 4 }, at(10));
      expect(first.items.map((i) => i.key)).toEqual(['k0', 'k1', 'k2', 'k3']);
      expect(first.items[3]).toEqual({ key: 'k3', value: bytes('k3'), expiresAt: at(100) });
      expect(first.items[0]).toEqual({ key: 'k0', value: bytes('k0') });
      const rest = await store.listMaterial('issuance', { cursor: first.next!, limit: 4 }, at(10));
      expect(rest.items.map((i) => i.key)).toEqual(['k4', 'k5', 'k6']);
      expect(rest.next).toBeUndefined();
      expect((await store.listMaterial('issuance', {}, at(200))).items.map((i) => i.key)).toEqual(['k0', 'k1', 'k2', 'k4', 'k5', 'k6']);
      await expect(store.listMaterial('nope' as never)).rejects.toThrow(Malformed);
    });

    it('a take hands the value out exactly once, also to 20 takers at the same time', async () => {
      await store.putMaterial('challenge', 'h1', bytes('entry'), { expiresAt: at(100) });
      const takes = await Promise.all(Array.from({ length: 20 }, () => store.takeMaterial('challenge', 'h1', at(1))));
      expect(takes.filter((t) => t !== undefined)).toEqual([bytes('entry')]);
      expect(await store.getMaterial('challenge', 'h1', at(1))).toBeUndefined();
      expect(await store.takeMaterial('challenge', 'never', at(1))).toBeUndefined();
    });

    it('an expired value is neither read nor taken, and pruning removes only expired ones of its kind', async () => {
      await store.putMaterial('challenge', 'old', bytes('a'), { expiresAt: at(10) });
      await store.putMaterial('challenge', 'new', bytes('b'), { expiresAt: at(1000) });
      await store.putMaterial('challenge', 'forever', bytes('c'));
      await store.putMaterial('scep-transaction', 'tx', bytes('d'), { expiresAt: at(10) });
      expect(await store.getMaterial('challenge', 'old', at(5))).toEqual(bytes('a'));
      expect(await store.getMaterial('challenge', 'old', at(10))).toBeUndefined();
      expect(await store.takeMaterial('challenge', 'old', at(11))).toBeUndefined();
      await store.putMaterial('challenge', 'old', bytes('a'), { expiresAt: at(10) });
      expect(await store.pruneMaterial('challenge', at(20))).toBe(1);
      expect(await store.getMaterial('challenge', 'new', at(20))).toEqual(bytes('b'));
      expect(await store.getMaterial('challenge', 'forever', at(20))).toEqual(bytes('c'));
      expect(await store.getMaterial('scep-transaction', 'tx', at(5))).toEqual(bytes('d'));
    });

    it('refuses keys outside the domain (empty, control characters, too long) as Malformed', async () => {
      for (const key of ['', 'a\x00b', 'line\nbreak', 'x'.repeat(513), 'é']) {
        await expect(store.putMaterial('blob', key, bytes('v'))).rejects.toBeInstanceOf(Malformed);
      }
    });

    if (opts.persistent)
      it('keeps material across reopen', async () => {
        await store.putMaterial('issuance', 'ab'.repeat(32), bytes('{"serial":"X"}'));
        store = await h.reopen!();
        expect(await store.getMaterial('issuance', 'ab'.repeat(32))).toEqual(bytes('{"serial":"X"}'));
      });
  });
}
