/**
 * `MaterialStore` on LevelDB: one key per value, `k\0<kind>\0<key>` -> {v: base64, e?: expiry ms};
 * `LeaseStore`: `n\0<name>` -> {holder, token, expiresAt, instance}: the process that opened the
 * database is trivially the leader; a lease left by an earlier process (killed) does not hold it up.
 * Material keys are printable ASCII (material.ts), so they need no escaping and sort by kind.
 * A take is a read and a delete under the key's lock: exactly once within the one process that
 * holds the database.
 */
import { randomUUID } from 'node:crypto';
import type { Level } from 'level';
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
import { pageCursor, pageLimit, pageOf, type Page, type PageRequest } from './paging.js';
import type { OutboxEntry } from './roles/outbox.js';

interface Stored {
  v: string;
  e?: number;
}

type Lock = <T>(key: string, fn: () => Promise<T>) => Promise<T>;
/** The puts of a webhook event for a batch (LevelOutbox.ops). */
type EventOps = (event: OutboxEntry | undefined) => { type: 'put'; key: string; value: Buffer; valueEncoding: 'buffer' }[];

const key = (kind: MaterialKind, k: string): string => `k\x00${kind}\x00${k}`;

const leaseKey = (name: string): string => `n\x00${name}`;

export class LevelMaterial implements MaterialStore, LeaseStore {
  constructor(
    private readonly db: Level<string, unknown>,
    private readonly lock: Lock,
    private readonly eventOps: EventOps = () => [],
  ) {}

  /** This open of the database: LevelDB lets one process hold it, so a lease from another open is from a process that is gone. */
  private readonly instance = randomUUID();

  async acquireLease(name: string, holder: string, ttlMs: number, now = new Date()): Promise<Lease | undefined> {
    return this.lock(`N${name}`, async () => {
      let prev = this.db.getSync(leaseKey(name)) as (StoredLease & { instance?: string }) | undefined;
      if (prev && prev.instance !== this.instance) prev = { ...prev, expiresAt: 0 };
      const next = nextLease(prev, holder, ttlMs, now);
      if (next) await this.db.put(leaseKey(name), { ...next, instance: this.instance });
      return leaseOf(name, next, now);
    });
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    await this.lock(`N${name}`, async () => {
      const l = this.db.getSync(leaseKey(name)) as StoredLease | undefined;
      if (l?.holder === holder) await this.db.put(leaseKey(name), { ...l, expiresAt: 0 });
    });
  }

  async getLease(name: string, now = new Date()): Promise<Lease | undefined> {
    const l = this.db.getSync(leaseKey(name)) as (StoredLease & { instance?: string }) | undefined;
    return l?.instance === this.instance ? leaseOf(name, l, now) : undefined;
  }

  private read(kind: MaterialKind, k: string): MaterialEntry | undefined {
    const s = this.db.getSync(key(kind, k)) as Stored | undefined;
    return s && { value: Buffer.from(s.v, 'base64'), ...(s.e !== undefined ? { expiresAt: s.e } : {}) };
  }

  async getMaterial(kind: MaterialKind, k: string, now = new Date()): Promise<Buffer | undefined> {
    checkMaterialKey(kind, k);
    const e = this.read(kind, k);
    return isLive(e, now) ? e.value : undefined;
  }

  async putMaterial(kind: MaterialKind, k: string, value: Buffer, opts: PutMaterialOptions = {}): Promise<boolean> {
    checkMaterialKey(kind, k);
    return this.lock(`K${kind}\x00${k}`, async () => {
      if (opts.ifAbsent && isLive(this.read(kind, k), new Date())) return false;
      const s: Stored = { v: value.toString('base64') };
      if (opts.expiresAt) s.e = opts.expiresAt.getTime();
      const events = this.eventOps(opts.event);
      if (events.length) await this.db.batch([{ type: 'put', key: key(kind, k), value: s }, ...events]);
      else await this.db.put(key(kind, k), s);
      return true;
    });
  }

  async takeMaterial(kind: MaterialKind, k: string, now = new Date()): Promise<Buffer | undefined> {
    checkMaterialKey(kind, k);
    return this.lock(`K${kind}\x00${k}`, async () => {
      const e = this.read(kind, k);
      if (!e) return undefined;
      await this.db.del(key(kind, k));
      return isLive(e, now) ? e.value : undefined;
    });
  }

  async deleteMaterial(kind: MaterialKind, k: string): Promise<void> {
    checkMaterialKey(kind, k);
    await this.lock(`K${kind}\x00${k}`, () => this.db.del(key(kind, k)));
  }

  async listMaterial(kind: MaterialKind, page?: PageRequest, now = new Date()): Promise<Page<MaterialItem>> {
    if (!MATERIAL_KINDS.includes(kind)) throw new Malformed(`unknown material kind ${String(kind)}`);
    const limit = pageLimit(page);
    const after = pageCursor(page);
    const prefix = `k\x00${kind}\x00`;
    const items: MaterialItem[] = [];
    const range = after === undefined ? { gte: prefix } : { gt: prefix + after };
    for await (const [k, v] of this.db.iterator({ ...range, lt: `k\x00${kind}\x01` })) {
      const s = v as Stored;
      if (s.e !== undefined && s.e <= now.getTime()) continue;
      items.push({ key: k.slice(prefix.length), value: Buffer.from(s.v, 'base64'), ...(s.e !== undefined ? { expiresAt: new Date(s.e) } : {}) });
      if (items.length > limit) break;
    }
    return pageOf(items, limit, (i) => i.key);
  }

  async pruneMaterial(kind: MaterialKind, now = new Date()): Promise<number> {
    const prefix = `k\x00${kind}\x00`;
    const expired: string[] = [];
    for await (const [k, s] of this.db.iterator({ gte: prefix, lt: `k\x00${kind}\x01` })) {
      const e = (s as Stored).e;
      if (e !== undefined && e <= now.getTime()) expired.push(k.slice(prefix.length));
    }
    let n = 0;
    for (const k of expired) {
      // Under the lock, and only if still expired: a value written again meanwhile stays.
      await this.lock(`K${kind}\x00${k}`, async () => {
        const e = this.read(kind, k);
        if (e && !isLive(e, now)) {
          await this.db.del(key(kind, k));
          n++;
        }
      });
    }
    return n;
  }
}
