/**
 * Read-only status reports: where the fleet stands against the applied revision.
 *
 * `loadSnapshot` reads the store once; everything else is a pure function of that snapshot, the
 * applied revision (its Fleet) and the source status, so the API, `orchard status`, the metrics
 * and the tests all compute states the same way.
 *
 * Device states (one per device, worst first):
 *   unenrolled  the device channel is not active (checked out, or never finished enrolling);
 *   failed      a desired profile was refused by the device (ArtifactStatus phase `failed`);
 *   drifted     a profile that was verified went missing or changed (drift > 0) and is not verified now;
 *   pending     some desired profile is not verified yet (queued, acknowledged, being removed, not reconciled);
 *   in-sync     every desired profile is verified.
 * `stale` is separate: the device has not been seen for `staleDays` days (whatever its state).
 */
import type { Diagnostic, Fleet } from '../gitops/model.js';
import type { RevisionInfo, RevisionStatus, SourceStatus } from '../gitops/source.js';
import { matches } from '../gitops/selector.js';
import { desiredFor, deviceView, inRollout, type RenderCache } from '../reconcile/desired.js';
import type { ArtifactPhase, ArtifactStatus, DeviceArtifacts } from '../reconcile/types.js';
import type { CommandView, DeviceRecord, EnrollmentRecord, ErrorChainItem, Store } from '../store/types.js';

export type DeviceState = 'in-sync' | 'pending' | 'drifted' | 'failed' | 'unenrolled';
export const DEVICE_STATES: readonly DeviceState[] = ['in-sync', 'pending', 'drifted', 'failed', 'unenrolled'];
export const DEFAULT_STALE_DAYS = 7;
const DAY_MS = 86_400_000;
const SECRET_STANDIN = (): string => 'secret';

/** What the push client says about itself (ApnsPusher.status()), reduced to what reports need. */
export interface PushStatusLike {
  topic?: string;
  certificate?: { notAfter: Date | string; daysLeft: number; expired: boolean; warning?: string };
  certificateProblem?: { at: string; reason: string };
  /** Outcome counters (ApnsPusher's PushCounters). */
  counters?: Readonly<Record<string, number>> | object;
}

/** Everything the reports are computed from. */
export interface Snapshot {
  devices: DeviceRecord[];
  enrollments: Map<string, EnrollmentRecord[]>;
  artifacts: Map<string, DeviceArtifacts>;
}

export interface ReportContext {
  /** The applied revision's fleet; without it the artifacts the reconciler keeps are the desired set. */
  fleet?: Fleet;
  revision?: RevisionInfo;
  source?: SourceStatus;
  push?: PushStatusLike;
  now?: Date;
  staleDays?: number;
}

export async function loadSnapshot(store: Store): Promise<Snapshot> {
  const [devices, artifacts] = await Promise.all([store.listDevices(), store.listArtifacts()]);
  const enrollments = new Map<string, EnrollmentRecord[]>();
  await Promise.all(devices.map(async (d) => enrollments.set(d.id, await store.listEnrollments(d.id))));
  return { devices, enrollments, artifacts: new Map(artifacts.map((a) => [a.deviceId, a])) };
}

// ---------------------------------------------------------------- per device

export type ProfilePhase = ArtifactPhase | 'not-reconciled';

export interface DeviceProfileStatus {
  identifier: string;
  /** Profile document name. */
  profile: string;
  blueprints: string[];
  /** Whether the applied revision wants it (false: being removed, or left by a pruned-off blueprint). */
  desired: boolean;
  phase: ProfilePhase;
  revision?: string;
  attempts: number;
  drift: number;
  verifiedAt?: string;
  updatedAt?: string;
  retryAt?: string;
  lastError?: { at: string; message: string; errorChain?: ErrorChainItem[] };
  /** The profile could not be rendered for this device (missing variable or secret). */
  renderError?: string;
}

export interface DeviceSummary {
  id: string;
  serialNumber?: string;
  deviceName?: string;
  model?: string;
  productName?: string;
  osVersion?: string;
  enrolled: boolean;
  enrolledAt?: string;
  checkedOutAt?: string;
  lastSeenAt?: string;
  state: DeviceState;
  stale: boolean;
  /** Blueprints that select the device and reach it (not suspended, inside the rollout). */
  blueprints: string[];
  revision?: string;
  profiles: { total: number; verified: number; pending: number; failed: number };
}

export interface DeviceDetail extends DeviceSummary {
  facts: DeviceRecord['facts'];
  enrollments: { id: string; type: 'device' | 'user'; active: boolean; userShortName?: string; lastSeenAt?: string }[];
  profileStatus: DeviceProfileStatus[];
  recentCommands: CommandSummary[];
}

export interface CommandSummary {
  commandUUID: string;
  requestType: string;
  status: string;
  enqueuedAt: string;
  updatedAt?: string;
  notNowCount: number;
  errorChain?: ErrorChainItem[];
}

function lastSeen(d: DeviceRecord, enrollments: EnrollmentRecord[]): string | undefined {
  let best: string | undefined;
  for (const e of enrollments) if (e.lastSeenAt && (!best || e.lastSeenAt > best)) best = e.lastSeenAt;
  return best ?? d.authenticatedAt;
}

/** Each desired profile of a device (and each managed one no longer desired) with where it stands. */
export function deviceProfiles(d: DeviceRecord, arts: DeviceArtifacts | undefined, fleet: Fleet | undefined, cache?: RenderCache): DeviceProfileStatus[] {
  const have = arts?.artifacts ?? {};
  const out: DeviceProfileStatus[] = [];
  const fromArtifact = (a: ArtifactStatus, desired: boolean): DeviceProfileStatus => ({
    identifier: a.identifier,
    profile: a.profile,
    blueprints: a.blueprints,
    desired,
    phase: a.phase,
    revision: a.revision,
    attempts: a.attempts,
    drift: a.drift,
    verifiedAt: a.verifiedAt,
    updatedAt: a.updatedAt,
    retryAt: a.retryAt,
    ...(a.lastError ? { lastError: a.lastError } : {}),
  });
  const seen = new Set<string>();
  if (fleet) {
    // Secret values are not needed to know what is wanted: a stand-in keeps render errors to variables.
    const desired = desiredFor(fleet, d, SECRET_STANDIN, cache);
    for (const p of desired.profiles.values()) {
      seen.add(p.identifier);
      const a = have[p.identifier];
      const renderError = p.error ? { renderError: p.error } : {};
      if (a) out.push({ ...fromArtifact(a, a.phase !== 'removing'), blueprints: p.blueprints, ...renderError });
      else
        out.push({
          identifier: p.identifier,
          profile: p.profile,
          blueprints: p.blueprints,
          desired: true,
          phase: 'not-reconciled',
          attempts: 0,
          drift: 0,
          ...renderError,
        });
    }
    for (const id of desired.frozen) if (have[id]) seen.add(id);
  }
  for (const a of Object.values(have)) {
    if (seen.has(a.identifier)) continue;
    // Without a fleet the reconciler's record is the desired set.
    out.push(fromArtifact(a, !fleet && a.phase !== 'removing'));
  }
  return out.sort((x, y) => x.identifier.localeCompare(y.identifier));
}

export function stateOf(enrolled: boolean, profiles: DeviceProfileStatus[]): DeviceState {
  if (!enrolled) return 'unenrolled';
  if (profiles.some((p) => p.desired && p.phase === 'failed')) return 'failed';
  if (profiles.some((p) => p.desired && p.drift > 0 && p.phase !== 'verified')) return 'drifted';
  if (profiles.some((p) => (p.desired && p.phase !== 'verified') || (!p.desired && p.phase === 'removing'))) return 'pending';
  return 'in-sync';
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function selectingBlueprints(fleet: Fleet | undefined, d: DeviceRecord): string[] {
  if (!fleet) return [];
  const { view } = deviceView(d, fleet);
  const key = view.serial ?? d.id;
  return [...fleet.blueprints.values()].filter((b) => matches(b.selector, view) && !b.suspend && inRollout(b, key)).map((b) => b.name);
}

export function deviceSummary(
  snap: Snapshot,
  d: DeviceRecord,
  ctx: ReportContext,
  cache?: RenderCache,
): DeviceSummary & { profileStatus: DeviceProfileStatus[] } {
  const now = ctx.now ?? new Date();
  const staleMs = (ctx.staleDays ?? DEFAULT_STALE_DAYS) * DAY_MS;
  const enrollments = snap.enrollments.get(d.id) ?? [];
  const arts = snap.artifacts.get(d.id);
  const enrolled = enrollments.some((e) => e.type === 'device' && e.active);
  const profileStatus = deviceProfiles(d, arts, ctx.fleet, cache);
  const seen = lastSeen(d, enrollments);
  const info = (d.reported.DeviceInformation?.value ?? {}) as Record<string, unknown>;
  const desired = profileStatus.filter((p) => p.desired);
  return {
    id: d.id,
    serialNumber: str(info.SerialNumber) ?? d.facts.SerialNumber,
    deviceName: str(info.DeviceName) ?? d.facts.DeviceName,
    model: str(info.Model) ?? d.facts.Model,
    productName: str(info.ProductName) ?? d.facts.ProductName,
    osVersion: str(info.OSVersion) ?? d.facts.OSVersion,
    enrolled,
    enrolledAt: d.enrolledAt,
    checkedOutAt: d.checkedOutAt,
    lastSeenAt: seen,
    state: stateOf(enrolled, profileStatus),
    stale: !seen || now.getTime() - Date.parse(seen) > staleMs,
    blueprints: selectingBlueprints(ctx.fleet, d),
    revision: arts?.revision,
    profiles: {
      total: desired.length,
      verified: desired.filter((p) => p.phase === 'verified').length,
      failed: desired.filter((p) => p.phase === 'failed').length,
      pending: desired.filter((p) => p.phase !== 'verified' && p.phase !== 'failed').length,
    },
    profileStatus,
  };
}

export function summarizeCommands(commands: CommandView[], limit = 20): CommandSummary[] {
  return commands
    .slice(-limit)
    .reverse()
    .map((c) => ({
      commandUUID: c.uuid,
      requestType: c.requestType,
      status: c.status,
      enqueuedAt: c.enqueuedAt,
      updatedAt: c.updatedAt,
      notNowCount: c.notNowCount,
      ...(c.result?.errorChain ? { errorChain: c.result.errorChain } : {}),
    }));
}

export function deviceDetail(snap: Snapshot, d: DeviceRecord, commands: CommandView[], ctx: ReportContext): DeviceDetail {
  const s = deviceSummary(snap, d, ctx);
  return {
    ...s,
    facts: d.facts,
    enrollments: (snap.enrollments.get(d.id) ?? []).map((e) => ({
      id: e.id,
      type: e.type,
      active: e.active,
      userShortName: e.userShortName,
      lastSeenAt: e.lastSeenAt,
    })),
    recentCommands: summarizeCommands(commands),
  };
}

/** Every device, summarized (sorted by id). */
export function deviceSummaries(snap: Snapshot, ctx: ReportContext): (DeviceSummary & { profileStatus: DeviceProfileStatus[] })[] {
  const cache: RenderCache = new Map();
  return [...snap.devices].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)).map((d) => deviceSummary(snap, d, ctx, cache));
}

// ---------------------------------------------------------------- fleet

export interface RevisionView {
  commit: string | null;
  author?: string;
  time?: string;
  message?: string;
  contentHash: string;
}

export interface FleetSummary {
  generatedAt: string;
  source?: { repo: string; branch?: string; lastFetchAt?: string; lastError?: { at: string; message: string } };
  applied?: RevisionView & { appliedAt?: string };
  /** The newest revision fetched; differs from `applied` when it failed validation. */
  latest?: RevisionView & { fetchedAt: string; valid: boolean; errorCount: number; errors: Diagnostic[] };
  /** The newest fetched revision is not the applied one (it failed validation). */
  latestRejected: boolean;
  devices: { total: number; enrolled: number; byState: Record<DeviceState, number>; stale: number; staleDays: number };
  blueprints: number;
  push?: { topic?: string; notAfter?: string; daysLeft?: number; expired?: boolean; warning?: string; problem?: string };
}

function revisionView(r: RevisionInfo): RevisionView {
  return { commit: r.commit, author: r.author, time: r.time, message: r.message, contentHash: r.contentHash };
}

export function fleetSummary(summaries: Pick<DeviceSummary, 'state' | 'stale' | 'enrolled'>[], ctx: ReportContext): FleetSummary {
  const byState = Object.fromEntries(DEVICE_STATES.map((s) => [s, 0])) as Record<DeviceState, number>;
  let stale = 0;
  let enrolled = 0;
  for (const s of summaries) {
    byState[s.state]++;
    if (s.stale) stale++;
    if (s.enrolled) enrolled++;
  }
  const src = ctx.source;
  const appliedStatus: RevisionStatus | undefined = src?.applied;
  const appliedInfo = appliedStatus ?? ctx.revision;
  const last = src?.lastAttempt;
  const latestRejected = !!last && !last.valid && (!appliedStatus || last.contentHash !== appliedStatus.contentHash || last.commit !== appliedStatus.commit);
  const push = ctx.push;
  return {
    generatedAt: (ctx.now ?? new Date()).toISOString(),
    ...(src ? { source: { repo: src.repo, branch: src.branch, lastFetchAt: src.lastFetchAt, ...(src.lastError ? { lastError: src.lastError } : {}) } } : {}),
    ...(appliedInfo ? { applied: { ...revisionView(appliedInfo), appliedAt: appliedStatus?.appliedAt } } : {}),
    ...(last ? { latest: { ...revisionView(last), fetchedAt: last.fetchedAt, valid: last.valid, errorCount: last.errorCount, errors: last.errors } } : {}),
    latestRejected,
    devices: { total: summaries.length, enrolled, byState, stale, staleDays: ctx.staleDays ?? DEFAULT_STALE_DAYS },
    blueprints: ctx.fleet?.blueprints.size ?? 0,
    ...(push
      ? {
          push: {
            topic: push.topic,
            ...(push.certificate
              ? {
                  notAfter: new Date(push.certificate.notAfter).toISOString(),
                  daysLeft: push.certificate.daysLeft,
                  expired: push.certificate.expired,
                  warning: push.certificate.warning,
                }
              : {}),
            ...(push.certificateProblem ? { problem: push.certificateProblem.reason } : {}),
          },
        }
      : {}),
  };
}

// ---------------------------------------------------------------- blueprints

export interface BlueprintReport {
  name: string;
  file: string;
  suspended: boolean;
  rolloutPercent?: number;
  prune: boolean;
  /** Devices the selector matches. */
  matched: number;
  /** Matched devices it reaches (not suspended, inside the rollout). */
  selected: number;
  devices: { byState: Record<DeviceState, number> };
  profiles: { profile: string; identifier: string; verified: number; pending: number; failed: number }[];
}

export interface BlueprintDetail extends BlueprintReport {
  selector: unknown;
  selectedDevices: { id: string; serialNumber?: string; state: DeviceState }[];
}

/** Per blueprint: which devices it selects and, per profile, how many have it verified, pending or failed. */
export function blueprintReports(
  snap: Snapshot,
  summaries: (DeviceSummary & { profileStatus: DeviceProfileStatus[] })[],
  fleet: Fleet | undefined,
): BlueprintDetail[] {
  if (!fleet) return [];
  const byId = new Map(snap.devices.map((d) => [d.id, d]));
  const out: BlueprintDetail[] = [];
  for (const b of fleet.blueprints.values()) {
    const byState = Object.fromEntries(DEVICE_STATES.map((s) => [s, 0])) as Record<DeviceState, number>;
    const profiles = b.profiles.map((name) => ({
      profile: name,
      identifier: fleet.profiles.get(name)?.identifier ?? name,
      verified: 0,
      pending: 0,
      failed: 0,
    }));
    const selectedDevices: BlueprintDetail['selectedDevices'] = [];
    let matched = 0;
    for (const s of summaries) {
      const d = byId.get(s.id)!;
      const { view } = deviceView(d, fleet);
      if (!matches(b.selector, view)) continue;
      matched++;
      if (!s.blueprints.includes(b.name)) continue;
      selectedDevices.push({ id: s.id, serialNumber: s.serialNumber, state: s.state });
      byState[s.state]++;
      if (s.state === 'unenrolled') continue;
      for (const p of profiles) {
        const st = s.profileStatus.find((x) => x.identifier === p.identifier);
        if (st?.phase === 'verified') p.verified++;
        else if (st?.phase === 'failed') p.failed++;
        else p.pending++;
      }
    }
    out.push({
      name: b.name,
      file: b.origin.file,
      suspended: b.suspend,
      ...(b.rollout ? { rolloutPercent: b.rollout.percent } : {}),
      prune: b.prune,
      matched,
      selected: selectedDevices.length,
      devices: { byState },
      profiles,
      selector: b.selector,
      selectedDevices,
    });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}
