/**
 * A client of Apple's device enrollment service (the "DEP" API behind Apple Business Manager):
 * one OAuth-signed `GET /session`, then JSON calls with `X-ADM-Auth-Session`. A session that
 * ends (401, or 403 `FORBIDDEN`) is re-established once per call; what an admin must fix
 * (terms not accepted, a revoked token, a serial not assigned here) is a typed error naming it.
 */
import { Unavailable } from '../errors.js';
import { oauthHeader, type OAuthCredentials } from './oauth1.js';

export const DEP_URL = 'https://mdmenrollment.apple.com';
/** The protocol version Orchard speaks (Apple's header; 3 has cursors, op types and profile status). */
export const PROTOCOL_VERSION = '3';
const JSON_TYPE = 'application/json;charset=UTF8';

/** Why the service refused, in words an admin acts on. */
export type AbmReason =
  | 'terms_not_signed'
  | 'token_rejected'
  | 'access_denied'
  | 'cursor_expired'
  | 'cursor_invalid'
  | 'not_accessible'
  | 'bad_request'
  | 'unreachable'
  | 'bad_response';

const ADVICE: Record<AbmReason, string> = {
  terms_not_signed: 'the organisation has not accepted the latest Apple Business Manager terms: an administrator must sign in to ABM and accept them',
  token_rejected: 'the server token was rejected (expired, revoked or replaced): download a new token in ABM and run `orchard abm token import`',
  access_denied: 'this MDM server may not do that in ABM',
  cursor_expired: 'the sync cursor expired: a full fetch follows',
  cursor_invalid: 'the sync cursor is not valid: a full fetch follows',
  not_accessible: 'the serial number is not assigned to this MDM server in ABM',
  bad_request: 'the service refused the request',
  unreachable: 'the device enrollment service cannot be reached',
  bad_response: 'the device enrollment service answered something Orchard cannot read',
};

export class AbmServiceError extends Unavailable {
  constructor(
    readonly reason: AbmReason,
    readonly status?: number,
    detail?: string,
    options?: ErrorOptions,
  ) {
    super(`ABM: ${ADVICE[reason]}${detail ? ` (${detail})` : ''}`, options);
  }
}

/** Apple's `Device` object (fetch and sync). */
export interface AbmDevice {
  serial_number: string;
  model?: string;
  description?: string;
  color?: string;
  asset_tag?: string;
  os?: string;
  device_family?: string;
  profile_status?: 'empty' | 'assigned' | 'pushed' | 'removed';
  profile_uuid?: string;
  profile_assign_time?: string;
  profile_push_time?: string;
  device_assigned_date?: string;
  device_assigned_by?: string;
  /** Sync only. */
  op_type?: 'added' | 'modified' | 'deleted';
  op_date?: string;
}

export interface DevicePage {
  devices: AbmDevice[];
  cursor: string;
  more_to_follow: boolean;
  fetched_until?: string;
}

export interface AbmAccount {
  server_name: string;
  server_uuid: string;
  org_name: string;
  org_email?: string;
  org_phone?: string;
  org_address?: string;
  org_id?: string;
  org_type?: string;
  admin_id?: string;
  facilitator_id?: string;
}

/** Apple's enrollment profile (`POST /profile`); `kind: EnrollmentProfile` in git renders to it. */
export interface AbmProfile {
  profile_name: string;
  url: string;
  allow_pairing?: boolean;
  is_supervised?: boolean;
  is_multi_user?: boolean;
  is_mandatory?: boolean;
  await_device_configured?: boolean;
  is_mdm_removable?: boolean;
  support_phone_number?: string;
  support_email_address?: string;
  org_magic?: string;
  anchor_certs?: string[];
  supervising_host_certs?: string[];
  skip_setup_items?: string[];
  department?: string;
  language?: string;
  region?: string;
  devices?: string[];
}

/** Per serial: `SUCCESS`, `NOT_ACCESSIBLE` (not assigned to this server) or `FAILED`. */
export type AssignResult = Record<string, 'SUCCESS' | 'NOT_ACCESSIBLE' | 'FAILED'>;

export interface DepClientOptions {
  credentials: OAuthCredentials;
  baseUrl?: string;
  /** User-Agent Apple sees. */
  userAgent?: string;
  fetch?: typeof fetch;
  timeoutMs?: number;
}

export class DepClient {
  private session?: string;
  private readonly base: string;
  private readonly fetchImpl: typeof fetch;

  constructor(private readonly opts: DepClientOptions) {
    this.base = (opts.baseUrl ?? DEP_URL).replace(/\/+$/, '');
    this.fetchImpl = opts.fetch ?? fetch;
  }

  account(): Promise<AbmAccount> {
    return this.call<AbmAccount>('GET', '/account');
  }

  /** One page of every device assigned to this server; `cursor` from the previous page. */
  fetchDevices(cursor?: string, limit = 1000): Promise<DevicePage> {
    return this.call<DevicePage>('POST', '/server/devices', cursor ? { cursor, limit } : { limit });
  }

  /** Changes since `cursor` (added, modified, deleted). */
  syncDevices(cursor: string, limit = 1000): Promise<DevicePage> {
    return this.call<DevicePage>('POST', '/devices/sync', { cursor, limit });
  }

  async defineProfile(profile: AbmProfile): Promise<{ profile_uuid: string; devices?: AssignResult }> {
    return this.call('POST', '/profile', profile);
  }

  async assignProfile(profileUuid: string, serials: string[]): Promise<AssignResult> {
    const r = await this.call<{ profile_uuid: string; devices: AssignResult }>('PUT', '/profile/devices', { profile_uuid: profileUuid, devices: serials });
    return r.devices ?? {};
  }

  async removeProfile(serials: string[]): Promise<AssignResult> {
    const r = await this.call<{ devices: AssignResult }>('DELETE', '/profile/devices', { devices: serials });
    return r.devices ?? {};
  }

  private async authenticate(): Promise<string> {
    const url = `${this.base}/session`;
    const res = await this.send(url, { method: 'GET', headers: { Authorization: oauthHeader('GET', url, this.opts.credentials) } });
    const text = await res.text();
    if (res.status === 401) throw new AbmServiceError('token_rejected', 401);
    if (!res.ok) throw refusal(res.status, text);
    const token = (safeJson(text) as { auth_session_token?: unknown } | undefined)?.auth_session_token;
    if (typeof token !== 'string' || token === '') throw new AbmServiceError('bad_response', res.status, 'no auth_session_token');
    this.session = token;
    return token;
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const session = this.session ?? (await this.authenticate());
      const res = await this.send(`${this.base}${path}`, {
        method,
        headers: { 'X-ADM-Auth-Session': session, ...(body === undefined ? {} : { 'Content-Type': JSON_TYPE }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      // Apple may hand out a fresh session token on any answer.
      const renewed = res.headers.get('x-adm-auth-session');
      if (renewed) this.session = renewed;
      const text = await res.text();
      const sessionOver = res.status === 401 || (res.status === 403 && text.trim().replace(/"/g, '') === 'FORBIDDEN');
      if (sessionOver && attempt === 0) {
        this.session = undefined;
        continue;
      }
      if (!res.ok) throw refusal(res.status, text);
      const parsed = safeJson(text);
      if (parsed === undefined || typeof parsed !== 'object') throw new AbmServiceError('bad_response', res.status, `${method} ${path}`);
      return parsed as T;
    }
  }

  private async send(url: string, init: { method: string; headers: Record<string, string>; body?: string }): Promise<Response> {
    try {
      return await this.fetchImpl(url, {
        ...init,
        headers: {
          ...init.headers,
          'X-Server-Protocol-Version': PROTOCOL_VERSION,
          'User-Agent': this.opts.userAgent ?? 'orchard/0.1',
          Accept: 'application/json',
        },
        signal: AbortSignal.timeout(this.opts.timeoutMs ?? 60_000),
      });
    } catch (cause) {
      throw new AbmServiceError('unreachable', undefined, new URL(url).host, { cause });
    }
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Apple answers refusals with a bare code (`T_C_NOT_SIGNED`, `EXPIRED_CURSOR`, ...), sometimes quoted or in JSON. */
function refusal(status: number, text: string): AbmServiceError {
  const code = text.trim().replace(/^"|"$/g, '').slice(0, 64);
  if (code === 'T_C_NOT_SIGNED') return new AbmServiceError('terms_not_signed', status);
  if (code === 'EXPIRED_CURSOR') return new AbmServiceError('cursor_expired', status);
  if (code === 'INVALID_CURSOR' || code === 'CURSOR_REQUIRED') return new AbmServiceError('cursor_invalid', status);
  if (code === 'ACCESS_DENIED' || status === 403) return new AbmServiceError('access_denied', status, /^[A-Z_]+$/.test(code) ? code : undefined);
  if (status === 401) return new AbmServiceError('token_rejected', status);
  return new AbmServiceError(status >= 500 ? 'unreachable' : 'bad_request', status, /^[A-Z_]+$/.test(code) ? code : `HTTP ${status}`);
}
