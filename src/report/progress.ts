/**
 * Sampling the applied revision's progress (a fleet-wide read of the read model) for whoever
 * follows it: the commit status and the status page's convergence chart. At most one read per
 * `minIntervalMs` however often it is poked; a poke with `now` (a revision was applied) reads at
 * once; between pokes it reads every `pollMs`.
 */
import type { Logger } from 'pino';
import type { FleetSource } from '../gitops/source.js';
import { rowState } from '../store/status.js';
import type { Store } from '../store/types.js';
import { revisionProgress, type RevisionProgress } from './commit-status.js';

export type ProgressSink = (p: RevisionProgress | undefined, at: Date) => void | Promise<void>;

export interface ProgressSamplerOptions {
  progress: () => Promise<RevisionProgress | undefined>;
  sinks: ProgressSink[];
  log: Logger;
  /** Default 10 s. */
  minIntervalMs?: number;
  /** Default 15 s. */
  pollMs?: number;
}

export class ProgressSampler {
  private lastAt = 0;
  private timer?: NodeJS.Timeout;
  private poller?: NodeJS.Timeout;
  private running?: Promise<void>;
  private again = false;
  private stopped = false;

  constructor(private readonly opts: ProgressSamplerOptions) {}

  start(): void {
    this.poller = setInterval(() => this.poke(), this.opts.pollMs ?? 15_000);
    this.poller.unref();
    this.poke(true);
  }

  /** Something changed (a device answered): read again within the interval. `now`: read at once. */
  poke(now = false): void {
    if (this.stopped) return;
    if (this.running) {
      this.again ||= now || !this.timer;
      return;
    }
    const wait = now ? 0 : Math.max(0, this.lastAt + (this.opts.minIntervalMs ?? 10_000) - Date.now());
    if (wait === 0) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.run();
    } else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.run();
      }, wait);
      this.timer.unref();
    }
  }

  /** Waits until nothing is in flight or scheduled (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.running || (this.timer && !this.stopped)) {
      if (this.running) await this.running;
      else await new Promise((r) => setTimeout(r, 20));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.poller);
    clearTimeout(this.timer);
    this.timer = undefined;
    while (this.running) await this.running;
  }

  private run(): void {
    this.lastAt = Date.now();
    this.running = this.sample().finally(() => {
      this.running = undefined;
      if (this.again) {
        this.again = false;
        this.poke();
      }
    });
  }

  private async sample(): Promise<void> {
    let p: RevisionProgress | undefined;
    try {
      p = await this.opts.progress();
    } catch (err) {
      this.opts.log.warn({ err }, 'revision progress unavailable');
      return;
    }
    const at = new Date();
    for (const sink of this.opts.sinks) await sink(p, at);
  }
}

const PAGE = 1000;

/**
 * The applied revision's progress from the read model's rows, a page at a time; `note` adds what
 * staged rollouts say (halted, still on an early step).
 */
export function progressReader(deps: {
  store: Pick<Store, 'queryStatus'>;
  source?: Pick<FleetSource, 'current'>;
  note?: () => { halted?: string; waiting?: string };
}): () => Promise<RevisionProgress | undefined> {
  return async () => {
    const cur = deps.source?.current();
    if (!cur) return undefined;
    const commit = cur.info.commit;
    const rows: { enrolled: boolean; state: string; profiles: { total: number } }[] = [];
    for (let after: string | undefined; ;) {
      const page = await deps.store.queryStatus({ limit: PAGE, ...(after ? { after } : {}), now: new Date(), staleDays: 7 });
      for (const r of page.devices) {
        // Not yet reconciled against this revision: still pending, whatever it had before.
        const current = r.profiles?.revision === (commit ?? r.profiles?.revision);
        rows.push({ enrolled: r.facts.enrolled, state: current ? rowState(r) : 'pending', profiles: { total: r.profiles?.profiles.total ?? 0 } });
      }
      if (page.devices.length < PAGE) break;
      after = page.devices.at(-1)!.id;
    }
    return { ...revisionProgress(commit, rows), ...deps.note?.() };
  };
}

export interface ConvergencePoint {
  /** Milliseconds since the revision was first sampled (it is sampled as it is applied). */
  t: number;
  verified: number;
  pending: number;
  failed: number;
}

export interface ConvergenceView {
  revision: string;
  since: string;
  points: ConvergencePoint[];
}

/**
 * The applied revision's convergence over time, for the status page's chart: a bounded series
 * (when full, every other point is dropped, the first and the latest kept), started over for
 * each new revision.
 */
export class ConvergenceSeries {
  private revision?: string;
  private since?: Date;
  private points: ConvergencePoint[] = [];

  constructor(private readonly max = 240) {}

  readonly record: ProgressSink = (p, at) => {
    if (!p) return;
    const revision = p.commit ?? 'local';
    if (revision !== this.revision) {
      this.revision = revision;
      this.since = at;
      this.points = [];
    }
    this.points.push({ t: at.getTime() - this.since!.getTime(), verified: p.verified, pending: p.pending, failed: p.failed });
    if (this.points.length > this.max) this.points = this.points.filter((_, i, all) => i % 2 === 0 || i === all.length - 1);
  };

  view(): ConvergenceView | undefined {
    if (!this.revision || !this.since) return undefined;
    return { revision: this.revision, since: this.since.toISOString(), points: this.points.map((x) => ({ ...x })) };
  }
}
