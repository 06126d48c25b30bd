/**
 * The admin API. Bearer tokens: the admin token may do everything, the read-only token only GET.
 * Unlike the device endpoints, a missing token here is a plain 401: no device ever calls this.
 *
 * Authorization is attached to every route (`...guard, handler`), never through `router.use()`:
 * a `use()` layer and the routes it should protect are matched separately, and any difference in
 * how they match (case, trailing slash, encoding) is a way around it. Every router is built with
 * ROUTER_OPTIONS (case-sensitive, strict), and createApp refuses to start with an admin route
 * (under /api/ or /metrics) that has no guard, or with a case-insensitive route.
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import Router from '@koa/router';
import type { Middleware } from 'koa';
import { codeOfStatus, Conflict, OrchardError, type ErrorCode } from '../errors.js';
import { buildCommand, buildCommandFromPlist, fromJson } from '../protocol/commands.js';
import { toJson } from '../protocol/json.js';
import { parsePlist, type PlistDict } from '../protocol/plist.js';
import type { Pusher } from '../push/push.js';
import type { FleetSource } from '../gitops/source.js';
import { sourceStatusRoute } from './source-routes.js';
import { jsonBody, type BodyState } from './validate-body.js';
import type { CommandRequest } from '../schema/api.js';
import { apiSchema } from '../schema/lazy-api.js';
import type { CommandView, DeviceRecord, EnrollmentRecord, Store } from '../store/types.js';
import { allPages } from '../store/paging.js';
import type { DdmStore } from '../store/ddm.js';
import { deviceDeclarations } from '../ddm/report.js';

export interface ApiOptions {
  store: Store;
  pusher: Pusher;
  adminToken?: string;
  readToken?: string;
  maxBodyBytes: number;
  source?: FleetSource;
  now?: () => Date;
  /** Declarative Device Management: each device's declarations in its view. */
  ddm?: DdmStore;
}

/**
 * An admin-API refusal built from its status (the error model's classes in src/errors.ts say the
 * same by name); errorHandler answers it as JSON `{error}`.
 */
export class ApiError extends OrchardError {
  readonly code: ErrorCode;

  constructor(
    readonly status: 400 | 401 | 403 | 404 | 409 | 413 | 415 | 503,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.code = codeOfStatus(status);
  }
}

/** Options of every router Orchard mounts: paths match exactly as written (case, trailing slash). */
export const ROUTER_OPTIONS = { sensitive: true, strict: true } as const;

const GUARD = Symbol('orchard.guard');
type Marked = { [GUARD]?: string };

/** Marks middleware as a route's access check, for the startup check in createApp. */
function markGuard<M extends Middleware>(m: M, kind: string): M {
  (m as M & Marked)[GUARD] = kind;
  return m;
}

/** What access check a middleware is ('bearer', 'public: ...'), if it is one. */
export function guardKind(m: unknown): string | undefined {
  return typeof m === 'function' ? (m as unknown as Marked)[GUARD] : undefined;
}

/** Declares an admin-area route deliberately open to the network (it authenticates otherwise, or not at all). */
export function publicRoute(why: string): Middleware {
  return markGuard((_ctx, next) => next(), `public: ${why}`);
}

export function apiRouter(opts: ApiOptions): Router {
  const router = new Router({ prefix: '/api/v1', ...ROUTER_OPTIONS });
  const now = opts.now ?? (() => new Date());
  const guard = [bearerAuth(opts.adminToken, opts.readToken)] as const;

  const commandBody = jsonBody(apiSchema('CommandRequest'), { maxBytes: opts.maxBodyBytes, alsoAccept: ['application/x-apple-plist', 'application/x-plist'] });
  router.post('/commands', ...guard, commandBody, async (ctx) => {
    const { body, rawBody } = ctx.state as BodyState<CommandRequest>;
    let targets: string[];
    let built;
    let priority: number | undefined;
    if (body === undefined) {
      // Targets for a raw plist come from the query: ?target=A&target=B (or ?targets=A,B).
      const q = ctx.query.target ?? ctx.query.targets;
      targets = (Array.isArray(q) ? q : q ? [q] : []).flatMap((t) => String(t).split(',')).filter(Boolean);
      if (targets.length === 0) throw new ApiError(400, 'targets must be a non-empty array of enrollment ids (?target= for a plist body)');
      built = buildCommandFromPlist(rawBody ?? Buffer.alloc(0));
    } else {
      targets = body.targets;
      built = buildCommand(fromJson(body.command) as PlistDict, body.commandUUID);
      priority = body.priority;
    }
    const ids = [...new Set(targets)];
    const enrollments = await Promise.all(ids.map((id) => opts.store.getEnrollment(id)));
    const missing = ids.filter((_, i) => !enrollments[i]?.active);
    if (missing.length > 0) throw new ApiError(404, `not enrolled (unknown or inactive): ${missing.slice(0, 20).join(', ')}`);
    const taken = await Promise.all(ids.map((id) => opts.store.getCommand(id, built.uuid)));
    if (taken.some(Boolean))
      throw duplicateCommand(
        built.uuid,
        ids.filter((_, i) => taken[i]),
      );
    try {
      await opts.store.enqueue(ids, { ...built, priority }, now());
    } catch (err) {
      // A concurrent request with the same commandUUID got in between the check and the write.
      if (err instanceof Conflict) throw duplicateCommand(built.uuid, []);
      throw err;
    }
    void opts.pusher.push(enrollments as EnrollmentRecord[]).catch(() => undefined);
    ctx.status = 201;
    ctx.body = { commandUUID: built.uuid, requestType: built.requestType, targets: ids };
  });

  if (opts.source) router.get('/source', ...guard, sourceStatusRoute(opts.source));
  else
    router.get('/source', ...guard, () => {
      throw new ApiError(404, 'no fleet repository configured (--repo)');
    });

  router.get('/devices', ...guard, async (ctx) => {
    const devices = await allPages((p) => opts.store.listDevices(p));
    const out = await Promise.all(devices.map((d) => deviceView(opts.store, d, opts.ddm)));
    ctx.body = { devices: out };
  });

  router.get('/devices/:id', ...guard, async (ctx) => {
    ctx.body = await deviceView(opts.store, await findDevice(opts.store, ctx.params.id!), opts.ddm);
  });

  router.get('/devices/:id/commands', ...guard, async (ctx) => {
    const given = ctx.params.id!;
    // Commands belong to an enrollment; a UDID or serial number means the device channel.
    const id = (await opts.store.getEnrollment(given)) ? given : (await findDevice(opts.store, given)).id;
    const commands = await allPages((p) => opts.store.listCommands(id, p));
    ctx.body = { enrollment: id, commands: commands.map(commandView) };
  });

  return router;
}

function duplicateCommand(uuid: string, targets: string[]): ApiError {
  const which = targets.length ? ` for ${targets.slice(0, 20).join(', ')}` : '';
  return new ApiError(409, `commandUUID ${uuid} is already queued or recorded${which}: use a new one`);
}

/**
 * The device a caller names by UDID (or a User Enrollment's EnrollmentID), by enrollment id
 * (`UDID:UserID`), or by serial number (as `orchard status --device SERIAL` does). A serial
 * number shared by two device records is refused as ambiguous rather than guessed.
 */
export async function findDevice(store: Store, id: string): Promise<DeviceRecord> {
  const direct = await store.getDevice(id);
  if (direct) return direct;
  const enrollment = await store.getEnrollment(id);
  const owner = enrollment ? await store.getDevice(enrollment.deviceId) : undefined;
  if (owner) return owner;
  const serial = id.toUpperCase();
  const bySerial = (await allPages((p) => store.listDevices(p))).filter((d) => d.facts.SerialNumber?.toUpperCase() === serial);
  if (bySerial.length === 1) return bySerial[0]!;
  if (bySerial.length > 1)
    throw new ApiError(409, `serial number ${id} matches ${bySerial.length} devices (${bySerial.map((d) => d.id).join(', ')}): name one by UDID`);
  throw new ApiError(404, `no device ${id} (by UDID, enrollment id or serial number)`);
}

async function deviceView(store: Store, d: DeviceRecord, ddm?: DdmStore) {
  const enrollments = await store.listEnrollments(d.id);
  const artifacts = await store.getArtifacts(d.id);
  return {
    id: d.id,
    serialNumber: d.facts.SerialNumber,
    enrolled: enrollments.some((e) => e.type === 'device' && e.active),
    enrolledAt: d.enrolledAt,
    authenticatedAt: d.authenticatedAt,
    checkedOutAt: d.checkedOutAt,
    facts: d.facts,
    identity: d.identity,
    // Renewals and re-enrollments, with both certificates (never a secret).
    identityChanges: d.identityChanges ?? [],
    // Push token, PushMagic and UnlockToken are not shown: they are credentials.
    enrollments: enrollments.map((e) => ({
      id: e.id,
      type: e.type,
      active: e.active,
      userId: e.userId,
      userShortName: e.userShortName,
      lastSeenAt: e.lastSeenAt,
      topic: e.push?.topic,
      awaitingConfiguration: e.awaitingConfiguration,
    })),
    reported: d.reported,
    // What Orchard manages on the device and where each stands (`orchard plan` reads this).
    profiles: Object.values(artifacts?.artifacts ?? {}),
    revision: artifacts?.revision,
    // Setup Assistant (await_device_configured): whether DeviceConfigured was sent, acknowledged or refused.
    ...(artifacts?.setup ? { setup: artifacts.setup } : {}),
    // Declarations per channel with their phase (DDM), and the software update status the device reported.
    ...(ddm ? { ddm: await deviceDeclarations(ddm, enrollments) } : {}),
  };
}

function commandView(c: CommandView) {
  let response: unknown;
  if (c.result) {
    try {
      response = toJson(parsePlist(c.result.raw));
    } catch {
      response = undefined;
    }
  }
  return {
    commandUUID: c.uuid,
    requestType: c.requestType,
    priority: c.priority,
    status: c.status,
    enqueuedAt: c.enqueuedAt,
    updatedAt: c.updatedAt,
    notNowCount: c.notNowCount,
    ...(c.result ? { result: { status: c.result.status, at: c.result.at, errorChain: c.result.errorChain, response } } : {}),
  };
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Constant-time token check; the read token may only read. Put it on each route, before its handler. */
export function bearerAuth(adminToken?: string, readToken?: string): Middleware {
  const admin = adminToken ? digest(adminToken) : undefined;
  const read = readToken ? digest(readToken) : undefined;
  return markGuard(async (ctx, next) => {
    if (!admin && !read) throw new ApiError(403, 'admin API disabled: set ORCHARD_API_TOKEN (and optionally ORCHARD_READ_TOKEN)');
    const m = /^Bearer\s+(\S+)$/i.exec(ctx.get('authorization'));
    if (!m) {
      ctx.set('WWW-Authenticate', 'Bearer');
      throw new ApiError(401, 'missing bearer token');
    }
    const given = digest(m[1]!);
    if (admin && timingSafeEqual(given, admin)) {
      ctx.state.role = 'admin';
    } else if (read && timingSafeEqual(given, read)) {
      if (ctx.method !== 'GET' && ctx.method !== 'HEAD') throw new ApiError(403, 'read-only token: this call changes state');
      ctx.state.role = 'read';
    } else {
      throw new ApiError(403, 'invalid token');
    }
    await next();
  }, 'bearer');
}
