/**
 * Replay protection for the check-in messages that change state (Authenticate, TokenUpdate,
 * CheckOut, SetBootstrapToken). The protocol has no nonce, and a device's RSA PKCS#1 v1.5
 * signature without signed attributes is deterministic, so a device resending after a timeout
 * sends exactly what an attacker replaying a captured message would. Neither is applied twice:
 * an exact repeat within the window is answered as a success and has no effect.
 *
 * A message is "the same" when the same certificate signed the same body bytes. The key leaves
 * the CMS envelope out on purpose: without the key, anyone can re-encode it (BER lengths, more or
 * fewer certificates, unsigned attributes, an ECDSA signature's s as n - s) and still verify.
 */
import { createHash } from 'node:crypto';

export interface ReplayOptions {
  /** How long a message is remembered; 0 turns the guard off. */
  windowMs: number;
  /** At most this many messages are remembered; the oldest is forgotten first. */
  maxEntries: number;
  /** At most this many per device, so one device's messages cannot push out another's. */
  maxPerDevice?: number;
  now?: () => number;
}

interface Seen {
  at: number;
  deviceId: string;
}

export class ReplayGuard {
  // Insertion order is first-seen order: expiry and eviction both take from the front.
  private readonly seen = new Map<string, Seen>();
  private readonly byDevice = new Map<string, string[]>();
  // An identical message still being applied: a concurrent repeat waits for its outcome.
  private readonly pending = new Map<string, Promise<boolean>>();
  private readonly now: () => number;
  private readonly maxPerDevice: number;

  constructor(private readonly opts: ReplayOptions) {
    this.now = opts.now ?? Date.now;
    this.maxPerDevice = opts.maxPerDevice ?? 32;
  }

  get enabled(): boolean {
    return this.opts.windowMs > 0;
  }

  get size(): number {
    return this.seen.size;
  }

  /** The key of a message: its signer's certificate hash and its exact body. */
  static key(certHash: string, body: Buffer): string {
    return createHash('sha256').update(certHash).update('\0').update(body).digest('base64');
  }

  /**
   * Apply a message unless the same one was applied within the window. `applied` says whether
   * the outcome changed state (a refusal is not remembered, so its repeat is judged afresh).
   */
  async once<T>(
    key: string,
    deviceId: string,
    apply: () => Promise<T>,
    applied: (result: T) => boolean,
  ): Promise<{ replay: true } | { replay: false; result: T }> {
    if (!this.enabled) return { replay: false, result: await apply() };
    for (;;) {
      this.expire();
      if (this.seen.has(key)) return { replay: true };
      const inFlight = this.pending.get(key);
      if (!inFlight) break;
      if (await inFlight) return { replay: true };
    }
    let settle!: (applied: boolean) => void;
    this.pending.set(
      key,
      new Promise<boolean>((resolve) => {
        settle = resolve;
      }),
    );
    let ok = false;
    try {
      const result = await apply();
      ok = applied(result);
      if (ok) this.remember(key, deviceId);
      return { replay: false, result };
    } finally {
      this.pending.delete(key);
      settle(ok);
    }
  }

  private remember(key: string, deviceId: string): void {
    this.seen.set(key, { at: this.now(), deviceId });
    const keys = this.byDevice.get(deviceId) ?? [];
    keys.push(key);
    this.byDevice.set(deviceId, keys);
    if (keys.length > this.maxPerDevice) this.seen.delete(keys.shift()!);
    while (this.seen.size > this.opts.maxEntries) this.forgetOldest();
  }

  private expire(): void {
    const cutoff = this.now() - this.opts.windowMs;
    for (const [, s] of this.seen) {
      if (s.at > cutoff) break;
      this.forgetOldest();
    }
  }

  /** The globally oldest message is also the oldest of its device. */
  private forgetOldest(): void {
    const [key, s] = this.seen.entries().next().value as [string, Seen];
    this.seen.delete(key);
    const keys = this.byDevice.get(s.deviceId);
    if (keys?.[0] === key) keys.shift();
    if (keys?.length === 0) this.byDevice.delete(s.deviceId);
  }
}
