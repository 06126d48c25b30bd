/**
 * Reconciler state: for each device, the artifacts (configuration profiles today, declarations
 * later) Orchard manages on it, each with the version it wants there and where that stands.
 */
import type { ErrorChainItem } from './device.js';

export type ArtifactKind = 'profile';

/**
 * pending: an install command is queued; acknowledged: the device accepted it, not yet seen in a
 * ProfileList; verified: seen with this version; failed: the device refused it (retried with
 * backoff up to a limit); removing: a RemoveProfile is queued.
 */
export type ArtifactPhase = 'pending' | 'acknowledged' | 'verified' | 'failed' | 'removing';

export interface ArtifactStatus {
  kind: ArtifactKind;
  /** PayloadIdentifier. */
  identifier: string;
  /** Profile document name in the repository. */
  profile: string;
  /** Blueprints that want it on this device. */
  blueprints: string[];
  /** The version Orchard wants (PayloadUUID of the rendered profile). */
  uuid: string;
  /** Hash of the profile as rendered without secret values: what `orchard plan` can compare. */
  templateHash: string;
  phase: ArtifactPhase;
  /** The revision (commit, or content hash without git) this version comes from. */
  revision: string;
  /** Queued command in flight (install or remove). */
  commandUUID?: string;
  attempts: number;
  lastError?: { at: string; message: string; errorChain?: ErrorChainItem[] };
  /** Earliest next install attempt after a failure. */
  retryAt?: string;
  /** Leave it installed when no blueprint wants it any more. */
  prune: boolean;
  updatedAt: string;
  verifiedAt?: string;
  /** Times a verified profile went missing or changed on the device and was put back. */
  drift: number;
}

export interface DeviceArtifacts {
  deviceId: string;
  artifacts: Record<string, ArtifactStatus>;
  /**
   * Inventory commands in flight, at most one of each per device: the ProfileList and
   * DeviceInformation of a drift check or enrollment, and `verify`, a ProfileList queued behind
   * installs and removals (lower priority, so the device answers it after them).
   */
  inventory?: { profileList?: string; deviceInformation?: string; verify?: string; queuedAt: string };
  /**
   * Setup Assistant for the enrollment that began at `enrolledAt` (a device awaiting
   * configuration): the DeviceConfigured command in flight, when the device acknowledged it
   * (released), or why it failed. See src/reconcile/setup.ts.
   */
  setup?: { enrolledAt: string; deviceConfigured?: string; releasedAt?: string; error?: string };
  /** The revision last reconciled against. */
  revision?: string;
  reconciledAt?: string;
}
