/**
 * The simulated device's Declarative Device Management: a sync through the real check-in
 * endpoints (tokens, declaration-items, each new or changed declaration, status), each
 * declaration checked against Apple's schema as a device would, activations applied, and a
 * status report of what it holds.
 */
import { platformOf } from '../gitops/selector.js';
import type { DeclarationClass, DeclarationJson, StatusReason } from '../ddm/model.js';
import { LEGACY_TYPE } from '../ddm/load.js';
import { validateDeclaration } from '../ddm/schema.js';
import type { SimResponse } from './device.js';

interface SimDeviceLike {
  readonly udid: string;
  readonly facts: Record<string, string | boolean>;
  checkin(msg: Record<string, unknown>): Promise<SimResponse>;
  mdmGet(url: string): Promise<SimResponse>;
  installProfile(bytes: Buffer): string | undefined;
  readonly profiles: Map<string, unknown>;
}

export interface Held {
  class: DeclarationClass;
  declaration: DeclarationJson;
  valid: 'valid' | 'invalid';
  reasons: StatusReason[];
  active: boolean;
  /** A legacy declaration: the PayloadIdentifier of the profile it installed. */
  profile?: string;
}

const LISTS: [string, DeclarationClass][] = [
  ['Activations', 'activation'],
  ['Configurations', 'configuration'],
  ['Assets', 'asset'],
  ['Management', 'management'],
];
const STATUS_LIST: Record<DeclarationClass, string> = { activation: 'activations', configuration: 'configurations', asset: 'assets', management: 'management' };

/** What a simulated device keeps of DDM between runs (`orchard simulate --state-dir`). */
export interface SimDdmState {
  /** Channel ('' for the device channel) -> Identifier -> what it holds. */
  channels: Record<string, Record<string, Held>>;
  /** Channel -> the DeclarationsToken of its last sync. */
  tokens: Record<string, string>;
  fullReportNext: boolean;
}

export interface SyncResult {
  /** false: the DeclarationsToken was the one the channel already had. */
  changed: boolean;
  fetched: string[];
  removed: string[];
  /** The status report sent. */
  report: Record<string, unknown>;
}

export class SimDdm {
  /** Channel ('' for the device channel, else the UserID) -> Identifier -> what it holds. */
  readonly channels = new Map<string, Map<string, Held>>();
  readonly tokens = new Map<string, string>();
  /** Make a declaration fail as a device would (e.g. Error.ConfigurationCannotBeApplied). */
  fail?: (d: DeclarationJson) => StatusReason | undefined;
  /** Called between declaration-items and the fetches (tests apply a revision there). */
  beforeFetch?: () => Promise<void>;
  /** The next status report is a FullReport (the first one of a channel always is). */
  fullReportNext = true;
  /** The enforced software update fails with this reason (reported as softwareupdate.failure-reason). */
  updateFailure?: string;
  syncs = 0;

  constructor(private readonly device: SimDeviceLike) {}

  /** The declarations held and the tokens, as JSON: a device keeps them across restarts. */
  state(): SimDdmState {
    const channels: SimDdmState['channels'] = {};
    for (const [ch, held] of this.channels) channels[ch] = Object.fromEntries(held);
    return { channels, tokens: Object.fromEntries(this.tokens), fullReportNext: this.fullReportNext };
  }

  /** Continue from a saved state (replaces what is held). */
  restore(state: SimDdmState): void {
    this.channels.clear();
    this.tokens.clear();
    for (const [ch, held] of Object.entries(state.channels)) this.channels.set(ch, new Map(Object.entries(held)));
    for (const [ch, token] of Object.entries(state.tokens)) this.tokens.set(ch, token);
    this.fullReportNext = state.fullReportNext;
  }

  held(userId?: string): Map<string, Held> {
    let m = this.channels.get(userId ?? '');
    if (!m) this.channels.set(userId ?? '', (m = new Map()));
    return m;
  }

  /** One DDM request; the JSON answer (undefined for an empty body). Throws on anything but 200. */
  async request(endpoint: string, data?: unknown, userId?: string): Promise<unknown> {
    const msg: Record<string, unknown> = { MessageType: 'DeclarativeManagement', UDID: this.device.udid, Endpoint: endpoint };
    if (userId) msg.UserID = userId;
    if (data !== undefined) msg.Data = new Uint8Array(Buffer.from(JSON.stringify(data)));
    const res = await this.device.checkin(msg);
    if (res.status !== 200) throw new Error(`DeclarativeManagement ${endpoint}: ${res.status} ${res.body.toString().slice(0, 200)}`);
    return res.body.length ? (JSON.parse(res.body.toString('utf8')) as unknown) : undefined;
  }

  /** A full sync of one channel, as a device does after a DeclarativeManagement command. */
  async sync(opts: { userId?: string; force?: boolean } = {}): Promise<SyncResult> {
    this.syncs++;
    const ch = opts.userId ?? '';
    const tokens = (await this.request('tokens', undefined, opts.userId)) as { SyncTokens: { DeclarationsToken: string } };
    const token = tokens.SyncTokens.DeclarationsToken;
    const result: SyncResult = { changed: token !== this.tokens.get(ch), fetched: [], removed: [], report: {} };
    const held = this.held(opts.userId);
    if (result.changed || opts.force) {
      const items = (await this.request('declaration-items', undefined, opts.userId)) as {
        Declarations: Record<string, { Identifier: string; ServerToken: string }[]>;
        DeclarationsToken: string;
      };
      await this.beforeFetch?.();
      const listed = new Set<string>();
      for (const [list, cls] of LISTS) {
        for (const item of items.Declarations[list] ?? []) {
          listed.add(item.Identifier);
          if (held.get(item.Identifier)?.declaration.ServerToken === item.ServerToken) continue;
          const d = (await this.request(`declaration/${cls}/${item.Identifier}`, undefined, opts.userId)) as DeclarationJson;
          if (d.ServerToken !== item.ServerToken)
            throw new Error(`declaration ${item.Identifier}: ServerToken ${d.ServerToken} differs from the item's ${item.ServerToken}`);
          const before = held.get(item.Identifier);
          const loaded = await this.load(cls, d, opts.userId !== undefined);
          if (before?.profile && before.profile !== loaded.profile) this.device.profiles.delete(before.profile);
          held.set(item.Identifier, loaded);
          result.fetched.push(item.Identifier);
        }
      }
      for (const id of [...held.keys()]) {
        if (!listed.has(id)) {
          // A removed legacy declaration takes its profile with it.
          const p = held.get(id)?.profile;
          if (p) this.device.profiles.delete(p);
          held.delete(id);
          result.removed.push(id);
        }
      }
      this.tokens.set(ch, items.DeclarationsToken);
      this.activate(held);
    }
    result.report = this.statusReport(held);
    await this.request('status', result.report, opts.userId);
    return result;
  }

  /** Check a declaration against Apple's schema as the device would. */
  private async load(cls: DeclarationClass, d: DeclarationJson, user: boolean): Promise<Held> {
    const platform = platformOf(String(this.device.facts.Model), String(this.device.facts.ProductName));
    const issues = validateDeclaration(d.Type, d.Payload ?? {}, {
      platforms: platform ? [platform] : [],
      supervised: this.device.facts.IsSupervised === true,
      channel: user ? 'user' : 'device',
    });
    const reasons: StatusReason[] = [];
    const unsupported = issues.find((i) => i.rule === 'ddm-type' || i.rule === 'ddm-channel' || i.rule === 'apple-platform');
    if (unsupported) reasons.push({ code: 'Error.ConfigurationNotSupported', description: unsupported.message });
    const bad = issues.find((i) => i.severity === 'error' && i !== unsupported);
    if (bad) reasons.push({ code: 'Error.ConfigurationCannotBeDeserialized', description: bad.message });
    const unknown = issues.filter((i) => i.rule === 'apple-unknown-key').map((i) => i.path.join('.'));
    if (unknown.length) reasons.push({ code: 'Error.UnknownPayloadKeys', details: { UnknownPayloadKeys: unknown } });
    const failed = reasons.length === 0 ? this.fail?.(d) : undefined;
    if (failed) reasons.push(failed);
    let invalid = reasons.some((r) => r.code !== 'Error.UnknownPayloadKeys');
    let profile: string | undefined;
    if (!invalid && d.Type === LEGACY_TYPE) {
      const got = await this.legacyProfile(String(d.Payload.ProfileURL));
      if ('error' in got) {
        reasons.push({ code: 'Error.ConfigurationCannotBeApplied', description: got.error });
        invalid = true;
      } else profile = got.identifier;
    }
    return { class: cls, declaration: d, valid: invalid ? 'invalid' : 'valid', reasons, active: false, ...(profile ? { profile } : {}) };
  }

  /** Download and install a legacy declaration's profile, as the device does when it loads it. */
  private async legacyProfile(url: string): Promise<{ identifier: string } | { error: string }> {
    let res: SimResponse;
    try {
      res = await this.device.mdmGet(url);
    } catch (err) {
      return { error: (err as Error).message };
    }
    if (res.status !== 200) return { error: `ProfileURL answered ${res.status}` };
    const identifier = this.device.installProfile(res.body);
    return identifier ? { identifier } : { error: 'the profile at ProfileURL could not be read' };
  }

  /** Activations activate the configurations they name; configurations their assets. */
  private activate(held: Map<string, Held>): void {
    for (const h of held.values()) {
      h.active = h.class === 'management' ? h.valid === 'valid' : false;
      h.reasons = h.reasons.filter((r) => !r.code.startsWith('Info.') && r.code !== 'Error.MissingConfigurations');
    }
    for (const a of held.values()) {
      if (a.class !== 'activation' || a.valid !== 'valid') continue;
      const ids = Array.isArray(a.declaration.Payload.StandardConfigurations) ? (a.declaration.Payload.StandardConfigurations as string[]) : [];
      const missing = ids.filter((id) => held.get(id)?.class !== 'configuration');
      if (missing.length) {
        a.reasons.push({ code: 'Error.MissingConfigurations', details: { Identifier: a.declaration.Identifier, ConfigurationIdentifiers: missing } });
      }
      a.active = true;
      for (const id of ids) {
        const c = held.get(id);
        if (c?.class === 'configuration' && c.valid === 'valid') c.active = true;
      }
    }
    for (const c of held.values()) {
      if (c.class === 'configuration' && !c.active && c.valid === 'valid') c.reasons.push({ code: 'Info.NotReferencedByActivation' });
    }
    for (const h of held.values()) if (h.class === 'asset') h.active = h.valid === 'valid';
  }

  private statusReport(held: Map<string, Held>): Record<string, unknown> {
    const lists: Record<string, unknown[]> = { activations: [], configurations: [], assets: [], management: [] };
    for (const [id, h] of held) {
      lists[STATUS_LIST[h.class]]!.push({
        identifier: id,
        'server-token': h.declaration.ServerToken,
        active: h.active,
        valid: h.valid,
        ...(h.reasons.length ? { reasons: h.reasons } : {}),
      });
    }
    const f = this.device.facts;
    const items: Record<string, unknown> = {
      management: { declarations: lists },
      device: {
        'operating-system': { version: String(f.OSVersion), 'build-version': String(f.BuildVersion) },
        model: { identifier: String(f.Model), 'marketing-name': String(f.ModelName) },
        identifier: { 'serial-number': String(f.SerialNumber) },
      },
    };
    const update = [...held.values()].find((h) => h.active && h.declaration.Type === 'com.apple.configuration.softwareupdate.enforcement.specific');
    if (update && String(update.declaration.Payload.TargetOSVersion) !== String(f.OSVersion)) {
      const p = update.declaration.Payload;
      const pending = { 'os-version': String(p.TargetOSVersion), 'build-version': String(p.TargetBuildVersion ?? '') };
      items.softwareupdate = this.updateFailure
        ? {
            'install-state': 'failed',
            'pending-version': pending,
            'failure-reason': { count: 1, reason: this.updateFailure, timestamp: new Date().toISOString() },
          }
        : { 'install-state': 'downloading', 'pending-version': pending, 'failure-reason': { count: 0 } };
    } else if (update) {
      items.softwareupdate = { 'install-state': 'none', 'failure-reason': { count: 0 } };
    }
    const full = this.fullReportNext;
    this.fullReportNext = false;
    return { StatusItems: items, Errors: [], ...(full ? { FullReport: true } : {}) };
  }
}
