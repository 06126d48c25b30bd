/**
 * The harnesses of the role suites (DDM, rollouts, ABM). LevelDB: a fresh directory, reopen,
 * removed afterwards. PostgreSQL: the role of a PgStore on the test file's cluster, in a database
 * emptied for each test; reopen opens a new PgStore on it; where the binaries are missing, the
 * one failing test that says so.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PgStore } from '../../src/store/postgres.js';
import { pgRoles } from '../../src/store/postgres-roles.js';
import { missingPostgres, usePostgres } from '../helpers/postgres.js';

type Roles = ReturnType<typeof pgRoles>;

interface RoleHarness<S> {
  store: S;
  reopen: () => Promise<S>;
  cleanup: () => Promise<void>;
}

/** PostgreSQL: the role and the main store it shares the database (and its work rows) with. */
interface PgRoleHarness<S> extends RoleHarness<S> {
  work: () => PgStore;
}

export async function levelRoleHarness<S extends { close(): Promise<void> }>(open: (dir: string) => Promise<S>): Promise<RoleHarness<S>> {
  const dir = await mkdtemp(join(tmpdir(), 'orchard-role-'));
  let current = await open(dir);
  return {
    store: current,
    reopen: async () => {
      await current.close();
      current = await open(dir);
      return current;
    },
    cleanup: async () => {
      await current.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export function pgRoleHarness<K extends keyof Roles>(role: K, suite: (open: () => Promise<PgRoleHarness<Roles[K]>>) => void): void {
  const pg = usePostgres();
  if (!pg.available) {
    missingPostgres(`${role} store on PostgreSQL`, pg.reason);
    return;
  }
  suite(async () => {
    const url = await pg.cluster().emptied();
    let main = await PgStore.open(url);
    return {
      store: pgRoles(main)[role],
      work: () => main,
      reopen: async () => {
        await main.close();
        main = await PgStore.open(url);
        return pgRoles(main)[role];
      },
      cleanup: () => main.close(),
    };
  });
}
