/**
 * One replica among several on one store. Every replica serves devices, the admin API and the
 * reports; the holder of the leader lease (Leadership) also runs the fleet-wide work: the git
 * source, fleet-wide reconciles, drift checks, compaction. What the replicas tell each other goes
 * through the store, in two small material values every replica polls (`signalMs`):
 *   - the applied revision's digest (src/gitops/source-state.ts): a follower that sees it change
 *     reads the compiled fleet and serves it to the devices that check in with it;
 *   - `leader-wake`: a git webhook that reached a follower asks the leader to sync now.
 * Polled rather than LISTEN/NOTIFY: the same on every backend, one indexed read a second, and a
 * notification missed while a connection was down cannot be lost (on LevelDB the one process is
 * the leader, so nothing is ever waiting on the other side).
 *
 * A leader deposed mid-run may still finish a device or two of its fleet-wide reconcile: harmless,
 * the reconcile state is compare-and-set (src/store/errors.ts), so no command is queued twice.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { appliedRevisionDigest, loadAppliedRevision, saveAppliedRevision } from '../gitops/source-state.js';
import type { FleetSource, ValidatedRevision } from '../gitops/source.js';
import { revisionLabel } from '../gitops/revision.js';
import type { Store } from '../store/types.js';
import type { Leadership } from './leadership.js';

const WAKE_KEY = 'leader-wake';

export interface ReplicaOptions {
  store: Pick<Store, 'getMaterial' | 'putMaterial'>;
  leadership: Leadership;
  /** Pins the role instead (tests that play a follower or a leader); default: whether this replica holds the leader lease. */
  isLeader?: () => boolean;
  /** The fleet repository, run by the leader only (absent without --repo). */
  source?: FleetSource;
  /** Serves a revision to devices as they answer, without a fleet-wide run. */
  follow: (rev: ValidatedRevision) => void;
  /** Fleet-wide work to start on election besides the source (work a dead replica left). */
  onElected?: () => Promise<void>;
  log: Logger;
  /** How often the store's signals are read (default 1 s). */
  signalMs?: number;
}

export class Replica {
  private timer?: NodeJS.Timeout;
  /** The digest of the revision this replica serves (applied here or followed). */
  private served?: string;
  private wakeSeen?: string;
  private polling?: Promise<void>;
  /** The leader work being taken up after an election. */
  private taking?: Promise<void>;
  private stopped = false;
  /** Publications in the order the leader applied them: the store's last value is the last applied. */
  private publishing: Promise<void> = Promise.resolve();

  constructor(private readonly opts: ReplicaOptions) {
    opts.leadership.on('elected', () => {
      this.taking = this.elected();
    });
  }

  /** Whether this replica runs the fleet-wide work: the one answer every part of the server asks (src/root.ts). */
  get isLeader(): boolean {
    return this.opts.isLeader ? this.opts.isLeader() : this.opts.leadership.isLeader;
  }

  /** Serve what the store holds, then take part in the election (a lone replica leads when this resolves). */
  async start(): Promise<void> {
    if (this.opts.source) this.wakeSeen = (await this.opts.store.getMaterial('blob', WAKE_KEY))?.toString('utf8');
    await this.followStored();
    await this.opts.leadership.start();
    // Elected at once (a lone replica): its first sync is done when start resolves, as without replicas.
    await this.taking;
    this.schedule();
  }

  /** Stop polling and give the lease up, so another replica takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.polling;
    await this.taking;
    await this.publishing;
    await this.opts.leadership.stop();
  }

  /**
   * The leader applies a revision: kept in the store, so followers (and a next leader) serve it.
   * Queued behind earlier publications and not awaited by the reconcile: devices' commands do not
   * wait on the store write. Never rejects (a failure is logged; the next publication retries).
   */
  publish(rev: ValidatedRevision): Promise<void> {
    this.publishing = this.publishing
      .then(async () => {
        this.served = await saveAppliedRevision(this.opts.store, rev);
      })
      .catch((err: unknown) => this.opts.log.error({ err }, 'could not keep the applied revision in the store'));
    return this.publishing;
  }

  /** A git webhook: the leader syncs; any other replica leaves the leader a note in the store. */
  async syncSource(): Promise<unknown> {
    if (this.isLeader) return this.opts.source?.sync('webhook');
    await this.opts.store.putMaterial('blob', WAKE_KEY, Buffer.from(randomUUID(), 'utf8'));
    this.opts.log.info('git webhook on a replica that is not the leader: the leader is asked to sync');
    return undefined;
  }

  private async elected(): Promise<void> {
    try {
      // The revision the last leader applied is served at once; the source then restores and syncs it.
      await this.followStored();
      await this.opts.onElected?.();
      await this.opts.source?.resume('elected');
    } catch (err) {
      this.opts.log.error({ err }, 'could not take up the leader work');
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.polling = this.poll().finally(() => {
        this.polling = undefined;
        this.schedule();
      });
    }, this.opts.signalMs ?? 1000);
    this.timer.unref();
  }

  private async poll(): Promise<void> {
    try {
      if (this.isLeader) {
        // Without a source there is nothing a wake could start: no read.
        if (!this.opts.source) return;
        const wake = (await this.opts.store.getMaterial('blob', WAKE_KEY))?.toString('utf8');
        if (wake !== undefined && wake !== this.wakeSeen) {
          this.wakeSeen = wake;
          void this.opts.source?.sync('webhook via a replica');
        }
      } else {
        await this.followStored();
      }
    } catch (err) {
      this.opts.log.warn({ err }, 'could not read the cluster signals from the store');
    }
  }

  /** Serve the store's applied revision when it is not the one served here already. */
  private async followStored(): Promise<void> {
    const digest = await appliedRevisionDigest(this.opts.store);
    if (digest === undefined || digest === this.served) return;
    const stored = await loadAppliedRevision(this.opts.store);
    if (!stored) return;
    this.served = stored.digest;
    this.opts.follow(stored.revision);
    this.opts.log.info({ revision: revisionLabel(stored.revision.info) }, 'serving the revision the leader applied');
  }
}
