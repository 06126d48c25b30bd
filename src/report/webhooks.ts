/**
 * Event webhooks: configured URLs receive JSON events
 *   {"id": "<uuid>", "type": "device.enrolled", "at": "<ISO time>", "data": {...}}
 * signed like the git hook: `X-Orchard-Signature: sha256=<hex HMAC-SHA256 of the body>` keyed
 * with the shared secret, plus `X-Orchard-Event` and `X-Orchard-Delivery` (the id; receivers
 * dedupe on it: a delivery may arrive twice when an answer is lost).
 *
 * `emit` never waits: deliveries run in the background, each URL in order, retried with
 * exponential backoff on network errors, 5xx and 429; 4xx other than 429 are not retried.
 * A bounded queue per URL drops the oldest events (logged) if a receiver stays down.
 */
import { createHmac, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { FleetSource } from '../gitops/source.js';
import type { MdmService } from '../mdm/service.js';

export interface WebhookEvent {
  id: string;
  type: string;
  at: string;
  data: Record<string, unknown>;
}

export interface WebhookOptions {
  urls: string[];
  secret: string;
  log: Logger;
  /** Attempts per event (default 6) and backoff (default 1 s doubling up to 5 min). */
  maxAttempts?: number;
  baseMs?: number;
  maxMs?: number;
  /** Per-URL queue bound (default 10,000). */
  maxQueue?: number;
  timeoutMs?: number;
}

export function signWebhook(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

interface Target {
  url: string;
  queue: WebhookEvent[];
  running: boolean;
}

export class EventWebhooks {
  private readonly targets: Target[];
  private closed = false;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly idleWaiters: (() => void)[] = [];

  constructor(private readonly opts: WebhookOptions) {
    this.targets = opts.urls.map((url) => ({ url, queue: [], running: false }));
  }

  /** Queue an event for every URL; returns at once. */
  emit(type: string, data: Record<string, unknown>): WebhookEvent {
    const ev: WebhookEvent = { id: randomUUID(), type, at: new Date().toISOString(), data };
    if (this.closed) return ev;
    for (const t of this.targets) {
      t.queue.push(ev);
      if (t.queue.length > (this.opts.maxQueue ?? 10_000)) {
        const dropped = t.queue.shift()!;
        this.opts.log.warn({ url: t.url, event: dropped.type, id: dropped.id }, 'webhook queue full: dropped the oldest event');
      }
      if (!t.running) {
        // Delivery starts on a later turn: the caller (a device request) does no network work.
        t.running = true;
        setImmediate(() => void this.drain(t));
      }
    }
    return ev;
  }

  /** Forward the MDM service's and the fleet source's events. */
  attach(service: MdmService, source?: Pick<FleetSource, 'on'>): void {
    service.on('enrolled', (e) => this.emit('device.enrolled', { enrollment: e.id, device: e.deviceId, type: e.type }));
    service.on('checkedOut', (id) => this.emit('device.checked_out', { enrollment: id }));
    // Certificates only (hash, subject, expiry): never a secret.
    service.on('identityChanged', (device, c) => this.emit('device.identity_changed', { device, kind: c.kind, reason: c.reason, from: c.from, to: c.to }));
    service.on('result', (eid, rep) => {
      if (rep.Status === 'Error' || rep.Status === 'CommandFormatError') {
        this.emit('command.failed', { enrollment: eid, commandUUID: rep.CommandUUID, status: rep.Status, errorChain: rep.ErrorChain });
      }
    });
    source?.on('validated', (rev) =>
      this.emit('revision.applied', { commit: rev.info.commit, author: rev.info.author, message: rev.info.message, contentHash: rev.info.contentHash }),
    );
  }

  /** Resolves when every queue is empty (tests, shutdown). */
  whenIdle(): Promise<void> {
    if (this.targets.every((t) => !t.running)) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  close(): void {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const t of this.targets) t.queue.length = 0;
  }

  private async drain(t: Target): Promise<void> {
    try {
      while (!this.closed && t.queue.length > 0) {
        await this.deliver(t, t.queue[0]!);
        t.queue.shift();
      }
    } finally {
      t.running = false;
      if (this.targets.every((x) => !x.running)) for (const r of this.idleWaiters.splice(0)) r();
    }
  }

  private async deliver(t: Target, ev: WebhookEvent): Promise<void> {
    const body = JSON.stringify(ev);
    const max = this.opts.maxAttempts ?? 6;
    for (let attempt = 1; attempt <= max && !this.closed; attempt++) {
      let outcome: string;
      let retry = true;
      try {
        const res = await fetch(t.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'x-orchard-event': ev.type,
            'x-orchard-delivery': ev.id,
            'x-orchard-signature': signWebhook(this.opts.secret, body),
          },
          body,
          signal: AbortSignal.timeout(this.opts.timeoutMs ?? 10_000),
        });
        await res.arrayBuffer().catch(() => undefined);
        if (res.ok) return;
        outcome = `HTTP ${res.status}`;
        retry = res.status >= 500 || res.status === 429;
      } catch (err) {
        outcome = (err as Error).message;
      }
      if (!retry || attempt === max) {
        this.opts.log.error({ url: t.url, event: ev.type, id: ev.id, attempt, outcome }, 'webhook delivery failed: giving up');
        return;
      }
      const delay = Math.min((this.opts.baseMs ?? 1000) * 2 ** (attempt - 1), this.opts.maxMs ?? 300_000);
      this.opts.log.warn({ url: t.url, event: ev.type, id: ev.id, attempt, outcome, retryInMs: delay }, 'webhook delivery failed: retrying');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.timers.delete(timer);
          resolve();
        }, delay);
        timer.unref();
        this.timers.add(timer);
      });
    }
  }
}
