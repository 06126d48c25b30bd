/**
 * OAuth 1.0a request signing (RFC 5849, HMAC-SHA1) as Apple's device enrollment service wants it
 * for `GET /session`: the only OAuth-signed call; every later call carries the session token.
 */
import { createHmac, randomBytes } from 'node:crypto';

export interface OAuthCredentials {
  consumerKey: string;
  consumerSecret: string;
  accessToken: string;
  accessSecret: string;
}

/** RFC 5849 section 3.6: everything but unreserved characters, upper-case hex. */
export function percentEncode(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * The signature base string of section 3.4.1: method, base URI (no query, default port dropped),
 * and the sorted, encoded parameters of the query and the oauth_* set.
 */
export function signatureBaseString(method: string, url: string, params: Record<string, string>): string {
  const u = new URL(url);
  const all: [string, string][] = [...u.searchParams.entries(), ...Object.entries(params)].map(([k, v]) => [percentEncode(k), percentEncode(v)]);
  all.sort(([ak, av], [bk, bv]) => (ak < bk ? -1 : ak > bk ? 1 : av < bv ? -1 : av > bv ? 1 : 0));
  const base = `${u.protocol}//${u.host}${u.pathname}`;
  return [method.toUpperCase(), percentEncode(base), percentEncode(all.map(([k, v]) => `${k}=${v}`).join('&'))].join('&');
}

export function hmacSha1Signature(baseString: string, consumerSecret: string, tokenSecret: string): string {
  return createHmac('sha1', `${percentEncode(consumerSecret)}&${percentEncode(tokenSecret)}`)
    .update(baseString)
    .digest('base64');
}

export interface SignOptions {
  /** Seconds since the epoch (tests fix it). */
  timestamp?: number;
  nonce?: string;
  realm?: string;
}

/** The `Authorization` header value for one request. */
export function oauthHeader(method: string, url: string, creds: OAuthCredentials, opts: SignOptions = {}): string {
  const params: Record<string, string> = {
    oauth_consumer_key: creds.consumerKey,
    oauth_token: creds.accessToken,
    oauth_signature_method: 'HMAC-SHA1',
    oauth_timestamp: String(opts.timestamp ?? Math.floor(Date.now() / 1000)),
    oauth_nonce: opts.nonce ?? randomBytes(16).toString('hex'),
    oauth_version: '1.0',
  };
  const signature = hmacSha1Signature(signatureBaseString(method, url, params), creds.consumerSecret, creds.accessSecret);
  const fields = { ...params, oauth_signature: signature };
  const parts = Object.entries(fields).map(([k, v]) => `${k}="${percentEncode(v)}"`);
  return `OAuth realm="${opts.realm ?? 'ADM'}", ${parts.join(', ')}`;
}

/** Parses an `Authorization: OAuth ...` header into its (decoded) fields; undefined when it is not one. */
export function parseOAuthHeader(header: string | undefined): Record<string, string> | undefined {
  if (!header?.startsWith('OAuth ')) return undefined;
  const out: Record<string, string> = {};
  const re = /([A-Za-z_]+)="([^"]*)"/g;
  for (let m = re.exec(header); m; m = re.exec(header)) {
    const [, k, v] = m;
    if (k === undefined || v === undefined) continue;
    if (k in out) return undefined; // a duplicated protocol parameter is a 400 at Apple
    try {
      out[k] = decodeURIComponent(v);
    } catch {
      return undefined;
    }
  }
  return out;
}
