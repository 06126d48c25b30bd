/** The DDM store role (roles/ddm.ts) in memory and in LevelDB. */
import { Level } from 'level';
import type { DdmStatus, DeclarationSet } from '../ddm/model.js';
import { deviceOfEnrollment } from './status.js';
import type { DdmStore, SetSlot } from './roles/ddm.js';
import type { WorkAround } from './roles/work.js';

export type { DdmStore, SetSlot } from './roles/ddm.js';

/** For tests and benchmarks; values are copied in and out, as a real backend would. */
export class MemoryDdmStore implements DdmStore {
  /** `work`: where a status report that is a cause to reconcile leaves its row (the main store). */
  constructor(private readonly work?: WorkAround) {}
  private readonly data = new Map<string, { current?: string; given?: string; status?: string }>();
  private entry(eid: string) {
    let e = this.data.get(eid);
    if (!e) this.data.set(eid, (e = {}));
    return e;
  }
  async getDeclarationSet(eid: string, slot: SetSlot): Promise<DeclarationSet | undefined> {
    const v = this.data.get(eid)?.[slot];
    return v === undefined ? undefined : (JSON.parse(v) as DeclarationSet);
  }
  async putDeclarationSet(eid: string, slot: SetSlot, set: DeclarationSet): Promise<void> {
    this.entry(eid)[slot] = JSON.stringify(set);
  }
  async getDdmStatus(eid: string): Promise<DdmStatus | undefined> {
    const v = this.data.get(eid)?.status;
    return v === undefined ? undefined : (JSON.parse(v) as DdmStatus);
  }
  async putDdmStatus(eid: string, status: DdmStatus, opts: { reconcile?: boolean } = {}): Promise<void> {
    const put = async () => void (this.entry(eid).status = JSON.stringify(status));
    await (opts.reconcile && this.work ? this.work.addWorkAround(deviceOfEnrollment(eid), put) : put());
  }
  async resetDdm(eid: string): Promise<void> {
    this.data.delete(eid);
  }
  async listDdmEnrollments(): Promise<string[]> {
    return [...this.data.keys()].sort();
  }
  async close(): Promise<void> {}
}

/**
 * LevelDB, in a database of its own (DATA_DIR/ddm): `<slot>\0<eid>` -> JSON. Enrollment ids
 * never contain '\0' (messages.ts allows letters, digits, '-' and the ':' of a user channel).
 */
export class LevelDdmStore implements DdmStore {
  private constructor(
    private readonly db: Level<string, unknown>,
    private readonly work?: WorkAround,
  ) {}

  /** `work`: where a status report that is a cause to reconcile leaves its row (the main store). */
  static async open(dir: string, work?: WorkAround): Promise<LevelDdmStore> {
    const db = new Level<string, unknown>(dir, { valueEncoding: 'json' });
    await db.open();
    return new LevelDdmStore(db, work);
  }
  async getDeclarationSet(eid: string, slot: SetSlot): Promise<DeclarationSet | undefined> {
    return this.db.getSync(`${slot}\0${eid}`) as DeclarationSet | undefined;
  }
  async putDeclarationSet(eid: string, slot: SetSlot, set: DeclarationSet): Promise<void> {
    await this.db.put(`${slot}\0${eid}`, set);
  }
  async getDdmStatus(eid: string): Promise<DdmStatus | undefined> {
    return this.db.getSync(`status\0${eid}`) as DdmStatus | undefined;
  }
  async putDdmStatus(eid: string, status: DdmStatus, opts: { reconcile?: boolean } = {}): Promise<void> {
    const put = () => this.db.put(`status\0${eid}`, status);
    await (opts.reconcile && this.work ? this.work.addWorkAround(deviceOfEnrollment(eid), put) : put());
  }
  async resetDdm(eid: string): Promise<void> {
    await this.db.batch((['current', 'given', 'status'] as const).map((s) => ({ type: 'del' as const, key: `${s}\0${eid}` })));
  }
  async listDdmEnrollments(): Promise<string[]> {
    const ids = new Set<string>();
    for await (const k of this.db.keys()) ids.add(k.slice(k.indexOf('\0') + 1));
    return [...ids].sort();
  }
  async close(): Promise<void> {
    await this.db.close();
  }
}
