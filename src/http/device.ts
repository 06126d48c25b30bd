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
import { ReplayGuard } from '../mdm/replay.js';
import type { MdmService } from '../mdm/service.js';
import { ProtocolError } from '../protocol/errors.js';
import { decodeCheckin, decodeReport, messageKind } from '../protocol/messages.js';
import { parsePlistDict } from '../protocol/plist.js';
import type { DeviceState } from './context.js';

/**
 * Devices send application/x-apple-aspen-mdm(-checkin), some clients nothing at all, and NanoMDM
 * never looks: refused are only the types of another kind of request (an API client's JSON, a
 * browser form, curl's --data default), which get a clear 415 instead of "malformed plist".
 */
const NOT_A_PLIST = /^(?:application\/(?:[\w.+-]+\+)?json|multipart\/[\w.+-]+|application\/x-www-form-urlencoded)$/;

export interface BodyOptions {
  limit: number;
  /** The body must have arrived this long after the headers. */
  timeoutMs: number;
}

/** Read the body exactly as sent (the signature covers these bytes), within a size limit and a deadline. */
export function readBody(opts: BodyOptions): Middleware<DeviceState> {
  return async (ctx, next) => {
    const type = (ctx.get('content-type').split(';')[0] ?? '').trim().toLowerCase();
    if (NOT_A_PLIST.test(type)) {
      ctx.set('Connection', 'close'); // the body stays unread
      throw new ProtocolError(
        415,
        `content type "${type.slice(0, 80)}" is not an MDM plist (send application/x-apple-aspen-mdm-checkin or application/x-apple-aspen-mdm)`,
      );
    }
    const reading = getRawBody(ctx.req, { limit: opts.limit, length: ctx.get('content-length') || undefined });
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new ProtocolError(408, `body not complete within ${opts.timeoutMs} ms`)), opts.timeoutMs);
    });
    try {
      ctx.state.body = await Promise.race([reading, deadline]);
    } catch (err) {
      // The rest of an unread body is not worth waiting for: answer, then close the connection.
      ctx.set('Connection', 'close');
      if (err instanceof ProtocolError) {
        reading.catch(() => undefined); // settles when the connection closes
        throw err;
      }
      const e = err as { type?: string; message?: string };
      if (e.type === 'entity.too.large') throw new ProtocolError(413, `body over the ${opts.limit}-byte limit`);
      if (e.type === 'request.aborted') throw new ProtocolError(400, 'the client closed the connection before the body was complete');
      throw new ProtocolError(400, `could not read body: ${e.message ?? String(err)}`);
    } finally {
      clearTimeout(timer);
    }
    await next();
  };
}

/** Device bodies from this size on wait their turn (see largeBodiesInTurn); Idles and answers are a few KB. */
export const LARGE_BODY_BYTES = 64 * 1024;

/**
 * Large bodies (a Mac's InstalledApplicationList is ~1 MB) are verified, parsed and recorded one
 * at a time, each starting in a new event-loop turn once the previous one is done (recorded
 * included). One costs tens of ms of synchronous work; several arriving together would otherwise
 * run back to back in one chain of microtasks and hold every other request up for their sum
 * (issue 18: no request blocks others more than 100 ms). Smaller bodies pass straight through.
 */
export function largeBodiesInTurn(minBytes = LARGE_BODY_BYTES): Middleware<DeviceState> {
  let last: Promise<void> = Promise.resolve();
  return async (ctx, next) => {
    if (ctx.state.body!.length < minBytes) return next();
    const previous = last;
    let done!: () => void;
    last = new Promise<void>((resolve) => (done = resolve));
    try {
      await previous;
      await new Promise<void>((resolve) => setImmediate(resolve));
      await next();
    } finally {
      done();
    }
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

/** Check-in messages whose repeat would do something again (see ReplayGuard). */
const STATE_CHANGING = new Set(['Authenticate', 'TokenUpdate', 'CheckOut', 'SetBootstrapToken']);

/** Both URLs take both kinds of message: many enrollment profiles use one URL for both. */
export function mdmHandler(service: MdmService, replay?: ReplayGuard): Middleware<DeviceState> {
  return async (ctx) => {
    const body = ctx.state.body!;
    const dict = parsePlistDict(body);
    const identity = ctx.state.identity!;
    if (messageKind(dict) === 'checkin') {
      const msg = decodeCheckin(dict);
      ctx.state.log.device = msg.deviceId;
      ctx.state.log.enrollment = msg.enrollmentId;
      ctx.state.log.outcome = msg.MessageType;
      if (!replay || !STATE_CHANGING.has(msg.MessageType)) {
        if (msg.MessageType === 'DeclarativeManagement') ctx.state.log.outcome = `DeclarativeManagement ${msg.Endpoint.slice(0, 100)}`;
        const reply = await service.checkin(msg, identity);
        answer(ctx, reply.status, reply.body, reply.type);
        return;
      }
      const key = ReplayGuard.key(identity.certHash, body);
      const run = await replay.once(
        key,
        msg.deviceId,
        () => service.checkin(msg, identity),
        (r) => r.status === 200,
      );
      if (run.replay) {
        // A device's resend after a lost answer, or a captured message: the first already counted.
        ctx.state.log.outcome = `${msg.MessageType}: replay ignored`;
        answer(ctx, 200, undefined);
        return;
      }
      answer(ctx, run.result.status, run.result.body, run.result.type);
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
function answer(ctx: { status: number; type: string; body: unknown }, status: number, body: Buffer | undefined, type = 'application/xml'): void {
  ctx.status = status;
  if (body) {
    ctx.type = type;
    ctx.body = body;
  } else {
    ctx.body = '';
  }
}
