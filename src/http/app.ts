import Koa from 'koa';
import Router from '@koa/router';
import type { Logger } from 'pino';
import type { TrustStore } from '../identity/trust.js';
import type { MdmService } from '../mdm/service.js';
import type { ReplayGuard } from '../mdm/replay.js';
import type { Pusher } from '../push/push.js';
import type { Store } from '../store/types.js';
import type { FleetSource } from '../gitops/source.js';
import { apiRouter } from './api.js';
import { sourceRoutes } from './source-routes.js';
import type { DeviceState } from './context.js';
import { deviceIdentity, mdmHandler, readBody } from './device.js';
import { requestLog } from './request-log.js';

export interface AppOptions {
  log: Logger;
  store: Store;
  service: MdmService;
  trust: TrustStore;
  pusher: Pusher;
  certHeader?: string;
  maxBodyBytes: number;
  /** Device endpoints: the body must arrive within this after the headers (default 30 s). */
  bodyTimeoutMs?: number;
  /** Device endpoints: exact repeats of state-changing check-ins are not applied again. */
  replay?: ReplayGuard;
  adminToken?: string;
  readToken?: string;
  source?: FleetSource;
  webhookSecret?: string;
  /** Routers with their own authentication (SCEP, enrollment, ...), mounted before the admin API. */
  extraRoutes?: Router[];
  /** Outermost middleware (metrics), before the request log so it sees the final status. */
  middleware?: Koa.Middleware[];
}

export function createApp(opts: AppOptions): Koa<DeviceState> {
  const app = new Koa<DeviceState>();
  // Errors are answered and logged by requestLog; keep Koa from printing stack traces to stderr.
  app.silent = true;
  for (const m of opts.middleware ?? []) app.use(m);
  app.use(requestLog(opts.log));

  const device = new Router<DeviceState>();
  const chain = [
    readBody({ limit: opts.maxBodyBytes, timeoutMs: opts.bodyTimeoutMs ?? 30_000 }),
    deviceIdentity({ trust: opts.trust, certHeader: opts.certHeader }),
    mdmHandler(opts.service, opts.replay),
  ];
  device.put('/mdm/checkin', ...chain);
  device.put('/mdm/connect', ...chain);
  device.get('/healthz', (ctx) => {
    ctx.body = { ok: true };
  });
  app.use(device.routes());
  app.use(device.allowedMethods());

  for (const r of opts.extraRoutes ?? []) {
    app.use(r.routes());
    app.use(r.allowedMethods());
  }
  // The webhook is authenticated by its HMAC signature, not a bearer token: mounted first.
  if (opts.source) {
    const hooks = sourceRoutes({ source: opts.source, webhookSecret: opts.webhookSecret, log: opts.log });
    app.use(hooks.routes());
  }
  const api = apiRouter({
    source: opts.source,
    store: opts.store,
    pusher: opts.pusher,
    adminToken: opts.adminToken,
    readToken: opts.readToken,
    maxBodyBytes: opts.maxBodyBytes,
  });
  app.use(api.routes());
  app.use(api.allowedMethods());
  return app;
}
