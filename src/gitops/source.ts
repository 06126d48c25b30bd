/**
 * The fleet source (in Flux's sense): fetches revisions of the fleet repository, has each one
 * loaded and validated as a whole, and publishes the last good one ('validated'; the reconciler
 * applies it). An invalid revision is never published; the status says which revision is in force
 * (`applied`) and why a newer one is not.
 *
 * Remote (a URL): a clone under `<dataDir>/source/repo`, fetched on the poll interval and on
 * `sync()`, then reset to `origin/<branch>` so force-pushes and rewinds are followed. The last
 * applied commit is kept in `<dataDir>/source/state.json` so a restart serves it again even when
 * the branch head has gone bad since.
 *
 * Local (a path): the directory used as is, git repository or not, watched for edits.
 *
 * Every stage has a time limit (fetch, checkout, validation) and `stop()` aborts whatever is in
 * flight, so a hung remote or a file that never finishes reading cannot freeze the source or the
 * shutdown. Validation runs in a child process with a capped heap (validator.ts). The state file
 * also remembers the rejected revision, and marks a revision as "validating" before validation
 * starts: if the server dies during it, the next start rejects that revision instead of loading
 * it again, so one bad commit cannot put the server in a crash loop.
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, readdir, readlink, rename, rm, stat } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { Logger } from 'pino';
import { simpleGit, type SimpleGit, type SimpleGitOptions } from 'simple-git';
import type { LoadOptions } from './load.js';
import type { Diagnostic, Fleet, LoadResult } from './model.js';
import { isolatedLoader, ValidationLimitError, ValidatorUnavailableError, type Loader } from './validator.js';
import { Unavailable } from '../errors.js';
import { fileSourceState, type SourceStateBackend } from './source-state.js';
import type { OutboxEntry } from '../store/roles/outbox.js';

export { ValidationLimitError, ValidatorUnavailableError, type Loader } from './validator.js';

export interface RevisionInfo {
  /** HEAD's sha; null for a local directory that is not a git repository (or has no commit). */
  commit: string | null;
  /** "Name <email>". */
  author?: string;
  /** Committer time, ISO 8601 (UTC). */
  time?: string;
  /** Subject line. */
  message?: string;
  /** The loader's Fleet.contentHash when valid, else a hash of the files (remote: the git tree id). */
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
  /** How many times this revision was validated (history keeps one entry per revision). */
  attempts?: number;
  /** The latest of those times. */
  lastSeenAt?: string;
}

export interface SourceStatus {
  kind: 'remote' | 'local';
  /** Without credentials. */
  repo: string;
  branch?: string;
  /**
   * The validated revision in force, the one the reconciler is given (`applied` in the API and
   * state.json, as it always was; the source itself applies nothing: it validates).
   */
  applied?: RevisionStatus;
  lastAttempt?: RevisionStatus;
  /**
   * The newest revision refused, and why in one line; kept across restarts. It is not loaded
   * again until the branch (or the directory) moves on, or the validation limits change.
   */
  rejected?: { commit: string | null; at: string; reason: string };
  /**
   * Why the last sync could not fetch or load (cleared by the next sync that can), or why the
   * last applied revision could not be restored after a restart (kept until one is applied).
   */
  lastError?: { at: string; message: string };
  /** Last successful fetch (remote) or read of the directory (local). */
  lastFetchAt?: string;
  /** Newest first, one entry per revision, at most 20. */
  history: RevisionStatus[];
}

/** The last revision that passed validation: published to the reconciler with the 'validated' event. */
export interface ValidatedRevision {
  info: RevisionInfo;
  fleet: Fleet;
}

export interface SourceLimits {
  /** Heap of the validating process, MB (the default loader only). */
  validationMemoryMb: number;
  validationTimeoutMs: number;
  /** Clone or fetch (remote), reading the directory (local). */
  fetchTimeoutMs: number;
  /** `git reset --hard` + `git clean` of the clone. */
  checkoutTimeoutMs: number;
  /** How long `stop()` waits for an aborted sync to wind down. */
  stopTimeoutMs: number;
  /** How long `start()` waits for the first sync before letting it finish in the background. */
  startWaitMs: number;
}

export const DEFAULT_SOURCE_LIMITS: SourceLimits = {
  validationMemoryMb: 512,
  validationTimeoutMs: 120_000,
  fetchTimeoutMs: 600_000,
  checkoutTimeoutMs: 120_000,
  stopTimeoutMs: 10_000,
  startWaitMs: 60_000,
};

export interface SourceOptions {
  /** A local path, or a URL: https://, http://, ssh://, git://, file://, or scp-like git@host:path. */
  repo: string;
  branch: string;
  dataDir: string;
  /** 0 disables polling. */
  pollIntervalMs: number;
  /** Local only: quiet time after the last file event before syncing (default 300 ms). */
  debounceMs?: number;
  /**
   * Loads and validates a checkout. Default: loadFleet in a child process capped at
   * `limits.validationMemoryMb`. Whatever loader, the validation time limit applies.
   */
  loader?: Loader | ((dir: string) => Promise<LoadResult>);
  /** Options of loadFleet for the default loader (e.g. its size limits). */
  load?: LoadOptions;
  limits?: Partial<SourceLimits>;
  /** Where the source state is kept (default: `DATA_DIR/source/state.json`). */
  state?: SourceStateBackend;
  /** Whether this replica runs the source now (src/cluster/replica.ts); a sync asked for otherwise does nothing. Default: always. */
  isLeader?: () => boolean;
  log: Logger;
}

const HISTORY_MAX = 20;
const DIAGNOSTICS_MAX = 50;
/** Kill a git process that has been silent this long (a hung network, an ssh prompt). */
const GIT_IDLE_TIMEOUT_MS = 120_000;
const URL_SCHEMES = new Set(['https', 'http', 'ssh', 'git', 'file', 'git+ssh', 'ssh+git']);
/** Variables that would point git at another repository than the one we name. */
const REPO_SCOPED_ENV = [
  'GIT_DIR',
  'GIT_WORK_TREE',
  'GIT_INDEX_FILE',
  'GIT_OBJECT_DIRECTORY',
  'GIT_ALTERNATE_OBJECT_DIRECTORIES',
  'GIT_COMMON_DIR',
  'GIT_NAMESPACE',
];
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

/** The limits a rejection was decided under: changing them gives a rejected revision another try. */
interface ValidationContext {
  memoryMb: number;
  timeoutMs: number;
}

interface Rejection {
  /** The revision's identity (see `appliedKey`). */
  key: string;
  reason: string;
  limits: ValidationContext;
  status: RevisionStatus;
}

interface SavedState {
  repo: string;
  branch: string;
  /** The applied commit (remote only), served again after a restart. */
  commit?: string;
  contentHash?: string;
  appliedAt?: string;
  /** Written before validation starts, removed when it ends: present at start means it never ended. */
  validating?: { key: string; commit: string | null; contentHash: string; startedAt: string; limits: ValidationContext };
  rejected?: Rejection;
}

/** A stage ran past its time limit. */
export class StageTimeoutError extends Unavailable {
  constructor(
    readonly stage: string,
    readonly limitMs: number,
  ) {
    super(`${stage} exceeded the time limit (${duration(limitMs)})`);
    this.name = 'StageTimeoutError';
  }
}

class StoppedError extends Unavailable {
  constructor() {
    super('the fleet source is stopping');
    this.name = 'StoppedError';
  }
}

export class FleetSource extends EventEmitter<{ validated: [ValidatedRevision]; status: [SourceStatus] }> {
  private readonly kind: 'remote' | 'local';
  /** The directory the loader reads: the clone, or the local path. */
  private readonly dir: string;
  private readonly sourceDir: string;
  private readonly state: SourceStateBackend;
  /** The webhook event of a validated revision, written with the state that records it (useAppliedEvent). */
  private appliedEvent?: (info: RevisionInfo) => OutboxEntry | undefined;
  /** Local only: the data directory's path inside the watched directory, if it is inside. */
  private readonly ownRel?: string;
  private readonly publicRepo: string;
  private readonly secrets: string[];
  private readonly log: Logger;
  private readonly loader: Loader;
  private readonly limits: SourceLimits;
  /** Aborted by stop(): kills git processes and the validator, ends every stage at once. */
  private readonly halt = new AbortController();

  private validatedRev?: ValidatedRevision;
  private validatedStatus?: RevisionStatus;
  /** Identity of a revision: the commit (remote), or commit + file hash (local). */
  private validatedKey?: string;
  private lastAttempt?: RevisionStatus;
  /** Set when a revision was refused, so an unchanged head is not reloaded each poll. */
  private rejectedKey?: string;
  private rejection?: Rejection;
  private lastError?: { at: string; message: string };
  /** Why the saved revision could not be served again; shown until something is applied. */
  private restoreError?: { at: string; message: string };
  private lastFetchAt?: string;
  private localBranch?: string;
  private history: { key: string; st: RevisionStatus }[] = [];
  private saved?: SavedState;

  private inflight?: Promise<SourceStatus>;
  private queued?: Promise<SourceStatus>;
  private queuedReasons: string[] = [];
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
    this.limits = { ...DEFAULT_SOURCE_LIMITS, ...definedOnly(opts.limits ?? {}) };
    for (const [k, v] of Object.entries(this.limits)) {
      if (!(typeof v === 'number' && v > 0 && Number.isFinite(v))) throw new Error(`source limit ${k} must be a positive number (got ${String(v)})`);
    }
    this.loader = (opts.loader as Loader | undefined) ?? isolatedLoader({ memoryMb: this.limits.validationMemoryMb, load: opts.load });
    this.sourceDir = join(resolve(opts.dataDir), 'source');
    this.state = opts.state ?? fileSourceState(join(this.sourceDir, 'state.json'));
    this.dir = this.kind === 'remote' ? join(this.sourceDir, 'repo') : resolve(opts.repo);
    if (this.kind === 'local') {
      // The state file (and the store) must not count as an edit of the fleet, or writing it would sync again.
      const rel = relative(this.dir, resolve(opts.dataDir));
      if (rel && !rel.startsWith('..') && !isAbsolute(rel)) this.ownRel = rel.split(sep).join('/');
    }
    this.publicRepo = stripCredentials(opts.repo);
    this.secrets = urlSecrets(opts.repo);
    this.env = gitEnv();
  }

  /**
   * First sync (never throws: failures land in the status), then poll and, for a local path,
   * watch. Waits for the first sync at most `startWaitMs`: a remote that hangs must not keep the
   * server from serving (with the restored revision, usually restored by then) for the whole fetch limit.
   */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    if (this.kind === 'local') await this.startWatcher();
    let timer: NodeJS.Timeout | undefined;
    const done = await Promise.race([
      this.sync('start').then(() => true),
      new Promise<false>((res) => {
        timer = setTimeout(() => res(false), this.limits.startWaitMs);
      }),
    ]);
    clearTimeout(timer);
    if (!done) this.log.warn({ waitedMs: this.limits.startWaitMs }, 'fleet source: the first sync is still running; starting without waiting for it');
    this.schedulePoll();
  }

  /**
   * Elected again after another replica led: read the stored state afresh (it may have applied or
   * rejected revisions meanwhile), serve its applied revision again, then look at the head.
   */
  resume(reason: string): Promise<SourceStatus> {
    if (!this.started) return this.start().then(() => this.status());
    const run = () => {
      this.saved = undefined;
      return this.sync(reason);
    };
    return this.inflight ? this.inflight.then(run) : run();
  }

  /** Aborts the sync in flight (git, validation) and waits for it at most `stopTimeoutMs`. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.pollTimer);
    clearTimeout(this.debounceTimer);
    if (!this.halt.signal.aborted) this.halt.abort(new StoppedError());
    const w = this.watcher;
    this.watcher = undefined;
    if (w) await w.close();
    const pending = this.queued ?? this.inflight;
    if (!pending) return;
    let timer: NodeJS.Timeout | undefined;
    const finished = await Promise.race([
      pending.then(() => true),
      new Promise<false>((res) => {
        timer = setTimeout(() => res(false), this.limits.stopTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (!finished) this.log.warn({ waitedMs: this.limits.stopTimeoutMs }, 'fleet source: the sync in flight did not wind down; stopping without it');
  }

  /**
   * Fetch, load and maybe apply. Never two at once: a call during a sync schedules exactly one
   * more, shared by every call made meanwhile, which starts after the running one (so it sees
   * whatever changed since). Never rejects.
   */
  sync(reason: string): Promise<SourceStatus> {
    if (this.stopped || (this.opts.isLeader && !this.opts.isLeader())) return Promise.resolve(this.status());
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
    const r = this.rejection;
    return structuredClone({
      kind: this.kind,
      repo: this.publicRepo,
      branch: this.kind === 'remote' ? this.opts.branch : this.localBranch,
      applied: this.validatedStatus,
      lastAttempt: this.lastAttempt,
      rejected: r ? { commit: r.status.commit, at: r.status.validatedAt ?? r.status.fetchedAt, reason: r.reason } : undefined,
      lastError: this.lastError,
      lastFetchAt: this.lastFetchAt,
      history: this.history.map((h) => h.st),
    });
  }

  current(): ValidatedRevision | undefined {
    return this.validatedRev;
  }

  /**
   * `event` builds the webhook event of each validated revision, written with the state that
   * records it, so a crash keeps both or neither. False (nothing registered) when the state is a
   * file, which cannot hold an event: the caller emits it after 'validated' instead.
   */
  useAppliedEvent(event: (info: RevisionInfo) => OutboxEntry | undefined): boolean {
    if (!this.state.writesEvents) return false;
    this.appliedEvent = event;
    return true;
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
      if (!this.saved) {
        await this.loadState();
        if (this.kind === 'remote') await this.restore();
      }
      if (this.kind === 'remote') await this.syncRemote(reason);
      else await this.syncLocal(reason);
      this.lastError = this.validatedRev ? undefined : this.restoreError;
    } catch (err) {
      if (err instanceof StoppedError) {
        this.log.info({ reason }, 'fleet source: sync aborted by shutdown');
      } else {
        const message = this.redact(errorMessage(err));
        this.lastError = { at: now(), message };
        this.log.warn({ reason, repo: this.publicRepo, error: message }, 'fleet source: sync failed; keeping the applied revision');
      }
    }
    const st = this.status();
    try {
      this.emit('status', st);
    } catch (err) {
      this.log.error({ error: errorMessage(err) }, 'fleet source: status listener failed');
    }
    return st;
  }

  /**
   * Run one stage under its time limit and the shutdown signal. The stage gets a signal to stop
   * its work (git processes, the validator); the source moves on at the deadline either way, so
   * a stand-in that ignores the signal cannot hold it.
   */
  private async stage<T>(name: string, limitMs: number, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const ac = new AbortController();
    const halt = this.halt.signal;
    let timer: NodeJS.Timeout | undefined;
    let onHalt: (() => void) | undefined;
    const ended = new Promise<never>((_res, reject) => {
      const end = (reason: unknown) => {
        ac.abort(reason);
        reject(reason);
      };
      onHalt = () => end(halt.reason);
      if (halt.aborted) return onHalt();
      halt.addEventListener('abort', onHalt, { once: true });
      timer = setTimeout(() => end(new StageTimeoutError(name, limitMs)), limitMs);
    });
    const running = Promise.resolve().then(() => work(ac.signal));
    running.catch(() => undefined); // its outcome after a deadline is nobody's concern
    try {
      return await Promise.race([running, ended]);
    } finally {
      clearTimeout(timer);
      if (onHalt) halt.removeEventListener('abort', onHalt);
    }
  }

  // ---- remote ----

  private async syncRemote(reason: string): Promise<void> {
    const b = this.opts.branch;
    await this.stage('fetch', this.limits.fetchTimeoutMs, async (signal) => {
      const git = await this.ensureClone(signal);
      // Explicit forced refspec: origin/<branch> follows force-pushes; a missing branch is an error.
      await git.raw(['fetch', '--no-tags', 'origin', `+refs/heads/${b}:refs/remotes/origin/${b}`]);
    });
    const fetchedAt = now();
    this.lastFetchAt = fetchedAt;
    const git = this.git(this.dir);
    const sha = (await git.raw(['rev-parse', '--verify', `refs/remotes/origin/${b}^{commit}`])).trim();
    if (await this.unchanged(sha)) return;
    await this.stage('checkout', this.limits.checkoutTimeoutMs, (signal) => this.checkout(this.git(this.dir, signal), sha));
    const tree = (await git.raw(['rev-parse', '--verify', `${sha}^{tree}`])).trim();
    await this.evaluate(sha, { commit: sha, ...(await commitInfo(git, sha)) }, fetchedAt, reason, tree);
  }

  /** Serve the last applied commit again after a restart, before looking at the branch head. */
  private async restore(): Promise<void> {
    const commit = this.saved?.commit;
    if (!commit) return;
    if (!/^[0-9a-f]{40,64}$/.test(commit)) {
      this.log.warn('fleet source: state.json names no valid commit; not restoring');
      return;
    }
    try {
      // A revision that crashed the server while being validated must not get the chance again.
      if (commit === this.rejectedKey) throw new Error(`it was rejected: ${this.rejection?.reason}`);
      await this.stage('fetch', this.limits.fetchTimeoutMs, async (signal) => {
        const git = await this.ensureClone(signal);
        try {
          await git.raw(['cat-file', '-e', `${commit}^{commit}`]);
        } catch {
          // A fresh clone may lack a commit no longer on the branch; most servers serve it by sha.
          await git.raw(['fetch', '--no-tags', 'origin', commit]);
        }
      });
      await this.stage('checkout', this.limits.checkoutTimeoutMs, (signal) => this.checkout(this.git(this.dir, signal), commit));
      const git = this.git(this.dir);
      const tree = (await git.raw(['rev-parse', '--verify', `${commit}^{tree}`])).trim();
      await this.evaluate(commit, { commit, ...(await commitInfo(git, commit)) }, now(), 'restore', tree, { restore: true });
      if (this.validatedKey !== commit) throw new Error(`it is rejected now: ${this.rejection?.reason ?? 'invalid'}`);
      this.log.info({ commit }, 'fleet source: restored the last applied revision');
    } catch (err) {
      if (err instanceof StoppedError) throw err;
      const message = this.redact(errorMessage(err));
      this.restoreError = { at: now(), message: `could not restore ${commit}: ${message}` };
      this.lastError = this.restoreError;
      this.log.warn({ commit, error: message }, 'fleet source: could not restore the last applied revision');
    }
  }

  private async ensureClone(signal: AbortSignal): Promise<SimpleGit> {
    // Check .git itself: rev-parse inside a plain directory would find an enclosing repository.
    if (existsSync(join(this.dir, '.git'))) {
      try {
        const origin = (await this.git(this.dir, signal).raw(['remote', 'get-url', 'origin'])).trim();
        if (origin === this.opts.repo) return this.git(this.dir, signal);
        this.log.info({ repo: this.publicRepo }, 'fleet source: origin changed; cloning again');
      } catch (err) {
        if (signal.aborted) throw signal.reason;
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
      await this.git(this.sourceDir, signal).clone(this.opts.repo, tmp, ['--no-checkout', '--origin', 'origin']);
      await rename(tmp, this.dir);
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
    this.log.info({ repo: this.publicRepo }, 'fleet source: cloned');
    return this.git(this.dir, signal);
  }

  private async checkout(git: SimpleGit, sha: string): Promise<void> {
    await git.raw(['reset', '--hard', '-q', sha]);
    await git.raw(['clean', '-ffdxq']);
  }

  // ---- state file ----

  /** Read state.json once; a "validating" mark left there means the last process died validating. */
  private async loadState(): Promise<void> {
    const fresh: SavedState = { repo: this.publicRepo, branch: this.opts.branch };
    let saved: SavedState;
    try {
      const text = await this.state.read();
      if (text === undefined) {
        this.saved = fresh;
        return;
      }
      saved = JSON.parse(text) as SavedState;
      if (typeof saved !== 'object' || saved === null) throw new Error('not an object');
    } catch (err) {
      this.log.warn({ error: errorMessage(err), where: this.state.where }, 'fleet source: unreadable state.json; ignoring it');
      this.saved = fresh;
      return;
    }
    if (saved.repo !== this.publicRepo || saved.branch !== this.opts.branch) {
      this.log.info({ saved: { repo: saved.repo, branch: saved.branch } }, 'fleet source: state.json is for another repository or branch; not restoring');
      this.saved = fresh;
      return;
    }
    this.saved = saved;
    const v = saved.validating;
    if (v && typeof v.key === 'string') {
      const reason = `validation never finished: the server stopped while validating this revision (started ${v.startedAt}; out of memory, crashed or killed)`;
      this.log.error(
        { commit: v.commit, startedAt: v.startedAt },
        'fleet source: the server stopped while validating a revision; rejecting it so it cannot do that again',
      );
      saved.rejected = {
        key: v.key,
        reason,
        limits: v.limits,
        status: {
          commit: v.commit,
          contentHash: v.contentHash,
          fetchedAt: v.startedAt,
          validatedAt: now(),
          valid: false,
          errorCount: 1,
          warningCount: 0,
          errors: [limitDiagnostic('validation-crash', reason)],
        },
      };
      delete saved.validating;
      await this.writeState();
    }
    const r = saved.rejected;
    if (r && typeof r.key === 'string' && r.status) {
      if (sameContext(r.limits, this.context())) {
        this.rejection = r;
        this.rejectedKey = r.key;
        this.lastAttempt = r.status;
        this.history.unshift({ key: r.key, st: r.status });
      } else {
        this.log.info({ commit: r.status.commit }, 'fleet source: validation limits changed; a rejected revision gets another try');
        delete saved.rejected;
      }
    }
  }

  private async writeState(event?: OutboxEntry): Promise<void> {
    try {
      await this.state.write(`${JSON.stringify(this.saved, null, 2)}\n`, event);
    } catch (err) {
      // Only a restart would miss it (the revision is applied or rejected in memory either way).
      this.log.error({ error: errorMessage(err), where: this.state.where }, 'fleet source: could not write state.json');
    }
  }

  private context(): ValidationContext {
    return { memoryMb: this.limits.validationMemoryMb, timeoutMs: this.limits.validationTimeoutMs };
  }

  // ---- local ----

  private async syncLocal(reason: string): Promise<void> {
    const { g, treeHash } = await this.stage('reading the directory', this.limits.fetchTimeoutMs, async (signal) => {
      const st = await stat(this.dir);
      if (!st.isDirectory()) throw new Error(`${this.dir} is not a directory`);
      return { g: await this.localGit(signal), treeHash: await hashTree(this.dir, this.ownRel, signal) };
    });
    const fetchedAt = now();
    this.localBranch = g?.branch;
    this.lastFetchAt = fetchedAt;
    const commit = g?.commit ?? null;
    const key = `${commit ?? '-'}:${treeHash}`;
    if (await this.unchanged(key)) return;
    const info: Omit<RevisionInfo, 'contentHash'> = {
      commit,
      author: g?.author,
      time: g?.time,
      message: g?.message,
      dirty: g ? g.dirty : undefined,
    };
    await this.evaluate(key, info, fetchedAt, reason, treeHash);
  }

  private async localGit(
    signal: AbortSignal,
  ): Promise<{ commit: string | null; dirty: boolean; branch?: string; author?: string; time?: string; message?: string } | undefined> {
    const git = this.git(this.dir, signal);
    try {
      if ((await git.raw(['rev-parse', '--is-inside-work-tree'])).trim() !== 'true') return undefined;
    } catch {
      if (signal.aborted) throw signal.reason;
      return undefined;
    }
    let commit: string | null;
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
    const own = this.ownRel;
    const watcher = watch(root, {
      ignoreInitial: true,
      ignored: (p: string) => {
        const rel = relative(root, p).split(/[\\/]/);
        return rel.some((s) => s === '.git' || s === 'node_modules') || (own !== undefined && isUnder(rel.join('/'), own));
      },
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
  private async unchanged(key: string): Promise<boolean> {
    if (key === this.validatedKey) {
      // The head came back to the applied revision (e.g. a bad commit was rewound): nothing pending.
      this.lastAttempt = this.validatedStatus;
      this.rejectedKey = undefined;
      if (this.rejection) {
        this.rejection = undefined;
        delete this.saved!.rejected;
        await this.writeState();
      }
      return true;
    }
    if (key !== this.rejectedKey) return false;
    // After a restart the restored revision was the last one loaded; the head is still the rejected one.
    if (this.rejection) this.lastAttempt = this.rejection.status;
    return true;
  }

  private async evaluate(
    key: string,
    base: Omit<RevisionInfo, 'contentHash'>,
    fetchedAt: string,
    reason: string,
    filesHash: string,
    opts: { restore?: boolean } = {},
  ): Promise<void> {
    const saved = this.saved!;
    const limits = this.context();
    if (!opts.restore) {
      // The head moved on: an older rejection no longer describes it.
      this.rejection = undefined;
      this.rejectedKey = undefined;
      delete saved.rejected;
    }
    // Durable before the first byte is parsed: if validation takes the process down, the next start knows.
    saved.validating = { key, commit: base.commit, contentHash: filesHash, startedAt: now(), limits };
    await this.writeState();
    this.log.info({ reason, commit: base.commit }, 'fleet source: validating');
    let result: LoadResult;
    try {
      result = await this.stage('validation', this.limits.validationTimeoutMs, (signal) => this.loader(this.dir, signal));
      if (result.ok && !result.fleet) throw new Error('loader reported ok without a fleet');
    } catch (err) {
      if (err instanceof StoppedError || err instanceof ValidatorUnavailableError) {
        // Not the revision's doing: it gets validated again by a later sync.
        delete saved.validating;
        await this.writeState();
        throw err;
      }
      const limit = err instanceof ValidationLimitError || err instanceof StageTimeoutError;
      const message = limit ? (err as Error).message : `loader failed: ${this.redact(errorMessage(err))}`;
      await this.reject(
        key,
        {
          ...base,
          contentHash: filesHash,
          fetchedAt,
          validatedAt: now(),
          valid: false,
          errorCount: 1,
          warningCount: 0,
          errors: [limitDiagnostic(limit ? 'validation-limit' : 'loader', message)],
        },
        message,
        reason,
      );
      return;
    }
    const errors = result.diagnostics.filter((d) => d.severity === 'error');
    const warnings = result.diagnostics.filter((d) => d.severity === 'warning');
    // Notes (what could not be checked) are shown after the warnings, not counted as warnings.
    const notes = result.diagnostics.filter((d) => d.severity === 'info');
    const fleet = result.ok ? result.fleet : undefined;
    const st: RevisionStatus = {
      ...base,
      contentHash: fleet ? fleet.contentHash : filesHash,
      fetchedAt,
      validatedAt: now(),
      valid: !!fleet,
      errorCount: errors.length,
      warningCount: warnings.length,
      errors: [...errors, ...warnings, ...notes].slice(0, DIAGNOSTICS_MAX),
    };
    if (!fleet) {
      const first = errors[0];
      const where = first ? `: ${first.file}:${first.line}:${first.col}: ${first.message}` : '';
      await this.reject(key, st, `${st.errorCount} error${st.errorCount === 1 ? '' : 's'}${where}`, reason);
      return;
    }
    this.record(key, st);
    st.appliedAt = now();
    const info: RevisionInfo = { ...base, contentHash: st.contentHash };
    this.validatedRev = { info, fleet };
    this.validatedStatus = st;
    this.validatedKey = key;
    if (this.rejectedKey === key) {
      this.rejectedKey = undefined;
      this.rejection = undefined;
      delete saved.rejected;
    }
    this.restoreError = undefined;
    // Fetched and loaded: whatever kept the last sync from it is over (seen at once by status()).
    this.lastError = undefined;
    delete saved.validating;
    if (this.kind === 'remote' && st.commit) Object.assign(saved, { commit: st.commit, contentHash: st.contentHash, appliedAt: st.appliedAt });
    await this.writeState(this.appliedEvent?.(info));
    this.log.info(
      { reason, commit: st.commit, contentHash: st.contentHash, dirty: st.dirty, warningCount: st.warningCount },
      'fleet source: revision validated',
    );
    try {
      this.emit('validated', this.validatedRev);
    } catch (err) {
      this.log.error({ error: errorMessage(err) }, 'fleet source: validated listener failed');
    }
  }

  /** Refuse a revision for good (until the head moves or the limits change), also across restarts. */
  private async reject(key: string, st: RevisionStatus, why: string, reason: string): Promise<void> {
    this.record(key, st);
    this.rejectedKey = key;
    this.rejection = { key, reason: why, limits: this.context(), status: st };
    this.saved!.rejected = this.rejection;
    delete this.saved!.validating;
    await this.writeState();
    this.log.warn({ reason, commit: st.commit, errorCount: st.errorCount, first: why }, 'fleet source: revision invalid; not applied');
  }

  /** One history entry per revision: a revision seen again moves to the top with its count raised. */
  private record(key: string, st: RevisionStatus): void {
    const i = this.history.findIndex((h) => h.key === key);
    const prev = i >= 0 ? this.history.splice(i, 1)[0]!.st : undefined;
    st.attempts = (prev?.attempts ?? 0) + 1;
    st.lastSeenAt = now();
    this.lastAttempt = st;
    this.history.unshift({ key, st });
    if (this.history.length > HISTORY_MAX) this.history.length = HISTORY_MAX;
  }

  private git(baseDir: string, signal: AbortSignal = this.halt.signal): SimpleGit {
    return simpleGit({ baseDir, timeout: { block: GIT_IDLE_TIMEOUT_MS }, abort: signal, unsafe: ENV_UNSAFE }).env(this.env);
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
  return (
    b.length > 0 &&
    !b.startsWith('-') &&
    !b.startsWith('/') &&
    !b.endsWith('/') &&
    !b.endsWith('.') &&
    !b.endsWith('.lock') &&
    !b.includes('..') &&
    !b.includes('//') &&
    !b.includes('@{') &&
    b !== '@' &&
    !/[\s~^:?*[\\\x00-\x1f\x7f]/.test(b)
  );
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

/** SHA-256 over paths and contents (skipping .git, node_modules and `skip`): tells local revisions apart. */
async function hashTree(root: string, skip: string | undefined, signal: AbortSignal): Promise<string> {
  const h = createHash('sha256');
  const walk = async (rel: string): Promise<void> => {
    if (signal.aborted) throw signal.reason;
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
      if (skip !== undefined && isUnder(r, skip)) continue;
      try {
        if (e.isDirectory()) {
          await walk(r);
        } else if (e.isFile()) {
          // Streamed: a huge file costs no memory here. FIFOs and devices are not files: skipped.
          h.update(`f\0${r}\0`);
          let size = 0;
          for await (const chunk of createReadStream(join(root, r), { signal }) as AsyncIterable<Buffer>) {
            size += chunk.length;
            h.update(chunk);
          }
          h.update(`\0${size}\0`);
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

function isUnder(rel: string, dir: string): boolean {
  return rel === dir || rel.startsWith(`${dir}/`);
}

function limitDiagnostic(rule: string, message: string): Diagnostic {
  return { severity: 'error', file: '.', line: 1, col: 1, message, rule };
}

function sameContext(a: ValidationContext | undefined, b: ValidationContext): boolean {
  return !!a && a.memoryMb === b.memoryMb && a.timeoutMs === b.timeoutMs;
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function duration(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120_000 || ms % 60_000 !== 0) return `${Math.round(ms / 100) / 10} s`;
  return `${ms / 60_000} min`;
}

function errorMessage(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).trim();
}

function now(): string {
  return new Date().toISOString();
}
