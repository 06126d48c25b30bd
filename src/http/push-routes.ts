/**
 * Push over the admin API:
 *   POST /api/v1/push {"targets": ["<UDID>" | "<UDID>:<UserID>", ...]}  (admin token) pushes now,
 *     skipping the coalescing window, and answers APNs' outcome per target;
 *   GET /api/v1/push  (read token) the push status: topic, certificate expiry, counters.
 */
import Router from '@koa/router';
import type { PushResult, PushResultKind } from '../push/apns.js';
import type { RouteDeps } from './deps.js';
import type { EnrollmentRecord } from '../store/types.js';
import { ApiError, ROUTER_OPTIONS } from './api.js';
import { jsonBody, type BodyState } from './validate-body.js';
import type { PushRequest } from '../schema/api.js';
import { apiSchema } from '../schema/lazy-api.js';

const MAX_BODY_BYTES = 1024 * 1024;
/** Each target is an APNs request the caller waits for; bigger fleets use commands (coalesced). */
export const MAX_PUSH_TARGETS = 10_000;
const NOT_CONFIGURED = 'APNs push is not configured: import a push certificate (orchard push-cert import CERT KEY)';

/** Without deps.push (no push certificate yet) the routes say so instead of answering 404. */
export function pushRoutes(deps: RouteDeps): Router {
  const apns = deps.push;
  {
    const router = new Router({ prefix: '/api/v1', ...ROUTER_OPTIONS });
    if (!apns) {
      router.post('/push', deps.auth, () => {
        throw new ApiError(503, NOT_CONFIGURED);
      });
      router.get('/push', deps.auth, (ctx) => {
        ctx.body = { configured: false, message: NOT_CONFIGURED };
      });
      return router;
    }
    // Per route, not router.use(): this router's prefix is shared with routes that have other auth.
    router.post('/push', deps.auth, jsonBody(apiSchema('PushRequest'), { maxBytes: MAX_BODY_BYTES, anyMediaType: true }), async (ctx) => {
      const { targets } = (ctx.state as BodyState<PushRequest>).body ?? { targets: [] };
      const ids = [...new Set(targets)];
      if (ids.length > MAX_PUSH_TARGETS) throw new ApiError(400, `at most ${MAX_PUSH_TARGETS} targets per call`);
      const enrollments = await Promise.all(ids.map((id) => deps.store.getEnrollment(id)));
      const unknown = ids.filter((_, i) => !enrollments[i]);
      if (unknown.length > 0) throw new ApiError(404, `unknown enrollments: ${unknown.slice(0, 20).join(', ')}`);
      const results: PushResult[] = await apns.pushNow(enrollments as EnrollmentRecord[]);
      const summary: Partial<Record<PushResultKind, number>> = {};
      for (const r of results) summary[r.result] = (summary[r.result] ?? 0) + 1;
      deps.log.info({ targets: ids.length, summary }, 'push on demand');
      ctx.body = { results, summary };
    });

    router.get('/push', deps.auth, (ctx) => {
      ctx.body = { configured: true, ...apns.status() };
    });
    return router;
  }
}
