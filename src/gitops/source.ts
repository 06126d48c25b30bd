/**
 * The fleet source (in Flux's sense): fetches revisions of the fleet repository, has each one
 * loaded and validated as a whole, and publishes the last good one. An invalid revision is never
 * applied; the status says which revision is applied and why a newer one is not.
 *
 * Remote (a URL): a clone under `<dataDir>/source/repo`, fetched on the poll interval and on
 * `sync()`, then reset to `origin/<branch>` so force-pushes and rewinds are followed. The last
 * applied commit is kept in `<dataDir>/source/state.json` so a restart serves it again even when
 * the branch head has gone bad since.
 *
 * Local (a path): the directory used as is, git repository or not, watched for edits.
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, readlink, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { Logger } from 'pino';
import { simpleGit, type SimpleGit, type SimpleGitOptions } from 'simple-git';
import type { Diagnostic, Fleet, LoadResult } from './model.js';

export interface RevisionInfo {
  /** HEAD's sha; null for a local directory that is not a git repository (or has no commit). */
  commit: string | null;
  /** "Name <email>". */
  author?: string;
  /** Committer time, ISO 8601 (UTC). */
  time?: string;
  /** Subject line. */
  message?: string;
  /** The loader's Fleet.contentHash when valid, else a hash of the files. */
  contentHash: string;
  /** Local only: the working tree differs from HEAD. */
  dirty?: boolean;
}

export interface RevisionStatus extends RevisionInfo {
  fetchedAt: string;
  validatedAt?: string;
  appliedAt?: string;
  valid: boolean;
  errorCount: number;
  warningCount: number;
  /** The first 50 diagnostics: errors first, then warnings. */
  errors: Diagnostic[];
}

export interface SourceStatus {
  kind: 'remote' | 'local';
  /** Without credentials. */
  repo: string;
  branch?: string;
  applied?: RevisionStatus;
  lastAttempt?: RevisionStatus;
  /** Why the last sync could not fetch or load (cleared by the next sync that can). */
  lastError?: { at: string; message: string };
  /** Last successful fetch (remote) or read of the directory (local). */
  lastFetchAt?: string;
  /** Newest first, at most 20. */
  history: RevisionStatus[];
}

export interface AppliedRevision {
  info: RevisionInfo;
  fleet: Fleet;
}

export interface SourceOptions {
  /** A local path, or a URL: https://, http://, ssh://, git://, file://, or scp-like git@host:path. */
  repo: string;
  branch: string;
  dataDir: string;
  /** 0 disables polling. */
  pollIntervalMs: number;
  /** Local only: quiet time after the last file event before syncing (default 300 ms). */
  debounceMs?: number;
  loader: (dir: string) => Promise<LoadResult>;
  log: Logger;
}

const HISTORY_MAX = 20;
const DIAGNOSTICS_MAX = 50;
/** Kill a git process that has been silent this long (a hung network, an ssh prompt). */
const GIT_IDLE_TIMEOUT_MS = 120_000;
const URL_SCHEMES = new Set(['https', 'http', 'ssh', 'git', 'file', 'git+ssh', 'ssh+git']);
/** Variables that would point git at another repository than the one we name. */
const REPO_SCOPED_ENV = ['GIT_DIR', 'GIT_WORK_TREE', 'GIT_INDEX_FILE', 'GIT_OBJECT_DIRECTORY', 'GIT_ALTERNATE_OBJECT_DIRECTORIES', 'GIT_COMMON_DIR', 'GIT_NAMESPACE'];
/**
 * simple-git refuses some environment variables unless allowed. The environment is the
 * operator's own (e.g. GIT_SSH_COMMAND for a deploy key), not request input, so allow those.
 * Argument-borne risks stay blocked; our arguments are fixed apart from the validated URL and branch.
 */
const ENV_UNSAFE: SimpleGitOptions['unsafe'] = {
  allowUnsafeEditor: true,
  allowUnsafeAskPass: true,
  allowUnsafeConfigPaths: true,
  allowUnsafeConfigEnvCount: true,
  allowUnsafeDiffExternal: true,
  allowUnsafePager: true,
  allowUnsafeGitProxy: true,
  allowUnsafeTemplateDir: true,
  allowUnsafeSshCommand: true,
};

interface SavedState {
  repo: string;
  branch: string;
  commit: string;
  contentHash: string;
  appliedAt?: string;
}

export class FleetSource extends EventEmitter<{ applied: [AppliedRevision]; status: [SourceStatus] }> {
  private readonly kind: 'remote' | 'local';
  /** The directory the loader reads: the clone, or the local path. */
  private readonly dir: string;
  private readonly sourceDir: string;
  private readonly stateFile: string;
  private readonly publicRepo: string;
  private readonly secrets: string[];
  private readonly log: Logger;

  private appliedRev?: AppliedRevision;
  private appliedStatus?: RevisionStatus;
  /** Identity of a revision: the commit (remote), or commit + file hash (local). */
  private appliedKey?: string;
  private lastAttempt?: RevisionStatus;
  /** Set when the last attempt was judged invalid, so an unchanged head is not reloaded each poll. */
  private rejectedKey?: string;
  private lastError?: { at: string; message: string };
  private lastFetchAt?: string;
  private localBranch?: string;
  private history: RevisionStatus[] = [];

  private inflight?: Promise<SourceStatus>;
  private queued?: Promise<SourceStatus>;
  private queuedReasons: string[] = [];
  private restored = false;
  private started = false;
  private stopped = false;
  private pollTimer?: NodeJS.Timeout;
  private debounceTimer?: NodeJS.Timeout;
  private watcher?: FSWatcher;
  private readonly env: Record<string, string>;

  constructor(private readonly opts: SourceOptions) {
    super();
    this.log = opts.log;
    this.kind = isUrl(opts.repo) ? 'remote' : 'local';
    if (this.kind === 'remote') {
      const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(opts.repo)?.[1]?.toLowerCase();
      if (scheme && !URL_SCHEMES.has(scheme)) throw new Error(`repository URL scheme "${scheme}" is not supported`);
    }
    if (!validBranch(opts.branch)) throw new Error(`invalid branch name "${opts.branch}"`);
    this.sourceDir = join(resolve(opts.dataDir), 'source');
    this.stateFile = join(this.sourceDir, 'state.json');
    this.dir = this.kind === 'remote' ? join(this.sourceDir, 'repo') : resolve(opts.repo);
    this.publicRepo = stripCredentials(opts.repo);
    this.secrets = urlSecrets(opts.repo);
    this.env = gitEnv();
  }

  /** First sync (never throws: failures land in the status), then poll and, for a local path, watch. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    if (this.kind === 'local') await this.startWatcher();
    await this.sync('start');
    this.schedulePoll();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.pollTimer);
    clearTimeout(this.debounceTimer);
    const w = this.watcher;
    this.watcher = undefined;
    if (w) await w.close();
    await (this.queued ?? this.inflight);
  }

  /**
   * Fetch, load and maybe apply. Never two at once: a call during a sync schedules exactly one
   * more, shared by every call made meanwhile, which starts after the running one (so it sees
   * whatever changed since). Never rejects.
   */
  sync(reason: string): Promise<SourceStatus> {
    if (this.stopped) return Promise.resolve(this.status());
    if (!this.inflight) return this.launch(reason);
    this.queuedReasons.push(reason);
    if (!this.queued) {
      this.queued = this.inflight.then(() => {
        const reasons = this.queuedReasons.join(',');
        this.queued = undefined;
        this.queuedReasons = [];
        return this.stopped ? this.status() : this.launch(reasons);
      });
    }
    return this.queued;
  }

  status(): SourceStatus {
    return structuredClone({
      kind: this.kind,
      repo: this.publicRepo,
      branch: this.kind === 'remote' ? this.opts.branch : this.localBranch,
      applied: this.appliedStatus,
      lastAttempt: this.lastAttempt,
      lastError: this.lastError,
      lastFetchAt: this.lastFetchAt,
      history: this.history,
    });
  }

  current(): AppliedRevision | undefined {
    return this.appliedRev;
  }

  private launch(reason: string): Promise<SourceStatus> {
    const p = this.run(reason).finally(() => {
      if (this.inflight === p) this.inflight = undefined;
    });
    this.inflight = p;
    return p;
  }

  private async run(reason: string): Promise<SourceStatus> {
    try {
      if (this.kind === 'remote') {
        if (!this.restored) {
          this.restored = true;
          await this.restore();
        }
        await this.syncRemote(reason);
      } else {
        await this.syncLocal(reason);
      }
      this.lastError = undefined;
    } catch (err) {
      const message = this.redact(errorMessage(err));
      this.lastError = { at: now(), message };
      this.log.warn({ reason, repo: this.publicRepo, error: message }, 'fleet source: sync failed; keeping the applied revision');
    }
    const st = this.status();
    try {
      this.emit('status', st);
    } catch (err) {
      this.log.error({ error: errorMessage(err) }, 'fleet source: status listener failed');
    }
    return st;
  }

  // ---- remote ----

  private async syncRemote(reason: string): Promise<void> {
    const git = await this.ensureClone();
    const b = this.opts.branch;
    // Explicit forced refspec: origin/<branch> follows force-pushes; a missing branch is an error.
    await git.raw(['fetch', '--no-tags', 'origin', `+refs/heads/${b}:refs/remotes/origin/${b}`]);
    const fetchedAt = now();
    this.lastFetchAt = fetchedAt;
    const sha = (await git.raw(['rev-parse', '--verify', `refs/remotes/origin/${b}^{commit}`])).trim();
    if (this.unchanged(sha)) return;
    await this.checkout(git, sha);
    await this.evaluate(sha, { commit: sha, ...(await commitInfo(git, sha)) }, fetchedAt, reason);
  }

  /** Serve the last applied commit again after a restart, before looking at the branch head. */
  private async restore(): Promise<void> {
    let saved: SavedState;
    try {
      saved = JSON.parse(await readFile(this.stateFile, 'utf8')) as SavedState;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ error: errorMessage(err) }, 'fleet source: unreadable state.json; ignoring it');
      return;
    }
    if (saved.repo !== this.publicRepo || saved.branch !== this.opts.branch || !/^[0-9a-f]{40,64}$/.test(saved.commit ?? '')) {
      this.log.info({ saved: { repo: saved.repo, branch: saved.branch } }, 'fleet source: state.json is for another repository or branch; not restoring');
      return;
    }
    try {
      const git = await this.ensureClone();
      try {
        await git.raw(['cat-file', '-e', `${saved.commit}^{commit}`]);
      } catch {
        // A fresh clone may lack a commit no longer on the branch; most servers serve it by sha.
        await git.raw(['fetch', '--no-tags', 'origin', saved.commit]);
      }
      await this.checkout(git, saved.commit);
      await this.evaluate(saved.commit, { commit: saved.commit, ...(await commitInfo(git, saved.commit)) }, now(), 'restore');
      this.log.info({ commit: saved.commit }, 'fleet source: restored the last applied revision');
    } catch (err) {
      const message = this.redact(errorMessage(err));
      this.lastError = { at: now(), message: `could not restore ${saved.commit}: ${message}` };
      this.log.warn({ commit: saved.commit, error: message }, 'fleet source: could not restore the last applied revision');
    }
  }

  private async ensureClone(): Promise<SimpleGit> {
    // Check .git itself: rev-parse inside a plain directory would find an enclosing repository.
    if (existsSync(join(this.dir, '.git'))) {
      try {
        const origin = (await this.git(this.dir).raw(['remote', 'get-url', 'origin'])).trim();
        if (origin === this.opts.repo) return this.git(this.dir);
        this.log.info({ repo: this.publicRepo }, 'fleet source: origin changed; cloning again');
      } catch (err) {
        this.log.warn({ error: this.redact(errorMessage(err)) }, 'fleet source: existing clone unusable; cloning again');
      }
    }
    await mkdir(this.sourceDir, { recursive: true });
    await rm(this.dir, { recursive: true, force: true });
    // Clone beside and rename, so a crash mid-clone never leaves a half clone at the real path.
    for (const name of await readdir(this.sourceDir)) {
      if (name.startsWith('repo.tmp-')) await rm(join(this.sourceDir, name), { recursive: true, force: true });
    }
    const tmp = join(this.sourceDir, `repo.tmp-${process.pid}-${Date.now()}`);
    try {
      await this.git(this.sourceDir).clone(this.opts.repo, tmp, ['--no-checkout', '--origin', 'origin']);
      await rename(tmp, this.dir);
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
    this.log.info({ repo: this.publicRepo }, 'fleet source: cloned');
    return this.git(this.dir);
  }

  private async checkout(git: SimpleGit, sha: string): Promise<void> {
    await git.raw(['reset', '--hard', '-q', sha]);
    await git.raw(['clean', '-ffdxq']);
  }

  private async persist(commit: string, st: RevisionStatus): Promise<void> {
    const state: SavedState = { repo: this.publicRepo, branch: this.opts.branch, commit, contentHash: st.contentHash, appliedAt: st.appliedAt };
    const tmp = `${this.stateFile}.tmp-${process.pid}`;
    try {
      await mkdir(this.sourceDir, { recursive: true });
      await writeFile(tmp, `${JSON.stringify(state, null, 2)}\n`);
      await rename(tmp, this.stateFile);
    } catch (err) {
      // The revision is applied either way; only a restart would miss it.
      this.log.error({ error: errorMessage(err) }, 'fleet source: could not write state.json');
    }
  }

  // ---- local ----

  private async syncLocal(reason: string): Promise<void> {
    const st = await stat(this.dir);
    if (!st.isDirectory()) throw new Error(`${this.dir} is not a directory`);
    const fetchedAt = now();
    const g = await this.localGit();
    this.localBranch = g?.branch;
    const treeHash = await hashTree(this.dir);
    this.lastFetchAt = fetchedAt;
    const commit = g?.commit ?? null;
    const key = `${commit ?? '-'}:${treeHash}`;
    if (this.unchanged(key)) return;
    const info: Omit<RevisionInfo, 'contentHash'> = {
      commit, author: g?.author, time: g?.time, message: g?.message, dirty: g ? g.dirty : undefined,
    };
    await this.evaluate(key, info, fetchedAt, reason, treeHash);
  }

  private async localGit(): Promise<{ commit: string | null; dirty: boolean; branch?: string; author?: string; time?: string; message?: string } | undefined> {
    const git = this.git(this.dir);
    try {
      if ((await git.raw(['rev-parse', '--is-inside-work-tree'])).trim() !== 'true') return undefined;
    } catch {
      return undefined;
    }
    let commit: string | null = null;
    try {
      commit = (await git.raw(['rev-parse', '--verify', 'HEAD^{commit}'])).trim();
    } catch {
      commit = null; // no commit yet
    }
    // --no-optional-locks: never take index.lock under the feet of someone working in the tree.
    const porcelain = await git.raw(['--no-optional-locks', 'status', '--porcelain', '--untracked-files=all', '--', '.']);
    let branch: string | undefined;
    try {
      branch = (await git.raw(['symbolic-ref', '--short', 'HEAD'])).trim() || undefined;
    } catch {
      branch = undefined; // detached
    }
    const info = commit ? await commitInfo(git, commit) : {};
    return { commit, dirty: porcelain.trim() !== '', branch, ...info };
  }

  private async startWatcher(): Promise<void> {
    const root = this.dir;
    const watcher = watch(root, {
      ignoreInitial: true,
      ignored: (p: string) => relative(root, p).split(/[\\/]/).some((s) => s === '.git' || s === 'node_modules'),
    });
    watcher.on('all', () => this.onFileEvent());
    watcher.on('error', (err) => this.log.warn({ error: errorMessage(err) }, 'fleet source: watcher error'));
    this.watcher = watcher;
    await new Promise<void>((res) => watcher.once('ready', () => res()));
  }

  private onFileEvent(): void {
    if (this.stopped) return;
    clearTimeout(this.debounceTimer);
    this.debounceTimer = setTimeout(() => void this.sync('watch'), this.opts.debounceMs ?? 300);
    this.debounceTimer.unref();
  }

  // ---- common ----

  private schedulePoll(): void {
    if (this.stopped || !(this.opts.pollIntervalMs > 0)) return;
    this.pollTimer = setTimeout(() => {
      void this.sync('poll').then(() => this.schedulePoll());
    }, this.opts.pollIntervalMs);
    this.pollTimer.unref();
  }

  /** True when the revision needs no load: it is the applied one, or already known invalid. */
  private unchanged(key: string): boolean {
    if (key === this.appliedKey) {
      // The head came back to the applied revision (e.g. a bad commit was rewound): nothing pending.
      this.lastAttempt = this.appliedStatus;
      this.rejectedKey = undefined;
      return true;
    }
    return key === this.rejectedKey;
  }

  private async evaluate(key: string, base: Omit<RevisionInfo, 'contentHash'>, fetchedAt: string, reason: string, treeHash?: string): Promise<void> {
    const hashFiles = async () => treeHash ?? hashTree(this.dir);
    let result: LoadResult;
    try {
      result = await this.opts.loader(this.dir);
      if (result.ok && !result.fleet) throw new Error('loader reported ok without a fleet');
    } catch (err) {
      // Not the revision's fault as far as we know: record it, but let the next sync try again.
      const message = this.redact(errorMessage(err));
      this.record({
        ...base, contentHash: await hashFiles(), fetchedAt, validatedAt: now(), valid: false, errorCount: 1, warningCount: 0,
        errors: [{ severity: 'error', file: '.', line: 1, col: 1, message: `loader failed: ${message}`, rule: 'loader' }],
      });
      this.rejectedKey = undefined;
      throw new Error(`loader failed: ${message}`);
    }
    const errors = result.diagnostics.filter((d) => d.severity === 'error');
    const warnings = result.diagnostics.filter((d) => d.severity !== 'error');
    const fleet = result.ok ? result.fleet : undefined;
    const st: RevisionStatus = {
      ...base,
      contentHash: fleet ? fleet.contentHash : await hashFiles(),
      fetchedAt,
      validatedAt: now(),
      valid: !!fleet,
      errorCount: errors.length,
      warningCount: warnings.length,
      errors: [...errors, ...warnings].slice(0, DIAGNOSTICS_MAX),
    };
    this.record(st);
    if (!fleet) {
      this.rejectedKey = key;
      const first = errors[0];
      this.log.warn({
        reason, commit: st.commit, errorCount: st.errorCount,
        first: first ? `${first.file}:${first.line}:${first.col}: ${first.message}` : undefined,
      }, 'fleet source: revision invalid; not applied');
      return;
    }
    st.appliedAt = now();
    const info: RevisionInfo = { ...base, contentHash: st.contentHash };
    this.appliedRev = { info, fleet };
    this.appliedStatus = st;
    this.appliedKey = key;
    this.rejectedKey = undefined;
    if (this.kind === 'remote' && st.commit) await this.persist(st.commit, st);
    this.log.info({ reason, commit: st.commit, contentHash: st.contentHash, dirty: st.dirty, warningCount: st.warningCount }, 'fleet source: revision applied');
    try {
      this.emit('applied', this.appliedRev);
    } catch (err) {
      this.log.error({ error: errorMessage(err) }, 'fleet source: applied listener failed');
    }
  }

  private record(st: RevisionStatus): void {
    this.lastAttempt = st;
    this.history.unshift(st);
    if (this.history.length > HISTORY_MAX) this.history.length = HISTORY_MAX;
  }

  private git(baseDir: string): SimpleGit {
    return simpleGit({ baseDir, timeout: { block: GIT_IDLE_TIMEOUT_MS }, unsafe: ENV_UNSAFE }).env(this.env);
  }

  private redact(text: string): string {
    let out = stripCredentials(text);
    for (const s of this.secrets) out = out.split(s).join('***');
    return out.length > 2000 ? `${out.slice(0, 2000)}…` : out;
  }
}

export function isUrl(repo: string): boolean {
  // scp-like "user@host:path" counts; a Windows drive letter ("C:\") does not.
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(repo) || /^[^\s/:@]+@[^\s/:]+:/.test(repo);
}

/** Remove `user:pass@` (any userinfo for http(s): a lone token is a secret too) from URLs in text. */
export function stripCredentials(text: string): string {
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)([^\s/@]+)@/gi, (_m, scheme: string, userinfo: string) => {
    const ssh = /ssh/i.test(scheme);
    if (ssh && !userinfo.includes(':')) return `${scheme}${userinfo}@`;
    return ssh ? `${scheme}${userinfo.split(':')[0]}@` : scheme;
  });
}

/** The credential parts of a URL, to scrub wherever git quotes them outside a URL. */
function urlSecrets(repo: string): string[] {
  const m = /^([a-z][a-z0-9+.-]*):\/\/([^\s/@]+)@/i.exec(repo);
  if (!m) return [];
  const [user, pass] = m[2]!.split(/:(.*)/s);
  const parts = /ssh/i.test(m[1]!) ? [pass] : [user, pass];
  const out = new Set<string>();
  for (const p of parts) {
    if (!p || p.length < 4) continue;
    out.add(p);
    try {
      out.add(decodeURIComponent(p));
    } catch {
      // not percent-encoded
    }
  }
  return [...out];
}

function validBranch(b: string): boolean {
  // git check-ref-format's rules, enough to keep a branch from reading as an option or a refspec.
  return b.length > 0 && !b.startsWith('-') && !b.startsWith('/') && !b.endsWith('/') && !b.endsWith('.')
    && !b.endsWith('.lock') && !b.includes('..') && !b.includes('//') && !b.includes('@{') && b !== '@'
    && !/[\s~^:?*[\\\x00-\x1f\x7f]/.test(b);
}

function gitEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !REPO_SCOPED_ENV.includes(k)) env[k] = v;
  // A server must never wait on a password prompt.
  env.GIT_TERMINAL_PROMPT = '0';
  if (!env.GIT_SSH_COMMAND && !env.GIT_SSH) env.GIT_SSH_COMMAND = 'ssh -o BatchMode=yes';
  return env;
}

async function commitInfo(git: SimpleGit, sha: string): Promise<Pick<RevisionInfo, 'author' | 'time' | 'message'>> {
  const out = await git.raw(['log', '-1', '--format=%an <%ae>%x00%cI%x00%s', sha, '--']);
  const [author, time, message] = out.replace(/\n$/, '').split('\0');
  return { author, time: time ? new Date(time).toISOString() : undefined, message };
}

/** SHA-256 over paths and contents (skipping .git and node_modules): tells local revisions apart. */
async function hashTree(root: string): Promise<string> {
  const h = createHash('sha256');
  const walk = async (rel: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(join(root, rel), { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // removed while walking
      throw err;
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      if (e.name === '.git' || e.name === 'node_modules') continue;
      const r = rel ? `${rel}/${e.name}` : e.name;
      try {
        if (e.isDirectory()) {
          await walk(r);
        } else if (e.isFile()) {
          const data = await readFile(join(root, r));
          h.update(`f\0${r}\0${data.length}\0`);
          h.update(data);
        } else if (e.isSymbolicLink()) {
          h.update(`l\0${r}\0${await readlink(join(root, r))}\0`);
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
  };
  await walk('');
  return h.digest('hex');
}

function errorMessage(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).trim();
}

function now(): string {
  return new Date().toISOString();
}
