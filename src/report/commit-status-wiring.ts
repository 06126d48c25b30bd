/**
 * The commit-status reporter as `orchard serve` runs it: the configured host and token, the
 * applied revision's progress read from the store, the status page as the link.
 */
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { ConfigError, type ServerConfig } from '../config.js';
import type { FleetSource } from '../gitops/source.js';
import type { Store } from '../store/types.js';
import { CommitStatusReporter, commitStatusClient, revisionProgress } from './commit-status.js';
import { rowState } from '../store/status.js';

const PAGE = 1000;

export interface CommitStatusDeps {
  store: Pick<Store, 'queryStatus'>;
  source?: Pick<FleetSource, 'current' | 'status'>;
  log: Logger;
  minIntervalMs?: number;
  /** Staged rollouts: halted ones fail the status, unfinished ones keep it pending. */
  note?: () => { halted?: string; waiting?: string };
}

/** The reporter, or undefined when no commit status is configured. Throws when it is configured without a token. */
export function commitStatusReporter(cfg: ServerConfig, opts: { commitStatusToken?: string }, deps: CommitStatusDeps): CommitStatusReporter | undefined {
  const cs = cfg.commitStatus;
  if (!cs) return undefined;
  let token = opts.commitStatusToken;
  if (!token && cs.tokenFile) token = readFileSync(cs.tokenFile, 'utf8').trim();
  if (!token) throw new ConfigError('commit-status needs a token: ORCHARD_COMMIT_STATUS_TOKEN or commit-status-token-file');
  const log = deps.log.child({ component: 'commit-status' });
  return new CommitStatusReporter({
    client: commitStatusClient(cs, token),
    log,
    statusUrl: cfg.publicUrl ? new URL('/status', cfg.publicUrl).toString() : undefined,
    minIntervalMs: deps.minIntervalMs,
    progress: async () => {
      const cur = deps.source?.current();
      if (!cur) return undefined;
      const commit = cur.info.commit;
      const rows: { enrolled: boolean; state: string; profiles: { total: number } }[] = [];
      // The read model's rows, a page at a time (a fleet-wide read at most every minIntervalMs).
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
    },
  });
}
