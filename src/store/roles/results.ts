import type { Page, PageRequest } from '../paging.js';
import type { CommandResult, CommandView, QueuedCommand, RecordOutcome, ReportedState } from '../records.js';
import type { OutboxEntry } from './outbox.js';
import type { CommandQueue } from './queue.js';

/** Devices' answers to commands, and the history kept until retention compacts it. */
export interface ResultStore {
  /**
   * Store a device's answer to a command. Final statuses take it out of the queue and keep the
   * result (and, when given, merge `reported` into the device's reported state) in one batch;
   * NotNow keeps it queued and flagged. A second answer to a finished command is 'duplicate';
   * a command not queued for this enrollment is 'unknown'. Neither changes anything. An
   * Acknowledged EraseDevice on the device channel sets the device's `erasedAt`. `event` (the
   * answer's webhook event) is queued in the answer's batch when it is 'recorded' or 'notnow'.
   */
  recordResult(enrollmentId: string, commandUUID: string, result: CommandResult, reported?: ReportedState, event?: OutboxEntry): Promise<RecordOutcome>;
  /**
   * `recordResult`, then what `nextCommand(enrollmentId, { skipNotNow: true })` offers after it:
   * the reply to an answer. Only a backend that does both in one round trip has it (PostgreSQL);
   * `recordAndNext` falls back to the two calls.
   */
  recordResultAndNext?(
    enrollmentId: string,
    commandUUID: string,
    result: CommandResult,
    reported?: ReportedState,
    event?: OutboxEntry,
  ): Promise<{ outcome: RecordOutcome; next: QueuedCommand | undefined }>;
  /** One command of an enrollment, pending or finished (with its result); undefined if unknown or compacted. */
  getCommand(enrollmentId: string, commandUUID: string): Promise<CommandView | undefined>;
  /** Pending and finished commands of an enrollment, oldest first, one page at a time. */
  listCommands(enrollmentId: string, page?: PageRequest): Promise<Page<CommandView>>;
  /** Delete finished commands whose result is older than `before`. Returns how many. */
  compact(before: Date): Promise<number>;
}

/** A device's answer and the command to offer in reply, in one call where the store can (`recordResultAndNext`). */
export function recordAndNext(
  store: ResultStore & CommandQueue,
  enrollmentId: string,
  commandUUID: string,
  result: CommandResult,
  reported?: ReportedState,
  event?: OutboxEntry,
): Promise<{ outcome: RecordOutcome; next: QueuedCommand | undefined }> {
  if (store.recordResultAndNext) return store.recordResultAndNext(enrollmentId, commandUUID, result, reported, event);
  return (async () => {
    const outcome = await store.recordResult(enrollmentId, commandUUID, result, reported, event);
    return { outcome, next: await store.nextCommand(enrollmentId, { skipNotNow: true }) };
  })();
}
