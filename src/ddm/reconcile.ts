/**
 * The DDM part of reconciling a device: compute each channel's declaration set, store it as the
 * current set, and when its DeclarationsToken changed, queue a DeclarativeManagement command
 * (with the new tokens) and push. The device then syncs through the check-in endpoints. A device
 * waiting in Setup Assistant gets the declarations of `setup: true` blueprints only, like profiles.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Fleet } from '../gitops/model.js';
import { buildCommand } from '../protocol/commands.js';
import type { Pusher } from '../push/push.js';
import { deviceView } from '../reconcile/desired.js';
import type { SecretLookup } from '../reconcile/render.js';
import type { DdmStore } from '../store/ddm.js';
import type { DeviceRecord, NewCommand, Store } from '../store/types.js';
import type { DeclarationChannel, DeclarationSet } from './model.js';
import { desiredDeclarations, setFor } from './desired.js';
import { EMPTY_SET_TOKEN } from './protocol.js';
import { ddmCapable, DDM_MINIMUM } from './schema.js';

export interface DdmReconcilerOptions {
  store: Pick<Store, 'enqueue' | 'getCommand' | 'listEnrollments'>;
  ddm: DdmStore;
  pusher: Pusher;
  log: Logger;
  secrets: SecretLookup;
  /** The URL of a legacy declaration's profile for an enrollment (absent: legacy declarations cannot render). */
  legacyUrl?: (enrollmentId: string, profile: string, version: string) => string;
  /** Whether the device waits in Setup Assistant for DeviceConfigured (src/reconcile/setup.ts): only setup declarations then. */
  inSetup?: (device: DeviceRecord) => Promise<boolean>;
  now?: () => Date;
}

export interface DdmOutcome {
  /** Enrollments told about a new set. */
  notified: string[];
  /** The device's OS has no DDM, though a blueprint gives it declarations. */
  unsupported?: boolean;
  errors: { declaration: string; error: string }[];
}

export class DdmReconciler {
  private readonly now: () => Date;
  constructor(private readonly opts: DdmReconcilerOptions) {
    this.now = opts.now ?? (() => new Date());
  }

  async reconcile(device: DeviceRecord, fleet: Fleet, revision: string): Promise<DdmOutcome> {
    const { view, values } = deviceView(device, fleet);
    const channels = (await this.opts.store.listEnrollments(device.id)).filter((e) => e.active);
    const out: DdmOutcome = { notified: [], errors: [] };
    const legacy = this.opts.legacyUrl;
    const setupOnly = channels.length > 0 && this.opts.inSetup ? await this.opts.inSetup(device) : false;
    for (const e of channels) {
      const channel: DeclarationChannel = e.type === 'user' ? 'user' : 'device';
      const want = desiredDeclarations(fleet, view, values, view.serial ?? device.id, this.opts.secrets, {
        legacyUrl: legacy && ((profile, version) => legacy(e.id, profile, version)),
        setupOnly,
      });
      if (channel === 'device') out.errors = want.errors;
      const previous = await this.opts.ddm.getDeclarationSet(e.id, 'current');
      if (!want.wanted && !previous) continue;
      if (want.wanted && ddmCapable(view) === false) {
        out.unsupported = true;
        const why = `${view.platform} ${view.osVersion} has no Declarative Device Management (${view.platform} ${DDM_MINIMUM[view.platform!]} or later)`;
        if (previous?.unsupported !== why)
          await this.opts.ddm.putDeclarationSet(e.id, 'current', {
            declarationsToken: EMPTY_SET_TOKEN,
            entries: {},
            revision,
            at: this.now().toISOString(),
            unsupported: why,
          });
        continue;
      }
      const next = setFor(want[channel], want.frozen, previous, revision, this.now());
      if (previous && previous.declarationsToken === next.declarationsToken && previous.command && !previous.unsupported) continue;
      // Queue first, then store: a crash in between leaves the old set, which the next run replaces (and notifies again).
      const cmd = notifyCommand(next);
      await this.opts.store.enqueue([e.id], cmd, this.now());
      await this.opts.ddm.putDeclarationSet(e.id, 'current', { ...next, command: cmd.uuid });
      out.notified.push(e.id);
      await this.opts.pusher.push([e]).catch((err: unknown) => this.opts.log.warn({ err, enrollment: e.id }, 'push failed'));
    }
    if (out.errors.length) this.opts.log.warn({ device: device.id, errors: out.errors }, 'declarations not rendered; the device keeps what it has');
    if (out.notified.length) this.opts.log.info({ device: device.id, notified: out.notified, revision }, 'declarations changed');
    return out;
  }
}

/** DeclarativeManagement with the new SyncTokens, so the device can skip the tokens request. */
export function notifyCommand(set: DeclarationSet): NewCommand {
  const data = Buffer.from(JSON.stringify({ SyncTokens: { DeclarationsToken: set.declarationsToken, Timestamp: set.at } }));
  const built = buildCommand({ RequestType: 'DeclarativeManagement', Data: new Uint8Array(data) }, randomUUID().toUpperCase());
  return { ...built, priority: 50 };
}
