/**
 * Reporting a revision's rollout back to the commit on the git host: GitHub's commit statuses
 * (`POST /repos/{owner}/{repo}/statuses/{sha}`) or GitLab's (`POST /projects/:id/statuses/:sha`).
 * pending while the selected devices converge, success when every one is verified, failure (with
 * counts and a link to the status page) when devices fail or a staged rollout halts. Posted when
 * the state or the counts change, at most once per sampling interval (the latest state wins), and
 * retried with a later sample when the host is unreachable. The token is never logged.
 */
import type { Logger } from 'pino';
import { Malformed, Unavailable } from '../errors.js';

export type CommitState = 'pending' | 'success' | 'failure';

export interface CommitStatus {
  state: CommitState;
  /** One line; the hosts cut it at 140 (GitHub) and 255 (GitLab) characters. */
  description: string;
  targetUrl?: string;
}

/** Where statuses go: one git host's API for one repository. */
export interface CommitStatusClient {
  readonly name: string;
  /**
   * Whether a new description alone is posted. GitLab (before its idempotent-status change) answers 400 to a status
   * in the state the commit already has ("Cannot transition status via :run from :running"), so
   * there only state changes are posted.
   */
  readonly updatesDescription: boolean;
  post(sha: string, status: CommitStatus): Promise<void>;
}

export type CommitStatusProvider = 'github' | 'gitlab';

export interface CommitStatusConfig {
  provider: CommitStatusProvider;
  /** GitHub: "owner/repo"; GitLab: the project's numeric id or "group/project" path. */
  repo: string;
  /** API base URL (default https://api.github.com, https://gitlab.com/api/v4). */
  url?: string;
  /** The status's name on the commit (GitHub `context`, GitLab `name`); default "orchard". */
  context?: string;
}

const DEFAULT_URL: Record<CommitStatusProvider, string> = { github: 'https://api.github.com', gitlab: 'https://gitlab.com/api/v4' };
const GITLAB_STATE: Record<CommitState, string> = { pending: 'running', success: 'success', failure: 'failed' };

/** "github:owner/repo" or "gitlab:group/project" (the config's and the flag's spelling). */
export function parseCommitStatusTarget(value: string): Pick<CommitStatusConfig, 'provider' | 'repo'> {
  const m = /^(github|gitlab):(.+)$/.exec(value.trim());
  if (!m) throw new Malformed(`"${value}" is not github:OWNER/REPO or gitlab:PROJECT`);
  const provider = m[1] as CommitStatusProvider;
  const repo = m[2]!;
  if (provider === 'github' && !/^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/.test(repo)) throw new Malformed(`"${repo}" is not OWNER/REPO`);
  return { provider, repo };
}

export function commitStatusClient(cfg: CommitStatusConfig, token: string): CommitStatusClient {
  const base = (cfg.url ?? DEFAULT_URL[cfg.provider]).replace(/\/+$/, '');
  const context = cfg.context ?? 'orchard';
  if (cfg.provider === 'github') {
    const [owner, repo] = cfg.repo.split('/');
    return {
      name: `github ${cfg.repo}`,
      updatesDescription: true,
      post: (sha, s) =>
        send(
          `${base}/repos/${encodeURIComponent(owner!)}/${encodeURIComponent(repo!)}/statuses/${sha}`,
          { authorization: `Bearer ${token}`, accept: 'application/vnd.github+json', 'x-github-api-version': '2022-11-28' },
          { state: s.state, description: s.description.slice(0, 140), context, ...(s.targetUrl ? { target_url: s.targetUrl } : {}) },
        ),
    };
  }
  return {
    name: `gitlab ${cfg.repo}`,
    updatesDescription: false,
    post: (sha, s) =>
      send(
        `${base}/projects/${encodeURIComponent(cfg.repo)}/statuses/${sha}`,
        { 'private-token': token },
        { state: GITLAB_STATE[s.state], description: s.description.slice(0, 255), name: context, ...(s.targetUrl ? { target_url: s.targetUrl } : {}) },
      ),
  };
}

async function send(url: string, headers: Record<string, string>, body: Record<string, string>): Promise<void> {
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/json', 'user-agent': 'orchard' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(15_000),
    });
  } catch (err) {
    throw new Unavailable(`${new URL(url).origin} unreachable: ${(err as Error).message}`, { cause: err });
  }
  if (!res.ok) {
    // The answer names the problem (bad credentials, invalid state); it never holds our token.
    const text = (await res.text().catch(() => '')).replace(/\s+/g, ' ').slice(0, 200);
    throw new Unavailable(`${new URL(url).pathname} answered ${res.status}: ${text}`);
  }
}

/** Where one revision's rollout stands, over the devices it selects. */
export interface RevisionProgress {
  commit: string | null;
  /** Enrolled devices the revision manages something on. */
  selected: number;
  verified: number;
  pending: number;
  failed: number;
  /** A staged rollout stopped at its health gate: why (names the blueprint). */
  halted?: string;
  /** A staged rollout still on an early step (devices outside it wait): e.g. "macs: step 1 of 3 (5%)". */
  waiting?: string;
}

export function statusOf(p: RevisionProgress, statusUrl?: string): CommitStatus {
  const counts = `${p.verified} verified, ${p.pending} pending, ${p.failed} failed of ${p.selected} devices`;
  const targetUrl = statusUrl ? { targetUrl: statusUrl } : {};
  if (p.halted) return { state: 'failure', description: `rollout halted: ${p.halted} (${counts})`, ...targetUrl };
  if (p.failed > 0) return { state: 'failure', description: counts, ...targetUrl };
  if (p.pending > 0 || p.waiting) return { state: 'pending', description: p.waiting ? `${p.waiting}; ${counts}` : counts, ...targetUrl };
  if (p.selected === 0) return { state: 'success', description: 'no enrolled device selected', ...targetUrl };
  return { state: 'success', description: `all ${p.selected} devices verified`, ...targetUrl };
}

export interface CommitStatusReporterOptions {
  client: CommitStatusClient;
  log: Logger;
  /** The status page, linked from the status. */
  statusUrl?: string;
}

/**
 * Keeps the applied revision's commit status up to date from the progress samples it is given
 * (src/report/progress.ts samples at most once per interval, so posts are rate-limited too):
 * posts when the state or the counts changed; a post that fails is tried again with the next
 * sample.
 */
export class CommitStatusReporter {
  private last?: { sha: string; key: string };

  constructor(private readonly opts: CommitStatusReporterOptions) {}

  async report(p: RevisionProgress | undefined): Promise<void> {
    if (!p?.commit) return;
    const status = statusOf(p, this.opts.statusUrl);
    const key = this.opts.client.updatesDescription ? `${status.state}\0${status.description}` : status.state;
    if (this.last?.sha === p.commit && this.last.key === key) return;
    try {
      await this.opts.client.post(p.commit, status);
      this.last = { sha: p.commit, key };
      this.opts.log.info({ commit: p.commit, state: status.state, description: status.description, to: this.opts.client.name }, 'commit status posted');
    } catch (err) {
      this.opts.log.warn({ commit: p.commit, state: status.state, to: this.opts.client.name, error: (err as Error).message }, 'commit status not posted');
    }
  }
}

/** Progress over device summaries (src/report/status.ts): devices the revision manages something on. */
export function revisionProgress(
  commit: string | null,
  summaries: Iterable<{ enrolled: boolean; state: string; profiles: { total: number } }>,
): RevisionProgress {
  const p: RevisionProgress = { commit, selected: 0, verified: 0, pending: 0, failed: 0 };
  for (const s of summaries) {
    if (!s.enrolled || s.profiles.total === 0) continue;
    p.selected++;
    if (s.state === 'failed') p.failed++;
    else if (s.state === 'in-sync') p.verified++;
    else p.pending++;
  }
  return p;
}
