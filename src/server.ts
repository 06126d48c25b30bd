/** Wires the parts of `orchard serve` together: store, identity, MDM service, HTTP, timers. */
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFileSync, mkdirSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { pino, type Logger } from 'pino';
import type { ServerConfig } from './config.js';
import { TrustStore } from './identity/trust.js';
import { createApp } from './http/app.js';
import { MdmService } from './mdm/service.js';
import { ReplayGuard } from './mdm/replay.js';
import { UnconfiguredPusher, type Pusher } from './push/push.js';
import { apnsFromDataDir } from './push/apns.js';
import { pushRoutes } from './http/push-routes.js';
import { reportRoutes } from './http/report-routes.js';
import { statusPageRoutes } from './http/status-page.js';
import { createMetrics, httpMetrics, metricsRoutes } from './http/metrics.js';
import { EventWebhooks } from './report/webhooks.js';
import { commitStatusReporter } from './report/commit-status-wiring.js';
import type { RevisionProgress } from './report/commit-status.js';
import { ConvergenceSeries, ProgressSampler, progressReader } from './report/progress.js';
import { RolloutController } from './reconcile/rollout.js';
import { LevelRolloutStore } from './store/rollouts.js';
import { rolloutRoutes } from './http/rollout-routes.js';
import { LevelStore } from './store/leveldb.js';
import { withStoreErrors } from './store/typed-errors.js';
import { FleetSource } from './gitops/source.js';
import { saveAppliedRevision, storeSourceState } from './gitops/source-state.js';
import { Reconciler } from './reconcile/reconciler.js';
import { SecretStore } from './reconcile/secrets.js';
import { join } from 'node:path';
import type { Store } from './store/types.js';
import type Router from '@koa/router';
import type { Middleware } from 'koa';
import { bearerAuth } from './http/api.js';
import { LevelDdmStore, type DdmStore } from './store/ddm.js';
import { DeclarativeManagement } from './ddm/protocol.js';
import { DdmReconciler } from './ddm/reconcile.js';

export interface RunningServer {
  url: string;
  store: Store;
  /** Declarative Device Management: sets and status per enrollment. */
  ddmStore: DdmStore;
  service: MdmService;
  trust: TrustStore;
  /** Follows the fleet repository; absent without --repo. */
  source?: FleetSource;
  reconciler: Reconciler;
  log: Logger;
  /** The Koa app (mountedRoutes(app) lists its routes). */
  app: ReturnType<typeof createApp>;
  close(): Promise<void>;
}

export interface StartOptions {
  log?: Logger;
  adminToken?: string;
  readToken?: string;
  webhookSecret?: string;
  /** HMAC secret for outgoing event webhooks (cfg.eventWebhooks). */
  eventSecret?: string;
  /** Git host token for cfg.commitStatus (else read from its tokenFile). */
  commitStatusToken?: string;
  /** How often the applied revision's progress is read, so how often a commit status may be posted (default 10 s; tests shorten it). */
  commitStatusIntervalMs?: number;
  /** How often staged rollouts are looked at without a device answer (default 10 s). */
  rolloutTickMs?: number;
  pusher?: Pusher;
  /** How often finished commands are compacted (default hourly). */
  compactEveryMs?: number;
  /** Reconciler retry policy (tests shorten it). */
  retry?: import('./reconcile/decide.js').RetryPolicy;
  /** More routes (enrollment, push, ...), mounted before the admin API; built once the store exists. */
  routes?: ((deps: RouteDeps) => Router | Router[])[];
}

export interface RouteDeps {
  cfg: ServerConfig;
  store: Store;
  trust: TrustStore;
  service: MdmService;
  pusher: Pusher;
  log: Logger;
  /** The admin API's bearer-token check, for routes under /api/v1 (errors are answered by the app's errorHandler). */
  auth: Middleware;
}

export async function startServer(cfg: ServerConfig, opts: StartOptions = {}): Promise<RunningServer> {
  const log = opts.log ?? pino({ level: cfg.logLevel });
  const trust = TrustStore.fromFiles(cfg.trustCa);
  if (trust.size === 0) log.warn('no trusted CA (--trust-ca): no device can enroll yet');
  mkdirSync(cfg.dataDir, { recursive: true });
  const store: Store = withStoreErrors(await LevelStore.open(cfg.dataDir));
  const service = new MdmService(store, { reenroll: cfg.reenroll, log: log.child({ component: 'identity' }) });
  const ddmStore = await LevelDdmStore.open(join(cfg.dataDir, 'ddm'));
  const ddm = new DeclarativeManagement(ddmStore);
  service.useDeclarative((eid, endpoint, data) => ddm.handle(eid, endpoint, data));
  // The imported push certificate (orchard push-cert import) makes the real APNs client.
  const apns = opts.pusher ? undefined : apnsFromDataDir(cfg.dataDir, { url: cfg.apnsUrl, environment: cfg.apnsEnv }, log);
  const pusher = opts.pusher ?? apns ?? new UnconfiguredPusher(log);
  service.on('tokenUpdate', (e) => apns?.tokenUpdated(e.id, e.push!.token));
  const source = cfg.repo
    ? new FleetSource({
        repo: cfg.repo,
        branch: cfg.branch,
        dataDir: cfg.dataDir,
        pollIntervalMs: cfg.pollIntervalMs,
        limits: { validationMemoryMb: cfg.validationMemoryMb, validationTimeoutMs: cfg.validationTimeoutMs },
        load: cfg.manifests ? { manifests: cfg.manifests } : undefined,
        // In the store, so another process on it continues from here (an older state.json is read once).
        state: storeSourceState(store, join(cfg.dataDir, 'source', 'state.json')),
        log: log.child({ component: 'source' }),
      })
    : undefined;
  const metrics = createMetrics();
  const reportCtx = () => ({ source, apns });
  // Staged rollouts: made with the reconciler below, read by their routes on each request.
  let rollouts: RolloutController | undefined = undefined;
  // The applied revision's convergence over time, sampled below, drawn on the status page.
  const convergence = new ConvergenceSeries();
  const rolloutStore = await LevelRolloutStore.open(join(cfg.dataDir, 'rollouts'));
  const routeFactories = [
    rolloutRoutes(() => rollouts),
    ...(opts.routes ?? []),
    reportRoutes(reportCtx),
    statusPageRoutes(reportCtx, { adminToken: opts.adminToken, readToken: opts.readToken }, () => ({
      convergence: convergence.view(),
      rollouts: rollouts?.views() ?? [],
    })),
    metricsRoutes(reportCtx, metrics),
    ...(opts.pusher ? [] : [pushRoutes(apns)]),
  ];
  const extra = routeFactories.flatMap((make) => make({ cfg, store, trust, service, pusher, log, auth: bearerAuth(opts.adminToken, opts.readToken) }));
  const app = createApp({
    middleware: [httpMetrics(metrics)],
    ddm: ddmStore,
    extraRoutes: extra,
    source,
    webhookSecret: opts.webhookSecret,
    log,
    store,
    service,
    trust,
    pusher,
    certHeader: cfg.certHeader,
    maxBodyBytes: cfg.maxBodyBytes,
    bodyTimeoutMs: cfg.requestTimeoutMs,
    replay: new ReplayGuard({ windowMs: cfg.replayWindowMs, maxEntries: cfg.replayCacheSize }),
    adminToken: opts.adminToken,
    readToken: opts.readToken,
  });
  if (!opts.adminToken && !opts.readToken) log.warn('ORCHARD_API_TOKEN is not set: the admin API is disabled');

  const handler = app.callback();
  const limits = {
    headersTimeout: cfg.headersTimeoutMs,
    // Node counts from the request's first byte; the device endpoints' own body deadline (a 408
    // with a log line) starts after the headers, so this backstop is the sum of both.
    requestTimeout: cfg.headersTimeoutMs + cfg.requestTimeoutMs,
    // Node checks both only this often (its default of 30 s would stretch a 10 s bound to 40).
    connectionsCheckingInterval: Math.min(1000, Math.max(50, cfg.headersTimeoutMs / 10)),
    // Devices keep connections open across a command session.
    keepAliveTimeout: cfg.keepAliveTimeoutMs,
  };
  const server: Server = cfg.tlsCert
    ? createHttpsServer({ ...limits, handshakeTimeout: cfg.headersTimeoutMs, cert: readFileSync(cfg.tlsCert), key: readFileSync(cfg.tlsKey!) }, handler)
    : createHttpServer(limits, handler);
  server.maxConnections = cfg.maxConnections;
  let dropped = 0;
  server.on('drop', () => {
    // One line per burst, not per connection: a flood must not flood the log too.
    if (dropped++ === 0)
      setTimeout(() => {
        log.warn({ dropped, maxConnections: cfg.maxConnections }, 'connections refused: at --max-connections');
        dropped = 0;
      }, 10_000).unref();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(cfg.listen.port, cfg.listen.host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `${cfg.tlsCert ? 'https' : 'http'}://${host}:${addr.port}`;

  const compact = async () => {
    try {
      const n = await store.compact(new Date(Date.now() - cfg.retentionMs));
      if (n > 0) log.info({ compacted: n }, 'compacted finished commands');
    } catch (err) {
      log.error({ err }, 'compaction failed');
    }
  };
  void compact();
  const timer = setInterval(compact, opts.compactEveryMs ?? 3600_000);
  timer.unref();

  const secrets = new SecretStore(cfg.secretsDir ?? join(cfg.dataDir, 'secrets')).lookup;
  const ddmReconciler = new DdmReconciler({ store, ddm: ddmStore, pusher, log: log.child({ component: 'ddm' }), secrets });
  const reconciler = new Reconciler({
    store,
    service,
    pusher,
    log: log.child({ component: 'reconciler' }),
    secrets,
    ddm: { reconcile: (device, fleet, revision) => ddmReconciler.reconcile(device, fleet, revision), reset: (eid) => ddmStore.resetDdm(eid) },
    driftIntervalMs: cfg.driftIntervalMs,
    inventoryOnEnroll: source !== undefined,
    retry: opts.retry,
  });
  const statuses = commitStatusReporter(cfg, opts, log);
  const progress = new ProgressSampler({
    progress: progressReader({ store, source, note: () => rollouts?.note() ?? {} }),
    sinks: [convergence.record, ...(statuses ? [(p: RevisionProgress | undefined) => statuses.report(p)] : [])],
    log,
    minIntervalMs: opts.commitStatusIntervalMs,
  });
  rollouts = source
    ? new RolloutController({
        store: rolloutStore,
        status: store,
        apply: (rev) => reconciler.apply(rev),
        log: log.child({ component: 'rollout' }),
        emit: (type, data) => hooks?.emit(type, data),
        onChange: () => progress.poke(true),
        tickMs: opts.rolloutTickMs,
      })
    : undefined;
  source?.on('applied', (rev) => {
    saveAppliedRevision(store, rev).catch((err: unknown) => log.error({ err }, 'could not keep the applied revision in the store'));
    // Staged blueprints reach their current step only: the controller applies the revision so.
    (rollouts ? rollouts.applied(rev) : reconciler.apply(rev))
      .then(() => progress.poke(true))
      .catch((err: unknown) => log.error({ err }, 'fleet reconcile failed'));
  });
  // Device answers move rollouts: looked at again within the reporter's interval.
  service.on('result', () => {
    progress.poke();
    rollouts?.poke();
  });
  progress.start();
  rollouts?.start();
  reconciler.start();
  const hooks =
    cfg.eventWebhooks.length > 0
      ? new EventWebhooks({ urls: cfg.eventWebhooks, secret: opts.eventSecret ?? '', log: log.child({ component: 'webhooks' }) })
      : undefined;
  if (hooks && !opts.eventSecret) log.warn('event webhooks are not signed: set ORCHARD_EVENT_SECRET');
  hooks?.attach(service, source);
  // The first sync never throws (an unreachable remote is a status, not a crash).
  await source?.start();
  log.info({ url, dataDir: cfg.dataDir, repo: source?.status().repo, trustedCAs: trust.size, certHeader: cfg.certHeader }, 'orchard listening');
  return {
    url,
    store,
    ddmStore,
    service,
    trust,
    source,
    reconciler,
    log,
    app,
    async close() {
      clearInterval(timer);
      await source?.stop();
      await progress.stop();
      await rollouts?.stop();
      await reconciler.stop();
      await apns?.close();
      await hooks?.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await store.close();
      await ddmStore.close();
      await rolloutStore.close();
    },
  };
}
