import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LevelRolloutStore, MemoryRolloutStore } from '../../src/store/rollouts.js';
import { rolloutStoreSuite } from './rollout-suite.js';

rolloutStoreSuite('memory', async () => {
  const store = new MemoryRolloutStore();
  return { store, cleanup: () => store.close() };
});

rolloutStoreSuite('LevelDB', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'orchard-rollouts-'));
  let current = await LevelRolloutStore.open(dir);
  return {
    store: current,
    reopen: async () => {
      await current.close();
      current = await LevelRolloutStore.open(dir);
      return current;
    },
    cleanup: async () => {
      await current.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});
