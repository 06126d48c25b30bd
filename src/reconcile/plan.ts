/**
 * What applying a revision would do to a fleet, from an inventory (the JSON of
 * `GET /api/v1/devices`): per blueprint and profile, installs, updates and removals on which
 * devices. Uses the same selection and rendering as the reconciler. Secrets are not known here,
 * so versions are compared by template hash: the rendering with secret placeholders.
 */
import type { Fleet } from '../gitops/model.js';
import type { DeviceRecord } from '../store/types.js';
import { prunes } from './decide.js';
import { desiredFor, deviceView, type DesiredState, type RenderCache } from './desired.js';
import type { ArtifactStatus } from './types.js';

export interface InventoryDevice {
  id: string;
  enrolled?: boolean;
  facts: DeviceRecord['facts'];
  reported: DeviceRecord['reported'];
  /** What Orchard manages on it (from the server), if known. */
  profiles?: ArtifactStatus[];
}

export type ChangeKind = 'install' | 'update' | 'remove' | 'unmanage';

export interface PlannedChange {
  kind: ChangeKind;
  device: string;
  serial?: string;
  identifier: string;
  profile: string;
  blueprints: string[];
}

export interface PlanError {
  device: string;
  serial?: string;
  message: string;
}

export interface Plan {
  devices: number;
  changes: PlannedChange[];
  errors: PlanError[];
}

function reportedIds(d: InventoryDevice): Set<string> {
  const list = (d.reported.ProfileList?.value ?? []) as Record<string, unknown>[];
  return new Set(list.map((p) => String(p.PayloadIdentifier)));
}

function errorsOf(desired: DesiredState, d: InventoryDevice, serial: string | undefined, errors: PlanError[]): void {
  for (const p of desired.profiles.values()) if (p.error) errors.push({ device: d.id, serial, message: p.error });
}

/** Against the inventory: what the reconciler would do to each enrolled device. */
export function planAgainstInventory(fleet: Fleet, inventory: InventoryDevice[]): Plan {
  const changes: PlannedChange[] = [];
  const errors: PlanError[] = [];
  const enrolled = inventory.filter((d) => d.enrolled !== false);
  const cache: RenderCache = new Map();
  for (const d of enrolled) {
    const desired = desiredFor(fleet, d, undefined, cache);
    const serial = deviceView(d, fleet).values.SerialNumber;
    errorsOf(desired, d, serial, errors);
    const managed = new Map((d.profiles ?? []).map((a) => [a.identifier, a]));
    const onDevice = reportedIds(d);
    for (const [id, want] of desired.profiles) {
      if (!want.rendered) continue;
      const a = managed.get(id);
      if (a && a.phase !== 'removing' && a.templateHash === want.rendered.templateHash) continue;
      const kind: ChangeKind = a || onDevice.has(id) ? 'update' : 'install';
      changes.push({ kind, device: d.id, serial, identifier: id, profile: want.profile, blueprints: want.blueprints });
    }
    for (const [id, a] of managed) {
      if (desired.profiles.has(id) || desired.frozen.has(id) || a.phase === 'removing') continue;
      const kind = prunes(a.blueprints, a.prune, desired.prune) ? 'remove' : 'unmanage';
      changes.push({ kind, device: d.id, serial, identifier: id, profile: a.profile, blueprints: a.blueprints });
    }
  }
  return { devices: enrolled.length, changes, errors };
}

/** Between two revisions, for the inventory's devices: only what the change itself does. */
export function planBetween(base: Fleet, head: Fleet, inventory: InventoryDevice[]): Plan {
  const changes: PlannedChange[] = [];
  const errors: PlanError[] = [];
  const enrolled = inventory.filter((d) => d.enrolled !== false);
  const baseCache: RenderCache = new Map();
  const headCache: RenderCache = new Map();
  for (const d of enrolled) {
    const before = desiredFor(base, d, undefined, baseCache);
    const after = desiredFor(head, d, undefined, headCache);
    const serial = deviceView(d, head).values.SerialNumber;
    errorsOf(after, d, serial, errors);
    for (const [id, want] of after.profiles) {
      if (!want.rendered) continue;
      const had = before.profiles.get(id);
      if (!had?.rendered) {
        if (!before.frozen.has(id)) changes.push({ kind: 'install', device: d.id, serial, identifier: id, profile: want.profile, blueprints: want.blueprints });
      } else if (had.rendered.templateHash !== want.rendered.templateHash) {
        changes.push({ kind: 'update', device: d.id, serial, identifier: id, profile: want.profile, blueprints: want.blueprints });
      }
    }
    for (const [id, had] of before.profiles) {
      if (after.profiles.has(id) || after.frozen.has(id)) continue;
      // As the server decides: by the head revision's flags (see `prunes`), not the base's.
      const kind = prunes(had.blueprints, had.prune, after.prune) ? 'remove' : 'unmanage';
      changes.push({ kind, device: d.id, serial, identifier: id, profile: had.profile, blueprints: had.blueprints });
    }
  }
  return { devices: enrolled.length, changes, errors };
}
