/**
 * Keeps the store's copy of ABM's device list current: a full fetch the first time (and whenever
 * Apple says the cursor expired or is invalid), then incremental syncs. Devices a full fetch no
 * longer lists were released in ABM and leave the copy; enrolled devices stay managed (the MDM
 * inventory is separate).
 */
import { Malformed } from '../errors.js';
import type { AbmStore, AbmDeviceRecord } from '../store/abm.js';
import { AbmServiceError, type AbmDevice, type DepClient, type DevicePage } from './client.js';

/** How a serial number Apple sends looks (checked before it becomes a store key). */
export const SERIAL = /^[A-Za-z0-9._-]{1,64}$/;

export interface SyncResult {
  token: string;
  full: boolean;
  upserts: number;
  deletes: number;
  pages: number;
  /** Why a full fetch ran instead of a sync, when it did. */
  refetched?: 'no_cursor' | 'cursor_expired' | 'cursor_invalid';
}

export class AbmSync {
  constructor(
    private readonly store: AbmStore,
    private readonly pageSize = 1000,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** One sync of `token`'s devices; a full fetch when there is no usable cursor. */
  async run(token: string, client: DepClient): Promise<SyncResult> {
    const cursor = await this.store.getAbmCursor(token);
    if (cursor === undefined) return this.fullFetch(token, client, 'no_cursor');
    try {
      return await this.incremental(token, client, cursor);
    } catch (err) {
      if (err instanceof AbmServiceError && (err.reason === 'cursor_expired' || err.reason === 'cursor_invalid')) {
        return this.fullFetch(token, client, err.reason);
      }
      throw err;
    }
  }

  private async incremental(token: string, client: DepClient, start: string): Promise<SyncResult> {
    const result: SyncResult = { token, full: false, upserts: 0, deletes: 0, pages: 0 };
    let cursor = start;
    for (;;) {
      const page = await client.syncDevices(cursor, this.pageSize);
      const upserts: AbmDeviceRecord[] = [];
      const deletes: string[] = [];
      for (const d of checked(page)) {
        if (d.op_type === 'deleted') deletes.push(d.serial_number);
        else upserts.push(this.record(token, d));
      }
      await this.store.applyAbmPage(token, { upserts, deletes, cursor: page.cursor });
      result.upserts += upserts.length;
      result.deletes += deletes.length;
      result.pages++;
      cursor = page.cursor;
      if (!page.more_to_follow) return result;
    }
  }

  private async fullFetch(token: string, client: DepClient, why: NonNullable<SyncResult['refetched']>): Promise<SyncResult> {
    const result: SyncResult = { token, full: true, upserts: 0, deletes: 0, pages: 0, refetched: why };
    // Every record this fetch writes carries its stamp; the token's records without it were not
    // listed, so ABM released them. Found by paging the store: no set of every serial in memory.
    const stamp = this.now().toISOString();
    let cursor: string | undefined;
    // The cursor is only stored once the fetch is complete: a fetch that dies starts over.
    await this.store.resetAbmCursor(token);
    for (;;) {
      const page = await client.fetchDevices(cursor, this.pageSize);
      const upserts = checked(page).map((d) => this.record(token, d, stamp));
      await this.store.applyAbmPage(token, { upserts, deletes: [] });
      result.upserts += upserts.length;
      result.pages++;
      cursor = page.cursor;
      if (!page.more_to_follow) break;
    }
    for (let next: string | undefined, first = true; first || next !== undefined; first = false) {
      const p = await this.store.listAbmDevices({ cursor: next, limit: 5000 });
      const gone = p.items.filter((d) => d.token === token && d.syncedAt !== stamp).map((d) => d.serial_number);
      if (gone.length) await this.store.applyAbmPage(token, { upserts: [], deletes: gone });
      result.deletes += gone.length;
      next = p.next;
    }
    await this.store.applyAbmPage(token, { upserts: [], deletes: [], cursor });
    return result;
  }

  private record(token: string, d: AbmDevice, syncedAt = this.now().toISOString()): AbmDeviceRecord {
    const { op_type: _op, op_date: _date, ...fields } = d;
    return { ...fields, token, syncedAt };
  }
}

/** Apple's devices, with serial numbers checked before they become store keys. */
function checked(page: DevicePage): AbmDevice[] {
  if (!Array.isArray(page.devices)) throw new AbmServiceError('bad_response', 200, 'no devices array');
  if (typeof page.cursor !== 'string') throw new AbmServiceError('bad_response', 200, 'no cursor');
  for (const d of page.devices) {
    if (typeof d?.serial_number !== 'string' || !SERIAL.test(d.serial_number)) throw new Malformed('ABM: a device without a readable serial number');
  }
  return page.devices;
}
