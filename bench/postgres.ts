/**
 * A throwaway PostgreSQL cluster: `initdb` in a temp dir, the server on a unix socket in that dir
 * (and a free port number, which names the socket), removed afterwards. The tests
 * (test/helpers/postgres.ts) and the benchmarks (`--backend postgres`) both start theirs here.
 * initdb refuses to run as root (CI runs as root): there the cluster runs as the `postgres` user
 * Debian's package creates, in a temp dir it owns. The server runs with `--pdeathsig KILL`, so a
 * process that dies takes its server with it.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

/** The directory holding initdb and postgres, or why there is none. */
export function findPostgresBinaries(): { bindir: string } | { missing: string } {
  const candidates: string[] = [];
  if (process.env.ORCHARD_PG_BINDIR) candidates.push(process.env.ORCHARD_PG_BINDIR);
  try {
    candidates.push(execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
  } catch {
    // no pg_config on PATH
  }
  const debian = '/usr/lib/postgresql';
  if (existsSync(debian)) {
    const versions = readdirSync(debian)
      .filter((v) => /^\d+$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    for (const v of versions) candidates.push(join(debian, v, 'bin'));
  }
  for (const dir of candidates) if (existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'postgres'))) return { bindir: dir };
  return { missing: `no PostgreSQL binaries (initdb, postgres) via pg_config --bindir or in ${debian}/*/bin` };
}

export interface PostgresCluster {
  /** A connection URL for `db` (default: the `postgres` database). */
  url(db?: string): string;
  /** The postmaster's pid (its backends are its children): for the benchmarks' CPU accounting. */
  pid: number;
  /** A new empty database; returns its URL. */
  database(): Promise<string>;
  /**
   * One database for the calling file, emptied (every table truncated, the schema kept) on each
   * call: much cheaper than a database per test. Call it with no store open on it.
   */
  emptied(): Promise<string>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** argv prefix that runs a command as the cluster's owner: `postgres` when we are root. */
function asOwner(): { prefix: string[]; uid?: number; gid?: number } {
  if (userInfo().uid !== 0) return { prefix: ['setpriv', '--pdeathsig', 'KILL', '--'] };
  const ids = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const gids = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  if (ids.status !== 0) throw new Error('running as root and there is no `postgres` user to run the cluster as (initdb refuses root)');
  const uid = Number(ids.stdout.trim());
  const gid = Number(gids.stdout.trim());
  return { prefix: ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--pdeathsig', 'KILL', '--'], uid, gid };
}

/** `settings`: more `-c name=value` server settings (the benchmarks load pg_stat_statements with one). */
export async function startPostgres(bindir: string, settings: Record<string, string> = {}): Promise<PostgresCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-pg-'));
  const owner = asOwner();
  if (owner.uid !== undefined) chownSync(dir, owner.uid, owner.gid!);
  const data = join(dir, 'data');
  const run = (cmd: string, args: string[]) => {
    const [exe, ...pre] = owner.prefix;
    const r = spawnSync(exe!, [...pre, join(bindir, cmd), ...args], { encoding: 'utf8', cwd: dir });
    if (r.status !== 0) throw new Error(`${cmd} failed (${r.status}): ${r.stderr || r.stdout}`);
  };
  let child: ChildProcess | undefined;
  try {
    run('initdb', ['-D', data, '-U', 'orchard', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-instructions']);
    const port = await freePort();
    const [exe, ...pre] = owner.prefix;
    // A test cluster: durability off (the tests kill processes, never the machine).
    child = spawn(
      exe!,
      [
        ...pre,
        join(bindir, 'postgres'),
        '-D',
        data,
        '-p',
        String(port),
        '-k',
        dir,
        '-c',
        'listen_addresses=',
        '-c',
        'fsync=off',
        '-c',
        'synchronous_commit=off',
        '-c',
        'full_page_writes=off',
        '-c',
        'max_connections=200',
        ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]),
      ],
      { stdio: ['ignore', 'ignore', 'pipe'], cwd: dir },
    );
    let log = '';
    child.stderr!.on('data', (d: Buffer) => {
      log = (log + d.toString()).slice(-20_000);
    });
    const url = (db = 'postgres') => `postgresql://orchard@localhost:${port}/${db}?host=${encodeURIComponent(dir)}`;
    const started = Date.now();
    for (;;) {
      if (child.exitCode !== null) throw new Error(`postgres exited (${child.exitCode}): ${log}`);
      const client = new pg.Client({ connectionString: url() });
      try {
        await client.connect();
        await client.end();
        break;
      } catch {
        await client.end().catch(() => undefined);
        if (Date.now() - started > 30_000) throw new Error(`postgres did not accept connections within 30 s: ${log}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    let n = 0;
    let shared: string | undefined;
    const server = child;
    const database = async (): Promise<string> => {
      const name = `t${process.pid}_${++n}`;
      const admin = new pg.Client({ connectionString: url() });
      await admin.connect();
      try {
        await admin.query(`CREATE DATABASE ${name} TEMPLATE template0`);
      } finally {
        await admin.end();
      }
      return url(name);
    };
    return {
      url,
      pid: server.pid!,
      database,
      async emptied() {
        if (!shared) return (shared = await database());
        const c = new pg.Client({ connectionString: shared });
        await c.connect();
        try {
          const { rows } = await c.query<{ t: string }>(
            "SELECT quote_ident(tablename) AS t FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'orchard_migrations'",
          );
          if (rows.length) await c.query(`TRUNCATE ${rows.map((r) => r.t).join(', ')}`);
        } finally {
          await c.end();
        }
        return shared;
      },
      async stop() {
        if (server.exitCode === null) {
          const exited = new Promise((r) => server.once('exit', r));
          server.kill('SIGQUIT'); // immediate shutdown: no checkpoint, the files are removed anyway
          await exited;
        }
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    child?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
