import type { DdmStatus, DeclarationSet } from '../../ddm/model.js';

/**
 * Declarative Device Management, per enrollment: the declaration set the reconciler computed
 * (`current`), the set the device was last given (`given`: a declaration fetch is answered from
 * it, so a revision applied mid-sync does not fail the device), and what the device reported.
 * Implemented in src/store/ddm.ts (memory, LevelDB); every backend passes test/store/ddm-suite.ts.
 */
export type SetSlot = 'current' | 'given';

export interface DdmStore {
  getDeclarationSet(enrollmentId: string, slot: SetSlot): Promise<DeclarationSet | undefined>;
  putDeclarationSet(enrollmentId: string, slot: SetSlot, set: DeclarationSet): Promise<void>;
  getDdmStatus(enrollmentId: string): Promise<DdmStatus | undefined>;
  /**
   * `reconcile`: the report changes what the device's row or facts show, so it is a cause to
   * reconcile the device: a work row for it (src/store/roles/work.ts) is written with the status
   * (PostgreSQL: one transaction; LevelDB, a database of its own: the row first, claimable after).
   */
  putDdmStatus(enrollmentId: string, status: DdmStatus, opts?: { reconcile?: boolean }): Promise<void>;
  /** Forget an enrollment's sets and status (a new enrollment starts with nothing on the device). */
  resetDdm(enrollmentId: string): Promise<void>;
  /** Enrollment ids with anything stored. */
  listDdmEnrollments(): Promise<string[]>;
  close(): Promise<void>;
}
