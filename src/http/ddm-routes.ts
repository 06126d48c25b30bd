/**
 * Device requests besides the check-in endpoint: the profile of a legacy declaration, at its
 * ProfileURL (src/ddm/legacy.ts). The device proves who it is as on every device request (the
 * Mdm-Signature over the empty body, or the proxy's client-certificate header), and the
 * certificate must be the one bound to the enrollment the URL names.
 */
import Router from '@koa/router';
import { LEGACY_PROFILE_PREFIX } from '../ddm/legacy.js';
import { ROUTER_OPTIONS } from './api.js';
import type { DeviceState } from './context.js';
import type { RouteDeps } from './deps.js';
import { deviceIdentity, readBody } from './device.js';

export function ddmRoutes(deps: RouteDeps): Router[] {
  const legacy = deps.legacyProfiles;
  if (!legacy) return [];
  const router = new Router<DeviceState>(ROUTER_OPTIONS);
  router.get(
    `${LEGACY_PROFILE_PREFIX}/:enrollment/:profile/:version`,
    readBody({ limit: 0, timeoutMs: deps.cfg.requestTimeoutMs }),
    deviceIdentity({ trust: deps.trust, certHeader: deps.cfg.certHeader }),
    async (ctx) => {
      const { enrollment, profile, version } = ctx.params as { enrollment: string; profile: string; version: string };
      const { deviceId } = await deps.service.speaksFor(enrollment, ctx.state.identity!);
      ctx.state.log.device = deviceId;
      ctx.state.log.enrollment = enrollment;
      ctx.state.log.outcome = `legacy profile ${profile.slice(0, 80)}`;
      ctx.type = 'application/x-apple-aspen-config';
      ctx.body = await legacy.profile(enrollment, deviceId, profile, version, ctx.path);
    },
  );
  return [router as unknown as Router];
}
