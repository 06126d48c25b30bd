import { LevelAbmStore, MemoryAbmStore } from '../../src/store/abm.js';
import { levelRoleHarness, pgRoleHarness } from './role-harness.js';
import { abmStoreSuite } from './abm-suite.js';

abmStoreSuite('memory', async () => {
  const store = new MemoryAbmStore();
  return { store, cleanup: () => store.close() };
});

abmStoreSuite('LevelDB', () => levelRoleHarness((dir) => LevelAbmStore.open(dir)));

pgRoleHarness('abm', (open) => abmStoreSuite('PostgreSQL', open));
