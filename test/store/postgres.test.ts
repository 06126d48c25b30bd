import { PgStore } from '../../src/store/postgres.js';
import { missingPostgres, usePostgres } from '../helpers/postgres.js';
import { leaseSuite } from './lease-suite.js';
import { workSuite } from './work-suite.js';
import { materialSuite } from './material-suite.js';
import { outboxSuite } from './outbox-suite.js';
import { statusSuite } from './status-suite.js';
import { storeSuite, type StoreHarness } from './suite.js';

const pg = usePostgres();

async function open(): Promise<StoreHarness> {
  const url = await pg.cluster().emptied();
  let current = await PgStore.open(url, { touchFlushMs: 3_600_000 });
  return {
    store: current,
    reopen: async () => {
      await current.close();
      current = await PgStore.open(url);
      return current;
    },
    cleanup: async () => {
      await current.close();
    },
  };
}

if (pg.available) {
  storeSuite('PgStore', open);
  statusSuite('PgStore', open);
  materialSuite('PgStore', open, { persistent: true });
  leaseSuite('PgStore', open);
  workSuite('PgStore', open);
  outboxSuite('PgStore', open);
} else {
  missingPostgres('PgStore', pg.reason);
}
