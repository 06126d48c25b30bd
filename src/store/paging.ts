/**
 * Paging in the store: list methods take a cursor and a limit and return one page, so no call
 * loads 100,000 records at once. A cursor is opaque to callers (backends use the last key
 * returned); pages are in a stable order, and a record that exists for the whole walk is seen
 * exactly once.
 */
import { Malformed } from '../errors.js';
import { idProblem } from './ids.js';

export interface PageRequest {
  /** `next` of the previous page; absent for the first page. */
  cursor?: string;
  /** At most this many items (default DEFAULT_PAGE_SIZE, at most MAX_PAGE_SIZE). */
  limit?: number;
}

export interface Page<T> {
  items: T[];
  /** Cursor of the next page; absent on the last page. */
  next?: string;
}

export const DEFAULT_PAGE_SIZE = 1000;
export const MAX_PAGE_SIZE = 10_000;

/** The limit a backend applies for `page`. */
export function pageLimit(page: PageRequest | undefined): number {
  const limit = page?.limit ?? DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE_SIZE) {
    throw new Malformed(`page limit must be an integer 1..${MAX_PAGE_SIZE}, got ${String(limit)}`);
  }
  return limit;
}

/**
 * A page of `limit` from the first `limit + 1` items a backend read after the cursor: the extra
 * item only says there is more. `key` gives an item's cursor.
 */
export function pageOf<T>(items: T[], limit: number, key: (item: T) => string): Page<T> {
  if (items.length <= limit) return { items };
  const page = items.slice(0, limit);
  return { items: page, next: key(page[limit - 1]!) };
}

/** Every item of a paged list, page by page (for callers that truly need all of them). */
export async function allPages<T>(list: (page: PageRequest) => Promise<Page<T>>, limit = DEFAULT_PAGE_SIZE): Promise<T[]> {
  const out: T[] = [];
  let cursor: string | undefined;
  do {
    const page = await list(cursor === undefined ? { limit } : { cursor, limit });
    for (const item of page.items) out.push(item);
    cursor = page.next;
  } while (cursor !== undefined);
  return out;
}

/** The cursor of `page`, checked against the identifier domain (backends compare it with keys). */
export function pageCursor(page: PageRequest | undefined): string | undefined {
  const cursor = page?.cursor;
  if (cursor === undefined) return undefined;
  const problem = idProblem(cursor);
  if (problem !== undefined) throw new Malformed(`page cursor ${problem}`);
  return cursor;
}
