import type { Middleware } from 'koa';
import type { Logger } from 'pino';
import type { DeviceState } from './context.js';

/**
 * One structured log line per request (device id, outcome or refusal reason and code, latency).
 * Refusals are answered inside it by errorHandler (./errors.ts), so the line has the final status.
 */
export function requestLog(log: Logger): Middleware<DeviceState> {
  return async (ctx, next) => {
    const start = process.hrtime.bigint();
    ctx.state.log = {};
    await next();
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    const line = { method: ctx.method, path: ctx.path, status: ctx.status, ms: Math.round(ms * 100) / 100, ...ctx.state.log };
    if (ctx.status >= 500) log.error(line, 'request');
    else if (ctx.status >= 400) log.warn(line, 'request refused');
    else log.info(line, 'request');
  };
}
