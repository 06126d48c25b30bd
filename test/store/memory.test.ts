import { MemoryData, MemoryStore } from '../../src/store/memory.js';
import { leaseSuite } from './lease-suite.js';
import { workSuite } from './work-suite.js';
import { materialSuite } from './material-suite.js';
import { outboxSuite } from './outbox-suite.js';
import { statusSuite } from './status-suite.js';
import { storeSuite, type StoreHarness } from './suite.js';

async function open(): Promise<StoreHarness> {
  const data = new MemoryData();
  let current = await MemoryStore.open(data);
  return {
    store: current,
    reopen: async () => {
      await current.close();
      current = await MemoryStore.open(data);
      return current;
    },
    cleanup: async () => {
      await current.close();
    },
  };
}

storeSuite('MemoryStore', open);
statusSuite('MemoryStore', open);
materialSuite('MemoryStore', open, { persistent: true });
leaseSuite('MemoryStore', open);
workSuite('MemoryStore', open);
outboxSuite('MemoryStore', open);
