/**
 * The ABM store role: the devices Apple Business Manager assigned to this MDM server, per server
 * token, and each token's sync cursor. A page of changes and the cursor after it are written in
 * one batch, so a sync that dies mid-way resumes from the last page it kept, never skipping one.
 * Serial numbers are checked at the boundary (`src/abm/sync.ts`): letters, digits, '-', '_', '.'.
 * Beside them, the enrollment profiles Orchard defined at ABM (src/abm/profiles.ts), so a restart
 * or another replica does not define an unchanged profile again.
 */
import { Level } from 'level';
import type { AbmDevice } from '../abm/client.js';
import { pageLimit, type Page, type PageRequest } from './paging.js';

/** What Orchard keeps of an ABM device: Apple's fields, which token it came through, when. */
export interface AbmDeviceRecord extends Omit<AbmDevice, 'op_type' | 'op_date'> {
  token: string;
  syncedAt: string;
}

export interface AbmPage {
  upserts: AbmDeviceRecord[];
  deletes: string[];
  /** The cursor after this page, stored with it; absent in the middle of a full fetch. */
  cursor?: string;
}

/** An enrollment profile as ABM has it: the digest of what was defined and the uuid ABM gave it. */
export interface DefinedAbmProfile {
  digest: string;
  uuid: string;
}

export interface AbmStore {
  getAbmCursor(token: string): Promise<string | undefined>;
  /** Applies one page of changes and its cursor atomically. */
  applyAbmPage(token: string, page: AbmPage): Promise<void>;
  /** Forgets a token's cursor (the next sync is a full fetch). */
  resetAbmCursor(token: string): Promise<void>;
  getAbmDevice(serial: string): Promise<AbmDeviceRecord | undefined>;
  /** Devices in serial order, one page at a time. */
  listAbmDevices(page?: PageRequest): Promise<Page<AbmDeviceRecord>>;
  /** What ABM has for the token's profile of this name (as of its last definition). */
  getAbmProfile(token: string, name: string): Promise<DefinedAbmProfile | undefined>;
  /** Records a definition: it replaces the name's, and its uuid is Orchard's from now on. */
  putAbmProfile(token: string, name: string, profile: DefinedAbmProfile): Promise<void>;
  /** Every profile uuid Orchard defined, older definitions included (only these are removed from devices no rule selects). */
  listAbmProfileUuids(): Promise<string[]>;
  /** Marks uuids as Orchard's definitions (`orchard store copy` carries the older ones with it). */
  addAbmProfileUuids(uuids: string[]): Promise<void>;
  /** Every token's cursor, by token order (`orchard store copy`). */
  listAbmCursors(): Promise<{ token: string; cursor: string }[]>;
  /** Every token's current definitions, by token and name (`orchard store copy`). */
  listAbmProfiles(): Promise<{ token: string; name: string; profile: DefinedAbmProfile }[]>;
  close(): Promise<void>;
}

/** For tests and benchmarks; values are copied in and out, as a real backend would. */
export class MemoryAbmStore implements AbmStore {
  private readonly cursors = new Map<string, string>();
  private readonly devices = new Map<string, string>();
  private readonly profiles = new Map<string, string>();
  private readonly uuids = new Set<string>();
  async getAbmCursor(token: string): Promise<string | undefined> {
    return this.cursors.get(token);
  }
  async applyAbmPage(token: string, page: AbmPage): Promise<void> {
    for (const d of page.upserts) this.devices.set(d.serial_number, JSON.stringify(d));
    for (const s of page.deletes) this.devices.delete(s);
    if (page.cursor !== undefined) this.cursors.set(token, page.cursor);
  }
  async resetAbmCursor(token: string): Promise<void> {
    this.cursors.delete(token);
  }
  async getAbmDevice(serial: string): Promise<AbmDeviceRecord | undefined> {
    const v = this.devices.get(serial);
    return v === undefined ? undefined : (JSON.parse(v) as AbmDeviceRecord);
  }
  async listAbmDevices(page?: PageRequest): Promise<Page<AbmDeviceRecord>> {
    const limit = pageLimit(page);
    const keys = [...this.devices.keys()].sort().filter((k) => page?.cursor === undefined || k > page.cursor);
    const items = keys.slice(0, limit).map((k) => JSON.parse(this.devices.get(k)!) as AbmDeviceRecord);
    return { items, next: keys.length > limit ? items.at(-1)?.serial_number : undefined };
  }
  async getAbmProfile(token: string, name: string): Promise<DefinedAbmProfile | undefined> {
    const v = this.profiles.get(`${token}\0${name}`);
    return v === undefined ? undefined : (JSON.parse(v) as DefinedAbmProfile);
  }
  async putAbmProfile(token: string, name: string, profile: DefinedAbmProfile): Promise<void> {
    this.profiles.set(`${token}\0${name}`, JSON.stringify(profile));
    this.uuids.add(profile.uuid);
  }
  async listAbmProfileUuids(): Promise<string[]> {
    return [...this.uuids].sort();
  }
  async addAbmProfileUuids(uuids: string[]): Promise<void> {
    for (const u of uuids) this.uuids.add(u);
  }
  async listAbmCursors(): Promise<{ token: string; cursor: string }[]> {
    return [...this.cursors.keys()].sort().map((token) => ({ token, cursor: this.cursors.get(token)! }));
  }
  async listAbmProfiles(): Promise<{ token: string; name: string; profile: DefinedAbmProfile }[]> {
    return [...this.profiles.keys()].sort().map((k) => {
      const [token, name] = k.split('\0') as [string, string];
      return { token, name, profile: JSON.parse(this.profiles.get(k)!) as DefinedAbmProfile };
    });
  }
  async close(): Promise<void> {}
}

/**
 * LevelDB, in a database of its own (DATA_DIR/abm/devices): `c\0<token>` -> cursor, `d\0<serial>` -> record,
 * `p\0<token>\0<profile name>` -> definition, `u\0<uuid>` -> true for each uuid Orchard defined.
 */
export class LevelAbmStore implements AbmStore {
  private constructor(private readonly db: Level<string, unknown>) {}

  static async open(dir: string): Promise<LevelAbmStore> {
    const db = new Level<string, unknown>(dir, { valueEncoding: 'json' });
    await db.open();
    return new LevelAbmStore(db);
  }
  async getAbmCursor(token: string): Promise<string | undefined> {
    return (await this.db.get(`c\0${token}`)) as string | undefined;
  }
  async applyAbmPage(token: string, page: AbmPage): Promise<void> {
    await this.db.batch([
      ...page.upserts.map((d) => ({ type: 'put' as const, key: `d\0${d.serial_number}`, value: d })),
      ...page.deletes.map((s) => ({ type: 'del' as const, key: `d\0${s}` })),
      ...(page.cursor === undefined ? [] : [{ type: 'put' as const, key: `c\0${token}`, value: page.cursor }]),
    ]);
  }
  async resetAbmCursor(token: string): Promise<void> {
    await this.db.del(`c\0${token}`);
  }
  async getAbmDevice(serial: string): Promise<AbmDeviceRecord | undefined> {
    return (await this.db.get(`d\0${serial}`)) as AbmDeviceRecord | undefined;
  }
  async listAbmDevices(page?: PageRequest): Promise<Page<AbmDeviceRecord>> {
    const limit = pageLimit(page);
    const items: AbmDeviceRecord[] = [];
    const gt = page?.cursor === undefined ? 'd\0' : `d\0${page.cursor}`;
    let more = false;
    for await (const v of this.db.values({ gt, lt: 'd\x01' })) {
      if (items.length === limit) {
        more = true;
        break;
      }
      items.push(v as AbmDeviceRecord);
    }
    return { items, next: more ? items.at(-1)?.serial_number : undefined };
  }
  async getAbmProfile(token: string, name: string): Promise<DefinedAbmProfile | undefined> {
    return (await this.db.get(`p\0${token}\0${name}`)) as DefinedAbmProfile | undefined;
  }
  async putAbmProfile(token: string, name: string, profile: DefinedAbmProfile): Promise<void> {
    await this.db.batch([
      { type: 'put', key: `p\0${token}\0${name}`, value: profile },
      { type: 'put', key: `u\0${profile.uuid}`, value: true },
    ]);
  }
  async listAbmProfileUuids(): Promise<string[]> {
    const out: string[] = [];
    for await (const k of this.db.keys({ gt: 'u\0', lt: 'u\x01' })) out.push(k.slice(2));
    return out;
  }
  async addAbmProfileUuids(uuids: string[]): Promise<void> {
    await this.db.batch(uuids.map((u) => ({ type: 'put' as const, key: `u\0${u}`, value: true })));
  }
  async listAbmCursors(): Promise<{ token: string; cursor: string }[]> {
    const out: { token: string; cursor: string }[] = [];
    for await (const [k, v] of this.db.iterator({ gt: 'c\0', lt: 'c\x01' })) out.push({ token: k.slice(2), cursor: v as string });
    return out;
  }
  async listAbmProfiles(): Promise<{ token: string; name: string; profile: DefinedAbmProfile }[]> {
    const out: { token: string; name: string; profile: DefinedAbmProfile }[] = [];
    for await (const [k, v] of this.db.iterator({ gt: 'p\0', lt: 'p\x01' })) {
      const [token, name] = k.slice(2).split('\0') as [string, string];
      out.push({ token, name, profile: v as DefinedAbmProfile });
    }
    return out;
  }
  async close(): Promise<void> {
    await this.db.close();
  }
}
