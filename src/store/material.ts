/**
 * Server state that is not about one device's queue: enrollment material (one-time challenges,
 * what the CA issued each certificate for, SCEP transactions), APNs token suppression, the ABM
 * server tokens (sealed, one per name: a kind of their own so listing them reads nothing else), and named
 * blobs (the CA, the push certificate, the source's state, the compiled fleet of the applied
 * revision). Kept in the store so that a second replica, given only the store and its secrets,
 * sees the same state as the first.
 *
 * Values are opaque bytes to the store; each consumer owns its encoding (and encrypts what is
 * secret before it gets here). `takeMaterial` is the exactly-once primitive: of any number of
 * concurrent takers of one key, across processes, one gets the value (PostgreSQL: DELETE ...
 * RETURNING; LevelDB: under the key's lock in its single process).
 */
import { Malformed } from '../errors.js';
import type { Page, PageRequest } from './paging.js';
import type { OutboxEntry } from './roles/outbox.js';

/** What a key names. Keys of different kinds never collide. */
export type MaterialKind = 'blob' | 'challenge' | 'issuance' | 'scep-transaction' | 'push-suppression' | 'abm-token';
export const MATERIAL_KINDS: readonly MaterialKind[] = ['blob', 'challenge', 'issuance', 'scep-transaction', 'push-suppression', 'abm-token'];

export interface PutMaterialOptions {
  /** After this the value is gone for every reader (pruned eventually). */
  expiresAt?: Date;
  /** Write only if the key holds nothing unexpired: first writer wins (two replicas creating a CA). */
  ifAbsent?: boolean;
  /** A webhook event the value causes (src/store/roles/outbox.ts): queued in the same batch or transaction, only if the value is written. */
  event?: OutboxEntry;
}

/** One live value, as `listMaterial` returns it. */
export interface MaterialItem {
  key: string;
  value: Buffer;
  expiresAt?: Date;
}

export interface MaterialStore {
  /** The value, unless absent or expired at `now` (default: now). */
  getMaterial(kind: MaterialKind, key: string, now?: Date): Promise<Buffer | undefined>;
  /** Store a value. Returns false (and changes nothing) when `ifAbsent` and one is there. */
  putMaterial(kind: MaterialKind, key: string, value: Buffer, opts?: PutMaterialOptions): Promise<boolean>;
  /** Remove and return the value, exactly once: a concurrent or later take gets undefined. Expired values are not returned. */
  takeMaterial(kind: MaterialKind, key: string, now?: Date): Promise<Buffer | undefined>;
  deleteMaterial(kind: MaterialKind, key: string): Promise<void>;
  /** The live values of `kind` in key order, one page at a time (`orchard store copy`, loading a kind at start). */
  listMaterial(kind: MaterialKind, page?: PageRequest, now?: Date): Promise<Page<MaterialItem>>;
  /** Delete the values of `kind` expired at `now`; returns how many. */
  pruneMaterial(kind: MaterialKind, now?: Date): Promise<number>;
}

/** A stored value with its expiry (ms since the epoch), as the embedded backends keep it. */
export interface MaterialEntry {
  value: Buffer;
  expiresAt?: number;
}

export function isLive(e: MaterialEntry | undefined, now: Date): e is MaterialEntry {
  return e !== undefined && (e.expiresAt === undefined || e.expiresAt > now.getTime());
}

/** Keys are what consumers build (hashes, names): printable, bounded. */
const KEY = /^[\x21-\x7e]{1,512}$/;

export function checkMaterialKey(kind: MaterialKind, key: string): void {
  if (!MATERIAL_KINDS.includes(kind)) throw new Malformed(`unknown material kind ${String(kind)}`);
  if (!KEY.test(key)) throw new Malformed(`a ${kind} key must be 1..512 printable ASCII characters`);
}
