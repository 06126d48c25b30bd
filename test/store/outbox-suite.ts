/**
 * Backend-independent behaviour of the webhook outbox role (src/store/roles/outbox.ts). Every backend runs it:
 *   outboxSuite('MyStore', async () => ({ store, reopen, cleanup }))
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { OutboxEvent, OutboxStore } from '../../src/store/roles/outbox.js';

export interface OutboxHarness {
  store: OutboxStore;
  /** Close and open the same data again; persistence is not checked without it. */
  reopen?: () => Promise<OutboxStore>;
  cleanup: () => Promise<void>;
}

const A = 'https://hooks.example.com/a';
const B = 'https://hooks.example.com/b?x=1';
const event = (id: string, data: Record<string, unknown> = {}): OutboxEvent => ({ id, type: 'device.enrolled', at: '2026-01-01T00:00:00.000Z', data });

export function outboxSuite(name: string, open: () => Promise<OutboxHarness>): void {
  describe(`OutboxStore: ${name}`, () => {
    let h: OutboxHarness;
    let store: OutboxStore;
    beforeEach(async () => {
      h = await open();
      store = h.store;
    });
    afterEach(async () => {
      await h.cleanup();
    });

    it('keeps each URL its rows in queue order, the event as queued (any JSON data), apart from the other URLs', async () => {
      await store.queueEvent([A, B], event('e1', { nested: { list: [1, 'two', null] }, text: 'caf\u00e9 \u2603' }));
      await store.queueEvent([A], event('e2'));
      await store.queueEvent([B], event('e3'));
      await store.queueEvent([], event('nowhere'));
      expect((await store.pendingEvents(A, 10)).map((r) => r.event.id)).toEqual(['e1', 'e2']);
      expect((await store.pendingEvents(B, 10)).map((r) => r.event.id)).toEqual(['e1', 'e3']);
      expect((await store.pendingEvents(A, 10))[0]!.event).toEqual(event('e1', { nested: { list: [1, 'two', null] }, text: 'caf\u00e9 \u2603' }));
      expect(await store.pendingEvents('https://hooks.example.com/other', 10)).toEqual([]);
      expect(await store.countEvents()).toBe(4);
    });

    it('pages by limit from the oldest; a removed row goes for its URL only; removing it again is no error', async () => {
      for (let i = 1; i <= 5; i++) await store.queueEvent([A, B], event(`e${i}`));
      const first = await store.pendingEvents(A, 2);
      expect(first.map((r) => r.event.id)).toEqual(['e1', 'e2']);
      await store.removeEvent(A, first[0]!.seq);
      await store.removeEvent(A, first[0]!.seq);
      expect((await store.pendingEvents(A, 2)).map((r) => r.event.id)).toEqual(['e2', 'e3']);
      expect((await store.pendingEvents(B, 10)).map((r) => r.event.id)).toEqual(['e1', 'e2', 'e3', 'e4', 'e5']);
      expect(await store.countEvents()).toBe(9);
    });

    it('keeps the rows and their order across a reopen; rows queued after it come after them', async () => {
      if (!h.reopen) return;
      await store.queueEvent([A], event('before-1'));
      await store.queueEvent([A], event('before-2'));
      const [gone] = await store.pendingEvents(A, 1);
      await store.removeEvent(A, gone!.seq);
      store = await h.reopen();
      await store.queueEvent([A], event('after'));
      expect((await store.pendingEvents(A, 10)).map((r) => r.event.id)).toEqual(['before-2', 'after']);
    });
  });
}
