/**
 * The composition root: every part of `orchard serve` is built here from the config, in the order
 * they depend on each other. Nothing else creates parts or wires them together: route factories
 * only build routers from the parts (src/http/deps.ts), and src/server.ts only adds the HTTP
 * listener. Adding a part is one step below, plus a field in `Orchard` (and in RouteDeps when
 * routes need it), plus its stop in `close()`.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type Router from '@koa/router';
import { pino, type Logger } from 'pino';
import type { ServerConfig } from './config.js';
import { openEnrollment, type Enrollment, type EnrollmentOptions } from './enroll/enrollment.js';
import { scepRoutes } from './http/enroll-routes.js';
import { FleetSource } from './gitops/source.js';
import { apiRouter, bearerAuth } from './http/api.js';
import { createApp } from './http/app.js';
import type { RouteDeps, RouteFactory } from './http/deps.js';
import { countResults, createMetrics, httpMetrics, metricsRoutes, withMetrics, type OrchardMetrics } from './http/metrics.js';
import { pushRoutes } from './http/push-routes.js';
import { reportRoutes, type ReportSources } from './http/report-routes.js';
import { sourceRoutes } from './http/source-routes.js';
import { statusPageRoutes } from './http/status-page.js';
import { TrustStore } from './identity/trust.js';
import { ReplayGuard } from './mdm/replay.js';
import { MdmService } from './mdm/service.js';
import { apnsFromCredentials, type ApnsPusher } from './push/apns.js';
import { openStoredPushCredentials, type PushCredentials } from './push/push-cert.js';
import { isOnDemand, UnconfiguredPusher, type OnDemandPush, type Pusher } from './push/push.js';
import type { RetryPolicy } from './reconcile/decide.js';
import type { SecretLookup } from './reconcile/render.js';
import { Reconciler } from './reconcile/reconciler.js';
import { RolloutController } from './reconcile/rollout.js';
import type { RolloutStore } from './store/rollouts.js';
import { rolloutRoutes } from './http/rollout-routes.js';
import { abmRoutes } from './http/abm-routes.js';
import { storeSourceState } from './gitops/source-state.js';
import type { ValidatedRevision } from './gitops/source.js';
import { Leadership } from './cluster/leadership.js';
import { Replica } from './cluster/replica.js';
import { SecretStore } from './reconcile/secrets.js';
import { commitStatusReporter } from './report/commit-status-wiring.js';
import type { CommitStatusReporter, RevisionProgress } from './report/commit-status.js';
import { ConvergenceSeries, ProgressSampler, progressReader } from './report/progress.js';
import { EventWebhooks } from './report/webhooks.js';
import { DeclarativeManagement } from './ddm/protocol.js';
import { DdmReconciler } from './ddm/reconcile.js';
import { awaitsConfiguration } from './reconcile/setup.js';
import { LegacyProfiles, legacyProfileUrl } from './ddm/legacy.js';
import { ddmRow } from './ddm/report.js';
import { statusChanged, withDdmFacts } from './ddm/status.js';
import { ddmRoutes } from './http/ddm-routes.js';
import type { DdmStore } from './store/ddm.js';
import { closeStores, openStores } from './store/open.js';
import type { AbmStore } from './store/abm.js';
import type { OutboxStore } from './store/roles/outbox.js';
import { AbmService } from './abm/service.js';
import { AbmMaterial } from './abm/material.js';
import { loadSealer, type Sealer } from './store/sealing.js';
import { EnrollmentProfiles } from './abm/profiles.js';
import type { Store } from './store/types.js';
import { OrchardError } from './errors.js';

export interface RootOptions {
  log?: Logger;
  /** What the caller found wrong with how the process was started, logged before anything is served. */
  startupWarnings?: { fields: Record<string, unknown>; msg: string }[];
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
  /** Wakes devices instead of the APNs client of the imported push certificate (tests). One that can also push on demand serves /api/v1/push. */
  pusher?: Pusher;
  /** The material key (ORCHARD_MATERIAL_KEY): seals the CA's and the push certificate's keys in the store. Else cfg.materialKeyFile or DATA_DIR/material.key. */
  materialKey?: string;
  /** The built-in CA, SCEP and enrollment profiles (`orchard serve` always; tests when they enroll). */
  enrollment?: EnrollmentOptions;
  /** How often finished commands are compacted (default hourly). */
  compactEveryMs?: number;
  /** Reconciler retry policy (tests shorten it). */
  retry?: RetryPolicy;
  /** Metrics registry to count into (default: a new one). */
  metrics?: OrchardMetrics;
  /** What the reports and metrics read (default: the source and the APNs client); tests put stand-ins in. */
  reports?: (parts: { source?: FleetSource; push?: OnDemandPush }) => ReportSources;
  /** Whether this replica runs the fleet-wide work (source, drift, compaction, ABM sync); default: while it holds the store's leader lease. */
  isLeader?: () => boolean;
  /** More routes, mounted before the built-in ones (tests). */
  routes?: RouteFactory[];
}

/** The routers of the server besides the device endpoints, in mount order. */
export const ROUTES: readonly RouteFactory[] = [
  ddmRoutes,
  rolloutRoutes,
  abmRoutes,
  scepRoutes,
  reportRoutes,
  statusPageRoutes,
  metricsRoutes,
  pushRoutes,
  // The git webhook is authenticated by its HMAC signature, not a bearer token.
  (d) => (d.source ? sourceRoutes({ source: d.source, sync: d.syncSource, webhookSecret: d.webhookSecret, log: d.log }) : []),
  (d) =>
    apiRouter({
      source: d.source,
      store: d.store,
      ddm: d.ddmStore,
      pusher: d.pusher,
      adminToken: d.adminToken,
      readToken: d.readToken,
      maxBodyBytes: d.cfg.maxBodyBytes,
    }),
];

/** The built, not yet started server: every part, the app, and how to start and stop the parts. */
export interface Orchard {
  cfg: ServerConfig;
  log: Logger;
  store: Store;
  /** Declarative Device Management: sets and status per enrollment. */
  ddmStore: DdmStore;
  /** Where each staged rollout stands. */
  rolloutStore: RolloutStore;
  /** The devices Apple Business Manager assigned, per token. */
  abmStore: AbmStore;
  trust: TrustStore;
  service: MdmService;
  enrollment?: Enrollment;
  pusher: Pusher;
  /** The APNs client of the imported push certificate, when there is one and no test pusher. */
  apns?: ApnsPusher;
  source?: FleetSource;
  reconciler: Reconciler;
  /** Applies staged blueprints step by step (absent without --repo). */
  rollouts?: RolloutController;
  /** Posts the applied revision's rollout to the git host (cfg.commitStatus). */
  commitStatuses?: CommitStatusReporter;
  webhooks?: EventWebhooks;
  /** This replica among those on the store: leader or follower (src/cluster/replica.ts). */
  replica: Replica;
  /** Apple Business Manager: each imported token's devices, synced on the leader. */
  abm: AbmService;
  metrics: OrchardMetrics;
  deps: RouteDeps;
  app: ReturnType<typeof createApp>;
  /** Timers and the first sync; call once the listener is up. */
  start(): Promise<void>;
  /** Stops the parts; `listener` (the HTTP server) closes after them, the store last. */
  close(listener?: () => Promise<void>): Promise<void>;
}

/**
 * stdout, written asynchronously: a synchronous write per request line was 15-17% of the server's
 * time with a new connection per request, and a slow reader of a full pipe would stall every
 * request. pino flushes what is left when the process exits; beyond 16 MiB waiting (a reader that
 * stopped) lines are dropped rather than held.
 */
function requestLogDestination() {
  return pino.destination({ dest: 1, sync: false, maxLength: 16 << 20 });
}

export async function composeOrchard(cfg: ServerConfig, opts: RootOptions = {}): Promise<Orchard> {
  const log = opts.log ?? pino({ level: cfg.logLevel }, requestLogDestination());
  for (const w of opts.startupWarnings ?? []) log.warn(w.fields, w.msg);
  // Storage: the store's own failures are 503s, and the commands queued through it are counted.
  const metrics = opts.metrics ?? createMetrics();
  mkdirSync(cfg.dataDir, { recursive: true });
  // Every role on the configured backend (src/store/open.ts decides which).
  const stores = await openStores(cfg);
  const store = withMetrics(stores.store, metrics);
  try {
    return await assemble(cfg, opts, { log, metrics, store, ddmStore: stores.ddm, rolloutStore: stores.rollouts, abmStore: stores.abm, outbox: stores.outbox });
  } catch (err) {
    // A part that cannot be built (a config error) must not leave the stores locked.
    await closeStores(stores);
    throw err;
  }
}

interface Storage {
  log: Logger;
  metrics: OrchardMetrics;
  store: Store;
  ddmStore: DdmStore;
  rolloutStore: RolloutStore;
  abmStore: AbmStore;
  outbox: OutboxStore;
}

async function assemble(cfg: ServerConfig, opts: RootOptions, { log, metrics, store, ddmStore, rolloutStore, abmStore, outbox }: Storage): Promise<Orchard> {
  // Secrets in the store are sealed with the material key, which never enters it.
  const key = loadSealer({ secret: opts.materialKey, file: cfg.materialKeyFile, dataDir: cfg.dataDir });
  for (const w of key.warnings) log.warn(w);
  const pushCredentials = opts.pusher ? undefined : await openStoredPushCredentials(store, key.sealer, cfg.dataDir);
  const { trust, service, enrollment, ddm } = await identity(cfg, opts, { log, store, ddmStore, sealer: key.sealer, pushCredentials });
  const { apns, pusher, push } = pushing(cfg, opts, { service, store, log }, pushCredentials);
  // GitOps: the fleet repository (on the leader), the reconcilers that apply each valid revision, who leads.
  const secrets = new SecretStore(cfg.secretsDir ?? join(cfg.dataDir, 'secrets')).lookup;
  const { isLeader, source, reconciler, replica, applyRevision } = fleetWork(cfg, opts, { log, store, ddmStore, service, pusher, secrets });
  // A DDM report that changes what the device's row or facts show wrote its work row with it (DdmStore.putDdmStatus).
  ddm.on('status', (_eid, status, _full, previous) => {
    if (statusChanged(previous, status)) reconciler.wake();
  });
  // The profiles of legacy declarations, at the URL the reconciler puts in them (needs the public URL).
  const legacyProfiles = cfg.publicUrl ? new LegacyProfiles({ ddm: ddmStore, store, fleet: () => reconciler.currentFleet(), secrets }) : undefined;

  // Reporting: signed event webhooks, the rollout as commit statuses.
  const webhooks =
    cfg.eventWebhooks.length > 0
      ? new EventWebhooks({
          urls: cfg.eventWebhooks,
          secret: opts.eventSecret ?? '',
          log: log.child({ component: 'webhooks' }),
          // Every replica queues its events in the store; the leader delivers them.
          outbox,
          isLeader,
        })
      : undefined;
  if (webhooks && !opts.eventSecret) log.warn('event webhooks are not signed: set ORCHARD_EVENT_SECRET');
  webhooks?.attach(service, source);
  // Apple Business Manager: device sync per imported token on the leader; conditions reach the status, metrics and webhooks.
  // The key pair and tokens are the store's (sealed); what `orchard abm` wrote into the data directory is kept there first.
  const abmMaterial = new AbmMaterial(store, key.sealer);
  const abmTokens = async () => {
    await abmMaterial.adoptFiles(cfg.dataDir);
    return abmMaterial.tokens();
  };
  // Never quoted unless Orchard's own (a token file's parse error could quote its secrets).
  await abmTokens().catch((err: unknown) =>
    log.error({ reason: err instanceof OrchardError ? err.message : 'unexpected error' }, 'the ABM files could not be kept in the store'),
  );
  const abm = new AbmService({
    store: abmStore,
    tokens: abmTokens,
    url: cfg.abmUrl,
    intervalMs: cfg.abmSyncIntervalMs,
    isLeader,
    log: log.child({ component: 'abm' }),
    emit: (type, data) => webhooks?.emit(type, data),
    inventory: store,
  });
  // Enrollment profiles from git: defined and assigned after each sync, and again when a revision is applied.
  const publicUrl = cfg.publicUrl?.replace(/\/+$/, '');
  abm.afterSync(
    new EnrollmentProfiles({
      store: abmStore,
      // The newest valid revision: a rule change reaches ABM when it is validated, as devices get it.
      fleet: () => source?.current()?.fleet ?? reconciler.currentFleet(),
      enrollUrl: publicUrl ? `${publicUrl}/mdm/enroll` : undefined,
      log: log.child({ component: 'abm' }),
    }).step,
  );
  source?.on('validated', () => void abm.runOnce());
  // A device ABM assigned to this server carries its ABM record from Authenticate on (selectors read it).
  service.useAbm((serial, deviceId) => abm.lookup(serial, deviceId));
  // The applied revision's progress, read at most every interval: posted as commit statuses, drawn on the status page.
  const commitStatuses = commitStatusReporter(cfg, opts, log);
  const convergence = new ConvergenceSeries();
  const progress = new ProgressSampler({
    progress: progressReader({ store, source, note: () => rollouts?.note() ?? {} }),
    // Commit statuses are posted by the leader only: one post per change, whatever the number of replicas.
    sinks: [convergence.record, ...(commitStatuses ? [(p: RevisionProgress | undefined) => (isLeader() ? commitStatuses.report(p) : undefined)] : [])],
    log,
    minIntervalMs: opts.commitStatusIntervalMs,
  });

  // Staged rollouts: staged blueprints reach their current step only, so the controller applies each revision.
  const rollouts = source
    ? new RolloutController({
        store: rolloutStore,
        status: store,
        apply: applyRevision,
        log: log.child({ component: 'rollout' }),
        emit: (type, data) => webhooks?.emit(type, data),
        onChange: () => progress.poke(true),
        tickMs: opts.rolloutTickMs,
      })
    : undefined;
  source?.on('validated', (rev) => {
    (rollouts ? rollouts.applied(rev) : applyRevision(rev))
      .then(() => progress.poke(true))
      .catch((err: unknown) => log.error({ err }, 'fleet reconcile failed'));
  });
  // Device answers move rollouts: looked at again within the reporter's interval.
  service.on('result', () => {
    progress.poke();
    rollouts?.poke();
  });
  const reports = opts.reports ? () => ({ abm, ...opts.reports!({ source, push }) }) : () => ({ source, apns: push, abm });
  metrics.bind(store, reports);
  countResults(service, store, metrics);

  // HTTP: the routes from the parts, then the app.
  const deps: RouteDeps = {
    cfg,
    log,
    store,
    ddmStore,
    legacyProfiles,
    trust,
    service,
    pusher,
    push,
    source,
    syncSource: () => replica.syncSource(),
    rollouts,
    enrollment,
    abm,
    metrics,
    convergence,
    reports,
    adminToken: opts.adminToken,
    readToken: opts.readToken,
    webhookSecret: opts.webhookSecret,
    auth: bearerAuth(opts.adminToken, opts.readToken),
  };
  const app = createApp({
    middleware: [httpMetrics(metrics)],
    routes: buildRoutes([...(opts.routes ?? []), ...ROUTES], deps),
    log,
    service,
    trust,
    certHeader: cfg.certHeader,
    maxBodyBytes: cfg.maxBodyBytes,
    bodyTimeoutMs: cfg.requestTimeoutMs,
    replay: new ReplayGuard({ windowMs: cfg.replayWindowMs, maxEntries: cfg.replayCacheSize }),
    ready: () => store.health(),
  });
  if (!opts.adminToken && !opts.readToken) log.warn('ORCHARD_API_TOKEN is not set: the admin API is disabled');

  const compaction = compactor(store, cfg.retentionMs, log, isLeader);
  let timer: NodeJS.Timeout | undefined;
  let stopLoopMonitor: (() => void) | undefined;
  return {
    cfg,
    log,
    store,
    ddmStore,
    rolloutStore,
    abmStore,
    trust,
    service,
    enrollment,
    pusher,
    apns,
    source,
    reconciler,
    rollouts,
    commitStatuses,
    webhooks,
    replica,
    abm,
    metrics,
    deps,
    app,
    async start() {
      timer = setInterval(compaction, opts.compactEveryMs ?? 3600_000);
      timer.unref();
      stopLoopMonitor = metrics.monitorEventLoop();
      progress.start();
      rollouts?.start();
      reconciler.start();
      abm.start();
      // Delivers (on the leader) what the outbox holds, a last run's events included.
      webhooks?.start();
      await apns?.suppressionsLoaded();
      // The leader's first sync never throws (an unreachable remote is a status, not a crash).
      await replica.start();
      void compaction();
    },
    async close(listener) {
      clearInterval(timer);
      stopLoopMonitor?.();
      await source?.stop();
      // Given up before the rest winds down: another replica need not wait for the lease to run out.
      await replica.stop();
      await progress.stop();
      await rollouts?.stop();
      await reconciler.stop();
      await abm.stop();
      await apns?.close();
      await webhooks?.close();
      await listener?.();
      await closeStores({ store, ddm: ddmStore, rollouts: rolloutStore, abm: abmStore, outbox });
    },
  };
}

/**
 * One leader among the replicas on the store runs the source and the fleet-wide work; every
 * replica reconciles the devices that answer it against the revision the leader applied (src/cluster/replica.ts).
 */
function fleetWork(
  cfg: ServerConfig,
  opts: RootOptions,
  p: Pick<Storage, 'log' | 'store' | 'ddmStore'> & { service: MdmService; pusher: Pusher; secrets: SecretLookup },
) {
  const { log, store } = p;
  const leadership = new Leadership({ store, log: log.child({ component: 'leader' }), ttlMs: cfg.leaderLeaseMs });
  // One source of truth for the role: the replica (a role pinned by RootOptions.isLeader goes through it too).
  const isLeader = () => replica.isLeader;
  const source = cfg.repo ? fleetSource(cfg, cfg.repo, store, log, isLeader) : undefined;
  const reconciler = reconcilers(cfg, opts, { ...p, follows: source !== undefined, isLeader });
  const replica: Replica = new Replica({
    store,
    leadership,
    isLeader: opts.isLeader,
    source,
    follow: (rev) => reconciler.follow(rev),
    log: log.child({ component: 'replica' }),
  });
  // What the reconciler applies (a staged rollout's current step included) is what the other replicas
  // serve; published beside the reconcile (Replica.publish keeps the order), not before it.
  const applyRevision = (rev: ValidatedRevision) => {
    void replica.publish(rev);
    return reconciler.apply(rev);
  };
  return { isLeader, source, reconciler, replica, applyRevision };
}

/** The CAs devices' certificates must chain to, the MDM protocol on the store, and enrollment (which adds its CA). */
async function identity(
  cfg: ServerConfig,
  opts: RootOptions,
  { log, store, ddmStore, sealer, pushCredentials }: Pick<Storage, 'log' | 'store' | 'ddmStore'> & { sealer: Sealer; pushCredentials?: PushCredentials },
) {
  const trust = TrustStore.fromFiles(cfg.trustCa);
  const service = new MdmService(store, { reenroll: cfg.reenroll, log: log.child({ component: 'identity' }) });
  // Declarative Device Management rides on the check-in endpoint.
  const ddm = new DeclarativeManagement(ddmStore);
  service.useDeclarative((eid, endpoint, data) => ddm.handle(eid, endpoint, data));
  // A channel enrolled anew holds none of our declarations.
  service.onActivating((e) => ddmStore.resetDdm(e.id));
  const storedTopic = () => pushCredentials?.topic;
  // The built-in CA is created in the store on first start.
  const enrollment = opts.enrollment
    ? await openEnrollment(opts.enrollment, { dataDir: cfg.dataDir, store, sealer, trust, service, log, defaultTopic: storedTopic })
    : undefined;
  if (trust.size === 0) log.warn('no trusted CA (--trust-ca): no device can enroll yet');
  return { trust, service, enrollment, ddm };
}

/** The imported push certificate makes the real APNs client (orchard push-cert import); a test's pusher replaces it. */
function pushing(
  cfg: ServerConfig,
  opts: RootOptions,
  { service, store, log }: Pick<Storage, 'store' | 'log'> & { service: MdmService },
  credentials: PushCredentials | undefined,
) {
  // Tokens APNs refused stay refused across restarts and replicas: kept in the store's material.
  const apns = opts.pusher ? undefined : apnsFromCredentials(credentials, { url: cfg.apnsUrl, environment: cfg.apnsEnv, suppression: { store } }, log);
  const pusher = opts.pusher ?? apns ?? new UnconfiguredPusher(log);
  const push = apns ?? (isOnDemand(opts.pusher) ? opts.pusher : undefined);
  service.on('tokenUpdate', (e) => apns?.tokenUpdated(e.id, e.push!.token));
  return { apns, pusher, push };
}

function fleetSource(cfg: ServerConfig, repo: string, store: Store, log: Logger, isLeader: () => boolean): FleetSource {
  return new FleetSource({
    repo,
    branch: cfg.branch,
    dataDir: cfg.dataDir,
    pollIntervalMs: cfg.pollIntervalMs,
    limits: { validationMemoryMb: cfg.validationMemoryMb, validationTimeoutMs: cfg.validationTimeoutMs },
    load: cfg.manifests ? { manifests: cfg.manifests } : undefined,
    // In the store, so another process on it continues from here (an older state.json is read once).
    state: storeSourceState(store, join(cfg.dataDir, 'source', 'state.json')),
    isLeader,
    log: log.child({ component: 'source' }),
  });
}

/** The profile reconciler, with the declarations' reconciler inside it. */
function reconcilers(
  cfg: ServerConfig,
  opts: RootOptions,
  p: Pick<Storage, 'log' | 'store' | 'ddmStore'> & { service: MdmService; pusher: Pusher; secrets: SecretLookup; follows: boolean; isLeader: () => boolean },
): Reconciler {
  const { secrets } = p;
  const publicUrl = cfg.publicUrl;
  const ddm = new DdmReconciler({
    store: p.store,
    ddm: p.ddmStore,
    pusher: p.pusher,
    log: p.log.child({ component: 'ddm' }),
    secrets,
    legacyUrl: publicUrl ? (eid, profile, version) => legacyProfileUrl(publicUrl, eid, profile, version) : undefined,
    inSetup: (device) => awaitsConfiguration(p.store, device, new Date()),
  });
  return new Reconciler({
    store: p.store,
    service: p.service,
    pusher: p.pusher,
    log: p.log.child({ component: 'reconciler' }),
    secrets,
    ddm: {
      reconcile: (device, fleet, revision) => ddm.reconcile(device, fleet, revision),
      device: async (device) => withDdmFacts(device, await p.ddmStore.getDdmStatus(device.id)),
      // Only a device with a device-channel set has declarations to show (one read for the others).
      row: async (id) => ((await p.ddmStore.getDeclarationSet(id, 'current')) ? ddmRow(p.ddmStore, await p.store.listEnrollments(id)) : undefined),
    },
    driftIntervalMs: cfg.driftIntervalMs,
    isLeader: p.isLeader,
    inventoryOnEnroll: p.follows,
    retry: opts.retry,
    // A dead replica's claimed work comes back when its leadership would: one lease to tune.
    workLeaseMs: cfg.leaderLeaseMs,
  });
}

export function buildRoutes(factories: readonly RouteFactory[], deps: RouteDeps): Router[] {
  return factories.flatMap((make) => make(deps));
}

/** Deletes finished commands past the retention period; a failure is logged, never thrown. */
function compactor(store: Store, retentionMs: number, log: Logger, isLeader: () => boolean): () => Promise<void> {
  return async () => {
    if (!isLeader()) return;
    try {
      const n = await store.compact(new Date(Date.now() - retentionMs));
      if (n > 0) log.info({ compacted: n }, 'compacted finished commands');
    } catch (err) {
      log.error({ err }, 'compaction failed');
    }
  };
}
