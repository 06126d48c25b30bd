/**
 * Enrollment routes (mounted by the composition root when enrollment is on):
 *
 *   GET  /scep?operation=GetCACaps | GetCACert | PKIOperation&message=...   (RFC 8894)
 *   POST /scep?operation=PKIOperation                                       body: the DER message
 *   GET  /mdm/enroll[?c=<one-time challenge>]   the signed enrollment profile
 *   POST /api/v1/enrollments                    admin: a one-time challenge and its profile URL;
 *                                               body {"serial": ..., "udid": ...} (optional) ties it to one device
 *
 * The routes only answer: the built-in CA, the challenges and the issuance records are opened
 * once by the root (src/enroll/enrollment.ts), which also adds the CA to the trust store.
 */
import Router from '@koa/router';
import type { Context } from 'koa';
import getRawBody from 'raw-body';
import type { DeviceState } from './context.js';
import { ROUTER_OPTIONS } from './api.js';
import { readBody } from './device.js';
import { jsonBody, type BodyState } from './validate-body.js';
import type { EnrollmentRequest } from '../schema/api.js';
import { apiSchema } from '../schema/lazy-api.js';
import { Unavailable } from '../errors.js';
import { ProtocolError } from '../protocol/errors.js';
import type { RouteDeps } from './deps.js';
import { ScepMalformed, type IssuedCertificate } from '../enroll/authority.js';
import { sha256Hex } from '../enroll/renewals.js';
import type { ChallengeBinding } from '../enroll/challenges.js';
import type { Enrollment } from '../enroll/enrollment.js';
import { buildEnrollmentProfile, PROFILE_CONTENT_TYPE, signProfile } from '../enroll/profile.js';
import { CA_CAPS } from '../enroll/scep.js';
import { readSignedData } from '../asn1/signed-data.js';
import { parsePlistDict, type PlistDict } from '../protocol/plist.js';
import { SERIAL as ABM_SERIAL } from '../abm/sync.js';

// A SCEP request is a few KB; nothing legitimate comes near this.
const MAX_SCEP_BODY = 256 * 1024;
const MAX_API_BODY = 4096;

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

/** The SCEP endpoint, the enrollment profile and the admin route for one-time links; none without enrollment. */
export function scepRoutes(deps: RouteDeps): Router[] {
  const e = deps.enrollment;
  if (!e) return [];
  const device = new Router(ROUTER_OPTIONS);
  const scep = scepHandler(deps, e);
  device.get('/scep', scep);
  device.post('/scep', scep);
  device.get('/mdm/enroll', profileHandler(deps, e));
  device.post('/mdm/enroll', readBody({ limit: MAX_DEVICE_INFO, timeoutMs: deps.cfg.requestTimeoutMs }), setupAssistantHandler(deps, e));
  const api = new Router(ROUTER_OPTIONS);
  // The optional body names the device the challenge is for.
  api.post(
    '/api/v1/enrollments',
    deps.auth,
    jsonBody(apiSchema('EnrollmentRequest'), { maxBytes: MAX_API_BODY, optional: true, anyMediaType: true }),
    oneTimeLinkHandler(deps, e),
  );
  return [device, api];
}

/** GET/POST /scep: GetCACaps, GetCACert, PKIOperation (RFC 8894). */
function scepHandler(deps: RouteDeps, e: Enrollment): (ctx: Context) => Promise<void> {
  const caps = `${CA_CAPS.join('\n')}\n`;
  return async (ctx) => {
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
        ctx.body = e.caStore.ca.certDer;
        break;
      case 'PKIOperation': {
        const der = await pkiMessage(ctx);
        let result;
        try {
          result = await e.authority.pkiOperationAsync(der);
        } catch (err) {
          if (err instanceof ScepMalformed) throw new ProtocolError(400, err.message, { cause: err });
          throw err;
        }
        if (log) log.outcome = result.outcome;
        await recordIssued(deps, e, result.issued);
        ctx.type = 'application/x-pki-message';
        ctx.body = result.body;
        return;
      }
      default:
        throw new ProtocolError(400, `unknown SCEP operation "${op.slice(0, 40)}"`);
    }
    if (log) log.outcome = op;
  };
}

/** What an issued certificate was for, a renewal's rebind, and the log line. */
async function recordIssued(deps: RouteDeps, e: Enrollment, issued: IssuedCertificate | undefined): Promise<void> {
  if (!issued) return;
  if (issued.boundTo) await e.ledger.issuedFor(issued.certDer, issued.boundTo);
  if (issued.renewedFrom && issued.renewalFor !== undefined) {
    // Recorded first, so a crash before the rebind still lets the renewal take over on first use.
    await e.ledger.renewal(issued.certDer, issued.renewedFrom, issued.renewalFor);
    await deps.service.renewed(issued.renewalFor, sha256Hex(issued.renewedFrom), deps.trust.check(issued.certDer));
  }
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

/** The device information Setup Assistant posts is a few hundred bytes. */
const MAX_DEVICE_INFO = 64 * 1024;

/** What Setup Assistant says about the device when it fetches the enrollment profile (Apple: "MDM server URL"). */
export interface SetupAssistantRequest {
  SERIAL: string;
  UDID: string;
  PRODUCT?: string;
  VERSION?: string;
}

/**
 * POST /mdm/enroll: Setup Assistant (Automated Device Enrollment) fetching the profile the ABM
 * enrollment profile's url points at, with the device's information: a plist, CMS-signed by the
 * device (Apple's device certificate; its signature is not checked here).
 *
 * With ABM in use (a server token imported), the serial must be one ABM assigned to this server:
 * its profile then carries a one-time challenge created for that serial and UDID, so the
 * certificate SCEP issues for it speaks only for that device and proves its serial (the ABM
 * record's facts are proven). A serial ABM did not assign here is refused with a 403: such a
 * device did not get this URL from ABM, and Setup Assistant shows the refusal and lets the user
 * retry, rather than the device enrolling with a certificate that proves nothing (nothing ABM
 * says about it would hold). Without ABM, the shared profile (static challenge) as before.
 */
function setupAssistantHandler(deps: RouteDeps, e: Enrollment): (ctx: Context) => Promise<void> {
  return async (ctx) => {
    // Read (within the limit and the deadline) by readBody, as every device body is.
    const info = setupAssistantRequest((ctx.state as DeviceState).body!);
    const abm = await deps.abm.assignment(info.SERIAL);
    const log = logFields(ctx);
    if (abm.state === 'unassigned') {
      deps.log.warn({ serial: info.SERIAL, udid: info.UDID }, 'Setup Assistant enrollment refused: the serial is not assigned to this MDM server in ABM');
      throw new ProtocolError(
        403,
        `serial number ${info.SERIAL} is not assigned to this MDM server in Apple Business Manager (not in its ABM inventory): assign it in ABM, or wait for the next ABM sync`,
      );
    }
    if (abm.state === 'assigned') {
      const bound = await e.challenges.create(undefined, { serial: info.SERIAL, udid: info.UDID });
      serveProfile(deps, e, ctx, bound.challenge);
      if (log) log.outcome = `profile (Setup Assistant, ABM serial ${info.SERIAL}, challenge bound to it)`;
      return;
    }
    serveProfile(deps, e, ctx, sharedChallenge(e));
    if (log) log.outcome = `profile (Setup Assistant, serial ${info.SERIAL})`;
  };
}

export function setupAssistantRequest(body: Buffer): SetupAssistantRequest {
  let plist = body;
  if (body[0] === 0x30) {
    try {
      plist = readSignedData(body, 'device information').content ?? Buffer.alloc(0);
    } catch (err) {
      throw new ProtocolError(400, `device information: ${(err as Error).message}`);
    }
  }
  let dict: PlistDict;
  try {
    dict = parsePlistDict(plist);
  } catch (err) {
    throw new ProtocolError(400, `device information is not a plist: ${(err as Error).message}`);
  }
  const text = (k: string) => (typeof dict[k] === 'string' && dict[k] !== '' ? (dict[k] as string) : undefined);
  const SERIAL = text('SERIAL');
  const UDID = text('UDID');
  if (!SERIAL || !UDID) throw new ProtocolError(400, `device information without ${SERIAL ? 'UDID' : 'SERIAL'}`);
  if (!ABM_SERIAL.test(SERIAL)) throw new ProtocolError(400, 'device information: SERIAL is not a serial number (letters, digits, ".", "_", "-"; at most 64)');
  return { SERIAL, UDID, PRODUCT: text('PRODUCT'), VERSION: text('VERSION') };
}

/** The static challenge, for the shared profile; 403 when only one-time links enroll. */
function sharedChallenge(e: Enrollment): string {
  if (e.challenges.staticChallenge !== undefined) return e.challenges.staticChallenge;
  throw new ProtocolError(403, 'enrollment needs a one-time link: POST /api/v1/enrollments (no static SCEP challenge is configured)');
}

/** GET /mdm/enroll[?c=<one-time challenge>]: the signed enrollment profile. */
function profileHandler(deps: RouteDeps, e: Enrollment): (ctx: Context) => Promise<void> {
  return async (ctx) => {
    const c = ctx.query.c;
    if (c !== undefined && (typeof c !== 'string' || (await e.challenges.check(c)) !== 'one-time'))
      throw new ProtocolError(403, 'enrollment link not valid (expired or already used)');
    serveProfile(deps, e, ctx, c ?? sharedChallenge(e));
    const log = logFields(ctx);
    if (log) log.outcome = c === undefined ? 'profile (static challenge)' : 'profile (one-time challenge)';
  };
}

/** Answers the enrollment profile with `challenge` in its SCEP payload, signed. */
function serveProfile(deps: RouteDeps, e: Enrollment, ctx: Context, challenge: string): void {
  const topic = e.topic();
  if (!topic) throw new Unavailable('no push topic: the APNs push certificate is not configured');
  const xml = buildEnrollmentProfile({
    publicUrl: publicBase(deps, ctx),
    challenge,
    topic,
    caCertDer: e.caStore.ca.certDer,
    identifier: e.options.profileIdentifier,
    organization: e.options.organization,
  });
  ctx.type = PROFILE_CONTENT_TYPE;
  ctx.set('Content-Disposition', 'attachment; filename="enroll.mobileconfig"');
  ctx.set('Cache-Control', 'no-store');
  ctx.body = signProfile(xml, e.caStore.profileSigner, [e.caStore.ca.certDer]);
}

/** POST /api/v1/enrollments (admin): a one-time challenge and its profile URL, optionally for one device. */
function oneTimeLinkHandler(deps: RouteDeps, e: Enrollment): (ctx: Context) => Promise<void> {
  return async (ctx) => {
    const bind: ChallengeBinding = (ctx.state as BodyState<EnrollmentRequest>).body ?? {};
    const { challenge, expiresAt } = await e.challenges.create(undefined, bind);
    const base = publicBase(deps, ctx);
    ctx.status = 201;
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { challenge, profileUrl: `${base}/mdm/enroll?c=${challenge}`, expiresAt: expiresAt.toISOString(), ...bind };
    const log = logFields(ctx);
    if (log)
      log.outcome = `one-time challenge until ${expiresAt.toISOString()}${bind.serial ? ` for serial ${bind.serial}` : ''}${bind.udid ? ` for UDID ${bind.udid}` : ''}`;
  };
}
