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
import { SOFTWARE_UPDATE_TYPE } from './load.js';
import type { PhaseClass, StatusDdm, StatusProblem, StatusSoftwareUpdate } from '../store/status.js';

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

/** A device's declarations for its status row (read model): counts, phases, problems, software update. */
export interface DdmRow {
  ddm: StatusDdm;
  /** `declaration:<Identifier>` and `softwareupdate:<target>[:<reason>]` (see StatusDdm). */
  phases: Record<string, PhaseClass>;
  problems: StatusProblem[];
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

/** The row's DDM half from what deviceDeclarations found and the sets' software update targets; undefined without declarations. */
export async function ddmRow(ddm: DdmStore, enrollments: EnrollmentRecord[]): Promise<DdmRow | undefined> {
  const view = await deviceDeclarations(ddm, enrollments);
  if (!view.unsupported && view.declarations.length === 0) return undefined;
  const phases: Record<string, PhaseClass> = {};
  const problems: StatusProblem[] = [];
  const count = { total: view.declarations.length, verified: 0, pending: 0, failed: 0 };
  let update: DeclarationView | undefined;
  for (const d of view.declarations) {
    count[d.phase]++;
    // Per declaration of the device channel; a user channel's are counted, and named with their channel.
    const key = d.channel === 'user' ? `declaration:${d.identifier} (user)` : `declaration:${d.identifier}`;
    phases[key] = d.phase;
    if (d.phase === 'failed')
      problems.push({ identifier: key, phase: 'failed', message: (d.reasons ?? []).map((r) => r.description ?? r.meaning ?? r.code).join('; ') || undefined });
    if (d.type === SOFTWARE_UPDATE_TYPE && d.channel === 'device') update = d;
  }
  const out: StatusDdm = { ...(view.unsupported ? { unsupported: view.unsupported } : {}), declarations: count };
  const su = view.softwareUpdate ?? {};
  const pending = su['pending-version'] as Record<string, unknown> | undefined;
  const failure = su['failure-reason'] as Record<string, unknown> | undefined;
  const reported: StatusSoftwareUpdate = {
    ...(view.os?.version ? { osVersion: view.os.version } : {}),
    ...(view.os?.build ? { buildVersion: view.os.build } : {}),
    ...(str(su['install-state']) ? { installState: str(su['install-state']) } : {}),
    ...(str(pending?.['os-version']) ? { pendingVersion: [str(pending?.['os-version']), str(pending?.['build-version'])].filter(Boolean).join(' ') } : {}),
    ...(str(failure?.reason) ? { failureReason: str(failure?.reason) } : {}),
  };
  if (update) {
    const set = await ddm.getDeclarationSet(update.enrollment, 'current');
    const p = set?.entries[update.identifier]?.declaration.Payload ?? {};
    const targetVersion = str(p.TargetOSVersion);
    const targetBuild = str(p.TargetBuildVersion);
    if (targetVersion) {
      const target = targetBuild ? `${targetVersion} (${targetBuild})` : targetVersion;
      const atTarget = targetBuild ? reported.buildVersion === targetBuild : reported.osVersion === targetVersion;
      const failed = update.phase === 'failed' || reported.installState === 'failed';
      const phase = atTarget ? 'at-target' : failed ? 'failed' : 'pending';
      Object.assign(reported, { target, phase });
      phases[`softwareupdate:${target}`] = phase === 'at-target' ? 'verified' : phase;
      if (phase === 'failed') {
        const why = reported.failureReason ?? update.reasons?.[0]?.code ?? 'unknown';
        phases[`softwareupdate:${target}:${why}`] = 'failed';
        problems.push({ identifier: `softwareupdate:${target}`, phase: 'failed', message: why });
      }
    }
  }
  if (Object.keys(reported).length) out.softwareUpdate = reported;
  return { ddm: out, phases, problems };
}
