/**
 * Which replica runs the fleet-wide work (the git source, fleet-wide reconciles, drift checks,
 * compaction): the holder of the store's `leader` lease (src/store/lease.ts). Every replica keeps
 * trying to take it; the holder renews it at a third of its time to live. 'elected' comes with the
 * fencing token; 'deposed' when a renewal fails or comes too late (another replica may hold it
 * by then), so the work stops before a second leader could start its own.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { LeaseStore } from '../store/lease.js';

export interface LeadershipOptions {
  store: LeaseStore;
  log: Logger;
  /** Default: a random id per process. */
  holder?: string;
  name?: string;
  /** Default 15 s: how long a dead leader keeps the others waiting. */
  ttlMs?: number;
  now?: () => Date;
}

export class Leadership extends EventEmitter<{ elected: [number]; deposed: [] }> {
  readonly holder: string;
  private readonly name: string;
  private readonly ttlMs: number;
  private readonly now: () => Date;
  private timer?: NodeJS.Timeout;
  private held?: { token: number; expiresAt: number };
  private stopped = false;

  constructor(private readonly opts: LeadershipOptions) {
    super();
    this.holder = opts.holder ?? randomUUID();
    this.name = opts.name ?? 'leader';
    this.ttlMs = opts.ttlMs ?? 15_000;
    this.now = opts.now ?? (() => new Date());
  }

  get isLeader(): boolean {
    return this.held !== undefined;
  }

  /** The fencing token while leader. */
  get token(): number | undefined {
    return this.held?.token;
  }

  /** One attempt now (so a lone replica is leader when this resolves), then one every ttl/3. */
  async start(): Promise<void> {
    await this.renew();
    this.schedule();
  }

  /** Stop trying; a leader releases the lease, so another replica need not wait for it to expire. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.held) {
      this.held = undefined;
      this.emit('deposed');
      await this.opts.store.releaseLease(this.name, this.holder).catch((err: unknown) => this.opts.log.warn({ err }, 'could not release the leader lease'));
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.renew().finally(() => this.schedule()), Math.max(10, Math.floor(this.ttlMs / 3)));
    this.timer.unref();
  }

  /** One attempt to take or renew the lease now (the timer calls it; so may a caller that cannot wait). */
  async renew(): Promise<void> {
    if (this.stopped) return;
    const at = this.now();
    // Renewing after our lease ran out: someone else may have led meanwhile.
    if (this.held && this.held.expiresAt <= at.getTime()) this.depose();
    let lease;
    try {
      lease = await this.opts.store.acquireLease(this.name, this.holder, this.ttlMs, at);
    } catch (err) {
      this.opts.log.warn({ err }, 'leader lease: the store did not answer');
      if (this.held) this.depose();
      return;
    }
    if (this.stopped) return;
    if (!lease) {
      if (this.held) this.depose();
      return;
    }
    const token = lease.token;
    const wasToken = this.held?.token;
    this.held = { token, expiresAt: lease.expiresAt.getTime() };
    if (wasToken !== token) {
      this.opts.log.info({ holder: this.holder, token }, 'leader lease taken: running the fleet-wide work');
      this.emit('elected', token);
    }
  }

  private depose(): void {
    this.held = undefined;
    this.opts.log.warn({ holder: this.holder }, 'leader lease lost: fleet-wide work stops');
    this.emit('deposed');
  }
}
