/**
 * Which backend a server runs on: `--store postgres://...` is PostgreSQL, otherwise the embedded
 * LevelDB in the data directory. Both come wrapped in `withStoreErrors`, so a backend failure is
 * `Unavailable` (503) wherever it surfaces.
 */
import { mkdirSync } from 'node:fs';
import { LevelStore } from './leveldb.js';
import type { PgStoreOptions } from './postgres.js';
import { withStoreErrors } from './typed-errors.js';
import type { Store } from './types.js';

export function isPostgresUrl(s: string): boolean {
  return /^postgres(ql)?:\/\//.test(s);
}

/** A store location for logs: the URL without its password. */
export function describeStore(location: string): string {
  if (!isPostgresUrl(location)) return location;
  try {
    const u = new URL(location);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://(unparsable URL)';
  }
}

/** Opens the store at `location` (a postgres:// URL or a LevelDB directory), unwrapped. */
export async function openBackend(location: string, opts: PgStoreOptions = {}): Promise<Store> {
  // Loaded only for a postgres:// store: pg and the SQL backend stay out of a LevelDB server.
  if (isPostgresUrl(location)) return (await import('./postgres.js')).PgStore.open(location, opts);
  mkdirSync(location, { recursive: true });
  return LevelStore.open(location);
}

/** The server's store: `cfg.store` when set, else LevelDB in `cfg.dataDir`. */
export async function openStore(cfg: { store?: string; dataDir: string }): Promise<Store> {
  return withStoreErrors(await openBackend(cfg.store ?? cfg.dataDir));
}
