import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryDdmStore } from '../../src/store/ddm.js';
import { MemoryStore } from '../../src/store/memory.js';
import { closeStores, openBackends } from '../../src/store/open.js';
import { ddmStoreSuite } from './ddm-suite.js';
import { pgRoleHarness } from './role-harness.js';

ddmStoreSuite('memory', async () => {
  const main = await MemoryStore.open();
  const store = new MemoryDdmStore(main);
  return { store, work: () => main, cleanup: () => store.close() };
});

// As the server opens them: the DDM store in a database of its own next to the main store.
ddmStoreSuite('LevelDB', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'orchard-role-'));
  let stores = await openBackends(join(dir, 'store'), dir);
  return {
    store: stores.ddm,
    work: () => stores.store,
    reopen: async () => {
      await closeStores(stores);
      stores = await openBackends(join(dir, 'store'), dir);
      return stores.ddm;
    },
    cleanup: async () => {
      await closeStores(stores);
      await rm(dir, { recursive: true, force: true });
    },
  };
});

pgRoleHarness('ddm', (open) => ddmStoreSuite('PostgreSQL', open));
