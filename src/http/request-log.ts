import type { Middleware } from 'koa';
import type { Logger } from 'pino';
import { IdentityError } from '../identity/errors.js';
import { ProtocolError } from '../protocol/errors.js';
import type { DeviceState } from './context.js';

/**
 * One structured log line per request (device id, outcome or refusal reason, latency), and the
 * mapping of refusals to status codes. Device endpoints never answer 401: a 401 can make a
 * device unenroll itself (PROTOCOL.md §1).
 */
export function requestLog(log: Logger): Middleware<DeviceState> {
  return async (ctx, next) => {
    const start = process.hrtime.bigint();
    ctx.state.log = {};
    try {
      await next();
    } catch (err) {
      if (err instanceof ProtocolError) {
        ctx.status = err.status;
        ctx.state.log.reason = err.message;
      } else if (err instanceof IdentityError) {
        ctx.status = err.kind === 'malformed' ? 400 : 403;
        ctx.state.log.reason = err.message;
      } else if (isHttpError(err)) {
        ctx.status = err.status === 401 ? 403 : err.status;
        ctx.state.log.reason = err.message;
      } else {
        ctx.status = 500;
        ctx.state.log.reason = 'internal error';
        log.error({ err, method: ctx.method, path: ctx.path }, 'request failed');
      }
      ctx.type = 'text/plain';
      ctx.body = `${ctx.state.log.reason}\n`;
    }
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    const line = { method: ctx.method, path: ctx.path, status: ctx.status, ms: Math.round(ms * 100) / 100, ...ctx.state.log };
    if (ctx.status >= 500) log.error(line, 'request');
    else if (ctx.status >= 400) log.warn(line, 'request refused');
    else log.info(line, 'request');
  };
}

function isHttpError(err: unknown): err is { status: number; message: string; expose?: boolean } {
  return (
    typeof err === 'object' &&
    err !== null &&
    typeof (err as { status?: unknown }).status === 'number' &&
    (err as { status: number }).status >= 400 &&
    (err as { status: number }).status < 500
  );
}
