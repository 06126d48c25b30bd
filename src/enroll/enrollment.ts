/**
 * The enrollment part of the server: the built-in CA (`<dataDir>/ca/`, created on first use), the
 * one-time challenges, the record of what each certificate was issued for, and the SCEP
 * authority. Opening it has the side effects the routes must not have: it creates the CA on disk,
 * adds it to the trust store (so every identity it issues passes the device identity checks) and
 * tells the MDM service what each certificate was issued for. The composition root opens it once.
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { TrustStore } from '../identity/trust.js';
import type { MdmService } from '../mdm/service.js';
import { ScepAuthority } from './authority.js';
import { loadOrCreateCaStore, type CaStore } from './ca-store.js';
import { ChallengeStore } from './challenges.js';
import { IssuanceLedger } from './renewals.js';

export interface EnrollmentOptions {
  /** A challenge every device may use (e.g. from ORCHARD_SCEP_CHALLENGE). Without it, only one-time challenges. */
  staticChallenge?: string;
  /** Lifetime of one-time challenges and their profile URLs. Default 1 hour. */
  challengeTtlMs?: number;
  /** Validity of issued identity certificates, in days. Default 365. */
  certDays?: number;
  /** The APNs topic for the MDM payload; a function when the push certificate can change while running. Default: the imported push certificate's. */
  topic?: string | (() => string | undefined);
  organization?: string;
  /** Top-level PayloadIdentifier of the profile; default derived from the public URL. */
  profileIdentifier?: string;
  /** Use this CA instead of `<dataDir>/ca/` (tests, benchmarks). */
  caStore?: CaStore;
  now?: () => Date;
}

/** The opened part, for the routes and for callers that reach into it (tests, benchmarks). */
export interface Enrollment {
  caStore: CaStore;
  challenges: ChallengeStore;
  authority: ScepAuthority;
  ledger: IssuanceLedger;
  /** The APNs topic now (undefined: no push certificate yet, the profile cannot be built). */
  topic(): string | undefined;
  options: EnrollmentOptions;
}

export const DEFAULT_CHALLENGE_TTL_MS = 3600_000;

export function challengeDir(dataDir: string): string {
  return join(dataDir, 'enroll', 'challenges');
}

export interface EnrollmentParts {
  dataDir: string;
  trust: TrustStore;
  service: MdmService;
  log: Logger;
  /** The topic when the options name none (the root reads the imported push certificate). */
  defaultTopic?: () => string | undefined;
}

export function openEnrollment(opts: EnrollmentOptions, parts: EnrollmentParts): Enrollment {
  const caStore = opts.caStore ?? loadOrCreateCaStore(parts.dataDir);
  for (const w of caStore.warnings) parts.log.warn(w);
  if (caStore.created) parts.log.info({ caFile: caStore.caFile }, 'created the SCEP CA');
  parts.trust.addCa(caStore.ca.certPem);
  const challenges = new ChallengeStore({
    dir: challengeDir(parts.dataDir),
    staticChallenge: opts.staticChallenge,
    ttlMs: opts.challengeTtlMs ?? DEFAULT_CHALLENGE_TTL_MS,
    now: opts.now,
  });
  challenges.prune();
  // What each certificate was issued for: the device identity checks read it.
  const ledger = new IssuanceLedger(join(parts.dataDir, 'enroll', 'issued'), join(parts.dataDir, 'enroll', 'renewals'));
  parts.service.useIssuance(ledger.lookup);
  const authority = new ScepAuthority({
    ca: caStore.ca,
    challenges,
    certDays: opts.certDays,
    now: opts.now,
    renewals: (hash) => parts.service.renewalFor(hash),
  });
  const topic = () => {
    if (typeof opts.topic === 'function') return opts.topic();
    return opts.topic ?? parts.defaultTopic?.();
  };
  return { caStore, challenges, authority, ledger, topic, options: opts };
}
