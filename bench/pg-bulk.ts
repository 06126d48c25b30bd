/**
 * Bulk seeding for PostgreSQL benchmarks: 100,000 devices through the store's API are ~300,000
 * transactions, longer than a benchmark run can spend. The first `templates` devices are written
 * through the store (so every stored format is the store's own); the rest are copies of them made
 * in SQL, `INSERT ... SELECT` over generate_series, device n copying template n % templates with
 * its names renamed (`DEV-<n>`, serial `S<n>`, `Mac <n>`, certificate hash `c<n>`, the names
 * bench/seed.ts gives). Status rows go through their trigger like any insert, so the kept counts
 * (migration 008) count the copies.
 */
import type pg from 'pg';

/** The SQL expression renaming template `t`'s names in `col` to device `n`'s. */
function renamed(col: string): string {
  let e = col;
  for (const [pre, post] of [
    ['"DEV-', '"'],
    ['"S', '"'],
    ['"Mac ', '"'],
    ['"c', '"'],
  ] as const) {
    e = `replace(${e}, '${pre}' || t || '${post}', '${pre}' || n || '${post}')`;
  }
  return e;
}

/** Devices `templates`..`total - 1` as copies of devices 0..templates-1, `chunk` devices per statement. */
export async function cloneDevices(pool: pg.Pool, templates: number, total: number, chunk = 10_000): Promise<void> {
  const from = `FROM generate_series($1::int, $2::int) AS n, LATERAL (SELECT n % ${templates} AS t) AS k`;
  const id = `'DEV-' || n`;
  const tid = `'DEV-' || t`;
  for (let lo = templates; lo < total; lo += chunk) {
    const hi = Math.min(total, lo + chunk) - 1;
    const c = await pool.connect();
    try {
      await c.query('BEGIN');
      await c.query(`INSERT INTO devices (id, record) SELECT ${id}, ${renamed('d.record')} ${from} JOIN devices d ON d.id = ${tid}`, [lo, hi]);
      await c.query(`INSERT INTO certs (cert_hash, device_id) SELECT 'c' || n, ${id} ${from} JOIN certs x ON x.device_id = ${tid}`, [lo, hi]);
      await c.query(
        `INSERT INTO enrollments (id, device_id, record, unlock_token, last_seen_at)
         SELECT ${id}, ${id}, ${renamed('e.record')}, e.unlock_token, e.last_seen_at ${from} JOIN enrollments e ON e.id = ${tid}`,
        [lo, hi],
      );
      await c.query(
        `INSERT INTO artifacts (device_id, version, state) SELECT ${id}, a.version, ${renamed('a.state')} ${from} JOIN artifacts a ON a.device_id = ${tid}`,
        [lo, hi],
      );
      await c.query(
        `INSERT INTO status_rows (device_id, state, enrolled, blueprints, matched, phases, seen, row)
         SELECT ${id}, s.state, s.enrolled, s.blueprints, s.matched, s.phases, s.seen, ${renamed('s.row')} ${from} JOIN status_rows s ON s.device_id = ${tid}`,
        [lo, hi],
      );
      await c.query('COMMIT');
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      c.release();
    }
  }
  await pool.query('ANALYZE');
}
