/**
 * `orchard store copy`: every role of one store into another (LevelDB -> PostgreSQL to move an
 * install onto a database, or back into a data directory): devices with their channels, queue, results, inventory, reconcile
 * state, status rows and reconcile work rows (src/store/transfer.ts); material (CA, push certificate, challenges, source state ...); DDM;
 * rollouts; ABM devices, sync cursors and the enrollment profiles Orchard defined. A target that holds anything
 * is refused unless `force` (then devices already there are skipped and counted).
 */
import { Conflict, Malformed } from '../errors.js';
import type { AbmDeviceRecord } from './abm.js';
import { MATERIAL_KINDS } from './material.js';
import type { Stores } from './open.js';
import { allPages } from './paging.js';
import { canExport, canImport, exportDevice } from './transfer.js';

export interface CopyCounts {
  devices: number;
  /** Devices the target had already (with `force`): left as they were. */
  skippedDevices: number;
  enrollments: number;
  commands: number;
  material: number;
  ddmEnrollments: number;
  rollouts: number;
  abmDevices: number;
  abmProfiles: number;
}

/** What a target holds already, by role; empty when it holds nothing. */
async function contents(to: Stores): Promise<string[]> {
  const found: string[] = [];
  if ((await to.store.listDeviceIds({ limit: 1 })).items.length) found.push('devices');
  for (const kind of MATERIAL_KINDS) if ((await to.store.listMaterial(kind, { limit: 1 })).items.length) found.push(`material (${kind})`);
  if ((await to.ddm.listDdmEnrollments()).length) found.push('DDM state');
  if ((await to.rollouts.listRollouts()).length) found.push('rollouts');
  if ((await to.abm.listAbmDevices({ limit: 1 })).items.length) found.push('ABM devices');
  return found;
}

export async function copyStores(from: Stores, to: Stores, opts: { force?: boolean } = {}): Promise<CopyCounts> {
  const source = from.store;
  const target = to.store;
  if (!canExport(source)) throw new Malformed('the source store cannot be read for a copy (a LevelDB directory or a postgres:// URL)');
  if (!canImport(target)) throw new Malformed('the target store cannot be written by a copy (a LevelDB directory or a postgres:// URL)');
  const present = await contents(to);
  if (present.length && !opts.force) throw new Conflict(`the target store is not empty (it has ${present.join(', ')}): pass --force to copy into it anyway`);

  const counts: CopyCounts = {
    devices: 0,
    skippedDevices: 0,
    enrollments: 0,
    commands: 0,
    material: 0,
    ddmEnrollments: 0,
    rollouts: 0,
    abmDevices: 0,
    abmProfiles: 0,
  };
  let cursor: string | undefined;
  do {
    const page = await source.listDeviceIds(cursor === undefined ? {} : { cursor });
    for (const id of page.items) {
      const d = await exportDevice(source, id);
      if (!d) continue;
      if (await target.getDevice(id)) {
        counts.skippedDevices++;
        continue;
      }
      await target.importDevice(d);
      counts.devices++;
      counts.enrollments += d.enrollments.length;
      counts.commands += d.commands.length;
    }
    cursor = page.next;
  } while (cursor !== undefined);

  for (const kind of MATERIAL_KINDS) {
    for (const item of await allPages((p) => source.listMaterial(kind, p))) {
      await target.putMaterial(kind, item.key, item.value, item.expiresAt ? { expiresAt: item.expiresAt } : {});
      counts.material++;
    }
  }

  for (const eid of await from.ddm.listDdmEnrollments()) {
    for (const slot of ['current', 'given'] as const) {
      const set = await from.ddm.getDeclarationSet(eid, slot);
      if (set) await to.ddm.putDeclarationSet(eid, slot, set);
    }
    const status = await from.ddm.getDdmStatus(eid);
    if (status) await to.ddm.putDdmStatus(eid, status);
    counts.ddmEnrollments++;
  }

  for (const r of await from.rollouts.listRollouts()) {
    await to.rollouts.putRollout(r);
    counts.rollouts++;
  }

  // ABM devices per token with its cursor (the target syncs on from there), and the profiles Orchard defined.
  const byToken = new Map<string, AbmDeviceRecord[]>();
  for (const d of await allPages((p) => from.abm.listAbmDevices(p))) byToken.set(d.token, [...(byToken.get(d.token) ?? []), d]);
  const cursors = new Map((await from.abm.listAbmCursors()).map((c) => [c.token, c.cursor]));
  for (const token of new Set([...byToken.keys(), ...cursors.keys()])) {
    const upserts = byToken.get(token) ?? [];
    const cursor = cursors.get(token);
    await to.abm.applyAbmPage(token, { upserts, deletes: [], ...(cursor === undefined ? {} : { cursor }) });
    counts.abmDevices += upserts.length;
  }
  for (const p of await from.abm.listAbmProfiles()) {
    await to.abm.putAbmProfile(p.token, p.name, p.profile);
    counts.abmProfiles++;
  }
  await to.abm.addAbmProfileUuids(await from.abm.listAbmProfileUuids());
  return counts;
}
