import type { Page, PageRequest } from '../paging.js';
import type { CommandResult, CommandView, RecordOutcome, ReportedState } from '../records.js';

/** Devices' answers to commands, and the history kept until retention compacts it. */
export interface ResultStore {
  /**
   * Store a device's answer to a command. Final statuses take it out of the queue and keep the
   * result (and, when given, merge `reported` into the device's reported state) in one batch;
   * NotNow keeps it queued and flagged. A second answer to a finished command is 'duplicate';
   * a command not queued for this enrollment is 'unknown'. Neither changes anything. An
   * Acknowledged EraseDevice on the device channel sets the device's `erasedAt`.
   */
  recordResult(enrollmentId: string, commandUUID: string, result: CommandResult, reported?: ReportedState): Promise<RecordOutcome>;
  /** One command of an enrollment, pending or finished (with its result); undefined if unknown or compacted. */
  getCommand(enrollmentId: string, commandUUID: string): Promise<CommandView | undefined>;
  /** Pending and finished commands of an enrollment, oldest first, one page at a time. */
  listCommands(enrollmentId: string, page?: PageRequest): Promise<Page<CommandView>>;
  /** Delete finished commands whose result is older than `before`. Returns how many. */
  compact(before: Date): Promise<number>;
}
