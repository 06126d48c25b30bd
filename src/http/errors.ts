/**
 * The one place errors become HTTP answers, for the device endpoints and the admin API alike:
 * the error model's code (src/errors.ts) gives the status, the request's area the shape.
 *
 * - Device endpoints (and every other path outside the admin area): `text/plain` with the
 *   message, and never 401, which can make a device unenroll itself (PROTOCOL.md §1): a missing
 *   credential is 403 there.
 * - The admin area (`/api/...`, `/metrics`): JSON `{"error": message}`, 401 for a missing token.
 * - Anything that is not Orchard's error model is a bug: 500 "internal error", logged with its
 *   stack; its message is never sent (it may name files, hosts or library internals).
 * - An error's `cause` is never sent to the client; 5xx are logged with it.
 */
import type { Context, Middleware } from 'koa';
import type { Logger } from 'pino';
import { codeOfStatus, HTTP_STATUS, OrchardError, type ErrorCode } from '../errors.js';

/** The admin area: JSON errors, bearer tokens (app.ts refuses routes here without an access check). */
export const ADMIN_AREA = /^\/(api\/|metrics$)/i;

export function isAdminArea(path: string): boolean {
  return ADMIN_AREA.test(path);
}

/** What a caught error becomes: status, the text the client reads, and the code for the log. */
export interface ErrorAnswer {
  status: number;
  message: string;
  code: ErrorCode | 'internal';
}

/** The mapping on its own (for tests and for handlers that answer outside Koa). */
export function errorAnswer(err: unknown, area: 'device' | 'admin'): ErrorAnswer {
  let status: number;
  let code: ErrorAnswer['code'];
  let message: string;
  if (err instanceof OrchardError) {
    code = err.code;
    status = HTTP_STATUS[code];
    message = err.message;
  } else if (isClientHttpError(err)) {
    // Koa's and raw-body's own http-errors (ctx.throw): their 4xx messages are written for clients.
    status = err.status;
    code = codeOfStatus(status, 'malformed');
    message = err.message;
  } else {
    return { status: 500, message: 'internal error', code: 'internal' };
  }
  if (status === 401 && area === 'device') status = 403;
  return { status, message, code };
}

/**
 * Catches what the routes throw and answers it; the request log (outside this middleware) then
 * writes its one line with the status and `reason`. Unexpected errors and 5xx are logged here
 * with the error itself (and its `cause`), once.
 */
export function errorHandler(log: Logger): Middleware {
  return async (ctx, next) => {
    try {
      await next();
    } catch (err) {
      answerError(ctx, err, log);
    }
  };
}

function answerError(ctx: Context, err: unknown, log: Logger): void {
  const area = isAdminArea(ctx.path) ? 'admin' : 'device';
  const a = errorAnswer(err, area);
  ctx.status = a.status;
  const fields = (ctx.state as { log?: { reason?: string; code?: string } }).log;
  if (fields) {
    fields.reason = a.message;
    fields.code = a.code;
  }
  if (a.status >= 500) log.error({ err, method: ctx.method, path: ctx.path, code: a.code }, 'request failed');
  if (area === 'admin') {
    ctx.body = { error: a.message };
  } else {
    ctx.type = 'text/plain';
    ctx.body = `${a.message}\n`;
  }
}

function isClientHttpError(err: unknown): err is { status: number; message: string } {
  if (typeof err !== 'object' || err === null) return false;
  const status = (err as { status?: unknown }).status;
  return typeof status === 'number' && status >= 400 && status < 500 && typeof (err as { message?: unknown }).message === 'string';
}
