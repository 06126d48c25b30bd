/**
 * What Orchard knows about a device and its enrollments: the records the MDM protocol fills, the
 * store keeps and the reconciler and reports read. Shared types only (no code), so protocol,
 * store and reconciler depend on this module and not on each other.
 */

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
  /**
   * Set by the server, never taken from a message: the device's record in Apple Business Manager
   * (matched by serial number at Authenticate), so blueprints can select ABM devices by its fields.
   */
  abm?: AbmFacts;
}

/** What ABM says about a device (Apple's Device object of the device enrollment service, the fields selectors use). */
export interface AbmFacts {
  /** The imported server token the device is assigned through. */
  token: string;
  model?: string;
  description?: string;
  color?: string;
  os?: string;
  deviceFamily?: string;
  assignedBy?: string;
  profileStatus?: string;
  profileUuid?: string;
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
  /**
   * The declarations its last DDM status report names (identifier -> active, valid). Not stored
   * here: the DDM part adds it from its status before the reconciler decides (setup items).
   */
  Declarations?: Reported<Record<string, { active: boolean; valid: string }>>;
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
