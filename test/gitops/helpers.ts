/**
 * Real parts for the fleet source tests: git repositories in temp dirs (a working clone pushing to a bare remote over file://), and a
 * logger whose lines the tests can read.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { pino, type Logger } from 'pino';

/** git with a fixed identity, never the caller's repository. */
export function git(cwd: string, ...args: string[]): string {
  const env = { ...process.env };
  for (const k of ['GIT_DIR', 'GIT_WORK_TREE', 'GIT_INDEX_FILE']) delete env[k];
  return execFileSync('git', ['-c', 'user.name=Ada Admin', '-c', 'user.email=ada@example.com', '-c', 'commit.gpgsign=false', ...args], {
    cwd,
    env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  }).trim();
}

export function tempDir(prefix = 'orchard-source-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A working repository on `main` pushing to a bare repository reached over file://. */
export class FleetRepo {
  readonly root: string;
  readonly work: string;
  readonly bare: string;
  readonly url: string;
  readonly dataDir: string;

  constructor() {
    this.root = tempDir();
    this.work = join(this.root, 'work');
    this.bare = join(this.root, 'remote.git');
    this.dataDir = join(this.root, 'data');
    this.url = pathToFileURL(this.bare).href;
    mkdirSync(this.work);
    git(this.root, 'init', '-q', '--bare', '-b', 'main', this.bare);
    git(this.work, 'init', '-q', '-b', 'main');
    git(this.work, 'remote', 'add', 'origin', this.url);
  }

  write(rel: string, content: string): this {
    mkdirSync(dirname(join(this.work, rel)), { recursive: true });
    writeFileSync(join(this.work, rel), content);
    return this;
  }

  remove(rel: string): this {
    rmSync(join(this.work, rel));
    return this;
  }

  /** Commit everything and push; returns the sha. */
  commit(message: string): string {
    git(this.work, 'add', '-A');
    git(this.work, 'commit', '-q', '--allow-empty', '-m', message);
    git(this.work, 'push', '-q', 'origin', 'main');
    return this.head();
  }

  /** Move the branch to sha and force-push it. */
  rewind(sha: string): void {
    git(this.work, 'reset', '-q', '--hard', sha);
    git(this.work, 'push', '-q', '--force', 'origin', 'main');
  }

  head(): string {
    return git(this.work, 'rev-parse', 'HEAD');
  }

  cleanup(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** A valid fleet document (a Secret declaration: the smallest kind) named `name`. */
export const doc = (name: string) => `apiVersion: orchard/v1\nkind: Secret\nmetadata: {name: ${name}}\nspec: {}\n`;
export const GOOD = doc('wifi');
/** An unknown key `invalid` on line 3, column 1: the real loader refuses it there. */
export const BAD = 'apiVersion: orchard/v1\nkind: Secret\ninvalid: true\nmetadata: {name: broken}\nspec: {}\n';

export interface CapturedLog {
  log: Logger;
  text: () => string;
}

export function captureLog(): CapturedLog {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  return { log: pino({ level: 'debug' }, sink), text: () => chunks.join('') };
}

/** Poll a condition until it holds or the deadline passes. */
export async function waitFor<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
