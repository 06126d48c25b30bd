import type { DeviceArtifacts } from '../../model/artifacts.js';
import type { Page, PageRequest } from '../paging.js';
import type { ReconcileChange } from '../records.js';

/**
 * A device's reconcile state with its version: 1 after the first commit, one more after each.
 * A device with no state has version 0.
 */
export type VersionedArtifacts = DeviceArtifacts & { version: number };

/** The reconciler's per-device state, committed together with the commands it decides on. */
export interface ReconcileStateStore {
  getArtifacts(deviceId: string): Promise<VersionedArtifacts | undefined>;
  /** Every device's state in device id order, one page at a time (reports, `GET /api/v1/devices`). */
  listArtifacts(page?: PageRequest): Promise<Page<VersionedArtifacts>>;
  /**
   * Compare-and-set, atomically: if the state is still at `expectedVersion` (0: none yet),
   * replace it (a `version` field on `state` is ignored), queue the commands, withdraw the
   * cancelled ones that are still queued. Otherwise `VersionConflictError` and nothing changes:
   * another writer decided meanwhile, so read again and decide again. Returns the uuids actually
   * withdrawn and the new version. A crash leaves either all of it or none.
   */
  commitReconcile(
    deviceId: string,
    state: DeviceArtifacts,
    change: ReconcileChange,
    at: Date,
    expectedVersion: number,
  ): Promise<{ cancelled: string[]; version: number }>;
}
