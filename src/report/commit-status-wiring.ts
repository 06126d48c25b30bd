/** The commit-status reporter as `orchard serve` runs it: the configured host and token, the status page as the link. */
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { ConfigError, type ServerConfig } from '../config.js';
import { CommitStatusReporter, commitStatusClient } from './commit-status.js';

/** The reporter, or undefined when no commit status is configured. Throws when it is configured without a token. */
export function commitStatusReporter(cfg: ServerConfig, opts: { commitStatusToken?: string }, log: Logger): CommitStatusReporter | undefined {
  const cs = cfg.commitStatus;
  if (!cs) return undefined;
  let token = opts.commitStatusToken;
  if (!token && cs.tokenFile) token = readFileSync(cs.tokenFile, 'utf8').trim();
  if (!token) throw new ConfigError('commit-status needs a token: ORCHARD_COMMIT_STATUS_TOKEN or commit-status-token-file');
  return new CommitStatusReporter({
    client: commitStatusClient(cs, token),
    log: log.child({ component: 'commit-status' }),
    statusUrl: cfg.publicUrl ? new URL('/status', cfg.publicUrl).toString() : undefined,
  });
}
