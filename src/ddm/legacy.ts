/**
 * The profiles of com.apple.configuration.legacy declarations (`profile:`), served by Orchard at
 * the declaration's ProfileURL. Apple: the URL "must be hosted by the MDM server", and the device
 * fetches it with MDM semantics (its identity certificate). Served only to the enrollment whose
 * set holds that very URL, rendered for its device (variables, secrets) exactly as the
 * InstallProfile payload of the same profile would be.
 */
import { NotFound } from '../errors.js';
import type { Fleet } from '../gitops/model.js';
import { deviceView } from '../reconcile/desired.js';
import { renderProfile, type SecretLookup } from '../reconcile/render.js';
import type { DdmStore } from '../store/ddm.js';
import type { Store } from '../store/types.js';
import { LEGACY_TYPE } from './load.js';

/** Where the profiles are served: `<prefix>/<enrollment>/<profile>/<version>`. */
export const LEGACY_PROFILE_PREFIX = '/mdm/ddm/profile';

/** The ProfileURL of `profile` for an enrollment; `version` is the rendered profile's PayloadUUID. */
export function legacyProfileUrl(publicUrl: string, enrollmentId: string, profile: string, version: string): string {
  const base = publicUrl.replace(/\/+$/, '');
  return `${base}${LEGACY_PROFILE_PREFIX}/${encodeURIComponent(enrollmentId)}/${encodeURIComponent(profile)}/${encodeURIComponent(version)}`;
}

export interface LegacyProfilesOptions {
  ddm: Pick<DdmStore, 'getDeclarationSet'>;
  store: Pick<Store, 'getDevice'>;
  /** The revision in force (the reconciler's). */
  fleet: () => Fleet | undefined;
  secrets: SecretLookup;
}

export class LegacyProfiles {
  constructor(private readonly opts: LegacyProfilesOptions) {}

  /**
   * The profile bytes for an enrollment whose identity is already proven. `path` is the request
   * path: it must be the ProfileURL of a legacy declaration in the set the enrollment was given
   * (or its current one), so no device reaches a profile that is not its own.
   */
  async profile(enrollmentId: string, deviceId: string, name: string, version: string, path: string): Promise<Buffer> {
    const refused = new NotFound(`no profile "${name.slice(0, 80)}" of this version for this enrollment`);
    let listed = false;
    for (const slot of ['given', 'current'] as const) {
      const set = await this.opts.ddm.getDeclarationSet(enrollmentId, slot);
      for (const e of Object.values(set?.entries ?? {})) {
        const url = e.declaration.Type === LEGACY_TYPE ? e.declaration.Payload.ProfileURL : undefined;
        if (typeof url === 'string' && pathOf(url) === path) listed = true;
      }
      if (listed) break;
    }
    const fleet = this.opts.fleet();
    const doc = fleet?.profiles.get(name);
    const device = listed && doc ? await this.opts.store.getDevice(deviceId) : undefined;
    if (!fleet || !doc || !device) throw refused;
    const rendered = renderProfile(doc, deviceView(device, fleet).values, this.opts.secrets);
    // Another version than the URL names: the device has been (or is being) told of the new one.
    if (rendered.uuid !== version) throw refused;
    return rendered.bytes();
  }
}

function pathOf(url: string): string | undefined {
  try {
    return new URL(url).pathname;
  } catch {
    return undefined;
  }
}
