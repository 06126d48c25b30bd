/**
 * In-memory backend for `Store`: the contract in its plainest form, for tests, the simulator and
 * as the reference the shared suite holds the other backends to. Nothing survives the process;
 * a `MemoryStore` opened again on the same `MemoryData` sees what the last one wrote (the suite's
 * reopen). Every method checks its input, then reads and writes without awaiting in between, so
 * each call is atomic on the one JavaScript thread. Records are copied in and out: a caller
 * mutating what it got back changes nothing stored.
 */
import { EmbeddedWork } from './work.js';
import type { ClaimRequest, WorkAround, WorkClaim } from './roles/work.js';
import type { DeviceArtifacts } from '../model/artifacts.js';
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
import { Conflict, Malformed, NotFound, Unavailable } from '../errors.js';
import { VersionConflictError } from './errors.js';
import type { Lease } from './lease.js';
import type { MaterialItem, MaterialKind, PutMaterialOptions } from './material.js';
import { MemoryMaterial } from './memory-material.js';
import { MemoryOutbox } from './outbox.js';
import type { OutboxEntry, OutboxEvent, OutboxRow } from './roles/outbox.js';
import { checkId, compareIds } from './ids.js';
import { pageCursor, pageLimit, pageOf, type Page, type PageRequest } from './paging.js';
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

interface CmdRec {
  uuid: string;
  requestType: string;
  priority: number;
  seq: number;
  enqueuedAt: string;
  status: CommandStatus;
  notNowCount: number;
  updatedAt?: string;
  result?: { status: FinalStatus; at: string; atMs: number; raw: Buffer; errorChain?: ErrorChainItem[] };
}

/** A payload stored once per command uuid, with the enrollments that still reference it. */
interface PayloadRec {
  bytes: Buffer;
  refs: Set<string>;
}

/** Everything a `MemoryStore` keeps; share one between stores to "reopen". */
export class MemoryData {
  seq = 0;
  readonly devices = new Map<string, DeviceRecord>();
  readonly certs = new Map<string, string>();
  readonly bootstrap = new Map<string, Buffer>();
  readonly enrollments = new Map<string, EnrollmentRecord>();
  /** device id -> its enrollment ids (user channels and, once it has one, the device channel). */
  readonly channels = new Map<string, Set<string>>();
  /** enrollment id -> uuid -> command, pending or finished. */
  readonly commands = new Map<string, Map<string, CmdRec>>();
  readonly payloads = new Map<string, PayloadRec>();
  readonly artifacts = new Map<string, { version: number; state: DeviceArtifacts }>();
  /** Read model rows and their counts (src/store/status.ts). */
  readonly status = new Map<string, DeviceStatus>();
  readonly statusIndex = new StatusIndex();
  /** Webhook events, each added in the step of the change that causes it. */
  readonly outbox = new MemoryOutbox();
  readonly material = new MemoryMaterial(this.outbox);
  /** Durable per-device reconcile work (src/store/work.ts). */
  readonly work = new EmbeddedWork();
  /** Sorted device ids, rebuilt after a device is added. */
  sortedDevices?: string[];
  sortedArtifacts?: string[];
}

const copy = <T>(v: T): T => structuredClone(v);
const copyBuf = (b: Buffer): Buffer => Buffer.from(b);

function copyEnrollment(e: EnrollmentRecord): EnrollmentRecord {
  const { unlockToken, ...rest } = e;
  const out: EnrollmentRecord = copy(rest);
  if (unlockToken !== undefined) out.unlockToken = copyBuf(unlockToken);
  return out;
}

function view(r: CmdRec): CommandView {
  const v: CommandView = {
    uuid: r.uuid,
    requestType: r.requestType,
    priority: r.priority,
    status: r.status,
    enqueuedAt: r.enqueuedAt,
    notNowCount: r.notNowCount,
  };
  if (r.updatedAt !== undefined) v.updatedAt = r.updatedAt;
  if (r.result) {
    const { atMs: _ms, raw, errorChain, ...rest } = r.result;
    v.result = { ...rest, raw: copyBuf(raw), ...(errorChain ? { errorChain: copy(errorChain) } : {}) };
  }
  return v;
}

export class MemoryStore implements Store, WorkAround {
  private closed = false;

  private constructor(private readonly data: MemoryData) {}

  static async open(data: MemoryData = new MemoryData()): Promise<MemoryStore> {
    return new MemoryStore(data);
  }

  private get d(): MemoryData {
    if (this.closed) throw new Unavailable('memory store is closed');
    return this.data;
  }

  // --- helpers ---

  private sorted(kind: 'sortedDevices' | 'sortedArtifacts', keys: () => Iterable<string>): string[] {
    const d = this.d;
    return (d[kind] ??= [...keys()].sort(compareIds));
  }

  /** The ids of one page: after the cursor, at most limit + 1 (pageOf cuts the extra one). */
  private pageIds(sorted: string[], page: PageRequest | undefined): string[] {
    const cursor = pageCursor(page);
    const limit = pageLimit(page);
    let lo = 0;
    if (cursor !== undefined) {
      let hi = sorted.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (compareIds(sorted[mid]!, cursor) <= 0) lo = mid + 1;
        else hi = mid;
      }
    }
    return sorted.slice(lo, lo + limit + 1);
  }

  private channelIds(deviceId: string): string[] {
    const ids = [...(this.d.channels.get(deviceId) ?? [])];
    return ids.includes(deviceId) ? ids : [deviceId, ...ids];
  }

  /** Drop an enrollment's pending commands (finished history stays). */
  private dropQueue(eid: string): void {
    const cmds = this.d.commands.get(eid);
    if (!cmds) return;
    for (const [uuid, c] of cmds) {
      if (FINAL.has(c.status)) continue;
      cmds.delete(uuid);
      this.unref(uuid, eid);
    }
  }

  private unref(uuid: string, eid: string): void {
    const p = this.d.payloads.get(uuid);
    if (!p) return;
    p.refs.delete(eid);
    if (p.refs.size === 0) this.d.payloads.delete(uuid);
  }

  private inactivate(eid: string, now: string, dropSecret: boolean): void {
    const e = this.d.enrollments.get(eid);
    if (!e) return;
    if (e.active) {
      e.active = false;
      e.updatedAt = now;
    }
    if (dropSecret) delete e.unlockToken;
  }

  /** Write a device's status row: facts from `dev` (or the stored record), the reconciler's half from `profiles` (or as stored). */
  private putRow(deviceId: string, dev: DeviceRecord | undefined, profiles: StatusProfiles | undefined): void {
    const d = this.d;
    const prev = d.status.get(deviceId);
    const record = dev ?? (prev ? undefined : d.devices.get(deviceId));
    const facts = record ? statusFacts(record) : prev?.facts;
    if (!facts) return; // no such device
    const row: DeviceStatus = { id: deviceId, facts };
    const p = profiles ?? prev?.profiles;
    if (p) row.profiles = copy(p);
    d.status.set(deviceId, row);
    d.statusIndex.set(deviceId, row);
  }

  private withSeen(row: DeviceStatus): DeviceStatus {
    const seen = this.d.statusIndex.lastSeen(row.id);
    const out = copy(row);
    if (seen !== undefined) out.lastSeenAt = new Date(seen).toISOString();
    return out;
  }

  /** Refuses before anything changes: a uuid already there for a target, or other bytes under a uuid in use. */
  private checkEnqueue(targets: string[], cmd: NewCommand, refuseExisting: boolean): void {
    if (refuseExisting) {
      const dup = targets.filter((t) => this.d.commands.get(t)?.has(cmd.uuid));
      if (dup.length) {
        throw new Conflict(`command ${cmd.uuid} already exists for ${dup.slice(0, 3).join(', ')}${dup.length > 3 ? ` and ${dup.length - 3} more` : ''}`);
      }
    }
    const stored = this.d.payloads.get(cmd.uuid);
    if (stored && !stored.bytes.equals(cmd.payload)) throw new Conflict(`command ${cmd.uuid} already exists with a different payload`);
  }

  private addCommand(targets: string[], cmd: NewCommand, enqueuedAt: string): void {
    const d = this.d;
    const priority = cmd.priority ?? DEFAULT_PRIORITY;
    const seq = ++d.seq;
    let p = d.payloads.get(cmd.uuid);
    if (!p) d.payloads.set(cmd.uuid, (p = { bytes: copyBuf(cmd.payload), refs: new Set() }));
    for (const t of targets) {
      let cmds = d.commands.get(t);
      if (!cmds) d.commands.set(t, (cmds = new Map()));
      cmds.set(cmd.uuid, { uuid: cmd.uuid, requestType: cmd.requestType, priority, seq, enqueuedAt, status: 'Pending', notNowCount: 0 });
      p.refs.add(t);
    }
  }

  // --- check-in ---

  async authenticate(deviceId: string, facts: DeviceFacts, identity: IdentityBinding, at: Date, change?: IdentityChange, event?: OutboxEntry): Promise<void> {
    checkDeviceId(deviceId);
    checkId('certificate hash', identity.certHash);
    const d = this.d;
    const now = at.toISOString();
    d.outbox.add(event);
    const prev = d.devices.get(deviceId);
    const reenrolled = change !== undefined && change.kind !== 'renewal';
    const dev: DeviceRecord = {
      id: deviceId,
      facts: copy(facts),
      identity: copy(identity),
      authenticatedAt: now,
      reported: (!reenrolled && prev?.reported) || {},
    };
    if (prev?.checkedOutAt !== undefined) dev.checkedOutAt = prev.checkedOutAt;
    const changes = change ? [...(prev?.identityChanges ?? []), copy(change)].slice(-MAX_IDENTITY_CHANGES) : prev?.identityChanges;
    if (changes?.length) dev.identityChanges = changes;
    if (!prev) d.sortedDevices = undefined;
    d.devices.set(deviceId, dev);
    if (reenrolled) d.bootstrap.delete(deviceId);
    if (prev && prev.identity.certHash !== identity.certHash && d.certs.get(prev.identity.certHash) === deviceId) d.certs.delete(prev.identity.certHash);
    d.certs.set(identity.certHash, deviceId);
    for (const eid of this.channelIds(deviceId)) {
      this.inactivate(eid, now, reenrolled);
      this.dropQueue(eid);
    }
    this.putRow(deviceId, dev, undefined);
  }

  async tokenUpdate(rec: EnrollmentRecord, onActivation?: OutboxEntry): Promise<{ activated: boolean }> {
    checkChannel(rec);
    const d = this.d;
    const prev = d.enrollments.get(rec.id);
    const activated = !prev || !prev.active;
    if (activated) d.outbox.add(onActivation);
    const next = copyEnrollment({ ...rec, active: true });
    if (prev) {
      next.createdAt = prev.createdAt;
      // Devices send UnlockToken (and macOS the user names) only in some TokenUpdates: keep what we have.
      if (next.unlockToken === undefined && prev.unlockToken !== undefined) next.unlockToken = prev.unlockToken;
      if (next.userShortName === undefined && prev.userShortName !== undefined) next.userShortName = prev.userShortName;
      if (next.userLongName === undefined && prev.userLongName !== undefined) next.userLongName = prev.userLongName;
      if (next.lastSeenAt === undefined && prev.lastSeenAt !== undefined) next.lastSeenAt = prev.lastSeenAt;
      if (prev.deviceId !== rec.deviceId) d.channels.get(prev.deviceId)?.delete(rec.id);
    }
    d.enrollments.set(rec.id, next);
    let set = d.channels.get(rec.deviceId);
    if (!set) d.channels.set(rec.deviceId, (set = new Set()));
    set.add(rec.id);
    if (rec.type === 'device') {
      const dev = d.devices.get(rec.deviceId);
      if (dev && dev.enrolledAt === undefined) {
        dev.enrolledAt = rec.updatedAt;
        this.putRow(rec.deviceId, dev, undefined);
      }
    }
    // A user channel enrolled anew is a cause to reconcile the device (its declarations).
    if (activated && rec.type === 'user') d.work.set(rec.deviceId, d.work.next(rec.deviceId));
    return { activated };
  }

  async checkOut(enrollmentId: string, at: Date, event?: OutboxEntry): Promise<void> {
    checkId('enrollment id', enrollmentId);
    const d = this.d;
    const now = at.toISOString();
    d.outbox.add(event);
    const e = d.enrollments.get(enrollmentId);
    const devId = e?.deviceId ?? enrollmentId;
    const dev = d.devices.get(devId);
    const isDeviceChannel = e ? e.type === 'device' : dev !== undefined && devId === enrollmentId;
    if (!isDeviceChannel) {
      this.inactivate(enrollmentId, now, false);
      this.dropQueue(enrollmentId);
      return;
    }
    for (const eid of this.channelIds(devId)) {
      this.inactivate(eid, now, false);
      this.dropQueue(eid);
    }
    if (dev) {
      delete dev.enrolledAt;
      dev.checkedOutAt = now;
      this.putRow(devId, dev, undefined);
    }
  }

  async rebindIdentity(deviceId: string, identity: IdentityBinding, change?: IdentityChange, event?: OutboxEntry): Promise<void> {
    checkId('device id', deviceId);
    checkId('certificate hash', identity.certHash);
    const d = this.d;
    const dev = d.devices.get(deviceId);
    if (!dev) throw new NotFound(`no device ${JSON.stringify(deviceId.slice(0, 80))} to rebind`);
    d.outbox.add(event);
    if (d.certs.get(dev.identity.certHash) === deviceId) d.certs.delete(dev.identity.certHash);
    d.certs.set(identity.certHash, deviceId);
    dev.identity = copy(identity);
    if (change) dev.identityChanges = [...(dev.identityChanges ?? []), copy(change)].slice(-MAX_IDENTITY_CHANGES);
  }

  async touch(enrollmentId: string, at: Date): Promise<void> {
    checkId('enrollment id', enrollmentId);
    this.d.statusIndex.touch(deviceOfEnrollment(enrollmentId), at.getTime());
    const e = this.d.enrollments.get(enrollmentId);
    if (!e) return;
    const iso = at.toISOString();
    if (e.lastSeenAt === undefined || Date.parse(e.lastSeenAt) < at.getTime()) e.lastSeenAt = iso;
  }

  async setBootstrapToken(deviceId: string, token: Buffer | null): Promise<void> {
    checkId('device id', deviceId);
    if (token === null) this.d.bootstrap.delete(deviceId);
    else this.d.bootstrap.set(deviceId, copyBuf(token));
  }

  async getBootstrapToken(deviceId: string): Promise<Buffer | undefined> {
    checkId('device id', deviceId);
    const t = this.d.bootstrap.get(deviceId);
    return t && copyBuf(t);
  }

  // --- inventory ---

  async getDevice(deviceId: string): Promise<DeviceRecord | undefined> {
    checkId('device id', deviceId);
    const dev = this.d.devices.get(deviceId);
    return dev && copy(dev);
  }

  async deviceForCert(certHash: string): Promise<string | undefined> {
    checkId('certificate hash', certHash);
    return this.d.certs.get(certHash);
  }

  async listDevices(page?: PageRequest): Promise<Page<DeviceRecord>> {
    const ids = this.pageIds(
      this.sorted('sortedDevices', () => this.d.devices.keys()),
      page,
    );
    return pageOf(
      ids.map((id) => copy(this.d.devices.get(id)!)),
      pageLimit(page),
      (dev) => dev.id,
    );
  }

  async listDeviceIds(page?: PageRequest): Promise<Page<string>> {
    const ids = this.pageIds(
      this.sorted('sortedDevices', () => this.d.devices.keys()),
      page,
    );
    return pageOf(ids, pageLimit(page), (id) => id);
  }

  async getEnrollment(enrollmentId: string): Promise<EnrollmentRecord | undefined> {
    checkId('enrollment id', enrollmentId);
    const e = this.d.enrollments.get(enrollmentId);
    return e && copyEnrollment(e);
  }

  async listEnrollments(deviceId: string): Promise<EnrollmentRecord[]> {
    checkId('device id', deviceId);
    return [...(this.d.channels.get(deviceId) ?? [])].flatMap((id) => {
      const e = this.d.enrollments.get(id);
      return e ? [copyEnrollment(e)] : [];
    });
  }

  // --- command queue ---

  async enqueue(targets: string[], cmd: NewCommand, at: Date): Promise<void> {
    checkCommand(cmd);
    const uniq = checkTargets(targets);
    if (!uniq.length) return;
    this.checkEnqueue(uniq, cmd, true);
    this.addCommand(uniq, cmd, at.toISOString());
  }

  async nextCommand(enrollmentId: string, opts: { skipNotNow: boolean }): Promise<QueuedCommand | undefined> {
    checkId('enrollment id', enrollmentId);
    let best: CmdRec | undefined;
    for (const c of this.d.commands.get(enrollmentId)?.values() ?? []) {
      if (FINAL.has(c.status) || (opts.skipNotNow && c.status === 'NotNow')) continue;
      if (!best || c.priority > best.priority || (c.priority === best.priority && c.seq < best.seq)) best = c;
    }
    if (!best) return undefined;
    return {
      uuid: best.uuid,
      requestType: best.requestType,
      payload: copyBuf(this.d.payloads.get(best.uuid)!.bytes),
      priority: best.priority,
      status: best.status as 'Pending' | 'NotNow',
      enqueuedAt: best.enqueuedAt,
    };
  }

  // --- results ---

  async recordResult(enrollmentId: string, commandUUID: string, result: CommandResult, reported?: ReportedState, event?: OutboxEntry): Promise<RecordOutcome> {
    checkId('enrollment id', enrollmentId);
    checkId('command uuid', commandUUID);
    const atMs = checkResult(commandUUID, result);
    const d = this.d;
    const c = d.commands.get(enrollmentId)?.get(commandUUID);
    if (!c) return 'unknown';
    if (FINAL.has(c.status)) return 'duplicate';
    d.outbox.add(event);
    c.updatedAt = result.at;
    if (result.status === 'NotNow') {
      c.status = 'NotNow';
      c.notNowCount++;
      return 'notnow';
    }
    c.status = result.status;
    c.result = { status: result.status, at: result.at, atMs, raw: copyBuf(result.raw), ...(result.errorChain ? { errorChain: copy(result.errorChain) } : {}) };
    const devId = d.enrollments.get(enrollmentId)?.deviceId ?? enrollmentId;
    const dev = d.devices.get(devId);
    if (dev) {
      for (const [k, v] of Object.entries(reported ?? {})) if (v !== undefined) (dev.reported as Record<string, unknown>)[k] = copy(v);
      // The device confirmed its erasure: the identity it enrolled with is gone (re-enroll policy).
      if (result.status === 'Acknowledged' && c.requestType === 'EraseDevice' && enrollmentId === devId) dev.erasedAt = result.at;
      if (reported?.DeviceInformation) this.putRow(devId, dev, undefined);
    }
    // The device's answer is a cause to reconcile it (src/store/roles/work.ts).
    if (enrollmentId === devId) d.work.set(devId, d.work.next(devId, new Date(atMs)));
    return 'recorded';
  }

  async getCommand(enrollmentId: string, commandUUID: string): Promise<CommandView | undefined> {
    checkId('enrollment id', enrollmentId);
    checkId('command uuid', commandUUID);
    const c = this.d.commands.get(enrollmentId)?.get(commandUUID);
    return c && view(c);
  }

  async listCommands(enrollmentId: string, page?: PageRequest): Promise<Page<CommandView>> {
    checkId('enrollment id', enrollmentId);
    const limit = pageLimit(page);
    const cursor = pageCursor(page);
    const after = cursor === undefined ? 0 : Number(cursor);
    if (!Number.isSafeInteger(after) || after < 0) throw new Malformed(`page cursor ${JSON.stringify(cursor)} is not a command cursor`);
    const recs = [...(this.d.commands.get(enrollmentId)?.values() ?? [])].filter((c) => c.seq > after).sort((a, b) => a.seq - b.seq);
    const { items, next } = pageOf(recs.slice(0, limit + 1), limit, (c) => String(c.seq));
    return next === undefined ? { items: items.map(view) } : { items: items.map(view), next };
  }

  async compact(before: Date): Promise<number> {
    const cut = before.getTime();
    let removed = 0;
    for (const [eid, cmds] of this.d.commands) {
      for (const [uuid, c] of cmds) {
        if (!c.result || c.result.atMs >= cut) continue;
        cmds.delete(uuid);
        this.unref(uuid, eid);
        removed++;
      }
      if (cmds.size === 0) this.d.commands.delete(eid);
    }
    return removed;
  }

  // --- reconcile state ---

  async getArtifacts(deviceId: string): Promise<VersionedArtifacts | undefined> {
    checkId('device id', deviceId);
    const a = this.d.artifacts.get(deviceId);
    return a && { ...copy(a.state), version: a.version };
  }

  async listArtifacts(page?: PageRequest): Promise<Page<VersionedArtifacts>> {
    const ids = this.pageIds(
      this.sorted('sortedArtifacts', () => this.d.artifacts.keys()),
      page,
    );
    return pageOf(
      ids.map((id) => {
        const a = this.d.artifacts.get(id)!;
        return { ...copy(a.state), version: a.version };
      }),
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
    const d = this.d;
    const prev = d.artifacts.get(deviceId);
    const current = prev?.version ?? 0;
    if (current !== expectedVersion) throw new VersionConflictError(deviceId, expectedVersion, current);
    const enqueue = change.enqueue.map((e) => ({ targets: checkTargets(e.targets), cmd: e.cmd }));
    for (const e of enqueue) this.checkEnqueue(e.targets, e.cmd, false);
    // Checked: from here on nothing throws, so the commit is all or nothing.
    const version = expectedVersion + 1;
    if (!prev) d.sortedArtifacts = undefined;
    d.artifacts.set(deviceId, { version, state: copy(withoutVersion(state)) });
    if (change.status) this.putRow(deviceId, undefined, change.status);
    const cancelled: string[] = [];
    for (const { enrollmentId, uuid } of change.cancel) {
      const cmds = d.commands.get(enrollmentId);
      const c = cmds?.get(uuid);
      if (!c || FINAL.has(c.status)) continue; // answered meanwhile: nothing to withdraw
      cmds!.delete(uuid);
      this.unref(uuid, enrollmentId);
      cancelled.push(uuid);
    }
    const enqueuedAt = at.toISOString();
    for (const e of enqueue) if (e.targets.length) this.addCommand(e.targets, e.cmd, enqueuedAt);
    return { cancelled, version };
  }

  // --- read model ---

  async getStatus(deviceId: string): Promise<DeviceStatus | undefined> {
    checkId('device id', deviceId);
    const row = this.d.status.get(deviceId);
    return row && this.withSeen(row);
  }

  async putStatus(deviceId: string, profiles: StatusProfiles): Promise<void> {
    checkId('device id', deviceId);
    if (this.d.status.has(deviceId)) this.putRow(deviceId, undefined, profiles);
  }

  async fleetCounts(opts: { now: Date; staleDays: number }): Promise<FleetCounts> {
    return this.d.statusIndex.fleet(opts.now, opts.staleDays);
  }

  async blueprintCounts(names: string[]): Promise<Record<string, BlueprintCounts>> {
    return this.d.statusIndex.blueprints(names);
  }

  async queryStatus(q: StatusQuery): Promise<{ total: number; devices: DeviceStatus[] }> {
    const { total, ids } = this.d.statusIndex.query(q);
    return { total, devices: ids.flatMap((id) => (this.d.status.has(id) ? [this.withSeen(this.d.status.get(id)!)] : [])) };
  }

  // --- webhook outbox ---

  async queueEvent(urls: readonly string[], event: OutboxEvent): Promise<void> {
    this.d.outbox.add({ urls, event });
  }
  async pendingEvents(url: string, limit: number): Promise<OutboxRow[]> {
    return this.d.outbox.pending(url, limit);
  }
  async removeEvent(url: string, seq: number): Promise<void> {
    this.d.outbox.remove(url, seq);
  }
  async countEvents(): Promise<number> {
    return this.d.outbox.count();
  }

  // --- material ---

  // --- work ---

  async addWork(deviceId: string, dueAt?: Date): Promise<void> {
    this.d.work.set(deviceId, this.d.work.next(deviceId, dueAt));
  }

  async addWorkAround<T>(deviceId: string, write: () => Promise<T>): Promise<T> {
    // One process, nothing durable: the row after the cause is as good as before it.
    const out = await write();
    await this.addWork(deviceId);
    return out;
  }

  async getWork(deviceId: string): Promise<{ dueAt: Date } | undefined> {
    return this.d.work.due(deviceId);
  }

  async claimWork(req: ClaimRequest): Promise<WorkClaim[]> {
    return this.d.work.claim(req);
  }

  async finishWork(claim: WorkClaim): Promise<boolean> {
    if (!this.d.work.finishes(claim)) return false;
    this.d.work.drop(claim.deviceId);
    return true;
  }

  async countWork(): Promise<number> {
    return this.d.work.size;
  }

  acquireLease(name: string, holder: string, ttlMs: number, now?: Date): Promise<Lease | undefined> {
    return this.d.material.acquireLease(name, holder, ttlMs, now);
  }

  releaseLease(name: string, holder: string): Promise<void> {
    return this.d.material.releaseLease(name, holder);
  }

  getLease(name: string, now?: Date): Promise<Lease | undefined> {
    return this.d.material.getLease(name, now);
  }

  getMaterial(kind: MaterialKind, key: string, now?: Date): Promise<Buffer | undefined> {
    return this.d.material.getMaterial(kind, key, now);
  }

  putMaterial(kind: MaterialKind, key: string, value: Buffer, opts?: PutMaterialOptions): Promise<boolean> {
    return this.d.material.putMaterial(kind, key, value, opts);
  }

  takeMaterial(kind: MaterialKind, key: string, now?: Date): Promise<Buffer | undefined> {
    return this.d.material.takeMaterial(kind, key, now);
  }

  deleteMaterial(kind: MaterialKind, key: string): Promise<void> {
    return this.d.material.deleteMaterial(kind, key);
  }

  listMaterial(kind: MaterialKind, page?: PageRequest, now?: Date): Promise<Page<MaterialItem>> {
    return this.d.material.listMaterial(kind, page, now);
  }

  pruneMaterial(kind: MaterialKind, now?: Date): Promise<number> {
    return this.d.material.pruneMaterial(kind, now);
  }

  // --- lifecycle ---

  async health(): Promise<StoreHealth> {
    return this.closed ? { backend: 'memory', ready: false, reason: 'closed' } : { backend: 'memory', ready: true };
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
