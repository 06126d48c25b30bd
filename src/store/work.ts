/**
 * The work rows of the embedded backends (src/store/roles/work.ts). One process owns a LevelDB
 * or in-memory store, so claims live in memory here (a restart loses them, which reclaims every
 * row: the durable part is the rows, which LevelDB writes in the batch of their cause).
 */
import { checkId } from './ids.js';
import type { ClaimRequest, StoredWork, WorkClaim } from './roles/work.js';

export class EmbeddedWork {
  private readonly rows = new Map<string, StoredWork>();
  /** device id -> holder and claim expiry (ms). */
  private readonly claims = new Map<string, { holder: string; until: number }>();
  /** device id -> causes whose batch is still being written. */
  private readonly writing = new Map<string, number>();

  /** The row `addWork(deviceId, dueAt)` leaves: to be written by the caller's batch, then `set`. */
  next(deviceId: string, dueAt: Date = new Date()): StoredWork {
    checkId('device id', deviceId);
    const prev = this.rows.get(deviceId);
    const at = dueAt.getTime();
    return { dueAt: prev ? Math.min(prev.dueAt, at) : at, gen: (prev?.gen ?? 0) + 1 };
  }

  set(deviceId: string, row: StoredWork): void {
    this.rows.set(deviceId, row);
  }

  /**
   * A cause being written (LevelDB): its row takes its gen now, so a concurrent cause takes the
   * next one, but is not claimed until `settle`: a claimer must see what the cause wrote.
   */
  begin(deviceId: string, dueAt?: Date): StoredWork {
    const row = this.next(deviceId, dueAt);
    this.rows.set(deviceId, row);
    this.writing.set(deviceId, (this.writing.get(deviceId) ?? 0) + 1);
    return row;
  }

  /** The cause's batch is written (or failed): its row may be claimed. */
  settle(deviceId: string): void {
    const n = (this.writing.get(deviceId) ?? 0) - 1;
    if (n > 0) this.writing.set(deviceId, n);
    else this.writing.delete(deviceId);
  }

  get(deviceId: string): StoredWork | undefined {
    return this.rows.get(deviceId);
  }

  due(deviceId: string): { dueAt: Date } | undefined {
    checkId('device id', deviceId);
    const row = this.rows.get(deviceId);
    return row && { dueAt: new Date(row.dueAt) };
  }

  claim(req: ClaimRequest): WorkClaim[] {
    if (!(req.leaseMs > 0)) throw new RangeError('a work claim needs a positive lease');
    const now = (req.now ?? new Date()).getTime();
    const due = [...this.rows]
      .filter(([id, r]) => r.dueAt <= now && !this.writing.has(id) && !((this.claims.get(id)?.until ?? 0) > now))
      .sort(([a, x], [b, y]) => x.dueAt - y.dueAt || (a < b ? -1 : a > b ? 1 : 0))
      .slice(0, Math.max(0, req.limit));
    for (const [id] of due) this.claims.set(id, { holder: req.holder, until: now + req.leaseMs });
    return due.map(([deviceId, r]) => ({ deviceId, gen: r.gen }));
  }

  /** Whether the row goes (the caller deletes it from its backend, then calls `drop`). */
  finishes(claim: WorkClaim): boolean {
    const row = this.rows.get(claim.deviceId);
    if (row?.gen === claim.gen) return true;
    // A cause came after the claim: the row stays for the next claim.
    this.claims.delete(claim.deviceId);
    return false;
  }

  drop(deviceId: string): void {
    this.rows.delete(deviceId);
    this.claims.delete(deviceId);
  }

  get size(): number {
    return this.rows.size;
  }
}
