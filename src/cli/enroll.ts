/**
 * CLI entry points for enrollment: `orchard init [DIR]`, `orchard enroll-profile`, and the
 * enrollment options of `orchard serve`. Loaded on demand, like the simulator.
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { ConfigError, loadConfig, parseDuration, type FlagValues, type ServerConfig } from '../config.js';
import { openStoredCa } from '../enroll/ca-store.js';
import { ChallengeStore } from '../enroll/challenges.js';
import { openStoredPushCredentials } from '../push/push-cert.js';
import { openStore } from '../store/open.js';
import { loadSealer, MATERIAL_KEY_ENV } from '../store/sealing.js';
import { initOrchard } from '../enroll/init.js';
import { isDeviceIdentifier } from '../protocol/messages.js';
import { buildEnrollmentProfile, signProfile, topicFromPushCert } from '../enroll/profile.js';
import { DEFAULT_CHALLENGE_TTL_MS, type EnrollmentOptions } from '../enroll/enrollment.js';

/** The static SCEP challenge comes from the environment: a secret has no place in argv or a config file. */
export const STATIC_CHALLENGE_ENV = 'ORCHARD_SCEP_CHALLENGE';

export interface InitFlags {
  publicUrl?: string;
}

export async function runInit(dir: string, flags: InitFlags = {}, env: NodeJS.ProcessEnv = process.env): Promise<{ stdout: string; exitCode: number }> {
  const r = await initOrchard({ dir, publicUrl: flags.publicUrl, materialKey: env[MATERIAL_KEY_ENV] || undefined });
  const rel = (p: string) => relative(process.cwd(), p) || '.';
  const lines = [
    ...r.created.map((p) => `created ${rel(p)}`),
    ...r.kept.map((p) => `kept    ${rel(p)} (exists)`),
    ...r.warnings.map((w) => `warning: ${w}`),
    '',
    `Start the server: npx orchard serve --config ${rel(r.configFile)}`,
    `The SCEP CA is in the store (its certificate: ${rel(r.caFile)}) and trusted for device identities automatically.`,
  ];
  return { stdout: `${lines.join('\n')}\n`, exitCode: 0 };
}

export interface EnrollProfileFlags extends FlagValues {
  /** APNs topic (com.apple.mgmt.External.<uuid>). */
  topic?: string;
  /** Or the push certificate (PEM) to read it from. */
  pushCert?: string;
  /** Always embed a fresh one-time challenge, even when a static one is configured. */
  oneTime?: boolean;
  /** Lifetime of the one-time challenge, e.g. 24h (default 1h). */
  ttl?: string;
  /** A one-time challenge for this device only: its certificate then speaks for that serial / UDID alone. */
  serial?: string;
  udid?: string;
}

export interface EnrollProfileResult {
  /** The signed .mobileconfig (DER). */
  profile: Buffer;
  /** Human notes for stderr (never the challenge). */
  notes: string[];
}

/**
 * `orchard enroll-profile > enroll.mobileconfig`: the same signed profile `GET /mdm/enroll`
 * serves. With ORCHARD_SCEP_CHALLENGE set it embeds that static challenge; otherwise (or with
 * --one-time) a one-time challenge that every server on the same store accepts. It opens the
 * store: on PostgreSQL always possible; the embedded LevelDB store only while no server holds it
 * (else use POST /api/v1/enrollments).
 */
export async function runEnrollProfile(
  flags: EnrollProfileFlags,
  env: NodeJS.ProcessEnv = process.env,
  /** Where the topic comes from without --topic/--push-cert (default: the imported push certificate). */
  defaults: { topic?: (cfg: ServerConfig) => string | undefined } = {},
): Promise<EnrollProfileResult> {
  const cfg = loadConfig(flags);
  if (!cfg.publicUrl) throw new ConfigError('enroll-profile needs --public-url (or publicUrl in the config): the profile tells devices where the server is');
  let topic = flags.topic;
  if (!topic && flags.pushCert) {
    try {
      topic = topicFromPushCert(readFileSync(flags.pushCert));
    } catch (err) {
      throw new ConfigError(`push certificate ${flags.pushCert}: ${(err as Error).message}`);
    }
  }
  topic ??= defaults.topic?.(cfg);
  const bind = { ...(flags.serial ? { serial: flags.serial } : {}), ...(flags.udid ? { udid: flags.udid } : {}) };
  if (flags.udid !== undefined && !isDeviceIdentifier(flags.udid)) throw new ConfigError(`--udid "${flags.udid}" is not a UDID`);
  const ttlMs = flags.ttl ? parseDuration(flags.ttl, 'ttl') : DEFAULT_CHALLENGE_TTL_MS;
  const staticChallenge = env[STATIC_CHALLENGE_ENV] || undefined;
  let store;
  try {
    store = await openStore(cfg);
  } catch (err) {
    throw new ConfigError(
      `cannot open the store (${(err as Error).message.split('\n')[0]}): a running server on the embedded store holds it; ask it instead: POST /api/v1/enrollments`,
      { cause: err },
    );
  }
  try {
    const { sealer, warnings } = loadSealer({ secret: env[MATERIAL_KEY_ENV] || undefined, file: cfg.materialKeyFile, dataDir: cfg.dataDir });
    topic ??= (await openStoredPushCredentials(store, sealer, cfg.dataDir))?.topic;
    if (!topic)
      throw new ConfigError('enroll-profile needs the APNs topic: import the push certificate, or --push-cert FILE, or --topic com.apple.mgmt.External.<uuid>');
    const ca = await openStoredCa(store, sealer, cfg.dataDir);
    const notes = [...warnings, ...ca.warnings];
    if (ca.created) notes.push('created the SCEP CA in the store');
    let challenge: string;
    if (staticChallenge && !flags.oneTime && !flags.serial && !flags.udid) {
      challenge = staticChallenge;
      notes.push(`static SCEP challenge from ${STATIC_CHALLENGE_ENV}`);
    } else {
      const one = await new ChallengeStore({ store, ttlMs, staticChallenge }).create(undefined, bind);
      challenge = one.challenge;
      const who = [bind.serial && `serial ${bind.serial}`, bind.udid && `UDID ${bind.udid}`].filter(Boolean).join(', ');
      notes.push(`one-time SCEP challenge${who ? ` for ${who}` : ''}, valid for one enrollment until ${one.expiresAt.toISOString()}`);
    }
    const xml = buildEnrollmentProfile({ publicUrl: cfg.publicUrl, challenge, topic, caCertDer: ca.ca.certDer });
    return { profile: signProfile(xml, ca.profileSigner, [ca.ca.certDer]), notes };
  } finally {
    await store.close();
  }
}

/**
 * The enrollment options of `orchard serve`: the static challenge from the environment, the rest
 * from `opts` (challenge lifetime, certificate validity; the topic defaults to the imported push
 * certificate's).
 */
export function enrollmentOptions(opts: Omit<EnrollmentOptions, 'staticChallenge'> = {}, env: NodeJS.ProcessEnv = process.env): EnrollmentOptions {
  return { ...opts, staticChallenge: env[STATIC_CHALLENGE_ENV] || undefined };
}
