/**
 * Real parts for the fleet source tests: a small YAML loader standing in for src/gitops/load.ts,
 * git repositories in temp dirs (a working clone pushing to a bare remote over file://), and a
 * logger whose lines the tests can read.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { pino, type Logger } from 'pino';
import { isMap, isScalar, LineCounter, parseAllDocuments } from 'yaml';
import type { Diagnostic, LoadResult } from '../../src/gitops/model.js';

/**
 * Reads every *.yaml under dir (not .git, node_modules). A syntax error, or a document with
 * `invalid: true`, is an error diagnostic at its file:line:col; otherwise an empty Fleet whose
 * contentHash covers the files.
 */
export async function yamlLoader(dir: string): Promise<LoadResult> {
  const diagnostics: Diagnostic[] = [];
  const hash = createHash('sha256');
  for (const rel of await yamlFiles(dir)) {
    const src = await readFile(join(dir, rel), 'utf8');
    hash.update(`${rel}\0${src}\0`);
    const lineCounter = new LineCounter();
    for (const doc of parseAllDocuments(src, { lineCounter })) {
      for (const e of doc.errors) {
        const pos = e.linePos?.[0] ?? { line: 1, col: 1 };
        diagnostics.push({ severity: 'error', file: rel, line: pos.line, col: pos.col, message: e.message, rule: 'yaml' });
      }
      if (doc.errors.length > 0 || !isMap(doc.contents)) continue;
      for (const pair of doc.contents.items) {
        if (isScalar(pair.key) && pair.key.value === 'invalid' && isScalar(pair.value) && pair.value.value === true) {
          const pos = lineCounter.linePos(pair.key.range?.[0] ?? 0);
          diagnostics.push({ severity: 'error', file: rel, line: pos.line, col: pos.col, message: 'document is marked invalid', rule: 'yaml' });
        }
      }
    }
  }
  if (diagnostics.length > 0) return { ok: false, diagnostics };
  return {
    ok: true,
    diagnostics,
    fleet: {
      profiles: new Map(), blueprints: new Map(), deviceGroups: new Map(), secrets: new Map(), tagsBySerial: new Map(),
      contentHash: hash.digest('hex'),
    },
  };
}

async function yamlFiles(root: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(join(root, rel), { withFileTypes: true });
  for (const e of entries) {
    if (e.name === '.git' || e.name === 'node_modules') continue;
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await yamlFiles(root, r)));
    else if (e.isFile() && e.name.endsWith('.yaml')) out.push(r);
  }
  return out.sort();
}

/** git with a fixed identity, never the caller's repository. */
export function git(cwd: string, ...args: string[]): string {
  const env = { ...process.env };
  for (const k of ['GIT_DIR', 'GIT_WORK_TREE', 'GIT_INDEX_FILE']) delete env[k];
  return execFileSync('git', ['-c', 'user.name=Ada Admin', '-c', 'user.email=ada@example.com', '-c', 'commit.gpgsign=false', ...args], {
    cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'],
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

export const GOOD = 'kind: Profile\nname: wifi\n';
/** `invalid: true` on line 3, column 1. */
export const BAD = 'kind: Profile\nname: broken\ninvalid: true\n';

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
