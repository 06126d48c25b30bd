/**
 * The MDM business logic: what a check-in or a command report does, independent of HTTP. The
 * identity of the speaker has already been proven (a certificate that chains to a trusted CA);
 * this layer decides whether that certificate may speak for the device it names.
 *
 * A certificate speaks for one device. A device bound to one certificate moves to another only by
 * a renewal of the bound certificate (built-in CA, RenewalReq), or by a re-enrollment the admin's
 * re-enroll policy allows; every such change is an `identityChanged` event, and a re-enrollment
 * never inherits the old identity's secrets (bootstrap token, UnlockTokens).
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { ReenrollPolicy } from '../config.js';
import type { TrustResult } from '../identity/trust.js';
import { ProtocolError } from '../protocol/errors.js';
import type { CheckinMessage, CommandReport } from '../protocol/messages.js';
import { toJson } from '../protocol/json.js';
import { buildPlist, type PlistDict } from '../protocol/plist.js';
import { LruMap } from '../store/lru.js';
import { recordAndNext } from '../store/roles/results.js';
import type { AbmFacts } from '../model/device.js';
import type {
  DeviceFacts,
  DeviceRecord,
  EnrollmentRecord,
  IdentityBinding,
  IdentityChange,
  OutboxEntry,
  QueuedCommand,
  ReportedState,
  Store,
} from '../store/types.js';

export interface CheckinReply {
  status: 200 | 410;
  body?: Buffer;
  /** Default application/xml (a plist). */
  type?: string;
}

/** Answers DeclarativeManagement check-ins of an authorized, active enrollment (src/ddm). */
export type DeclarativeHandler = (enrollmentId: string, endpoint: string, data: Buffer | undefined) => Promise<Buffer | undefined>;

/** Run before an inactive (or new) enrollment is made active by its TokenUpdate. */
export type ActivationHook = (enrollment: EnrollmentRecord) => Promise<void>;

/** A device-visible outcome plus a short reason for the request log. */
export interface CommandReply {
  body?: Buffer;
  commandUUID?: string;
  outcome: string;
}

export interface MdmEvents {
  /** An enrollment became active (first TokenUpdate after Authenticate). */
  enrolled: [enrollment: EnrollmentRecord];
  /** A final or NotNow answer was stored. */
  result: [enrollmentId: string, report: CommandReport];
  checkedOut: [enrollmentId: string];
  /** Every TokenUpdate (a new push token lifts a push suppression). */
  tokenUpdate: [enrollment: EnrollmentRecord];
  /** Another certificate now speaks for the device (renewal or re-enrollment). */
  identityChanged: [deviceId: string, change: IdentityChange];
}

/**
 * The webhook events of some `MdmEvents` (src/report/webhooks.ts), built before the store change
 * that causes them and written by the store in that change's batch or transaction: a crash keeps
 * both or neither. Undefined: no event.
 */
export interface MdmEventOutbox {
  enrolled(enrollment: EnrollmentRecord): OutboxEntry | undefined;
  checkedOut(enrollmentId: string): OutboxEntry | undefined;
  identityChanged(deviceId: string, change: IdentityChange): OutboxEntry | undefined;
  /** Written only if the answer is stored (recorded or NotNow), as the 'result' event is emitted. */
  result(enrollmentId: string, report: CommandReport): OutboxEntry | undefined;
}

/**
 * What the built-in CA recorded when it issued a certificate (certificates of other CAs, and
 * those issued for the static challenge, have no record).
 */
export interface Issuance {
  /** Issued through a one-time enrollment created for this serial number / UDID. */
  serial?: string;
  udid?: string;
  /** A RenewalReq: the hash of the certificate it renewed, and the device that one was bound to. */
  renewalOf?: string;
  device?: string;
  /** This certificate was renewed by that one: it is retired and speaks for nobody any more. */
  renewedBy?: string;
}

export type IssuanceLookup = (certHash: string) => Issuance | undefined | Promise<Issuance | undefined>;

export interface MdmServiceOptions {
  now?: () => Date;
  /** When another certificate may take over an enrolled device. Default `same-serial-challenge`. */
  reenroll?: ReenrollPolicy;
  /** Entries per identity cache (bindings, active channels). Default 100,000. */
  cacheMax?: number;
  /** Identity changes are logged here. */
  log?: Logger;
}

interface Binding {
  certHash: string;
  issuerHash: string;
}

// Response keys that only their query command returns: the device's reported state is updated
// from the report itself, so no lookup of the command is needed on the hot path.
const REPORTED_KEYS: [keyof ReportedState, string][] = [
  ['DeviceInformation', 'QueryResponses'],
  ['SecurityInfo', 'SecurityInfo'],
  ['ProfileList', 'ProfileList'],
  ['InstalledApplicationList', 'InstalledApplicationList'],
  ['CertificateList', 'CertificateList'],
];

const MAX_CHANNELS_PER_DEVICE = 32;
const short = (h: string) => h.slice(0, 16);
const certOf = (b: Pick<IdentityBinding, 'certHash' | 'subject' | 'notAfter'>) => ({ certHash: b.certHash, subject: b.subject, notAfter: b.notAfter });

export class MdmService extends EventEmitter<MdmEvents> {
  // Hot-path caches, written through on every change (this process owns the store). Bounded:
  // only devices that exist are cached, and the least recently used go first.
  private readonly bindings: LruMap<string, Binding>;
  /** deviceId -> channel ('' for the device channel, else the UserID) -> active. */
  private readonly active: LruMap<string, Map<string, boolean>>;
  private issuance: IssuanceLookup = () => undefined;
  private abmRecord: (serial: string, deviceId: string) => Promise<AbmFacts | undefined> = async () => undefined;
  private declarative?: DeclarativeHandler;
  private activating?: ActivationHook;
  private outbox?: MdmEventOutbox;
  private readonly now: () => Date;
  readonly reenroll: ReenrollPolicy;
  private readonly log?: Logger;

  constructor(
    private readonly store: Store,
    opts: MdmServiceOptions | (() => Date) = {},
  ) {
    super();
    const o = typeof opts === 'function' ? { now: opts } : opts;
    this.now = o.now ?? (() => new Date());
    this.reenroll = o.reenroll ?? 'same-serial-challenge';
    this.log = o.log;
    this.bindings = new LruMap(o.cacheMax ?? 100_000);
    this.active = new LruMap(o.cacheMax ?? 100_000);
  }

  async checkin(msg: CheckinMessage, id: TrustResult): Promise<CheckinReply> {
    if (msg.MessageType === 'Authenticate') {
      const { change, issuedFor } = await this.authorizeAuthenticate(msg.deviceId, msg.facts, id);
      const facts: DeviceFacts = { ...msg.facts };
      if (issuedFor?.serial !== undefined && issuedFor.serial === facts.SerialNumber) facts.provenSerialNumber = issuedFor.serial;
      delete facts.abm;
      const abm = facts.SerialNumber ? await this.abmRecord(facts.SerialNumber, msg.deviceId) : undefined;
      if (abm) facts.abm = abm;
      const identity: IdentityBinding = { certHash: id.certHash, issuerHash: id.issuerHash, subject: id.subject, notAfter: id.notAfter };
      if (issuedFor) identity.issuedFor = issuedFor;
      await this.store.authenticate(msg.deviceId, facts, identity, this.now(), change, change && this.outbox?.identityChanged(msg.deviceId, change));
      this.bindings.set(msg.deviceId, { certHash: id.certHash, issuerHash: id.issuerHash });
      this.active.delete(msg.deviceId);
      if (change) this.changed(msg.deviceId, change);
      return { status: 200 };
    }
    await this.authorize(msg.deviceId, id);
    switch (msg.MessageType) {
      case 'TokenUpdate': {
        const at = this.now().toISOString();
        const existing = await this.store.getEnrollment(msg.enrollmentId);
        const rec: EnrollmentRecord = {
          id: msg.enrollmentId,
          deviceId: msg.deviceId,
          type: msg.userId ? 'user' : 'device',
          ...(msg.userId ? { userId: msg.userId, userShortName: msg.UserShortName, userLongName: msg.UserLongName } : {}),
          active: true,
          push: { token: msg.Token.toString('hex'), pushMagic: msg.PushMagic, topic: msg.Topic },
          // A later TokenUpdate without UnlockToken keeps the one we have.
          unlockToken: msg.UnlockToken ?? existing?.unlockToken,
          awaitingConfiguration: msg.AwaitingConfiguration,
          createdAt: existing?.createdAt ?? at,
          updatedAt: at,
        };
        if (msg.userId && !(await this.isActive(msg.deviceId))) {
          throw new ProtocolError(400, 'user-channel TokenUpdate before the device channel is enrolled');
        }
        // What a channel enrolled anew must not inherit is gone before it is active: the work row
        // its activation writes may be claimed (on any replica) as soon as it is committed.
        if (!existing?.active) await this.activating?.(rec);
        const { activated } = await this.store.tokenUpdate(rec, this.outbox?.enrolled(rec));
        this.setActive(msg.deviceId, msg.userId, true);
        this.emit('tokenUpdate', rec);
        if (activated) this.emit('enrolled', rec);
        return { status: 200 };
      }
      case 'CheckOut':
        await this.store.checkOut(msg.enrollmentId, this.now(), this.outbox?.checkedOut(msg.enrollmentId));
        if (msg.userId) this.active.get(msg.deviceId)?.delete(msg.userId);
        else this.active.delete(msg.deviceId);
        this.emit('checkedOut', msg.enrollmentId);
        return { status: 200 };
      case 'UserAuthenticate':
        // Declining the user-channel bootstrap cleanly (PROTOCOL.md §1).
        return { status: 410 };
      case 'SetBootstrapToken':
        await this.store.setBootstrapToken(msg.deviceId, msg.BootstrapToken ?? null);
        return { status: 200 };
      case 'GetBootstrapToken': {
        const token = await this.store.getBootstrapToken(msg.deviceId);
        const reply: PlistDict = token ? { BootstrapToken: new Uint8Array(token) } : {};
        return { status: 200, body: buildPlist(reply) };
      }
      case 'DeclarativeManagement': {
        if (!this.declarative) throw new ProtocolError(400, 'DeclarativeManagement is not enabled on this server');
        if (!(await this.isActive(msg.deviceId, msg.userId)))
          throw new ProtocolError(400, 'DeclarativeManagement before this channel is enrolled (TokenUpdate)');
        const body = await this.declarative(msg.enrollmentId, msg.Endpoint, msg.Data);
        return { status: 200, body, type: 'application/json' };
      }
      case 'GetToken':
        throw new ProtocolError(400, `${msg.MessageType} is not supported yet by this server`);
    }
    throw new ProtocolError(400, 'unhandled MessageType');
  }

  async report(rep: CommandReport, raw: Buffer, id: TrustResult): Promise<CommandReply> {
    await this.authorize(rep.deviceId, id);
    const eid = rep.enrollmentId;
    if (!(await this.isActive(rep.deviceId, rep.userId))) {
      // Not enrolled on this channel (no TokenUpdate yet, or checked out): nothing to offer.
      return { outcome: 'enrollment not active' };
    }
    const at = this.now();
    void this.store.touch(eid, at);
    let outcome: string = rep.Status;
    let next: QueuedCommand | undefined;
    if (rep.Status !== 'Idle') {
      // After any answer, commands the device said NotNow to wait for its next Idle: offering one
      // again in reply to its NotNow would loop (PROTOCOL.md §1). The store may do both in one trip.
      const answered = await recordAndNext(
        this.store,
        eid,
        rep.CommandUUID!,
        { status: rep.Status, at: at.toISOString(), raw, ...(rep.ErrorChain ? { errorChain: rep.ErrorChain } : {}) },
        // Reported state describes the device: a user channel's ProfileList must not replace it.
        rep.Status === 'Acknowledged' && !rep.userId ? reportedFrom(rep.dict, rep.CommandUUID!, at) : undefined,
        this.outbox?.result(eid, rep),
      );
      const recorded = answered.outcome;
      next = answered.next;
      outcome = `${rep.Status} ${rep.CommandUUID} (${recorded})`;
      if (recorded === 'recorded' || recorded === 'notnow') this.emit('result', eid, rep);
    } else next = await this.store.nextCommand(eid, { skipNotNow: false });
    if (!next) return { outcome };
    return { body: next.payload, commandUUID: next.uuid, outcome: `${outcome} -> ${next.requestType} ${next.uuid}` };
  }

  /**
   * May the certificate `id` speak for this enrollment (`<UDID>` or `<UDID>:<UserID>`)? The
   * check every check-in gets, for device requests outside the check-in endpoint (a legacy
   * declaration's profile): the device's bound certificate, on an enrolled channel. 403 if not.
   */
  async speaksFor(enrollmentId: string, id: TrustResult): Promise<{ deviceId: string; userId?: string }> {
    const at = enrollmentId.indexOf(':');
    const deviceId = at < 0 ? enrollmentId : enrollmentId.slice(0, at);
    const userId = at < 0 ? undefined : enrollmentId.slice(at + 1);
    await this.authorize(deviceId, id);
    if (!(await this.isActive(deviceId, userId))) throw new ProtocolError(403, `enrollment ${enrollmentId.slice(0, 120)} is not active`);
    return { deviceId, ...(userId !== undefined ? { userId } : {}) };
  }

  /** Who answers DeclarativeManagement check-ins. */
  useDeclarative(handler: DeclarativeHandler): void {
    this.declarative = handler;
  }

  /** What a channel enrolled anew must not inherit, cleared before its activation is stored (its declarations). */
  onActivating(hook: ActivationHook): void {
    this.activating = hook;
  }

  /** Who builds the webhook events the store writes with the changes that cause them. */
  useOutbox(outbox: MdmEventOutbox): void {
    this.outbox = outbox;
  }

  /** Where a device's Apple Business Manager record is found by serial number (bound at Authenticate). */
  useAbm(lookup: (serial: string, deviceId: string) => Promise<AbmFacts | undefined>): void {
    this.abmRecord = lookup;
  }

  /** Where the built-in CA's records of what it issued come from. */
  useIssuance(lookup: IssuanceLookup): void {
    this.issuance = lookup;
  }

  /**
   * May the certificate `certHash` renew itself (SCEP RenewalReq)? Only the bound, current
   * certificate of an enrolled device may; the answer names that device.
   */
  async renewalFor(certHash: string): Promise<{ deviceId: string } | { refused: string }> {
    if ((await this.issuance(certHash))?.renewedBy) return { refused: 'this certificate was renewed already' };
    const deviceId = await this.store.deviceForCert(certHash);
    const dev = deviceId === undefined ? undefined : await this.store.getDevice(deviceId);
    if (!dev || dev.identity.certHash !== certHash) return { refused: 'the signer certificate is not bound to a device' };
    if (dev.enrolledAt === undefined) return { refused: `device ${dev.id} is not enrolled` };
    return { deviceId: dev.id };
  }

  /**
   * The built-in CA issued `renewed` for the certificate bound to `deviceId`: move the binding at
   * once, so the old certificate speaks for nobody. Idempotent (a retried RenewalReq gets the
   * same certificate again).
   */
  async renewed(deviceId: string, oldCertHash: string, renewed: TrustResult): Promise<void> {
    const dev = await this.store.getDevice(deviceId);
    if (!dev || dev.identity.certHash === renewed.certHash) return;
    if (dev.identity.certHash !== oldCertHash) throw new ProtocolError(403, `device ${deviceId} is no longer bound to the renewed certificate`);
    await this.rebind(dev, renewed);
  }

  /** Sizes of the identity caches (tests, diagnostics). */
  cacheSizes(): { bindings: number; active: number } {
    let active = 0;
    for (const channels of this.active.values()) active += channels.size;
    return { bindings: this.bindings.size, active };
  }

  private async rebind(dev: DeviceRecord, id: TrustResult): Promise<void> {
    const identity: IdentityBinding = { certHash: id.certHash, issuerHash: id.issuerHash, subject: id.subject, notAfter: id.notAfter };
    if (dev.identity.issuedFor) identity.issuedFor = dev.identity.issuedFor;
    const change: IdentityChange = { at: this.now().toISOString(), kind: 'renewal', from: certOf(dev.identity), to: certOf(identity) };
    await this.store.rebindIdentity(dev.id, identity, change, this.outbox?.identityChanged(dev.id, change));
    this.bindings.set(dev.id, { certHash: id.certHash, issuerHash: id.issuerHash });
    this.changed(dev.id, change);
  }

  private changed(deviceId: string, change: IdentityChange): void {
    this.log?.warn({ device: deviceId, kind: change.kind, reason: change.reason, from: change.from, to: change.to }, 'device identity changed');
    this.emit('identityChanged', deviceId, change);
  }

  private async binding(deviceId: string): Promise<Binding | undefined> {
    let b = this.bindings.get(deviceId);
    if (b === undefined) {
      // Unknown devices are not cached: every request naming a new id would add an entry.
      const dev: DeviceRecord | undefined = await this.store.getDevice(deviceId);
      if (!dev) return undefined;
      b = { certHash: dev.identity.certHash, issuerHash: dev.identity.issuerHash };
      this.bindings.set(deviceId, b);
    }
    return b;
  }

  private async isActive(deviceId: string, userId?: string): Promise<boolean> {
    let a = this.active.get(deviceId)?.get(userId ?? '');
    if (a === undefined) {
      a = (await this.store.getEnrollment(userId ? `${deviceId}:${userId}` : deviceId))?.active ?? false;
      this.setActive(deviceId, userId, a);
    }
    return a;
  }

  private setActive(deviceId: string, userId: string | undefined, active: boolean): void {
    let channels = this.active.get(deviceId);
    if (!channels) this.active.set(deviceId, (channels = new Map()));
    channels.delete(userId ?? '');
    channels.set(userId ?? '', active);
    // A device has a few users; a bound device naming ever new UserIDs must not grow this.
    if (channels.size > MAX_CHANNELS_PER_DEVICE) channels.delete(channels.keys().next().value!);
  }

  /** Every message after Authenticate must come with the certificate bound there. */
  private async authorize(deviceId: string, id: TrustResult): Promise<void> {
    const b = await this.binding(deviceId);
    if (!b) throw new ProtocolError(403, `device ${deviceId} has not authenticated`);
    if (b.certHash === id.certHash) return;
    // A renewal whose binding did not move at issuance (a crash between the two).
    const iss = await this.issuance(id.certHash);
    // (Renewals recorded by earlier versions name no device: the bound certificate they renewed does.)
    if (iss?.renewalOf === b.certHash && (iss.device ?? deviceId) === deviceId && !iss.renewedBy) {
      const dev = await this.store.getDevice(deviceId);
      if (dev?.identity.certHash === b.certHash) {
        await this.rebind(dev, id);
        return;
      }
    }
    throw new ProtocolError(403, `certificate ${short(id.certHash)} is not the one bound to device ${deviceId}`);
  }

  /**
   * At Authenticate: may this certificate speak for `deviceId`, with these facts? Returns the
   * identity change it makes (if another certificate was bound) and what the certificate was
   * issued for.
   */
  private async authorizeAuthenticate(
    deviceId: string,
    facts: DeviceFacts,
    id: TrustResult,
  ): Promise<{ change?: IdentityChange; issuedFor?: { serial?: string; udid?: string } }> {
    const iss = await this.issuance(id.certHash);
    const refuse = (why: string): never => {
      throw new ProtocolError(403, `certificate ${short(id.certHash)} may not authenticate as ${deviceId}: ${why}`);
    };
    if (iss?.renewedBy) refuse('it was renewed; the renewed certificate speaks for its device');
    if (iss?.device !== undefined && iss.device !== deviceId) refuse('it is a renewal issued for another device');
    if (iss?.udid !== undefined && iss.udid !== deviceId) refuse('it was issued for another device');
    if (iss?.serial !== undefined && iss.serial !== facts.SerialNumber) refuse('it was issued for another serial number');
    const issuedFor =
      iss && (iss.serial !== undefined || iss.udid !== undefined)
        ? { ...(iss.serial !== undefined ? { serial: iss.serial } : {}), ...(iss.udid !== undefined ? { udid: iss.udid } : {}) }
        : undefined;

    const owner = await this.store.deviceForCert(id.certHash);
    if (owner !== undefined && owner !== deviceId) refuse(`it belongs to device ${owner}`);
    const b = await this.binding(deviceId);
    if (!b || b.certHash === id.certHash) return { issuedFor };
    const dev = await this.store.getDevice(deviceId);
    if (!dev) return { issuedFor };
    const at = this.now().toISOString();
    const from = certOf(dev.identity);
    const to = { certHash: id.certHash, subject: id.subject, notAfter: id.notAfter };
    if (iss?.renewalOf === dev.identity.certHash && (iss.device ?? deviceId) === deviceId) {
      return { issuedFor: issuedFor ?? dev.identity.issuedFor, change: { at, kind: 'renewal', from, to } };
    }
    if (b.issuerHash !== id.issuerHash) refuse('the device is bound to a certificate from another CA');
    const reason = this.reenrollAllowed(dev, iss);
    if (!reason) {
      refuse(
        this.reenroll === 'after-checkout'
          ? `the device is enrolled with another certificate (re-enroll policy after-checkout: it must check out or be erased first)`
          : `the device is enrolled with another certificate (re-enroll policy ${this.reenroll}: a one-time enrollment for its serial number, POST /api/v1/enrollments {"serial": ...}, or a CheckOut first)`,
      );
    }
    return { issuedFor, change: { at, kind: 're-enrollment', reason: `${this.reenroll}: ${reason}`, from, to } };
  }

  /** Why a new certificate may take over the device under the policy, or undefined. */
  private reenrollAllowed(dev: DeviceRecord, iss: Issuance | undefined): string | undefined {
    if (this.reenroll === 'allow') return 'any certificate of the same CA';
    // Nothing enrolled to take over: it checked out, or never finished enrolling.
    if (dev.enrolledAt === undefined) return dev.checkedOutAt !== undefined ? 'the device had checked out' : 'the device had not finished enrolling';
    if (dev.erasedAt !== undefined && Date.parse(dev.erasedAt) >= Date.parse(dev.authenticatedAt)) return 'the device acknowledged EraseDevice';
    if (this.reenroll === 'after-checkout') return undefined;
    if (iss?.udid !== undefined && iss.udid === dev.id) return 'the certificate was issued for this UDID';
    if (iss?.serial !== undefined && iss.serial === dev.facts.SerialNumber) return 'the certificate was issued for this serial number';
    return undefined;
  }
}

function reportedFrom(dict: PlistDict, commandUUID: string, at: Date): ReportedState | undefined {
  let out: ReportedState | undefined;
  for (const [field, key] of REPORTED_KEYS) {
    const value = dict[key];
    if (value === undefined) continue;
    out ??= {};
    (out as Record<string, unknown>)[field] = { at: at.toISOString(), commandUUID, value: toJson(value) };
  }
  return out;
}
