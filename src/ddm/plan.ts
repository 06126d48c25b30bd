/**
 * Declarations in `orchard plan`: per device, which declarations a revision adds, changes or
 * removes, compared by template token (the ServerToken of the rendering with secrets left as
 * placeholders, which is all the planner can render), with a key-level diff of the Payload.
 */
import type { Fleet } from '../gitops/model.js';
import type { DeviceView } from '../gitops/selector.js';
import type { DeviceValues } from '../reconcile/render.js';
import type { SetEntry } from './model.js';
import { desiredDeclarations } from './desired.js';
import { ddmCapable } from './schema.js';
import { LEGACY_PROFILE_PREFIX } from './legacy.js';

/** What the server says a device has (the `ddm.declarations` of `GET /api/v1/devices`). */
export interface InventoryDeclaration {
  identifier: string;
  channel: 'device' | 'user';
  templateToken: string;
  declaration: string;
  blueprints: string[];
  type: string;
}

export interface DeclarationChange {
  kind: 'install' | 'update' | 'remove';
  identifier: string;
  /** The declaration document (or generated name), with its channel when not the device's. */
  name: string;
  blueprints: string[];
  before?: Record<string, unknown>;
  after?: Record<string, unknown>;
}

const label = (e: { source: string }, channel: string) => (channel === 'user' ? `${e.source} (user channel)` : e.source);

/**
 * A legacy declaration's ProfileURL as the plan shows it: the server's address, the enrollment and
 * the version (the rendered profile's PayloadUUID, one per device for a profile with device
 * values) are the server's to fill in; the ServerToken covers the version, not the URL.
 */
const plannedProfileUrl = (profile: string) => `<public URL>${LEGACY_PROFILE_PREFIX}/<enrollment>/${encodeURIComponent(profile)}/<version>`;

/** Entries per channel of a device under a fleet, or undefined when its OS has no DDM. */
function wanted(fleet: Fleet, view: DeviceView, values: DeviceValues, key: string): Map<string, { channel: string; entry: SetEntry }> | undefined {
  const want = desiredDeclarations(fleet, view, values, key, undefined, { legacyUrl: plannedProfileUrl });
  if (want.wanted && ddmCapable(view) === false) return undefined;
  const out = new Map<string, { channel: string; entry: SetEntry }>();
  for (const channel of ['device', 'user'] as const)
    for (const e of Object.values(want[channel])) out.set(`${channel}\0${e.declaration.Identifier}`, { channel, entry: e });
  return out;
}

/** What a device has (or had under the base revision), by channel and Identifier. */
interface Known {
  identifier: string;
  name: string;
  blueprints: string[];
  templateToken: string;
  /** The Payload, when the planner rendered it (not from the inventory). */
  payload?: Record<string, unknown>;
}

function known(m: Map<string, { channel: string; entry: SetEntry }>): Map<string, Known> {
  const out = new Map<string, Known>();
  for (const [k, { channel, entry }] of m)
    out.set(k, {
      identifier: entry.declaration.Identifier,
      name: label(entry, channel),
      blueprints: entry.blueprints,
      templateToken: entry.templateToken,
      payload: entry.declaration.Payload,
    });
  return out;
}

function compare(before: Map<string, Known>, after: Map<string, Known>): DeclarationChange[] {
  const out: DeclarationChange[] = [];
  for (const [k, want] of after) {
    const had = before.get(k);
    if (had?.templateToken === want.templateToken) continue;
    const { identifier, name, blueprints } = want;
    out.push({ kind: had ? 'update' : 'install', identifier, name, blueprints, ...(had?.payload ? { before: had.payload } : {}), after: want.payload });
  }
  for (const [k, had] of before) {
    const { identifier, name, blueprints } = had;
    if (!after.has(k)) out.push({ kind: 'remove', identifier, name, blueprints, ...(had.payload ? { before: had.payload } : {}) });
  }
  return out;
}

export function planDeclarationsBetween(base: Fleet, head: Fleet, view: DeviceView, values: DeviceValues, key: string): DeclarationChange[] {
  const after = wanted(head, view, values, key);
  return after ? compare(known(wanted(base, view, values, key) ?? new Map()), known(after)) : [];
}

export function planDeclarationsAgainst(head: Fleet, view: DeviceView, values: DeviceValues, key: string, has: InventoryDeclaration[]): DeclarationChange[] {
  const after = wanted(head, view, values, key);
  if (!after) return [];
  const before = new Map<string, Known>(
    has.map((d) => [
      `${d.channel}\0${d.identifier}`,
      {
        identifier: d.identifier,
        name: d.channel === 'user' ? `${d.declaration} (user channel)` : d.declaration,
        blueprints: d.blueprints,
        templateToken: d.templateToken,
      },
    ]),
  );
  return compare(before, known(after));
}
