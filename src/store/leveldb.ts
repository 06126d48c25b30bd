/**
 * LevelDB backend for `Store`.
 *
 * Key layout (all keys are strings; `<id>` is `esc(id)`, which never contains '\x00', so '\x00'
 * ends every variable-length component and one id's prefix can never match another id's keys).
 * `<eid>` is an enrollment id: a device channel is `esc(UDID)`; a user channel `UDID:UserID` is
 * `esc(UDID) '\x01\x04' esc(UserID)`. esc() never writes '\x01\x04', so the two are separate key
 * spaces: no device id can name another device's user channel (format 2; format 1 kept the ':').
 *
 *   m\0version                  format version
 *   s\0<seq hex14>              sequence markers: the largest one is the last sequence number used
 *   d\0<dev>                    DeviceRecord
 *   c\0<certHash>               deviceId bound to that certificate
 *   b\0<dev>                    bootstrap token (binary)
 *   e\0<eid>                    enrollment (unlockToken base64)
 *   l\0<eid>                    lastSeenAt (ISO) written by the touch flusher, so it needs no read
 *   i\0<dev>\0<eid>             device -> its enrollments
 *   q\0<eid>\0<ord>             queued command (Pending or NotNow)   ord = (99 - priority, 2 digits) + seq hex14
 *   x\0<eid>\0<uuid>            per-target command state, pending or finished (CmdRec)
 *   r\0<eid>\0<uuid>            raw final result (binary)
 *   f\0<ms 15>\0<eid>\0<uuid>   finished-at index for compaction
 *   p\0<uuid>                   payload (binary), stored once per command
 *   t\0<uuid>\0<eid>            reference from a target to the payload (pending or finished)
 *   g\0<uuid>                   payload that may have lost its last reference (GC candidate)
 *   a\0<dev>                    reconciler state of the device: {version, state} (a bare DeviceArtifacts is version 1)
 *   v\0<dev>                    status row of the device (read model, src/store/status.ts)
 *   m\0status                   set once every device has a status row
 *   k\0<kind>\0<key>            material: challenges, issuance records, blobs (level-material.ts)
 *   n\0<name>                   lease (leader election, lease.ts)
 *   o\0<url>\0<seq 16 digits>    webhook outbox row, in the batch of the change that causes it (outbox.ts)
 *
 * Point reads use getSync: about 1.5 us against 40 us for an async get, which goes through the
 * libuv thread pool. They hit LevelDB's block cache or the page cache; iterators stay async.
 */
import { EmbeddedWork } from './work.js';
import type { ClaimRequest, StoredWork, WorkAround, WorkClaim } from './roles/work.js';
import { Level } from 'level';
import { LruMap } from './lru.js';
import { LevelMaterial } from './level-material.js';
import { LevelOutbox } from './outbox.js';
import type { OutboxEntry, OutboxEvent, OutboxRow } from './roles/outbox.js';
import type { Lease } from './lease.js';
import type { MaterialItem, MaterialKind, PutMaterialOptions } from './material.js';
import {
  StatusIndex,
  deviceOfEnrollment,
  statusFacts,
  type BlueprintCounts,
  type DeviceStatus,
  type FleetCounts,
  type StatusProfiles,
  type StatusQuery,
} from './status.js';
import type { DeviceArtifacts } from '../model/artifacts.js';
import type { DeviceExport } from './transfer.js';
import { Conflict, Malformed, NotFound } from '../errors.js';
import { VersionConflictError } from './errors.js';
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
import { checkId } from './ids.js';
import { pageCursor, pageLimit, pageOf, type Page, type PageRequest } from './paging.js';
import type {
  CommandResult,
  CommandStatus,
  CommandView,
  DeviceFacts,
  DeviceRecord,
  EnrollmentRecord,
  ErrorChainItem,
  FinalStatus,
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

const FORMAT_VERSION = 2;

type Db = Level<string, unknown>;
type Op = { type: 'put'; key: string; value: unknown; valueEncoding?: 'buffer' } | { type: 'del'; key: string };

type StoredEnrollment = Omit<EnrollmentRecord, 'unlockToken'> & { unlockToken?: string };

/** Value of a q/w key: enough to answer nextCommand without reading x. */
interface QEntry {
  uuid: string;
  requestType: string;
  priority: number;
  enqueuedAt: string;
  status: 'Pending' | 'NotNow';
}

interface CmdRec {
  uuid: string;
  requestType: string;
  priority: number;
  seq: number;
  enqueuedAt: string;
  status: CommandStatus;
  notNowCount: number;
  updatedAt?: string;
  result?: { status: FinalStatus; at: string; errorChain?: ErrorChainItem[] };
}

/** Value of an `a` key. Before versions, the bare state was stored: read as version 1. */
type StoredArtifacts = { version: number; state: DeviceArtifacts } | DeviceArtifacts;

function fromStoredArtifacts(v: StoredArtifacts | undefined): VersionedArtifacts | undefined {
  if (v === undefined) return undefined;
  return 'state' in v ? { ...v.state, version: v.version } : { ...v, version: 1 };
}

interface FinishedRef {
  e: string;
  u: string;
}

// '\x01' escapes itself and '\x00'; lone surrogates are escaped too, because UTF-8 encoding
// would turn them all into U+FFFD and make different ids collide.
const NEEDS_ESC = /[\x00\x01\uD800-\uDFFF]/;
function esc(id: string): string {
  if (!NEEDS_ESC.test(id)) return id;
  let out = '';
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    if (c === 0) out += '\x01\x01';
    else if (c === 1) out += '\x01\x02';
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < id.length && (id.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      out += id.slice(i, i + 2);
      i++;
    } else if (c >= 0xd800 && c <= 0xdfff) out += '\x01\x03' + c.toString(16);
    else out += id[i];
  }
  return out;
}

/** Inverse of `esc`. */
function unesc(s: string): string {
  if (!s.includes('\x01')) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    if (s[i] !== '\x01') {
      out += s[i];
      continue;
    }
    const t = s[++i];
    if (t === '\x01') out += '\x00';
    else if (t === '\x02') out += '\x01';
    else {
      out += String.fromCharCode(parseInt(s.slice(i + 1, i + 5), 16));
      i += 4;
    }
  }
  return out;
}

const USER_SEP = '\x01\x04';

/** The key component of an enrollment id (see the key layout). */
function eidKey(eid: string): string {
  const i = eid.indexOf(':');
  return i < 0 ? esc(eid) : esc(eid.slice(0, i)) + USER_SEP + esc(eid.slice(i + 1));
}

/** Which '\x00'-separated component of a format-1 key is an enrollment id, per key kind. */
const EID_COMPONENT: Record<string, number> = { e: 1, l: 1, i: 2, q: 1, x: 1, r: 1, f: 2, t: 2 };

const hex14 = (n: number): string => n.toString(16).padStart(14, '0');
const ms15 = (ms: number): string => String(Math.max(0, Math.floor(ms))).padStart(15, '0');
const ord = (priority: number, seq: number): string => String(99 - priority).padStart(2, '0') + hex14(seq);

/** Keys of one component prefix ending in '\x00' sort below the same prefix ending in '\x01'. */
const range = (prefix: string): { gte: string; lt: string } => ({ gte: prefix, lt: prefix.slice(0, -1) + '\x01' });

const K = {
  version: 'm\x00version',
  seq: (seq: number) => 's\x00' + hex14(seq),
  device: (dev: string) => 'd\x00' + esc(dev),
  cert: (hash: string) => 'c\x00' + esc(hash),
  boot: (dev: string) => 'b\x00' + esc(dev),
  enr: (eid: string) => 'e\x00' + eidKey(eid),
  seen: (eid: string) => 'l\x00' + eidKey(eid),
  devEnrPrefix: (dev: string) => 'i\x00' + esc(dev) + '\x00',
  devEnr: (dev: string, eid: string) => 'i\x00' + esc(dev) + '\x00' + eidKey(eid),
  queuePrefix: (eid: string) => 'q\x00' + eidKey(eid) + '\x00',
  cmdPrefix: (eid: string) => 'x\x00' + eidKey(eid) + '\x00',
  cmd: (eid: string, uuid: string) => 'x\x00' + eidKey(eid) + '\x00' + esc(uuid),
  raw: (eid: string, uuid: string) => 'r\x00' + eidKey(eid) + '\x00' + esc(uuid),
  finished: (ms: number, eid: string, uuid: string) => 'f\x00' + ms15(ms) + '\x00' + eidKey(eid) + '\x00' + esc(uuid),
  payload: (uuid: string) => 'p\x00' + esc(uuid),
  refPrefix: (uuid: string) => 't\x00' + esc(uuid) + '\x00',
  ref: (uuid: string, eid: string) => 't\x00' + esc(uuid) + '\x00' + eidKey(eid),
  gc: (uuid: string) => 'g\x00' + esc(uuid),
  artifacts: (dev: string) => 'a\x00' + esc(dev),
  status: (dev: string) => 'v\x00' + esc(dev),
  statusVersion: 'm\x00status',
  // 'w' was the NotNow index of an earlier format: work rows are 'j' (jobs).
  work: (dev: string) => 'j\x00' + esc(dev),
};

const BUF = { valueEncoding: 'buffer' } as const;

function toStored(rec: EnrollmentRecord): StoredEnrollment {
  const { unlockToken, ...rest } = rec;
  return unlockToken ? { ...rest, unlockToken: unlockToken.toString('base64') } : rest;
}

function laterIso(a: string | undefined, b: string | undefined): string | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Date.parse(b) > Date.parse(a) ? b : a;
}

/**
 * In-memory mirror of the `q` keys. Every Idle asks for the next command, and most queues are
 * empty: answering from memory spares a LevelDB iterator (a thread-pool round trip) per request.
 * Rebuilt from the `q` range at open; changed only after the batch that changes `q` commits, so
 * it never shows what the disk does not have. Keyed by `eidKey(enrollment id)`, ordered by `ord`.
 */
class QueueMirror {
  private readonly queues = new Map<string, { ord: string; entry: QEntry }[]>();

  add(eidKey: string, ord: string, entry: QEntry): void {
    let q = this.queues.get(eidKey);
    if (!q) this.queues.set(eidKey, (q = []));
    let lo = 0;
    let hi = q.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (q[mid]!.ord < ord) lo = mid + 1;
      else hi = mid;
    }
    if (q[lo]?.ord === ord) q[lo] = { ord, entry };
    else q.splice(lo, 0, { ord, entry });
  }

  remove(eidKey: string, ord: string): void {
    const q = this.queues.get(eidKey);
    if (!q) return;
    const i = q.findIndex((x) => x.ord === ord);
    if (i >= 0) q.splice(i, 1);
    if (q.length === 0) this.queues.delete(eidKey);
  }

  entries(eidKey: string): readonly { ord: string; entry: QEntry }[] {
    return this.queues.get(eidKey) ?? [];
  }

  clear(eidKey: string): void {
    this.queues.delete(eidKey);
  }

  first(eidKey: string, skipNotNow: boolean): QEntry | undefined {
    const q = this.queues.get(eidKey);
    if (!q) return undefined;
    if (!skipNotNow) return q[0]?.entry;
    return q.find((x) => x.entry.status === 'Pending')?.entry;
  }
}

export interface LevelStoreOptions {
  /** How often buffered `touch` calls are written. Default 5000 ms. */
  touchFlushMs?: number;
  /** Buffered touches beyond this are written at once. Default 10,000. */
  maxBufferedTouches?: number;
  /** Entries of the enrollment -> device cache. Default 100,000. */
  cacheMax?: number;
}

export class LevelStore implements Store, WorkAround {
  /** Last sequence number handed out; only grows, also across restarts (see `open`). */
  private seq: number;
  private readonly locks = new Map<string, Promise<void>>();
  private readonly queues = new QueueMirror();
  /** Counts and id order of the `v` rows (see status.ts). */
  private readonly status = new StatusIndex();
  private group?: { ops: Op[]; done?: Promise<void> };
  /** The payload most recently queued (written or checked), for fan-outs. */
  private lastPayload?: { uuid: string; payload: Buffer };
  /** Buffered touches: enrollment id -> ms. */
  private readonly seen = new Map<string, number>();
  /** enrollment id -> device id, to find the lock of an enrollment without a read. */
  private readonly deviceOfEnr: LruMap<string, string>;
  private readonly maxBufferedTouches: number;
  private touchFlushQueued = false;
  private readonly timer: NodeJS.Timeout;
  private seqMarkersDirty = false;
  private closing?: Promise<void>;
  private readonly material: LevelMaterial;
  /** Durable per-device reconcile work; the rows are the `j` keys, claims live here (one process owns the store). */
  private readonly work = new EmbeddedWork();

  private constructor(
    private readonly db: Db,
    seq: number,
    private readonly outbox: LevelOutbox,
    opts: LevelStoreOptions,
  ) {
    this.seq = seq;
    this.material = new LevelMaterial(
      db,
      (key, fn) => this.withLock(key, fn),
      (event) => outbox.ops(event),
    );
    this.deviceOfEnr = new LruMap(opts.cacheMax ?? 100_000);
    this.maxBufferedTouches = opts.maxBufferedTouches ?? 10_000;
    this.timer = setInterval(() => {
      this.flushTouches()
        .then(() => this.pruneSeqMarkers())
        .catch(() => undefined); // retried next tick; close() flushes for real
    }, opts.touchFlushMs ?? 5000);
    this.timer.unref();
  }

  static async open(dir: string, opts: LevelStoreOptions = {}): Promise<LevelStore> {
    const db: Db = new Level<string, unknown>(dir, { valueEncoding: 'json' });
    await db.open();
    try {
      const version = await db.get(K.version);
      if (version === undefined) await db.put(K.version, FORMAT_VERSION);
      else if (version === 1) await migrateFrom1(db);
      else if (version !== FORMAT_VERSION) throw new Error(`store format ${String(version)} in ${dir}, expected ${FORMAT_VERSION}`);
      const [last] = await db.keys({ ...range('s\x00'), reverse: true, limit: 1 }).all();
      const seq = last !== undefined ? parseInt(last.slice(2), 16) : 0;
      const store = new LevelStore(db, seq, await LevelOutbox.open(db), opts);
      for await (const [key, value] of db.iterator(range('q\x00'))) {
        const cut = key.lastIndexOf('\x00');
        store.queues.add(key.slice(2, cut), key.slice(cut + 1), value as QEntry);
      }
      for await (const [key, value] of db.iterator(range('j\x00'))) store.work.set(unesc(key.slice(2)), value as StoredWork);
      await store.loadStatus();
      store.seqMarkersDirty = true;
      await store.pruneSeqMarkers();
      return store;
    } catch (err) {
      await db.close();
      throw err;
    }
  }

  // --- helpers ---

  private getJson<T>(key: string): T | undefined {
    return this.db.getSync(key) as T | undefined;
  }

  private getBuf(key: string): Buffer | undefined {
    return this.db.getSync<string, Buffer>(key, BUF);
  }

  /** Rebuilds the status index; gives devices from before the read model a row (facts only) once. */
  private async loadStatus(): Promise<void> {
    for await (const key of this.db.keys(range('l\x00'))) {
      const iso = this.getJson<string>(key);
      const dev = unesc(key.slice(2).split(USER_SEP)[0]!);
      if (iso) this.status.touch(dev, Date.parse(iso));
    }
    if ((await this.db.get(K.statusVersion)) === undefined) {
      let ops: Op[] = [];
      for await (const dev of this.db.values(range('d\x00'))) {
        const d = dev as DeviceRecord;
        if (this.getJson(K.status(d.id)) === undefined) ops.push({ type: 'put', key: K.status(d.id), value: { id: d.id, facts: statusFacts(d) } });
        if (ops.length >= 1000) {
          await this.db.batch(ops);
          ops = [];
        }
      }
      ops.push({ type: 'put', key: K.statusVersion, value: 1 });
      await this.db.batch(ops);
    }
    for await (const value of this.db.values(range('v\x00'))) {
      const row = value as DeviceStatus;
      this.status.set(row.id, row);
    }
  }

  /**
   * Ops writing a device's status row: the facts from `dev` (when given), the reconciler's half
   * from `profiles` (when given), the rest as stored. Returns the index update to run once the
   * batch has committed. Call under the device's lock.
   */
  private statusOps(deviceId: string, dev: DeviceRecord | undefined, profiles: StatusProfiles | undefined, ops: Op[]): () => void {
    const prev = this.getJson<DeviceStatus>(K.status(deviceId));
    const record = dev ?? (prev ? undefined : this.getJson<DeviceRecord>(K.device(deviceId)));
    const facts = record ? statusFacts(record) : prev?.facts;
    if (!facts) return () => undefined; // no such device
    const row: DeviceStatus = { id: deviceId, facts };
    const p = profiles ?? prev?.profiles;
    if (p) row.profiles = p;
    ops.push({ type: 'put', key: K.status(deviceId), value: row });
    return () => this.status.set(deviceId, row);
  }

  /**
   * Group commit: writes issued in the same turn of the event loop go to LevelDB as one batch.
   * Each caller's ops stay atomic (a larger batch is still all-or-nothing) and in call order;
   * under load this saves a native call and a thread-pool round trip per write.
   */
  private write(ops: Op[]): Promise<void> {
    if (!ops.length) return Promise.resolve();
    let group = this.group;
    if (!group) {
      const g: { ops: Op[]; done?: Promise<void> } = { ops: [] };
      g.done = new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
        this.group = undefined;
        return this.db.batch(g.ops);
      });
      this.group = group = g;
    }
    for (const op of ops) group.ops.push(op);
    return group.done!;
  }

  /** Per-key promise chain: read-modify-write sequences on one key never interleave. */
  private async withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire(key);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  private acquire(key: string): Promise<() => void> | (() => void) {
    const prev = this.locks.get(key);
    let resolve!: () => void;
    const mine = new Promise<void>((r) => {
      resolve = r;
    });
    this.locks.set(key, mine);
    const release = () => {
      if (this.locks.get(key) === mine) this.locks.delete(key);
      resolve();
    };
    return prev ? prev.then(() => release) : release;
  }

  /**
   * Everything that changes an enrollment, its queue or its device runs under the device's lock,
   * so authenticate/checkOut (which touch all of a device's channels) cannot interleave with a
   * result. An unknown enrollment locks on its own id.
   */
  private async withEnrollment<T>(eid: string, fn: (dev: string) => Promise<T>): Promise<T> {
    for (;;) {
      const dev = this.deviceOf(eid);
      const out = await this.withLock('D' + dev, async () => {
        // Created or moved while we waited for the lock: take the right lock instead.
        if (this.deviceOf(eid) !== dev) return { retry: true as const };
        return { retry: false as const, value: await fn(dev) };
      });
      if (!out.retry) return out.value;
    }
  }

  private deviceOf(eid: string): string {
    const cached = this.deviceOfEnr.get(eid);
    if (cached !== undefined) return cached;
    const e = this.getJson<StoredEnrollment>(K.enr(eid));
    if (!e) return eid;
    this.deviceOfEnr.set(eid, e.deviceId);
    return e.deviceId;
  }

  /** The device channel plus every enrollment indexed under the device. */
  private async enrollmentIds(dev: string): Promise<string[]> {
    const ids = (await this.db.values(range(K.devEnrPrefix(dev))).all()) as string[];
    return ids.includes(dev) ? ids : [dev, ...ids];
  }

  /**
   * Adds ops deleting an enrollment's pending queue and notes the enrollment in `cleared` (whose
   * mirror entries the caller drops once the batch commits). Returns the uuids whose refs were dropped.
   */
  private dropQueue(eid: string, ops: Op[], cleared: string[]): string[] {
    const uuids: string[] = [];
    for (const { ord: o, entry } of this.queues.entries(eidKey(eid))) {
      ops.push(
        { type: 'del', key: K.queuePrefix(eid) + o },
        { type: 'del', key: K.cmd(eid, entry.uuid) },
        { type: 'del', key: K.ref(entry.uuid, eid) },
        { type: 'put', key: K.gc(entry.uuid), value: entry.uuid },
      );
      uuids.push(entry.uuid);
    }
    cleared.push(eid);
    return uuids;
  }

  private clearMirror(eids: string[]): void {
    for (const eid of eids) this.queues.clear(eidKey(eid));
  }

  private inactivate(e: StoredEnrollment | undefined, now: string, ops: Op[]): void {
    if (!e || !e.active) return;
    ops.push({ type: 'put', key: K.enr(e.id), value: { ...e, active: false, updatedAt: now } });
  }

  /** Delete payloads no target references any more. Candidates are persisted (g keys), so a crash only delays this. */
  private async collect(uuids: Iterable<string>): Promise<void> {
    const all = [...new Set(uuids)].sort();
    for (let i = 0; i < all.length; i += 256) {
      const chunk = all.slice(i, i + 256);
      // Several command locks at once: always taken in sorted order, and their holders take no
      // other lock afterwards, so this cannot deadlock.
      const releases: (() => void)[] = [];
      try {
        for (const uuid of chunk) releases.push(await this.acquire('C' + uuid));
        const referenced = await Promise.all(chunk.map(async (uuid) => (await this.db.keys({ ...range(K.refPrefix(uuid)), limit: 1 }).all()).length > 0));
        chunk.forEach((uuid, j) => {
          if (!referenced[j] && this.lastPayload?.uuid === uuid) this.lastPayload = undefined;
        });
        await this.write(
          chunk.flatMap((uuid, j): Op[] =>
            referenced[j]
              ? [{ type: 'del', key: K.gc(uuid) }]
              : [
                  { type: 'del', key: K.gc(uuid) },
                  { type: 'del', key: K.payload(uuid) },
                ],
          ),
        );
      } finally {
        for (const release of releases) release();
      }
    }
  }

  private fromStored(e: StoredEnrollment, seenIso: string | undefined): EnrollmentRecord {
    const { unlockToken, ...rest } = e;
    const rec: EnrollmentRecord = { ...rest };
    if (unlockToken !== undefined) rec.unlockToken = Buffer.from(unlockToken, 'base64');
    const buffered = this.seen.get(e.id);
    const last = laterIso(laterIso(e.lastSeenAt, seenIso), buffered === undefined ? undefined : new Date(buffered).toISOString());
    if (last !== undefined) rec.lastSeenAt = last;
    return rec;
  }

  private async flushTouches(): Promise<void> {
    await this.withLock('flush', async () => {
      if (this.seen.size === 0) return;
      const snap = [...this.seen];
      await this.write(snap.map(([eid, ms]) => ({ type: 'put', key: K.seen(eid), value: new Date(ms).toISOString() })));
      // Keep entries touched again meanwhile; reads overlay the buffer until it is written.
      for (const [eid, ms] of snap) if (this.seen.get(eid) === ms) this.seen.delete(eid);
    });
  }

  /** Concurrent enqueues can commit out of order and leave older markers behind; keep only the largest. */
  private async pruneSeqMarkers(): Promise<void> {
    if (!this.seqMarkersDirty) return;
    this.seqMarkersDirty = false;
    const keys = await this.db.keys({ ...range('s\x00'), reverse: true, limit: 10_000 }).all();
    if (keys.length > 1) await this.write(keys.slice(1).map((key) => ({ type: 'del', key })));
  }

  // --- check-in ---

  async authenticate(deviceId: string, facts: DeviceFacts, identity: IdentityBinding, at: Date, change?: IdentityChange, event?: OutboxEntry): Promise<void> {
    checkDeviceId(deviceId);
    checkId('certificate hash', identity.certHash);
    const now = at.toISOString();
    const dropped = await this.withLock('D' + deviceId, async () => {
      const prev = this.getJson<DeviceRecord>(K.device(deviceId));
      // Another device took this UDID over: what the old one reported describes the old one.
      const reenrolled = change !== undefined && change.kind !== 'renewal';
      const dev: DeviceRecord = { id: deviceId, facts, identity, authenticatedAt: now, reported: (!reenrolled && prev?.reported) || {} };
      if (prev?.checkedOutAt !== undefined) dev.checkedOutAt = prev.checkedOutAt;
      const changes = change ? [...(prev?.identityChanges ?? []), change].slice(-MAX_IDENTITY_CHANGES) : prev?.identityChanges;
      if (changes?.length) dev.identityChanges = changes;
      const ops: Op[] = [{ type: 'put', key: K.device(deviceId), value: dev }];
      // Secrets the old identity gave us are never handed to a new one.
      if (reenrolled) ops.push({ type: 'del', key: K.boot(deviceId) });
      if (prev && prev.identity.certHash !== identity.certHash) {
        // Only drop the old index entry if it still points here (the cert may have moved on).
        const owner = this.getJson<string>(K.cert(prev.identity.certHash));
        if (owner === deviceId) ops.push({ type: 'del', key: K.cert(prev.identity.certHash) });
      }
      ops.push({ type: 'put', key: K.cert(identity.certHash), value: deviceId });
      const indexed = this.statusOps(deviceId, dev, undefined, ops);
      const dropped: string[] = [];
      const cleared: string[] = [];
      for (const eid of await this.enrollmentIds(deviceId)) {
        const e = this.getJson<StoredEnrollment>(K.enr(eid));
        if (reenrolled && e?.unlockToken !== undefined) {
          const { unlockToken: _secret, ...rest } = e;
          ops.push({ type: 'put', key: K.enr(eid), value: { ...rest, active: false, updatedAt: now } });
        } else {
          this.inactivate(e, now, ops);
        }
        dropped.push(...this.dropQueue(eid, ops, cleared));
      }
      ops.push(...this.outbox.ops(event));
      await this.write(ops);
      this.clearMirror(cleared);
      indexed();
      return dropped;
    });
    await this.collect(dropped);
  }

  async tokenUpdate(rec: EnrollmentRecord, onActivation?: OutboxEntry): Promise<{ activated: boolean }> {
    checkChannel(rec);
    return this.withLock('D' + rec.deviceId, async () => {
      const prev = this.getJson<StoredEnrollment>(K.enr(rec.id));
      const next: StoredEnrollment = { ...toStored(rec), active: true };
      if (prev) {
        next.createdAt = prev.createdAt;
        // Devices send UnlockToken (and macOS the user names) only in some TokenUpdates: keep what we have.
        if (next.unlockToken === undefined && prev.unlockToken !== undefined) next.unlockToken = prev.unlockToken;
        if (next.userShortName === undefined && prev.userShortName !== undefined) next.userShortName = prev.userShortName;
        if (next.userLongName === undefined && prev.userLongName !== undefined) next.userLongName = prev.userLongName;
      }
      const ops: Op[] = [
        { type: 'put', key: K.enr(rec.id), value: next },
        { type: 'put', key: K.devEnr(rec.deviceId, rec.id), value: rec.id },
      ];
      if (prev && prev.deviceId !== rec.deviceId) ops.push({ type: 'del', key: K.devEnr(prev.deviceId, rec.id) });
      let indexed = () => undefined as void;
      if (rec.type === 'device') {
        const dev = this.getJson<DeviceRecord>(K.device(rec.deviceId));
        if (dev && dev.enrolledAt === undefined) {
          const next = { ...dev, enrolledAt: rec.updatedAt };
          ops.push({ type: 'put', key: K.device(rec.deviceId), value: next });
          indexed = this.statusOps(rec.deviceId, next, undefined, ops);
        }
      }
      const activated = !prev || !prev.active;
      // A user channel enrolled anew is a cause to reconcile the device (its declarations), in this batch.
      const working = activated && rec.type === 'user';
      // The event's ops first: one that cannot be written throws here, before the work row is begun.
      if (activated) ops.push(...this.outbox.ops(onActivation));
      if (working) ops.push({ type: 'put', key: K.work(rec.deviceId), value: this.work.begin(rec.deviceId) });
      try {
        await this.write(ops);
      } finally {
        if (working) this.work.settle(rec.deviceId);
      }
      indexed();
      this.deviceOfEnr.set(rec.id, rec.deviceId);
      return { activated };
    });
  }

  async checkOut(enrollmentId: string, at: Date, event?: OutboxEntry): Promise<void> {
    checkId('enrollment id', enrollmentId);
    const now = at.toISOString();
    const dropped = await this.withEnrollment(enrollmentId, async (devId) => {
      const ops: Op[] = [];
      const dropped: string[] = [];
      const cleared: string[] = [];
      const e = this.getJson<StoredEnrollment>(K.enr(enrollmentId));
      const dev = this.getJson<DeviceRecord>(K.device(devId));
      const isDeviceChannel = e ? e.type === 'device' : dev !== undefined && devId === enrollmentId;
      let indexed = () => undefined as void;
      if (isDeviceChannel) {
        for (const eid of await this.enrollmentIds(devId)) {
          this.inactivate(eid === enrollmentId ? e : this.getJson<StoredEnrollment>(K.enr(eid)), now, ops);
          dropped.push(...this.dropQueue(eid, ops, cleared));
        }
        if (dev) {
          const { enrolledAt: _cleared, ...rest } = dev;
          const next = { ...rest, checkedOutAt: now };
          ops.push({ type: 'put', key: K.device(devId), value: next });
          indexed = this.statusOps(devId, next, undefined, ops);
        }
      } else {
        this.inactivate(e, now, ops);
        dropped.push(...this.dropQueue(enrollmentId, ops, cleared));
      }
      ops.push(...this.outbox.ops(event));
      await this.write(ops);
      this.clearMirror(cleared);
      indexed();
      return dropped;
    });
    await this.collect(dropped);
  }

  async rebindIdentity(deviceId: string, identity: IdentityBinding, change?: IdentityChange, event?: OutboxEntry): Promise<void> {
    checkId('device id', deviceId);
    checkId('certificate hash', identity.certHash);
    await this.withLock('D' + deviceId, async () => {
      const dev = this.getJson<DeviceRecord>(K.device(deviceId));
      if (!dev) throw new NotFound(`no device ${JSON.stringify(deviceId.slice(0, 80))} to rebind`);
      const next: DeviceRecord = { ...dev, identity };
      if (change) next.identityChanges = [...(dev.identityChanges ?? []), change].slice(-MAX_IDENTITY_CHANGES);
      const ops: Op[] = [{ type: 'put', key: K.device(deviceId), value: next }];
      if (this.getJson<string>(K.cert(dev.identity.certHash)) === deviceId) ops.push({ type: 'del', key: K.cert(dev.identity.certHash) });
      ops.push({ type: 'put', key: K.cert(identity.certHash), value: deviceId });
      ops.push(...this.outbox.ops(event));
      await this.write(ops);
    });
  }

  async getDevice(deviceId: string): Promise<DeviceRecord | undefined> {
    checkId('device id', deviceId);
    return this.getJson<DeviceRecord>(K.device(deviceId));
  }

  async deviceForCert(certHash: string): Promise<string | undefined> {
    checkId('certificate hash', certHash);
    return this.getJson<string>(K.cert(certHash));
  }

  /** Bounds of one page of a key kind (`d`, `a`) whose keys end in an escaped id; the cursor is the last id. */
  private pageRange(kind: string, page: PageRequest | undefined): { gt?: string; gte?: string; lt: string; limit: number } {
    const cursor = pageCursor(page);
    const limit = pageLimit(page) + 1;
    const lt = kind + '\x01';
    return cursor === undefined ? { gte: kind + '\x00', lt, limit } : { gt: kind + '\x00' + esc(cursor), lt, limit };
  }

  async listDevices(page?: PageRequest): Promise<Page<DeviceRecord>> {
    const devices = (await this.db.values(this.pageRange('d', page)).all()) as DeviceRecord[];
    return pageOf(devices, pageLimit(page), (d) => d.id);
  }

  async listDeviceIds(page?: PageRequest): Promise<Page<string>> {
    // The device record's own id, from its key: keys-only iteration reads no values.
    const ids = (await this.db.keys(this.pageRange('d', page)).all()).map((k) => unesc(k.slice(2)));
    return pageOf(ids, pageLimit(page), (id) => id);
  }

  async getEnrollment(enrollmentId: string): Promise<EnrollmentRecord | undefined> {
    checkId('enrollment id', enrollmentId);
    const e = this.getJson<StoredEnrollment>(K.enr(enrollmentId));
    return e === undefined ? undefined : this.fromStored(e, this.getJson<string>(K.seen(enrollmentId)));
  }

  async listEnrollments(deviceId: string): Promise<EnrollmentRecord[]> {
    checkId('device id', deviceId);
    const ids = (await this.db.values(range(K.devEnrPrefix(deviceId))).all()) as string[];
    if (!ids.length) return [];
    const vals = await this.db.getMany(ids.flatMap((id) => [K.enr(id), K.seen(id)]));
    const out: EnrollmentRecord[] = [];
    for (let i = 0; i < ids.length; i++) {
      const e = vals[2 * i] as StoredEnrollment | undefined;
      if (e) out.push(this.fromStored(e, vals[2 * i + 1] as string | undefined));
    }
    return out;
  }

  async touch(enrollmentId: string, at: Date): Promise<void> {
    checkId('enrollment id', enrollmentId);
    const ms = at.getTime();
    const prev = this.seen.get(enrollmentId);
    if (prev === undefined || ms > prev) this.seen.set(enrollmentId, ms);
    this.status.touch(deviceOfEnrollment(enrollmentId), ms);
    // A burst of distinct channels is written now rather than held until the next tick.
    if (this.seen.size >= this.maxBufferedTouches && !this.touchFlushQueued) {
      this.touchFlushQueued = true;
      void (async () => {
        try {
          while (this.seen.size >= this.maxBufferedTouches) await this.flushTouches();
        } catch {
          // retried by the timer; close() flushes for real
        } finally {
          this.touchFlushQueued = false;
        }
      })();
    }
  }

  /** Sizes of the in-memory caches and buffers (tests, diagnostics). */
  cacheSizes(): { deviceOfEnrollment: number; bufferedTouches: number; locks: number } {
    return { deviceOfEnrollment: this.deviceOfEnr.size, bufferedTouches: this.seen.size, locks: this.locks.size };
  }

  async setBootstrapToken(deviceId: string, token: Buffer | null): Promise<void> {
    checkId('device id', deviceId);
    if (token === null) await this.db.del(K.boot(deviceId));
    else await this.db.put<string, Buffer>(K.boot(deviceId), token, BUF);
  }

  async getBootstrapToken(deviceId: string): Promise<Buffer | undefined> {
    checkId('device id', deviceId);
    return this.getBuf(K.boot(deviceId));
  }

  /** A command uuid's payload (`orchard store copy` reads it; src/store/transfer.ts). */
  async commandPayload(uuid: string): Promise<Buffer | undefined> {
    checkId('command uuid', uuid);
    return this.getBuf(K.payload(uuid));
  }

  /**
   * One batch: the device, its certificate, secrets, channels, commands in their order (new
   * sequence numbers, queued ones back in the queue), reconcile state at version 1 and status row.
   */
  async importDevice(d: DeviceExport): Promise<void> {
    const id = d.device.id;
    checkDeviceId(id);
    checkId('certificate hash', d.device.identity.certHash);
    await this.withLock('D' + id, async () => {
      if (this.getJson(K.device(id))) throw new Conflict(`device ${id} is already in the target store`);
      const ops: Op[] = [
        { type: 'put', key: K.device(id), value: d.device },
        { type: 'put', key: K.cert(d.device.identity.certHash), value: id },
      ];
      if (d.bootstrapToken) ops.push({ type: 'put', key: K.boot(id), value: d.bootstrapToken, valueEncoding: 'buffer' });
      const seen: [string, number][] = [];
      for (const e of d.enrollments) {
        checkChannel(e);
        const { lastSeenAt, ...rest } = e;
        ops.push({ type: 'put', key: K.enr(e.id), value: toStored(rest) }, { type: 'put', key: K.devEnr(id, e.id), value: e.id });
        if (lastSeenAt !== undefined) {
          ops.push({ type: 'put', key: K.seen(e.id), value: lastSeenAt });
          seen.push([e.id, Date.parse(lastSeenAt)]);
        }
      }
      const queued: [string, string, QEntry][] = [];
      const payloads = new Set<string>();
      for (const { enrollmentId: eid, command: v, payload } of d.commands) {
        checkId('command uuid', v.uuid);
        if (payload && !payloads.has(v.uuid)) {
          payloads.add(v.uuid);
          if (this.getBuf(K.payload(v.uuid)) === undefined) ops.push({ type: 'put', key: K.payload(v.uuid), value: payload, valueEncoding: 'buffer' });
        }
        const seq = ++this.seq;
        const rec: CmdRec = {
          uuid: v.uuid,
          requestType: v.requestType,
          priority: v.priority,
          seq,
          enqueuedAt: v.enqueuedAt,
          status: v.status,
          notNowCount: v.notNowCount,
        };
        if (v.updatedAt !== undefined) rec.updatedAt = v.updatedAt;
        ops.push({ type: 'put', key: K.cmd(eid, v.uuid), value: rec });
        if (payload) ops.push({ type: 'put', key: K.ref(v.uuid, eid), value: '' });
        if (v.result && v.result.status !== 'NotNow') {
          const { raw, status, ...rest } = v.result;
          const result = { ...rest, status };
          rec.result = result;
          ops.push(
            { type: 'put', key: K.raw(eid, v.uuid), value: raw, valueEncoding: 'buffer' },
            { type: 'put', key: K.finished(Date.parse(result.at), eid, v.uuid), value: { e: eid, u: v.uuid } satisfies FinishedRef },
          );
        } else if (v.status === 'Pending' || v.status === 'NotNow') {
          if (!payload) throw new Malformed(`queued command ${v.uuid} of ${eid} has no payload to copy`);
          const entry: QEntry = { uuid: v.uuid, requestType: v.requestType, priority: v.priority, enqueuedAt: v.enqueuedAt, status: v.status };
          const o = ord(v.priority, seq);
          ops.push({ type: 'put', key: K.queuePrefix(eid) + o, value: entry });
          queued.push([eidKey(eid), o, entry]);
        }
      }
      if (d.commands.length) {
        this.seqMarkersDirty = true;
        ops.push({ type: 'put', key: K.seq(this.seq), value: '' });
      }
      if (d.artifacts) ops.push({ type: 'put', key: K.artifacts(id), value: { version: 1, state: withoutVersion(d.artifacts) } });
      const indexed = this.statusOps(id, d.device, d.status?.profiles, ops);
      if (d.work) ops.push({ type: 'put', key: K.work(id), value: this.work.begin(id, new Date(d.work.dueAt)) });
      try {
        await this.write(ops);
      } finally {
        if (d.work) this.work.settle(id);
      }
      indexed();
      for (const [k, o, entry] of queued) this.queues.add(k, o, entry);
      for (const e of d.enrollments) this.deviceOfEnr.set(e.id, id);
      for (const [, ms] of seen) this.status.touch(id, ms);
    });
  }

  // --- command queue ---

  async enqueue(targets: string[], cmd: NewCommand, at: Date): Promise<void> {
    const priority = checkCommand(cmd);
    const uniq = checkTargets(targets);
    if (!uniq.length) return;
    const enqueuedAt = at.toISOString();
    await this.withLock('C' + cmd.uuid, async () => {
      // getMany is one thread-pool round trip for a fan-out; a few sync gets are cheaper.
      const keys = uniq.map((t) => K.cmd(t, cmd.uuid));
      const existing = keys.length > 16 ? await this.db.getMany(keys) : keys.map((k) => this.db.getSync(k));
      const dup = uniq.filter((_, i) => existing[i] !== undefined);
      if (dup.length) {
        throw new Conflict(`command ${cmd.uuid} already exists for ${dup.slice(0, 3).join(', ')}${dup.length > 3 ? ` and ${dup.length - 3} more` : ''}`);
      }
      const ops: Op[] = [];
      const added = this.enqueueOps(uniq, cmd, priority, enqueuedAt, ops);
      await this.write(ops);
      added();
    });
  }

  /**
   * Ops queueing `cmd` for `targets` (payload once, sequence marker, per-target entries). Returns
   * the mirror update to run once the batch has committed. Call with nothing awaited between
   * this and the write, so sequence numbers are committed in the order they are taken.
   */
  private enqueueOps(targets: string[], cmd: NewCommand, priority: number, enqueuedAt: string, ops: Op[]): () => void {
    // A fan-out hands the same payload object for every target: no need to read it back each time.
    if (this.lastPayload?.uuid !== cmd.uuid || this.lastPayload.payload !== cmd.payload) {
      const stored = this.getBuf(K.payload(cmd.uuid));
      if (stored === undefined) ops.push({ type: 'put', key: K.payload(cmd.uuid), value: cmd.payload, valueEncoding: 'buffer' });
      else if (!stored.equals(cmd.payload)) throw new Conflict(`command ${cmd.uuid} already exists with a different payload`);
      this.lastPayload = { uuid: cmd.uuid, payload: cmd.payload };
    }
    const seq = ++this.seq;
    this.seqMarkersDirty = true;
    ops.push({ type: 'put', key: K.seq(seq), value: '' }, { type: 'del', key: K.seq(seq - 1) });
    const o = ord(priority, seq);
    const entry: QEntry = { uuid: cmd.uuid, requestType: cmd.requestType, priority, enqueuedAt, status: 'Pending' };
    const rec: CmdRec = { ...entry, seq, notNowCount: 0 };
    for (const t of targets) {
      ops.push(
        { type: 'put', key: K.queuePrefix(t) + o, value: entry },
        { type: 'put', key: K.cmd(t, cmd.uuid), value: rec },
        { type: 'put', key: K.ref(cmd.uuid, t), value: '' },
      );
    }
    return () => {
      for (const t of targets) this.queues.add(eidKey(t), o, entry);
    };
  }

  // --- reconciler ---

  async getArtifacts(deviceId: string): Promise<VersionedArtifacts | undefined> {
    checkId('device id', deviceId);
    return fromStoredArtifacts(this.getJson<StoredArtifacts>(K.artifacts(deviceId)));
  }

  async listArtifacts(page?: PageRequest): Promise<Page<VersionedArtifacts>> {
    const values = (await this.db.values(this.pageRange('a', page)).all()) as StoredArtifacts[];
    return pageOf(
      values.map((v) => fromStoredArtifacts(v)!),
      pageLimit(page),
      (a) => a.deviceId,
    );
  }

  async commitReconcile(
    deviceId: string,
    state: DeviceArtifacts,
    change: ReconcileChange,
    at: Date,
    expectedVersion: number,
  ): Promise<{ cancelled: string[]; version: number }> {
    checkId('device id', deviceId);
    checkChange(change);
    const enqueuedAt = at.toISOString();
    const version = expectedVersion + 1;
    const { cancelled, dropped } = await this.withLock('D' + deviceId, async () => {
      const current = fromStoredArtifacts(this.getJson<StoredArtifacts>(K.artifacts(deviceId)))?.version ?? 0;
      if (current !== expectedVersion) throw new VersionConflictError(deviceId, expectedVersion, current);
      // Command locks too (sorted), so collecting a shared payload cannot race its reuse here.
      const releases: (() => void)[] = [];
      try {
        for (const uuid of [...new Set(change.enqueue.map((e) => e.cmd.uuid))].sort()) releases.push(await this.acquire('C' + uuid));
        return await this.commitLocked(deviceId, { version, state: withoutVersion(state) }, change, enqueuedAt);
      } finally {
        for (const release of releases) release();
      }
    });
    await this.collect(dropped);
    return { cancelled, version };
  }

  private async commitLocked(
    deviceId: string,
    state: { version: number; state: DeviceArtifacts },
    change: ReconcileChange,
    enqueuedAt: string,
  ): Promise<{ cancelled: string[]; dropped: string[] }> {
    const ops: Op[] = [{ type: 'put', key: K.artifacts(deviceId), value: state }];
    const indexed = change.status ? this.statusOps(deviceId, undefined, change.status, ops) : () => undefined;
    const cancelled: string[] = [];
    const mirrorRemovals: [string, string][] = [];
    for (const { enrollmentId, uuid } of change.cancel) {
      const cmd = this.getJson<CmdRec>(K.cmd(enrollmentId, uuid));
      if (!cmd || FINAL.has(cmd.status)) continue; // answered meanwhile: nothing to withdraw
      const o = ord(cmd.priority, cmd.seq);
      ops.push(
        { type: 'del', key: K.queuePrefix(enrollmentId) + o },
        { type: 'del', key: K.cmd(enrollmentId, uuid) },
        { type: 'del', key: K.ref(uuid, enrollmentId) },
        { type: 'put', key: K.gc(uuid), value: uuid },
      );
      cancelled.push(uuid);
      mirrorRemovals.push([enrollmentId, o]);
    }
    const added: (() => void)[] = [];
    for (const { targets, cmd } of change.enqueue) {
      const priority = cmd.priority ?? DEFAULT_PRIORITY;
      added.push(this.enqueueOps([...new Set(targets)], cmd, priority, enqueuedAt, ops));
    }
    await this.write(ops);
    indexed();
    for (const [eid, o] of mirrorRemovals) this.queues.remove(eidKey(eid), o);
    for (const f of added) f();
    return { cancelled, dropped: cancelled };
  }

  async nextCommand(enrollmentId: string, opts: { skipNotNow: boolean }): Promise<QueuedCommand | undefined> {
    checkId('enrollment id', enrollmentId);
    // From the mirror, unlocked: the payload read below is the only I/O. A missing payload means
    // the entry was dropped (and collected) meanwhile; the mirror no longer has it then.
    for (let attempt = 0; ; attempt++) {
      const entry = this.queues.first(eidKey(enrollmentId), opts.skipNotNow);
      if (entry === undefined) return undefined;
      const payload = this.getBuf(K.payload(entry.uuid));
      if (payload) return { ...entry, payload };
      if (attempt >= 3) throw new Error(`payload of command ${entry.uuid} is missing`);
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  async recordResult(enrollmentId: string, commandUUID: string, result: CommandResult, reported?: ReportedState, event?: OutboxEntry): Promise<RecordOutcome> {
    checkId('enrollment id', enrollmentId);
    checkId('command uuid', commandUUID);
    const atMs = checkResult(commandUUID, result);
    return this.withEnrollment(enrollmentId, async (devId) => {
      const cmd = this.getJson<CmdRec>(K.cmd(enrollmentId, commandUUID));
      if (!cmd) return 'unknown';
      if (FINAL.has(cmd.status)) return 'duplicate';
      const o = ord(cmd.priority, cmd.seq);
      const queueKey = K.queuePrefix(enrollmentId) + o;
      const ops: Op[] = [];
      if (result.status === 'NotNow') {
        const next: CmdRec = { ...cmd, status: 'NotNow', notNowCount: cmd.notNowCount + 1, updatedAt: result.at };
        ops.push({ type: 'put', key: K.cmd(enrollmentId, commandUUID), value: next });
        if (cmd.status === 'Pending') {
          const entry: QEntry = { uuid: cmd.uuid, requestType: cmd.requestType, priority: cmd.priority, enqueuedAt: cmd.enqueuedAt, status: 'NotNow' };
          ops.push({ type: 'put', key: queueKey, value: entry }, ...this.outbox.ops(event));
          await this.write(ops);
          this.queues.add(eidKey(enrollmentId), o, entry);
          return 'notnow';
        }
        ops.push(...this.outbox.ops(event));
        await this.write(ops);
        return 'notnow';
      }
      const final: CmdRec = {
        ...cmd,
        status: result.status,
        updatedAt: result.at,
        result: { status: result.status, at: result.at, ...(result.errorChain ? { errorChain: result.errorChain } : {}) },
      };
      ops.push(
        { type: 'del', key: queueKey },
        { type: 'put', key: K.cmd(enrollmentId, commandUUID), value: final },
        { type: 'put', key: K.raw(enrollmentId, commandUUID), value: result.raw, valueEncoding: 'buffer' },
        { type: 'put', key: K.finished(atMs, enrollmentId, commandUUID), value: { e: enrollmentId, u: commandUUID } satisfies FinishedRef },
      );
      const entries = reported ? Object.entries(reported).filter(([, v]) => v !== undefined) : [];
      // The device confirmed its erasure: the identity it enrolled with is gone (re-enroll policy).
      const erased = result.status === 'Acknowledged' && cmd.requestType === 'EraseDevice' && enrollmentId === devId;
      const dev = entries.length || erased ? this.getJson<DeviceRecord>(K.device(devId)) : undefined;
      let indexed = () => undefined as void;
      if (dev) {
        const next: DeviceRecord = entries.length ? { ...dev, reported: { ...dev.reported, ...Object.fromEntries(entries) } } : { ...dev };
        if (erased) next.erasedAt = result.at;
        ops.push({ type: 'put', key: K.device(devId), value: next });
        if (reported?.DeviceInformation) indexed = this.statusOps(devId, next, undefined, ops);
      }
      // The device's answer is a cause to reconcile it, in the answer's batch (src/store/roles/work.ts).
      const working = enrollmentId === devId;
      ops.push(...this.outbox.ops(event));
      if (working) ops.push({ type: 'put', key: K.work(devId), value: this.work.begin(devId, new Date(atMs)) });
      try {
        await this.write(ops);
      } finally {
        if (working) this.work.settle(devId);
      }
      indexed();
      this.queues.remove(eidKey(enrollmentId), o);
      return 'recorded';
    });
  }

  async getCommand(enrollmentId: string, commandUUID: string): Promise<CommandView | undefined> {
    checkId('enrollment id', enrollmentId);
    checkId('command uuid', commandUUID);
    const r = this.getJson<CmdRec>(K.cmd(enrollmentId, commandUUID));
    if (!r) return undefined;
    const view: CommandView = {
      uuid: r.uuid,
      requestType: r.requestType,
      priority: r.priority,
      status: r.status,
      enqueuedAt: r.enqueuedAt,
      notNowCount: r.notNowCount,
    };
    if (r.updatedAt !== undefined) view.updatedAt = r.updatedAt;
    if (r.result) view.result = { ...r.result, raw: this.getBuf(K.raw(enrollmentId, commandUUID)) ?? Buffer.alloc(0) };
    return view;
  }

  /**
   * In enqueue order, so the cursor is the last sequence number. The x keys are by uuid: an
   * enrollment's records (bounded by retention) are read and sorted, only the page's raws are read.
   */
  async listCommands(enrollmentId: string, page?: PageRequest): Promise<Page<CommandView>> {
    checkId('enrollment id', enrollmentId);
    const limit = pageLimit(page);
    const cursor = pageCursor(page);
    const after = cursor === undefined ? 0 : Number(cursor);
    if (!Number.isSafeInteger(after) || after < 0) throw new Malformed(`page cursor ${JSON.stringify(cursor)} is not a command cursor`);
    const all = (await this.db.values(range(K.cmdPrefix(enrollmentId))).all()) as CmdRec[];
    all.sort((a, b) => a.seq - b.seq);
    const start = after ? all.findIndex((r) => r.seq > after) : 0;
    const recs = start < 0 ? [] : all.slice(start, start + limit);
    const next = start >= 0 && start + limit < all.length ? String(recs.at(-1)!.seq) : undefined;
    const finished = recs.filter((r) => r.result !== undefined);
    const raws = finished.length
      ? ((await this.db.getMany<string, Buffer>(
          finished.map((r) => K.raw(enrollmentId, r.uuid)),
          BUF,
        )) as (Buffer | undefined)[])
      : [];
    const rawOf = new Map(finished.map((r, i) => [r.uuid, raws[i]]));
    const items = recs.map((r) => {
      const view: CommandView = {
        uuid: r.uuid,
        requestType: r.requestType,
        priority: r.priority,
        status: r.status,
        enqueuedAt: r.enqueuedAt,
        notNowCount: r.notNowCount,
      };
      if (r.updatedAt !== undefined) view.updatedAt = r.updatedAt;
      if (r.result) view.result = { ...r.result, raw: rawOf.get(r.uuid) ?? Buffer.alloc(0) };
      return view;
    });
    return next === undefined ? { items } : { items, next };
  }

  // --- read model ---

  async getStatus(deviceId: string): Promise<DeviceStatus | undefined> {
    const row = this.getJson<DeviceStatus>(K.status(deviceId));
    return row && this.withSeen(row);
  }

  async putStatus(deviceId: string, profiles: StatusProfiles): Promise<void> {
    await this.withLock('D' + deviceId, async () => {
      if (!this.getJson(K.status(deviceId))) return;
      const ops: Op[] = [];
      const indexed = this.statusOps(deviceId, undefined, profiles, ops);
      await this.write(ops);
      indexed();
    });
  }

  async fleetCounts(opts: { now: Date; staleDays: number }): Promise<FleetCounts> {
    return this.status.fleet(opts.now, opts.staleDays);
  }

  async blueprintCounts(names: string[]): Promise<Record<string, BlueprintCounts>> {
    return this.status.blueprints(names);
  }

  async queryStatus(q: StatusQuery): Promise<{ total: number; devices: DeviceStatus[] }> {
    const { total, ids } = this.status.query(q);
    const devices: DeviceStatus[] = [];
    for (const id of ids) {
      const row = this.getJson<DeviceStatus>(K.status(id));
      if (row) devices.push(this.withSeen(row));
    }
    return { total, devices };
  }

  private withSeen(row: DeviceStatus): DeviceStatus {
    const seen = this.status.lastSeen(row.id);
    return seen === undefined ? row : { ...row, lastSeenAt: new Date(seen).toISOString() };
  }

  // --- material ---

  // --- work ---

  async addWork(deviceId: string, dueAt?: Date): Promise<void> {
    // Its gen taken before the write (a concurrent cause takes the next one), claimable after it.
    const work = this.work.begin(deviceId, dueAt);
    try {
      await this.db.put(K.work(deviceId), work);
    } finally {
      this.work.settle(deviceId);
    }
  }

  async addWorkAround<T>(deviceId: string, write: () => Promise<T>): Promise<T> {
    const work = this.work.begin(deviceId);
    try {
      await this.db.put(K.work(deviceId), work);
      return await write();
    } finally {
      this.work.settle(deviceId);
    }
  }

  async getWork(deviceId: string): Promise<{ dueAt: Date } | undefined> {
    return this.work.due(deviceId);
  }

  async claimWork(req: ClaimRequest): Promise<WorkClaim[]> {
    return this.work.claim(req);
  }

  async finishWork(claim: WorkClaim): Promise<boolean> {
    if (!this.work.finishes(claim)) return false;
    this.work.drop(claim.deviceId);
    await this.db.del(K.work(claim.deviceId));
    return true;
  }

  async countWork(): Promise<number> {
    return this.work.size;
  }

  acquireLease(name: string, holder: string, ttlMs: number, now?: Date): Promise<Lease | undefined> {
    return this.material.acquireLease(name, holder, ttlMs, now);
  }

  releaseLease(name: string, holder: string): Promise<void> {
    return this.material.releaseLease(name, holder);
  }

  getLease(name: string, now?: Date): Promise<Lease | undefined> {
    return this.material.getLease(name, now);
  }

  getMaterial(kind: MaterialKind, key: string, now?: Date): Promise<Buffer | undefined> {
    return this.material.getMaterial(kind, key, now);
  }

  putMaterial(kind: MaterialKind, key: string, value: Buffer, opts?: PutMaterialOptions): Promise<boolean> {
    return this.material.putMaterial(kind, key, value, opts);
  }

  takeMaterial(kind: MaterialKind, key: string, now?: Date): Promise<Buffer | undefined> {
    return this.material.takeMaterial(kind, key, now);
  }

  deleteMaterial(kind: MaterialKind, key: string): Promise<void> {
    return this.material.deleteMaterial(kind, key);
  }

  listMaterial(kind: MaterialKind, page?: PageRequest, now?: Date): Promise<Page<MaterialItem>> {
    return this.material.listMaterial(kind, page, now);
  }

  pruneMaterial(kind: MaterialKind, now?: Date): Promise<number> {
    return this.material.pruneMaterial(kind, now);
  }

  async compact(before: Date): Promise<number> {
    return this.withLock('compact', async () => {
      const lt = 'f\x00' + ms15(before.getTime());
      let removed = 0;
      for (;;) {
        const batch = await this.db.iterator({ gte: 'f\x00', lt, limit: 1000 }).all();
        if (!batch.length) break;
        const ops: Op[] = [];
        const uuids: string[] = [];
        for (const [key, value] of batch) {
          const { e, u } = value as FinishedRef;
          ops.push(
            { type: 'del', key },
            { type: 'del', key: K.cmd(e, u) },
            { type: 'del', key: K.raw(e, u) },
            { type: 'del', key: K.ref(u, e) },
            { type: 'put', key: K.gc(u), value: u },
          );
          uuids.push(u);
        }
        await this.write(ops);
        removed += batch.length;
        await this.collect(uuids);
      }
      // Candidates left by a crash between a batch and its collection.
      await this.collect((await this.db.values(range('g\x00')).all()) as string[]);
      return removed;
    });
  }

  // --- webhook outbox ---

  async queueEvent(urls: readonly string[], event: OutboxEvent): Promise<void> {
    await this.write(this.outbox.ops({ urls, event }));
  }
  pendingEvents(url: string, limit: number): Promise<OutboxRow[]> {
    return this.outbox.pending(url, limit);
  }
  removeEvent(url: string, seq: number): Promise<void> {
    return this.outbox.remove(url, seq);
  }
  countEvents(): Promise<number> {
    return this.outbox.count();
  }

  async health(): Promise<StoreHealth> {
    return this.db.status === 'open' ? { backend: 'leveldb', ready: true } : { backend: 'leveldb', ready: false, reason: `database is ${this.db.status}` };
  }

  async close(): Promise<void> {
    this.closing ??= (async () => {
      clearInterval(this.timer);
      while (this.locks.size) await Promise.all(this.locks.values());
      await this.flushTouches();
      await this.pruneSeqMarkers();
      await this.db.close();
    })();
    return this.closing;
  }

  /** Key counts per kind (the letter before the first '\x00'); full scan, for tests and diagnostics. */
  async keyCounts(): Promise<Record<string, number>> {
    const counts: Record<string, number> = {};
    for await (const key of this.db.keys()) {
      const kind = key.slice(0, key.indexOf('\x00'));
      counts[kind] = (counts[kind] ?? 0) + 1;
    }
    return counts;
  }
}

/**
 * Format 1 kept a user channel's id `UDID:UserID` as is in its keys, in the same key space as
 * device ids. Rewrites those keys in format 2's encoding (values are unchanged: they hold plain
 * ids). Idempotent, so a crash halfway is finished by the next open.
 */
async function migrateFrom1(db: Db): Promise<void> {
  let ops: Op[] = [];
  const flush = async () => {
    if (ops.length) await db.batch(ops);
    ops = [];
  };
  for await (const [key, value] of db.iterator<string, Buffer>({ valueEncoding: 'buffer' })) {
    const parts = key.split('\x00');
    const at = EID_COMPONENT[parts[0]!];
    const part = at === undefined ? undefined : parts[at];
    if (part === undefined || !part.includes(':') || part.includes(USER_SEP)) continue;
    parts[at!] = eidKey(unesc(part));
    ops.push({ type: 'del', key }, { type: 'put', key: parts.join('\x00'), value, valueEncoding: 'buffer' });
    if (ops.length >= 2000) await flush();
  }
  await flush();
  await db.put(K.version, FORMAT_VERSION);
}
