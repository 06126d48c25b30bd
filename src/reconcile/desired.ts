/**
 * A device's desired state under a revision: which profiles, from which blueprints, rendered for
 * this device. Pure: the reconciler and `orchard plan` compute it the same way.
 */
import { createHash } from 'node:crypto';
import type { BlueprintDoc, Fleet } from '../gitops/model.js';
import { matches, platformOf, serialProven, type DeviceView } from '../gitops/selector.js';
import { DEVICE_VARIABLES } from '../gitops/variables.js';
import type { DeviceRecord } from '../model/device.js';
import { ddmCapable } from '../ddm/schema.js';
import { RenderError, renderSteps, runSteps, runStepsAsync, type DeviceValues, type RenderedProfile, type SecretLookup, type Steps } from './render.js';

export interface DesiredProfile {
  identifier: string;
  profile: string;
  blueprints: string[];
  prune: boolean;
  /** Wanted by a `setup: true` blueprint: a Setup Assistant item. */
  setup: boolean;
  /** Absent when rendering failed (then `error` says why). */
  rendered?: RenderedProfile;
  error?: string;
}

export interface DesiredState {
  /** identifier -> what should be installed. */
  profiles: Map<string, DesiredProfile>;
  /**
   * Identifiers of suspended blueprints (or rollouts not reaching this device yet) that match the
   * device: neither installed nor removed while suspended.
   */
  frozen: Set<string>;
  /**
   * Every blueprint's `prune` in this revision, by name: whether a profile no longer wanted is
   * removed is decided by the revision being applied (see `prunes` in decide.ts).
   */
  prune?: ReadonlyMap<string, boolean>;
  /**
   * Declarations of `setup: true` blueprints the device has not reported active yet, with why
   * (Setup Assistant items: DeviceConfigured waits for them as for setup profiles).
   */
  setupDeclarations?: { identifier: string; why: string }[];
}

const pruneFlags = new WeakMap<Fleet, ReadonlyMap<string, boolean>>();
function pruneOf(fleet: Fleet): ReadonlyMap<string, boolean> {
  let m = pruneFlags.get(fleet);
  if (!m) pruneFlags.set(fleet, (m = new Map([...fleet.blueprints.values()].map((b) => [b.name, b.prune]))));
  return m;
}

/** What selectors and variables see of a device: Authenticate facts, updated by DeviceInformation. */
export function deviceView(d: Pick<DeviceRecord, 'id' | 'facts' | 'reported'>, fleet: Pick<Fleet, 'tagsBySerial'>): { view: DeviceView; values: DeviceValues } {
  const info = (d.reported.DeviceInformation?.value ?? {}) as Record<string, unknown>;
  const pick = (k: string): string | undefined => {
    const v = info[k] ?? (d.facts as unknown as Record<string, unknown>)[k];
    return typeof v === 'string' ? v : undefined;
  };
  const values: DeviceValues = {};
  for (const k of DEVICE_VARIABLES) {
    const v = pick(k);
    if (v !== undefined) values[k] = v;
  }
  values.UDID ??= d.facts.UDID ?? d.id;
  const serial = values.SerialNumber;
  return {
    values,
    view: {
      serial,
      tags: (serial && fleet.tagsBySerial.get(serial)) || new Set<string>(),
      platform: platformOf(values.Model, values.ProductName),
      model: values.Model,
      productName: values.ProductName,
      osVersion: values.OSVersion,
      supervised: typeof info.IsSupervised === 'boolean' ? info.IsSupervised : undefined,
      serialProven: serialProven(serial, d.facts),
      ...(d.facts.abm ? { abm: d.facts.abm } : {}),
    },
  };
}

/** A stable position of the device in [0, 100) for this blueprint: rollouts grow, never reshuffle. */
export function rolloutBucket(serialOrId: string, blueprint: string): number {
  const h = createHash('sha256').update(`${blueprint}\0${serialOrId}`).digest();
  return (h.readUInt32BE(0) / 0x100000000) * 100;
}

export function inRollout(b: BlueprintDoc, serialOrId: string): boolean {
  if (!b.rollout) return true;
  return rolloutBucket(serialOrId, b.name) < b.rollout.percent;
}

/**
 * Renderings shared between devices: a profile renders the same for every device with the same
 * values of the variables it uses, so a fleet of 100,000 renders each variable-free profile once.
 * Entries are small (hashes and the substituted strings; payload bytes are joined on demand).
 * Valid for one revision (the caller makes a new one per revision).
 */
export type RenderCache = Map<string, RenderedProfile | RenderError>;

/** Entries a cache may hold before it starts over (per-device renderings are rarely shared). */
const CACHE_MAX = 50_000;

export function desiredFor(
  fleet: Fleet,
  device: Pick<DeviceRecord, 'id' | 'facts' | 'reported'>,
  secrets: SecretLookup | undefined,
  cache?: RenderCache,
): DesiredState {
  return runSteps(desiredSteps(fleet, device, secrets, cache));
}

/** The same, letting the event loop in between slices of rendering (`pace` is awaited between them). */
export function desiredForAsync(
  fleet: Fleet,
  device: Pick<DeviceRecord, 'id' | 'facts' | 'reported'>,
  secrets: SecretLookup | undefined,
  cache: RenderCache | undefined,
  pace: () => Promise<void> | void,
): Promise<DesiredState> {
  return runStepsAsync(desiredSteps(fleet, device, secrets, cache), pace);
}

function* desiredSteps(
  fleet: Fleet,
  device: Pick<DeviceRecord, 'id' | 'facts' | 'reported'>,
  secrets: SecretLookup | undefined,
  cache?: RenderCache,
): Steps<DesiredState> {
  const { view, values } = deviceView(device, fleet);
  const profiles = new Map<string, DesiredProfile>();
  const frozen = new Set<string>();
  const key = view.serial ?? device.id;
  for (const b of fleet.blueprints.values()) {
    if (!matches(b.selector, view)) continue;
    const active = !b.suspend && inRollout(b, key);
    for (const name of b.profiles) {
      const p = fleet.profiles.get(name);
      if (!p) continue; // validation guarantees it exists
      if (!active) {
        frozen.add(p.identifier);
        continue;
      }
      const existing = profiles.get(p.identifier);
      if (existing) {
        existing.blueprints.push(b.name);
        existing.prune &&= b.prune;
        existing.setup ||= b.setup;
        continue;
      }
      const d: DesiredProfile = { identifier: p.identifier, profile: p.name, blueprints: [b.name], prune: b.prune, setup: b.setup };
      const key =
        cache &&
        `${p.name}\0${p.variables.map((v) => values[v] ?? '\u0001').join('\0')}\0${secrets ? p.secrets.map((s) => secrets(s) ?? '\u0001').join('\0') : ''}`;
      let r = key !== undefined ? cache!.get(key) : undefined;
      if (!r) {
        try {
          r = yield* renderSteps(p, values, secrets);
        } catch (err) {
          if (!(err instanceof RenderError)) throw err;
          r = err;
        }
        if (key !== undefined) {
          if (cache!.size >= CACHE_MAX) cache!.clear();
          cache!.set(key, r);
        }
      }
      if (r instanceof RenderError) d.error = r.message;
      else d.rendered = r;
      profiles.set(p.identifier, d);
    }
  }
  // An identifier an active blueprint wants is not frozen by another, suspended one.
  for (const id of profiles.keys()) frozen.delete(id);
  const setupDeclarations = setupDeclarationsWaiting(fleet, view, key, device.reported.Declarations?.value);
  return { profiles, frozen, prune: pruneOf(fleet), ...(setupDeclarations.length ? { setupDeclarations } : {}) };
}

/**
 * The device-channel declarations of the active `setup: true` blueprints selecting the device
 * that its last DDM status report does not show active (none on an OS without DDM: it never will).
 */
function setupDeclarationsWaiting(
  fleet: Fleet,
  view: DeviceView,
  key: string,
  reported: Record<string, { active: boolean; valid: string }> | undefined,
): { identifier: string; why: string }[] {
  if (ddmCapable(view) === false) return [];
  const out = new Map<string, string>();
  for (const b of fleet.blueprints.values()) {
    if (!b.setup || b.deliver.length === 0 || b.suspend || !inRollout(b, key) || !matches(b.selector, view)) continue;
    for (const name of b.deliver) {
      const d = fleet.declarations.get(name);
      if (!d || d.channel !== 'device') continue;
      const r = reported?.[d.identifier];
      if (r?.active) continue;
      out.set(d.identifier, !r ? 'not reported by the device yet' : r.valid === 'invalid' ? 'the device reports it invalid' : 'not active on the device');
    }
  }
  return [...out].map(([identifier, why]) => ({ identifier, why }));
}
