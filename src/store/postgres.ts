/**
 * PostgreSQL backend for `Store` (`--store postgres://...`), with `pg` and a pool. Several
 * servers may share one database: every write that LevelDB does as one batch under a device's
 * lock is one transaction here under the same lock, a transaction-scoped advisory lock
 * (`pg_advisory_xact_lock(1, hashtext(device id))`); a command uuid's payload is guarded by
 * `(2, hashtext(uuid))`, always taken after the device's and in sorted order, so no two
 * transactions wait on each other in a cycle. A reconcile that only adds commands under a uuid
 * takes that lock shared: a fleet-wide run queues the same install to every device at once, and
 * an exclusive lock made those commits wait on each other (197 ms each, pg_stat_statements);
 * only deleting a payload (collect) needs it alone. Reconcile state is compare-and-set on its version.
 *
 * The schema is versioned (src/store/migrations/): applied at open (or by `orchard migrate`); a
 * database whose schema is newer than this server knows is refused.
 */
import type { OutboxEntry, OutboxEvent, OutboxRow } from './roles/outbox.js';
import type { ClaimRequest, WorkClaim } from './roles/work.js';
import pg from 'pg';
import type { DeviceArtifacts } from '../model/artifacts.js';
import { Conflict, Malformed, NotFound, Unavailable } from '../errors.js';
import {
  checkChange,
  checkChannel,
  checkCommand,
  checkDeviceId,
  checkResult,
  checkTargets,
  DEFAULT_PRIORITY,
  FINAL,
  MAX_IDENTITY_CHANGES,
  withoutVersion,
} from './checks.js';
import { VersionConflictError } from './errors.js';
import { checkId } from './ids.js';
import { ReadBatch } from './batch.js';
import type { Lease } from './lease.js';
import type { DeviceExport } from './transfer.js';
import { checkMaterialKey, MATERIAL_KINDS, type MaterialItem, type MaterialKind, type PutMaterialOptions } from './material.js';
import { LATEST_SCHEMA, MIGRATIONS, schemaMismatch } from './migrations/index.js';
import { pageCursor, pageLimit, pageOf, type Page, type PageRequest } from './paging.js';
import {
  DEVICE_STATES,
  deviceOfEnrollment,
  emptyByState,
  rowState,
  statusFacts,
  type BlueprintCounts,
  type DeviceState,
  type DeviceStatus,
  type FleetCounts,
  type StatusProfiles,
  type StatusQuery,
} from './status.js';
import type {
  CommandResult,
  CommandStatus,
  CommandView,
  DeviceFacts,
  DeviceRecord,
  EnrollmentRecord,
  IdentityBinding,
  IdentityChange,
  NewCommand,
  QueuedCommand,
  ReconcileChange,
  RecordOutcome,
  ReportedState,
  Store,
  StoreHealth,
  VersionedArtifacts,
} from './types.js';

type Db = pg.Pool | pg.PoolClient;

export interface PgStoreOptions {
  /** Apply missing migrations at open (default). Without, a schema that is behind is refused. */
  migrate?: boolean;
  /** Connections in the pool (default 10). */
  poolSize?: number;
  /** How often buffered `touch` calls are written (default 2000 ms). */
  touchFlushMs?: number;
  /** How often the status count deltas are folded into the kept counts (default 1000 ms). */
  countFoldMs?: number;
}

const MIGRATION_LOCK = 0x4f524348; // 'ORCH': one migrator at a time
const DEVICE_LOCK = 1;
const COMMAND_LOCK = 2;
const FOLD_LOCK = 0x4f524343; // 'ORCC': one folder of the status count deltas at a time
/** Folded deltas after which the fold vacuums their table at once (see foldCounts). */
const VACUUM_DELTAS_AFTER = 10_000;

type StoredEnrollment = Omit<EnrollmentRecord, 'unlockToken'>;

interface EnrollmentRow {
  record: string;
  unlock_token: Buffer | null;
  last_seen_at: Date | null;
}

/** A commitReconcile call waiting for its group commit. */
interface PendingCommit {
  deviceId: string;
  /** The state as stored (JSON, without its version). */
  state: string;
  change: ReconcileChange;
  /** `change.enqueue` with its targets checked and deduplicated. */
  enqueue: { targets: string[]; cmd: NewCommand }[];
  at: string;
  expectedVersion: number;
  resolve: (out: { cancelled: string[]; version: number }) => void;
  reject: (err: unknown) => void;
}

/** The command locks for `uuids` (exclusive) and `adding` (shared; a uuid in both is exclusive), as LOCK_COMMANDS takes them. */
function commandLocks(uuids: Iterable<string>, adding: Iterable<string>): { uuids: string[]; exclusive: boolean[] } {
  const mode = new Map<string, boolean>();
  for (const u of adding) mode.set(u, false);
  for (const u of uuids) mode.set(u, true);
  return { uuids: [...mode.keys()], exclusive: [...mode.values()] };
}

/** Takes the command locks of $2 (uuids) with $3 (exclusive or not) in one order, by lock key. */
const LOCK_COMMANDS = `SELECT CASE WHEN k.x THEN pg_advisory_xact_lock($1, k.h) ELSE pg_advisory_xact_lock_shared($1, k.h) END
  FROM (SELECT hashtext(u) AS h, bool_or(x) AS x FROM unnest($2::text[], $3::bool[]) AS t(u, x) GROUP BY 1 ORDER BY 1) AS k`;

const RECORD_RESULT = 'SELECT * FROM orchard_record_result($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)';

/**
 * RECORD_RESULT with the answer's webhook event ($12 the URLs, $13 the event) in the same
 * statement, so in its transaction: queued when the answer is recorded or NotNow.
 */
const RECORD_RESULT_WITH_EVENT = `WITH r AS MATERIALIZED (${RECORD_RESULT}),
  o AS (INSERT INTO outbox (url, event) SELECT u, $13 FROM r, unnest($12::text[]) AS u WHERE r.outcome IN ('recorded', 'notnow'))
SELECT * FROM r`;

/** Devices per group commit. */
const COMMIT_BATCH = 64;

/** What orchard_record_result (migration 007) answers. */
interface AnswerRow {
  outcome: RecordOutcome | 'moved' | 'erase';
  next_uuid: string | null;
  next_request_type: string | null;
  next_priority: number | null;
  next_status: 'Pending' | 'NotNow' | null;
  next_enqueued_at: string | null;
  next_payload: Buffer | null;
}

const commandKey = (enrollmentId: string, uuid: string) => JSON.stringify([enrollmentId, uuid]);

interface CommandRow {
  uuid: string;
  request_type: string;
  priority: number;
  seq: string;
  status: CommandStatus;
  enqueued_at: string;
  updated_at: string | null;
  not_now_count: number;
  result_at: string | null;
  error_chain: string | null;
  raw: Buffer | null;
}

function laterIso(a: string | undefined, b: string | undefined): string | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Date.parse(b) > Date.parse(a) ? b : a;
}

function view(r: CommandRow): CommandView {
  const v: CommandView = {
    uuid: r.uuid,
    requestType: r.request_type,
    priority: r.priority,
    status: r.status,
    enqueuedAt: r.enqueued_at,
    notNowCount: r.not_now_count,
  };
  if (r.updated_at !== null) v.updatedAt = r.updated_at;
  if (FINAL.has(r.status) && r.result_at !== null) {
    v.result = { status: r.status as CommandResult['status'], at: r.result_at, raw: r.raw ?? Buffer.alloc(0) };
    if (r.error_chain !== null) v.result.errorChain = JSON.parse(r.error_chain) as NonNullable<CommandResult['errorChain']>;
  }
  return v;
}

const COMMAND_COLUMNS = 'uuid, request_type, priority, seq, status, enqueued_at, updated_at, not_now_count, result_at, error_chain, raw';

/** Applies the missing migrations; refuses a schema newer than this server knows. Returns the version now current. */
export async function migrate(pool: pg.Pool, opts: { apply: boolean } = { apply: true }): Promise<{ from: number; to: number }> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await client.query(
      'CREATE TABLE IF NOT EXISTS orchard_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())',
    );
    const { rows } = await client.query<{ version: number }>('SELECT version FROM orchard_migrations');
    const applied = new Set(rows.map((r) => r.version));
    const from = Math.max(0, ...applied);
    const pending = MIGRATIONS.filter((m) => !applied.has(m.version));
    if (from > LATEST_SCHEMA) {
      throw new Unavailable(
        `the database schema is at version ${from}, newer than this server knows (${LATEST_SCHEMA}): upgrade Orchard before running it on this database`,
      );
    }
    if (pending.length && !opts.apply) throw new Unavailable(`the database ${schemaMismatch(applied)}: run \`orchard migrate --store URL\``);
    for (const m of pending) {
      await client.query(m.sql);
      await client.query('INSERT INTO orchard_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
    }
    await client.query('COMMIT');
    return { from, to: Math.max(from, LATEST_SCHEMA) };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/** A pool for `url` with the settings every Orchard connection uses. */
export function createPool(url: string, max = 10): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max, application_name: 'orchard' });
  // An idle connection that breaks (server restart) must not crash the process; the next query reconnects.
  pool.on('error', () => undefined);
  return pool;
}

/** A cause to reconcile `deviceId` from `dueAt`: a row already there keeps the earlier time and takes the next gen. */
export async function addWorkRow(q: pg.Pool | pg.PoolClient, deviceId: string, dueAt: Date): Promise<void> {
  await q.query({
    name: 'orchard-add-work',
    text: `INSERT INTO work AS w (device_id, due_at, gen) VALUES ($1, $2, 1)
           ON CONFLICT (device_id) DO UPDATE SET due_at = LEAST(w.due_at, EXCLUDED.due_at), gen = w.gen + 1`,
    values: [deviceId, dueAt.toISOString()],
  });
}

/**
 * Queues a webhook event in one statement, in the caller's transaction (or its own). No lock
 * orders the inserts: an event caused after another committed has the higher `seq` and is seen
 * with it or after it, and the order of concurrent causes is any. A row that commits after a
 * newer one (concurrent transactions) is still read: the leader reads from the oldest row left.
 */
export async function queueOutbox(q: pg.Pool | pg.PoolClient, entry: OutboxEntry | undefined): Promise<void> {
  if (!entry || entry.urls.length === 0) return;
  await q.query({
    name: 'orchard-queue-outbox',
    text: 'INSERT INTO outbox (url, event) SELECT unnest($1::text[]), $2',
    values: [entry.urls, JSON.stringify(entry.event)],
  });
}

/** One transaction on one connection of `pool`: committed when `fn` resolves, rolled back when it throws. */
export async function transaction<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const out = await fn(client);
    await client.query('COMMIT');
    return out;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

export class PgStore implements Store {
  /** Buffered touches: enrollment id -> ms. */
  private readonly seen = new Map<string, number>();
  /** The same touches by device (a user channel's counts for its device): getStatus overlays them instead of writing them first. */
  private readonly seenDevice = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;
  private flushing?: Promise<void>;
  private readonly foldTimer: NodeJS.Timeout;
  private folding?: Promise<unknown>;
  private closing?: Promise<void>;
  /** commitReconcile calls waiting for the next group commit, and the loop writing them. */
  private commits: PendingCommit[] = [];
  private committing?: Promise<void>;

  // Point reads batched per turn of the event loop (src/store/batch.ts): the reconciler reads a
  // device, its state and its status row for every device in flight, one round trip each.
  private readonly deviceReads = new ReadBatch<string>(async (ids) => {
    const { rows } = await this.pool.query<{ id: string; record: string }>({
      name: 'orchard-devices',
      text: 'SELECT id, record FROM devices WHERE id = ANY($1::text[])',
      values: [ids],
    });
    return new Map(rows.map((r) => [r.id, r.record]));
  });
  private readonly artifactReads = new ReadBatch<{ version: number; state: string }>(async (ids) => {
    const { rows } = await this.pool.query<{ device_id: string; version: number; state: string }>({
      name: 'orchard-artifacts',
      text: 'SELECT device_id, version, state FROM artifacts WHERE device_id = ANY($1::text[])',
      values: [ids],
    });
    return new Map(rows.map((r) => [r.device_id, r]));
  });
  private readonly statusReads = new ReadBatch<{ row: string; seen: Date }>(async (ids) => {
    const { rows } = await this.pool.query<{ device_id: string; row: string; seen: Date }>({
      name: 'orchard-statuses',
      text: 'SELECT device_id, row, seen FROM status_rows WHERE device_id = ANY($1::text[])',
      values: [ids],
    });
    return new Map(rows.map((r) => [r.device_id, r]));
  });
  private readonly enrollmentReads = new ReadBatch<EnrollmentRow>(async (ids) => {
    const { rows } = await this.pool.query<EnrollmentRow & { id: string }>({
      name: 'orchard-enrollments',
      text: 'SELECT id, record, unlock_token, last_seen_at FROM enrollments WHERE id = ANY($1::text[])',
      values: [ids],
    });
    return new Map(rows.map((r) => [r.id, r]));
  });
  /** Keyed by `commandKey(enrollment, uuid)`. */
  private readonly commandReads = new ReadBatch<CommandRow>(async (keys) => {
    const pairs = keys.map((k) => JSON.parse(k) as [string, string]);
    const { rows } = await this.pool.query<CommandRow & { enrollment_id: string }>({
      name: 'orchard-commands',
      text: `SELECT c.enrollment_id, ${COMMAND_COLUMNS.replace(/(^|, )/g, '$1c.')} FROM commands c
             JOIN unnest($1::text[], $2::text[]) AS t(e, u) ON c.enrollment_id = t.e AND c.uuid = t.u`,
      values: [pairs.map((p) => p[0]), pairs.map((p) => p[1])],
    });
    return new Map(rows.map((r) => [commandKey(r.enrollment_id, r.uuid), r]));
  });

  private constructor(
    private readonly pool: pg.Pool,
    opts: PgStoreOptions,
  ) {
    this.timer = setInterval(() => void this.flushTouches().catch(() => undefined), opts.touchFlushMs ?? 2000);
    this.timer.unref();
    this.foldTimer = setInterval(() => {
      this.folding ??= this.foldCounts()
        .catch(() => undefined)
        .finally(() => (this.folding = undefined));
    }, opts.countFoldMs ?? 1000);
    this.foldTimer.unref();
  }

  static async open(url: string, opts: PgStoreOptions = {}): Promise<PgStore> {
    const pool = createPool(url, opts.poolSize ?? 10);
    try {
      await migrate(pool, { apply: opts.migrate ?? true });
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw err;
    }
    return new PgStore(pool, opts);
  }

  // --- helpers ---

  /** The pool, for the other store roles on the same database (src/store/postgres-roles.ts); it ends when this store closes. */
  sharedPool(): pg.Pool {
    return this.pool;
  }

  private tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    return transaction(this.pool, fn);
  }

  private async lockDevice(c: pg.PoolClient, deviceId: string): Promise<void> {
    await c.query({ name: 'orchard-lock-device', text: 'SELECT pg_advisory_xact_lock($1, hashtext($2))', values: [DEVICE_LOCK, deviceId] });
  }

  /**
   * Command locks in one order (by lock key), so two holders of several never wait in a cycle:
   * `uuids` exclusive (their payloads may be collected), `adding` shared (commands are only added
   * under them; a uuid in both is exclusive).
   */
  private async lockCommands(c: pg.PoolClient, uuids: Iterable<string>, adding: Iterable<string> = []): Promise<void> {
    const locks = commandLocks(uuids, adding);
    if (!locks.uuids.length) return;
    await c.query({ name: 'orchard-lock-commands', text: LOCK_COMMANDS, values: [COMMAND_LOCK, locks.uuids, locks.exclusive] });
  }

  /** Delete payloads no command references any more. Call holding the uuids' command locks. */
  private async collect(c: pg.PoolClient, uuids: string[]): Promise<void> {
    if (!uuids.length) return;
    await c.query('DELETE FROM payloads p WHERE p.uuid = ANY($1) AND NOT EXISTS (SELECT 1 FROM commands c WHERE c.uuid = p.uuid)', [[...new Set(uuids)]]);
  }

  private async deviceRecord(db: Db, deviceId: string, forUpdate = false): Promise<DeviceRecord | undefined> {
    const { rows } = await db.query<{ record: string }>(`SELECT record FROM devices WHERE id = $1${forUpdate ? ' FOR UPDATE' : ''}`, [deviceId]);
    return rows[0] ? (JSON.parse(rows[0].record) as DeviceRecord) : undefined;
  }

  private async putDevice(c: pg.PoolClient, dev: DeviceRecord): Promise<void> {
    await c.query('INSERT INTO devices (id, record) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record', [dev.id, JSON.stringify(dev)]);
  }

  /**
   * Write a device's status row: the facts from `dev` (or the stored record), the reconciler's
   * half from `profiles` (or as stored). No device, no row.
   */
  private putRow(c: pg.PoolClient, deviceId: string, dev: DeviceRecord | undefined, profiles: StatusProfiles | undefined): Promise<void> {
    return this.putRows(c, [{ deviceId, dev, profiles }]);
  }

  /**
   * `putRow` for several devices, in three statements whatever their number (a group commit's).
   * `stored`: their rows as stored (read by the caller under their locks), when it has them.
   */
  private async putRows(
    c: pg.PoolClient,
    items: { deviceId: string; dev: DeviceRecord | undefined; profiles: StatusProfiles | undefined }[],
    stored?: Map<string, string>,
  ): Promise<void> {
    if (!items.length) return;
    if (!stored) {
      const { rows } = await c.query<{ device_id: string; row: string }>({
        name: 'orchard-status-rows',
        text: 'SELECT device_id, row FROM status_rows WHERE device_id = ANY($1::text[])',
        values: [items.map((x) => x.deviceId)],
      });
      stored = new Map(rows.map((r) => [r.device_id, r.row]));
    }
    const prevs = new Map<string, DeviceStatus>();
    for (const x of items) {
      const row = stored.get(x.deviceId);
      if (row !== undefined) prevs.set(x.deviceId, JSON.parse(row) as DeviceStatus);
    }
    const missing = items.filter((x) => !x.dev && !prevs.has(x.deviceId)).map((x) => x.deviceId);
    const records = new Map<string, DeviceRecord>();
    if (missing.length) {
      const found = await c.query<{ id: string; record: string }>('SELECT id, record FROM devices WHERE id = ANY($1::text[])', [missing]);
      for (const r of found.rows) records.set(r.id, JSON.parse(r.record) as DeviceRecord);
    }
    const cols = { id: [] as string[], state: [] as string[], enrolled: [] as boolean[], blueprints: [] as string[], matched: [] as string[] };
    const more = { phases: [] as string[], seen: [] as number[], row: [] as string[] };
    for (const { deviceId, dev, profiles } of items) {
      const prev = prevs.get(deviceId);
      const record = dev ?? records.get(deviceId);
      const facts = record ? statusFacts(record) : prev?.facts;
      if (!facts) continue;
      const row: DeviceStatus = { id: deviceId, facts };
      const p = profiles ?? prev?.profiles;
      if (p) row.profiles = p;
      const auth = Date.parse(facts.authenticatedAt);
      cols.id.push(deviceId);
      cols.state.push(rowState(row));
      cols.enrolled.push(facts.enrolled);
      // text[] columns travel as JSON arrays: unnest cannot take an array of arrays of differing lengths.
      cols.blueprints.push(JSON.stringify(p?.blueprints ?? []));
      cols.matched.push(JSON.stringify(p?.matched ?? []));
      more.phases.push(JSON.stringify(p?.phases ?? {}));
      more.seen.push(Number.isNaN(auth) ? 0 : auth);
      more.row.push(JSON.stringify(row));
    }
    if (!cols.id.length) return;
    await c.query({
      name: 'orchard-put-status-rows',
      text: `INSERT INTO status_rows (device_id, state, enrolled, blueprints, matched, phases, seen, row)
             SELECT t.id, t.state, t.enrolled, ARRAY(SELECT json_array_elements_text(t.b::json)), ARRAY(SELECT json_array_elements_text(t.m::json)),
                    t.phases::json, to_timestamp(t.seen / 1000), t.row
             FROM unnest($1::text[], $2::text[], $3::bool[], $4::text[], $5::text[], $6::text[], $7::double precision[], $8::text[])
               AS t(id, state, enrolled, b, m, phases, seen, row)
             ON CONFLICT (device_id) DO UPDATE SET state = EXCLUDED.state, enrolled = EXCLUDED.enrolled, blueprints = EXCLUDED.blueprints,
               matched = EXCLUDED.matched, phases = EXCLUDED.phases, seen = GREATEST(status_rows.seen, EXCLUDED.seen), row = EXCLUDED.row`,
      values: [cols.id, cols.state, cols.enrolled, cols.blueprints, cols.matched, more.phases, more.seen, more.row],
    });
  }

  /** The channels a check-in on the device touches: the device channel and every enrollment of the device. */
  private async channelIds(c: pg.PoolClient, deviceId: string): Promise<string[]> {
    const { rows } = await c.query<{ id: string }>('SELECT id FROM enrollments WHERE device_id = $1', [deviceId]);
    const ids = rows.map((r) => r.id);
    return ids.includes(deviceId) ? ids : [deviceId, ...ids];
  }

  /** Inactivate enrollments (and drop their UnlockTokens when `dropSecrets`). */
  private async inactivate(c: pg.PoolClient, ids: string[], now: string, dropSecrets: boolean): Promise<void> {
    const { rows } = await c.query<{ id: string; record: string }>('SELECT id, record FROM enrollments WHERE id = ANY($1) FOR UPDATE', [ids]);
    const changed = rows.flatMap((r) => {
      const e = JSON.parse(r.record) as StoredEnrollment;
      if (!e.active) return dropSecrets ? [{ id: r.id, record: r.record }] : [];
      return [{ id: r.id, record: JSON.stringify({ ...e, active: false, updatedAt: now }) }];
    });
    if (!changed.length) return;
    await c.query(
      `UPDATE enrollments e SET record = t.record${dropSecrets ? ', unlock_token = NULL' : ''}
       FROM unnest($1::text[], $2::text[]) AS t(id, record) WHERE e.id = t.id`,
      [changed.map((x) => x.id), changed.map((x) => x.record)],
    );
  }

  /** Drop the pending commands of `ids`; returns the uuids dropped. */
  private async dropQueues(c: pg.PoolClient, ids: string[]): Promise<string[]> {
    const { rows } = await c.query<{ uuid: string }>("DELETE FROM commands WHERE enrollment_id = ANY($1) AND status IN ('Pending', 'NotNow') RETURNING uuid", [
      ids,
    ]);
    return rows.map((r) => r.uuid);
  }

  /**
   * Commands for their targets and their payloads (each stored once; other bytes under a uuid in
   * use are a Conflict, and the transaction is rolled back), in one round trip whatever their
   * number: a fleet-wide reconcile does this for every device. Call holding the uuids' command locks.
   */
  private async insertCommands(c: pg.PoolClient, items: { targets: string[]; cmd: NewCommand; enqueuedAt: string }[]): Promise<void> {
    const payloads = new Map<string, Buffer>();
    const rows = { e: [] as string[], u: [] as string[], r: [] as string[], p: [] as number[], at: [] as string[] };
    for (const { targets, cmd, enqueuedAt } of items) {
      const known = payloads.get(cmd.uuid);
      if (known && !known.equals(cmd.payload)) throw new Conflict(`command ${cmd.uuid} already exists with a different payload`);
      for (const t of targets) {
        rows.e.push(t);
        rows.u.push(cmd.uuid);
        rows.r.push(cmd.requestType);
        rows.p.push(cmd.priority ?? DEFAULT_PRIORITY);
        rows.at.push(enqueuedAt);
      }
      if (targets.length) payloads.set(cmd.uuid, cmd.payload);
    }
    if (!rows.e.length) return;
    const uuids = [...payloads.keys()];
    const res = await c.query<{ uuid: string; same: boolean | null }>({
      name: 'orchard-insert-commands',
      text: `WITH ins AS (INSERT INTO payloads (uuid, payload) SELECT * FROM unnest($1::text[], $2::bytea[]) ON CONFLICT (uuid) DO NOTHING RETURNING uuid),
                  cmd AS (INSERT INTO commands (enrollment_id, uuid, seq, request_type, priority, status, enqueued_at)
                          SELECT t.e, t.u, nextval('command_seq'), t.r, t.p, 'Pending', t.at
                          FROM unnest($3::text[], $4::text[], $5::text[], $6::smallint[], $7::text[]) WITH ORDINALITY AS t(e, u, r, p, at, o) ORDER BY t.o)
             SELECT t.u AS uuid, (SELECT p.payload = t.p FROM payloads p WHERE p.uuid = t.u) AS same
             FROM unnest($1::text[], $2::bytea[]) AS t(u, p) WHERE t.u NOT IN (SELECT uuid FROM ins)`,
      values: [uuids, [...payloads.values()], rows.e, rows.u, rows.r, rows.p, rows.at],
    });
    // null: the payload was committed by another transaction after this statement's snapshot.
    const unseen = res.rows.filter((r) => r.same === null).map((r) => r.uuid);
    const again = unseen.length
      ? await c.query<{ uuid: string; payload: Buffer }>('SELECT uuid, payload FROM payloads WHERE uuid = ANY($1::text[])', [unseen])
      : { rows: [] };
    const differs =
      res.rows.find((r) => r.same === false)?.uuid ?? unseen.find((u) => !again.rows.some((r) => r.uuid === u && r.payload.equals(payloads.get(u)!)));
    if (differs !== undefined) throw new Conflict(`command ${differs} already exists with a different payload`);
  }

  private overlaySeen(e: EnrollmentRecord, column: Date | null): EnrollmentRecord {
    const buffered = this.seen.get(e.id);
    const last = laterIso(
      laterIso(e.lastSeenAt, column ? column.toISOString() : undefined),
      buffered === undefined ? undefined : new Date(buffered).toISOString(),
    );
    if (last !== undefined) e.lastSeenAt = last;
    return e;
  }

  private fromRow(r: EnrollmentRow): EnrollmentRecord {
    const e = JSON.parse(r.record) as EnrollmentRecord;
    if (r.unlock_token !== null) e.unlockToken = r.unlock_token;
    return this.overlaySeen(e, r.last_seen_at);
  }

  /** Write buffered touches: the channels' last contact and the devices' status rows. */
  private async flushTouches(): Promise<void> {
    while (this.flushing) await this.flushing;
    if (this.seen.size === 0) return;
    const snap = [...this.seen];
    const snapDevice = [...this.seenDevice];
    this.flushing = (async () => {
      const ids = snap.map(([id]) => id);
      const ms = snap.map(([, t]) => t);
      await this.pool.query(
        `UPDATE enrollments e SET last_seen_at = GREATEST(e.last_seen_at, to_timestamp(t.ms / 1000))
         FROM unnest($1::text[], $2::double precision[]) AS t(id, ms) WHERE e.id = t.id`,
        [ids, ms],
      );
      await this.pool.query(
        `UPDATE status_rows s SET seen = GREATEST(s.seen, to_timestamp(t.ms / 1000))
         FROM (SELECT d, max(m) AS ms FROM unnest($1::text[], $2::double precision[]) AS u(d, m) GROUP BY d) AS t WHERE s.device_id = t.d`,
        [ids.map(deviceOfEnrollment), ms],
      );
      // Keep entries touched again meanwhile; reads overlay the buffer until it is written.
      for (const [id, t] of snap) if (this.seen.get(id) === t) this.seen.delete(id);
      for (const [id, t] of snapDevice) if (this.seenDevice.get(id) === t) this.seenDevice.delete(id);
    })();
    try {
      await this.flushing;
    } finally {
      this.flushing = undefined;
    }
  }

  // --- check-in ---

  async authenticate(deviceId: string, facts: DeviceFacts, identity: IdentityBinding, at: Date, change?: IdentityChange, event?: OutboxEntry): Promise<void> {
    checkDeviceId(deviceId);
    checkId('certificate hash', identity.certHash);
    const now = at.toISOString();
    await this.tx(async (c) => {
      await this.lockDevice(c, deviceId);
      const prev = await this.deviceRecord(c, deviceId, true);
      // Another device took this UDID over: what the old one reported describes the old one.
      const reenrolled = change !== undefined && change.kind !== 'renewal';
      const dev: DeviceRecord = { id: deviceId, facts, identity, authenticatedAt: now, reported: (!reenrolled && prev?.reported) || {} };
      if (prev?.checkedOutAt !== undefined) dev.checkedOutAt = prev.checkedOutAt;
      const changes = change ? [...(prev?.identityChanges ?? []), change].slice(-MAX_IDENTITY_CHANGES) : prev?.identityChanges;
      if (changes?.length) dev.identityChanges = changes;
      await this.putDevice(c, dev);
      // Secrets the old identity gave us are never handed to a new one.
      if (reenrolled) await c.query('DELETE FROM bootstrap_tokens WHERE device_id = $1', [deviceId]);
      // Only drop the old index entry if it still points here (the cert may have moved on).
      if (prev && prev.identity.certHash !== identity.certHash)
        await c.query('DELETE FROM certs WHERE cert_hash = $1 AND device_id = $2', [prev.identity.certHash, deviceId]);
      await c.query('INSERT INTO certs (cert_hash, device_id) VALUES ($1, $2) ON CONFLICT (cert_hash) DO UPDATE SET device_id = EXCLUDED.device_id', [
        identity.certHash,
        deviceId,
      ]);
      const ids = await this.channelIds(c, deviceId);
      await this.inactivate(c, ids, now, reenrolled);
      const dropped = await this.dropQueues(c, ids);
      await this.putRow(c, deviceId, dev, undefined);
      await this.lockCommands(c, dropped);
      await this.collect(c, dropped);
      await queueOutbox(c, event);
    });
  }

  async tokenUpdate(rec: EnrollmentRecord, onActivation?: OutboxEntry): Promise<{ activated: boolean }> {
    checkChannel(rec);
    return this.tx(async (c) => {
      await this.lockDevice(c, rec.deviceId);
      const { rows } = await c.query<{ record: string; unlock_token: Buffer | null }>('SELECT record, unlock_token FROM enrollments WHERE id = $1 FOR UPDATE', [
        rec.id,
      ]);
      const prev = rows[0] ? (JSON.parse(rows[0].record) as StoredEnrollment) : undefined;
      const { unlockToken, ...rest } = rec;
      const next: StoredEnrollment = { ...rest, active: true };
      let token = unlockToken ?? null;
      if (prev) {
        next.createdAt = prev.createdAt;
        // Devices send UnlockToken (and macOS the user names) only in some TokenUpdates: keep what we have.
        if (token === null) token = rows[0]!.unlock_token;
        if (next.userShortName === undefined && prev.userShortName !== undefined) next.userShortName = prev.userShortName;
        if (next.userLongName === undefined && prev.userLongName !== undefined) next.userLongName = prev.userLongName;
      }
      await c.query(
        `INSERT INTO enrollments (id, device_id, record, unlock_token) VALUES ($1, $2, $3, $4)
         ON CONFLICT (id) DO UPDATE SET device_id = EXCLUDED.device_id, record = EXCLUDED.record, unlock_token = EXCLUDED.unlock_token`,
        [rec.id, rec.deviceId, JSON.stringify(next), token],
      );
      if (rec.type === 'device') {
        const dev = await this.deviceRecord(c, rec.deviceId, true);
        if (dev && dev.enrolledAt === undefined) {
          const enrolled = { ...dev, enrolledAt: rec.updatedAt };
          await this.putDevice(c, enrolled);
          await this.putRow(c, rec.deviceId, enrolled, undefined);
        }
      }
      const activated = !prev || !prev.active;
      // A user channel enrolled anew is a cause to reconcile the device (its declarations), in this transaction.
      if (activated && rec.type === 'user') await addWorkRow(c, rec.deviceId, new Date());
      if (activated) await queueOutbox(c, onActivation);
      return { activated };
    });
  }

  async checkOut(enrollmentId: string, at: Date, event?: OutboxEntry): Promise<void> {
    checkId('enrollment id', enrollmentId);
    const now = at.toISOString();
    const devId = deviceOfEnrollment(enrollmentId);
    await this.tx(async (c) => {
      await this.lockDevice(c, devId);
      const { rows } = await c.query<{ record: string }>('SELECT record FROM enrollments WHERE id = $1', [enrollmentId]);
      const e = rows[0] ? (JSON.parse(rows[0].record) as StoredEnrollment) : undefined;
      const dev = await this.deviceRecord(c, devId, true);
      const isDeviceChannel = e ? e.type === 'device' : dev !== undefined && devId === enrollmentId;
      let dropped: string[];
      if (isDeviceChannel) {
        const ids = await this.channelIds(c, devId);
        await this.inactivate(c, ids, now, false);
        dropped = await this.dropQueues(c, ids);
        if (dev) {
          const { enrolledAt: _cleared, ...kept } = dev;
          const next = { ...kept, checkedOutAt: now };
          await this.putDevice(c, next);
          await this.putRow(c, devId, next, undefined);
        }
      } else {
        await this.inactivate(c, [enrollmentId], now, false);
        dropped = await this.dropQueues(c, [enrollmentId]);
      }
      await this.lockCommands(c, dropped);
      await this.collect(c, dropped);
      await queueOutbox(c, event);
    });
  }

  async rebindIdentity(deviceId: string, identity: IdentityBinding, change?: IdentityChange, event?: OutboxEntry): Promise<void> {
    checkId('device id', deviceId);
    checkId('certificate hash', identity.certHash);
    await this.tx(async (c) => {
      await this.lockDevice(c, deviceId);
      const dev = await this.deviceRecord(c, deviceId, true);
      if (!dev) throw new NotFound(`no device ${JSON.stringify(deviceId.slice(0, 80))} to rebind`);
      const next: DeviceRecord = { ...dev, identity };
      if (change) next.identityChanges = [...(dev.identityChanges ?? []), change].slice(-MAX_IDENTITY_CHANGES);
      await this.putDevice(c, next);
      await c.query('DELETE FROM certs WHERE cert_hash = $1 AND device_id = $2', [dev.identity.certHash, deviceId]);
      await c.query('INSERT INTO certs (cert_hash, device_id) VALUES ($1, $2) ON CONFLICT (cert_hash) DO UPDATE SET device_id = EXCLUDED.device_id', [
        identity.certHash,
        deviceId,
      ]);
      await queueOutbox(c, event);
    });
  }

  async touch(enrollmentId: string, at: Date): Promise<void> {
    checkId('enrollment id', enrollmentId);
    const ms = at.getTime();
    const prev = this.seen.get(enrollmentId);
    if (prev === undefined || ms > prev) this.seen.set(enrollmentId, ms);
    const deviceId = deviceOfEnrollment(enrollmentId);
    const prevDevice = this.seenDevice.get(deviceId);
    if (prevDevice === undefined || ms > prevDevice) this.seenDevice.set(deviceId, ms);
    if (this.seen.size >= 10_000) void this.flushTouches().catch(() => undefined);
  }

  async setBootstrapToken(deviceId: string, token: Buffer | null): Promise<void> {
    checkId('device id', deviceId);
    if (token === null) await this.pool.query('DELETE FROM bootstrap_tokens WHERE device_id = $1', [deviceId]);
    else
      await this.pool.query('INSERT INTO bootstrap_tokens (device_id, token) VALUES ($1, $2) ON CONFLICT (device_id) DO UPDATE SET token = EXCLUDED.token', [
        deviceId,
        token,
      ]);
  }

  async getBootstrapToken(deviceId: string): Promise<Buffer | undefined> {
    checkId('device id', deviceId);
    const { rows } = await this.pool.query<{ token: Buffer }>('SELECT token FROM bootstrap_tokens WHERE device_id = $1', [deviceId]);
    return rows[0]?.token;
  }

  // --- inventory ---

  async getDevice(deviceId: string): Promise<DeviceRecord | undefined> {
    checkId('device id', deviceId);
    const record = await this.deviceReads.load(deviceId);
    return record === undefined ? undefined : (JSON.parse(record) as DeviceRecord);
  }

  async deviceForCert(certHash: string): Promise<string | undefined> {
    checkId('certificate hash', certHash);
    const { rows } = await this.pool.query<{ device_id: string }>('SELECT device_id FROM certs WHERE cert_hash = $1', [certHash]);
    return rows[0]?.device_id;
  }

  async listDevices(page?: PageRequest): Promise<Page<DeviceRecord>> {
    const limit = pageLimit(page);
    const { rows } = await this.pool.query<{ record: string }>('SELECT record FROM devices WHERE $1::text IS NULL OR id > $1 ORDER BY id LIMIT $2', [
      pageCursor(page) ?? null,
      limit + 1,
    ]);
    return pageOf(
      rows.map((r) => JSON.parse(r.record) as DeviceRecord),
      limit,
      (d) => d.id,
    );
  }

  async listDeviceIds(page?: PageRequest): Promise<Page<string>> {
    const limit = pageLimit(page);
    const { rows } = await this.pool.query<{ id: string }>('SELECT id FROM devices WHERE $1::text IS NULL OR id > $1 ORDER BY id LIMIT $2', [
      pageCursor(page) ?? null,
      limit + 1,
    ]);
    return pageOf(
      rows.map((r) => r.id),
      limit,
      (id) => id,
    );
  }

  async getEnrollment(enrollmentId: string): Promise<EnrollmentRecord | undefined> {
    checkId('enrollment id', enrollmentId);
    const row = await this.enrollmentReads.load(enrollmentId);
    return row && this.fromRow(row);
  }

  async listEnrollments(deviceId: string): Promise<EnrollmentRecord[]> {
    checkId('device id', deviceId);
    const { rows } = await this.pool.query<EnrollmentRow>('SELECT record, unlock_token, last_seen_at FROM enrollments WHERE device_id = $1 ORDER BY id', [
      deviceId,
    ]);
    return rows.map((r) => this.fromRow(r));
  }

  // --- command queue ---

  async enqueue(targets: string[], cmd: NewCommand, at: Date): Promise<void> {
    checkCommand(cmd);
    const uniq = checkTargets(targets);
    if (!uniq.length) return;
    await this.tx(async (c) => {
      await this.lockCommands(c, [cmd.uuid]);
      const { rows } = await c.query<{ enrollment_id: string }>('SELECT enrollment_id FROM commands WHERE uuid = $1 AND enrollment_id = ANY($2)', [
        cmd.uuid,
        uniq,
      ]);
      if (rows.length) {
        const dup = uniq.filter((t) => rows.some((r) => r.enrollment_id === t));
        throw new Conflict(`command ${cmd.uuid} already exists for ${dup.slice(0, 3).join(', ')}${dup.length > 3 ? ` and ${dup.length - 3} more` : ''}`);
      }
      await this.insertCommands(c, [{ targets: uniq, cmd, enqueuedAt: at.toISOString() }]);
    });
  }

  async nextCommand(enrollmentId: string, opts: { skipNotNow: boolean }): Promise<QueuedCommand | undefined> {
    checkId('enrollment id', enrollmentId);
    const { rows } = await this.pool.query<{
      uuid: string;
      request_type: string;
      priority: number;
      status: 'Pending' | 'NotNow';
      enqueued_at: string;
      payload: Buffer;
    }>({
      name: opts.skipNotNow ? 'orchard-next-pending' : 'orchard-next',
      text: `SELECT c.uuid, c.request_type, c.priority, c.status, c.enqueued_at, p.payload FROM commands c JOIN payloads p ON p.uuid = c.uuid
             WHERE c.enrollment_id = $1 AND c.status IN (${opts.skipNotNow ? "'Pending'" : "'Pending', 'NotNow'"}) ORDER BY c.priority DESC, c.seq LIMIT 1`,
      values: [enrollmentId],
    });
    const r = rows[0];
    return r && { uuid: r.uuid, requestType: r.request_type, payload: r.payload, priority: r.priority, status: r.status, enqueuedAt: r.enqueued_at };
  }

  // --- results ---

  async recordResult(enrollmentId: string, commandUUID: string, result: CommandResult, reported?: ReportedState, event?: OutboxEntry): Promise<RecordOutcome> {
    return (await this.answer(enrollmentId, commandUUID, result, reported, false, event)).outcome;
  }

  recordResultAndNext(
    enrollmentId: string,
    commandUUID: string,
    result: CommandResult,
    reported?: ReportedState,
    event?: OutboxEntry,
  ): Promise<{ outcome: RecordOutcome; next: QueuedCommand | undefined }> {
    return this.answer(enrollmentId, commandUUID, result, reported, true, event);
  }

  /**
   * An answer in one statement (migration 007): the device record as read here, merged with
   * `reported`, is written only if it is still the stored one (else read and merge again). A
   * DeviceInformation (the status row's facts are computed here) and an erasure take the
   * transaction instead.
   */
  private async answer(
    enrollmentId: string,
    commandUUID: string,
    result: CommandResult,
    reported: ReportedState | undefined,
    withNext: boolean,
    event: OutboxEntry | undefined,
  ): Promise<{ outcome: RecordOutcome; next: QueuedCommand | undefined }> {
    checkId('enrollment id', enrollmentId);
    checkId('command uuid', commandUUID);
    const atMs = checkResult(commandUUID, result);
    const devId = deviceOfEnrollment(enrollmentId);
    const entries = reported ? Object.entries(reported).filter(([, v]) => v !== undefined) : [];
    // The event rides in the answer's statement; without one the statement is the one it always was.
    const outbox = event && event.urls.length ? [event.urls, JSON.stringify(event.event)] : [];
    if (!reported?.DeviceInformation) {
      for (let attempt = 0; attempt < 5; attempt++) {
        const read = entries.length ? ((await this.deviceReads.load(devId)) ?? null) : null;
        let merged: string | null = null;
        if (read !== null) {
          const dev = JSON.parse(read) as DeviceRecord;
          merged = JSON.stringify({ ...dev, reported: { ...dev.reported, ...Object.fromEntries(entries) } });
        }
        const { rows } = await this.pool.query<AnswerRow>({
          name: outbox.length ? 'orchard-record-result-event' : 'orchard-record-result',
          text: outbox.length ? RECORD_RESULT_WITH_EVENT : RECORD_RESULT,
          values: [
            enrollmentId,
            devId,
            commandUUID,
            result.status,
            result.at,
            atMs,
            result.errorChain ? JSON.stringify(result.errorChain) : null,
            result.raw,
            read,
            merged,
            // After an answer, commands answered NotNow wait for the next Idle (the service's rule).
            withNext ? true : null,
            ...outbox,
          ],
        });
        const r = rows[0]!;
        if (r.outcome === 'moved') continue;
        if (r.outcome === 'erase') break;
        const next: QueuedCommand | undefined =
          r.next_uuid === null
            ? undefined
            : {
                uuid: r.next_uuid,
                requestType: r.next_request_type!,
                payload: r.next_payload!,
                priority: r.next_priority!,
                status: r.next_status!,
                enqueuedAt: r.next_enqueued_at!,
              };
        return { outcome: r.outcome, next };
      }
    }
    const outcome = await this.recordInTransaction(enrollmentId, commandUUID, result, reported, atMs, devId, event);
    return { outcome, next: withNext ? await this.nextCommand(enrollmentId, { skipNotNow: true }) : undefined };
  }

  /** recordResult as a transaction of several statements: for what the one-statement path leaves to it. */
  private recordInTransaction(
    enrollmentId: string,
    commandUUID: string,
    result: CommandResult,
    reported: ReportedState | undefined,
    atMs: number,
    devId: string,
    event: OutboxEntry | undefined,
  ): Promise<RecordOutcome> {
    return this.tx(async (c) => {
      await this.lockDevice(c, devId);
      const { rows } = await c.query<{ status: CommandStatus; request_type: string }>(
        'SELECT status, request_type FROM commands WHERE enrollment_id = $1 AND uuid = $2 FOR UPDATE',
        [enrollmentId, commandUUID],
      );
      const cmd = rows[0];
      if (!cmd) return 'unknown';
      if (FINAL.has(cmd.status)) return 'duplicate';
      if (result.status === 'NotNow') {
        await c.query("UPDATE commands SET status = 'NotNow', not_now_count = not_now_count + 1, updated_at = $3 WHERE enrollment_id = $1 AND uuid = $2", [
          enrollmentId,
          commandUUID,
          result.at,
        ]);
        await queueOutbox(c, event);
        return 'notnow';
      }
      await c.query(
        `UPDATE commands SET status = $3, updated_at = $4, result_at = $4, result_ts = to_timestamp($5::double precision / 1000), error_chain = $6, raw = $7
         WHERE enrollment_id = $1 AND uuid = $2`,
        [enrollmentId, commandUUID, result.status, result.at, atMs, result.errorChain ? JSON.stringify(result.errorChain) : null, result.raw],
      );
      const entries = reported ? Object.entries(reported).filter(([, v]) => v !== undefined) : [];
      // The device confirmed its erasure: the identity it enrolled with is gone (re-enroll policy).
      const erased = result.status === 'Acknowledged' && cmd.request_type === 'EraseDevice' && enrollmentId === devId;
      const dev = entries.length || erased ? await this.deviceRecord(c, devId, true) : undefined;
      if (dev) {
        const next: DeviceRecord = entries.length ? { ...dev, reported: { ...dev.reported, ...Object.fromEntries(entries) } } : { ...dev };
        if (erased) next.erasedAt = result.at;
        await this.putDevice(c, next);
        if (reported?.DeviceInformation) await this.putRow(c, devId, next, undefined);
      }
      // The device's answer is a cause to reconcile it, in the answer's transaction (src/store/roles/work.ts).
      if (enrollmentId === devId) await addWorkRow(c, devId, new Date(atMs));
      await queueOutbox(c, event);
      return 'recorded';
    });
  }

  async getCommand(enrollmentId: string, commandUUID: string): Promise<CommandView | undefined> {
    checkId('enrollment id', enrollmentId);
    checkId('command uuid', commandUUID);
    const row = await this.commandReads.load(commandKey(enrollmentId, commandUUID));
    return row && view(row);
  }

  async listCommands(enrollmentId: string, page?: PageRequest): Promise<Page<CommandView>> {
    checkId('enrollment id', enrollmentId);
    const limit = pageLimit(page);
    const cursor = pageCursor(page);
    if (cursor !== undefined && !/^\d{1,18}$/.test(cursor)) throw new Malformed(`page cursor ${JSON.stringify(cursor)} is not a command cursor`);
    const { rows } = await this.pool.query<CommandRow>(`SELECT ${COMMAND_COLUMNS} FROM commands WHERE enrollment_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, [
      enrollmentId,
      cursor ?? '0',
      limit + 1,
    ]);
    const { items, next } = pageOf(rows, limit, (r) => String(r.seq));
    return next === undefined ? { items: items.map(view) } : { items: items.map(view), next };
  }

  async compact(before: Date): Promise<number> {
    let removed = 0;
    for (;;) {
      const n = await this.tx(async (c) => {
        const { rows } = await c.query<{ uuid: string }>(
          'DELETE FROM commands WHERE ctid IN (SELECT ctid FROM commands WHERE result_ts < $1 LIMIT 1000) RETURNING uuid',
          [before.toISOString()],
        );
        const uuids = rows.map((r) => r.uuid);
        await this.lockCommands(c, uuids);
        await this.collect(c, uuids);
        return rows.length;
      });
      removed += n;
      if (n < 1000) return removed;
    }
  }

  // --- reconcile state ---

  async getArtifacts(deviceId: string): Promise<VersionedArtifacts | undefined> {
    checkId('device id', deviceId);
    const row = await this.artifactReads.load(deviceId);
    return row && { ...(JSON.parse(row.state) as DeviceArtifacts), version: row.version };
  }

  async listArtifacts(page?: PageRequest): Promise<Page<VersionedArtifacts>> {
    const limit = pageLimit(page);
    const { rows } = await this.pool.query<{ version: number; state: string }>(
      'SELECT version, state FROM artifacts WHERE $1::text IS NULL OR device_id > $1 ORDER BY device_id LIMIT $2',
      [pageCursor(page) ?? null, limit + 1],
    );
    return pageOf(
      rows.map((r) => ({ ...(JSON.parse(r.state) as DeviceArtifacts), version: r.version })),
      limit,
      (a) => a.deviceId,
    );
  }

  /**
   * Group commit: the calls that arrive while a commit transaction is out are written together in
   * the next one (the reconciler keeps 32 devices in flight; one transaction and a dozen
   * multi-row statements for all of them instead of a dozen round trips each). Each device keeps
   * its compare-and-set: a stale version fails that device's call alone. Anything else that fails
   * a batch (a payload Conflict) is found by committing its devices one by one.
   */
  async commitReconcile(
    deviceId: string,
    state: DeviceArtifacts,
    change: ReconcileChange,
    at: Date,
    expectedVersion: number,
  ): Promise<{ cancelled: string[]; version: number }> {
    checkId('device id', deviceId);
    checkChange(change);
    const enqueue = change.enqueue.map(({ targets, cmd }) => ({ targets: checkTargets(targets), cmd }));
    return new Promise<{ cancelled: string[]; version: number }>((resolve, reject) => {
      this.commits.push({ deviceId, state: JSON.stringify(withoutVersion(state)), change, enqueue, at: at.toISOString(), expectedVersion, resolve, reject });
      this.startCommits();
    });
  }

  private startCommits(): void {
    if (this.committing) return;
    this.committing = (async () => {
      // One turn first: the calls made in this one come in the same batch.
      await new Promise<void>((r) => setImmediate(r));
      while (this.commits.length) {
        // A device at most once per batch (its second call waits for the next one).
        const batch: PendingCommit[] = [];
        const later: PendingCommit[] = [];
        const inBatch = new Set<string>();
        for (const p of this.commits) {
          if (batch.length < COMMIT_BATCH && !inBatch.has(p.deviceId)) {
            batch.push(p);
            inBatch.add(p.deviceId);
          } else later.push(p);
        }
        this.commits = later;
        await this.commitBatch(batch);
      }
    })().finally(() => {
      this.committing = undefined;
      if (this.commits.length) this.startCommits();
    });
  }

  private async commitBatch(batch: PendingCommit[]): Promise<void> {
    let outcomes: (Error | { cancelled: string[]; version: number })[];
    try {
      outcomes = await this.tx((c) => this.writeCommits(c, batch));
    } catch (err) {
      if (batch.length === 1) {
        batch[0]!.reject(err);
        return;
      }
      for (const p of batch) await this.commitBatch([p]);
      return;
    }
    batch.forEach((p, i) => {
      const o = outcomes[i]!;
      if (o instanceof Error) p.reject(o);
      else p.resolve(o);
    });
  }

  /** The batch's commits in transaction `c`: a VersionConflictError for each device whose state moved on, the others written. */
  private async writeCommits(c: pg.PoolClient, batch: PendingCommit[]): Promise<(Error | { cancelled: string[]; version: number })[]> {
    const ids = batch.map((p) => p.deviceId);
    // Device locks in one order (by lock key), as the command locks.
    await c.query({
      name: 'orchard-lock-devices',
      text: 'SELECT pg_advisory_xact_lock($1, k.h) FROM (SELECT DISTINCT hashtext(d) AS h FROM unnest($2::text[]) AS d ORDER BY 1) AS k',
      values: [DEVICE_LOCK, ids],
    });
    // Under the locks (a statement of its own: its snapshot is taken after they are granted), the
    // versions to compare and the status rows the commit rewrites.
    const { rows } = await c.query<{ device_id: string; version: number | null; row: string | null }>({
      name: 'orchard-lock-versions',
      text: `WITH v AS (SELECT device_id, version FROM artifacts WHERE device_id = ANY($1::text[]) FOR UPDATE)
             SELECT d AS device_id, v.version, s.row FROM unnest($1::text[]) AS d
             LEFT JOIN v ON v.device_id = d LEFT JOIN status_rows s ON s.device_id = d`,
      values: [ids],
    });
    const current = new Map(rows.filter((r) => r.version !== null).map((r) => [r.device_id, r.version!]));
    const stored = new Map(rows.filter((r) => r.row !== null).map((r) => [r.device_id, r.row!]));
    const outcomes: (Error | { cancelled: string[]; version: number })[] = batch.map((p) => {
      const v = current.get(p.deviceId) ?? 0;
      return v === p.expectedVersion ? { cancelled: [], version: v + 1 } : new VersionConflictError(p.deviceId, p.expectedVersion, v);
    });
    const ok = batch.filter((_, i) => !(outcomes[i] instanceof Error));
    if (!ok.length) return outcomes;
    // The new states, and the command locks for what follows (the states need none), in one trip.
    const locks = commandLocks(
      ok.flatMap((p) => p.change.cancel.map((x) => x.uuid)),
      ok.flatMap((p) => p.enqueue.map((e) => e.cmd.uuid)),
    );
    await c.query({
      name: 'orchard-put-artifacts',
      text: `WITH a AS (INSERT INTO artifacts (device_id, version, state) SELECT * FROM unnest($4::text[], $5::integer[], $6::text[])
                       ON CONFLICT (device_id) DO UPDATE SET version = EXCLUDED.version, state = EXCLUDED.state)
             ${LOCK_COMMANDS}`,
      values: [COMMAND_LOCK, locks.uuids, locks.exclusive, ok.map((p) => p.deviceId), ok.map((p) => p.expectedVersion + 1), ok.map((p) => p.state)],
    });
    const cancels = ok.flatMap((p) => p.change.cancel);
    const gone = new Set<string>();
    if (cancels.length) {
      const del = await c.query<{ enrollment_id: string; uuid: string }>(
        `DELETE FROM commands c USING unnest($1::text[], $2::text[]) AS t(e, u)
         WHERE c.enrollment_id = t.e AND c.uuid = t.u AND c.status IN ('Pending', 'NotNow') RETURNING c.enrollment_id, c.uuid`,
        [cancels.map((x) => x.enrollmentId), cancels.map((x) => x.uuid)],
      );
      for (const r of del.rows) gone.add(commandKey(r.enrollment_id, r.uuid));
    }
    await this.insertCommands(
      c,
      ok.flatMap((p) => p.enqueue.map((e) => ({ ...e, enqueuedAt: p.at }))),
    );
    await this.putRows(
      c,
      ok.filter((p) => p.change.status).map((p) => ({ deviceId: p.deviceId, dev: undefined, profiles: p.change.status })),
      stored,
    );
    const collected: string[] = [];
    batch.forEach((p, i) => {
      const o = outcomes[i]!;
      if (o instanceof Error) return;
      o.cancelled = p.change.cancel.filter((x) => gone.has(commandKey(x.enrollmentId, x.uuid))).map((x) => x.uuid);
      collected.push(...o.cancelled);
    });
    await this.collect(c, collected);
    return outcomes;
  }

  // --- read model ---

  async getStatus(deviceId: string): Promise<DeviceStatus | undefined> {
    checkId('device id', deviceId);
    // No flush first: the reconciler reads this after every result, and a flush is two UPDATEs.
    const row = await this.statusReads.load(deviceId);
    if (!row) return undefined;
    const buffered = this.seenDevice.get(deviceId);
    return withSeen(buffered !== undefined && buffered > row.seen.getTime() ? { row: row.row, seen: new Date(buffered) } : row);
  }

  /**
   * Only the reconciler's half changes, so no device lock: the row as read (batched) is replaced
   * only if it is still the stored one, one statement; a row written meanwhile is read again.
   */
  async putStatus(deviceId: string, profiles: StatusProfiles): Promise<void> {
    checkId('device id', deviceId);
    for (let attempt = 0; attempt < 5; attempt++) {
      const read = await this.statusReads.load(deviceId);
      if (!read) return; // no device, no row
      const row: DeviceStatus = { id: deviceId, facts: (JSON.parse(read.row) as DeviceStatus).facts, profiles };
      const { rowCount } = await this.pool.query({
        name: 'orchard-put-status',
        text: 'UPDATE status_rows SET state = $2, blueprints = $3, matched = $4, phases = $5, row = $6 WHERE device_id = $1 AND row = $7',
        values: [deviceId, rowState(row), profiles.blueprints, profiles.matched, JSON.stringify(profiles.phases), JSON.stringify(row), read.row],
      });
      if (rowCount) return;
    }
    await this.tx(async (c) => {
      await this.lockDevice(c, deviceId);
      const { rows } = await c.query('SELECT 1 FROM status_rows WHERE device_id = $1', [deviceId]);
      if (rows.length) await this.putRow(c, deviceId, undefined, profiles);
    });
  }

  /**
   * Fold the count deltas the status row trigger appended into `status_counts` (migration 008):
   * readers add what is left, so this only keeps their work small. One replica at a time (the
   * others skip); the deltas it folds are those its snapshot sees, each folded once.
   */
  async foldCounts(): Promise<number> {
    const folded = await this.tx(async (c) => {
      const { rows } = await c.query<{ got: boolean }>('SELECT pg_try_advisory_xact_lock($1) AS got', [FOLD_LOCK]);
      if (!rows[0]?.got) return 0;
      const fold = await c.query<{ folded: string }>({
        name: 'orchard-fold-counts',
        text: `WITH d AS (DELETE FROM status_count_deltas RETURNING blueprint, kind, key, n),
               i AS (INSERT INTO status_counts AS c (blueprint, kind, key, n)
                     SELECT blueprint, kind, key, sum(n) FROM d GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
                     ON CONFLICT (blueprint, kind, key) DO UPDATE SET n = c.n + EXCLUDED.n)
               SELECT count(*) AS folded FROM d`,
      });
      // Keys no row counts for any more (a profile or blueprint gone).
      await c.query({ name: 'orchard-fold-zeros', text: 'DELETE FROM status_counts WHERE n = 0' });
      return Number(fold.rows[0]?.folded ?? 0);
    });
    // Every read scans the deltas table, dead rows included, until it is vacuumed: after a change
    // of 100,000 devices' rows the counts read took 32 ms instead of 3.7 ms until autovacuum came
    // (a minute or more). VACUUM cannot run in a transaction; a role that may not vacuum leaves it
    // to autovacuum.
    if (folded >= VACUUM_DELTAS_AFTER) await this.pool.query('VACUUM status_count_deltas').catch(() => undefined);
    return folded;
  }

  /** Kept counts of `blueprints` ('' is the fleet): the folded ones plus the deltas not folded yet, in one snapshot. */
  private async keptCounts(
    blueprints: string[],
    extra = '',
    extraValues: unknown[] = [],
  ): Promise<{ blueprint: string; kind: string; key: string; n: string }[]> {
    const { rows } = await this.pool.query<{ blueprint: string; kind: string; key: string; n: string }>(
      `SELECT blueprint, kind, key, sum(n) AS n FROM (
         SELECT blueprint, kind, key, n FROM status_counts WHERE blueprint = ANY($1)
         UNION ALL SELECT blueprint, kind, key, n FROM status_count_deltas WHERE blueprint = ANY($1)
       ) AS k GROUP BY 1, 2, 3 HAVING sum(n) <> 0${extra}`,
      [blueprints, ...extraValues],
    );
    return rows;
  }

  async fleetCounts(opts: { now: Date; staleDays: number }): Promise<FleetCounts> {
    await this.flushTouches();
    const cut = new Date(opts.now.getTime() - opts.staleDays * 86_400_000).toISOString();
    // Stale depends on the time asked for, so it is counted: an index range over the stale rows only.
    const rows = await this.keptCounts([''], " UNION ALL SELECT '', 'stale', '', count(*) FROM status_rows WHERE seen < $2", [cut]);
    const byState = emptyByState();
    let total = 0;
    let enrolled = 0;
    let stale = 0;
    for (const r of rows) {
      if (r.kind === 'fleet' && (DEVICE_STATES as readonly string[]).includes(r.key)) {
        byState[r.key as DeviceState] = Number(r.n);
        total += Number(r.n);
      } else if (r.kind === 'enrolled') enrolled = Number(r.n);
      else if (r.kind === 'stale') stale = Number(r.n);
    }
    return { total, enrolled, byState, stale };
  }

  async blueprintCounts(names: string[]): Promise<Record<string, BlueprintCounts>> {
    const out: Record<string, BlueprintCounts> = {};
    for (const n of names) out[n] = { matched: 0, selected: 0, byState: emptyByState(), verified: {}, failed: {} };
    // '' is the fleet's, never a blueprint's.
    const asked = names.filter((n) => n !== '');
    if (!asked.length) return out;
    for (const r of await this.keptCounts(asked)) {
      const b = out[r.blueprint]!;
      const n = Number(r.n);
      if (r.kind === 'matched') b.matched = n;
      else if (r.kind === 'state' && (DEVICE_STATES as readonly string[]).includes(r.key)) b.byState[r.key as DeviceState] = n;
      else if (r.kind === 'verified') b.verified[r.key] = n;
      else if (r.kind === 'failed') b.failed[r.key] = n;
    }
    for (const n of names) out[n]!.selected = DEVICE_STATES.reduce((s, st) => s + out[n]!.byState[st], 0);
    return out;
  }

  /** How many rows match a filter, from the kept counts; undefined for stale (counted from the rows). */
  private async matching(state: StatusQuery['state'], blueprint: string | undefined): Promise<number | undefined> {
    if (state === 'stale') return undefined;
    if (blueprint === '') return 0;
    const kind = blueprint === undefined ? 'fleet' : 'state';
    const rows = await this.keptCounts([blueprint ?? '']);
    return rows.filter((r) => r.kind === kind && (state === undefined ? r.key !== '' : r.key === state)).reduce((n, r) => n + Number(r.n), 0);
  }

  async queryStatus(q: StatusQuery): Promise<{ total: number; devices: DeviceStatus[] }> {
    await this.flushTouches();
    const where: string[] = [];
    const values: unknown[] = [];
    if (q.state === 'stale') {
      values.push(new Date(q.now.getTime() - q.staleDays * 86_400_000).toISOString());
      where.push(`seen < $${values.length}`);
    } else if (q.state !== undefined) {
      values.push(q.state);
      where.push(`state = $${values.length}`);
    }
    if (q.blueprint !== undefined) {
      values.push(q.blueprint);
      where.push(`$${values.length} = ANY(blueprints)`);
    }
    const filter = where.length ? `WHERE ${where.join(' AND ')}` : '';
    const kept = this.matching(q.state, q.blueprint);
    const counted = (await kept) ?? Number((await this.pool.query<{ n: string }>(`SELECT count(*) AS n FROM status_rows ${filter}`, values)).rows[0]?.n ?? 0);
    const pageValues = [...values];
    const pageWhere = [...where];
    if (q.after !== undefined) {
      pageValues.push(q.after);
      pageWhere.push(`device_id > $${pageValues.length}`);
    }
    pageValues.push(q.offset ?? 0, q.limit);
    // A state's page walks (state, device_id) in order and stops at the limit.
    const { rows } = await this.pool.query<{ row: string; seen: Date }>(
      `SELECT row, seen FROM status_rows ${pageWhere.length ? `WHERE ${pageWhere.join(' AND ')}` : ''} ORDER BY device_id OFFSET $${pageValues.length - 1} LIMIT $${pageValues.length}`,
      pageValues,
    );
    return { total: counted, devices: rows.map(withSeen) };
  }

  // --- transfer (orchard store copy, src/store/transfer.ts) ---

  async commandPayload(uuid: string): Promise<Buffer | undefined> {
    checkId('command uuid', uuid);
    const { rows } = await this.pool.query<{ payload: Buffer }>('SELECT payload FROM payloads WHERE uuid = $1', [uuid]);
    return rows[0]?.payload;
  }

  /** One transaction: the device, its certificate, secrets, channels, commands in their order, reconcile state and status row. */
  async importDevice(d: DeviceExport): Promise<void> {
    const id = d.device.id;
    checkDeviceId(id);
    await this.tx(async (c) => {
      await this.lockDevice(c, id);
      if (await this.deviceRecord(c, id)) throw new Conflict(`device ${id} is already in the target store`);
      await this.putDevice(c, d.device);
      await c.query('INSERT INTO certs (cert_hash, device_id) VALUES ($1, $2) ON CONFLICT (cert_hash) DO UPDATE SET device_id = EXCLUDED.device_id', [
        d.device.identity.certHash,
        id,
      ]);
      if (d.bootstrapToken) await c.query('INSERT INTO bootstrap_tokens (device_id, token) VALUES ($1, $2)', [id, d.bootstrapToken]);
      for (const e of d.enrollments) {
        checkChannel(e);
        const { unlockToken, lastSeenAt, ...stored } = e;
        await c.query('INSERT INTO enrollments (id, device_id, record, unlock_token, last_seen_at) VALUES ($1, $2, $3, $4, $5)', [
          e.id,
          e.deviceId,
          JSON.stringify(stored),
          unlockToken ?? null,
          lastSeenAt ?? null,
        ]);
      }
      const uuids = [...new Set(d.commands.map((x) => x.command.uuid))];
      await this.lockCommands(c, [], uuids);
      for (const { enrollmentId, command: v, payload } of d.commands) {
        if (payload) await c.query('INSERT INTO payloads (uuid, payload) VALUES ($1, $2) ON CONFLICT (uuid) DO NOTHING', [v.uuid, payload]);
        const r = v.result;
        await c.query(
          `INSERT INTO commands (enrollment_id, uuid, seq, request_type, priority, status, enqueued_at, updated_at, not_now_count, result_at, result_ts, error_chain, raw)
           VALUES ($1, $2, nextval('command_seq'), $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
          [
            enrollmentId,
            v.uuid,
            v.requestType,
            v.priority,
            v.status,
            v.enqueuedAt,
            v.updatedAt ?? null,
            v.notNowCount,
            r?.at ?? null,
            r ? new Date(r.at) : null,
            r?.errorChain ? JSON.stringify(r.errorChain) : null,
            r?.raw ?? null,
          ],
        );
      }
      if (d.artifacts) {
        await c.query('INSERT INTO artifacts (device_id, version, state) VALUES ($1, 1, $2)', [id, JSON.stringify(withoutVersion(d.artifacts))]);
      }
      await this.putRow(c, id, d.device, d.status?.profiles);
      if (d.work) await addWorkRow(c, id, new Date(d.work.dueAt));
      const seen = d.enrollments.map((e) => e.lastSeenAt).filter((x): x is string => x !== undefined);
      if (seen.length) await c.query('UPDATE status_rows SET seen = GREATEST(seen, $2) WHERE device_id = $1', [id, seen.sort().at(-1)]);
    });
  }

  // --- material ---

  async getMaterial(kind: MaterialKind, key: string, now = new Date()): Promise<Buffer | undefined> {
    checkMaterialKey(kind, key);
    const { rows } = await this.pool.query<{ value: Buffer }>(
      'SELECT value FROM material WHERE kind = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > $3)',
      [kind, key, now.toISOString()],
    );
    return rows[0]?.value;
  }

  async putMaterial(kind: MaterialKind, key: string, value: Buffer, opts: PutMaterialOptions = {}): Promise<boolean> {
    checkMaterialKey(kind, key);
    const expires = opts.expiresAt ? opts.expiresAt.toISOString() : null;
    // ifAbsent: the first writer wins; an expired value counts as absent.
    const put = async (q: pg.Pool | pg.PoolClient) =>
      (
        await q.query(
          `INSERT INTO material (kind, key, value, expires_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (kind, key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at
           ${opts.ifAbsent ? 'WHERE material.expires_at IS NOT NULL AND material.expires_at <= $5' : ''}`,
          opts.ifAbsent ? [kind, key, value, expires, new Date().toISOString()] : [kind, key, value, expires],
        )
      ).rowCount === 1;
    if (!opts.event) return put(this.pool);
    // The value and its event in one transaction.
    return this.tx(async (c) => {
      const written = await put(c);
      if (written) await queueOutbox(c, opts.event);
      return written;
    });
  }

  /** Exactly once across every server on the database: the DELETE returns the row to one of them. */
  async takeMaterial(kind: MaterialKind, key: string, now = new Date()): Promise<Buffer | undefined> {
    checkMaterialKey(kind, key);
    const { rows } = await this.pool.query<{ value: Buffer; expires_at: Date | null }>(
      'DELETE FROM material WHERE kind = $1 AND key = $2 RETURNING value, expires_at',
      [kind, key],
    );
    const r = rows[0];
    return r && (r.expires_at === null || r.expires_at.getTime() > now.getTime()) ? r.value : undefined;
  }

  async deleteMaterial(kind: MaterialKind, key: string): Promise<void> {
    checkMaterialKey(kind, key);
    await this.pool.query('DELETE FROM material WHERE kind = $1 AND key = $2', [kind, key]);
  }

  async listMaterial(kind: MaterialKind, page?: PageRequest, now = new Date()): Promise<Page<MaterialItem>> {
    if (!MATERIAL_KINDS.includes(kind)) throw new Malformed(`unknown material kind ${String(kind)}`);
    const limit = pageLimit(page);
    const after = pageCursor(page);
    const { rows } = await this.pool.query<{ key: string; value: Buffer; expires_at: Date | null }>(
      `SELECT key, value, expires_at FROM material WHERE kind = $1 AND (expires_at IS NULL OR expires_at > $2) AND ($3::text IS NULL OR key > $3)
       ORDER BY key LIMIT $4`,
      [kind, now.toISOString(), after ?? null, limit + 1],
    );
    return pageOf(
      rows.map((r) => ({ key: r.key, value: r.value, ...(r.expires_at ? { expiresAt: r.expires_at } : {}) })),
      limit,
      (i) => i.key,
    );
  }

  async pruneMaterial(kind: MaterialKind, now = new Date()): Promise<number> {
    const { rowCount } = await this.pool.query('DELETE FROM material WHERE kind = $1 AND expires_at <= $2', [kind, now.toISOString()]);
    return rowCount ?? 0;
  }

  // --- leases ---
  // A row under compare-and-set rather than an advisory lock: a session lock belongs to one pooled
  // connection (pinned for the process's life, held on by a half-open TCP connection until the
  // server notices), and it carries no fencing token. The row expires on its own, and one
  // statement decides every race (ON CONFLICT DO UPDATE re-checks its WHERE on the latest row).
  // Times are the caller's clock, as on the other backends; replicas are expected to run NTP
  // (a skew well under the time to live).

  // --- work ---

  async addWork(deviceId: string, dueAt: Date = new Date()): Promise<void> {
    checkId('device id', deviceId);
    await addWorkRow(this.pool, deviceId, dueAt);
  }

  async getWork(deviceId: string): Promise<{ dueAt: Date } | undefined> {
    checkId('device id', deviceId);
    const { rows } = await this.pool.query<{ due_at: Date }>('SELECT due_at FROM work WHERE device_id = $1', [deviceId]);
    return rows[0] && { dueAt: rows[0].due_at };
  }

  async claimWork(req: ClaimRequest): Promise<WorkClaim[]> {
    if (!(req.leaseMs > 0)) throw new RangeError('a work claim needs a positive lease');
    const now = req.now ?? new Date();
    // SKIP LOCKED: a concurrent claimer takes other rows instead of waiting for these.
    const { rows } = await this.pool.query<{ device_id: string; gen: string }>({
      name: 'orchard-claim-work',
      text: `UPDATE work w SET claimed_by = $1, claim_until = $3 FROM (
               SELECT device_id FROM work WHERE due_at <= $2 AND claim_until <= $2
               ORDER BY due_at, device_id LIMIT $4 FOR UPDATE SKIP LOCKED
             ) due WHERE w.device_id = due.device_id
             RETURNING w.device_id, w.gen`,
      values: [req.holder, now.toISOString(), new Date(now.getTime() + req.leaseMs).toISOString(), Math.max(0, req.limit)],
    });
    return rows.map((r) => ({ deviceId: r.device_id, gen: Number(r.gen) }));
  }

  async finishWork(claim: WorkClaim): Promise<boolean> {
    const gone = await this.pool.query({
      name: 'orchard-finish-work',
      text: 'DELETE FROM work WHERE device_id = $1 AND gen = $2',
      values: [claim.deviceId, claim.gen],
    });
    if (gone.rowCount) return true;
    // A cause came after the claim: the row stays, free for the next claim.
    await this.pool.query("UPDATE work SET claimed_by = NULL, claim_until = 'epoch' WHERE device_id = $1", [claim.deviceId]);
    return false;
  }

  async countWork(): Promise<number> {
    const { rows } = await this.pool.query<{ n: string }>('SELECT count(*) AS n FROM work');
    return Number(rows[0]!.n);
  }

  async acquireLease(name: string, holder: string, ttlMs: number, now = new Date()): Promise<Lease | undefined> {
    if (!(ttlMs > 0)) throw new RangeError('a lease needs a positive time to live');
    const { rows } = await this.pool.query<{ token: string; expires_at: Date }>(
      `INSERT INTO leases AS l (name, holder, token, expires_at) VALUES ($1, $2, 1, $4)
       ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at,
         token = CASE WHEN l.holder = EXCLUDED.holder AND l.expires_at > $3 THEN l.token ELSE l.token + 1 END
       WHERE l.expires_at <= $3 OR l.holder = EXCLUDED.holder
       RETURNING token, expires_at`,
      [name, holder, now.toISOString(), new Date(now.getTime() + ttlMs).toISOString()],
    );
    const r = rows[0];
    return r && { name, holder, token: Number(r.token), expiresAt: r.expires_at };
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    await this.pool.query("UPDATE leases SET expires_at = 'epoch' WHERE name = $1 AND holder = $2", [name, holder]);
  }

  async getLease(name: string, now = new Date()): Promise<Lease | undefined> {
    const { rows } = await this.pool.query<{ holder: string; token: string; expires_at: Date }>(
      'SELECT holder, token, expires_at FROM leases WHERE name = $1 AND expires_at > $2',
      [name, now.toISOString()],
    );
    const r = rows[0];
    return r && { name, holder: r.holder, token: Number(r.token), expiresAt: r.expires_at };
  }

  // --- lifecycle ---

  // --- webhook outbox (migration 009): `seq` is a sequence, so a URL's rows come back in the order they were committed ---

  async queueEvent(urls: readonly string[], event: OutboxEvent): Promise<void> {
    await queueOutbox(this.pool, { urls, event });
  }
  async pendingEvents(url: string, limit: number): Promise<OutboxRow[]> {
    const { rows } = await this.pool.query<{ seq: string; event: string }>('SELECT seq, event FROM outbox WHERE url = $1 ORDER BY seq LIMIT $2', [url, limit]);
    return rows.map((r) => ({ seq: Number(r.seq), event: JSON.parse(r.event) as OutboxEvent }));
  }
  async removeEvent(url: string, seq: number): Promise<void> {
    await this.pool.query('DELETE FROM outbox WHERE url = $1 AND seq = $2', [url, seq]);
  }
  async countEvents(): Promise<number> {
    const { rows } = await this.pool.query<{ n: string }>('SELECT count(*) AS n FROM outbox');
    return Number(rows[0]!.n);
  }

  async health(): Promise<StoreHealth> {
    try {
      const { rows } = await this.pool.query<{ version: number }>('SELECT version FROM orchard_migrations');
      const reason = schemaMismatch(rows.map((r) => r.version));
      return reason ? { backend: 'postgres', ready: false, reason } : { backend: 'postgres', ready: true };
    } catch (err) {
      return { backend: 'postgres', ready: false, reason: `database unreachable: ${(err as Error).message}` };
    }
  }

  async close(): Promise<void> {
    this.closing ??= (async () => {
      clearInterval(this.timer);
      // Commits already asked for are written (or fail) before the pool goes.
      while (this.committing) await this.committing;
      clearInterval(this.foldTimer);
      await this.folding;
      await this.flushTouches().catch(() => undefined);
      await this.pool.end();
    })();
    return this.closing;
  }
}

function withSeen(r: { row: string; seen: Date }): DeviceStatus {
  const row = JSON.parse(r.row) as DeviceStatus;
  const ms = r.seen.getTime();
  if (ms > 0) row.lastSeenAt = new Date(ms).toISOString();
  return row;
}
