/**
 * The client certificate a TLS-terminating reverse proxy forwards in a request header.
 */
import { X509Certificate } from 'node:crypto';
import { IdentityError, malformedOnThrow } from './errors.js';

const MAX_HEADER = 64 * 1024;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const PEM = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/;

function fromBase64(text: string): Buffer {
  const compact = text.replace(/\s+/g, '');
  if (!BASE64.test(compact)) throw new IdentityError('malformed', 'client certificate header is not base64');
  return Buffer.from(compact, 'base64');
}

/**
 * DER of the certificate in a client-certificate header. Accepts:
 * - RFC 9440 `Client-Cert`: `:<base64 DER>:`
 * - nginx `$ssl_client_escaped_cert`: URL-escaped PEM
 * - PEM whose newlines were kept, or replaced by spaces or tabs (Apache, HAProxy, Traefik)
 * - bare base64 DER
 * Throws only IdentityError (`malformed`).
 */
export function parseClientCertHeader(value: string): Buffer {
  return malformedOnThrow('client certificate header', () => parseUnguarded(value));
}

function parseUnguarded(value: string): Buffer {
  let text = value.trim();
  if (text === '') throw new IdentityError('malformed', 'empty client certificate header');
  if (text.length > MAX_HEADER) throw new IdentityError('malformed', 'client certificate header too long');

  let der: Buffer;
  if (text.startsWith(':') && text.endsWith(':') && text.length > 2) {
    der = fromBase64(text.slice(1, -1));
  } else {
    if (text.includes('%')) {
      try {
        text = decodeURIComponent(text);
      } catch {
        throw new IdentityError('malformed', 'client certificate header has bad URL escaping');
      }
    }
    const pem = PEM.exec(text);
    der = fromBase64(pem ? pem[1]! : text);
  }

  // Parsing here makes garbage a 400 at the edge rather than a confusing trust failure later.
  try {
    new X509Certificate(der);
  } catch {
    throw new IdentityError('malformed', 'client certificate header is not an X.509 certificate');
  }
  return der;
}
