/**
 * The server token ABM hands out (`*_Token_*.p7m`): an S/MIME message encrypted to the MDM
 * server's public key certificate (`orchard abm keypair`). Decrypted, it is a small MIME entity
 * whose text holds a JSON object between `-----BEGIN MESSAGE-----` and `-----END MESSAGE-----`.
 */
import { Malformed } from '../errors.js';
import type { OAuthCredentials } from './oauth1.js';

export interface ServerToken extends OAuthCredentials {
  /** When the access token stops working (ABM says it; renew the token in ABM before then). */
  accessTokenExpiry: Date;
}

interface RawToken {
  consumer_key?: unknown;
  consumer_secret?: unknown;
  access_token?: unknown;
  access_secret?: unknown;
  access_token_expiry?: unknown;
}

/** Reads the decrypted content of a server token. Never quotes the input: it holds secrets. */
export function parseServerToken(decrypted: string): ServerToken {
  const m = /-----BEGIN MESSAGE-----\r?\n([\s\S]*?)\r?\n-----END MESSAGE-----/.exec(decrypted);
  const json = m?.[1];
  if (json === undefined) throw new Malformed('server token: no "-----BEGIN MESSAGE-----" block in the decrypted token');
  let raw: RawToken;
  try {
    raw = JSON.parse(json) as RawToken;
  } catch (cause) {
    throw new Malformed('server token: the message is not JSON', { cause });
  }
  const str = (k: keyof RawToken): string => {
    const v = raw[k];
    if (typeof v !== 'string' || v === '') throw new Malformed(`server token: "${k}" is missing or not a string`);
    return v;
  };
  const expiry = new Date(str('access_token_expiry').replace(' ', 'T'));
  if (Number.isNaN(expiry.getTime())) throw new Malformed('server token: "access_token_expiry" is not a date');
  return {
    consumerKey: str('consumer_key'),
    consumerSecret: str('consumer_secret'),
    accessToken: str('access_token'),
    accessSecret: str('access_secret'),
    accessTokenExpiry: expiry,
  };
}

/** The text ABM encrypts (the stand-in and tests build tokens with it). */
export function serverTokenText(t: ServerToken): string {
  const body = JSON.stringify({
    consumer_key: t.consumerKey,
    consumer_secret: t.consumerSecret,
    access_token: t.accessToken,
    access_secret: t.accessSecret,
    access_token_expiry: t.accessTokenExpiry.toISOString().replace(/\.\d{3}Z$/, 'Z'),
  });
  return `Content-Type: text/plain;charset=UTF-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n-----BEGIN MESSAGE-----\n${body}\n-----END MESSAGE-----\n`;
}

/** Days until the token expires (negative once expired): warned from 30 days ahead. */
export function daysLeft(t: Pick<ServerToken, 'accessTokenExpiry'>, now = new Date()): number {
  return Math.floor((t.accessTokenExpiry.getTime() - now.getTime()) / 86_400_000);
}

export const EXPIRY_WARNING_DAYS = 30;
