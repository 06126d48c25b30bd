/**
 * ABM in `orchard serve`: on the leader, every `intervalMs`, each imported server token's devices
 * are synced into the AbmStore (src/abm/sync.ts). What an admin must act on is kept as conditions
 * (status API, status page, metrics) and announced once when it appears (log warning, event
 * webhook `abm.condition`): a token that expires within 30 days or has expired, terms and
 * conditions not accepted, a token ABM rejects, a serial not assigned to this server.
 */
import type { Logger } from 'pino';
import { OrchardError } from '../errors.js';
import type { AbmDeviceRecord, AbmStore } from '../store/abm.js';
import type { AbmFacts } from '../model/device.js';
import type { Fleet, Platform } from '../gitops/model.js';
import { matches, type DeviceView } from '../gitops/selector.js';
import type { InventoryStore } from '../store/roles/inventory.js';
import type { Page, PageRequest } from '../store/paging.js';
import { AbmServiceError, DepClient, type AbmReason } from './client.js';
import type { StoredToken } from './material.js';
import { AbmSync, type SyncResult } from './sync.js';
import { daysLeft, EXPIRY_WARNING_DAYS } from './token.js';

export type AbmConditionKind = 'token_expiring' | 'token_expired' | 'tokens_unreadable' | AbmReason;

export interface AbmCondition {
  token: string;
  kind: AbmConditionKind;
  message: string;
  since: string;
  /** Serial numbers it concerns (a serial not assigned to this server). */
  serials?: string[];
}

export interface AbmTokenStatus {
  name: string;
  expiresAt: string;
  daysLeft: number;
  expired: boolean;
  warning?: string;
  lastSyncAt?: string;
  lastSync?: Pick<SyncResult, 'full' | 'upserts' | 'deletes' | 'pages' | 'refetched'>;
  lastError?: { at: string; reason: string; message: string };
}

export interface AbmStatus {
  tokens: AbmTokenStatus[];
  conditions: AbmCondition[];
  /** ABM's devices as of the last pass: all of them, those enrolled here, those not yet. */
  devices?: { total: number; enrolled: number; awaitingEnrollment: number };
}

/** One ABM device in the inventory: Apple's fields, and the enrolled device it is (once it enrolled). */
export interface AbmInventoryDevice extends AbmFacts {
  serialNumber: string;
  assignedAt?: string;
  /** The enrolled device's id (UDID), once it enrolled. */
  deviceId?: string;
}

const FAMILY_PLATFORM: Record<string, Platform> = {
  Mac: 'macOS',
  iPad: 'iPadOS',
  iPhone: 'iOS',
  iPod: 'iOS',
  AppleTV: 'tvOS',
  Watch: 'watchOS',
  Vision: 'visionOS',
};

/** What a selector sees of an ABM device that has not enrolled yet: its serial, its DeviceGroup tags, ABM's fields. */
export function abmDeviceView(d: AbmInventoryDevice, fleet: Pick<Fleet, 'tagsBySerial'>): DeviceView {
  const { serialNumber, token: _t, deviceId: _d, assignedAt: _a, ...abm } = d;
  const platform = d.deviceFamily ? FAMILY_PLATFORM[d.deviceFamily] : undefined;
  return { serial: serialNumber, tags: fleet.tagsBySerial.get(serialNumber) ?? new Set<string>(), abm, ...(platform ? { platform } : {}) };
}

/** The blueprints of a fleet that select an ABM device (before it enrolls: by serial, tags and ABM's fields). */
export function abmBlueprints(fleet: Fleet, d: AbmInventoryDevice): string[] {
  const view = abmDeviceView(d, fleet);
  return [...fleet.blueprints.values()].filter((b) => matches(b.selector, view)).map((b) => b.name);
}

/** What ABM says about a serial enrolling from Setup Assistant (AbmService.assignment). */
export type AbmAssignment = { state: 'assigned'; record: AbmFacts } | { state: 'unassigned' | 'off' };

/** What selectors see of an ABM record. */
export function abmFacts(r: AbmDeviceRecord): AbmFacts {
  const f: AbmFacts = { token: r.token };
  if (r.model !== undefined) f.model = r.model;
  if (r.description !== undefined) f.description = r.description;
  if (r.color !== undefined) f.color = r.color;
  if (r.os !== undefined) f.os = r.os;
  if (r.device_family !== undefined) f.deviceFamily = r.device_family;
  if (r.device_assigned_by !== undefined) f.assignedBy = r.device_assigned_by;
  if (r.profile_status !== undefined) f.profileStatus = r.profile_status;
  if (r.profile_uuid !== undefined) f.profileUuid = r.profile_uuid;
  return f;
}

/** Work done on the leader after each token's sync (the enrollment profile reconciler); it may add conditions. */
export type AfterSync = (token: StoredToken, client: DepClient, report: (kind: AbmConditionKind, message: string, serials?: string[]) => void) => Promise<void>;

export interface AbmServiceOptions {
  store: AbmStore;
  /** Apple's service (default) or a stand-in. */
  url?: string;
  intervalMs: number;
  isLeader: () => boolean;
  log: Logger;
  emit?: (type: string, data: Record<string, unknown>) => void;
  now?: () => Date;
  /** The MDM inventory, to tell which ABM devices enrolled (read once per pass). */
  inventory?: Pick<InventoryStore, 'listDevices'>;
  /** The imported server tokens, read at every pass (the store's: src/abm/material.ts AbmMaterial). */
  tokens: () => Promise<StoredToken[]>;
}

export class AbmService {
  private readonly sync: AbmSync;
  private readonly clients = new Map<string, { key: string; client: DepClient }>();
  private readonly tokenStatus = new Map<string, AbmTokenStatus>();
  private conditions = new Map<string, AbmCondition>();
  private readonly after: AfterSync[] = [];
  /** ABM serial -> enrolled device id, for the ABM devices that enrolled (refreshed each pass, and at Authenticate). */
  private enrolled = new Map<string, string>();
  private counts?: AbmStatus['devices'];
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = false;
  private readonly now: () => Date;

  constructor(private readonly opts: AbmServiceOptions) {
    this.now = opts.now ?? (() => new Date());
    this.sync = new AbmSync(opts.store, 1000, this.now);
  }

  /** Runs after every successful sync of a token, in order. */
  afterSync(step: AfterSync): void {
    this.after.push(step);
  }

  /** A first pass now (not awaited: Apple being slow must not hold up the server), then one per interval. */
  start(): void {
    if (this.opts.intervalMs <= 0) return;
    void this.runOnce();
    this.timer = setInterval(() => void this.runOnce(), this.opts.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running;
  }

  /** One pass over every token (a pass already running is joined, not doubled). Never throws. */
  runOnce(): Promise<void> {
    if (this.stopped || !this.opts.isLeader()) return Promise.resolve();
    this.running ??= this.pass().finally(() => (this.running = undefined));
    return this.running;
  }

  status(): AbmStatus {
    return {
      tokens: [...this.tokenStatus.values()].sort((a, b) => a.name.localeCompare(b.name)),
      conditions: [...this.conditions.values()].sort((a, b) => a.token.localeCompare(b.token) || a.kind.localeCompare(b.kind)),
      ...(this.counts ? { devices: this.counts } : {}),
    };
  }

  /** The ABM record of a serial, as selectors see it (MdmService binds it to the device at Authenticate). */
  async lookup(serial: string, deviceId?: string): Promise<AbmFacts | undefined> {
    const r = await this.opts.store.getAbmDevice(serial);
    if (r && deviceId) this.enrolled.set(serial, deviceId);
    return r ? abmFacts(r) : undefined;
  }

  /**
   * Whether ABM speaks for a serial enrolling from Setup Assistant: `assigned` (ABM assigned it to
   * this server: its record), `unassigned` (tokens are imported but the inventory has no such
   * serial: ABM did not assign it to this server), `off` (no token imported: ABM is not in use).
   */
  async assignment(serial: string): Promise<AbmAssignment> {
    const r = await this.opts.store.getAbmDevice(serial);
    if (r) return { state: 'assigned', record: abmFacts(r) };
    let tokens: number;
    try {
      tokens = (await this.opts.tokens()).length;
    } catch {
      // Tokens exist but cannot be read (a condition says so): ABM is in use, the serial is not known.
      tokens = 1;
    }
    return { state: tokens > 0 ? 'unassigned' : 'off' };
  }

  /** ABM's devices in serial order, each with the device it enrolled as. */
  async devices(page?: PageRequest): Promise<Page<AbmInventoryDevice>> {
    const p = await this.opts.store.listAbmDevices(page);
    return { items: p.items.map((r) => this.inventoryDevice(r)), next: p.next };
  }

  private inventoryDevice(r: AbmDeviceRecord): AbmInventoryDevice {
    const f = abmFacts(r);
    const { token, ...fields } = f;
    const deviceId = this.enrolled.get(r.serial_number);
    return {
      serialNumber: r.serial_number,
      token,
      ...fields,
      ...(r.device_assigned_date ? { assignedAt: r.device_assigned_date } : {}),
      ...(deviceId ? { deviceId } : {}),
    };
  }

  /** Which ABM devices enrolled: one read of both lists. */
  private async refreshInventory(): Promise<void> {
    const serials = new Set<string>();
    for (let next: string | undefined, first = true; first || next !== undefined; first = false) {
      const p = await this.opts.store.listAbmDevices({ cursor: next, limit: 5000 });
      for (const d of p.items) serials.add(d.serial_number);
      next = p.next;
    }
    const enrolled = new Map<string, string>();
    if (this.opts.inventory) {
      for (let next: string | undefined, first = true; first || next !== undefined; first = false) {
        const p = await this.opts.inventory.listDevices({ cursor: next, limit: 1000 });
        for (const d of p.items) {
          const serial = d.facts.SerialNumber;
          if (serial && serials.has(serial) && !d.checkedOutAt) enrolled.set(serial, d.id);
        }
        next = p.next;
      }
    }
    this.enrolled = enrolled;
    this.counts = { total: serials.size, enrolled: enrolled.size, awaitingEnrollment: serials.size - enrolled.size };
  }

  /** A DepClient per token, kept while its credentials are the same (so is its session). */
  client(t: StoredToken): DepClient {
    const key = `${t.consumerKey}\0${t.accessToken}`;
    const have = this.clients.get(t.name);
    if (have?.key === key) return have.client;
    const client = new DepClient({ credentials: t, baseUrl: this.opts.url, timeoutMs: 60_000 });
    this.clients.set(t.name, { key, client });
    return client;
  }

  private async pass(): Promise<void> {
    const next = new Map<string, AbmCondition>();
    const report = (token: string) => (kind: AbmConditionKind, message: string, serials?: string[]) => {
      const id = `${token}\0${kind}`;
      const prev = next.get(id);
      const all = serials || prev?.serials ? [...new Set([...(prev?.serials ?? []), ...(serials ?? [])])].sort() : undefined;
      next.set(id, { token, kind, message, since: this.conditions.get(id)?.since ?? this.now().toISOString(), ...(all ? { serials: all } : {}) });
    };
    let tokens: StoredToken[];
    try {
      tokens = await this.opts.tokens();
    } catch (err) {
      // Orchard's errors never quote secrets (a JSON parser's might quote the token file).
      report('*')('tokens_unreadable', `the imported ABM tokens cannot be read: ${err instanceof OrchardError ? err.message : 'unexpected error'}`);
      if (!(err instanceof OrchardError)) this.opts.log.error({ errorKind: err instanceof Error ? err.name : typeof err }, 'ABM tokens unreadable');
      tokens = [];
    }
    const names = new Set(tokens.map((t) => t.name));
    for (const name of this.tokenStatus.keys()) if (!names.has(name)) this.tokenStatus.delete(name);
    for (const t of tokens) {
      if (this.stopped) return;
      await this.syncToken(t, report(t.name));
    }
    try {
      if (tokens.length > 0) await this.refreshInventory();
    } catch (err) {
      this.opts.log.error({ err }, 'ABM inventory: the stores could not be read');
    }
    this.announce(next);
    this.conditions = next;
  }

  private async syncToken(t: StoredToken, report: (kind: AbmConditionKind, message: string, serials?: string[]) => void): Promise<void> {
    const now = this.now();
    const days = daysLeft(t, now);
    const st: AbmTokenStatus = {
      ...this.tokenStatus.get(t.name),
      name: t.name,
      expiresAt: t.accessTokenExpiry.toISOString(),
      daysLeft: days,
      expired: days < 0,
    };
    delete st.warning;
    if (days < 0) st.warning = `ABM token "${t.name}" expired on ${st.expiresAt}: download a new one in ABM and run \`orchard abm token import\``;
    else if (days <= EXPIRY_WARNING_DAYS)
      st.warning = `ABM token "${t.name}" expires in ${days} days (${st.expiresAt}): renew it in ABM and run \`orchard abm token import\``;
    if (st.warning) report(days < 0 ? 'token_expired' : 'token_expiring', st.warning);
    this.tokenStatus.set(t.name, st);
    const client = this.client(t);
    try {
      const r = await this.sync.run(t.name, client);
      st.lastSyncAt = this.now().toISOString();
      st.lastSync = { full: r.full, upserts: r.upserts, deletes: r.deletes, pages: r.pages, ...(r.refetched ? { refetched: r.refetched } : {}) };
      delete st.lastError;
      if (r.upserts || r.deletes) this.opts.log.info({ token: t.name, ...st.lastSync }, 'ABM devices synced');
      for (const step of this.after) await step(t, client, report);
    } catch (err) {
      const reason: AbmReason = err instanceof AbmServiceError ? err.reason : 'bad_response';
      // Orchard's own errors never carry secrets; anything else is named by kind only.
      const message = err instanceof OrchardError ? err.message : 'ABM: unexpected error during the sync';
      st.lastError = { at: this.now().toISOString(), reason, message };
      report(reason, message);
      if (!(err instanceof OrchardError)) this.opts.log.error({ token: t.name, err }, 'ABM sync failed');
    }
  }

  /** Logs and emits the conditions that are new (or changed their serials); logs those that cleared. */
  private announce(next: Map<string, AbmCondition>): void {
    for (const [id, c] of next) {
      const prev = this.conditions.get(id);
      if (prev && prev.message === c.message && String(prev.serials) === String(c.serials)) continue;
      this.opts.log.warn({ token: c.token, condition: c.kind, serials: c.serials }, c.message);
      this.opts.emit?.('abm.condition', { ...c });
    }
    for (const [id, c] of this.conditions) {
      if (!next.has(id)) this.opts.log.info({ token: c.token, condition: c.kind }, 'ABM condition cleared');
    }
  }
}
