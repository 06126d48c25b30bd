/**
 * Commands queued through the admin API: decoding (JSON with `{"$data": base64}` for binary
 * values, or a raw command plist), validation against Apple's command schema, and encoding to
 * the exact bytes served to the device.
 */
import { randomUUID } from 'node:crypto';
import appleCommands from './apple/commands.json' with { type: 'json' };
import { ProtocolError } from './errors.js';
import { buildPlist, describe, parsePlistDict, TRUSTED_LIMITS, type PlistDict, type PlistValue } from './plist.js';
export { fromJson, toJson } from './json.js';

interface AppleKey {
  type: string;
  presence: string;
  rangelist?: unknown[];
}
const SCHEMA = appleCommands as Record<string, { file: string; keys: Record<string, AppleKey> }>;

export interface BuiltCommand {
  uuid: string;
  requestType: string;
  /** `{CommandUUID, Command}` as an XML plist: what the device receives. */
  payload: Buffer;
}

const UUID_RE = /^[0-9A-Za-z][0-9A-Za-z._-]{0,127}$/;

/** Check a command dict against Apple's schema for its RequestType. */
export function validateCommand(command: PlistDict): string {
  const requestType = command.RequestType;
  if (typeof requestType !== 'string') throw new ProtocolError(400, 'command.RequestType is missing');
  const spec = SCHEMA[requestType];
  if (!spec) throw new ProtocolError(400, `unknown RequestType "${requestType.slice(0, 60)}" (not in Apple's mdm/commands schema)`);
  for (const [key, value] of Object.entries(command)) {
    if (key === 'RequestType') continue;
    const k = spec.keys[key];
    if (!k) {
      const known = Object.keys(spec.keys);
      throw new ProtocolError(400, `${requestType}: unknown key "${key}"${known.length ? ` (known: ${known.join(', ')})` : ' (takes no keys)'}`);
    }
    if (!typeMatches(k.type, value)) throw new ProtocolError(400, `${requestType}.${key} is ${describe(value)}, expected ${k.type} (${spec.file})`);
    if (k.rangelist && !k.rangelist.includes(value as never)) {
      throw new ProtocolError(400, `${requestType}.${key}: ${JSON.stringify(value)} is not one of ${k.rangelist.map((v) => JSON.stringify(v)).join(', ')}`);
    }
  }
  for (const [key, k] of Object.entries(spec.keys)) {
    if (k.presence === 'required' && !(key in command)) throw new ProtocolError(400, `${requestType}: missing required key ${key} (${spec.file})`);
  }
  return requestType;
}

function typeMatches(type: string, v: PlistValue): boolean {
  switch (type) {
    case 'string':
      return typeof v === 'string';
    case 'boolean':
      return typeof v === 'boolean';
    case 'integer':
      return typeof v === 'number' && Number.isInteger(v);
    case 'real':
      return typeof v === 'number';
    case 'data':
      return v instanceof Uint8Array;
    case 'date':
      return v instanceof Date;
    case 'array':
      return Array.isArray(v);
    case 'dictionary':
      return !!v && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof Date);
    default:
      return true;
  }
}

/** Build a command from its `Command` dict; `uuid` defaults to a fresh UUID. */
export function buildCommand(command: PlistDict, uuid?: string): BuiltCommand {
  const requestType = validateCommand(command);
  const id = uuid ?? randomUUID().toUpperCase();
  if (!UUID_RE.test(id)) throw new ProtocolError(400, 'CommandUUID must be 1-128 characters of [0-9A-Za-z._-]');
  return { uuid: id, requestType, payload: buildPlist({ CommandUUID: id, Command: command }) };
}

/** A raw command plist: either `{CommandUUID?, Command: {...}}` or the bare command dict. */
export function buildCommandFromPlist(body: Buffer): BuiltCommand {
  // From an admin (API token): an InstallProfile payload may be megabytes of data.
  const dict = parsePlistDict(body, TRUSTED_LIMITS);
  if ('Command' in dict) {
    const cmd = dict.Command;
    if (!cmd || typeof cmd !== 'object' || Array.isArray(cmd) || cmd instanceof Uint8Array || cmd instanceof Date) {
      throw new ProtocolError(400, `Command is ${describe(cmd)}, expected a dict`);
    }
    const uuid = dict.CommandUUID;
    if (uuid !== undefined && typeof uuid !== 'string') throw new ProtocolError(400, 'CommandUUID must be a string');
    return buildCommand(cmd, uuid);
  }
  return buildCommand(dict);
}
