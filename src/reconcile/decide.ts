/**
 * The diff: desired state against what the device reported and what Orchard has done, giving the
 * next state and the commands to queue. Pure (no I/O), so the reconciler and `orchard plan`
 * decide the same way, and re-running with nothing changed decides nothing.
 */
import type { ErrorChainItem } from '../model/device.js';
import type { DesiredState } from './desired.js';
import type { RenderedProfile } from './render.js';
import type { ArtifactStatus, DeviceArtifacts } from './types.js';

export interface ReportedProfile {
  PayloadIdentifier: string;
  PayloadUUID: string;
}

export interface RetryPolicy {
  maxAttempts: number;
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 5, baseMs: 60_000, maxMs: 3600_000 };

export type Action =
  | { type: 'install'; identifier: string; rendered: RenderedProfile; reason: 'missing' | 'update' | 'drift' | 'retry' | 'lost' }
  | { type: 'remove'; identifier: string; reason: 'unwanted' | 'retry' }
  | { type: 'cancel'; identifier: string; commandUUID: string }
  /** Release the device from Setup Assistant: its setup items are all accepted (src/reconcile/setup.ts). */
  | { type: 'configured'; identifier: 'DeviceConfigured' };

export interface Decision {
  state: DeviceArtifacts;
  /** Whether any artifact differs from the input state (else there is nothing to write). */
  changed: boolean;
  actions: Action[];
  /** Nothing can be decided until the device reports its ProfileList. */
  needInventory: boolean;
}

export interface DecideInput {
  desired: DesiredState;
  /** The device's last ProfileList and when it arrived; undefined if it never sent one. */
  reported?: { at: string; profiles: ReportedProfile[] };
  state: DeviceArtifacts;
  revision: string;
  now: Date;
  retry?: RetryPolicy;
  /**
   * The device waits in Setup Assistant for DeviceConfigured: only Setup Assistant items
   * (`setup: true`) are installed; the others wait, neither installed nor removed.
   */
  awaitingConfiguration?: boolean;
}

export function backoffMs(attempts: number, p: RetryPolicy): number {
  return Math.min(p.maxMs, p.baseMs * 2 ** Math.max(0, attempts - 1));
}

export function decide(input: DecideInput): Decision {
  const { desired, reported, revision, now } = input;
  const retry = input.retry ?? DEFAULT_RETRY;
  const nowIso = now.toISOString();
  // Entries are replaced, never mutated, so a shallow copy keeps the input intact.
  const artifacts: Record<string, ArtifactStatus> = { ...input.state.artifacts };
  const state: DeviceArtifacts = { ...input.state, artifacts, revision, reconciledAt: nowIso };
  const actions: Action[] = [];
  if (!reported) return { state, actions, needInventory: true, changed: false };

  const onDevice = new Map(reported.profiles.map((p) => [p.PayloadIdentifier, p.PayloadUUID]));
  const reportedAfter = (iso: string | undefined) => iso === undefined || Date.parse(reported.at) > Date.parse(iso);
  const retryDue = (st: ArtifactStatus) => st.attempts < retry.maxAttempts && (!st.retryAt || Date.parse(st.retryAt) <= now.getTime());

  for (const [id, want] of desired.profiles) {
    const st = artifacts[id];
    if (input.awaitingConfiguration && !want.setup) continue;
    if (!want.rendered) {
      // Could not be rendered for this device (e.g. a secret without a value): say so, queue nothing.
      artifacts[id] = {
        ...(st ?? base(id, want.profile, nowIso)),
        blueprints: want.blueprints,
        prune: want.prune,
        revision,
        phase: 'failed',
        updatedAt: nowIso,
        lastError: { at: nowIso, message: want.error ?? 'cannot render' },
      };
      continue;
    }
    const r = want.rendered;
    const fields = { profile: want.profile, blueprints: want.blueprints, prune: want.prune };
    if (onDevice.get(id) === r.uuid) {
      if (st?.commandUUID && st.phase === 'pending') actions.push({ type: 'cancel', identifier: id, commandUUID: st.commandUUID });
      const wasVerified = st?.phase === 'verified' && st.uuid === r.uuid;
      if (wasVerified && !st!.commandUUID && st!.templateHash === r.templateHash && sameFields(st!, fields)) continue; // unchanged
      // A version keeps the revision that introduced it: an unrelated commit rewrites nothing.
      artifacts[id] = {
        ...(st ?? base(id, want.profile, nowIso)),
        ...fields,
        uuid: r.uuid,
        templateHash: r.templateHash,
        revision: st?.uuid === r.uuid && st.revision ? st.revision : revision,
        phase: 'verified',
        commandUUID: undefined,
        retryAt: undefined,
        lastError: undefined,
        updatedAt: wasVerified ? st!.updatedAt : nowIso,
        verifiedAt: wasVerified ? st!.verifiedAt : nowIso,
      };
      continue;
    }
    let reason: Extract<Action, { type: 'install' }>['reason'] | undefined;
    if (!st || st.uuid !== r.uuid) {
      if (st?.commandUUID && (st.phase === 'pending' || st.phase === 'removing')) actions.push({ type: 'cancel', identifier: id, commandUUID: st.commandUUID });
      reason = onDevice.has(id) || st ? 'update' : 'missing';
    } else if (st.phase === 'pending') {
      if (!st.commandUUID) reason = 'lost'; // its command vanished (re-enrollment, compaction)
    } else if (st.phase === 'acknowledged') {
      // Accepted, but a ProfileList newer than that acceptance does not show it: gone again.
      if (reportedAfter(st.updatedAt)) reason = 'drift';
    } else if (st.phase === 'verified') {
      reason = 'drift';
    } else if (st.phase === 'failed') {
      if (retryDue(st)) reason = 'retry';
    } else if (st.phase === 'removing') {
      if (st.commandUUID) actions.push({ type: 'cancel', identifier: id, commandUUID: st.commandUUID });
      reason = 'missing';
    }
    if (!reason) {
      if (!sameFields(st!, fields)) artifacts[id] = { ...st!, ...fields };
      continue;
    }
    const attempts = reason === 'retry' ? st!.attempts + 1 : 1;
    artifacts[id] = {
      ...(st ?? base(id, want.profile, nowIso)),
      ...fields,
      uuid: r.uuid,
      templateHash: r.templateHash,
      revision,
      phase: 'pending',
      commandUUID: undefined,
      attempts,
      updatedAt: nowIso,
      retryAt: undefined,
      drift: (st?.drift ?? 0) + (reason === 'drift' ? 1 : 0),
      lastError: reason === 'retry' ? st!.lastError : undefined,
    };
    actions.push({ type: 'install', identifier: id, rendered: r, reason });
  }

  for (const [id, st] of Object.entries(artifacts)) {
    if (desired.profiles.has(id) || desired.frozen.has(id)) continue;
    const installed = onDevice.has(id);
    if (!prunes(st.blueprints, st.prune, desired.prune)) {
      // The blueprint opted out of pruning: stop managing it, leave it on the device (and
      // withdraw an install or a removal still queued: `prune: false` removes nothing).
      if (st.commandUUID && (st.phase === 'pending' || st.phase === 'removing')) actions.push({ type: 'cancel', identifier: id, commandUUID: st.commandUUID });
      delete artifacts[id];
      continue;
    }
    if (st.phase === 'removing') {
      if (!installed && reportedAfter(st.updatedAt)) delete artifacts[id];
      continue;
    }
    if (st.phase === 'pending' && st.commandUUID) actions.push({ type: 'cancel', identifier: id, commandUUID: st.commandUUID });
    const removalFailed = st.phase === 'failed' && isRemoval(st);
    if (!installed && st.phase !== 'acknowledged') {
      delete artifacts[id];
      continue;
    }
    if (removalFailed && !retryDue(st)) continue;
    artifacts[id] = { ...st, phase: 'removing', commandUUID: undefined, updatedAt: nowIso, attempts: removalFailed ? st.attempts + 1 : 1, uuid: '' };
    actions.push({ type: 'remove', identifier: id, reason: removalFailed ? 'retry' : 'unwanted' });
  }
  const setup = state.setup;
  if (input.awaitingConfiguration && setup && !setup.deviceConfigured && !setup.error && setupReady(desired, artifacts))
    actions.push({ type: 'configured', identifier: 'DeviceConfigured' });
  return { state, actions, needInventory: false, changed: changedFrom(input.state.artifacts, artifacts) };
}

/**
 * Whether a profile no blueprint wants any more is removed. The revision being applied decides:
 * each blueprint that wanted it counts with its `prune` in that revision (`now`), so a commit
 * that sets `prune: false` and drops a profile in one go keeps it, and one that sets
 * `prune: true` and drops it removes it. A blueprint deleted from the repository counts with the
 * flag recorded when the profile was last wanted. Any `prune: false` keeps it.
 */
export function prunes(blueprints: readonly string[], recorded: boolean, now: ReadonlyMap<string, boolean> | undefined): boolean {
  if (!now || blueprints.length === 0) return recorded;
  return blueprints.every((b) => now.get(b) ?? recorded);
}

function sameFields(st: ArtifactStatus, f: { profile: string; blueprints: string[]; prune: boolean }): boolean {
  return (
    st.profile === f.profile && st.prune === f.prune && st.blueprints.length === f.blueprints.length && st.blueprints.every((b, i) => b === f.blueprints[i])
  );
}

/** Entries are replaced when they change: compare by reference, then by value for replaced ones. */
function changedFrom(before: Record<string, ArtifactStatus>, after: Record<string, ArtifactStatus>): boolean {
  const keys = Object.keys(after);
  if (keys.length !== Object.keys(before).length) return true;
  for (const k of keys) {
    const a = before[k];
    const b = after[k]!;
    if (a === b) continue;
    if (!a || JSON.stringify(a) !== JSON.stringify(b)) return true;
  }
  return false;
}

/** Every Setup Assistant item is accepted by the device (acknowledged or seen installed; declarations reported active). */
export function setupReady(desired: DesiredState, artifacts: DeviceArtifacts['artifacts']): boolean {
  if (desired.setupDeclarations?.length) return false;
  for (const [id, want] of desired.profiles) {
    if (!want.setup) continue;
    const phase = artifacts[id]?.phase;
    if (!want.rendered || (phase !== 'acknowledged' && phase !== 'verified')) return false;
  }
  return true;
}

/** A removal in progress or failed: the wanted version is none. */
export const isRemoval = (st: ArtifactStatus): boolean => st.uuid === '';

function base(identifier: string, profile: string, nowIso: string): ArtifactStatus {
  return {
    kind: 'profile',
    identifier,
    profile,
    blueprints: [],
    uuid: '',
    templateHash: '',
    phase: 'pending',
    revision: '',
    attempts: 0,
    prune: true,
    updatedAt: nowIso,
    drift: 0,
  };
}

/** A device's answer to an install or remove command, applied to the artifact it was for. */
export function applyResult(
  st: ArtifactStatus,
  status: 'Acknowledged' | 'Error' | 'CommandFormatError',
  at: Date,
  errorChain: ErrorChainItem[] | undefined,
  retry: RetryPolicy = DEFAULT_RETRY,
): ArtifactStatus | undefined {
  const atIso = at.toISOString();
  if (st.phase === 'removing') {
    if (status === 'Acknowledged') return undefined; // removed: no longer managed
    return {
      ...st,
      phase: 'failed',
      commandUUID: undefined,
      updatedAt: atIso,
      lastError: { at: atIso, message: describeChain(errorChain, status), errorChain },
      retryAt: new Date(at.getTime() + backoffMs(st.attempts, retry)).toISOString(),
    };
  }
  if (status === 'Acknowledged') return { ...st, phase: 'acknowledged', commandUUID: undefined, updatedAt: atIso, lastError: undefined, retryAt: undefined };
  return {
    ...st,
    phase: 'failed',
    commandUUID: undefined,
    updatedAt: atIso,
    lastError: { at: atIso, message: describeChain(errorChain, status), errorChain },
    retryAt: new Date(at.getTime() + backoffMs(st.attempts, retry)).toISOString(),
  };
}

export function describeChain(chain: ErrorChainItem[] | undefined, status: string): string {
  if (!chain?.length) return `device answered ${status}`;
  return chain.map((e) => `${e.ErrorDomain} ${e.ErrorCode}: ${e.LocalizedDescription ?? e.USEnglishDescription ?? ''}`.trim()).join('; ');
}
