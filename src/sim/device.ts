/**
 * A simulated Apple device: its own key and CA-issued identity certificate, every body signed
 * (Mdm-Signature, or a client-certificate header as a TLS proxy would set), the check-in
 * messages, and a connect loop that answers commands the way a device does. Used by tests,
 * benchmarks and `orchard simulate`.
 */
import { Agent, request } from 'node:http';
import { randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import { codeOfStatus, OrchardError, type ErrorCode } from '../errors.js';
import { signDetached } from '../identity/cms-sign.js';
import { buildPlist, parsePlistDict, TRUSTED_LIMITS, type PlistDict, type PlistValue } from '../protocol/plist.js';
import { SimDdm } from './ddm.js';

/** The server answered a device request with something other than 200. */
export class SimRefusedError extends OrchardError {
  readonly code: ErrorCode;

  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    // Anything but a refusal the error model names is the server's trouble.
    this.code = codeOfStatus(status, 'unavailable');
  }
}

export interface SimIdentity {
  certDer: Buffer;
  key: KeyObject;
}

export type SimSigning =
  /**
   * Mdm-Signature. Default: SHA-1 without signed attributes, as captured devices sign. With
   * `signedAttributes` (contentType, messageDigest, signingTime), as other clients sign with
   * SHA-256, every request gets a new signing time, so every signature is new (the time is in
   * whole seconds, so a second request in the same second is stamped one second later).
   * `reuseSignature` re-sends the previous signature when the body repeats, which only a
   * deterministic signature (RSA, no attributes) allows; off by default, so every request is
   * signed afresh like a device's.
   */
  | { mode: 'signature'; digest?: 'sha1' | 'sha256'; signedAttributes?: boolean; reuseSignature?: boolean }
  | { mode: 'header'; header: string; format: 'rfc9440' | 'nginx' };

export interface SimOptions {
  serverUrl: string;
  identity: SimIdentity;
  udid?: string;
  serialNumber?: string;
  model?: string;
  modelName?: string;
  productName?: string;
  osVersion?: string;
  buildVersion?: string;
  deviceName?: string;
  topic?: string;
  supervised?: boolean;
  /** Enrolling from Setup Assistant with `await_device_configured`: TokenUpdate says AwaitingConfiguration until DeviceConfigured. */
  awaitingConfiguration?: boolean;
  signing?: SimSigning;
  checkinPath?: string;
  connectPath?: string;
  agent?: Agent;
}

export interface InstalledProfile {
  PayloadIdentifier: string;
  PayloadUUID: string;
  PayloadVersion: number;
  PayloadDisplayName?: string;
  PayloadContent: { PayloadIdentifier: string; PayloadType: string; PayloadUUID: string; PayloadVersion: number }[];
}

export interface HandledCommand {
  commandUUID: string;
  requestType: string;
  status: 'Acknowledged' | 'Error' | 'NotNow' | 'CommandFormatError';
}

export interface SimResponse {
  status: number;
  body: Buffer;
}

/** Decides to answer NotNow (a locked device, a busy one). */
export type NotNowPolicy = (requestType: string, commandUUID: string) => boolean;
/** Return an error chain to make a command fail like a device would. */
export type FailurePolicy = (requestType: string, command: PlistDict) => { ErrorCode: number; ErrorDomain: string; LocalizedDescription: string } | undefined;

const defaultAgent = new Agent({ keepAlive: true, maxSockets: 4 });

export class SimulatedDevice {
  readonly udid: string;
  readonly serialNumber: string;
  readonly profiles = new Map<string, InstalledProfile>();
  readonly handled: HandledCommand[] = [];
  notNow?: NotNowPolicy;
  fail?: FailurePolicy;
  /** Declarative Device Management: the declarations each channel holds, and its syncs. */
  readonly ddm = new SimDdm(this);
  /** Run a DDM sync after a connect session that brought a DeclarativeManagement command (as devices do). Default true. */
  ddmAutoSync = true;
  bootstrapToken?: Buffer;
  /** Waiting in Setup Assistant for DeviceConfigured (sent as AwaitingConfiguration in TokenUpdate). */
  awaitingConfiguration: boolean;
  /** The profiles installed when DeviceConfigured released it from Setup Assistant. */
  configuredWith?: string[];
  private readonly pushToken = randomBytes(32);
  private readonly pushMagic = randomUUID().toUpperCase();
  private readonly opts: SimOptions;
  // With `reuseSignature`: the last body and its signature (RSA PKCS#1 v1.5 without attributes
  // is deterministic, so the same body signs the same way).
  private lastSigned?: { body: Buffer; signature: string };
  // With signed attributes: the last signingTime used (ms), kept strictly increasing.
  private lastSigningTime = 0;

  constructor(opts: SimOptions) {
    this.opts = opts;
    this.udid = opts.udid ?? randomUUID().toUpperCase();
    this.serialNumber = opts.serialNumber ?? `SIM${randomBytes(5).toString('hex').toUpperCase().slice(0, 9)}`;
    this.awaitingConfiguration = opts.awaitingConfiguration ?? false;
  }

  get facts(): Record<string, string | boolean> {
    return {
      UDID: this.udid,
      SerialNumber: this.serialNumber,
      Model: this.opts.model ?? 'Mac14,2',
      ModelName: this.opts.modelName ?? 'MacBook Air',
      ProductName: this.opts.productName ?? this.opts.model ?? 'Mac14,2',
      OSVersion: this.opts.osVersion ?? '15.1',
      BuildVersion: this.opts.buildVersion ?? '24B83',
      DeviceName: this.opts.deviceName ?? `Simulated ${this.serialNumber}`,
      IsSupervised: this.opts.supervised ?? false,
    };
  }

  /** The device runs another OS now (a software update installed); it reports it on its next DDM status or DeviceInformation. */
  updateOs(osVersion: string, buildVersion: string): void {
    Object.assign(this.opts, { osVersion, buildVersion });
  }

  private get topic(): string {
    return this.opts.topic ?? 'com.apple.mgmt.External.00000000-0000-0000-0000-000000000000';
  }

  async authenticate(): Promise<SimResponse> {
    const f = this.facts;
    return this.checkin({
      MessageType: 'Authenticate',
      Topic: this.topic,
      UDID: this.udid,
      SerialNumber: f.SerialNumber as string,
      Model: f.Model as string,
      ModelName: f.ModelName as string,
      ProductName: f.ProductName as string,
      OSVersion: f.OSVersion as string,
      BuildVersion: f.BuildVersion as string,
      DeviceName: f.DeviceName as string,
    });
  }

  async tokenUpdate(user?: { userId: string; shortName?: string; longName?: string }): Promise<SimResponse> {
    const msg: PlistDict = {
      MessageType: 'TokenUpdate',
      Topic: this.topic,
      UDID: this.udid,
      Token: new Uint8Array(this.pushToken),
      PushMagic: this.pushMagic,
      AwaitingConfiguration: this.awaitingConfiguration,
    };
    if (user) {
      msg.UserID = user.userId;
      msg.UserShortName = user.shortName ?? 'user';
      msg.UserLongName = user.longName ?? 'Simulated User';
    } else {
      msg.UnlockToken = new Uint8Array(randomBytes(64));
    }
    return this.checkin(msg);
  }

  /** Authenticate then TokenUpdate; throws unless both succeed. */
  async enroll(): Promise<void> {
    for (const step of [() => this.authenticate(), () => this.tokenUpdate()]) {
      const r = await step();
      if (r.status !== 200) throw new Error(`enrollment step failed: ${r.status} ${r.body.toString()}`);
    }
  }

  async checkOut(): Promise<SimResponse> {
    return this.checkin({ MessageType: 'CheckOut', Topic: this.topic, UDID: this.udid });
  }

  async checkin(msg: PlistDict): Promise<SimResponse> {
    return this.put(this.opts.checkinPath ?? '/mdm/checkin', buildPlist(msg), 'application/x-apple-aspen-mdm-checkin');
  }

  /**
   * One connect session: Idle, then answer each command until the server has nothing more
   * (empty body). Returns the commands handled in this session.
   */
  async connect(opts: { userId?: string; maxCommands?: number } = {}): Promise<HandledCommand[]> {
    const session: HandledCommand[] = [];
    let report: PlistDict = { Status: 'Idle', UDID: this.udid, ...(opts.userId ? { UserID: opts.userId } : {}) };
    for (let i = 0; i <= (opts.maxCommands ?? 1000); i++) {
      const res = await this.report(report);
      if (res.status !== 200) throw new SimRefusedError(res.status, `connect: server answered ${res.status}: ${res.body.toString().trim()}`);
      if (res.body.length === 0) {
        if (this.ddmAutoSync && session.some((c) => c.requestType === 'DeclarativeManagement' && c.status === 'Acknowledged'))
          await this.ddm.sync({ userId: opts.userId });
        return session;
      }
      // The server's commands (profiles of megabytes), not a device body: the trusted limits.
      const cmd = parsePlistDict(res.body, TRUSTED_LIMITS);
      const answer = this.execute(cmd);
      session.push(answer.handled);
      this.handled.push(answer.handled);
      report = { ...answer.report, UDID: this.udid, ...(opts.userId ? { UserID: opts.userId } : {}) };
    }
    throw new Error('connect: too many commands in one session');
  }

  async report(report: PlistDict): Promise<SimResponse> {
    return this.put(this.opts.connectPath ?? '/mdm/connect', buildPlist(report), 'application/x-apple-aspen-mdm');
  }

  /** Execute one command like a device and return the report to send back. */
  execute(cmd: PlistDict): { report: PlistDict; handled: HandledCommand } {
    const uuid = String(cmd.CommandUUID);
    const command = (cmd.Command ?? {}) as PlistDict;
    const requestType = String(command.RequestType);
    const done = (status: HandledCommand['status'], extra: PlistDict = {}) => ({
      report: { Status: status, CommandUUID: uuid, ...extra },
      handled: { commandUUID: uuid, requestType, status },
    });
    if (this.notNow?.(requestType, uuid)) return done('NotNow');
    const failure = this.fail?.(requestType, command);
    if (failure) return done('Error', { ErrorChain: [{ ...failure, USEnglishDescription: failure.LocalizedDescription }] });
    switch (requestType) {
      case 'ProfileList':
        return done('Acknowledged', { ProfileList: [...this.profiles.values()] as unknown as PlistValue[] });
      case 'InstallProfile': {
        const installed = command.Payload instanceof Uint8Array ? this.installProfile(Buffer.from(command.Payload)) : undefined;
        if (!installed) return done('Error', { ErrorChain: [chain(1000, 'MCProfileErrorDomain', 'The profile could not be read')] });
        return done('Acknowledged');
      }
      case 'RemoveProfile': {
        const id = String(command.Identifier);
        if (!this.profiles.delete(id)) return done('Error', { ErrorChain: [chain(1001, 'MCProfileErrorDomain', `The profile "${id}" is not installed`)] });
        return done('Acknowledged');
      }
      case 'DeviceInformation': {
        const queries = Array.isArray(command.Queries) ? command.Queries.map(String) : Object.keys(this.facts);
        const f = this.facts;
        const responses: PlistDict = {};
        for (const q of queries) if (q in f) responses[q] = f[q]!;
        return done('Acknowledged', { QueryResponses: responses });
      }
      case 'SecurityInfo':
        return done('Acknowledged', {
          SecurityInfo: { PasscodePresent: true, PasscodeCompliant: true, FDE_Enabled: true, SystemIntegrityProtectionEnabled: true },
        });
      case 'CertificateList':
        return done('Acknowledged', { CertificateList: [] });
      case 'DeviceConfigured':
        // Apple: only meaningful while Setup Assistant waits for it; the device then carries on.
        if (!this.awaitingConfiguration) return done('Error', { ErrorChain: [chain(12022, 'MCMDMErrorDomain', 'The device is not awaiting configuration')] });
        this.awaitingConfiguration = false;
        this.configuredWith = [...this.profiles.keys()];
        return done('Acknowledged');
      case 'DeclarativeManagement':
        // The sync runs after the session, on the check-in endpoint (SimDdm).
        return done('Acknowledged');
      case 'InstalledApplicationList':
        return done('Acknowledged', {
          InstalledApplicationList: [{ Identifier: 'com.apple.Safari', Name: 'Safari', ShortVersion: '18.1', Version: '20619.2.8' }],
        });
      default:
        return done('Error', { ErrorChain: [chain(12021, 'MCMDMErrorDomain', `Unknown command "${requestType}"`)] });
    }
  }

  private headers(body: Buffer, contentType: string): Record<string, string> {
    const h: Record<string, string> = { 'content-type': contentType, 'content-length': String(body.length) };
    const s = this.opts.signing ?? { mode: 'signature' };
    if (s.mode === 'signature') {
      if (s.reuseSignature && !s.signedAttributes && this.lastSigned?.body.equals(body)) {
        h['mdm-signature'] = this.lastSigned.signature;
      } else {
        let signingTime: Date | undefined;
        if (s.signedAttributes) {
          // UTCTime has whole seconds: bump past the previous one so no two signatures repeat.
          const now = Math.floor(Date.now() / 1000) * 1000;
          this.lastSigningTime = Math.max(now, this.lastSigningTime + 1000);
          signingTime = new Date(this.lastSigningTime);
        }
        h['mdm-signature'] = signDetached(body, this.opts.identity, { digest: s.digest ?? 'sha1', signedAttributes: s.signedAttributes ?? false, signingTime });
        if (s.reuseSignature) this.lastSigned = { body, signature: h['mdm-signature'] };
      }
    } else if (s.format === 'rfc9440') {
      h[s.header.toLowerCase()] = `:${this.opts.identity.certDer.toString('base64')}:`;
    } else {
      const pem = `-----BEGIN CERTIFICATE-----\n${this.opts.identity.certDer.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE-----\n`;
      h[s.header.toLowerCase()] = encodeURIComponent(pem);
    }
    return h;
  }

  /**
   * A GET with MDM semantics, as a device fetches a legacy declaration's ProfileURL: its identity
   * as on a check-in (the signature over the empty body). Only from its own MDM server (Apple:
   * the URL "must be hosted by the MDM server").
   */
  async mdmGet(url: string): Promise<SimResponse> {
    const target = new URL(url);
    const server = new URL(this.opts.serverUrl);
    if (target.origin !== server.origin) throw new Error(`${url} is not hosted by the MDM server ${server.origin}`);
    const body = Buffer.alloc(0);
    const headers = this.headers(body, 'application/x-apple-aspen-mdm');
    delete headers['content-length'];
    return httpRequest('GET', target, body, headers, this.opts.agent ?? defaultAgent);
  }

  /** Install a profile's bytes as InstallProfile would; its identifier, or undefined when it cannot be read. */
  installProfile(bytes: Buffer): string | undefined {
    const parsed = parseProfile(new Uint8Array(bytes));
    if (parsed) this.profiles.set(parsed.PayloadIdentifier, parsed);
    return parsed?.PayloadIdentifier;
  }

  private put(path: string, body: Buffer, contentType: string): Promise<SimResponse> {
    return httpPut(new URL(path, this.opts.serverUrl), body, this.headers(body, contentType), this.opts.agent ?? defaultAgent);
  }
}

function chain(code: number, domain: string, text: string): PlistDict {
  return { ErrorCode: code, ErrorDomain: domain, LocalizedDescription: text, USEnglishDescription: text };
}

/**
 * Read a profile from InstallProfile's Payload. A signed profile is CMS SignedData with the XML
 * inside as one octet string; a simulator only needs that XML, so it is located by its markers
 * rather than by a full CMS parse.
 */
function parseProfile(payload: PlistValue | undefined): InstalledProfile | undefined {
  if (!(payload instanceof Uint8Array)) return undefined;
  let text = Buffer.from(payload).toString('latin1');
  const start = text.indexOf('<?xml');
  const end = text.lastIndexOf('</plist>');
  if (start < 0 || end < 0) return undefined;
  text = Buffer.from(payload)
    .subarray(start, end + 8)
    .toString('utf8');
  try {
    const p = parsePlistDict(text, TRUSTED_LIMITS);
    if (typeof p.PayloadIdentifier !== 'string' || typeof p.PayloadUUID !== 'string') return undefined;
    const content = Array.isArray(p.PayloadContent) ? (p.PayloadContent as PlistDict[]) : [];
    return {
      PayloadIdentifier: p.PayloadIdentifier,
      PayloadUUID: p.PayloadUUID,
      PayloadVersion: typeof p.PayloadVersion === 'number' ? p.PayloadVersion : 1,
      ...(typeof p.PayloadDisplayName === 'string' ? { PayloadDisplayName: p.PayloadDisplayName } : {}),
      PayloadContent: content.map((c) => ({
        PayloadIdentifier: String(c.PayloadIdentifier),
        PayloadType: String(c.PayloadType),
        PayloadUUID: String(c.PayloadUUID),
        PayloadVersion: typeof c.PayloadVersion === 'number' ? c.PayloadVersion : 1,
      })),
    };
  } catch {
    return undefined;
  }
}

/** One PUT as a device makes it: the whole body, the whole answer. */
export function httpPut(url: URL, body: Buffer, headers: Record<string, string>, agent: Agent | false): Promise<SimResponse> {
  return httpRequest('PUT', url, body, headers, agent);
}

function httpRequest(method: 'GET' | 'PUT', url: URL, body: Buffer, headers: Record<string, string>, agent: Agent | false): Promise<SimResponse> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}
