/**
 * The identifier domain every backend accepts: device ids, enrollment ids, command uuids and
 * certificate hashes are non-empty strings of at most MAX_ID_LENGTH UTF-16 code units, well-formed
 * (no lone surrogates, which UTF-8 cannot encode: they would collide as U+FFFD) and without
 * U+0000 (PostgreSQL text cannot hold it). Anything else is refused at the store's boundary with
 * a `Malformed`, on reads as on writes, so no backend ever sees it and every backend
 * answers the same. The protocol layer is stricter still for what devices send.
 */
import { Malformed } from '../errors.js';

export const MAX_ID_LENGTH = 1024;

const SUSPECT = /[\0\uD800-\uDFFF]/;

export type IdKind = 'device id' | 'enrollment id' | 'command uuid' | 'certificate hash';

/** Why `id` is outside the domain, or undefined when it is inside. */
export function idProblem(id: unknown): string | undefined {
  if (typeof id !== 'string') return 'is not a string';
  if (id.length === 0) return 'is empty';
  if (id.length > MAX_ID_LENGTH) return `is longer than ${MAX_ID_LENGTH} characters`;
  // The regex is the cheap common path; only a suspect id is walked to tell a pair from a lone surrogate.
  if (SUSPECT.test(id)) {
    if (id.includes('\0')) return 'contains U+0000';
    if (hasLoneSurrogate(id)) return 'contains a lone surrogate';
  }
  return undefined;
}

function hasLoneSurrogate(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdfff) continue;
    if (c <= 0xdbff && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) i++;
    else return true;
  }
  return false;
}

/** Throws `Malformed` unless `id` is inside the domain. */
export function checkId(kind: IdKind, id: string): void {
  const problem = idProblem(id);
  if (problem !== undefined) throw new Malformed(`${kind} ${printable(id)} ${problem}`);
}

/** An id for a message: cut short, control characters and surrogates escaped. */
function printable(id: unknown): string {
  if (typeof id !== 'string') return String(typeof id);
  return JSON.stringify(id.slice(0, 80)).replace(/[\uD800-\uDFFF]/g, (c) => `\\u${c.charCodeAt(0).toString(16)}`);
}

/**
 * Code point order, which is UTF-8 byte order: the order LevelDB keys and PostgreSQL's "C"
 * collation sort ids in. (JavaScript's `<` compares UTF-16 units, which puts U+E000-U+FFFF after
 * the surrogate pairs of U+10000 and above.)
 */
export function compareIds(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return rank(x) - rank(y);
  }
  return a.length - b.length;
}

const rank = (unit: number): number => (unit >= 0xe000 ? unit - 0x800 : unit >= 0xd800 ? unit + 0x2000 : unit);
