import { LevelOutboxStore, MemoryOutboxStore } from '../../src/store/outbox.js';
import { levelRoleHarness, pgRoleHarness } from './role-harness.js';
import { outboxSuite } from './outbox-suite.js';

outboxSuite('memory', async () => {
  const store = new MemoryOutboxStore();
  return { store, cleanup: () => store.close() };
});

outboxSuite('LevelDB', () => levelRoleHarness((dir) => LevelOutboxStore.open(dir)));

pgRoleHarness('outbox', (open) => outboxSuite('PostgreSQL', open));
