/**
 * Backend-independent behaviour of the ABM store role (src/store/abm.ts). Every backend runs it:
 *   abmStoreSuite('MyStore', async () => ({ store, reopen, cleanup }))
 */
import { describe, expect, it } from 'vitest';
import { openEach } from './suite.js';
import type { AbmDeviceRecord, AbmStore } from '../../src/store/abm.js';
import { allPages } from '../../src/store/paging.js';

export interface AbmStoreHarness {
  store: AbmStore;
  /** Close and open the same data again; persistence is not checked without it. */
  reopen?: () => Promise<AbmStore>;
  cleanup: () => Promise<void>;
}

const device = (serial: string, token = 'main', extra: Partial<AbmDeviceRecord> = {}): AbmDeviceRecord => ({
  serial_number: serial,
  model: 'MacBook Air',
  os: 'OSX',
  device_family: 'Mac',
  profile_status: 'empty',
  token,
  syncedAt: '2026-01-01T00:00:00.000Z',
  ...extra,
});

export function abmStoreSuite(name: string, open: () => Promise<AbmStoreHarness>): void {
  describe(`AbmStore: ${name}`, () => {
    let h: AbmStoreHarness;
    let store: AbmStore;
    openEach(open, (opened) => {
      h = opened;
      store = opened.store;
    });

    it('applies a page: upserts replace, deletes forget, the cursor is kept per token', async () => {
      expect(await store.getAbmCursor('main')).toBeUndefined();
      await store.applyAbmPage('main', { upserts: [device('C02A'), device('C02B')], deletes: [], cursor: 'cur-1' });
      await store.applyAbmPage('other', { upserts: [device('F9Z1', 'other')], deletes: [] });
      expect(await store.getAbmCursor('main')).toBe('cur-1');
      // A page without a cursor (the middle of a full fetch) keeps the token's cursor as it was.
      expect(await store.getAbmCursor('other')).toBeUndefined();
      await store.applyAbmPage('main', {
        upserts: [device('C02A', 'main', { profile_status: 'assigned', profile_uuid: 'P1' })],
        deletes: ['C02B'],
        cursor: 'cur-2',
      });
      expect(await store.getAbmCursor('main')).toBe('cur-2');
      expect(await store.getAbmDevice('C02A')).toMatchObject({ profile_status: 'assigned', profile_uuid: 'P1' });
      expect(await store.getAbmDevice('C02B')).toBeUndefined();
      expect((await store.listAbmDevices()).items.map((d) => d.serial_number)).toEqual(['C02A', 'F9Z1']);
      await store.resetAbmCursor('main');
      expect(await store.getAbmCursor('main')).toBeUndefined();
      expect(await store.getAbmDevice('C02A')).toBeDefined();
    });

    it('a page naming a serial twice keeps the last; an upserted and deleted serial is gone', async () => {
      await store.applyAbmPage('main', {
        upserts: [device('C02A', 'main', { color: 'red' }), device('C02A', 'main', { color: 'blue' }), device('C02B')],
        deletes: ['C02B'],
      });
      expect((await store.getAbmDevice('C02A'))?.color).toBe('blue');
      expect(await store.getAbmDevice('C02B')).toBeUndefined();
    });

    it('lists devices in serial order, page by page, each once', async () => {
      const serials = Array.from({ length: 25 }, (_, i) => `SN${String(i).padStart(3, '0')}`);
      await store.applyAbmPage('main', { upserts: [...serials].reverse().map((s) => device(s)), deletes: [] });
      const first = await store.listAbmDevices({ limit: 10 });
      expect(first.items.map((d) => d.serial_number)).toEqual(serials.slice(0, 10));
      expect(first.next).toBeDefined();
      expect((await allPages((p) => store.listAbmDevices(p), 7)).map((d) => d.serial_number)).toEqual(serials);
      const last = await store.listAbmDevices({ cursor: serials[19], limit: 10 });
      expect(last.items.map((d) => d.serial_number)).toEqual(serials.slice(20));
      expect(last.next).toBeUndefined();
    });

    it('values are copies: changing what was put or got changes nothing stored', async () => {
      const d = device('C02A');
      await store.applyAbmPage('main', { upserts: [d], deletes: [] });
      d.model = 'changed after put';
      const got = (await store.getAbmDevice('C02A'))!;
      expect(got.model).toBe('MacBook Air');
      got.model = 'changed after get';
      expect((await store.getAbmDevice('C02A'))!.model).toBe('MacBook Air');
    });

    it('keeps the defined enrollment profile per token and name, and every uuid Orchard defined', async () => {
      expect(await store.getAbmProfile('main', 'staff')).toBeUndefined();
      expect(await store.listAbmProfileUuids()).toEqual([]);
      await store.putAbmProfile('main', 'staff', { digest: 'd1', uuid: 'UUID-1' });
      await store.putAbmProfile('other', 'staff', { digest: 'd1', uuid: 'UUID-2' });
      expect(await store.getAbmProfile('main', 'staff')).toEqual({ digest: 'd1', uuid: 'UUID-1' });
      expect(await store.getAbmProfile('main', 'kiosk')).toBeUndefined();
      // Redefined: the name has the new one, the old uuid stays Orchard's.
      await store.putAbmProfile('main', 'staff', { digest: 'd2', uuid: 'UUID-3' });
      expect(await store.getAbmProfile('main', 'staff')).toEqual({ digest: 'd2', uuid: 'UUID-3' });
      expect(await store.getAbmProfile('other', 'staff')).toEqual({ digest: 'd1', uuid: 'UUID-2' });
      expect(await store.listAbmProfileUuids()).toEqual(['UUID-1', 'UUID-2', 'UUID-3']);
      // Profiles are not devices.
      expect((await store.listAbmDevices()).items).toEqual([]);
      expect(await store.listAbmProfiles()).toEqual([
        { token: 'main', name: 'staff', profile: { digest: 'd2', uuid: 'UUID-3' } },
        { token: 'other', name: 'staff', profile: { digest: 'd1', uuid: 'UUID-2' } },
      ]);
      // Older definitions carried over from another store count as Orchard's too.
      await store.addAbmProfileUuids(['UUID-0', 'UUID-1']);
      expect(await store.listAbmProfileUuids()).toEqual(['UUID-0', 'UUID-1', 'UUID-2', 'UUID-3']);
    });

    it("lists every token's cursor in token order", async () => {
      expect(await store.listAbmCursors()).toEqual([]);
      await store.applyAbmPage('zeta', { upserts: [device('C02Z', 'zeta')], deletes: [], cursor: 'z-1' });
      await store.applyAbmPage('alpha', { upserts: [], deletes: [], cursor: 'a-1' });
      await store.applyAbmPage('mid', { upserts: [], deletes: [] });
      expect(await store.listAbmCursors()).toEqual([
        { token: 'alpha', cursor: 'a-1' },
        { token: 'zeta', cursor: 'z-1' },
      ]);
    });

    it('survives a reopen', async () => {
      if (!h.reopen) return;
      await store.applyAbmPage('main', { upserts: [device('C02A')], deletes: [], cursor: 'cur-1' });
      await store.putAbmProfile('main', 'staff', { digest: 'd1', uuid: 'UUID-1' });
      store = await h.reopen();
      expect(await store.getAbmCursor('main')).toBe('cur-1');
      expect(await store.getAbmDevice('C02A')).toEqual(device('C02A'));
      expect(await store.getAbmProfile('main', 'staff')).toEqual({ digest: 'd1', uuid: 'UUID-1' });
      expect(await store.listAbmProfileUuids()).toEqual(['UUID-1']);
    });
  });
}
