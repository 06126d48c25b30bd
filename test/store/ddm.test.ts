import { LevelDdmStore, MemoryDdmStore } from '../../src/store/ddm.js';
import { ddmStoreSuite } from './ddm-suite.js';
import { levelRoleHarness, pgRoleHarness } from './role-harness.js';

ddmStoreSuite('memory', async () => {
  const store = new MemoryDdmStore();
  return { store, cleanup: () => store.close() };
});

ddmStoreSuite('LevelDB', () => levelRoleHarness((dir) => LevelDdmStore.open(dir)));

pgRoleHarness('ddm', (open) => ddmStoreSuite('PostgreSQL', open));
