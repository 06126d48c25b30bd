/**
 * A device's declarations under a revision: which, from which blueprints, rendered for the
 * device (variables, secrets), with their ServerTokens. Pure: the reconciler and `orchard plan`
 * compute it the same way.
 */
import type { Fleet, ProfileDoc } from '../gitops/model.js';
import { matches } from '../gitops/selector.js';
import type { DeviceView } from '../gitops/selector.js';
import { inRollout } from '../reconcile/desired.js';
import { RenderError, renderProfile, substituter, toPlist, type DeviceValues, type SecretLookup } from '../reconcile/render.js';
import type { DeclarationChannel, DeclarationDoc, DeclarationSet, SetEntry } from './model.js';
import { LEGACY_TYPE } from './load.js';
import { declarationsToken, serverToken } from './tokens.js';

export interface DesiredDeclarations {
  /** Identifier -> entry, per channel. */
  device: Record<string, SetEntry>;
  user: Record<string, SetEntry>;
  /** Identifiers of suspended blueprints (or rollouts not reaching the device yet): kept as they are. */
  frozen: Set<string>;
  /** Declarations that could not be rendered for this device (a missing fact or secret). */
  errors: { declaration: string; error: string }[];
  /** Whether any blueprint selecting the device delivers declarations. */
  wanted: boolean;
}

export interface RenderOptions {
  /**
   * The URL a legacy declaration's profile is served at, for this enrollment. `version` is the
   * PayloadUUID of the profile rendered for the device: a change of the profile (or of a value it
   * uses) changes it, so the declaration's ServerToken (which covers the version, not the URL), so
   * the device fetches it again.
   */
  legacyUrl?: (profile: string, version: string, channel: DeclarationChannel) => string;
  /** The revision's profiles, which legacy declarations render (desiredDeclarations fills it in). */
  profiles?: ReadonlyMap<string, ProfileDoc>;
  /**
   * The device waits in Setup Assistant for DeviceConfigured: only `setup: true` blueprints'
   * declarations are delivered; the others wait (kept as the device has them, none added).
   */
  setupOnly?: boolean;
}

export function renderDeclaration(
  d: DeclarationDoc,
  values: DeviceValues,
  secrets: SecretLookup | undefined,
  opts: RenderOptions = {},
  blueprints: string[] = [],
): SetEntry {
  const profile = d.type === LEGACY_TYPE && d.profile !== undefined ? opts.profiles?.get(d.profile) : undefined;
  // Returns the declaration and what its ServerToken is computed over.
  const render = (with_: SecretLookup | undefined) => {
    const Payload = toPlist(d.payload, substituter(values, with_, `declaration "${d.name}"`)) as Record<string, unknown>;
    const declaration = { Type: d.type, Identifier: d.identifier, Payload };
    if (d.type !== LEGACY_TYPE || d.profile === undefined) return { declaration, tokenOf: declaration };
    if (!opts.legacyUrl) throw new RenderError(`declaration "${d.name}": the server has no public URL to serve profile "${d.profile}" at (--public-url)`);
    if (!profile) throw new RenderError(`declaration "${d.name}": profile "${d.profile}" is not in this revision`);
    const version = renderProfile(profile, values, with_).uuid;
    Payload.ProfileURL = opts.legacyUrl(d.profile, version, d.channel);
    // The token stands for the profile and its version, not for where it is served: the URL has
    // the server's address and the enrollment in it, which `orchard plan` cannot know and another
    // server may spell otherwise. The version changes with the profile, so the token does too.
    return { declaration, tokenOf: { ...declaration, Payload: { ...Payload, ProfileURL: legacyProfileRef(d.profile, version) } } };
  };
  const base = render(secrets);
  const ServerToken = serverToken(base.tokenOf);
  const usesSecrets = d.secrets.length > 0 || (profile?.secrets.length ?? 0) > 0;
  const templateToken = secrets && usesSecrets ? serverToken(render(undefined).tokenOf) : ServerToken;
  return { class: d.class, source: d.name, blueprints, declaration: { ...base.declaration, ServerToken }, templateToken };
}

/** What a legacy declaration's ServerToken covers in place of its ProfileURL. */
export const legacyProfileRef = (profile: string, version: string): string => `orchard-profile:${encodeURIComponent(profile)}/${version}`;

export function desiredDeclarations(
  fleet: Fleet,
  view: DeviceView,
  values: DeviceValues,
  key: string,
  secrets: SecretLookup | undefined,
  opts: RenderOptions = {},
): DesiredDeclarations {
  const out: DesiredDeclarations = { device: {}, user: {}, frozen: new Set(), errors: [], wanted: false };
  const active = new Map<DeclarationDoc, string[]>();
  for (const b of fleet.blueprints.values()) {
    if (b.deliver.length === 0 || !matches(b.selector, view)) continue;
    out.wanted = true;
    const on = !b.suspend && inRollout(b, key) && (!opts.setupOnly || b.setup);
    for (const name of b.deliver) {
      const d = fleet.declarations.get(name);
      if (!d) continue; // the loader guarantees it
      if (on) active.set(d, [...(active.get(d) ?? []), b.name]);
      else out.frozen.add(d.identifier);
    }
  }
  for (const [d, blueprints] of active) {
    out.frozen.delete(d.identifier);
    try {
      out[d.channel][d.identifier] = renderDeclaration(d, values, secrets, { profiles: fleet.profiles, ...opts }, blueprints);
    } catch (err) {
      if (!(err instanceof RenderError)) throw err;
      out.errors.push({ declaration: d.name, error: err.message });
      out.frozen.add(d.identifier); // what the device has stays until it renders again
    }
  }
  return out;
}

/** The set for one channel: desired entries plus the frozen ones it had before. */
export function setFor(
  entries: Record<string, SetEntry>,
  frozen: Set<string>,
  previous: DeclarationSet | undefined,
  revision: string,
  at: Date,
): DeclarationSet {
  const all: Record<string, SetEntry> = { ...entries };
  for (const id of frozen) {
    const kept = previous?.entries[id];
    if (kept && !all[id]) all[id] = kept;
  }
  const token = declarationsToken(Object.values(all).map((e) => e.declaration));
  return { declarationsToken: token, entries: all, revision, at: at.toISOString() };
}
