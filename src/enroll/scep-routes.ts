/**
 * Enrollment routes, mounted through `StartOptions.routes`:
 *
 *   GET  /scep?operation=GetCACaps | GetCACert | PKIOperation&message=...   (RFC 8894)
 *   POST /scep?operation=PKIOperation                                       body: the DER message
 *   GET  /mdm/enroll[?c=<one-time challenge>]   the signed enrollment profile
 *   POST /api/v1/enrollments                    admin: a one-time challenge and its profile URL;
 *                                               body {"serial": ..., "udid": ...} (optional) ties it to one device
 *
 * The built-in CA (`<dataDir>/ca/`, created on first use) is added to the server's trust store, so
 * every identity it issues passes the device identity checks with no further configuration.
 */
import { join } from 'node:path';
import Router from '@koa/router';
import type { Context } from 'koa';
import getRawBody from 'raw-body';
import type { DeviceState } from '../http/context.js';
import { ProtocolError } from '../protocol/errors.js';
import { ROUTER_OPTIONS } from '../http/api.js';
import { jsonBody, type BodyState } from '../http/validate-body.js';
import { EnrollmentRequest } from '../schema/api.js';
import type { RouteDeps } from '../server.js';
import { ScepAuthority, ScepMalformed } from './authority.js';
import { IssuanceLedger, sha256Hex } from './renewals.js';
import { loadOrCreateCaStore, type CaStore } from './ca-store.js';
import { ChallengeStore, type ChallengeBinding } from './challenges.js';
import { buildEnrollmentProfile, PROFILE_CONTENT_TYPE, signProfile } from './profile.js';
import { CA_CAPS } from './scep.js';

export interface ScepRoutesOptions {
  /** A challenge every device may use (e.g. from ORCHARD_SCEP_CHALLENGE). Without it, only one-time challenges. */
  staticChallenge?: string;
  /** Lifetime of one-time challenges and their profile URLs. Default 1 hour. */
  challengeTtlMs?: number;
  /** Validity of issued identity certificates, in days. Default 365. */
  certDays?: number;
  /** The APNs topic for the MDM payload; a function when the push certificate can change while running. */
  topic?: string | (() => string | undefined);
  organization?: string;
  /** Top-level PayloadIdentifier of the profile; default derived from the public URL. */
  profileIdentifier?: string;
  /** Use this CA instead of `<dataDir>/ca/` (tests, benchmarks). */
  caStore?: CaStore;
  now?: () => Date;
}

/** What the factory built, for callers that want to reach it (tests, `orchard enroll-profile`). */
export interface EnrollmentContext {
  caStore: CaStore;
  challenges: ChallengeStore;
  authority: ScepAuthority;
}

export const DEFAULT_CHALLENGE_TTL_MS = 3600_000;
// A SCEP request is a few KB; nothing legitimate comes near this.
const MAX_SCEP_BODY = 256 * 1024;
const MAX_API_BODY = 4096;

export function challengeDir(dataDir: string): string {
  return join(dataDir, 'enroll', 'challenges');
}

/** Where devices reach us: the configured public URL, else this request's own scheme and host. */
function publicBase(deps: RouteDeps, ctx: Context): string {
  // (Koa 3's ctx.origin is the Origin header, not scheme://host.)
  return (deps.cfg.publicUrl ?? `${ctx.protocol}://${ctx.host}`).replace(/\/+$/, '');
}

function logFields(ctx: Context): DeviceState['log'] | undefined {
  return (ctx.state as Partial<DeviceState>).log;
}

async function pkiMessage(ctx: Context): Promise<Buffer> {
  if (ctx.method === 'GET') {
    const m = ctx.query.message;
    if (typeof m !== 'string' || m.length === 0) throw new ProtocolError(400, 'PKIOperation by GET needs ?message=<base64>');
    // A client that did not URL-encode its base64 has had '+' turned into ' '.
    return Buffer.from(m.replace(/ /g, '+'), 'base64');
  }
  let body: Buffer;
  try {
    body = await getRawBody(ctx.req, { limit: MAX_SCEP_BODY });
  } catch (err) {
    const e = err as { type?: string; message?: string };
    if (e.type === 'entity.too.large') throw new ProtocolError(413, `SCEP message over ${MAX_SCEP_BODY} bytes`);
    throw new ProtocolError(400, `could not read body: ${e.message ?? String(err)}`);
  }
  // Some clients POST base64 text instead of DER.
  if (body.length > 0 && body[0] !== 0x30) body = Buffer.from(body.toString('latin1').trim(), 'base64');
  return body;
}

export function scepRoutes(opts: ScepRoutesOptions = {}, onReady?: (c: EnrollmentContext) => void): (deps: RouteDeps) => Router[] {
  return (deps) => {
    const caStore = opts.caStore ?? loadOrCreateCaStore(deps.cfg.dataDir);
    for (const w of caStore.warnings) deps.log.warn(w);
    if (caStore.created) deps.log.info({ caFile: caStore.caFile }, 'created the SCEP CA');
    deps.trust.addCa(caStore.ca.certPem);
    const challenges = new ChallengeStore({
      dir: challengeDir(deps.cfg.dataDir),
      staticChallenge: opts.staticChallenge,
      ttlMs: opts.challengeTtlMs ?? DEFAULT_CHALLENGE_TTL_MS,
      now: opts.now,
    });
    challenges.prune();
    // What each certificate was issued for: the device identity checks read it.
    const ledger = new IssuanceLedger(join(deps.cfg.dataDir, 'enroll', 'issued'), join(deps.cfg.dataDir, 'enroll', 'renewals'));
    deps.service.useIssuance(ledger.lookup);
    const authority = new ScepAuthority({
      ca: caStore.ca,
      challenges,
      certDays: opts.certDays,
      now: opts.now,
      renewals: (hash) => deps.service.renewalFor(hash),
    });
    onReady?.({ caStore, challenges, authority });
    const topic = () => (typeof opts.topic === 'function' ? opts.topic() : opts.topic);
    const caps = `${CA_CAPS.join('\n')}\n`;

    const device = new Router(ROUTER_OPTIONS);
    const scep = async (ctx: Context) => {
      const op = typeof ctx.query.operation === 'string' ? ctx.query.operation : '';
      const log = logFields(ctx);
      switch (op) {
        case 'GetCACaps':
          ctx.type = 'text/plain';
          ctx.body = caps;
          break;
        case 'GetCACert':
          // One CA that also signs and decrypts: a bare DER certificate (RFC 8894 4.2.1.1).
          ctx.type = 'application/x-x509-ca-cert';
          ctx.body = caStore.ca.certDer;
          break;
        case 'PKIOperation': {
          const der = await pkiMessage(ctx);
          let result;
          try {
            result = await authority.pkiOperationAsync(der);
          } catch (err) {
            if (err instanceof ScepMalformed) throw new ProtocolError(400, err.message);
            throw err;
          }
          if (log) log.outcome = result.outcome;
          const issued = result.issued;
          if (issued?.boundTo) ledger.issuedFor(issued.certDer, issued.boundTo);
          if (issued?.renewedFrom && issued.renewalFor !== undefined) {
            // Recorded first, so a crash before the rebind still lets the renewal take over on first use.
            ledger.renewal(issued.certDer, issued.renewedFrom, issued.renewalFor);
            await deps.service.renewed(issued.renewalFor, sha256Hex(issued.renewedFrom), deps.trust.check(issued.certDer));
          }
          if (issued) {
            deps.log.info(
              {
                serial: issued.serial,
                subject: issued.subject,
                notAfter: issued.notAfter,
                type: issued.messageType,
                challengeKind: issued.challenge,
                issuedFor: issued.boundTo,
                renewalFor: issued.renewalFor,
              },
              'issued device identity',
            );
          }
          ctx.type = 'application/x-pki-message';
          ctx.body = result.body;
          return;
        }
        default:
          throw new ProtocolError(400, `unknown SCEP operation "${op.slice(0, 40)}"`);
      }
      if (log) log.outcome = op;
    };
    device.get('/scep', scep);
    device.post('/scep', scep);

    device.get('/mdm/enroll', (ctx) => {
      const c = ctx.query.c;
      let challenge: string;
      if (c !== undefined) {
        if (typeof c !== 'string' || challenges.check(c) !== 'one-time') throw new ProtocolError(403, 'enrollment link not valid (expired or already used)');
        challenge = c;
      } else if (challenges.staticChallenge !== undefined) {
        challenge = challenges.staticChallenge;
      } else {
        throw new ProtocolError(403, 'enrollment needs a one-time link: POST /api/v1/enrollments (no static SCEP challenge is configured)');
      }
      const t = topic();
      if (!t) {
        ctx.status = 503;
        ctx.type = 'text/plain';
        ctx.body = 'no push topic: the APNs push certificate is not configured\n';
        const log = logFields(ctx);
        if (log) log.reason = 'no push topic';
        return;
      }
      const xml = buildEnrollmentProfile({
        publicUrl: publicBase(deps, ctx),
        challenge,
        topic: t,
        caCertDer: caStore.ca.certDer,
        identifier: opts.profileIdentifier,
        organization: opts.organization,
      });
      ctx.type = PROFILE_CONTENT_TYPE;
      ctx.set('Content-Disposition', 'attachment; filename="enroll.mobileconfig"');
      ctx.set('Cache-Control', 'no-store');
      ctx.body = signProfile(xml, caStore.profileSigner, [caStore.ca.certDer]);
      const log = logFields(ctx);
      if (log) log.outcome = c === undefined ? 'profile (static challenge)' : 'profile (one-time challenge)';
    });

    const api = new Router(ROUTER_OPTIONS);
    // The optional body names the device the challenge is for.
    api.post('/api/v1/enrollments', deps.auth, jsonBody(EnrollmentRequest, { maxBytes: MAX_API_BODY, optional: true, anyMediaType: true }), async (ctx) => {
      const bind: ChallengeBinding = (ctx.state as BodyState<EnrollmentRequest>).body ?? {};
      const { challenge, expiresAt } = challenges.create(undefined, bind);
      const base = publicBase(deps, ctx);
      ctx.status = 201;
      ctx.set('Cache-Control', 'no-store');
      ctx.body = { challenge, profileUrl: `${base}/mdm/enroll?c=${challenge}`, expiresAt: expiresAt.toISOString(), ...bind };
      const log = logFields(ctx);
      if (log)
        log.outcome = `one-time challenge until ${expiresAt.toISOString()}${bind.serial ? ` for serial ${bind.serial}` : ''}${bind.udid ? ` for UDID ${bind.udid}` : ''}`;
    });
    return [device, api];
  };
}
