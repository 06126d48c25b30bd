/**
 * Event webhooks: configured URLs receive JSON events
 *   {"id": "<uuid>", "type": "device.enrolled", "at": "<ISO time>", "data": {...}}
 * signed like the git hook: `X-Orchard-Signature: sha256=<hex HMAC-SHA256 of the body>` keyed
 * with the shared secret, plus `X-Orchard-Event` and `X-Orchard-Delivery` (the id; receivers
 * dedupe on it: a delivery may arrive twice when an answer is lost, or when a leader dies or
 * steps down mid-delivery).
 *
 * Every replica writes its events to the store's outbox (OutboxStore). The MDM service's events
 * (enrolled, checked out, identity changed, command failed) and the source's (a revision applied,
 * when its state is in the store) are built here before the change that causes them and written
 * by the store in that change's batch or transaction (`attach`), so a crash keeps both or neither;
 * the others (`emit`: ABM, rollouts) are written right after their cause, without waiting. Only the leader delivers them, each URL in order, retried with exponential backoff on network
 * errors, 5xx and 429 (4xx other than 429 are not retried); a row goes once delivered or given
 * up on. A crash loses nothing queued, and a restart or a new leader resumes delivery (polled
 * every `pollMs`, at once after an emit on the leader).
 */
import { createHmac, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { FleetSource, RevisionInfo } from '../gitops/source.js';
import type { MdmEventOutbox, MdmService } from '../mdm/service.js';
import type { CommandReport } from '../protocol/messages.js';
import type { OutboxEntry, OutboxEvent, OutboxStore } from '../store/roles/outbox.js';

export type WebhookEvent = OutboxEvent;

export interface WebhookOptions {
  urls: string[];
  secret: string;
  log: Logger;
  /** Where events wait for delivery (shared by the replicas). */
  outbox: OutboxStore;
  /** Whether this replica delivers (the leader); default: always (one process). */
  isLeader?: () => boolean;
  /** How often the outbox is looked at for rows another replica queued (default 1 s). */
  pollMs?: number;
  /** Attempts per event (default 6) and backoff (default 1 s doubling up to 5 min). */
  maxAttempts?: number;
  baseMs?: number;
  maxMs?: number;
  timeoutMs?: number;
}

export function signWebhook(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

const newEvent = (type: string, data: Record<string, unknown>): WebhookEvent => ({ id: randomUUID(), type, at: new Date().toISOString(), data });

const failed = (rep: CommandReport): boolean => rep.Status === 'Error' || rep.Status === 'CommandFormatError';

interface Target {
  url: string;
  /** The drain under way, if any. */
  running?: Promise<void>;
  /** Another look was asked for while draining (an emit). */
  again: boolean;
}

/** Rows read per look at a URL's queue. */
const BATCH = 100;

export class EventWebhooks {
  private readonly targets: Target[];
  private closed = false;
  /** Backoff waits, each with what ends it early (close). */
  private readonly timers = new Map<NodeJS.Timeout, () => void>();
  /** Outbox writes under way (whenIdle waits for them). */
  private readonly writes = new Set<Promise<void>>();
  private lastWrite: Promise<void> = Promise.resolve();
  private poller?: NodeJS.Timeout;

  constructor(private readonly opts: WebhookOptions) {
    this.targets = opts.urls.map((url) => ({ url, again: false }));
  }

  private get leading(): boolean {
    return this.opts.isLeader ? this.opts.isLeader() : true;
  }

  /** Queue an event for every URL in the outbox; returns at once (the write and the delivery run later). */
  emit(type: string, data: Record<string, unknown>): WebhookEvent {
    const ev = newEvent(type, data);
    if (this.closed || this.targets.length === 0) return ev;
    // One write at a time: on PostgreSQL two concurrent inserts could commit out of emit order.
    const write = this.lastWrite
      .then(() => this.opts.outbox.queueEvent(this.opts.urls, ev))
      .then(() => this.kick())
      .catch((err: unknown) => this.opts.log.error({ err, event: type, id: ev.id }, 'webhook event could not be queued in the store: lost'))
      .finally(() => this.writes.delete(write));
    this.writes.add(write);
    this.lastWrite = write;
    return ev;
  }

  /** Looks at the outbox every `pollMs` (on the leader: rows other replicas queued, rows left by the last leader). */
  start(): void {
    if (this.targets.length === 0 || this.closed) return;
    this.poller = setInterval(() => this.kick(), this.opts.pollMs ?? 1000);
    this.poller.unref();
    this.kick();
  }

  /** The event for every URL, for the store to write with its cause; none without URLs or once closed. */
  private entry(type: string, data: Record<string, unknown>): OutboxEntry | undefined {
    if (this.closed || this.targets.length === 0) return undefined;
    return { urls: this.opts.urls, event: newEvent(type, data) };
  }

  /** The MDM service's webhook events, written by the store with their causes. */
  readonly mdmEvents: MdmEventOutbox = {
    enrolled: (e) => this.entry('device.enrolled', { enrollment: e.id, device: e.deviceId, type: e.type }),
    checkedOut: (id) => this.entry('device.checked_out', { enrollment: id }),
    // Certificates only (hash, subject, expiry): never a secret.
    identityChanged: (device, c) => this.entry('device.identity_changed', { device, kind: c.kind, reason: c.reason, from: c.from, to: c.to }),
    result: (eid, rep) =>
      failed(rep) ? this.entry('command.failed', { enrollment: eid, commandUUID: rep.CommandUUID, status: rep.Status, errorChain: rep.ErrorChain }) : undefined,
  };

  /** The MDM service's and the fleet source's events go out with their store changes (delivered at once on the leader). */
  attach(service: MdmService, source?: Pick<FleetSource, 'on' | 'useAppliedEvent'>): void {
    service.useOutbox(this.mdmEvents);
    const queued = () => this.kick();
    service.on('enrolled', queued);
    service.on('checkedOut', queued);
    service.on('identityChanged', queued);
    service.on('result', (_eid, rep) => {
      if (failed(rep)) queued();
    });
    if (!source) return;
    const applied = (info: RevisionInfo) => ({ commit: info.commit, author: info.author, message: info.message, contentHash: info.contentHash });
    // With the source's state in the store, the event is written with the state that records the revision; else right after.
    if (source.useAppliedEvent((info) => this.entry('revision.applied', applied(info)))) source.on('validated', queued);
    else source.on('validated', (rev) => this.emit('revision.applied', applied(rev.info)));
  }

  /** Resolves when what this replica emitted is in the store and, on the leader, the outbox is empty (tests, shutdown). */
  async whenIdle(): Promise<void> {
    for (;;) {
      await Promise.all(this.writes);
      if (this.closed || !this.leading) return;
      await Promise.all(this.targets.map((t) => this.drain(t)));
      if (this.writes.size === 0 && (await this.opts.outbox.countEvents()) === 0) return;
    }
  }

  /** Stops delivering; what is left stays in the outbox for the next leader (or the next start). */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.poller);
    for (const [timer, wake] of this.timers) {
      clearTimeout(timer);
      wake();
    }
    this.timers.clear();
    await Promise.all(this.writes);
    await Promise.all(this.targets.map((t) => t.running));
  }

  /** A drain of every URL, on the leader (one at a time per URL: order is per URL). */
  private kick(): void {
    if (this.closed || !this.leading) return;
    for (const t of this.targets) void this.drain(t);
  }

  private drain(t: Target): Promise<void> {
    if (t.running) {
      t.again = true;
      return t.running;
    }
    t.running = this.deliverQueued(t)
      .catch((err: unknown) => this.opts.log.warn({ err, url: t.url }, 'webhook outbox could not be read: retried at the next look'))
      .finally(() => {
        t.running = undefined;
        if (t.again) {
          t.again = false;
          this.kick();
        }
      });
    return t.running;
  }

  private async deliverQueued(t: Target): Promise<void> {
    for (;;) {
      t.again = false;
      const rows = await this.opts.outbox.pendingEvents(t.url, BATCH);
      if (rows.length === 0) return;
      for (const row of rows) {
        // A replica that stopped leading leaves the rest to the new leader.
        if (this.closed || !this.leading) return;
        if (await this.deliver(t, row.event)) await this.opts.outbox.removeEvent(t.url, row.seq);
        else return;
      }
    }
  }

  /** True once the event is done with (delivered, or given up on); false when interrupted (closing), so the row stays. */
  private async deliver(t: Target, ev: WebhookEvent): Promise<boolean> {
    const body = JSON.stringify(ev);
    const max = this.opts.maxAttempts ?? 6;
    for (let attempt = 1; attempt <= max; attempt++) {
      if (this.closed) return false;
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
        if (res.ok) return true;
        outcome = `HTTP ${res.status}`;
        retry = res.status >= 500 || res.status === 429;
      } catch (err) {
        outcome = (err as Error).message;
      }
      if (!retry || attempt === max) {
        this.opts.log.error({ url: t.url, event: ev.type, id: ev.id, attempt, outcome }, 'webhook delivery failed: giving up');
        return true;
      }
      const delay = Math.min((this.opts.baseMs ?? 1000) * 2 ** (attempt - 1), this.opts.maxMs ?? 300_000);
      this.opts.log.warn({ url: t.url, event: ev.type, id: ev.id, attempt, outcome, retryInMs: delay }, 'webhook delivery failed: retrying');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.timers.delete(timer);
          resolve();
        }, delay);
        timer.unref();
        this.timers.set(timer, resolve);
      });
    }
    return true;
  }
}
