/**
 * What a device's declarations look like to an admin: per channel, each declaration the device
 * should have with its phase (pending / verified / failed with Apple's reasons), what the device
 * reported, and its software update status. Read by the admin API and `orchard plan`.
 */
import type { EnrollmentRecord } from '../store/types.js';
import type { DdmStore } from '../store/ddm.js';
import type { DeclarationClass, DeclarationPhase, StatusReason } from './model.js';
import { phaseOf } from './status.js';
import { reasonText } from './schema.js';

export interface DeclarationView {
  enrollment: string;
  channel: 'device' | 'user';
  identifier: string;
  type: string;
  class: DeclarationClass;
  declaration: string;
  blueprints: string[];
  serverToken: string;
  templateToken: string;
  phase: DeclarationPhase;
  reasons?: (StatusReason & { meaning?: string })[];
}

export interface DeviceDeclarations {
  /** Why the device gets no declarations though a blueprint gives it some (its OS has no DDM). */
  unsupported?: string;
  declarations: DeclarationView[];
  /** softwareupdate.* status items the device reported (install state, pending version, failure reason). */
  softwareUpdate?: Record<string, unknown>;
  /** The OS version and build the device reported over DDM. */
  os?: { version?: string; build?: string };
  statusAt?: string;
}

export async function deviceDeclarations(ddm: DdmStore, enrollments: EnrollmentRecord[]): Promise<DeviceDeclarations> {
  const out: DeviceDeclarations = { declarations: [] };
  for (const e of enrollments) {
    const set = await ddm.getDeclarationSet(e.id, 'current');
    if (!set) continue;
    if (set.unsupported && e.type === 'device') out.unsupported = set.unsupported;
    const status = await ddm.getDdmStatus(e.id);
    for (const entry of Object.values(set.entries)) {
      const st = phaseOf(entry, status);
      out.declarations.push({
        enrollment: e.id,
        channel: e.type === 'user' ? 'user' : 'device',
        identifier: entry.declaration.Identifier,
        type: entry.declaration.Type,
        class: entry.class,
        declaration: entry.source,
        blueprints: entry.blueprints,
        serverToken: entry.declaration.ServerToken,
        templateToken: entry.templateToken,
        phase: st.phase,
        ...(st.reasons ? { reasons: st.reasons.map((r) => ({ ...r, ...(reasonText(r.code) ? { meaning: reasonText(r.code) } : {}) })) } : {}),
      });
    }
    if (e.type === 'device' && status) {
      const su = Object.entries(status.items).filter(([k]) => k.startsWith('softwareupdate.'));
      if (su.length) out.softwareUpdate = Object.fromEntries(su.map(([k, v]) => [k.slice('softwareupdate.'.length), v]));
      const version = status.items['device.operating-system.version'];
      const build = status.items['device.operating-system.build-version'];
      if (version !== undefined || build !== undefined)
        out.os = { ...(typeof version === 'string' ? { version } : {}), ...(typeof build === 'string' ? { build } : {}) };
      out.statusAt = status.at;
    }
  }
  return out;
}
