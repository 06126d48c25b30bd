/**
 * Prometheus metrics at GET /metrics (bearer token; the read token suffices):
 *   orchard_http_requests_total{method,route,status}, orchard_http_request_duration_seconds{method,route}
 *     (from `httpMetrics`, an app-level middleware mounted outermost);
 *   orchard_mdm_commands_total{request_type,outcome}  outcome: queued | acknowledged | error | format_error | notnow;
 *   orchard_devices{state}, orchard_devices_stale     on scrape, from the store's read model (kept counts);
 *   orchard_revision_applied_timestamp_seconds, orchard_source_latest_rejected;
 *   orchard_push_notifications_total{outcome}          APNs client counters, when push is configured;
 *   orchard_push_certificate_expiry_timestamp_seconds;
 *   orchard_abm_token_expiry_seconds{token}, orchard_abm_conditions{kind}  from the ABM service;
 *   orchard_event_loop_delay_seconds{quantile}       how late the event loop ran, while the server runs;
 *   plus prom-client's process metrics (orchard_process_*, orchard_nodejs_*).
 * Each `createMetrics()` has its own registry (tests run several servers in one process).
 */
import Router from '@koa/router';
import type { Middleware } from 'koa';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { MdmService } from '../mdm/service.js';
import { DEFAULT_STALE_DAYS, DEVICE_STATES } from '../report/status.js';
import type { RouteDeps } from './deps.js';
import { decorate } from '../store/decorate.js';
import type { Store } from '../store/types.js';
import { ROUTER_OPTIONS, publicRoute } from './api.js';
import { reportContext, type ReportSources } from './report-routes.js';

export interface OrchardMetrics {
  registry: Registry;
  httpRequests: Counter<'method' | 'route' | 'status'>;
  httpDuration: Histogram<'method' | 'route'>;
  commands: Counter<'request_type' | 'outcome'>;
  /** Set by the composition root: where the scrape-time gauges read from. */
  bind(store: Store, getContext: () => ReportSources): void;
  /**
   * Starts sampling the event-loop delay (orchard_event_loop_delay_seconds) and returns its stop.
   * Counted: several servers on one metrics object keep it running until the last one stops.
   */
  monitorEventLoop(): () => void;
}

/** How often the event-loop monitor's timer fires; what it records beyond this is the delay. */
const LOOP_RESOLUTION_MS = 10;
const LOOP_QUANTILES = [0.5, 0.9, 0.99, 1] as const;

const OUTCOMES: Record<string, string> = { Acknowledged: 'acknowledged', Error: 'error', CommandFormatError: 'format_error', NotNow: 'notnow' };

export function createMetrics(opts: { defaultMetrics?: boolean } = {}): OrchardMetrics {
  const registry = new Registry();
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'orchard_' });
  let store: Store | undefined;
  let getContext: () => ReportSources = () => ({});

  const httpRequests = new Counter({
    name: 'orchard_http_requests_total',
    help: 'HTTP requests by route and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const httpDuration = new Histogram({
    name: 'orchard_http_request_duration_seconds',
    help: 'HTTP request latency',
    labelNames: ['method', 'route'] as const,
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [registry],
  });
  const commands = new Counter({
    name: 'orchard_mdm_commands_total',
    help: 'MDM commands queued and answered, by request type',
    labelNames: ['request_type', 'outcome'] as const,
    registers: [registry],
  });

  new Gauge({
    name: 'orchard_devices',
    help: 'Devices by state (in-sync, pending, drifted, failed, unenrolled)',
    labelNames: ['state'] as const,
    registers: [registry],
    async collect() {
      if (!store) return;
      const rc = reportContext(getContext());
      const c = await store.fleetCounts({ now: rc.now ?? new Date(), staleDays: rc.staleDays ?? DEFAULT_STALE_DAYS });
      for (const st of DEVICE_STATES) this.set({ state: st }, c.byState[st]);
      stale.set(c.stale);
    },
  });
  const stale = new Gauge({ name: 'orchard_devices_stale', help: 'Devices not seen for the stale period (default 7 days)', registers: [registry] });
  new Gauge({
    name: 'orchard_revision_applied_timestamp_seconds',
    help: 'When the applied fleet revision was applied',
    registers: [registry],
    collect() {
      const at = getContext().source?.status().applied?.appliedAt;
      if (at) this.set(Date.parse(at) / 1000);
    },
  });
  new Gauge({
    name: 'orchard_source_latest_rejected',
    help: '1 when the newest fetched revision failed validation',
    registers: [registry],
    collect() {
      const st = getContext().source?.status();
      const last = st?.lastAttempt;
      this.set(last && !last.valid && last.commit !== st?.applied?.commit ? 1 : 0);
    },
  });
  new Counter({
    name: 'orchard_push_notifications_total',
    help: 'APNs push outcomes (counters of the push client)',
    labelNames: ['outcome'] as const,
    registers: [registry],
    collect() {
      const counters = getContext().apns?.status().counters;
      if (!counters) return;
      this.reset();
      for (const [k, v] of Object.entries(counters)) if (typeof v === 'number' && v > 0) this.inc({ outcome: k }, v);
    },
  });
  new Gauge({
    name: 'orchard_push_certificate_expiry_timestamp_seconds',
    help: 'notAfter of the APNs push certificate',
    registers: [registry],
    collect() {
      const na = getContext().apns?.status().certificate?.notAfter;
      if (na !== undefined) this.set(new Date(na).getTime() / 1000);
    },
  });

  new Gauge({
    name: 'orchard_abm_token_expiry_seconds',
    help: 'Seconds until each imported ABM server token expires (negative once expired; warned from 30 days)',
    labelNames: ['token'] as const,
    registers: [registry],
    collect() {
      this.reset();
      const now = Date.now();
      for (const t of getContext().abm?.status().tokens ?? []) this.set({ token: t.name }, Math.round((Date.parse(t.expiresAt) - now) / 1000));
    },
  });
  new Gauge({
    name: 'orchard_abm_conditions',
    help: 'ABM conditions an admin must act on, by kind (terms not signed, token rejected or expiring, serial not assigned here)',
    labelNames: ['kind'] as const,
    registers: [registry],
    collect() {
      this.reset();
      const counts = new Map<string, number>();
      for (const c of getContext().abm?.status().conditions ?? []) counts.set(c.kind, (counts.get(c.kind) ?? 0) + 1);
      for (const [kind, n] of counts) this.set({ kind }, n);
    },
  });

  // Cumulative since the monitor started, never reset on scrape: quantile 1 is the longest any
  // request was held up since then (issue 18: no block over 100 ms), and two scrapers (or a curl
  // beside Prometheus) do not steal each other's windows. prom-client's own
  // orchard_nodejs_eventloop_lag_* are reset on every scrape and include the sampling interval.
  let loop: IntervalHistogram | undefined;
  let loopUsers = 0;
  new Gauge({
    name: 'orchard_event_loop_delay_seconds',
    help: `How late the event loop ran a ${LOOP_RESOLUTION_MS} ms timer, since the server started (quantile 1: the longest block)`,
    labelNames: ['quantile'] as const,
    registers: [registry],
    collect() {
      if (!loop || loop.count === 0) return;
      for (const q of LOOP_QUANTILES) {
        const ns = q === 1 ? loop.max : loop.percentile(q * 100);
        // The histogram holds whole timer intervals: the delay is what exceeds the resolution.
        this.set({ quantile: String(q) }, Math.max(0, ns / 1e9 - LOOP_RESOLUTION_MS / 1000));
      }
    },
  });

  return {
    registry,
    httpRequests,
    httpDuration,
    commands,
    bind(s, g) {
      store = s;
      getContext = g;
    },
    monitorEventLoop() {
      // Node unrefs the monitor's timer, so it never keeps the process alive; disabled all the same once unused.
      loop ??= monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
      if (loopUsers++ === 0) loop.enable();
      let stopped = false;
      return () => {
        if (stopped) return;
        stopped = true;
        if (--loopUsers === 0) loop?.disable();
      };
    },
  };
}

/** App-level middleware (mount it first, before the request log): counts every request by matched route. */
export function httpMetrics(m: OrchardMetrics): Middleware {
  return async (ctx, next) => {
    const start = process.hrtime.bigint();
    let thrown: number | undefined;
    try {
      await next();
    } catch (err) {
      // What the error handler further out will answer: an HTTP error's status, else 500.
      const st = (err as { status?: unknown }).status;
      thrown = typeof st === 'number' && st >= 400 && st < 600 ? st : 500;
      throw err;
    } finally {
      const matched = (ctx as unknown as { _matchedRoute?: string | RegExp })._matchedRoute;
      // Route patterns, never raw paths: ids in paths would make a series per device.
      const route = matched ? String(matched) : 'unmatched';
      const status = thrown ?? ctx.status;
      m.httpRequests.inc({ method: ctx.method, route, status: String(status) });
      m.httpDuration.observe({ method: ctx.method, route }, Number(process.hrtime.bigint() - start) / 1e9);
    }
  };
}

/** A store that counts the commands queued through it (API and reconciler alike). */
export function withMetrics(store: Store, m: OrchardMetrics): Store {
  return decorate(store, {
    async enqueue(targets, cmd, at) {
      await store.enqueue(targets, cmd, at);
      m.commands.inc({ request_type: cmd.requestType, outcome: 'queued' }, targets.length);
    },
    async commitReconcile(deviceId, state, change, at, expectedVersion) {
      const r = await store.commitReconcile(deviceId, state, change, at, expectedVersion);
      for (const e of change.enqueue) m.commands.inc({ request_type: e.cmd.requestType, outcome: 'queued' }, e.targets.length);
      return r;
    },
  });
}

/** Counts device answers (final and NotNow) by the command's request type. */
export function countResults(service: MdmService, store: Store, m: OrchardMetrics): void {
  service.on('result', (eid, rep) => {
    const outcome = OUTCOMES[rep.Status];
    if (!outcome || !rep.CommandUUID) return;
    void store.getCommand(eid, rep.CommandUUID).then(
      (c) => m.commands.inc({ request_type: c?.requestType ?? 'unknown', outcome }),
      () => m.commands.inc({ request_type: 'unknown', outcome }),
    );
  });
}

/**
 * GET /metrics: deps.metrics, which the root binds to the store and the service. `public: true`
 * serves it without a token (for a scraper on a private network).
 */
export function metricsRoutes(deps: RouteDeps, opts: { public?: boolean } = {}): Router {
  const router = new Router(ROUTER_OPTIONS);
  const guard = opts.public ? [publicRoute('metrics: public: true')] : [deps.auth];
  router.get('/metrics', ...guard, async (ctx) => {
    ctx.type = deps.metrics.registry.contentType;
    ctx.body = await deps.metrics.registry.metrics();
  });
  return router;
}
