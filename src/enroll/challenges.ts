/**
 * SCEP challenge passwords: an optional static one from the configuration, and one-time
 * challenges minted by the admin API (or `orchard enroll-profile`), valid for a configured time.
 *
 * One-time challenges live as one file each under `<dataDir>/enroll/challenges/`, named by the
 * SHA-256 of the challenge (the secret itself is never written). Consuming one is unlinking its
 * file, which succeeds exactly once even across processes, so a CLI-minted challenge works in a
 * running server and a restart keeps every unexpired challenge.
 *
 * A one-time challenge may be created for one device (its serial number and/or UDID): the
 * certificate issued for it then speaks only for that device, and proves its serial number.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export type ChallengeKind = 'static' | 'one-time';

export interface ChallengeOptions {
  /** Directory for one-time challenges (created, mode 0700). */
  dir: string;
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

export class ChallengeStore {
  private readonly staticHash?: Buffer;
  private readonly now: () => Date;
  private lastPrune = 0;

  constructor(private readonly opts: ChallengeOptions) {
    if (opts.staticChallenge !== undefined && opts.staticChallenge.length === 0) throw new Error('static SCEP challenge must not be empty');
    if (!(opts.ttlMs > 0)) throw new Error('one-time challenge lifetime must be positive');
    this.staticHash = opts.staticChallenge === undefined ? undefined : sha256(opts.staticChallenge);
    this.now = opts.now ?? (() => new Date());
    mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
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
  create(ttlMs = this.opts.ttlMs, bind: ChallengeBinding = {}): OneTimeChallenge {
    const challenge = randomBytes(20).toString('hex');
    const now = this.now();
    // Expired challenges are swept now and then, so the directory cannot grow without bound.
    if (now.getTime() - this.lastPrune > 600_000) {
      this.lastPrune = now.getTime();
      this.prune();
    }
    const expiresAt = new Date(now.getTime() + ttlMs);
    const entry: Entry = { createdAt: now.toISOString(), expiresAt: expiresAt.toISOString() };
    if (bind.serial !== undefined) entry.serial = bind.serial;
    if (bind.udid !== undefined) entry.udid = bind.udid;
    writeFileSync(this.file(challenge), JSON.stringify(entry), { mode: 0o600, flag: 'wx' });
    return { challenge, expiresAt };
  }

  /** Would `challenge` be accepted now? Does not use it up. */
  check(challenge: string | undefined): ChallengeKind | undefined {
    if (challenge === undefined || challenge.length === 0) return undefined;
    if (this.isStatic(challenge)) return 'static';
    return this.oneTimeExpiry(challenge) !== undefined ? 'one-time' : undefined;
  }

  /** When a valid one-time challenge expires. */
  expiresAt(challenge: string): Date | undefined {
    return this.oneTimeExpiry(challenge);
  }

  /** Accept `challenge` and, if it is a one-time challenge, use it up. */
  consume(challenge: string | undefined): ChallengeKind | undefined {
    return this.redeem(challenge)?.kind;
  }

  /** Like `consume`, also saying which device a one-time challenge was created for. */
  redeem(challenge: string | undefined): Redeemed | undefined {
    if (challenge === undefined || challenge.length === 0) return undefined;
    if (this.isStatic(challenge)) return { kind: 'static' };
    const entry = this.readEntry(this.file(challenge));
    if (entry === undefined || entry.expiresAt <= this.now().getTime()) return undefined;
    try {
      unlinkSync(this.file(challenge));
    } catch {
      return undefined; // used up meanwhile (another request or process)
    }
    return { kind: 'one-time', ...(entry.serial !== undefined ? { serial: entry.serial } : {}), ...(entry.udid !== undefined ? { udid: entry.udid } : {}) };
  }

  /** Delete expired one-time challenges; returns how many. */
  prune(): number {
    let n = 0;
    for (const name of readdirSync(this.opts.dir)) {
      if (!HASH_NAME.test(name)) continue;
      const expiry = this.readExpiry(join(this.opts.dir, name));
      if (expiry !== undefined && expiry > this.now().getTime()) continue;
      try {
        unlinkSync(join(this.opts.dir, name));
        n++;
      } catch {
        // already gone
      }
    }
    return n;
  }

  private isStatic(challenge: string): boolean {
    return this.staticHash !== undefined && timingSafeEqual(sha256(challenge), this.staticHash);
  }

  private file(challenge: string): string {
    return join(this.opts.dir, sha256(challenge).toString('hex'));
  }

  private oneTimeExpiry(challenge: string): Date | undefined {
    const expiry = this.readExpiry(this.file(challenge));
    if (expiry === undefined || expiry <= this.now().getTime()) return undefined;
    return new Date(expiry);
  }

  private readExpiry(file: string): number | undefined {
    return this.readEntry(file)?.expiresAt;
  }

  private readEntry(file: string): (ChallengeBinding & { expiresAt: number }) | undefined {
    try {
      const entry = JSON.parse(readFileSync(file, 'utf8')) as Partial<Entry>;
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
}
