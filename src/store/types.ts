/**
 * The `Store` contract: small role interfaces (`roles/`), composed. Every backend implements
 * `Store` and must pass the shared suite in `test/store/suite.ts` (LevelDB, PostgreSQL, memory).
 * Writes that belong together are one atomic batch or transaction, so a server killed at any
 * moment restarts with no command lost or duplicated. Ids are checked against one domain at the
 * boundary (`ids.ts`); failures are typed (`errors.ts`); lists are paged (`paging.ts`).
 *
 * A new role: an interface in `roles/NAME.ts`, added to `Store` below, implemented by every
 * backend and covered by the shared suite.
 */
import type { CheckinStore } from './roles/checkin.js';
import type { InventoryStore } from './roles/inventory.js';
import type { OutboxStore } from './roles/outbox.js';
import type { StoreLifecycle } from './roles/lifecycle.js';
import type { CommandQueue } from './roles/queue.js';
import type { ReconcileStateStore } from './roles/reconcile.js';
import type { ResultStore } from './roles/results.js';
import type { WorkStore } from './roles/work.js';
import type { LeaseStore } from './lease.js';
import type { MaterialStore } from './material.js';
import type { StatusStore } from './status.js';

export type * from './records.js';
export type { Page, PageRequest } from './paging.js';
export type { CheckinStore } from './roles/checkin.js';
export type { InventoryStore } from './roles/inventory.js';
export type { OutboxEntry, OutboxEvent, OutboxRow, OutboxStore } from './roles/outbox.js';
export type { StoreHealth, StoreLifecycle } from './roles/lifecycle.js';
export type { CommandQueue } from './roles/queue.js';
export type { ReconcileStateStore, VersionedArtifacts } from './roles/reconcile.js';
export type { ResultStore } from './roles/results.js';
export type { ClaimRequest, WorkClaim, WorkStore } from './roles/work.js';

export type { Lease, LeaseStore } from './lease.js';

export interface Store
  extends
    CheckinStore,
    InventoryStore,
    CommandQueue,
    ResultStore,
    ReconcileStateStore,
    WorkStore,
    StatusStore,
    MaterialStore,
    LeaseStore,
    OutboxStore,
    StoreLifecycle {}
