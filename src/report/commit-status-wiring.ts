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
import { deviceSummaries, loadSnapshot } from './status.js';

export interface CommitStatusDeps {
  store: Store;
  source?: Pick<FleetSource, 'current' | 'status'>;
  log: Logger;
  minIntervalMs?: number;
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
      const snap = await loadSnapshot(deps.store);
      return revisionProgress(cur.info.commit, deviceSummaries(snap, { fleet: cur.fleet, revision: cur.info }));
    },
  });
}
