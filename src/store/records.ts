/** The records the store keeps: what devices told us, their channels, commands and results. */
import type { NewCommand } from '../model/command.js';
import type { StatusProfiles } from './status.js';

// The records themselves are the shared model (src/model/), which protocol and reconciler use too.
export type * from '../model/device.js';
export type * from '../model/command.js';
export type * from '../model/artifacts.js';

/** What one reconcile of one device changes, written in one atomic batch with its new state. */
export interface ReconcileChange {
  enqueue: { targets: string[]; cmd: NewCommand }[];
  /** Queued commands to withdraw (not yet answered): superseded installs, removals no longer needed. */
  cancel: { enrollmentId: string; uuid: string }[];
  /** The reconciler's half of the device's status row (read model), written in the same batch. */
  status?: StatusProfiles;
}
