/**
 * The enrollment part of the server: the built-in CA, the one-time challenges, the record of what
 * each certificate was issued for, and the SCEP authority with its recent transactions, all in the
 * store (so any replica on it enrolls and renews). Opening it has the side effects the routes
 * must not have: it creates the CA in the store (or imports an earlier version's files), adds it
 * to the trust store (so every identity it issues passes the device identity checks) and tells
 * the MDM service what each certificate was issued for. The composition root opens it once.
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { TrustStore } from '../identity/trust.js';
import type { MdmService } from '../mdm/service.js';
import { ScepAuthority } from './authority.js';
import type { MaterialStore } from '../store/material.js';
import type { Sealer } from '../store/sealing.js';
import { openStoredCa, type CaStore } from './ca-store.js';
import { ChallengeStore, importChallengeFiles } from './challenges.js';
import { IssuanceLedger, importIssuanceFiles } from './renewals.js';
import { storeTransactions } from './scep-transactions.js';

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
  /** Use this CA instead of the store's (tests, benchmarks). */
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

/** Where earlier versions kept one-time challenges (moved into the store at start). */
export function challengeDir(dataDir: string): string {
  return join(dataDir, 'enroll', 'challenges');
}

export interface EnrollmentParts {
  dataDir: string;
  store: MaterialStore;
  /** Seals the CA's keys in the store. */
  sealer: Sealer;
  trust: TrustStore;
  service: MdmService;
  log: Logger;
  /** The topic when the options name none (the root reads the imported push certificate). */
  defaultTopic?: () => string | undefined;
}

export async function openEnrollment(opts: EnrollmentOptions, parts: EnrollmentParts): Promise<Enrollment> {
  const caStore = opts.caStore ?? (await openStoredCa(parts.store, parts.sealer, parts.dataDir));
  for (const w of caStore.warnings) parts.log.warn(w);
  if (caStore.created) parts.log.info({ caFile: caStore.caFile }, 'created the SCEP CA in the store');
  if (caStore.imported) parts.log.info({ from: join(parts.dataDir, 'ca') }, 'imported the SCEP CA into the store (the files there are no longer read)');
  parts.trust.addCa(caStore.ca.certPem);
  // An earlier version's files, moved into the store once.
  const movedChallenges = await importChallengeFiles(parts.store, challengeDir(parts.dataDir));
  const movedRecords = await importIssuanceFiles(parts.store, {
    issued: join(parts.dataDir, 'enroll', 'issued'),
    renewals: join(parts.dataDir, 'enroll', 'renewals'),
  });
  if (movedChallenges + movedRecords > 0) parts.log.info({ challenges: movedChallenges, issuance: movedRecords }, 'moved enrollment files into the store');
  const challenges = new ChallengeStore({
    store: parts.store,
    staticChallenge: opts.staticChallenge,
    ttlMs: opts.challengeTtlMs ?? DEFAULT_CHALLENGE_TTL_MS,
    now: opts.now,
  });
  await challenges.prune();
  // What each certificate was issued for: the device identity checks read it.
  const ledger = new IssuanceLedger(parts.store);
  parts.service.useIssuance(ledger.lookup);
  const authority = new ScepAuthority({
    ca: caStore.ca,
    challenges,
    transactions: storeTransactions(parts.store),
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
