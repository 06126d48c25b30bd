/**
 * One leader among replicas: a named lease with a fencing token. The holder renews it before it
 * expires; when it stops (killed, partitioned, too busy to renew), another replica takes it once
 * it has expired and gets a larger token, so work stamped with the old token can be told apart.
 * On LevelDB the single process holding the database is trivially the leader; PostgreSQL keeps
 * the lease in a row updated under compare-and-set.
 */

export interface Lease {
  name: string;
  holder: string;
  /** Grows with every change of holder, never reused. */
  token: number;
  expiresAt: Date;
}

export interface LeaseStore {
  /**
   * Take or renew lease `name` for `holder` until `now + ttlMs`: granted when nobody holds it, the
   * holder's lease expired, or `holder` holds it already (a renewal keeps the token). Undefined
   * while another holder's lease is live.
   */
  acquireLease(name: string, holder: string, ttlMs: number, now?: Date): Promise<Lease | undefined>;
  /** Give it up now (if `holder` holds it): the next replica need not wait for it to expire. */
  releaseLease(name: string, holder: string): Promise<void>;
  getLease(name: string, now?: Date): Promise<Lease | undefined>;
}

/** A lease as the embedded backends keep it. */
export interface StoredLease {
  holder: string;
  token: number;
  /** ms since the epoch; 0 once released. */
  expiresAt: number;
}

/** The decision every backend makes under its lock: the next state of the lease, or undefined (refused). */
export function nextLease(prev: StoredLease | undefined, holder: string, ttlMs: number, now: Date): StoredLease | undefined {
  if (!(ttlMs > 0)) throw new RangeError('a lease needs a positive time to live');
  const live = prev !== undefined && prev.expiresAt > now.getTime();
  if (live && prev.holder !== holder) return undefined;
  const token = live ? prev.token : (prev?.token ?? 0) + 1;
  return { holder, token, expiresAt: now.getTime() + ttlMs };
}

export function leaseOf(name: string, s: StoredLease | undefined, now: Date): Lease | undefined {
  if (!s || s.expiresAt <= now.getTime()) return undefined;
  return { name, holder: s.holder, token: s.token, expiresAt: new Date(s.expiresAt) };
}
