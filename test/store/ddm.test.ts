import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LevelDdmStore, MemoryDdmStore } from '../../src/store/ddm.js';
import { ddmStoreSuite } from './ddm-suite.js';

ddmStoreSuite('memory', async () => {
  const store = new MemoryDdmStore();
  return { store, cleanup: () => store.close() };
});

ddmStoreSuite('LevelDB', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'orchard-ddm-'));
  let current = await LevelDdmStore.open(dir);
  return {
    store: current,
    reopen: async () => {
      await current.close();
      current = await LevelDdmStore.open(dir);
      return current;
    },
    cleanup: async () => {
      await current.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});
