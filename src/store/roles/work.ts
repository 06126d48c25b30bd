/**
 * Durable per-device reconcile work: a row per device that needs a reconcile, written in the same
 * batch or transaction as what causes it (a device's answer, ...), so a replica that dies between
 * the cause and the reconcile loses nothing: another claims the row once the dead one's claim
 * lease has run out. A reconcile done removes the row. Exactly-once queuing is not this role's job:
 * the compare-and-set on the versioned reconcile state (ReconcileStateStore) guards it, so a row
 * reconciled twice (a claimer slower than its lease) queues nothing twice.
 */

/** A claimed row: `gen` tells the claim apart from a cause written after it. */
export interface WorkClaim {
  deviceId: string;
  gen: number;
}

export interface ClaimRequest {
  /** Identifies the claimer (a replica); its claims are its own until `leaseMs` after the claim. */
  holder: string;
  limit: number;
  leaseMs: number;
  now?: Date;
}

export interface WorkStore {
  /** The device needs a reconcile from `dueAt` (default now): a row already there keeps the earlier time. */
  addWork(deviceId: string, dueAt?: Date): Promise<void>;
  /**
   * Up to `limit` due rows nobody holds a live claim on, now claimed by `holder`, earliest due first.
   * Two claimers never get the same row while its claim lives (PostgreSQL: `FOR UPDATE SKIP LOCKED`).
   */
  claimWork(req: ClaimRequest): Promise<WorkClaim[]>;
  /**
   * The claimed reconcile is done: the row goes, unless a cause was written after the claim (its
   * `gen` moved), in which case it stays, unclaimed, for the next claim. Returns whether it went.
   */
  finishWork(claim: WorkClaim): Promise<boolean>;
  /** The device's row, claimed or not, if it has one: when it is due (what `orchard store copy` carries). */
  getWork(deviceId: string): Promise<{ dueAt: Date } | undefined>;
  /** How many rows wait (claimed or not): the backlog, for status and tests. */
  countWork(): Promise<number>;
}

/**
 * Where a cause kept in another database than the work rows (the embedded DDM store) leaves its
 * row: written before `write` and claimable once `write` is done, so a crash between the two
 * leaves a row (one reconcile more), never a cause without its row.
 */
export interface WorkAround {
  addWorkAround<T>(deviceId: string, write: () => Promise<T>): Promise<T>;
}

/** A row as the embedded backends keep it. */
export interface StoredWork {
  /** ms since the epoch. */
  dueAt: number;
  gen: number;
}
