/**
 * A local stand-in for the git hosts' commit-status APIs, checking requests as the real ones do:
 *   GitHub  POST /repos/{owner}/{repo}/statuses/{sha}  `Authorization: Bearer|token T`; JSON
 *           {state: error|failure|pending|success, target_url?, description?, context?};
 *           401 {"message": "Bad credentials"}, 422 "Validation Failed" for another state; 201.
 *   GitLab  POST /api/v4/projects/:id/statuses/:sha  `PRIVATE-TOKEN: T` (or Bearer); JSON
 *           {state: pending|running|success|failed|canceled|skipped, name?, target_url?, description?};
 *           401 {"message": "401 Unauthorized"}, 400 for another state or a repeat of the state
 *           the commit's status already has ("Cannot transition status via :run from :running"); 201.
 * Every accepted status is recorded; a malformed request is recorded as refused.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface PostedStatus {
  provider: 'github' | 'gitlab';
  repo: string;
  sha: string;
  state: string;
  description?: string;
  targetUrl?: string;
  context: string;
}

const GITHUB_STATES = ['error', 'failure', 'pending', 'success'];
const GITLAB_STATES = ['pending', 'running', 'success', 'failed', 'canceled', 'skipped'];

export class GitHostStandIn {
  readonly posted: PostedStatus[] = [];
  readonly refused: { status: number; path: string; why: string }[] = [];
  /** Raw headers of every request (to check that nothing but the auth header carries the token). */
  readonly requests: { path: string; headers: IncomingMessage['headers']; body: string }[] = [];
  private server?: Server;
  url = '';

  constructor(private readonly token: string) {}

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        const path = new URL(req.url ?? '/', 'http://x').pathname;
        this.requests.push({ path, headers: req.headers, body });
        const answer = (status: number, json: unknown, why?: string) => {
          if (status >= 400) this.refused.push({ status, path, why: why ?? JSON.stringify(json) });
          res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(json));
        };
        this.handle(req, path, body, answer);
      });
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => this.server?.close(() => r()));
  }

  /** States posted for a commit, in order. */
  states(sha: string): string[] {
    return this.posted.filter((p) => p.sha === sha).map((p) => p.state);
  }

  private handle(req: IncomingMessage, path: string, body: string, answer: (status: number, json: unknown, why?: string) => void): void {
    const gh = /^\/repos\/([^/]+)\/([^/]+)\/statuses\/([0-9a-f]{40})$/.exec(path);
    const gl = /^\/api\/v4\/projects\/([^/]+)\/statuses\/([0-9a-f]{40})$/.exec(path);
    if (req.method !== 'POST' || (!gh && !gl)) return answer(404, { message: 'Not Found' });
    if (!/^application\/json\b/.test(req.headers['content-type'] ?? '')) return answer(415, { message: 'Unsupported Media Type' }, 'not JSON');
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(body) as Record<string, unknown>;
      if (!json || typeof json !== 'object' || Array.isArray(json)) throw new Error('not an object');
    } catch {
      return answer(400, { message: 'Problems parsing JSON' });
    }
    const str = (k: string) => (typeof json[k] === 'string' ? (json[k] as string) : undefined);
    if (gh) {
      const auth = /^(?:Bearer|token) (.+)$/.exec(req.headers.authorization ?? '');
      if (auth?.[1] !== this.token) return answer(401, { message: 'Bad credentials' });
      if (!req.headers['user-agent'])
        return answer(403, { message: 'Request forbidden by administrative rules. Please make sure your request has a User-Agent header' });
      const state = str('state');
      if (!state || !GITHUB_STATES.includes(state))
        return answer(422, {
          message: 'Validation Failed',
          errors: [{ resource: 'Status', code: 'custom', field: 'state', message: 'state is not included in the list' }],
        });
      if ((str('description') ?? '').length > 140)
        return answer(422, {
          message: 'Validation Failed',
          errors: [{ resource: 'Status', code: 'custom', field: 'description', message: 'description is too long (maximum is 140 characters)' }],
        });
      const posted: PostedStatus = {
        provider: 'github',
        repo: `${gh[1]}/${gh[2]}`,
        sha: gh[3]!,
        state,
        description: str('description'),
        targetUrl: str('target_url'),
        context: str('context') ?? 'default',
      };
      this.posted.push(posted);
      return answer(201, { state, description: posted.description, target_url: posted.targetUrl ?? null, context: posted.context });
    }
    const token = req.headers['private-token'] ?? /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (token !== this.token) return answer(401, { message: '401 Unauthorized' });
    const state = str('state');
    if (!state || !GITLAB_STATES.includes(state)) return answer(400, { error: 'state does not have a valid value' });
    const sha = gl![2]!;
    const name = str('name') ?? str('context') ?? 'default';
    const previous = this.posted.filter((p) => p.provider === 'gitlab' && p.sha === sha && p.context === name).at(-1);
    if (previous?.state === state && state === 'running') return answer(400, { message: 'Cannot transition status via :run from :running' });
    this.posted.push({
      provider: 'gitlab',
      repo: decodeURIComponent(gl![1]!),
      sha,
      state,
      description: str('description'),
      targetUrl: str('target_url'),
      context: name,
    });
    return answer(201, { sha, status: state, name, description: str('description') ?? null, target_url: str('target_url') ?? null });
  }
}
