/**
 * Apple Business Manager over the admin API (the read token suffices):
 *   GET /api/v1/abm/devices   ABM's devices, enrolled or not yet (serial, model, description,
 *                             color, OS, assigned by, profile status, the enrolled device id) and
 *                             the blueprints of the applied revision that select them;
 *                             ?limit=N&cursor=C pages in serial order.
 * Tokens and conditions are in GET /api/v1/status (`abm`).
 */
import Router from '@koa/router';
import { abmBlueprints } from '../abm/service.js';
import type { RouteDeps } from './deps.js';
import { ApiError, ROUTER_OPTIONS } from './api.js';
import { DEFAULT_PAGE, MAX_PAGE, reportContext } from './report-routes.js';

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

export function abmRoutes(deps: RouteDeps): Router {
  const router = new Router({ prefix: '/api/v1', ...ROUTER_OPTIONS });
  router.get('/abm/devices', deps.auth, async (ctx) => {
    const limitQ = one(ctx.query.limit);
    const limit = limitQ === undefined ? DEFAULT_PAGE : Number(limitQ);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) throw new ApiError(400, `limit must be an integer 1..${MAX_PAGE}`);
    const cursorQ = one(ctx.query.cursor);
    let cursor: string | undefined;
    if (cursorQ) {
      cursor = Buffer.from(cursorQ, 'base64url').toString('utf8');
      if (!cursor || Buffer.from(cursor, 'utf8').toString('base64url') !== cursorQ) throw new ApiError(400, 'malformed cursor');
    }
    const fleet = reportContext(deps.reports()).fleet;
    const page = await deps.abm.devices({ cursor, limit });
    ctx.body = {
      ...deps.abm.status().devices,
      devices: page.items.map((d) => ({
        ...d,
        blueprints: fleet ? abmBlueprints(fleet, d) : [],
      })),
      ...(page.next ? { nextCursor: Buffer.from(page.next, 'utf8').toString('base64url') } : {}),
    };
  });
  return router;
}
