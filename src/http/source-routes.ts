/**
 * The fleet source over HTTP.
 *
 * `POST /api/v1/hooks/git` asks the source to fetch now. It is not behind the admin bearer token
 * (git hosts cannot send one); it is authenticated by an HMAC-SHA256 of the exact raw body keyed
 * with ORCHARD_WEBHOOK_SECRET, in either header:
 *   - `X-Hub-Signature-256: sha256=<hex>` (GitHub, Gitea, Forgejo), or
 *   - `X-Orchard-Signature: sha256=<hex>` (anything else), e.g.
 *       sig=$(printf %s "$BODY" | openssl dgst -sha256 -hmac "$ORCHARD_WEBHOOK_SECRET" -r | cut -d' ' -f1)
 *       curl -X POST -H "X-Orchard-Signature: sha256=$sig" --data "$BODY" https://orchard.example/api/v1/hooks/git
 * The body itself is not interpreted: any signed call triggers one fetch of the followed branch.
 *
 * `GET /api/v1/source` (the SourceStatus) belongs behind the admin auth: `sourceStatusRoute` is
 * exported for the admin router to mount.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import Router, { type RouterMiddleware } from '@koa/router';
import type { Context } from 'koa';
import type { Logger } from 'pino';
import getRawBody from 'raw-body';
import type { FleetSource } from '../gitops/source.js';

export const WEBHOOK_MAX_BODY_BYTES = 1024 * 1024;

export interface SourceRoutesOptions {
  source: FleetSource;
  webhookSecret?: string;
  log: Logger;
}

export function sourceRoutes(opts: SourceRoutesOptions): Router {
  const router = new Router({ prefix: '/api/v1' });
  const key = opts.webhookSecret ? Buffer.from(opts.webhookSecret, 'utf8') : undefined;

  router.post('/hooks/git', async (ctx) => {
    if (!key) return refuse(ctx, 403, 'webhook disabled: set ORCHARD_WEBHOOK_SECRET');
    const header = ctx.get('x-hub-signature-256') || ctx.get('x-orchard-signature');
    const given = parseSignature(header);
    // Refuse before reading a body nobody signed.
    if (!given) return refuse(ctx, 403, header ? 'malformed signature: expected sha256=<hex>' : 'missing signature (X-Hub-Signature-256 or X-Orchard-Signature)');
    let body: Buffer;
    try {
      body = await getRawBody(ctx.req as IncomingMessage, { limit: WEBHOOK_MAX_BODY_BYTES });
    } catch (err) {
      const e = err as { type?: string; message?: string };
      if (e.type === 'entity.too.large') return refuse(ctx, 413, `body over the ${WEBHOOK_MAX_BODY_BYTES}-byte limit`);
      return refuse(ctx, 400, `could not read body: ${e.message}`);
    }
    const expected = createHmac('sha256', key).update(body).digest();
    if (!timingSafeEqual(given, expected)) return refuse(ctx, 403, 'signature does not match');

    const event = ctx.get('x-github-event');
    if (event === 'ping') {
      ctx.status = 200;
      ctx.body = { ok: true };
      return;
    }
    opts.log.info({ event: event || undefined, delivery: ctx.get('x-github-delivery') || undefined }, 'git webhook: syncing');
    // Answer now: git hosts time out quickly, and the sync's outcome shows in GET /api/v1/source.
    void opts.source.sync('webhook');
    ctx.status = 202;
    ctx.body = { accepted: true };
  });

  return router;
}

/** GET handler for the SourceStatus; mount it behind the admin API's bearer auth. */
export function sourceStatusRoute(source: FleetSource): RouterMiddleware {
  return (ctx) => {
    ctx.body = source.status();
  };
}

/** `sha256=<64 hex>` -> the 32 digest bytes; anything else -> undefined. */
function parseSignature(header: string): Buffer | undefined {
  const m = /^sha256=([0-9a-f]{64})$/i.exec(header.trim());
  return m ? Buffer.from(m[1]!, 'hex') : undefined;
}

function refuse(ctx: Context, status: number, message: string): void {
  ctx.status = status;
  ctx.body = { error: message };
  // The app's request logger, when present, puts the reason on its one line per request.
  const log = (ctx.state as { log?: { reason?: string } }).log;
  if (log) log.reason = message;
}
