/** The records the store keeps: what devices told us, their channels, commands and results. */
import type { StatusProfiles } from './status.js';

/** One entry of an MDM `ErrorChain` (mdm/errors in Apple's schema). */
export interface ErrorChainItem {
  ErrorCode: number;
  ErrorDomain: string;
  LocalizedDescription?: string;
  USEnglishDescription?: string;
}

/** Facts a device reports in `Authenticate` (mdm/checkin/authenticate.yaml), minus MessageType. */
export interface DeviceFacts {
  UDID?: string;
  EnrollmentID?: string;
  Topic: string;
  SerialNumber?: string;
  Model?: string;
  ModelName?: string;
  ProductName?: string;
  OSVersion?: string;
  BuildVersion?: string;
  DeviceName?: string;
  IMEI?: string;
  MEID?: string;
  /**
   * Set by the server, never taken from a message: the serial number the device's certificate
   * was issued for (a one-time enrollment created for that serial), present only when the
   * device's claimed SerialNumber is that one. Selectors with `proven: true` require it.
   */
  provenSerialNumber?: string;
}

/** Which certificate a device proved itself with at `Authenticate`. Hashes are SHA-256 hex. */
export interface IdentityBinding {
  certHash: string;
  /** SHA-256 of the issuer's DER certificate: a renewed identity must come from the same CA. */
  issuerHash: string;
  subject: string;
  notAfter: string;
  /** What the built-in CA issued the certificate for (a one-time enrollment for a serial or UDID). */
  issuedFor?: { serial?: string; udid?: string };
}

/**
 * The certificate a device speaks with changed: a renewal (the bound certificate asked the CA for
 * its successor) or a re-enrollment (another certificate took over under the re-enroll policy).
 */
export interface IdentityChange {
  at: string;
  kind: 'renewal' | 're-enrollment';
  /** Why a re-enrollment was allowed: the policy and the condition that held. */
  reason?: string;
  from: Pick<IdentityBinding, 'certHash' | 'subject' | 'notAfter'>;
  to: Pick<IdentityBinding, 'certHash' | 'subject' | 'notAfter'>;
}

/** A report the device sent in answer to a query command, kept with when it arrived. */
export interface Reported<T> {
  at: string;
  commandUUID: string;
  value: T;
}

/** What the device last told us about itself (only the commands that describe state). */
export interface ReportedState {
  DeviceInformation?: Reported<Record<string, unknown>>;
  SecurityInfo?: Reported<Record<string, unknown>>;
  ProfileList?: Reported<Record<string, unknown>[]>;
  InstalledApplicationList?: Reported<Record<string, unknown>[]>;
  CertificateList?: Reported<Record<string, unknown>[]>;
}

export interface DeviceRecord {
  /** UDID, or EnrollmentID for a User Enrollment. */
  id: string;
  facts: DeviceFacts;
  identity: IdentityBinding;
  authenticatedAt: string;
  /** Set by the first TokenUpdate after Authenticate; cleared by Authenticate and CheckOut. */
  enrolledAt?: string;
  checkedOutAt?: string;
  /** When the device acknowledged an EraseDevice (after its last Authenticate): its identity is gone with its data. */
  erasedAt?: string;
  reported: ReportedState;
  /** The latest identity changes, newest last (at most 10). */
  identityChanges?: IdentityChange[];
}

export interface PushInfo {
  /** The APNs device token as lowercase hex. */
  token: string;
  pushMagic: string;
  topic: string;
}

/**
 * A channel a device takes commands on: the device channel (`UDID`) or a user channel
 * (`UDID:UserID`). Backends keep the two in separate key spaces, so no device id can name another
 * device's user channel.
 */
export interface EnrollmentRecord {
  id: string;
  deviceId: string;
  type: 'device' | 'user';
  userId?: string;
  userShortName?: string;
  userLongName?: string;
  /** False until the first TokenUpdate; false again after CheckOut or a new Authenticate. */
  active: boolean;
  push?: PushInfo;
  /** Secret. Never logged. */
  unlockToken?: Buffer;
  awaitingConfiguration?: boolean;
  createdAt: string;
  updatedAt: string;
  lastSeenAt?: string;
}

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

/** What one reconcile of one device changes, written in one atomic batch with its new state. */
export interface ReconcileChange {
  enqueue: { targets: string[]; cmd: NewCommand }[];
  /** Queued commands to withdraw (not yet answered): superseded installs, removals no longer needed. */
  cancel: { enrollmentId: string; uuid: string }[];
  /** The reconciler's half of the device's status row (read model), written in the same batch. */
  status?: StatusProfiles;
}

export type RecordOutcome = 'recorded' | 'notnow' | 'unknown' | 'duplicate';
