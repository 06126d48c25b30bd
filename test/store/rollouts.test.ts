import { LevelRolloutStore, MemoryRolloutStore } from '../../src/store/rollouts.js';
import { rolloutStoreSuite } from './rollout-suite.js';
import { levelRoleHarness, pgRoleHarness } from './role-harness.js';

rolloutStoreSuite('memory', async () => {
  const store = new MemoryRolloutStore();
  return { store, cleanup: () => store.close() };
});

rolloutStoreSuite('LevelDB', () => levelRoleHarness((dir) => LevelRolloutStore.open(dir)));

pgRoleHarness('rollouts', (open) => rolloutStoreSuite('PostgreSQL', open));
