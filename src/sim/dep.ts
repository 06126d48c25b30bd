/**
 * A local stand-in of Apple's device enrollment service (tests, benchmarks), written to Apple's documented wire
 * format: OAuth 1.0a (HMAC-SHA1) on `GET /session` checked as Apple checks it, a session token in
 * `X-ADM-Auth-Session` that expires (401), `X-Server-Protocol-Version` required, JSON bodies with
 * Apple's content type, device fetch and sync with cursors and `more_to_follow`, expired cursors,
 * and profile definition and assignment. It can refuse as Apple documents ("Interpreting Automated
 * Device Enrollment error codes"): 403 `T_C_NOT_SIGNED` (terms not accepted, on `/session` too),
 * 401 for a token that expired or was revoked, and `NOT_ACCESSIBLE` or `FAILED` per serial when
 * a profile is assigned. It also answers the device's side: Setup Assistant asking for its serial's
 * enrollment profile (the cloud configuration), which the simulator enrolls through.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { hmacSha1Signature, parseOAuthHeader, signatureBaseString, type OAuthCredentials } from '../abm/oauth1.js';
import type { AbmDevice, AbmProfile } from '../abm/client.js';
import { buildPlist, parsePlistDict, type PlistDict } from '../protocol/plist.js';

/** Where the stand-in answers Setup Assistant's request for a serial's cloud configuration (Apple: iprofiles.apple.com/macProfile). */
export const CLOUD_CONFIG_PATH = '/macProfile';

interface Change {
  seq: number;
  device: AbmDevice;
}

export interface StandinOptions {
  credentials: OAuthCredentials;
  serverName?: string;
  orgName?: string;
  /** Sessions end after this many calls (tests of re-authentication). */
  sessionCalls?: number;
  tokenExpiry?: Date;
}

export class DepStandin {
  readonly devices = new Map<string, AbmDevice>();
  readonly profiles = new Map<string, AbmProfile>();
  readonly requests: { method: string; path: string; status: number }[] = [];
  termsSigned = true;
  /** The server token's `access_token_expiry`: from then on sessions end and `/session` answers 401, as Apple does. */
  tokenExpiry?: Date;
  /** The token was revoked or replaced in ABM: sessions end, and `/session` answers 401. */
  revoked = false;
  /** Serials ABM lists for this server but answers NOT_ACCESSIBLE for when assigned (moved to another server meanwhile). */
  readonly inaccessible = new Set<string>();
  /** Serials whose assignment ABM answers FAILED. */
  readonly failing = new Set<string>();
  /** Cursors carry the epoch they were issued in; an older epoch is answered EXPIRED_CURSOR. */
  private epoch = 0;
  private readonly changes: Change[] = [];
  private seq = 0;
  private readonly sessions = new Map<string, number>();
  private readonly nonces = new Set<string>();
  private server?: Server;
  url = '';

  constructor(private readonly opts: StandinOptions) {
    this.tokenExpiry = opts.tokenExpiry;
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    const { port } = this.server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${port}`;
    return this;
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  /** ABM-side changes: a device assigned to this server, changed, or released. */
  add(d: AbmDevice): void {
    this.devices.set(d.serial_number, { profile_status: 'empty', ...d });
    this.log({ ...this.devices.get(d.serial_number)!, op_type: 'added' });
  }
  modify(serial: string, patch: Partial<AbmDevice>): void {
    const d = this.devices.get(serial);
    if (!d) throw new Error(`no device ${serial}`);
    Object.assign(d, patch);
    this.log({ ...d, op_type: 'modified' });
  }
  remove(serial: string): void {
    const d = this.devices.get(serial);
    if (!d) throw new Error(`no device ${serial}`);
    this.devices.delete(serial);
    this.log({ ...d, op_type: 'deleted' });
  }
  /** Ends every session (Apple's sessions expire after a few minutes). */
  expireSessions(): void {
    this.sessions.clear();
  }
  /** Makes every cursor issued so far expired. */
  expireCursors(): void {
    this.epoch++;
  }

  private log(device: AbmDevice): void {
    this.changes.push({ seq: ++this.seq, device: { ...device, op_date: new Date().toISOString() } });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const send = (status: number, payload: unknown, headers: Record<string, string> = {}) => {
      this.requests.push({ method: req.method ?? '', path, status });
      const text = typeof payload === 'string' ? payload : JSON.stringify(payload);
      res.writeHead(status, { 'Content-Type': 'application/json;charset=UTF8', ...headers });
      res.end(text);
    };
    // The device's side (Setup Assistant), not the MDM server's: no session, no protocol version.
    if (req.method === 'POST' && path === CLOUD_CONFIG_PATH) return this.cloudConfiguration(body, res);
    if (req.headers['x-server-protocol-version'] === undefined) return send(400, 'MISSING_PROTOCOL_VERSION');
    if (path === '/session') return this.session(req, send);
    const token = req.headers['x-adm-auth-session'];
    const left = typeof token === 'string' ? this.sessions.get(token) : undefined;
    if (left === undefined || left <= 0 || this.revoked || this.tokenExpired()) return send(401, 'UNAUTHORIZED');
    this.sessions.set(token as string, left - 1);
    if (!this.termsSigned) return send(403, 'T_C_NOT_SIGNED');
    let json: Record<string, unknown> = {};
    if (req.method === 'POST' || req.method === 'PUT' || req.method === 'DELETE') {
      if (!String(req.headers['content-type'] ?? '').startsWith('application/json')) return send(400, 'INVALID_CONTENT_TYPE');
      try {
        json = JSON.parse(body) as Record<string, unknown>;
      } catch {
        return send(400, 'MALFORMED_REQUEST_BODY');
      }
    }
    const route = `${req.method} ${path}`;
    if (route === 'GET /account') {
      return send(200, {
        server_name: this.opts.serverName ?? 'Orchard Test',
        server_uuid: 'A1B2C3D4-0000-0000-0000-000000000001',
        org_name: this.opts.orgName ?? 'Example Org',
        org_email: 'it@example.com',
        admin_id: 'admin@example.com',
      });
    }
    if (route === 'POST /server/devices') return this.fetchPage(json, send);
    if (route === 'POST /devices/sync') return this.syncPage(json, send);
    if (route === 'POST /profile') {
      const p = json as unknown as AbmProfile;
      const refused = profileRefusal(json);
      if (refused) return send(400, refused);
      const uuid = randomUUID().replace(/-/g, '').toUpperCase();
      this.profiles.set(uuid, p);
      return send(200, { profile_uuid: uuid, devices: this.assign(uuid, p.devices ?? []) });
    }
    if (route === 'PUT /profile/devices' || route === 'POST /profile/devices') {
      const uuid = json.profile_uuid;
      if (typeof uuid !== 'string' || !this.profiles.has(uuid)) return send(400, 'PROFILE_NOT_FOUND');
      return send(200, { profile_uuid: uuid, devices: this.assign(uuid, (json.devices as string[] | undefined) ?? []) });
    }
    if (route === 'DELETE /profile/devices') {
      const out: Record<string, string> = {};
      for (const s of (json.devices as string[] | undefined) ?? []) {
        const d = this.devices.get(s);
        if (!d) out[s] = 'NOT_ACCESSIBLE';
        else {
          this.modify(s, { profile_status: 'removed', profile_uuid: undefined });
          out[s] = 'SUCCESS';
        }
      }
      return send(200, { devices: out });
    }
    return send(404, 'NOT_FOUND');
  }

  /**
   * What Setup Assistant asks Apple's activation service (iprofiles.apple.com/macProfile) for: the
   * cloud configuration of a serial, i.e. the enrollment profile assigned to it, under the keys
   * `profiles show -type enrollment` prints. Apple's request is obfuscated and its answer signed;
   * here both are plain plists. A serial without a profile gets a configuration without
   * ConfigurationURL (the device then sets up unmanaged).
   */
  private cloudConfiguration(body: string, res: ServerResponse): void {
    const answer = (status: number, dict: PlistDict) => {
      this.requests.push({ method: 'POST', path: CLOUD_CONFIG_PATH, status });
      res.writeHead(status, { 'Content-Type': 'application/x-plist' });
      res.end(buildPlist(dict));
    };
    let serial: unknown;
    try {
      const req = parsePlistDict(Buffer.from(body, 'utf8'));
      if (req.action !== 'RequestProfileConfiguration') return answer(400, { Error: 'unknown action' });
      serial = req.sn;
    } catch {
      return answer(400, { Error: 'request is not a plist' });
    }
    const d = typeof serial === 'string' ? this.devices.get(serial) : undefined;
    const p = d?.profile_uuid && d.profile_status !== 'removed' ? this.profiles.get(d.profile_uuid) : undefined;
    if (!p) return answer(200, { IsMandatory: false, IsSupervised: false });
    const config: PlistDict = {
      ConfigurationURL: p.url,
      AwaitDeviceConfigured: p.await_device_configured ?? false,
      IsSupervised: p.is_supervised ?? false,
      IsMandatory: p.is_mandatory ?? false,
      IsMDMUnremovable: !(p.is_mdm_removable ?? true),
      AllowPairing: p.allow_pairing ?? true,
      SkipSetup: p.skip_setup_items ?? [],
      OrganizationName: this.opts.orgName ?? 'Example Org',
      AnchorCertificates: (p.anchor_certs ?? []).map((c) => new Uint8Array(Buffer.from(c, 'base64'))),
      SupervisorHostCertificates: (p.supervising_host_certs ?? []).map((c) => new Uint8Array(Buffer.from(c, 'base64'))),
    };
    if (p.department !== undefined) config.OrganizationDepartment = p.department;
    if (p.support_phone_number !== undefined) config.OrganizationSupportPhone = p.support_phone_number;
    if (p.support_email_address !== undefined) config.OrganizationSupportEmail = p.support_email_address;
    if (p.org_magic !== undefined) config.OrganizationMagic = p.org_magic;
    answer(200, config);
  }

  private session(req: IncomingMessage, send: (s: number, p: unknown) => void): void {
    const fields = parseOAuthHeader(req.headers.authorization);
    if (!fields) return send(400, 'Missing or duplicated OAuth parameters');
    const need = ['oauth_consumer_key', 'oauth_token', 'oauth_signature_method', 'oauth_signature', 'oauth_timestamp', 'oauth_nonce'];
    if (need.some((k) => fields[k] === undefined)) return send(400, 'Missing required authorization parameter');
    if (fields.oauth_signature_method !== 'HMAC-SHA1') return send(400, 'Unsupported signature method');
    const c = this.opts.credentials;
    if (fields.oauth_consumer_key !== c.consumerKey) return send(401, 'Unauthorized: invalid consumer key');
    if (fields.oauth_token !== c.accessToken) return send(401, 'Unauthorized: invalid or expired token');
    if (Math.abs(Date.now() / 1000 - Number(fields.oauth_timestamp)) > 300) return send(401, 'Unauthorized: timestamp');
    if (this.nonces.has(fields.oauth_nonce!)) return send(401, 'Unauthorized: nonce already used');
    if (this.revoked || this.tokenExpired()) return send(401, 'Unauthorized: invalid or expired token');
    const params = Object.fromEntries(Object.entries(fields).filter(([k]) => k.startsWith('oauth_') && k !== 'oauth_signature'));
    const expected = hmacSha1Signature(signatureBaseString('GET', `${this.url}/session`, params), c.consumerSecret, c.accessSecret);
    if (expected !== fields.oauth_signature) return send(401, 'Unauthorized: invalid signature');
    this.nonces.add(fields.oauth_nonce!);
    if (!this.termsSigned) return send(403, 'T_C_NOT_SIGNED');
    const token = `${randomUUID()}`;
    this.sessions.set(token, this.opts.sessionCalls ?? 1_000_000);
    send(200, { auth_session_token: token });
  }

  private tokenExpired(): boolean {
    return this.tokenExpiry !== undefined && Date.now() >= this.tokenExpiry.getTime();
  }

  private assign(uuid: string, serials: string[]): Record<string, string> {
    const out: Record<string, string> = {};
    for (const s of serials) {
      if (!this.devices.has(s) || this.inaccessible.has(s)) out[s] = 'NOT_ACCESSIBLE';
      else if (this.failing.has(s)) out[s] = 'FAILED';
      else {
        this.modify(s, { profile_uuid: uuid, profile_status: 'assigned', profile_assign_time: new Date().toISOString() });
        out[s] = 'SUCCESS';
      }
    }
    return out;
  }

  // Cursors: "f:<epoch>:<offset>:<seq>" while fetching (offset into the serial-sorted list), "s:<epoch>:<seq>" once synced.
  private fetchPage(json: Record<string, unknown>, send: (s: number, p: unknown) => void): void {
    const limit = Math.min(Math.max(Number(json.limit ?? 100), 1), 1000);
    let offset = 0;
    let at = this.seq;
    if (typeof json.cursor === 'string') {
      const m = /^f:(\d+):(\d+):(\d+)$/.exec(json.cursor);
      if (!m) return send(400, 'INVALID_CURSOR');
      if (Number(m[1]) !== this.epoch) return send(400, 'EXPIRED_CURSOR');
      offset = Number(m[2]);
      at = Number(m[3]);
    }
    const all = [...this.devices.values()].sort((a, b) => (a.serial_number < b.serial_number ? -1 : 1));
    const devices = all.slice(offset, offset + limit);
    const more = offset + limit < all.length;
    send(200, {
      devices,
      cursor: more ? `f:${this.epoch}:${offset + limit}:${at}` : `s:${this.epoch}:${at}`,
      more_to_follow: more,
      fetched_until: new Date().toISOString(),
    });
  }

  private syncPage(json: Record<string, unknown>, send: (s: number, p: unknown) => void): void {
    if (typeof json.cursor !== 'string') return send(400, 'CURSOR_REQUIRED');
    const m = /^s:(\d+):(\d+)$/.exec(json.cursor);
    if (!m) return send(400, 'INVALID_CURSOR');
    if (Number(m[1]) !== this.epoch) return send(400, 'EXPIRED_CURSOR');
    const from = Number(m[2]);
    const limit = Math.min(Math.max(Number(json.limit ?? 100), 1), 1000);
    const page = this.changes.filter((c) => c.seq > from).slice(0, limit);
    const last = page.at(-1)?.seq ?? from;
    send(200, { devices: page.map((c) => c.device), cursor: `s:${this.epoch}:${last}`, more_to_follow: this.changes.some((c) => c.seq > last) });
  }
}

const PROFILE_FLAGS = ['allow_pairing', 'is_supervised', 'is_multi_user', 'is_mandatory', 'await_device_configured', 'is_mdm_removable'];
const PROFILE_STRINGS = ['support_phone_number', 'support_email_address', 'org_magic', 'department', 'language', 'region'];

/** What Apple's define-profile checks answer (its documented 400 codes), or undefined when the profile is acceptable. */
function profileRefusal(p: Record<string, unknown>): string | undefined {
  if (typeof p.profile_name !== 'string' || p.profile_name === '') return 'CONFIG_NAME_REQUIRED';
  if (typeof p.url !== 'string' || !/^https?:\/\/[^\s/]+/.test(p.url)) return 'URL_INVALID';
  if (PROFILE_FLAGS.some((k) => p[k] !== undefined && typeof p[k] !== 'boolean')) return 'FLAG_INVALID';
  if (PROFILE_STRINGS.some((k) => p[k] !== undefined && typeof p[k] !== 'string')) return 'MALFORMED_REQUEST_BODY';
  if (typeof p.support_email_address === 'string' && !/^[^@\s]+@[^@\s]+$/.test(p.support_email_address)) return 'EMAIL_INVALID';
  for (const k of ['anchor_certs', 'supervising_host_certs']) {
    const v = p[k];
    if (v === undefined) continue;
    if (!Array.isArray(v) || v.some((c) => typeof c !== 'string' || Buffer.from(c, 'base64')[0] !== 0x30)) return 'CERTIFICATE_INVALID';
  }
  const skip = p.skip_setup_items;
  if (skip !== undefined && (!Array.isArray(skip) || skip.some((x) => typeof x !== 'string'))) return 'MALFORMED_REQUEST_BODY';
  return undefined;
}
