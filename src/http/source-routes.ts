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
 * The body itself is not interpreted: any signed call asks for one fetch of the followed branch.
 *
 * Replays do not multiply syncs. A delivery seen before (its `X-GitHub-Delivery`, `X-Gitea-Delivery`
 * or `X-Gogs-Delivery` id, or, for `X-Hub-Signature-256` calls, the digest of its signed body: those
 * hosts put the pushed commit and a timestamp in every body, while the delivery header is not signed)
 * is answered 200 `{"accepted": false, "duplicate": true}` for DEDUP_TTL_MS without syncing. Accepted
 * calls are coalesced: at most one webhook sync runs and one more waits, and webhook syncs start at
 * least MIN_SYNC_INTERVAL_MS apart. (Generic `X-Orchard-Signature` bodies may be the same each time,
 * as in the example above, so only their delivery id, if any, is deduplicated.)
 *
 * `GET /api/v1/source` (the SourceStatus) belongs behind the admin auth: `sourceStatusRoute` is
 * exported for the admin router to mount.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import Router, { type RouterMiddleware } from '@koa/router';
import type { Logger } from 'pino';
import getRawBody from 'raw-body';
import type { FleetSource } from '../gitops/source.js';
import { ROUTER_OPTIONS, publicRoute } from './api.js';
import { Forbidden, Malformed, TooLarge } from '../errors.js';

export const WEBHOOK_MAX_BODY_BYTES = 1024 * 1024;
/** How long a delivery is remembered (GitHub's redelivery button is for deliveries that failed). */
export const DEDUP_TTL_MS = 24 * 3600_000;
/** Deliveries remembered at most; the oldest are forgotten first. */
export const DEDUP_MAX = 10_000;
export const MIN_SYNC_INTERVAL_MS = 2_000;

const DELIVERY_HEADERS = ['x-github-delivery', 'x-gitea-delivery', 'x-gogs-delivery'];

export interface SourceRoutesOptions {
  source: FleetSource;
  webhookSecret?: string;
  log: Logger;
  /** What a webhook starts (default: a sync of `source`); a replica that is not the leader wakes the leader instead. */
  sync?: () => Promise<unknown>;
  /** Least time between two webhook-started syncs (default MIN_SYNC_INTERVAL_MS). */
  minSyncIntervalMs?: number;
}

export function sourceRoutes(opts: SourceRoutesOptions): Router {
  const router = new Router({ prefix: '/api/v1', ...ROUTER_OPTIONS });
  const key = opts.webhookSecret ? Buffer.from(opts.webhookSecret, 'utf8') : undefined;
  const seen = new Recent(DEDUP_TTL_MS, DEDUP_MAX);
  const gate = new SyncGate(opts.sync ?? (() => opts.source.sync('webhook')), opts.minSyncIntervalMs ?? MIN_SYNC_INTERVAL_MS);

  router.post('/hooks/git', publicRoute('HMAC-signed git webhook'), async (ctx) => {
    if (!key) throw new Forbidden('webhook disabled: set ORCHARD_WEBHOOK_SECRET');
    const header = ctx.get('x-hub-signature-256') || ctx.get('x-orchard-signature');
    const given = parseSignature(header);
    // Refuse before reading a body nobody signed.
    if (!given) throw new Forbidden(header ? 'malformed signature: expected sha256=<hex>' : 'missing signature (X-Hub-Signature-256 or X-Orchard-Signature)');
    let body: Buffer;
    try {
      body = await getRawBody(ctx.req as IncomingMessage, { limit: WEBHOOK_MAX_BODY_BYTES });
    } catch (err) {
      const e = err as { type?: string; message?: string };
      if (e.type === 'entity.too.large') throw new TooLarge(`body over the ${WEBHOOK_MAX_BODY_BYTES}-byte limit`);
      throw new Malformed(`could not read body: ${e.message}`);
    }
    const expected = createHmac('sha256', key).update(body).digest();
    if (!timingSafeEqual(given, expected)) throw new Forbidden('signature does not match');

    const event = ctx.get('x-github-event');
    if (event === 'ping') {
      ctx.status = 200;
      ctx.body = { ok: true };
      return;
    }
    const delivery = DELIVERY_HEADERS.map((h) => ctx.get(h))
      .find(Boolean)
      ?.slice(0, 200);
    const ids = [
      ...(delivery ? [`id:${delivery}`] : []),
      ...(ctx.get('x-hub-signature-256') ? [`body:${createHash('sha256').update(body).digest('base64url')}`] : []),
    ];
    if (seen.check(ids)) {
      opts.log.info({ event: event || undefined, delivery }, 'git webhook: duplicate delivery, not syncing');
      if (ctx.state.log) ctx.state.log.outcome = 'duplicate delivery';
      ctx.status = 200;
      ctx.body = { accepted: false, duplicate: true };
      return;
    }
    const how = gate.trigger();
    opts.log.info({ event: event || undefined, delivery, sync: how }, 'git webhook: syncing');
    if (ctx.state.log) ctx.state.log.outcome = `sync ${how}`;
    // Answer now: git hosts time out quickly, and the sync's outcome shows in GET /api/v1/source.
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

/** Keys remembered for a while, at most `max` of them (oldest forgotten first). */
class Recent {
  private readonly until = new Map<string, number>();
  constructor(
    private readonly ttlMs: number,
    private readonly max: number,
  ) {}

  /** Whether any of `keys` was seen within the TTL; remembers them all either way. */
  check(keys: string[], now = Date.now()): boolean {
    let dup = false;
    for (const k of keys) {
      const t = this.until.get(k);
      if (t !== undefined && t > now) dup = true;
      this.until.delete(k);
      this.until.set(k, now + this.ttlMs);
    }
    while (this.until.size > this.max) this.until.delete(this.until.keys().next().value!);
    return dup;
  }
}

/**
 * At most one sync running and one waiting; starts at least `minIntervalMs` apart. Every call made
 * while one waits joins it (it starts after them, so it sees whatever they announced).
 */
export class SyncGate {
  private running?: Promise<unknown>;
  private waiting = false;
  private lastStart = -Infinity;

  constructor(
    private readonly run: () => Promise<unknown>,
    private readonly minIntervalMs: number,
  ) {}

  trigger(): 'started' | 'queued' | 'coalesced' {
    if (this.waiting) return 'coalesced';
    if (!this.running && Date.now() - this.lastStart >= this.minIntervalMs) {
      this.start();
      return 'started';
    }
    this.waiting = true;
    void (async () => {
      await this.running;
      const wait = this.lastStart + this.minIntervalMs - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait).unref());
      this.waiting = false;
      this.start();
    })();
    return 'queued';
  }

  private start(): void {
    this.lastStart = Date.now();
    const p: Promise<unknown> = this.run()
      .catch(() => undefined)
      .finally(() => {
        if (this.running === p) this.running = undefined;
      });
    this.running = p;
  }
}

/** `sha256=<64 hex>` -> the 32 digest bytes; anything else -> undefined. */
function parseSignature(header: string): Buffer | undefined {
  const m = /^sha256=([0-9a-f]{64})$/i.exec(header.trim());
  return m ? Buffer.from(m[1]!, 'hex') : undefined;
}
