/**
 * Which backend a server runs on: `--store postgres://...` is PostgreSQL, otherwise the embedded
 * LevelDB in the data directory. This is the one place that decides it, for the main store and
 * for every other role (`openStores`). All come wrapped in `withStoreErrors`, so a backend failure
 * is `Unavailable` (503) wherever it surfaces.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { LevelAbmStore, type AbmStore } from './abm.js';
import { LevelDdmStore, type DdmStore } from './ddm.js';
import { LevelStore } from './leveldb.js';
import { LevelRolloutStore, type RolloutStore } from './rollouts.js';
import { adoptOutboxDir } from './outbox.js';
import type { OutboxStore } from './roles/outbox.js';
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

/** Every store role of a server, on one backend. */
export interface Stores {
  store: Store;
  ddm: DdmStore;
  rollouts: RolloutStore;
  abm: AbmStore;
  /** The webhook outbox: the main store itself (events are written in the batches of the changes that cause them). */
  outbox: OutboxStore;
}

/** Closes the roles, the main store last (on PostgreSQL it owns the pool the others use). */
export async function closeStores(s: Partial<Stores>): Promise<void> {
  if (s.outbox !== s.store) await s.outbox?.close();
  await s.abm?.close();
  await s.rollouts?.close();
  await s.ddm?.close();
  await s.store?.close();
}

/**
 * Every role at `location` (a postgres:// URL: all in that database, nothing on local disk), or
 * LevelDB: the main store at `location`, the others in databases of their own under `dataDir`
 * (DATA_DIR/ddm, rollouts, abm/devices, where they have always been; outbox). Unwrapped.
 */
export async function openBackends(location: string, dataDir: string, opts: PgStoreOptions = {}): Promise<Stores> {
  if (isPostgresUrl(location)) {
    const [{ PgStore }, { pgRoles }] = await Promise.all([import('./postgres.js'), import('./postgres-roles.js')]);
    const store = await PgStore.open(location, opts);
    return { store, ...pgRoles(store), outbox: store };
  }
  const opened: Partial<Stores> = {};
  try {
    mkdirSync(location, { recursive: true });
    const main = await LevelStore.open(location);
    opened.store = main;
    // A DDM status report that is a cause to reconcile leaves its work row in the main store.
    opened.ddm = await LevelDdmStore.open(join(dataDir, 'ddm'), main);
    opened.rollouts = await LevelRolloutStore.open(join(dataDir, 'rollouts'));
    mkdirSync(join(dataDir, 'abm'), { recursive: true, mode: 0o700 });
    opened.abm = await LevelAbmStore.open(join(dataDir, 'abm', 'devices'));
    opened.outbox = main;
    // The rows a server before the outbox was in the main store left in a database of their own.
    await adoptOutboxDir(join(dataDir, 'outbox'), main);
    return opened as Stores;
  } catch (err) {
    // A directory that cannot be opened (another process holds it) must not leave the others locked.
    await closeStores(opened);
    throw err;
  }
}

/** The server's stores: on `cfg.store` when set, else LevelDB in `cfg.dataDir`. */
export async function openStores(cfg: { store?: string; dataDir: string }): Promise<Stores> {
  const s = await openBackends(cfg.store ?? cfg.dataDir, cfg.dataDir);
  const store = withStoreErrors(s.store);
  return {
    store,
    ddm: withStoreErrors(s.ddm),
    rollouts: withStoreErrors(s.rollouts),
    abm: withStoreErrors(s.abm),
    outbox: store,
  };
}
