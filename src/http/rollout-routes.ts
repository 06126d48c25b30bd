/**
 * Staged rollouts over the admin API:
 *   GET  /api/v1/rollouts                    every staged rollout: step, counts, halted and why (read token suffices);
 *   POST /api/v1/rollouts/:name/resume       go on past a halted gate, accepting its failures (admin token).
 */
import Router from '@koa/router';
import type { RouteDeps } from './deps.js';
import { NotFound } from '../errors.js';
import { ROUTER_OPTIONS } from './api.js';

export function rolloutRoutes(deps: RouteDeps): Router {
  const router = new Router({ prefix: '/api/v1', ...ROUTER_OPTIONS });
  router.get('/rollouts', deps.auth, (ctx) => {
    ctx.body = { rollouts: deps.rollouts?.views() ?? [] };
  });
  router.post('/rollouts/:name/resume', deps.auth, async (ctx) => {
    if (!deps.rollouts) throw new NotFound('no fleet repository: there are no rollouts');
    ctx.body = await deps.rollouts.resume(ctx.params.name!);
  });
  return router;
}
