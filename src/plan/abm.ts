/**
 * The Apple Business Manager part of a plan, from ABM's device list (the JSON of
 * `GET /api/v1/abm/devices`): per blueprint, the ABM devices not enrolled yet that it selects
 * (they get it when they enroll); the enrollment profiles (re)defined in ABM because their content
 * changed, or gone from git; and the serials the assignment rules newly give a profile, move to
 * another, or take it from. Selection is the reconciler's (src/abm/profiles.ts, src/abm/service.ts).
 *
 * Against a base revision every change is known. Without one, profile content cannot be compared
 * (ABM keeps only a uuid), and assignments are judged from ABM's profile status: a selected device
 * without a profile is assigned, a device with one that no rule selects loses it (if Orchard
 * defined that profile: the server removes only its own).
 */
import { profileSelecting } from '../abm/profiles.js';
import { abmBlueprints, type AbmInventoryDevice } from '../abm/service.js';
import type { EnrollmentProfileDoc, Fleet } from '../gitops/model.js';
import type { PlistDict } from '../protocol/plist.js';
import { diffArtifacts, isNoChange, type ArtifactDiff } from './diff.js';

export interface AbmProfileChange {
  name: string;
  /** define: new in git; redefine: its content changed (ABM gets a new definition); remove: gone from git. */
  change: 'define' | 'redefine' | 'remove';
  diff?: ArtifactDiff;
}

export interface AbmAssignment {
  /** assign: a profile for a device that had none; reassign: another profile, or the new definition of its own; unassign: no rule selects it any more. */
  kind: 'assign' | 'reassign' | 'unassign';
  /** The profile it gets (assign, reassign). */
  profile?: string;
  /** The profile it had, when known. */
  from?: string;
  serials: string[];
}

export interface AbmPlan {
  devices: number;
  notEnrolled: number;
  /** Per blueprint of the planned revision, the ABM devices not enrolled yet it selects. */
  blueprints: { name: string; serials: string[] }[];
  profiles: AbmProfileChange[];
  assignments: AbmAssignment[];
}

/** Whether the ABM part changes anything in ABM (a blueprint selecting devices changes nothing there). */
export function abmChanges(p: AbmPlan | undefined): number {
  return p ? p.profiles.length + p.assignments.reduce((n, a) => n + a.serials.length, 0) : 0;
}

const content = (p: EnrollmentProfileDoc) => p.profile as unknown as PlistDict;

function profileChanges(base: Fleet, head: Fleet): AbmProfileChange[] {
  const out: AbmProfileChange[] = [];
  for (const [name, p] of head.enrollmentProfiles) {
    const had = base.enrollmentProfiles.get(name);
    const diff = diffArtifacts(had && content(had), content(p));
    if (!had) out.push({ name, change: 'define', diff });
    else if (!isNoChange(diff)) out.push({ name, change: 'redefine', diff });
  }
  for (const name of base.enrollmentProfiles.keys()) if (!head.enrollmentProfiles.has(name)) out.push({ name, change: 'remove' });
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/** ABM says the device holds a profile (assigned, or pushed to it). */
const holdsProfile = (d: AbmInventoryDevice) => d.profileUuid !== undefined && d.profileStatus !== 'removed' && d.profileStatus !== 'empty';

export function planAbm(head: Fleet, base: Fleet | undefined, devices: Iterable<AbmInventoryDevice>): AbmPlan {
  const profiles = base ? profileChanges(base, head) : [];
  const redefined = new Set(profiles.filter((p) => p.change === 'redefine').map((p) => p.name));
  const selectHead = profileSelecting(head);
  const selectBase = base && profileSelecting(base);
  const blueprints = new Map<string, string[]>();
  const assignments = new Map<string, AbmAssignment>();
  const note = (kind: AbmAssignment['kind'], serial: string, profile?: string, from?: string) => {
    const key = `${kind}\0${profile ?? ''}\0${from ?? ''}`;
    let a = assignments.get(key);
    if (!a) assignments.set(key, (a = { kind, ...(profile ? { profile } : {}), ...(from ? { from } : {}), serials: [] }));
    a.serials.push(serial);
  };
  let total = 0;
  let notEnrolled = 0;
  for (const d of devices) {
    total++;
    if (!d.deviceId) {
      notEnrolled++;
      for (const b of abmBlueprints(head, d)) {
        const list = blueprints.get(b);
        if (list) list.push(d.serialNumber);
        else blueprints.set(b, [d.serialNumber]);
      }
    }
    const want = selectHead(d);
    if (selectBase) {
      const had = selectBase(d);
      if (want && !had) note('assign', d.serialNumber, want);
      else if (!want && had) note('unassign', d.serialNumber, undefined, had);
      else if (want && had && (want !== had || redefined.has(want))) note('reassign', d.serialNumber, want, had);
    } else if (want && !holdsProfile(d)) note('assign', d.serialNumber, want);
    else if (!want && holdsProfile(d)) note('unassign', d.serialNumber);
  }
  const rank = { assign: 0, reassign: 1, unassign: 2 };
  return {
    devices: total,
    notEnrolled,
    blueprints: [...blueprints].map(([name, serials]) => ({ name, serials })).sort((a, b) => a.name.localeCompare(b.name)),
    profiles,
    assignments: [...assignments.values()].sort((a, b) => rank[a.kind] - rank[b.kind] || (a.profile ?? '').localeCompare(b.profile ?? '')),
  };
}
