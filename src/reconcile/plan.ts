/**
 * What applying a revision would do to a fleet, from an inventory (the JSON of
 * `GET /api/v1/devices`): per blueprint and profile, installs, updates and removals on which
 * devices. Uses the same selection and rendering as the reconciler. Secrets are not known here,
 * so versions are compared by template hash: the rendering with secret placeholders. Each change
 * carries a key-level diff (src/plan/diff.ts) when both renderings are known.
 */
import type { Fleet } from '../gitops/model.js';
import { readProfile } from '../gitops/mobileconfig.js';
import type { AbmPlan } from '../plan/abm.js';
import { diffArtifacts, type ArtifactDiff } from '../plan/diff.js';
import { parsePlistDict, TRUSTED_LIMITS, type PlistDict } from '../protocol/plist.js';
import type { DeviceRecord } from '../model/device.js';
import { prunes } from './decide.js';
import { desiredFor, deviceView, type DesiredState, type RenderCache } from './desired.js';
import type { RenderedProfile } from './render.js';
import type { ArtifactStatus } from './types.js';
import { planDeclarationsAgainst, planDeclarationsBetween, type DeclarationChange, type InventoryDeclaration } from '../ddm/plan.js';

export interface InventoryDevice {
  id: string;
  enrolled?: boolean;
  facts: DeviceRecord['facts'];
  reported: DeviceRecord['reported'];
  /** What Orchard manages on it (from the server), if known. */
  profiles?: ArtifactStatus[];
  /** Its declarations (DDM), as the server reports them. */
  ddm?: { declarations: InventoryDeclaration[] };
}

export type ChangeKind = 'install' | 'update' | 'remove' | 'unmanage';

export interface PlannedChange {
  kind: ChangeKind;
  device: string;
  serial?: string;
  identifier: string;
  profile: string;
  blueprints: string[];
  /** Index into `Plan.diffs`: what changes inside the profile (absent when the installed version is unknown). */
  diff?: number;
  /** A DDM declaration (`profile` then names the declaration document); absent: a configuration profile. */
  artifact?: 'declaration';
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
  /** Distinct key-level diffs, shared by every change that does the same thing. */
  diffs: ArtifactDiff[];
  /** Apple Business Manager: devices not enrolled yet, enrollment profiles and their assignments (when ABM's device list was given). */
  abm?: AbmPlan;
}

/**
 * Key-level diffs of a plan, computed once per pair of renderings (devices with the same values
 * share them) and stored once per distinct diff.
 */
class Diffs {
  readonly list: ArtifactDiff[] = [];
  private readonly bySignature = new Map<string, number>();
  /** Only renderings shared by devices are worth remembering (a per-device one is seen once). */
  private readonly byPair = new Map<string, number>();
  private readonly values = new Map<string, PlistDict>();

  private value(r: RenderedProfile): PlistDict {
    const hit = this.values.get(r.templateHash);
    if (hit) return hit;
    const bytes = r.bytes();
    // Orchard's own renderings are XML; a signed file is read the way a device reads it.
    const v = bytes[0] === 0x30 ? readProfile(bytes).profile : parsePlistDict(bytes, TRUSTED_LIMITS);
    if (!r.perDevice) this.values.set(r.templateHash, v);
    return v;
  }

  /** The diff of two plain dictionaries (a declaration's Payload), stored once per distinct diff. */
  ofValues(before: PlistDict | undefined, after: PlistDict | undefined): number {
    return this.keep(diffArtifacts(before, after));
  }

  private keep(d: ArtifactDiff): number {
    const sig = JSON.stringify(d);
    let i = this.bySignature.get(sig);
    if (i === undefined) {
      i = this.list.push(d) - 1;
      this.bySignature.set(sig, i);
    }
    return i;
  }

  of(before: RenderedProfile | undefined, after: RenderedProfile | undefined): number {
    const shared = !before?.perDevice && !after?.perDevice;
    const pair = shared ? `${before?.templateHash ?? ''}\0${after?.templateHash ?? ''}` : '';
    let i = shared ? this.byPair.get(pair) : undefined;
    if (i !== undefined) return i;
    i = this.keep(diffArtifacts(before && this.value(before), after && this.value(after)));
    if (shared) this.byPair.set(pair, i);
    return i;
  }
}

/** The fleet a device's installed version came from, when the planner can read that revision. */
export type RevisionLookup = (revision: string) => Fleet | undefined;

function reportedIds(d: InventoryDevice): Set<string> {
  const list = (d.reported.ProfileList?.value ?? []) as Record<string, unknown>[];
  return new Set(list.map((p) => String(p.PayloadIdentifier)));
}

function errorsOf(desired: DesiredState, d: InventoryDevice, serial: string | undefined, errors: PlanError[]): void {
  for (const p of desired.profiles.values()) if (p.error) errors.push({ device: d.id, serial, message: p.error });
}

/** Against the inventory: what the reconciler would do to each enrolled device. */
export function planAgainstInventory(fleet: Fleet, inventory: InventoryDevice[], revisions: RevisionLookup = () => undefined): Plan {
  const changes: PlannedChange[] = [];
  const errors: PlanError[] = [];
  const diffs = new Diffs();
  const enrolled = inventory.filter((d) => d.enrolled !== false);
  const cache: RenderCache = new Map();
  const baseCaches = new Map<Fleet, RenderCache>();
  const installed = (d: InventoryDevice, a: ArtifactStatus | undefined): RenderedProfile | undefined => {
    const base = a && revisions(a.revision);
    if (!base) return undefined;
    let c = baseCaches.get(base);
    if (!c) baseCaches.set(base, (c = new Map()));
    const r = desiredFor(base, d, undefined, c).profiles.get(a.identifier)?.rendered;
    // Only a rendering of the very version the device has says what it has.
    return r?.templateHash === a.templateHash ? r : undefined;
  };
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
      const before = kind === 'update' ? installed(d, a) : undefined;
      const diff = kind === 'install' || before ? diffs.of(before, want.rendered) : undefined;
      changes.push({ kind, device: d.id, serial, identifier: id, profile: want.profile, blueprints: want.blueprints, ...(diff !== undefined ? { diff } : {}) });
    }
    for (const [id, a] of managed) {
      if (desired.profiles.has(id) || desired.frozen.has(id) || a.phase === 'removing') continue;
      const kind = prunes(a.blueprints, a.prune, desired.prune) ? 'remove' : 'unmanage';
      const before = installed(d, a);
      const diff = kind === 'remove' && before ? diffs.of(before, undefined) : undefined;
      changes.push({ kind, device: d.id, serial, identifier: id, profile: a.profile, blueprints: a.blueprints, ...(diff !== undefined ? { diff } : {}) });
    }
    const { view, values } = deviceView(d, fleet);
    for (const c of planDeclarationsAgainst(fleet, view, values, view.serial ?? d.id, d.ddm?.declarations ?? []))
      changes.push(declarationChange(c, d.id, serial, c.kind === 'install' ? diffs.ofValues(undefined, c.after as PlistDict) : undefined));
  }
  return { devices: enrolled.length, changes, errors, diffs: diffs.list };
}

function declarationChange(c: DeclarationChange, device: string, serial: string | undefined, diff: number | undefined): PlannedChange {
  return {
    kind: c.kind,
    device,
    serial,
    identifier: c.identifier,
    profile: c.name,
    blueprints: c.blueprints,
    artifact: 'declaration',
    ...(diff !== undefined ? { diff } : {}),
  };
}

/** Between two revisions, for the inventory's devices: only what the change itself does. */
export function planBetween(base: Fleet, head: Fleet, inventory: InventoryDevice[]): Plan {
  const changes: PlannedChange[] = [];
  const errors: PlanError[] = [];
  const diffs = new Diffs();
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
        if (!before.frozen.has(id)) {
          const diff = diffs.of(undefined, want.rendered);
          changes.push({ kind: 'install', device: d.id, serial, identifier: id, profile: want.profile, blueprints: want.blueprints, diff });
        }
      } else if (had.rendered.templateHash !== want.rendered.templateHash) {
        const diff = diffs.of(had.rendered, want.rendered);
        changes.push({ kind: 'update', device: d.id, serial, identifier: id, profile: want.profile, blueprints: want.blueprints, diff });
      }
    }
    for (const [id, had] of before.profiles) {
      if (after.profiles.has(id) || after.frozen.has(id)) continue;
      // As the server decides: by the head revision's flags (see `prunes`), not the base's.
      const kind = prunes(had.blueprints, had.prune, after.prune) ? 'remove' : 'unmanage';
      const diff = kind === 'remove' && had.rendered ? diffs.of(had.rendered, undefined) : undefined;
      changes.push({ kind, device: d.id, serial, identifier: id, profile: had.profile, blueprints: had.blueprints, ...(diff !== undefined ? { diff } : {}) });
    }
    const { view, values } = deviceView(d, head);
    for (const c of planDeclarationsBetween(base, head, view, values, view.serial ?? d.id))
      changes.push(declarationChange(c, d.id, serial, diffs.ofValues(c.before as PlistDict | undefined, c.after as PlistDict | undefined)));
  }
  return { devices: enrolled.length, changes, errors, diffs: diffs.list };
}
