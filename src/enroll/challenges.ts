/**
 * SCEP challenge passwords: an optional static one from the configuration, and one-time
 * challenges minted by the admin API (or `orchard enroll-profile`), valid for a configured time.
 *
 * One-time challenges are kept in the store (kind `challenge`, keyed by the SHA-256 of the
 * challenge: the secret itself is never stored), so one minted on one replica or by the CLI works
 * on every server on that store. Consuming one is `takeMaterial`, which succeeds exactly once
 * across processes. Earlier versions kept one file each under `<dataDir>/enroll/challenges/`:
 * `importChallengeFiles` moves them into the store once.
 *
 * A one-time challenge may be created for one device (its serial number and/or UDID): the
 * certificate issued for it then speaks only for that device, and proves its serial number.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync, readdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { MaterialStore } from '../store/material.js';

export type ChallengeKind = 'static' | 'one-time';

export interface ChallengeOptions {
  /** Where one-time challenges live. */
  store: MaterialStore;
  /** A static challenge accepted any number of times. */
  staticChallenge?: string;
  /** Validity of one-time challenges. */
  ttlMs: number;
  now?: () => Date;
}

export interface OneTimeChallenge {
  challenge: string;
  expiresAt: Date;
}

/** The device a one-time challenge was created for. */
export interface ChallengeBinding {
  serial?: string;
  udid?: string;
}

/** An accepted challenge: its kind and, for a one-time challenge created for a device, that device. */
export interface Redeemed extends ChallengeBinding {
  kind: ChallengeKind;
}

interface Entry extends ChallengeBinding {
  createdAt: string;
  expiresAt: string;
}

const HASH_NAME = /^[0-9a-f]{64}$/;

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** The stored value of a one-time challenge. */
function parseEntry(text: string): (ChallengeBinding & { expiresAt: number }) | undefined {
  try {
    const entry = JSON.parse(text) as Partial<Entry>;
    const t = typeof entry.expiresAt === 'string' ? Date.parse(entry.expiresAt) : NaN;
    if (!Number.isFinite(t)) return undefined;
    return {
      expiresAt: t,
      ...(typeof entry.serial === 'string' ? { serial: entry.serial } : {}),
      ...(typeof entry.udid === 'string' ? { udid: entry.udid } : {}),
    };
  } catch {
    return undefined;
  }
}

/**
 * Moves the challenge files of an earlier version (`dir`, one per challenge, named by its hash)
 * into the store, unexpired ones with their expiry; each file is deleted once stored. Returns
 * how many were moved.
 */
export async function importChallengeFiles(store: MaterialStore, dir: string, now = new Date()): Promise<number> {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return 0;
  }
  let n = 0;
  for (const name of names) {
    if (!HASH_NAME.test(name)) continue;
    const file = join(dir, name);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    const entry = parseEntry(text);
    if (entry && entry.expiresAt > now.getTime()) {
      await store.putMaterial('challenge', name, Buffer.from(text, 'utf8'), { expiresAt: new Date(entry.expiresAt), ifAbsent: true });
      n++;
    }
    try {
      unlinkSync(file);
    } catch {
      // gone meanwhile
    }
  }
  return n;
}

export class ChallengeStore {
  private readonly staticHash?: Buffer;
  private readonly now: () => Date;
  private lastPrune = 0;

  constructor(private readonly opts: ChallengeOptions) {
    if (opts.staticChallenge !== undefined && opts.staticChallenge.length === 0) throw new Error('static SCEP challenge must not be empty');
    if (!(opts.ttlMs > 0)) throw new Error('one-time challenge lifetime must be positive');
    this.staticHash = opts.staticChallenge === undefined ? undefined : sha256(opts.staticChallenge);
    this.now = opts.now ?? (() => new Date());
  }

  get hasStatic(): boolean {
    return this.staticHash !== undefined;
  }

  /** The static challenge, for building the shared enrollment profile. */
  get staticChallenge(): string | undefined {
    return this.opts.staticChallenge;
  }

  get ttlMs(): number {
    return this.opts.ttlMs;
  }

  /** Mint a one-time challenge (for one device, with `bind`). 160 random bits as hex: printable in any CSR string type. */
  async create(ttlMs = this.opts.ttlMs, bind: ChallengeBinding = {}): Promise<OneTimeChallenge> {
    const challenge = randomBytes(20).toString('hex');
    const now = this.now();
    // Expired challenges are swept now and then, so the store cannot grow without bound.
    if (now.getTime() - this.lastPrune > 600_000) {
      this.lastPrune = now.getTime();
      await this.prune();
    }
    const expiresAt = new Date(now.getTime() + ttlMs);
    const entry: Entry = { createdAt: now.toISOString(), expiresAt: expiresAt.toISOString() };
    if (bind.serial !== undefined) entry.serial = bind.serial;
    if (bind.udid !== undefined) entry.udid = bind.udid;
    await this.opts.store.putMaterial('challenge', this.key(challenge), Buffer.from(JSON.stringify(entry), 'utf8'), { expiresAt });
    return { challenge, expiresAt };
  }

  /** Would `challenge` be accepted now? Does not use it up. */
  async check(challenge: string | undefined): Promise<ChallengeKind | undefined> {
    if (challenge === undefined || challenge.length === 0) return undefined;
    if (this.isStatic(challenge)) return 'static';
    return (await this.oneTime(challenge)) !== undefined ? 'one-time' : undefined;
  }

  /** When a valid one-time challenge expires. */
  async expiresAt(challenge: string): Promise<Date | undefined> {
    const e = await this.oneTime(challenge);
    return e && new Date(e.expiresAt);
  }

  /** Accept `challenge` and, if it is a one-time challenge, use it up. */
  async consume(challenge: string | undefined): Promise<ChallengeKind | undefined> {
    return (await this.redeem(challenge))?.kind;
  }

  /** Like `consume`, also saying which device a one-time challenge was created for. */
  async redeem(challenge: string | undefined): Promise<Redeemed | undefined> {
    if (challenge === undefined || challenge.length === 0) return undefined;
    if (this.isStatic(challenge)) return { kind: 'static' };
    // Exactly once, across every process on the store: of concurrent takers one gets the value.
    const v = await this.opts.store.takeMaterial('challenge', this.key(challenge), this.now());
    const entry = v && parseEntry(v.toString('utf8'));
    if (entry === undefined || entry.expiresAt <= this.now().getTime()) return undefined;
    return { kind: 'one-time', ...(entry.serial !== undefined ? { serial: entry.serial } : {}), ...(entry.udid !== undefined ? { udid: entry.udid } : {}) };
  }

  /** Delete expired one-time challenges; returns how many. */
  prune(): Promise<number> {
    return this.opts.store.pruneMaterial('challenge', this.now());
  }

  private isStatic(challenge: string): boolean {
    return this.staticHash !== undefined && timingSafeEqual(sha256(challenge), this.staticHash);
  }

  private key(challenge: string): string {
    return sha256(challenge).toString('hex');
  }

  private async oneTime(challenge: string): Promise<(ChallengeBinding & { expiresAt: number }) | undefined> {
    const v = await this.opts.store.getMaterial('challenge', this.key(challenge), this.now());
    const entry = v && parseEntry(v.toString('utf8'));
    return entry && entry.expiresAt > this.now().getTime() ? entry : undefined;
  }
}
