/**
 * What route factories are given: the parts the composition root (src/root.ts) built. A factory
 * only builds routers from them; it creates nothing on disk, changes no other part and starts
 * nothing, so building the routes twice is harmless.
 */
import type Router from '@koa/router';
import type { Middleware } from 'koa';
import type { Logger } from 'pino';
import type { ServerConfig } from '../config.js';
import type { Enrollment } from '../enroll/enrollment.js';
import type { FleetSource } from '../gitops/source.js';
import type { TrustStore } from '../identity/trust.js';
import type { MdmService } from '../mdm/service.js';
import type { RolloutController } from '../reconcile/rollout.js';
import type { OnDemandPush, Pusher } from '../push/push.js';
import type { DdmStore } from '../store/ddm.js';
import type { LegacyProfiles } from '../ddm/legacy.js';
import type { Store } from '../store/types.js';
import type { ConvergenceSeries } from '../report/progress.js';
import type { OrchardMetrics } from './metrics.js';
import type { AbmService } from '../abm/service.js';
import type { ReportSources } from './report-routes.js';

export interface RouteDeps {
  cfg: ServerConfig;
  log: Logger;
  store: Store;
  /** Declarative Device Management sets and status (the admin API's device views show them). */
  ddmStore: DdmStore;
  /** The profiles of legacy declarations (undefined without a public URL to serve them at). */
  legacyProfiles?: LegacyProfiles;
  trust: TrustStore;
  service: MdmService;
  /** Wakes devices (APNs, or a stand-in). */
  pusher: Pusher;
  /** Push now and the push status (POST/GET /api/v1/push); undefined without a push certificate. */
  push?: OnDemandPush;
  /** Follows the fleet repository; undefined without --repo. */
  source?: FleetSource;
  /** What a git webhook starts: a sync on the leader, a wake-up of the leader elsewhere (src/cluster/replica.ts). */
  syncSource?: () => Promise<unknown>;
  /** Staged rollouts of the fleet's blueprints; undefined without --repo. */
  rollouts?: RolloutController;
  /** The built-in CA, SCEP and enrollment profiles; undefined when enrollment is off. */
  enrollment?: Enrollment;
  /** Apple Business Manager: tokens, conditions, ABM's devices. */
  abm: AbmService;
  metrics: OrchardMetrics;
  /** The applied revision's convergence over time (the status page draws it). */
  convergence: ConvergenceSeries;
  /** What the reports read, asked on every request. */
  reports: () => ReportSources;
  adminToken?: string;
  readToken?: string;
  webhookSecret?: string;
  /** The admin API's bearer-token check, for each admin route's own chain (errors: the app's errorHandler). */
  auth: Middleware;
}

/** Builds routers from the parts; mounted in the order the root lists them. */
export type RouteFactory = (deps: RouteDeps) => Router | Router[];
