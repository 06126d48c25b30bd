/**
 * What `orchard store copy` carries of the main store, backend-neutral: everything kept about one
 * device (its record, channels with their secrets, commands with payloads and results, reconcile
 * state, status row, reconcile work row), read through the Store's own read methods, and the two things a backend
 * adds for it: a command's payload (source) and writing a device as exported (target).
 */
import type { DeviceStatus } from './status.js';
import type { CommandView, DeviceRecord, EnrollmentRecord, Store, VersionedArtifacts } from './types.js';
import { allPages } from './paging.js';

export interface DeviceExport {
  device: DeviceRecord;
  bootstrapToken?: Buffer;
  /** With UnlockTokens and last contact. */
  enrollments: EnrollmentRecord[];
  /** Per enrollment, oldest first; the payload is absent only where compaction collected it. */
  commands: { enrollmentId: string; command: CommandView; payload?: Buffer }[];
  artifacts?: VersionedArtifacts;
  status?: DeviceStatus;
  /** Its reconcile work row, if it had one: when it is due (a claim is not carried: the target's replicas claim it anew). */
  work?: { dueAt: string };
}

export interface DeviceTransfer {
  /** The bytes queued under a command uuid, while any command references them. */
  commandPayload(uuid: string): Promise<Buffer | undefined>;
  /** Writes one device as exported, atomically (the version of its reconcile state restarts at 1); a device already there is `Conflict`. */
  importDevice(d: DeviceExport): Promise<void>;
}

/** A store a copy can read from (LevelDB, PostgreSQL). */
export function canExport(s: object): s is Pick<DeviceTransfer, 'commandPayload'> {
  return typeof (s as Partial<DeviceTransfer>).commandPayload === 'function';
}

/** A store a copy can write into (LevelDB, PostgreSQL). */
export function canImport(s: object): s is DeviceTransfer {
  return canExport(s) && typeof (s as Partial<DeviceTransfer>).importDevice === 'function';
}

/** Reads one device from `store`; undefined when it is gone. */
export async function exportDevice(store: Store & Pick<DeviceTransfer, 'commandPayload'>, deviceId: string): Promise<DeviceExport | undefined> {
  const device = await store.getDevice(deviceId);
  if (!device) return undefined;
  const enrollments = await store.listEnrollments(deviceId);
  const commands: DeviceExport['commands'] = [];
  const payloads = new Map<string, Buffer | undefined>();
  for (const e of enrollments) {
    for (const command of await allPages((p) => store.listCommands(e.id, p))) {
      if (!payloads.has(command.uuid)) payloads.set(command.uuid, await store.commandPayload(command.uuid));
      const payload = payloads.get(command.uuid);
      commands.push({ enrollmentId: e.id, command, ...(payload ? { payload } : {}) });
    }
  }
  const [bootstrapToken, artifacts, status, work] = await Promise.all([
    store.getBootstrapToken(deviceId),
    store.getArtifacts(deviceId),
    store.getStatus(deviceId),
    store.getWork(deviceId),
  ]);
  return {
    device,
    enrollments,
    commands,
    ...(bootstrapToken ? { bootstrapToken } : {}),
    ...(artifacts ? { artifacts } : {}),
    ...(status ? { status } : {}),
    ...(work ? { work: { dueAt: work.dueAt.toISOString() } } : {}),
  };
}
