/**
 * The MDM business logic: what a check-in or a command report does, independent of HTTP. The
 * identity of the speaker has already been proven (a certificate that chains to a trusted CA);
 * this layer decides whether that certificate may speak for the device it names.
 */
import { EventEmitter } from 'node:events';
import type { TrustResult } from '../identity/trust.js';
import { ProtocolError } from '../protocol/errors.js';
import type { CheckinMessage, CommandReport } from '../protocol/messages.js';
import { toJson } from '../protocol/json.js';
import { buildPlist, type PlistDict } from '../protocol/plist.js';
import type { DeviceRecord, EnrollmentRecord, ReportedState, Store } from '../store/types.js';

export interface CheckinReply {
  status: 200 | 410;
  body?: Buffer;
}

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

export class MdmService extends EventEmitter<MdmEvents> {
  // Hot-path caches, written through on every change (this process owns the store).
  private readonly bindings = new Map<string, Binding | null>();
  private readonly active = new Map<string, boolean>();
  /** Which certificate a renewed one replaced (the built-in CA records its RenewalReqs). */
  private renewedFrom?: (certHash: string) => string | undefined;

  constructor(private readonly store: Store, private readonly now: () => Date = () => new Date()) {
    super();
  }

  async checkin(msg: CheckinMessage, id: TrustResult): Promise<CheckinReply> {
    if (msg.MessageType === 'Authenticate') {
      await this.authorizeAuthenticate(msg.deviceId, id);
      await this.store.authenticate(msg.deviceId, msg.facts, {
        certHash: id.certHash,
        issuerHash: id.issuerHash,
        subject: id.subject,
        notAfter: id.notAfter,
      }, this.now());
      this.bindings.set(msg.deviceId, { certHash: id.certHash, issuerHash: id.issuerHash });
      for (const key of this.active.keys()) if (key === msg.deviceId || key.startsWith(`${msg.deviceId}:`)) this.active.delete(key);
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
        const { activated } = await this.store.tokenUpdate(rec);
        this.active.set(msg.enrollmentId, true);
        this.emit('tokenUpdate', rec);
        if (activated) this.emit('enrolled', rec);
        return { status: 200 };
      }
      case 'CheckOut':
        await this.store.checkOut(msg.enrollmentId, this.now());
        for (const key of this.active.keys()) if (key === msg.enrollmentId || (!msg.userId && key.startsWith(`${msg.deviceId}:`))) this.active.delete(key);
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
      case 'GetToken':
      case 'DeclarativeManagement':
        throw new ProtocolError(400, `${msg.MessageType} is not supported yet by this server`);
    }
    throw new ProtocolError(400, 'unhandled MessageType');
  }

  async report(rep: CommandReport, raw: Buffer, id: TrustResult): Promise<CommandReply> {
    await this.authorize(rep.deviceId, id);
    const eid = rep.enrollmentId;
    if (!(await this.isActive(eid))) {
      // Not enrolled on this channel (no TokenUpdate yet, or checked out): nothing to offer.
      return { outcome: 'enrollment not active' };
    }
    const at = this.now();
    void this.store.touch(eid, at);
    let outcome: string = rep.Status;
    if (rep.Status !== 'Idle') {
      const recorded = await this.store.recordResult(
        eid,
        rep.CommandUUID!,
        { status: rep.Status, at: at.toISOString(), raw, ...(rep.ErrorChain ? { errorChain: rep.ErrorChain } : {}) },
        // Reported state describes the device: a user channel's ProfileList must not replace it.
        rep.Status === 'Acknowledged' && !rep.userId ? reportedFrom(rep.dict, rep.CommandUUID!, at) : undefined,
      );
      outcome = `${rep.Status} ${rep.CommandUUID} (${recorded})`;
      if (recorded === 'recorded' || recorded === 'notnow') this.emit('result', eid, rep);
    }
    // After any answer, commands the device said NotNow to wait for its next Idle: offering one
    // again in reply to its NotNow would loop (PROTOCOL.md §1).
    const next = await this.store.nextCommand(eid, { skipNotNow: rep.Status !== 'Idle' });
    if (!next) return { outcome };
    return { body: next.payload, commandUUID: next.uuid, outcome: `${outcome} -> ${next.requestType} ${next.uuid}` };
  }

  /**
   * Accept a renewed identity in place of the bound one without a new Authenticate: the CA that
   * issued the renewal says which certificate it replaced.
   */
  acceptRenewals(renewedFrom: (certHash: string) => string | undefined): void {
    this.renewedFrom = renewedFrom;
  }

  private async binding(deviceId: string): Promise<Binding | null> {
    let b = this.bindings.get(deviceId);
    if (b === undefined) {
      const dev: DeviceRecord | undefined = await this.store.getDevice(deviceId);
      b = dev ? { certHash: dev.identity.certHash, issuerHash: dev.identity.issuerHash } : null;
      this.bindings.set(deviceId, b);
    }
    return b;
  }

  private async isActive(enrollmentId: string): Promise<boolean> {
    let a = this.active.get(enrollmentId);
    if (a === undefined) {
      a = (await this.store.getEnrollment(enrollmentId))?.active ?? false;
      this.active.set(enrollmentId, a);
    }
    return a;
  }

  /** Every message after Authenticate must come with the certificate bound there. */
  private async authorize(deviceId: string, id: TrustResult): Promise<void> {
    const b = await this.binding(deviceId);
    if (!b) throw new ProtocolError(403, `device ${deviceId} has not authenticated`);
    if (b.certHash !== id.certHash && this.isRenewalOf(id.certHash, b.certHash)) {
      await this.store.rebindIdentity(deviceId, { certHash: id.certHash, issuerHash: id.issuerHash, subject: id.subject, notAfter: id.notAfter });
      this.bindings.set(deviceId, { certHash: id.certHash, issuerHash: id.issuerHash });
      return;
    }
    if (b.certHash !== id.certHash) {
      throw new ProtocolError(403, `certificate ${id.certHash.slice(0, 16)} is not the one bound to device ${deviceId}`);
    }
  }

  /** Whether `cert` descends from `bound` through renewals (a few generations at most). */
  private isRenewalOf(cert: string, bound: string): boolean {
    let h: string | undefined = cert;
    for (let i = 0; i < 8 && h && this.renewedFrom; i++) {
      h = this.renewedFrom(h);
      if (h === bound) return true;
    }
    return false;
  }

  /**
   * A certificate speaks for one device. At Authenticate a device may present a new certificate
   * (renewal or re-enrollment) only if the same CA issued it; a certificate already bound to
   * another device is refused.
   */
  private async authorizeAuthenticate(deviceId: string, id: TrustResult): Promise<void> {
    const owner = await this.store.deviceForCert(id.certHash);
    if (owner !== undefined && owner !== deviceId) {
      throw new ProtocolError(403, `certificate ${id.certHash.slice(0, 16)} belongs to device ${owner}, not ${deviceId}`);
    }
    const b = await this.binding(deviceId);
    if (b && b.certHash !== id.certHash && b.issuerHash !== id.issuerHash) {
      throw new ProtocolError(403, `device ${deviceId} is bound to a certificate from another CA`);
    }
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
