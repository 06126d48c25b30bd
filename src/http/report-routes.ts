/**
 * Read-only status reports over the admin API (the read token suffices):
 *   GET /api/v1/status               fleet summary: applied/latest revision, device counts by state, push certificate;
 *   GET /api/v1/blueprints           per blueprint: devices selected, per-profile verified/pending/failed;
 *   GET /api/v1/blueprints/:name     the same plus the selected devices;
 *   GET /api/v1/report/devices       devices with their state; ?state=failed|pending|in-sync|drifted|unenrolled|stale,
 *                                    ?blueprint=NAME, ?limit=N&cursor=C (pages in device-id order);
 *   GET /api/v1/report/devices/:id   one device (by UDID, enrollment id or serial number): facts, each desired profile with status and last error, recent commands;
 *   GET /api/v1/openapi.json         the OpenAPI 3.1 description of /api/v1.
 */
import Router from '@koa/router';
import type { Fleet } from '../gitops/model.js';
import type { FleetSource, RevisionInfo } from '../gitops/source.js';
import {
  DEFAULT_STALE_DAYS,
  DEVICE_STATES,
  blueprintReports,
  deviceDetail,
  fleetSummary,
  rowSummary,
  type BlueprintDetail,
  type DeviceState,
  type FleetSummary,
  type PushStatusLike,
  type ReportContext,
} from '../report/status.js';
import type { Store } from '../store/types.js';
import type { AbmStatus } from '../abm/service.js';
import type { RouteDeps } from './deps.js';
import { ApiError, ROUTER_OPTIONS, findDevice } from './api.js';
import { allPages } from '../store/paging.js';

/** Where the reports find the live parts; read on every request (they appear after startup). */
export interface ReportSources {
  source?: Pick<FleetSource, 'status' | 'current'>;
  /** Defaults to source.current().fleet. */
  fleet?: Fleet;
  /** Defaults to source.current().info. */
  revision?: RevisionInfo;
  /** The APNs client (ApnsPusher), for the push certificate's expiry. */
  apns?: { status(): PushStatusLike };
  /** ABM tokens and conditions (src/abm/service.ts). */
  abm?: { status(): AbmStatus };
  staleDays?: number;
}

export const MAX_PAGE = 1000;
export const DEFAULT_PAGE = 100;

export function reportContext(s: ReportSources, now = new Date()): ReportContext {
  const cur = s.source?.current();
  return {
    fleet: s.fleet ?? cur?.fleet,
    revision: s.revision ?? cur?.info,
    source: s.source?.status(),
    push: s.apns?.status(),
    abm: s.abm?.status(),
    staleDays: s.staleDays,
    now,
  };
}

/** The fleet summary, from the store's read model. */
export async function fleetReport(store: Store, rc: ReportContext): Promise<FleetSummary> {
  return fleetSummary(await store.fleetCounts({ now: rc.now ?? new Date(), staleDays: rc.staleDays ?? DEFAULT_STALE_DAYS }), rc);
}

/** One blueprint's report with the devices it selects (in id order). */
export async function blueprintDetail(store: Store, rc: ReportContext & { fleet: Fleet }, name: string): Promise<BlueprintDetail> {
  const report = blueprintReports(await store.blueprintCounts([name]), rc.fleet).find((b) => b.name === name)!;
  const { devices } = await store.queryStatus({
    blueprint: name,
    limit: Math.max(1, report.selected),
    now: rc.now ?? new Date(),
    staleDays: rc.staleDays ?? DEFAULT_STALE_DAYS,
  });
  return {
    ...report,
    selector: rc.fleet.blueprints.get(name)!.selector,
    selectedDevices: devices.map((r) => {
      const s = rowSummary(r, rc);
      return { id: s.id, serialNumber: s.serialNumber, state: s.state };
    }),
  };
}

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

export function reportRoutes(deps: RouteDeps): Router {
  const getContext = deps.reports;
  {
    const router = new Router({ prefix: '/api/v1', ...ROUTER_OPTIONS });
    const guard = [deps.auth] as const;

    router.get('/openapi.json', ...guard, async (ctx) => {
      // Loaded on first request: the document embeds the TypeBox schemas, which a server otherwise never loads.
      ctx.body = (await import('./openapi.js')).OPENAPI;
    });

    router.get('/status', ...guard, async (ctx) => {
      ctx.body = await fleetReport(deps.store, reportContext(getContext()));
    });

    router.get('/blueprints', ...guard, async (ctx) => {
      const rc = reportContext(getContext());
      if (!rc.fleet) throw new ApiError(404, 'no fleet revision applied yet (--repo)');
      const counts = await deps.store.blueprintCounts([...rc.fleet.blueprints.keys()]);
      ctx.body = { revision: rc.revision?.commit ?? rc.revision?.contentHash, blueprints: blueprintReports(counts, rc.fleet) };
    });

    router.get('/blueprints/:name', ...guard, async (ctx) => {
      const rc = reportContext(getContext());
      if (!rc.fleet) throw new ApiError(404, 'no fleet revision applied yet (--repo)');
      if (!rc.fleet.blueprints.has(ctx.params.name!)) throw new ApiError(404, `no blueprint ${ctx.params.name}`);
      const b = await blueprintDetail(deps.store, { ...rc, fleet: rc.fleet }, ctx.params.name!);
      ctx.body = { revision: rc.revision?.commit ?? rc.revision?.contentHash, ...b };
    });

    router.get('/report/devices', ...guard, async (ctx) => {
      const state = one(ctx.query.state);
      if (state !== undefined && state !== 'stale' && !DEVICE_STATES.includes(state as DeviceState)) {
        throw new ApiError(400, `state must be one of ${[...DEVICE_STATES, 'stale'].join(', ')}`);
      }
      const limitQ = one(ctx.query.limit);
      const limit = limitQ === undefined ? DEFAULT_PAGE : Number(limitQ);
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) throw new ApiError(400, `limit must be an integer 1..${MAX_PAGE}`);
      const cursorQ = one(ctx.query.cursor);
      let after: string | undefined;
      if (cursorQ) {
        after = Buffer.from(cursorQ, 'base64url').toString('utf8');
        if (!after || Buffer.from(after, 'utf8').toString('base64url') !== cursorQ) throw new ApiError(400, 'malformed cursor');
      }
      const blueprint = one(ctx.query.blueprint);
      const rc = reportContext(getContext());
      if (blueprint !== undefined && !rc.fleet?.blueprints.has(blueprint)) throw new ApiError(404, `no blueprint ${blueprint}`);
      // Filtered and paged in the store; one row more says whether there is a next page.
      const { total, devices } = await deps.store.queryStatus({
        state: state as DeviceState | 'stale' | undefined,
        blueprint,
        after,
        limit: limit + 1,
        now: rc.now ?? new Date(),
        staleDays: rc.staleDays ?? DEFAULT_STALE_DAYS,
      });
      const page = devices.slice(0, limit).map((r) => rowSummary(r, rc));
      ctx.body = {
        total,
        devices: page,
        ...(devices.length > limit ? { nextCursor: Buffer.from(page[page.length - 1]!.id, 'utf8').toString('base64url') } : {}),
      };
    });

    router.get('/report/devices/:id', ...guard, async (ctx) => {
      const d = await findDevice(deps.store, ctx.params.id!);
      const rc = reportContext(getContext());
      const snap = { devices: [d], enrollments: new Map([[d.id, await deps.store.listEnrollments(d.id)]]), artifacts: new Map() };
      const arts = await deps.store.getArtifacts(d.id);
      if (arts) snap.artifacts.set(d.id, arts);
      ctx.body = deviceDetail(snap, d, await allPages((p) => deps.store.listCommands(d.id, p)), rc);
    });

    return router;
  }
}
