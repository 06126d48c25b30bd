/**
 * The device endpoints, as a chain of small middleware: read the exact body bytes, prove who is
 * speaking (Mdm-Signature or a proxy's client-certificate header), parse the plist, then hand a
 * typed message to the MDM service.
 */
import type { Middleware } from 'koa';
import getRawBody from 'raw-body';
import { parseClientCertHeader } from '../identity/cert-header.js';
import { verifyDetachedSignature } from '../identity/cms.js';
import { IdentityError } from '../identity/errors.js';
import type { TrustStore } from '../identity/trust.js';
import type { MdmService } from '../mdm/service.js';
import { ProtocolError } from '../protocol/errors.js';
import { decodeCheckin, decodeReport, messageKind } from '../protocol/messages.js';
import { parsePlistDict } from '../protocol/plist.js';
import type { DeviceState } from './context.js';

const DEVICE_TYPES = new Set([
  'application/x-apple-aspen-mdm-checkin',
  'application/x-apple-aspen-mdm',
  // Accepted for hand-made requests (curl, tests of proxies); devices send the two above.
  'application/x-plist',
  'application/xml',
  'text/xml',
]);

/** Read the body exactly as sent (the signature covers these bytes), within a size limit. */
export function readBody(limit: number): Middleware<DeviceState> {
  return async (ctx, next) => {
    const type = (ctx.get('content-type').split(';')[0] ?? '').trim().toLowerCase();
    if (!DEVICE_TYPES.has(type)) throw new ProtocolError(415, `content type "${type.slice(0, 80)}" is not an MDM plist`);
    try {
      ctx.state.body = await getRawBody(ctx.req, { limit, length: ctx.get('content-length') || undefined });
    } catch (err) {
      const e = err as { type?: string; message?: string };
      if (e.type === 'entity.too.large') throw new ProtocolError(413, `body over the ${limit}-byte limit`);
      throw new ProtocolError(400, `could not read body: ${e.message ?? String(err)}`);
    }
    await next();
  };
}

export interface IdentityOptions {
  trust: TrustStore;
  /** Take the client certificate from this header (set by a TLS-terminating proxy) instead of Mdm-Signature. */
  certHeader?: string;
}

/** Establish which certificate speaks, and that it chains to a CA we trust. */
export function deviceIdentity(opts: IdentityOptions): Middleware<DeviceState> {
  const header = opts.certHeader?.toLowerCase();
  return async (ctx, next) => {
    let cert: Buffer;
    let chain: Buffer[] | undefined;
    if (header) {
      const value = ctx.get(header);
      if (!value) throw new IdentityError('identity', `no client certificate in header ${header}`);
      cert = parseClientCertHeader(value);
    } else {
      const sig = ctx.get('mdm-signature');
      if (!sig) throw new IdentityError('identity', 'no Mdm-Signature header');
      const verified = verifyDetachedSignature(sig, ctx.state.body!);
      cert = verified.signerCert;
      chain = verified.certificates;
    }
    ctx.state.identity = opts.trust.check(cert, chain);
    await next();
  };
}

/** Both URLs take both kinds of message: many enrollment profiles use one URL for both. */
export function mdmHandler(service: MdmService): Middleware<DeviceState> {
  return async (ctx) => {
    const body = ctx.state.body!;
    const dict = parsePlistDict(body);
    const identity = ctx.state.identity!;
    if (messageKind(dict) === 'checkin') {
      const msg = decodeCheckin(dict);
      ctx.state.log.device = msg.deviceId;
      ctx.state.log.enrollment = msg.enrollmentId;
      ctx.state.log.outcome = msg.MessageType;
      const reply = await service.checkin(msg, identity);
      answer(ctx, reply.status, reply.body);
      return;
    }
    const rep = decodeReport(dict);
    ctx.state.log.device = rep.deviceId;
    ctx.state.log.enrollment = rep.enrollmentId;
    const reply = await service.report(rep, body, identity);
    ctx.state.log.outcome = reply.outcome;
    answer(ctx, 200, reply.body);
  };
}

/** A plist body, or an empty one (which ends the device's command session). */
function answer(ctx: { status: number; type: string; body: unknown }, status: number, body: Buffer | undefined): void {
  ctx.status = status;
  if (body) {
    ctx.type = 'application/xml';
    ctx.body = body;
  } else {
    ctx.body = '';
  }
}
