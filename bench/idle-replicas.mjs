// Two idle `orchard serve` replicas (no repo) on one PostgreSQL with pg_stat_statements: statements/s over a window, by statement.
// Run after `npm run build`: node bench/idle-replicas.mjs [SECONDS, default 30]
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
const root = process.cwd();
const { findPostgresBinaries, startPostgres } = await import(join(root, 'dist/bench/postgres.js'));
const CLI = join(root, 'dist/src/cli/main.js');
function spawnServer(args, env) {
  const child = spawn(process.execPath, [CLI, 'serve', '--listen', '127.0.0.1:0', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stderr.on('data', (d) => (out += d));
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += d;
      if (/orchard listening/.test(out)) resolve({ child });
    });
    child.once('exit', (code) => reject(new Error(`exit ${code}: ${out}`)));
  });
}
const bin = findPostgresBinaries();
const cluster = await startPostgres(bin.bindir, { shared_preload_libraries: 'pg_stat_statements', 'pg_stat_statements.track': 'all' });
const url = await cluster.database();
const c = new pg.Client({ connectionString: url });
await c.connect();
await c.query('CREATE EXTENSION pg_stat_statements');
const dir = mkdtempSync(join(tmpdir(), 'ob2-idle-'));
const env = { ORCHARD_API_TOKEN: 'idle', ORCHARD_MATERIAL_KEY: 'idle replica key' };
const s1 = await spawnServer(['--store', url, '--data-dir', join(dir, 'a'), '--leader-lease', '2s'], env);
const s2 = await spawnServer(['--store', url, '--data-dir', join(dir, 'b'), '--leader-lease', '2s'], env);
await new Promise((r) => setTimeout(r, 5000));
await c.query('SELECT pg_stat_statements_reset()');
const W = Number(process.argv[2] ?? 30);
await new Promise((r) => setTimeout(r, W * 1000));
const { rows } = await c.query(`SELECT calls, query FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%' ORDER BY calls DESC`);
let total = 0;
for (const r of rows) total += Number(r.calls);
console.log(`window ${W} s: ${total} statements, ${(total / W).toFixed(2)}/s`);
for (const r of rows.slice(0, 15)) console.log(`${(r.calls / W).toFixed(2)}/s\t${r.calls}\t${r.query.replace(/\s+/g, ' ').slice(0, 160)}`);
s1.child.kill('SIGTERM');
s2.child.kill('SIGTERM');
await c.end();
await cluster.stop();
process.exit(0);
