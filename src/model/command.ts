/** MDM commands as queued for an enrollment and answered by the device (shared by API, store, reconciler). */
import type { ErrorChainItem } from './device.js';

export type FinalStatus = 'Acknowledged' | 'Error' | 'CommandFormatError';
export type CommandStatus = 'Pending' | 'NotNow' | FinalStatus;

export interface NewCommand {
  uuid: string;
  requestType: string;
  /** Exactly the bytes served to the device: a plist `{CommandUUID, Command}`. */
  payload: Buffer;
  /** 0..99, higher first; equal priorities are served oldest first. Default 50. */
  priority?: number;
}

/** A command as it is offered to one enrollment. */
export interface QueuedCommand {
  uuid: string;
  requestType: string;
  payload: Buffer;
  priority: number;
  status: 'Pending' | 'NotNow';
  enqueuedAt: string;
}

export interface CommandResult {
  status: FinalStatus | 'NotNow';
  at: string;
  /** The device's raw report body. */
  raw: Buffer;
  errorChain?: ErrorChainItem[];
}

/** A command's history for one enrollment, pending or finished. */
export interface CommandView {
  uuid: string;
  requestType: string;
  priority: number;
  status: CommandStatus;
  enqueuedAt: string;
  /** Last time the device answered it (NotNow included). */
  updatedAt?: string;
  notNowCount: number;
  /** Final result; present once status is final. */
  result?: CommandResult;
}

export type RecordOutcome = 'recorded' | 'notnow' | 'unknown' | 'duplicate';
