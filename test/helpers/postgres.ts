/**
 * The PostgreSQL cluster of a test file (bench/postgres.ts starts it). `usePostgres()` in a test
 * file starts one cluster for the file (beforeAll) and stops it (afterAll); `database()` gives each
 * test a fresh database. Without the binaries the suites register one failing test naming why
 * (CI installs them: `.ci/run` fails when they are missing).
 */
import { afterAll, beforeAll, describe, it } from 'vitest';
import { findPostgresBinaries, startPostgres, type PostgresCluster } from '../../bench/postgres.js';

export { findPostgresBinaries, startPostgres, type PostgresCluster };

const found = findPostgresBinaries();
let skipNoted = false;

/**
 * One cluster for the calling test file. `available` is false (and the reason printed once) when
 * there are no binaries; suites then register `missingPostgres()`, which fails with the reason.
 */
export function usePostgres(): { available: boolean; reason?: string; cluster: () => PostgresCluster } {
  if ('missing' in found) {
    if (!skipNoted) {
      skipNoted = true;
      console.warn(`PostgreSQL suites cannot run: ${found.missing} (install the postgresql package; see README)`);
    }
    return {
      available: false,
      reason: found.missing,
      cluster: () => {
        throw new Error(found.missing);
      },
    };
  }
  let cluster: PostgresCluster | undefined;
  beforeAll(async () => {
    cluster = await startPostgres(found.bindir);
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
  }, 120_000);
  return {
    available: true,
    cluster: () => {
      if (!cluster) throw new Error('the PostgreSQL cluster is not started (call usePostgres() at the top level of the test file)');
      return cluster;
    },
  };
}

/** What a PostgreSQL suite registers where the binaries are missing: one failing test naming why (never a silent skip). */
export function missingPostgres(name: string, reason: string | undefined): void {
  describe(name, () => {
    it('needs the PostgreSQL binaries', () => {
      throw new Error(`PostgreSQL is not installed: ${reason ?? 'unknown'} (install the postgresql package; see README)`);
    });
  });
}
