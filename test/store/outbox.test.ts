/** The webhook outbox on LevelDB: the role's suite, and the rows an earlier server kept in a database of their own. */
import { mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { describe, expect, it } from 'vitest';
import { openBackends, closeStores } from '../../src/store/open.js';
import type { OutboxEvent } from '../../src/store/roles/outbox.js';
import { levelHarness } from './harness.js';
import { outboxSuite } from './outbox-suite.js';

// The outbox is a role of the main store: memory.test.ts and postgres.test.ts run this suite on the others.
outboxSuite('LevelStore', levelHarness);

describe('LevelDB outbox of an earlier server (DATA_DIR/outbox, a database of its own)', () => {
  it('is moved into the main store at open, in its order, each event once for the URLs it was left for, and the directory removed', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'orchard-outbox-adopt-'));
    try {
      // The layout that server wrote: o\0<url>\0<seq 16 digits> -> event.
      const old = new Level<string, OutboxEvent>(join(dataDir, 'outbox'), { valueEncoding: 'json' });
      const ev = (id: string): OutboxEvent => ({ id, type: 'device.enrolled', at: '2026-01-01T00:00:00.000Z', data: { id } });
      const key = (url: string, seq: number) => `o\0${url}\0${String(seq).padStart(16, '0')}`;
      await old.batch([
        { type: 'put', key: key('http://a/', 7), value: ev('e7') },
        { type: 'put', key: key('http://b/', 7), value: ev('e7') },
        { type: 'put', key: key('http://a/', 12), value: ev('e12') },
        { type: 'put', key: key('http://b/', 3), value: ev('e3') },
      ]);
      await old.close();

      const stores = await openBackends(join(dataDir, 'db'), dataDir);
      try {
        expect(existsSync(join(dataDir, 'outbox'))).toBe(false);
        expect((await stores.outbox.pendingEvents('http://a/', 10)).map((r) => r.event)).toEqual([ev('e7'), ev('e12')]);
        expect((await stores.outbox.pendingEvents('http://b/', 10)).map((r) => r.event.id)).toEqual(['e3', 'e7']);
        expect(await stores.store.countEvents()).toBe(4);
      } finally {
        await closeStores(stores);
      }
      // Nothing is moved twice: the rows stay as they were after a second open.
      const again = await openBackends(join(dataDir, 'db'), dataDir);
      expect(await again.outbox.countEvents()).toBe(4);
      await closeStores(again);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
