/**
 * The DDM, rollout and ABM store roles on PostgreSQL (migrations 004, 005), on the pool of the main
 * store (`pgRoles(store)`), so every replica on the database shares them and a new one needs no
 * local files. The pool belongs to the main store: closing a role here closes nothing.
 * Each passes the role's shared suite (test/store/ddm-suite.ts, rollout-suite.ts, abm-suite.ts).
 */
import type pg from 'pg';
import type { DdmStatus, DeclarationSet } from '../ddm/model.js';
import type { AbmDeviceRecord, AbmPage, AbmStore, DefinedAbmProfile } from './abm.js';
import type { DdmStore, SetSlot } from './ddm.js';
import { pageLimit, pageOf, type Page, type PageRequest } from './paging.js';
import { addWorkRow, transaction, type PgStore } from './postgres.js';
import { deviceOfEnrollment } from './status.js';
import type { RolloutState, RolloutStore } from './rollouts.js';

/** The roles on the main store's pool. */
export function pgRoles(store: PgStore): { ddm: PgDdmStore; rollouts: PgRolloutStore; abm: PgAbmStore } {
  const pool = store.sharedPool();
  return { ddm: new PgDdmStore(pool), rollouts: new PgRolloutStore(pool), abm: new PgAbmStore(pool) };
}

export class PgDdmStore implements DdmStore {
  constructor(private readonly pool: pg.Pool) {}

  private async get<T>(eid: string, slot: SetSlot | 'status'): Promise<T | undefined> {
    const { rows } = await this.pool.query<{ value: string }>('SELECT value FROM ddm WHERE enrollment_id = $1 AND slot = $2', [eid, slot]);
    return rows[0] ? (JSON.parse(rows[0].value) as T) : undefined;
  }
  private async put(eid: string, slot: SetSlot | 'status', value: unknown, q: pg.Pool | pg.PoolClient = this.pool): Promise<void> {
    await q.query('INSERT INTO ddm (enrollment_id, slot, value) VALUES ($1, $2, $3) ON CONFLICT (enrollment_id, slot) DO UPDATE SET value = EXCLUDED.value', [
      eid,
      slot,
      JSON.stringify(value),
    ]);
  }
  getDeclarationSet(eid: string, slot: SetSlot): Promise<DeclarationSet | undefined> {
    return this.get<DeclarationSet>(eid, slot);
  }
  putDeclarationSet(eid: string, slot: SetSlot, set: DeclarationSet): Promise<void> {
    return this.put(eid, slot, set);
  }
  getDdmStatus(eid: string): Promise<DdmStatus | undefined> {
    return this.get<DdmStatus>(eid, 'status');
  }
  async putDdmStatus(eid: string, status: DdmStatus, opts: { reconcile?: boolean } = {}): Promise<void> {
    if (!opts.reconcile) return this.put(eid, 'status', status);
    // The report and its device's work row in one transaction.
    await transaction(this.pool, async (c) => {
      await this.put(eid, 'status', status, c);
      await addWorkRow(c, deviceOfEnrollment(eid), new Date());
    });
  }
  async resetDdm(eid: string): Promise<void> {
    await this.pool.query('DELETE FROM ddm WHERE enrollment_id = $1', [eid]);
  }
  async listDdmEnrollments(): Promise<string[]> {
    const { rows } = await this.pool.query<{ enrollment_id: string }>('SELECT DISTINCT enrollment_id FROM ddm ORDER BY enrollment_id');
    return rows.map((r) => r.enrollment_id);
  }
  async close(): Promise<void> {}
}

export class PgRolloutStore implements RolloutStore {
  constructor(private readonly pool: pg.Pool) {}

  async listRollouts(): Promise<RolloutState[]> {
    const { rows } = await this.pool.query<{ state: string }>('SELECT state FROM rollouts ORDER BY blueprint');
    return rows.map((r) => JSON.parse(r.state) as RolloutState);
  }
  async getRollout(blueprint: string): Promise<RolloutState | undefined> {
    const { rows } = await this.pool.query<{ state: string }>('SELECT state FROM rollouts WHERE blueprint = $1', [blueprint]);
    return rows[0] ? (JSON.parse(rows[0].state) as RolloutState) : undefined;
  }
  async putRollout(state: RolloutState): Promise<void> {
    await this.pool.query('INSERT INTO rollouts (blueprint, state) VALUES ($1, $2) ON CONFLICT (blueprint) DO UPDATE SET state = EXCLUDED.state', [
      state.blueprint,
      JSON.stringify(state),
    ]);
  }
  async deleteRollout(blueprint: string): Promise<void> {
    await this.pool.query('DELETE FROM rollouts WHERE blueprint = $1', [blueprint]);
  }
  async close(): Promise<void> {}
}

export class PgAbmStore implements AbmStore {
  constructor(private readonly pool: pg.Pool) {}

  async getAbmCursor(token: string): Promise<string | undefined> {
    const { rows } = await this.pool.query<{ cursor: string }>('SELECT cursor FROM abm_cursors WHERE token = $1', [token]);
    return rows[0]?.cursor;
  }
  /** One transaction: the page's devices and the cursor after it are kept together or not at all. */
  async applyAbmPage(token: string, page: AbmPage): Promise<void> {
    await transaction(this.pool, async (c) => {
      // One row per serial (a page naming a serial twice keeps the last, as a LevelDB batch does).
      const upserts = [...new Map(page.upserts.map((d) => [d.serial_number, d])).values()];
      if (upserts.length) {
        await c.query(
          `INSERT INTO abm_devices (serial, record) SELECT * FROM unnest($1::text[], $2::text[])
           ON CONFLICT (serial) DO UPDATE SET record = EXCLUDED.record`,
          [upserts.map((d) => d.serial_number), upserts.map((d) => JSON.stringify(d))],
        );
      }
      if (page.deletes.length) await c.query('DELETE FROM abm_devices WHERE serial = ANY($1)', [page.deletes]);
      if (page.cursor !== undefined) {
        await c.query('INSERT INTO abm_cursors (token, cursor) VALUES ($1, $2) ON CONFLICT (token) DO UPDATE SET cursor = EXCLUDED.cursor', [
          token,
          page.cursor,
        ]);
      }
    });
  }
  async resetAbmCursor(token: string): Promise<void> {
    await this.pool.query('DELETE FROM abm_cursors WHERE token = $1', [token]);
  }
  async getAbmDevice(serial: string): Promise<AbmDeviceRecord | undefined> {
    const { rows } = await this.pool.query<{ record: string }>('SELECT record FROM abm_devices WHERE serial = $1', [serial]);
    return rows[0] ? (JSON.parse(rows[0].record) as AbmDeviceRecord) : undefined;
  }
  async listAbmDevices(page?: PageRequest): Promise<Page<AbmDeviceRecord>> {
    const limit = pageLimit(page);
    const { rows } = await this.pool.query<{ record: string }>(
      'SELECT record FROM abm_devices WHERE $1::text IS NULL OR serial > $1 ORDER BY serial LIMIT $2',
      [page?.cursor ?? null, limit + 1],
    );
    return pageOf(
      rows.map((r) => JSON.parse(r.record) as AbmDeviceRecord),
      limit,
      (d) => d.serial_number,
    );
  }
  async getAbmProfile(token: string, name: string): Promise<DefinedAbmProfile | undefined> {
    const { rows } = await this.pool.query<DefinedAbmProfile>('SELECT digest, uuid FROM abm_profiles WHERE token = $1 AND name = $2', [token, name]);
    return rows[0] && { digest: rows[0].digest, uuid: rows[0].uuid };
  }
  async putAbmProfile(token: string, name: string, profile: DefinedAbmProfile): Promise<void> {
    await transaction(this.pool, async (c) => {
      await c.query(
        'INSERT INTO abm_profiles (token, name, digest, uuid) VALUES ($1, $2, $3, $4) ON CONFLICT (token, name) DO UPDATE SET digest = EXCLUDED.digest, uuid = EXCLUDED.uuid',
        [token, name, profile.digest, profile.uuid],
      );
      await c.query('INSERT INTO abm_profile_uuids (uuid) VALUES ($1) ON CONFLICT DO NOTHING', [profile.uuid]);
    });
  }
  async listAbmProfileUuids(): Promise<string[]> {
    const { rows } = await this.pool.query<{ uuid: string }>('SELECT uuid FROM abm_profile_uuids ORDER BY uuid');
    return rows.map((r) => r.uuid);
  }
  async addAbmProfileUuids(uuids: string[]): Promise<void> {
    await this.pool.query('INSERT INTO abm_profile_uuids (uuid) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING', [uuids]);
  }
  async listAbmCursors(): Promise<{ token: string; cursor: string }[]> {
    const { rows } = await this.pool.query<{ token: string; cursor: string }>('SELECT token, cursor FROM abm_cursors ORDER BY token');
    return rows.map((r) => ({ token: r.token, cursor: r.cursor }));
  }
  async listAbmProfiles(): Promise<{ token: string; name: string; profile: DefinedAbmProfile }[]> {
    const { rows } = await this.pool.query<{ token: string; name: string; digest: string; uuid: string }>(
      'SELECT token, name, digest, uuid FROM abm_profiles ORDER BY token, name',
    );
    return rows.map((r) => ({ token: r.token, name: r.name, profile: { digest: r.digest, uuid: r.uuid } }));
  }
  async close(): Promise<void> {}
}
