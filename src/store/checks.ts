/**
 * The argument checks every backend runs before it touches anything, so all of them refuse the
 * same input with the same typed error (one definition, not one per backend).
 */
import { Malformed } from '../errors.js';
import { checkId } from './ids.js';
import type { CommandResult, EnrollmentRecord, FinalStatus, NewCommand, ReconcileChange } from './records.js';

export const DEFAULT_PRIORITY = 50;
export const MAX_IDENTITY_CHANGES = 10;
export const FINAL: ReadonlySet<string> = new Set<FinalStatus>(['Acknowledged', 'Error', 'CommandFormatError']);

/** A device id: inside the domain and without ':', which joins a device id and a user id. */
export function checkDeviceId(deviceId: string): void {
  checkId('device id', deviceId);
  if (deviceId.includes(':')) throw new Malformed(`device id ${JSON.stringify(deviceId.slice(0, 80))} contains ':', which joins a device and a user id`);
}

/** The two key spaces (device channels, user channels) stay apart only if ids are what they say they are. */
export function checkChannel(rec: EnrollmentRecord): void {
  checkId('enrollment id', rec.id);
  checkId('device id', rec.deviceId);
  const user = rec.id.startsWith(`${rec.deviceId}:`) ? rec.id.slice(rec.deviceId.length + 1) : undefined;
  const fits = rec.type === 'user' ? !!user && (rec.userId === undefined || rec.userId === user) : rec.id === rec.deviceId;
  if (rec.deviceId.includes(':') || !fits) {
    throw new Malformed(
      `enrollment ${JSON.stringify(rec.id.slice(0, 80))} is not a ${rec.type} channel of device ${JSON.stringify(rec.deviceId.slice(0, 80))}`,
    );
  }
}

/** The command's uuid and priority (default 50); returns the priority. */
export function checkCommand(cmd: NewCommand): number {
  checkId('command uuid', cmd.uuid);
  const priority = cmd.priority ?? DEFAULT_PRIORITY;
  if (!Number.isInteger(priority) || priority < 0 || priority > 99) {
    throw new Malformed(`command ${cmd.uuid}: priority must be an integer 0..99, got ${priority}`);
  }
  return priority;
}

/** Checks the targets and returns them without repeats, in their order. */
export function checkTargets(targets: string[]): string[] {
  const uniq = [...new Set(targets)];
  for (const t of uniq) checkId('enrollment id', t);
  return uniq;
}

/** A device's answer: a known status and a time. Returns the time in ms. */
export function checkResult(commandUUID: string, result: CommandResult): number {
  if (result.status !== 'NotNow' && !FINAL.has(result.status)) throw new Malformed(`unknown command status ${String(result.status)}`);
  const atMs = Date.parse(result.at);
  if (Number.isNaN(atMs)) throw new Malformed(`command ${commandUUID}: result time ${result.at} is not a date`);
  return atMs;
}

export function checkChange(change: ReconcileChange): void {
  for (const c of change.cancel) {
    checkId('enrollment id', c.enrollmentId);
    checkId('command uuid', c.uuid);
  }
  for (const e of change.enqueue) {
    checkCommand(e.cmd);
    checkTargets(e.targets);
  }
}

/** `version` is the store's, beside the state: a state read back and passed in again keeps none. */
export function withoutVersion<T extends object>(state: T): T {
  if (!('version' in state)) return state;
  const { version: _version, ...rest } = state as T & { version: unknown };
  return rest as T;
}
