/**
 * The device tokens APNs refused (410 Unregistered, 400 BadDeviceToken), per enrollment, until a
 * TokenUpdate brings another. Read on every push, so answered from memory; written through to the
 * store's material (kind `push-suppression`, key the enrollment id, value the token), so a restart
 * and every other replica on the store keep them: loaded at start and again every `refreshMs`
 * (a replica that has not seen another's refusal yet pushes once more, APNs refuses again, and it
 * knows). A store failure is logged, never thrown: suppression saves pushes, it decides nothing.
 */
import type { Logger } from 'pino';
import type { MaterialStore } from '../store/material.js';
import { allPages } from '../store/paging.js';

const KIND = 'push-suppression';
/** A refused token is forgotten after this (a device gone for good leaves nothing behind forever); pushing it again costs one request. */
const DEFAULT_TTL_MS = 90 * 86_400_000;

export interface SuppressionStore {
  store: Pick<MaterialStore, 'putMaterial' | 'deleteMaterial' | 'listMaterial'>;
  /** How often the other replicas' refusals are read (default 60 s). */
  refreshMs?: number;
  ttlMs?: number;
}

export class SuppressedTokens {
  private tokens = new Map<string, string>();
  private readonly timer?: NodeJS.Timeout;
  private loading?: Promise<void>;

  constructor(
    private readonly persist: SuppressionStore | undefined,
    private readonly log: Logger,
  ) {
    if (!persist) return;
    this.loading = this.load();
    this.timer = setInterval(() => void this.load(), persist.refreshMs ?? 60_000);
    this.timer.unref();
  }

  /** The refused token of the enrollment, lower-case hex. */
  get(enrollmentId: string): string | undefined {
    return this.tokens.get(enrollmentId);
  }
  get size(): number {
    return this.tokens.size;
  }

  suppress(enrollmentId: string, token: string): void {
    this.tokens.set(enrollmentId, token);
    const store = this.persist;
    if (!store) return;
    const expiresAt = new Date(Date.now() + (store.ttlMs ?? DEFAULT_TTL_MS));
    this.write('keep', enrollmentId, () => store.store.putMaterial(KIND, enrollmentId, Buffer.from(token), { expiresAt }));
  }

  lift(enrollmentId: string): void {
    if (!this.tokens.delete(enrollmentId)) return;
    const store = this.persist;
    if (store) this.write('lift', enrollmentId, () => store.store.deleteMaterial(KIND, enrollmentId));
  }

  /** Resolves once the stored suppressions were first read (at once without a store). */
  async loaded(): Promise<void> {
    await this.loading;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** The store is the truth: what it holds replaces what is in memory. */
  private async load(): Promise<void> {
    if (!this.persist) return;
    try {
      const items = await allPages((page) => this.persist!.store.listMaterial(KIND, page));
      this.tokens = new Map(items.map((i) => [i.key, i.value.toString()]));
    } catch (err) {
      this.log.warn({ err }, 'reading the suppressed push tokens from the store failed: keeping those in memory');
    }
  }

  private write(what: 'keep' | 'lift', enrollmentId: string, op: () => Promise<unknown>): void {
    op().catch((err: unknown) => this.log.warn({ err, enrollment: enrollmentId }, `could not ${what} the push token suppression in the store`));
  }
}
