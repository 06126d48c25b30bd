import type { NewCommand, QueuedCommand } from '../records.js';

/** The per-enrollment command queue, in NanoMDM's semantics. */
export interface CommandQueue {
  /**
   * Queue one command for every target in one atomic batch. Unknown targets are the caller's
   * concern. A uuid already queued or recorded for a target, or queued with other bytes, is
   * `Conflict` and nothing is queued.
   */
  enqueue(targets: string[], cmd: NewCommand, at: Date): Promise<void>;
  /**
   * The next command to offer: highest priority, then oldest. With `skipNotNow`, commands the
   * device answered NotNow are passed over (they come back on a later Idle). Offering does not
   * consume it.
   */
  nextCommand(enrollmentId: string, opts: { skipNotNow: boolean }): Promise<QueuedCommand | undefined>;
}
