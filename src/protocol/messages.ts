/**
 * Typed MDM messages (keys from Apple's mdm/checkin/*.yaml and the command report format) and
 * their decoding from a parsed plist. Decoding checks exactly what the server relies on; every
 * refusal is a 400 that names the key.
 */
import type { DeviceFacts, ErrorChainItem } from '../model/device.js';
import { ProtocolError } from './errors.js';
import { describe, type PlistDict, type PlistValue } from './plist.js';
import { DEVICE_ID_PATTERN } from '../schema/patterns.js';

interface Identified {
  /** UDID, or EnrollmentID for a User Enrollment. */
  deviceId: string;
  /** The channel: `deviceId`, or `deviceId:UserID` for a user channel. */
  enrollmentId: string;
  userId?: string;
}

export interface AuthenticateMessage extends Identified {
  MessageType: 'Authenticate';
  facts: DeviceFacts;
}

export interface TokenUpdateMessage extends Identified {
  MessageType: 'TokenUpdate';
  Topic: string;
  Token: Buffer;
  PushMagic: string;
  UnlockToken?: Buffer;
  AwaitingConfiguration?: boolean;
  UserShortName?: string;
  UserLongName?: string;
}

export interface CheckOutMessage extends Identified {
  MessageType: 'CheckOut';
}
export interface UserAuthenticateMessage extends Identified {
  MessageType: 'UserAuthenticate';
}
export interface SetBootstrapTokenMessage extends Identified {
  MessageType: 'SetBootstrapToken';
  /** Absent means "clear it". Secret: never logged. */
  BootstrapToken?: Buffer;
  AwaitingConfiguration?: boolean;
}
export interface GetBootstrapTokenMessage extends Identified {
  MessageType: 'GetBootstrapToken';
}
export interface UnsupportedCheckinMessage extends Identified {
  MessageType: 'GetToken';
}
/** A DDM request (mdm/checkin/declarativemanagement.yaml): which endpoint, and the JSON it sends. */
export interface DeclarativeManagementMessage extends Identified {
  MessageType: 'DeclarativeManagement';
  Endpoint: string;
  Data?: Buffer;
}

export type CheckinMessage =
  | AuthenticateMessage
  | TokenUpdateMessage
  | CheckOutMessage
  | UserAuthenticateMessage
  | SetBootstrapTokenMessage
  | GetBootstrapTokenMessage
  | DeclarativeManagementMessage
  | UnsupportedCheckinMessage;

export type ReportStatus = 'Idle' | 'Acknowledged' | 'Error' | 'CommandFormatError' | 'NotNow';

/** What a device PUTs to the command endpoint. */
export interface CommandReport extends Identified {
  Status: ReportStatus;
  CommandUUID?: string;
  ErrorChain?: ErrorChainItem[];
  /** The whole decoded report, for response keys (ProfileList, QueryResponses, ...). */
  dict: PlistDict;
}

const CHECKIN_TYPES = new Set([
  'Authenticate',
  'TokenUpdate',
  'CheckOut',
  'UserAuthenticate',
  'SetBootstrapToken',
  'GetBootstrapToken',
  'GetToken',
  'DeclarativeManagement',
]);
const STATUSES = new Set<ReportStatus>(['Idle', 'Acknowledged', 'Error', 'CommandFormatError', 'NotNow']);

/** Which endpoint's message a body is, whatever URL it came to (one URL may serve both). */
export function messageKind(dict: PlistDict): 'checkin' | 'report' {
  if ('MessageType' in dict) return 'checkin';
  if ('Status' in dict) return 'report';
  throw new ProtocolError(400, 'neither MessageType nor Status present: not an MDM message');
}

export function decodeCheckin(dict: PlistDict): CheckinMessage {
  const type = str(dict, 'MessageType', true)!;
  if (!CHECKIN_TYPES.has(type)) throw new ProtocolError(400, `unknown MessageType "${type.slice(0, 60)}"`);
  const id = identify(dict);
  switch (type) {
    case 'Authenticate':
      return {
        ...id,
        MessageType: 'Authenticate',
        facts: {
          UDID: str(dict, 'UDID'),
          EnrollmentID: str(dict, 'EnrollmentID'),
          Topic: str(dict, 'Topic', true)!,
          SerialNumber: str(dict, 'SerialNumber'),
          Model: str(dict, 'Model'),
          ModelName: str(dict, 'ModelName'),
          ProductName: str(dict, 'ProductName'),
          OSVersion: str(dict, 'OSVersion'),
          BuildVersion: str(dict, 'BuildVersion'),
          DeviceName: str(dict, 'DeviceName'),
          IMEI: str(dict, 'IMEI'),
          MEID: str(dict, 'MEID'),
        },
      };
    case 'TokenUpdate':
      return {
        ...id,
        MessageType: 'TokenUpdate',
        Topic: str(dict, 'Topic', true)!,
        Token: data(dict, 'Token', true)!,
        PushMagic: str(dict, 'PushMagic', true)!,
        UnlockToken: data(dict, 'UnlockToken'),
        AwaitingConfiguration: bool(dict, 'AwaitingConfiguration'),
        UserShortName: str(dict, 'UserShortName'),
        UserLongName: str(dict, 'UserLongName'),
      };
    case 'SetBootstrapToken':
      return {
        ...id,
        MessageType: 'SetBootstrapToken',
        BootstrapToken: data(dict, 'BootstrapToken'),
        AwaitingConfiguration: bool(dict, 'AwaitingConfiguration'),
      };
    case 'DeclarativeManagement':
      return { ...id, MessageType: 'DeclarativeManagement', Endpoint: str(dict, 'Endpoint', true)!, Data: data(dict, 'Data') };
    default:
      return { ...id, MessageType: type as CheckOutMessage['MessageType'] } as CheckinMessage;
  }
}

export function decodeReport(dict: PlistDict): CommandReport {
  const status = str(dict, 'Status', true)! as ReportStatus;
  if (!STATUSES.has(status)) throw new ProtocolError(400, `unknown Status "${String(status).slice(0, 60)}"`);
  const commandUUID = str(dict, 'CommandUUID');
  if (status !== 'Idle' && !commandUUID) throw new ProtocolError(400, `Status ${status} without CommandUUID`);
  return {
    ...identify(dict),
    Status: status,
    CommandUUID: commandUUID,
    ErrorChain: errorChain(dict),
    dict,
  };
}

// What devices send: UDIDs are hex and '-' (40 hex on older iOS, 8-16 on newer, a UUID on macOS);
// EnrollmentID, UserID and EnrollmentUserID are UUIDs. Letters beyond hex are allowed because
// simulators and test rigs use readable ids (SIM-C02...). ':' is never allowed: it joins a device
// id and a user id into a user channel's enrollment id, so "VICTIM:USER1" as a UDID would name
// another device's user channel.
const DEVICE_ID = new RegExp(DEVICE_ID_PATTERN);

/**
 * A copy of `s` that does not keep the body it was parsed from alive. V8 represents a substring
 * of 13 or more characters as a view into its parent: the ids below are kept as cache keys (trust,
 * bindings, replay guard, store) for as long as the device is cached, and each would otherwise
 * keep its whole request text in memory (~1.6 KB per device). Only the ids are copied: the other
 * values of a report are written to the store, and copying them all would slow parsing a large one.
 */
function detached(s: string): string {
  return s.length < 13 ? s : (' ' + s).slice(1);
}

function identify(dict: PlistDict): Identified {
  const udid = str(dict, 'UDID');
  const enrollmentId = str(dict, 'EnrollmentID');
  const found = udid ?? enrollmentId;
  const deviceId = found === undefined ? undefined : detached(found);
  if (!deviceId) throw new ProtocolError(400, 'missing UDID (or EnrollmentID)');
  if (!DEVICE_ID.test(deviceId))
    throw new ProtocolError(400, `${udid !== undefined ? 'UDID' : 'EnrollmentID'} is not a device identifier (letters, digits and '-', at most 128)`);
  // A user channel: macOS sends UserID; User Enrollment sends EnrollmentUserID.
  const userIdFound = str(dict, 'UserID') ?? str(dict, 'EnrollmentUserID');
  const userId = userIdFound === undefined ? undefined : detached(userIdFound);
  if (userId && !DEVICE_ID.test(userId)) throw new ProtocolError(400, "UserID is not a user identifier (letters, digits and '-', at most 128)");
  return { deviceId, enrollmentId: userId ? `${deviceId}:${userId}` : deviceId, userId };
}

/** Whether `id` is a device or user identifier as devices send them (no ':', no spaces or controls). */
export function isDeviceIdentifier(id: string): boolean {
  return DEVICE_ID.test(id);
}

function errorChain(dict: PlistDict): ErrorChainItem[] | undefined {
  const v = dict.ErrorChain;
  if (v === undefined) return undefined;
  if (!Array.isArray(v)) throw new ProtocolError(400, `ErrorChain is ${describe(v)}, expected an array`);
  return v.map((item) => {
    const d = item && typeof item === 'object' && !Array.isArray(item) && !(item instanceof Uint8Array) && !(item instanceof Date) ? item : {};
    return {
      ErrorCode: typeof d.ErrorCode === 'number' ? d.ErrorCode : Number(d.ErrorCode ?? 0) || 0,
      ErrorDomain: typeof d.ErrorDomain === 'string' ? d.ErrorDomain : '',
      ...(typeof d.LocalizedDescription === 'string' ? { LocalizedDescription: d.LocalizedDescription } : {}),
      ...(typeof d.USEnglishDescription === 'string' ? { USEnglishDescription: d.USEnglishDescription } : {}),
    };
  });
}

function str(dict: PlistDict, key: string, required = false): string | undefined {
  const v: PlistValue | undefined = dict[key];
  if (v === undefined || v === null) {
    if (required) throw new ProtocolError(400, `missing ${key}`);
    return undefined;
  }
  if (typeof v !== 'string') throw new ProtocolError(400, `${key} is ${describe(v)}, expected a string`);
  return v;
}

function data(dict: PlistDict, key: string, required = false): Buffer | undefined {
  const v = dict[key];
  if (v === undefined || v === null) {
    if (required) throw new ProtocolError(400, `missing ${key}`);
    return undefined;
  }
  if (!(v instanceof Uint8Array)) throw new ProtocolError(400, `${key} is ${describe(v)}, expected data`);
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

function bool(dict: PlistDict, key: string): boolean | undefined {
  const v = dict[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') throw new ProtocolError(400, `${key} is ${describe(v)}, expected a boolean`);
  return v;
}
