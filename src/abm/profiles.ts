/**
 * `kind: EnrollmentProfile` reconciled against ABM on the leader, after each token's sync: a
 * profile is (re)defined with `POST /profile` when its content (digest) changes, assigned with
 * `PUT /profile/devices` to the ABM devices its `assign` rules select that do not have it, and
 * removed with `DELETE /profile/devices` from devices that have a profile Orchard defined but no
 * rule selects any more. A serial ABM answers NOT_ACCESSIBLE for is a condition, not swallowed.
 * A device two profiles select gets the first by name.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { EnrollmentProfileDoc, Fleet } from '../gitops/model.js';
import { matches } from '../gitops/selector.js';
import type { AbmDeviceRecord, AbmStore } from '../store/abm.js';
import type { AbmProfile, AssignResult, DepClient } from './client.js';
import type { StoredToken } from './material.js';
import { abmDeviceView, abmFacts, type AbmInventoryDevice, type AfterSync } from './service.js';

/** Serials per assignment call (Apple takes at most 1000). */
const BATCH = 1000;

export interface EnrollmentProfileOptions {
  store: AbmStore;
  /** The applied revision's fleet. */
  fleet: () => Fleet | undefined;
  /** Orchard's enrollment endpoint (`<publicUrl>/mdm/enroll`), the url of profiles that give none. */
  enrollUrl?: string;
  log: Logger;
}

/** Which EnrollmentProfile's rules select an ABM device (the first by name), as the reconciler and `orchard plan` decide it. */
export function profileSelecting(fleet: Fleet): (d: AbmInventoryDevice) => string | undefined {
  const profiles = [...fleet.enrollmentProfiles.values()].sort((a, b) => a.name.localeCompare(b.name));
  return (d) => {
    const view = abmDeviceView(d, fleet);
    return profiles.find((p) => {
      const { all: _all, serials, tags, ...abm } = p.assign;
      return matches({ serials, tags, abm }, view);
    })?.name;
  };
}

/** Per ABM device record, the profile its rules select. */
export function selectedSerials(fleet: Fleet, devices: AbmDeviceRecord[]): Map<string, string> {
  const out = new Map<string, string>();
  const select = profileSelecting(fleet);
  for (const d of devices) {
    const p = select({ serialNumber: d.serial_number, ...abmFacts(d) });
    if (p) out.set(d.serial_number, p);
  }
  return out;
}

export function renderProfile(p: EnrollmentProfileDoc, enrollUrl: string | undefined): AbmProfile | undefined {
  const url = p.profile.url ?? enrollUrl;
  if (!url) return undefined;
  return { ...p.profile, profile_name: p.profile.profile_name, url };
}

function digestOf(p: AbmProfile): string {
  const keys = Object.keys(p).sort();
  return createHash('sha256').update(JSON.stringify(p, keys)).digest('hex');
}

/** What ABM has is kept in the AbmStore, so a restart or another replica does not define an unchanged profile again. */
export class EnrollmentProfiles {
  constructor(private readonly opts: EnrollmentProfileOptions) {}

  readonly step: AfterSync = async (token: StoredToken, client: DepClient, report) => {
    const fleet = this.opts.fleet();
    if (!fleet || fleet.enrollmentProfiles.size === 0) return;
    const devices: AbmDeviceRecord[] = [];
    for (let next: string | undefined, first = true; first || next !== undefined; first = false) {
      const p = await this.opts.store.listAbmDevices({ cursor: next, limit: 5000 });
      for (const d of p.items) if (d.token === token.name) devices.push(d);
      next = p.next;
    }
    const want = selectedSerials(fleet, devices);
    const store = this.opts.store;
    // Profile UUIDs Orchard defined: only these are removed from devices no rule selects.
    const ours = new Set(await store.listAbmProfileUuids());
    const uuids = new Map<string, string>();
    for (const p of fleet.enrollmentProfiles.values()) {
      const rendered = renderProfile(p, this.opts.enrollUrl);
      if (!rendered) {
        report('bad_request', `EnrollmentProfile "${p.name}" (${p.origin.file}:${p.origin.line}) has no url and the server has no publicUrl to point it at`);
        continue;
      }
      const digest = digestOf(rendered);
      let have = await store.getAbmProfile(token.name, p.name);
      if (have?.digest !== digest) {
        const { profile_uuid } = await client.defineProfile(rendered);
        have = { digest, uuid: profile_uuid };
        await store.putAbmProfile(token.name, p.name, have);
        ours.add(profile_uuid);
        this.opts.log.info({ token: token.name, profile: p.name, uuid: profile_uuid }, 'ABM enrollment profile defined');
      }
      uuids.set(p.name, have.uuid);
    }
    const assign = new Map<string, string[]>();
    const remove: string[] = [];
    for (const d of devices) {
      const name = want.get(d.serial_number);
      const uuid = name === undefined ? undefined : uuids.get(name);
      if (uuid !== undefined) {
        if (d.profile_uuid !== uuid || d.profile_status === 'removed') assign.set(uuid, [...(assign.get(uuid) ?? []), d.serial_number]);
      } else if (name === undefined && d.profile_uuid && ours.has(d.profile_uuid) && d.profile_status !== 'removed') {
        remove.push(d.serial_number);
      }
    }
    const refused: string[] = [];
    const failed: string[] = [];
    const tally = (r: AssignResult) => {
      for (const [serial, outcome] of Object.entries(r)) {
        if (outcome === 'NOT_ACCESSIBLE') refused.push(serial);
        else if (outcome === 'FAILED') failed.push(serial);
      }
    };
    for (const [uuid, serials] of assign) {
      for (let i = 0; i < serials.length; i += BATCH) tally(await client.assignProfile(uuid, serials.slice(i, i + BATCH)));
      this.opts.log.info({ token: token.name, uuid, devices: serials.length }, 'ABM enrollment profile assigned');
    }
    for (let i = 0; i < remove.length; i += BATCH) tally(await client.removeProfile(remove.slice(i, i + BATCH)));
    if (remove.length) this.opts.log.info({ token: token.name, devices: remove.length }, 'ABM enrollment profile removed from devices no rule selects');
    if (refused.length) report('not_accessible', `ABM: ${refused.length} serial number(s) are not assigned to this MDM server in ABM`, refused);
    if (failed.length) report('bad_request', `ABM: assigning the enrollment profile failed for ${failed.length} serial number(s)`, failed);
  };
}
