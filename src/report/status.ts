/**
 * Read-only status reports: where the fleet stands against the applied revision.
 *
 * Fleet-wide reports read the store's read model (src/store/status.ts): each device's row is
 * computed here by `statusProfiles` when the reconciler commits, and the counts are kept from the
 * rows. One device's detail is computed live by `deviceSummary`, from the same functions, so the
 * API, `orchard status`, the metrics and the tests all compute states the same way.
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
import { desiredFor, deviceView, inRollout, type DesiredState, type RenderCache } from '../reconcile/desired.js';
import type { ArtifactPhase, ArtifactStatus, DeviceArtifacts } from '../reconcile/types.js';
import { setupProblem, waitingInSetup } from '../reconcile/setup.js';
import {
  DAY_MS,
  DEVICE_STATES,
  rowState,
  type BlueprintCounts,
  type DeviceState,
  type DeviceStatus,
  type FleetCounts,
  type PhaseClass,
  type StatusDdm,
  type StatusFacts,
  type StatusProblem,
  type StatusProfiles,
} from '../store/status.js';
import type { CommandView, DeviceRecord, EnrollmentRecord, ErrorChainItem, Store } from '../store/types.js';
import { allPages } from '../store/paging.js';
import type { AbmStatus } from '../abm/service.js';

export { DEVICE_STATES, type DeviceState };
export const DEFAULT_STALE_DAYS = 7;
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
  abm?: AbmStatus;
  now?: Date;
  staleDays?: number;
}

export async function loadSnapshot(store: Store): Promise<Snapshot> {
  const [devices, artifacts] = await Promise.all([allPages((p) => store.listDevices(p)), allPages((p) => store.listArtifacts(p))]);
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

/** The row's facts (names, model, OS, enrollment) and where the device stands. */
export interface DeviceSummary extends Omit<StatusFacts, 'authenticatedAt'> {
  id: string;
  lastSeenAt?: string;
  state: DeviceState;
  stale: boolean;
  /** Blueprints that select the device and reach it (not suspended, inside the rollout). */
  blueprints: string[];
  revision?: string;
  profiles: { total: number; verified: number; pending: number; failed: number };
  /** Declarations (DDM): counts, software update, or why the OS has none (from the status row). */
  ddm?: StatusDdm;
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

/**
 * Each desired profile of a device (and each managed one no longer desired) with where it stands.
 * `desired`: the device's desired state under `fleet`, when the caller has it already.
 */
export function deviceProfiles(
  d: DeviceRecord,
  arts: DeviceArtifacts | undefined,
  fleet: Fleet | undefined,
  cache?: RenderCache,
  desired?: DesiredState,
): DeviceProfileStatus[] {
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
    desired ??= desiredFor(fleet, d, SECRET_STANDIN, cache);
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

/** Blueprints whose selector matches the device, and those of them that reach it (not suspended, inside the rollout). */
function blueprintsOf(fleet: Fleet | undefined, d: DeviceRecord): { matched: string[]; selected: string[] } {
  if (!fleet) return { matched: [], selected: [] };
  const { view } = deviceView(d, fleet);
  const key = view.serial ?? d.id;
  const matched = [...fleet.blueprints.values()].filter((b) => matches(b.selector, view));
  return { matched: matched.map((b) => b.name), selected: matched.filter((b) => !b.suspend && inRollout(b, key)).map((b) => b.name) };
}

function profileCounts(profileStatus: DeviceProfileStatus[]): DeviceSummary['profiles'] {
  const desired = profileStatus.filter((p) => p.desired);
  return {
    total: desired.length,
    verified: desired.filter((p) => p.phase === 'verified').length,
    failed: desired.filter((p) => p.phase === 'failed').length,
    pending: desired.filter((p) => p.phase !== 'verified' && p.phase !== 'failed').length,
  };
}

/** What is wrong, in one line per profile, without the full detail. */
export function problemsOf(profileStatus: DeviceProfileStatus[]): StatusProblem[] {
  return profileStatus
    .filter((p) => p.phase === 'failed' || (p.drift > 0 && p.phase !== 'verified') || p.renderError)
    .map((p) => ({ identifier: p.identifier, phase: p.phase, message: p.lastError?.message ?? p.renderError }));
}

function phaseClass(p: DeviceProfileStatus): PhaseClass {
  return p.phase === 'verified' ? 'verified' : p.phase === 'failed' ? 'failed' : 'pending';
}

/**
 * The reconciler's half of a device's status row (read model): where its profiles stand under
 * `fleet`, as if it were enrolled (the store knows whether it is).
 */
export function statusProfiles(
  d: DeviceRecord,
  arts: DeviceArtifacts | undefined,
  fleet: Fleet | undefined,
  desired?: DesiredState,
  cache?: RenderCache,
): StatusProfiles {
  const profileStatus = deviceProfiles(d, arts, fleet, cache, desired);
  const { matched, selected } = blueprintsOf(fleet, d);
  const out: StatusProfiles = {
    state: stateOf(true, profileStatus) as StatusProfiles['state'],
    blueprints: selected,
    matched,
    profiles: profileCounts(profileStatus),
    phases: Object.fromEntries(profileStatus.map((p) => [p.identifier, phaseClass(p)])),
    problems: problemsOf(profileStatus),
  };
  if (arts && waitingInSetup(d, arts)) {
    // Held in Setup Assistant: say which setup item it waits for and the device's error.
    const problem = setupProblem(desired ?? (fleet ? desiredFor(fleet, d, undefined, cache) : undefined), arts);
    out.problems.push(problem);
    if (problem.phase === 'failed') out.state = 'failed';
    else if (out.state === 'in-sync') out.state = 'pending';
  }
  if (arts?.revision !== undefined) out.revision = arts.revision;
  return out;
}

/** A device's summary from its status row. */
export function rowSummary(row: DeviceStatus, ctx: Pick<ReportContext, 'now' | 'staleDays'>): DeviceSummary & { problems: StatusProblem[] } {
  const now = ctx.now ?? new Date();
  const staleMs = (ctx.staleDays ?? DEFAULT_STALE_DAYS) * DAY_MS;
  const f = row.facts;
  const seen = row.lastSeenAt ?? f.authenticatedAt;
  return {
    id: row.id,
    serialNumber: f.serialNumber,
    deviceName: f.deviceName,
    model: f.model,
    productName: f.productName,
    osVersion: f.osVersion,
    enrolled: f.enrolled,
    enrolledAt: f.enrolledAt,
    checkedOutAt: f.checkedOutAt,
    lastSeenAt: seen,
    state: rowState(row),
    stale: !seen || now.getTime() - Date.parse(seen) > staleMs,
    blueprints: row.profiles?.blueprints ?? [],
    revision: row.profiles?.revision,
    profiles: row.profiles?.profiles ?? { total: 0, verified: 0, pending: 0, failed: 0 },
    problems: row.profiles?.problems ?? [],
    ...(row.profiles?.ddm ? { ddm: row.profiles.ddm } : {}),
  };
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
    blueprints: blueprintsOf(ctx.fleet, d).selected,
    revision: arts?.revision,
    profiles: profileCounts(profileStatus),
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
  /** Apple Business Manager: each imported token (expiry, last sync) and what an admin must act on. */
  abm?: AbmStatus;
}

function revisionView(r: RevisionInfo): RevisionView {
  return { commit: r.commit, author: r.author, time: r.time, message: r.message, contentHash: r.contentHash };
}

/** The fleet summary from the read model's counts. */
export function fleetSummary(counts: FleetCounts, ctx: ReportContext): FleetSummary {
  const { byState, stale, enrolled } = counts;
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
    devices: { total: counts.total, enrolled, byState, stale, staleDays: ctx.staleDays ?? DEFAULT_STALE_DAYS },
    blueprints: ctx.fleet?.blueprints.size ?? 0,
    ...(ctx.abm && (ctx.abm.tokens.length > 0 || ctx.abm.conditions.length > 0) ? { abm: ctx.abm } : {}),
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
  /** Per declaration it delivers (DDM), devices with it verified, pending or failed. */
  declarations: { declaration: string; identifier: string; verified: number; pending: number; failed: number }[];
  /** Its `softwareUpdate:`: devices at the target, pending, failed, and the failure reasons they reported. */
  softwareUpdate?: { target: string; atTarget: number; pending: number; failed: number; reasons: Record<string, number> };
}

export interface BlueprintDetail extends BlueprintReport {
  selector: unknown;
  selectedDevices: { id: string; serialNumber?: string; state: DeviceState }[];
}

/** Per blueprint of the applied revision: devices it matches and selects, and per profile how many have it verified, pending or failed. */
export function blueprintReports(counts: Record<string, BlueprintCounts>, fleet: Fleet): BlueprintReport[] {
  const out: BlueprintReport[] = [];
  for (const b of fleet.blueprints.values()) {
    const c = counts[b.name];
    const byState = { ...(c?.byState ?? Object.fromEntries(DEVICE_STATES.map((s) => [s, 0]))) } as Record<DeviceState, number>;
    const reached = DEVICE_STATES.reduce((n, s) => n + (s === 'unenrolled' ? 0 : byState[s]), 0);
    const profiles = b.profiles.map((name) => {
      const identifier = fleet.profiles.get(name)?.identifier ?? name;
      const verified = c?.verified[identifier] ?? 0;
      const failed = c?.failed[identifier] ?? 0;
      return { profile: name, identifier, verified, pending: reached - verified - failed, failed };
    });
    const declarations = b.deliver.flatMap((name) => {
      const d = fleet.declarations.get(name);
      if (!d) return [];
      const key = d.channel === 'user' ? `declaration:${d.identifier} (user)` : `declaration:${d.identifier}`;
      const verified = c?.verified[key] ?? 0;
      const failed = c?.failed[key] ?? 0;
      return [{ declaration: name, identifier: d.identifier, verified, pending: reached - verified - failed, failed }];
    });
    const su = b.softwareUpdate;
    const target = su ? (su.targetBuildVersion ? `${su.targetOSVersion} (${su.targetBuildVersion})` : su.targetOSVersion) : undefined;
    const suKey = `softwareupdate:${target}`;
    const softwareUpdate = target
      ? {
          target,
          atTarget: c?.verified[suKey] ?? 0,
          pending: reached - (c?.verified[suKey] ?? 0) - (c?.failed[suKey] ?? 0),
          failed: c?.failed[suKey] ?? 0,
          reasons: Object.fromEntries(Object.entries(c?.failed ?? {}).flatMap(([k, n]) => (k.startsWith(`${suKey}:`) ? [[k.slice(suKey.length + 1), n]] : []))),
        }
      : undefined;
    out.push({
      name: b.name,
      file: b.origin.file,
      suspended: b.suspend,
      ...(b.rollout ? { rolloutPercent: b.rollout.percent } : {}),
      prune: b.prune,
      matched: c?.matched ?? 0,
      selected: c?.selected ?? 0,
      devices: { byState },
      profiles,
      declarations,
      ...(softwareUpdate ? { softwareUpdate } : {}),
    });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}
