/**
 * The read model: one status row per device, kept by the store so reports cost a lookup instead of
 * recomputing every device's desired state per request.
 *
 * A row has two halves, each written in the same batch as the change it summarizes:
 *   facts     derived by the store from the device record whenever it writes one (Authenticate,
 *             TokenUpdate, CheckOut, a DeviceInformation result);
 *   profiles  derived by the reconciler from the applied revision and its own record, written with
 *             `commitReconcile` (or `putStatus` when a new revision changes the summary only).
 * Fleet and blueprint counts are kept from the rows (`StatusIndex` for the embedded backends).
 */
import type { DeviceRecord } from './types.js';

export type DeviceState = 'in-sync' | 'pending' | 'drifted' | 'failed' | 'unenrolled';
export const DEVICE_STATES: readonly DeviceState[] = ['in-sync', 'pending', 'drifted', 'failed', 'unenrolled'];

/** Where one profile stands, as blueprint counts see it. */
export type PhaseClass = 'verified' | 'pending' | 'failed';

/** The half the store derives from the device record. */
export interface StatusFacts {
  serialNumber?: string;
  deviceName?: string;
  model?: string;
  productName?: string;
  osVersion?: string;
  /** The device channel is active (enrolledAt is set by its first TokenUpdate, cleared by Authenticate and CheckOut). */
  enrolled: boolean;
  enrolledAt?: string;
  checkedOutAt?: string;
  authenticatedAt: string;
}

export interface StatusProblem {
  identifier: string;
  phase: string;
  message?: string;
}

/** The half the reconciler derives from the applied revision and the device's artifacts. */
export interface StatusProfiles {
  /** The device's state while enrolled. */
  state: Exclude<DeviceState, 'unenrolled'>;
  /** Blueprints that select the device and reach it (not suspended, inside the rollout). */
  blueprints: string[];
  /** Blueprints whose selector matches the device (reaching it or not). */
  matched: string[];
  revision?: string;
  profiles: { total: number; verified: number; pending: number; failed: number };
  /** Each profile the device has or wants, by PayloadIdentifier. */
  phases: Record<string, PhaseClass>;
  /** What is wrong, one entry per profile (and per declaration). */
  problems: StatusProblem[];
  /** Declarative Device Management, when the device has (or should have) declarations. */
  ddm?: StatusDdm;
}

/**
 * A device's declarations in its row. Their phases are in `phases` too, as
 * `declaration:<Identifier>`, and the software update as `softwareupdate:<target>` (verified: at
 * the target; failed) plus `softwareupdate:<target>:<failure reason>` (failed), so blueprint
 * counts say how many devices have each declaration, how many are at the target, and why not.
 */
export interface StatusDdm {
  /** The device's OS has no DDM, though a blueprint gives it declarations (why). */
  unsupported?: string;
  declarations: { total: number; verified: number; pending: number; failed: number };
  softwareUpdate?: StatusSoftwareUpdate;
}

/** A device's software update: the blueprint's target and what the device reported (softwareupdate.*). */
export interface StatusSoftwareUpdate {
  /** TargetOSVersion (and TargetBuildVersion) of the enforcement declaration the device should have. */
  target?: string;
  phase?: 'at-target' | 'pending' | 'failed';
  /** The OS version and build the device reported over DDM. */
  osVersion?: string;
  buildVersion?: string;
  installState?: string;
  pendingVersion?: string;
  failureReason?: string;
}

export interface DeviceStatus {
  id: string;
  facts: StatusFacts;
  /** Absent until the reconciler has looked at the device. */
  profiles?: StatusProfiles;
  /** Last contact on any channel (touch), else authenticatedAt. Not part of the stored row. */
  lastSeenAt?: string;
}

export interface FleetCounts {
  total: number;
  enrolled: number;
  byState: Record<DeviceState, number>;
  stale: number;
}

export interface BlueprintCounts {
  matched: number;
  selected: number;
  byState: Record<DeviceState, number>;
  /** Per PayloadIdentifier: selected, enrolled devices with it verified / failed (the rest are pending). */
  verified: Record<string, number>;
  failed: Record<string, number>;
}

export interface StatusQuery {
  state?: DeviceState | 'stale';
  blueprint?: string;
  /** Device ids after this one (exclusive), in id order. */
  after?: string;
  /** Matches to skip (after `after`). */
  offset?: number;
  limit: number;
  now: Date;
  staleDays: number;
}

/** The read model role: every backend keeps the rows and answers these from them. */
export interface StatusStore {
  getStatus(deviceId: string): Promise<DeviceStatus | undefined>;
  /** Replace the reconciler's half of an existing device's row (no-op for an unknown device). */
  putStatus(deviceId: string, profiles: StatusProfiles): Promise<void>;
  fleetCounts(opts: { now: Date; staleDays: number }): Promise<FleetCounts>;
  /** Counts of the named blueprints (names no device has are all zeros). */
  blueprintCounts(names: string[]): Promise<Record<string, BlueprintCounts>>;
  /** One page of rows in id order; `total` counts every match. */
  queryStatus(q: StatusQuery): Promise<{ total: number; devices: DeviceStatus[] }>;
}

export const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** The facts half of a device's row: what DeviceInformation reported, else what Authenticate said. */
export function statusFacts(d: DeviceRecord): StatusFacts {
  const info = (d.reported.DeviceInformation?.value ?? {}) as Record<string, unknown>;
  const out: StatusFacts = { enrolled: d.enrolledAt !== undefined, authenticatedAt: d.authenticatedAt };
  const set = (k: 'serialNumber' | 'deviceName' | 'model' | 'productName' | 'osVersion', v: string | undefined) => {
    if (v !== undefined) out[k] = v;
  };
  set('serialNumber', str(info.SerialNumber) ?? d.facts.SerialNumber);
  set('deviceName', str(info.DeviceName) ?? d.facts.DeviceName);
  set('model', str(info.Model) ?? d.facts.Model);
  set('productName', str(info.ProductName) ?? d.facts.ProductName);
  set('osVersion', str(info.OSVersion) ?? d.facts.OSVersion);
  if (d.enrolledAt !== undefined) out.enrolledAt = d.enrolledAt;
  if (d.checkedOutAt !== undefined) out.checkedOutAt = d.checkedOutAt;
  return out;
}

/** A row's state: unenrolled, else the reconciler's verdict (in-sync before it has one). */
export function rowState(row: Pick<DeviceStatus, 'facts' | 'profiles'>): DeviceState {
  return row.facts.enrolled ? (row.profiles?.state ?? 'in-sync') : 'unenrolled';
}

export function emptyByState(): Record<DeviceState, number> {
  return Object.fromEntries(DEVICE_STATES.map((s) => [s, 0])) as Record<DeviceState, number>;
}

/** The device part of an enrollment id (`UDID` or `UDID:UserID`). */
export function deviceOfEnrollment(eid: string): string {
  const i = eid.indexOf(':');
  return i < 0 ? eid : eid.slice(0, i);
}

interface Entry {
  state: DeviceState;
  enrolled: boolean;
  blueprints: readonly string[];
  matched: readonly string[];
  phases: Readonly<Record<string, PhaseClass>>;
  /** Last seen (ms), else authenticatedAt. */
  seen: number;
}

interface BlueprintTally {
  matched: number;
  byState: Record<DeviceState, number>;
  verified: Map<string, number>;
  failed: Map<string, number>;
}

const NONE: readonly string[] = [];

/**
 * The counts and the id order of every row, in memory, for the embedded backends (LevelDB, the
 * in-memory store): rebuilt from the rows at open, changed only after the batch that writes a row
 * commits. Answers counts in O(blueprints), a state's page from its own sorted ids, and other filtered
 * pages by walking ids in order.
 */
export class StatusIndex {
  private readonly entries = new Map<string, Entry>();
  /** Device ids, sorted (UTF-16 code unit order, as reports page). */
  private readonly ids: string[] = [];
  /** The same per state, so a state's page walks only its devices. */
  private readonly idsByState = Object.fromEntries(DEVICE_STATES.map((s) => [s, [] as string[]])) as Record<DeviceState, string[]>;
  private readonly byState = emptyByState();
  private enrolled = 0;
  private readonly bps = new Map<string, BlueprintTally>();
  /** Device ids by the hour of their last contact, so a stale count walks one hour's devices, not the fleet. */
  private readonly seenHours = new Map<number, Set<string>>();
  /** Last contact per device known before its row (touch of an unknown device, open order). */
  private readonly pendingSeen = new Map<string, number>();

  get size(): number {
    return this.entries.size;
  }

  /** Take a row's new content (undefined: the device is gone). */
  set(id: string, row: Pick<DeviceStatus, 'facts' | 'profiles'> | undefined): void {
    const old = this.entries.get(id);
    if (old) this.tally(old, -1);
    if (!row) {
      if (old) {
        this.entries.delete(id);
        this.moveSeen(id, old.seen, undefined);
        remove(this.ids, id);
        remove(this.idsByState[old.state], id);
      }
      return;
    }
    const auth = Date.parse(row.facts.authenticatedAt);
    const seen = Math.max(old?.seen ?? 0, this.pendingSeen.get(id) ?? 0, Number.isNaN(auth) ? 0 : auth);
    this.pendingSeen.delete(id);
    const p = row.profiles;
    const e: Entry = {
      state: rowState(row),
      enrolled: row.facts.enrolled,
      blueprints: p?.blueprints ?? NONE,
      matched: p?.matched ?? NONE,
      phases: p?.phases ?? {},
      seen,
    };
    this.entries.set(id, e);
    this.tally(e, 1);
    this.moveSeen(id, old?.seen, seen);
    if (!old) insert(this.ids, id);
    if (old?.state !== e.state) {
      if (old) remove(this.idsByState[old.state], id);
      insert(this.idsByState[e.state], id);
    }
  }

  /** A device was seen (any channel). */
  touch(id: string, ms: number): void {
    const e = this.entries.get(id);
    if (!e) this.pendingSeen.set(id, Math.max(this.pendingSeen.get(id) ?? 0, ms));
    else if (ms > e.seen) {
      this.moveSeen(id, e.seen, ms);
      e.seen = ms;
    }
  }

  lastSeen(id: string): number | undefined {
    return this.entries.get(id)?.seen || undefined;
  }

  fleet(now: Date, staleDays: number): FleetCounts {
    const cut = now.getTime() - staleDays * DAY_MS;
    let stale = 0;
    for (const [hour, ids] of this.seenHours) {
      if ((hour + 1) * HOUR_MS <= cut) stale += ids.size;
      else if (hour * HOUR_MS < cut) for (const id of ids) if (this.entries.get(id)!.seen < cut) stale++;
    }
    return { total: this.entries.size, enrolled: this.enrolled, byState: { ...this.byState }, stale };
  }

  blueprints(names: string[]): Record<string, BlueprintCounts> {
    const out: Record<string, BlueprintCounts> = {};
    for (const n of names) {
      const t = this.bps.get(n);
      const byState = t ? { ...t.byState } : emptyByState();
      out[n] = {
        matched: t?.matched ?? 0,
        selected: DEVICE_STATES.reduce((s, st) => s + byState[st], 0),
        byState,
        verified: Object.fromEntries(t?.verified ?? []),
        failed: Object.fromEntries(t?.failed ?? []),
      };
    }
    return out;
  }

  /** Ids of one page and the number of all matches (from the counts unless the filter is `stale`). */
  query(q: StatusQuery): { total: number; ids: string[] } {
    const cut = q.now.getTime() - q.staleDays * DAY_MS;
    const test = (e: Entry): boolean =>
      (q.state === undefined || (q.state === 'stale' ? e.seen < cut : e.state === q.state)) &&
      (q.blueprint === undefined || e.blueprints.includes(q.blueprint));
    const walked = q.state === undefined || q.state === 'stale' ? this.ids : this.idsByState[q.state];
    const start = q.after === undefined ? 0 : upper(walked, q.after);
    const filtered = q.state === 'stale' || q.blueprint !== undefined;
    if (!filtered) return { total: walked.length, ids: walked.slice(start + (q.offset ?? 0), start + (q.offset ?? 0) + q.limit) };
    const counted = this.counted(q.state, q.blueprint);
    let total = counted ?? 0;
    const ids: string[] = [];
    let skip = q.offset ?? 0;
    for (let i = counted === undefined ? 0 : start; i < walked.length; i++) {
      if (!test(this.entries.get(walked[i]!)!)) continue;
      if (counted === undefined) total++;
      if (i < start) continue;
      if (skip > 0) skip--;
      else if (ids.length < q.limit) ids.push(walked[i]!);
      else if (counted !== undefined) break;
    }
    return { total, ids };
  }

  /** How many rows match, from the counts; undefined when only a walk can tell (stale). */
  private counted(state: StatusQuery['state'], blueprint: string | undefined): number | undefined {
    if (state === 'stale') return undefined;
    if (blueprint === undefined) return state === undefined ? this.ids.length : this.byState[state];
    const t = this.bps.get(blueprint);
    if (!t) return 0;
    return state === undefined ? DEVICE_STATES.reduce((n, s) => n + t.byState[s], 0) : t.byState[state];
  }

  private tally(e: Entry, k: 1 | -1): void {
    this.byState[e.state] += k;
    if (e.enrolled) this.enrolled += k;
    for (const b of e.matched) this.bp(b).matched += k;
    for (const b of e.blueprints) {
      const t = this.bp(b);
      t.byState[e.state] += k;
      if (e.state === 'unenrolled') continue;
      for (const [id, phase] of Object.entries(e.phases)) {
        if (phase === 'pending') continue;
        const m = phase === 'verified' ? t.verified : t.failed;
        const n = (m.get(id) ?? 0) + k;
        if (n) m.set(id, n);
        else m.delete(id);
      }
    }
  }

  /** Move a device between the hours of its last contact (undefined: none). */
  private moveSeen(id: string, from: number | undefined, to: number | undefined): void {
    const a = from === undefined ? undefined : Math.floor(from / HOUR_MS);
    const b = to === undefined ? undefined : Math.floor(to / HOUR_MS);
    if (a === b) return;
    if (a !== undefined) {
      const ids = this.seenHours.get(a)!;
      ids.delete(id);
      if (ids.size === 0) this.seenHours.delete(a);
    }
    if (b !== undefined) {
      let ids = this.seenHours.get(b);
      if (!ids) this.seenHours.set(b, (ids = new Set()));
      ids.add(id);
    }
  }

  private bp(name: string): BlueprintTally {
    let t = this.bps.get(name);
    if (!t) this.bps.set(name, (t = { matched: 0, byState: emptyByState(), verified: new Map(), failed: new Map() }));
    return t;
  }
}

/** First index of sorted `ids` whose id is >= id. */
function find(ids: readonly string[], id: string): number {
  let lo = 0;
  let hi = ids.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ids[mid]! < id) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** First index of sorted `ids` whose id is > id. */
function upper(ids: readonly string[], id: string): number {
  const i = find(ids, id);
  return ids[i] === id ? i + 1 : i;
}

function insert(ids: string[], id: string): void {
  const i = find(ids, id);
  if (ids[i] !== id) ids.splice(i, 0, id);
}

function remove(ids: string[], id: string): void {
  const i = find(ids, id);
  if (ids[i] === id) ids.splice(i, 1);
}
