/** The LevelDB harness the store suites run on: a fresh directory, reopen, removed afterwards. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LevelStore } from '../../src/store/leveldb.js';
import type { StoreHarness } from './suite.js';

export async function levelHarness(): Promise<StoreHarness> {
  const dir = await mkdtemp(join(tmpdir(), 'orchard-store-'));
  let current = await LevelStore.open(dir);
  return {
    store: current,
    reopen: async () => {
      await current.close();
      current = await LevelStore.open(dir);
      return current;
    },
    cleanup: async () => {
      await current.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
