import Koa from 'koa';
import Router from '@koa/router';
import type { Logger } from 'pino';
import type { TrustStore } from '../identity/trust.js';
import type { MdmService } from '../mdm/service.js';
import type { ReplayGuard } from '../mdm/replay.js';
import { ProtocolError } from '../protocol/errors.js';
import { ROUTER_OPTIONS, guardKind } from './api.js';
import type { DeviceState } from './context.js';
import { deviceIdentity, largeBodiesInTurn, mdmHandler, readBody } from './device.js';
import { requestLog } from './request-log.js';
import { ADMIN_AREA, errorHandler } from './errors.js';

export interface AppOptions {
  log: Logger;
  service: MdmService;
  trust: TrustStore;
  certHeader?: string;
  maxBodyBytes: number;
  /** Device endpoints: the body must arrive within this after the headers (default 30 s). */
  bodyTimeoutMs?: number;
  /** Device endpoints: exact repeats of state-changing check-ins are not applied again. */
  replay?: ReplayGuard;
  /** Every router beyond the device endpoints (enrollment, reports, the admin API, ...), in mount order. */
  routes?: Router[];
  /** Outermost middleware (metrics), before the request log so it sees the final status. */
  middleware?: Koa.Middleware[];
  /** What `/readyz` reports: the store reachable and its schema current. */
  ready?: () => Promise<{ ready: boolean }>;
}

/**
 * The Koa app: metrics, the request log, the one error handler, canonical paths, then the device
 * endpoints and the given routers. Refuses routes that could be reached past their access check.
 */
export function createApp(opts: AppOptions): Koa<DeviceState> {
  const app = new Koa<DeviceState>();
  // Errors are answered and logged by errorHandler; keep Koa from printing stack traces to stderr.
  app.silent = true;
  for (const m of opts.middleware ?? []) app.use(m);
  app.use(requestLog(opts.log));
  app.use(errorHandler(opts.log));
  app.use(canonicalPath());

  const device = new Router<DeviceState>(ROUTER_OPTIONS);
  const chain = [
    readBody({ limit: opts.maxBodyBytes, timeoutMs: opts.bodyTimeoutMs ?? 30_000 }),
    largeBodiesInTurn(),
    deviceIdentity({ trust: opts.trust, certHeader: opts.certHeader }),
    mdmHandler(opts.service, opts.replay),
  ];
  device.put('/mdm/checkin', ...chain);
  device.put('/mdm/connect', ...chain);
  device.get('/healthz', (ctx) => {
    ctx.body = { ok: true };
  });
  // Ready: the store answers and its schema is the one this server knows (a load balancer's check).
  device.get('/readyz', async (ctx) => {
    const health = opts.ready ? await opts.ready() : { ready: true };
    ctx.status = health.ready ? 200 : 503;
    ctx.body = health;
  });
  const routers: Router[] = [device as unknown as Router, ...(opts.routes ?? [])];
  checkRoutes(routers);
  for (const r of routers) {
    app.use(r.routes());
    app.use(r.allowedMethods());
  }
  return app;
}

/** One mounted route: its method, its path pattern (`:id` parameters) and the access check it carries. */
export interface MountedRoute {
  method: string;
  path: string;
  /** 'bearer', 'public: <why>', or undefined (device and public endpoints outside the admin area). */
  guard?: string;
}

interface LayerLike {
  path: string | RegExp;
  methods: string[];
  stack: unknown[];
  regexp: RegExp;
}

function layers(r: Router): LayerLike[] {
  return r.stack as unknown as LayerLike[];
}

/**
 * Refuses to start with a route that could be reached without its check: a case-insensitive or
 * non-strict route (another spelling of the path would reach it, possibly past a check matched
 * differently), or an admin-area route whose middleware has no guard (bearerAuth or publicRoute).
 */
function checkRoutes(routers: Router[]): void {
  for (const r of routers) {
    for (const l of layers(r)) {
      const where = `${l.methods.join(',') || 'use'} ${String(l.path)}`;
      if (l.regexp.flags.includes('i')) throw new Error(`route ${where} matches case-insensitively: build its router with ROUTER_OPTIONS`);
      if (l.methods.length === 0) continue;
      if (typeof l.path === 'string' && ADMIN_AREA.test(l.path) && !l.stack.slice(0, -1).some((m) => guardKind(m))) {
        throw new Error(`admin route ${where} has no access check: put deps.auth (or publicRoute) before its handler`);
      }
    }
  }
}

/** Every route the app mounts (HEAD is implied by GET and left out), for tests and audits. */
export function mountedRoutes(app: Koa<DeviceState>): MountedRoute[] {
  const out: MountedRoute[] = [];
  for (const mw of app.middleware as unknown as { router?: Router }[]) {
    if (!mw.router) continue;
    for (const l of layers(mw.router)) {
      if (typeof l.path !== 'string') continue;
      const guard = l.stack.map(guardKind).find(Boolean);
      for (const method of l.methods) if (method !== 'HEAD') out.push({ method, path: l.path, guard });
    }
  }
  return out;
}

// Characters a canonical path segment may hold as they are (RFC 3986 pchar without ';').
const SEGMENT = /^(?:[A-Za-z0-9\-._~!$&'()*+,=:@]|%[0-9A-Fa-f]{2})+$/;
const UNRESERVED = /[A-Za-z0-9\-._~]/;

/** Why a request path is not in canonical form, or undefined when it is. */
export function pathProblem(path: string): string | undefined {
  // The device endpoints, on every request: canonical as they are.
  if (path === '/' || path === '/mdm/connect' || path === '/mdm/checkin') return undefined;
  if (!path.startsWith('/')) return 'the path must start with /';
  if (path.endsWith('/')) return 'trailing slash';
  for (const seg of path.slice(1).split('/')) {
    if (seg === '') return 'empty path segment (//)';
    if (seg === '.' || seg === '..') return 'dot segment';
    if (seg.includes(';')) return 'path parameter (;)';
    if (!SEGMENT.test(seg)) return 'a character that must be percent-encoded, or a malformed %-escape';
    for (const m of seg.matchAll(/%([0-9A-Fa-f]{2})/g)) {
      const byte = parseInt(m[1]!, 16);
      const c = String.fromCharCode(byte);
      if (UNRESERVED.test(c)) return `needless percent-encoding (%${m[1]})`;
      if (c === '/' || c === '\\' || c === '%' || byte < 0x20 || byte === 0x7f)
        return `percent-encoded slash, backslash, percent or control character (%${m[1]})`;
    }
    try {
      decodeURIComponent(seg);
    } catch {
      return 'percent-encoding that is not UTF-8';
    }
  }
  return undefined;
}

/**
 * Paths are matched exactly as written, so every other spelling of a route's path is refused here
 * before any router sees it: 400 for a non-canonical form (`//`, a trailing slash, dot segments,
 * `;` parameters, needless or slash-hiding %-escapes). A different case is simply another path
 * (404 from the case-sensitive routers). OPTIONS is 405: there is no CORS to negotiate.
 */
export function canonicalPath(): Koa.Middleware<DeviceState> {
  return async (ctx, next) => {
    const problem = pathProblem(ctx.path);
    if (problem) throw new ProtocolError(400, `non-canonical request path: ${problem}`);
    if (ctx.method === 'OPTIONS') {
      ctx.status = 405;
      ctx.body = '';
      ctx.state.log.reason = 'OPTIONS is not supported';
      return;
    }
    await next();
  };
}
