/** `MaterialStore` and `LeaseStore` in memory, for the in-memory store (one process: a take is a delete of the map entry). */
import { leaseOf, nextLease, type Lease, type LeaseStore, type StoredLease } from './lease.js';
import {
  checkMaterialKey,
  isLive,
  MATERIAL_KINDS,
  type MaterialEntry,
  type MaterialItem,
  type MaterialKind,
  type MaterialStore,
  type PutMaterialOptions,
} from './material.js';
import { Malformed } from '../errors.js';
import type { MemoryOutbox } from './outbox.js';
import { pageCursor, pageLimit, pageOf, type Page, type PageRequest } from './paging.js';

export class MemoryMaterial implements MaterialStore, LeaseStore {
  private readonly entries = new Map<string, MaterialEntry>();

  /** `outbox`: where a value's event goes (`PutMaterialOptions.event`), in the same step. */
  constructor(private readonly outbox?: MemoryOutbox) {}
  private readonly leases = new Map<string, StoredLease>();

  async acquireLease(name: string, holder: string, ttlMs: number, now = new Date()): Promise<Lease | undefined> {
    const next = nextLease(this.leases.get(name), holder, ttlMs, now);
    if (next) this.leases.set(name, next);
    return leaseOf(name, next, now);
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    const l = this.leases.get(name);
    if (l?.holder === holder) this.leases.set(name, { ...l, expiresAt: 0 });
  }

  async getLease(name: string, now = new Date()): Promise<Lease | undefined> {
    return leaseOf(name, this.leases.get(name), now);
  }

  private static key(kind: MaterialKind, k: string): string {
    checkMaterialKey(kind, k);
    return `${kind}\x00${k}`;
  }

  async getMaterial(kind: MaterialKind, k: string, now = new Date()): Promise<Buffer | undefined> {
    const e = this.entries.get(MemoryMaterial.key(kind, k));
    return isLive(e, now) ? Buffer.from(e.value) : undefined;
  }

  async putMaterial(kind: MaterialKind, k: string, value: Buffer, opts: PutMaterialOptions = {}): Promise<boolean> {
    const key = MemoryMaterial.key(kind, k);
    if (opts.ifAbsent && isLive(this.entries.get(key), new Date())) return false;
    this.outbox?.add(opts.event);
    this.entries.set(key, { value: Buffer.from(value), ...(opts.expiresAt ? { expiresAt: opts.expiresAt.getTime() } : {}) });
    return true;
  }

  async takeMaterial(kind: MaterialKind, k: string, now = new Date()): Promise<Buffer | undefined> {
    const key = MemoryMaterial.key(kind, k);
    const e = this.entries.get(key);
    this.entries.delete(key);
    return isLive(e, now) ? e.value : undefined;
  }

  async deleteMaterial(kind: MaterialKind, k: string): Promise<void> {
    this.entries.delete(MemoryMaterial.key(kind, k));
  }

  async listMaterial(kind: MaterialKind, page?: PageRequest, now = new Date()): Promise<Page<MaterialItem>> {
    if (!MATERIAL_KINDS.includes(kind)) throw new Malformed(`unknown material kind ${String(kind)}`);
    const limit = pageLimit(page);
    const after = pageCursor(page);
    const prefix = `${kind}\x00`;
    const items: MaterialItem[] = [];
    for (const [key, e] of this.entries) {
      const k = key.slice(prefix.length);
      if (key.startsWith(prefix) && isLive(e, now) && (after === undefined || k > after))
        items.push({ key: k, value: Buffer.from(e.value), ...(e.expiresAt !== undefined ? { expiresAt: new Date(e.expiresAt) } : {}) });
    }
    items.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return pageOf(items.slice(0, limit + 1), limit, (i) => i.key);
  }

  async pruneMaterial(kind: MaterialKind, now = new Date()): Promise<number> {
    let n = 0;
    for (const [key, e] of this.entries) {
      if (key.startsWith(`${kind}\x00`) && !isLive(e, now)) {
        this.entries.delete(key);
        n++;
      }
    }
    return n;
  }
}
