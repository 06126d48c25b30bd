/**
 * Which store a benchmark runs on (`--backend leveldb|postgres`): LevelDB in the bench's temp dir,
 * or a database on a throwaway PostgreSQL cluster (bench/postgres.ts, as the tests start theirs;
 * durability off there, as LevelDB here does not sync either). The database's CPU is counted
 * apart: with LevelDB the store's work is in the server process, with PostgreSQL most of it is in
 * the cluster's backends, so "server CPU" alone would flatter PostgreSQL.
 *
 * ORCHARD_BENCH_PG_STATEMENTS=FILE loads pg_stat_statements and writes the statements by total
 * time to FILE when the backend stops (what to optimise in src/store/postgres.ts).
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { openBackend } from '../src/store/open.js';
import type { Store } from '../src/store/types.js';
import { findPostgresBinaries, startPostgres } from './postgres.js';

export type BenchBackendKind = 'leveldb' | 'postgres';

export function parseBackend(s: string | undefined): BenchBackendKind {
  if (s === undefined || s === 'leveldb') return 'leveldb';
  if (s === 'postgres') return 'postgres';
  throw new Error(`--backend ${s}: expected leveldb or postgres`);
}

export interface BenchBackend {
  kind: BenchBackendKind;
  /** The store's location: a LevelDB directory (`<dir>/data`, the server's --data-dir) or a postgres:// URL. */
  location: string;
  /** What `orchard serve` needs beyond --data-dir to run on this store. */
  serveArgs: string[];
  /** The store, unwrapped, for seeding (close it before a server opens a LevelDB one). */
  open(): Promise<Store>;
  /** CPU ms the database processes have used so far (0 for LevelDB: its work is in the server's process). */
  dbCpuMs(): number;
  /** Forget the statements counted so far (with ORCHARD_BENCH_PG_STATEMENTS): the report then covers what follows. */
  resetStatements(): Promise<void>;
  stop(): Promise<void>;
}

const CLK_TCK = 100; // Linux USER_HZ

/** utime + stime (+ the waited-for children's, when `children`) of `pid`, in ms; 0 once it is gone. */
function statCpuMs(pid: number, children: boolean): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(f[11]) + Number(f[12]) + (children ? Number(f[13]) + Number(f[14]) : 0);
    return (ticks * 1000) / CLK_TCK;
  } catch {
    return 0;
  }
}

/** The postmaster and every backend it runs (those that exited are in its children's times). */
function clusterCpuMs(postmaster: number): number {
  let ms = statCpuMs(postmaster, true);
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === postmaster) ms += statCpuMs(Number(e), true);
    } catch {
      // exited meanwhile: counted in the postmaster's children's times
    }
  }
  return ms;
}

export async function benchBackend(kind: BenchBackendKind, dir: string): Promise<BenchBackend> {
  if (kind === 'leveldb') {
    const location = join(dir, 'data');
    return {
      kind,
      location,
      serveArgs: [],
      open: () => openBackend(location),
      dbCpuMs: () => 0,
      resetStatements: async () => undefined,
      stop: async () => undefined,
    };
  }
  const found = findPostgresBinaries();
  if ('missing' in found) throw new Error(`--backend postgres: ${found.missing}`);
  const statementsFile = process.env.ORCHARD_BENCH_PG_STATEMENTS;
  const cluster = await startPostgres(
    found.bindir,
    statementsFile ? { shared_preload_libraries: 'pg_stat_statements', 'pg_stat_statements.track': 'all' } : {},
  );
  const location = await cluster.database();
  if (statementsFile) await withClient(location, (c) => c.query('CREATE EXTENSION pg_stat_statements'));
  return {
    kind,
    location,
    serveArgs: ['--store', location],
    open: () => openBackend(location),
    dbCpuMs: () => clusterCpuMs(cluster.pid),
    async resetStatements() {
      if (statementsFile) await withClient(location, (c) => c.query('SELECT pg_stat_statements_reset()'));
    },
    async stop() {
      if (statementsFile) await withClient(location, async (c) => writeFileSync(statementsFile, await topStatements(c)));
      await cluster.stop();
    },
  };
}

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** The 40 statements with the most total execution time, as a Markdown table. */
async function topStatements(c: pg.Client): Promise<string> {
  const { rows } = await c.query<{ calls: string; total: number; mean: number; rows: string; query: string }>(
    `SELECT calls, total_exec_time AS total, mean_exec_time AS mean, rows, query FROM pg_stat_statements
     ORDER BY total_exec_time DESC LIMIT 40`,
  );
  const line = (q: string) => q.replace(/\s+/g, ' ').slice(0, 300);
  return `| calls | total ms | mean ms | rows | statement |\n|---|---|---|---|---|\n${rows
    .map((r) => `| ${r.calls} | ${r.total.toFixed(0)} | ${r.mean.toFixed(3)} | ${r.rows} | \`${line(r.query)}\` |`)
    .join('\n')}\n`;
}
