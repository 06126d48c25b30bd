/**
 * The V8 flags of `orchard serve` (issue 18: memory) are defined once (src/cli/node-flags.ts) and
 * applied wherever the server starts: the `orchard` executable's `#!` line, `npm start` and the
 * protocol benchmark. A server started without them says which are missing.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { missingServeFlags, SERVE_NODE_FLAGS } from '../../src/cli/node-flags.js';
import { CLI, spawnServer, waitExit, type ServerProcess } from '../helpers/process.js';

const ROOT = join(import.meta.dirname, '../..');
const WARNING = /started without the V8 flags/;
const HEALTHZ_LOGGED = /"path":"\/healthz"/;

let dirs: string[] = [];
let servers: ServerProcess[] = [];

afterEach(async () => {
  for (const s of servers) {
    s.child.kill('SIGTERM');
    await waitExit(s.child);
  }
  servers = [];
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs = [];
});

async function serve(asExecutable: boolean): Promise<ServerProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-node-flags-'));
  dirs.push(dir);
  const s = await spawnServer(['--data-dir', join(dir, 'data')], {}, { asExecutable });
  servers.push(s);
  return s;
}

/** The command line the kernel started the process with (what V8 was configured from). */
const cmdline = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);

async function eventually(what: () => boolean): Promise<boolean> {
  for (let i = 0; i < 100 && !what(); i++) await new Promise((r) => setTimeout(r, 100));
  return what();
}

describe('the V8 flags of orchard serve', () => {
  it('are the ones npm start passes and the executable carries in its #! line', () => {
    const start = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts.start!;
    expect(start.startsWith(`node ${SERVE_NODE_FLAGS.join(' ')} dist/src/cli/main.js serve`)).toBe(true);
    expect(readFileSync(CLI, 'utf8').split('\n')[0]).toBe(`#!/usr/bin/env -S node ${SERVE_NODE_FLAGS.join(' ')}`);
  });

  it('are found missing by name, whatever the value, in the arguments or NODE_OPTIONS', () => {
    expect(missingServeFlags([])).toEqual(SERVE_NODE_FLAGS);
    expect(missingServeFlags(['--max-semi-space-size=8', '--heap_growing_percent=20'], '--initial-old-space-size=64 --v8-pool-size=2')).toEqual([]);
    expect(missingServeFlags(['--max-semi-space-size=4'])).toEqual(SERVE_NODE_FLAGS.slice(1));
  });

  it('apply to the server run as the orchard executable, which does not warn', async () => {
    // What npm does to a package's bin when it installs it.
    chmodSync(CLI, statSync(CLI).mode | 0o111);
    const s = await serve(true);
    const args = cmdline(s.child.pid!);
    for (const f of SERVE_NODE_FLAGS) expect(args).toContain(f);
    // The warning comes before any request is served, in the same log: once a request's line is there, so would it be.
    expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
    expect(await eventually(() => HEALTHZ_LOGGED.test(s.output()))).toBe(true);
    expect(s.output()).not.toMatch(WARNING);
  });

  it('are named in a warning when the server is started by node without them', async () => {
    const s = await serve(false);
    expect(cmdline(s.child.pid!).some((a) => a.startsWith('--max-semi-space-size'))).toBe(false);
    expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
    expect(await eventually(() => HEALTHZ_LOGGED.test(s.output()))).toBe(true);
    expect(s.output()).toMatch(WARNING);
    const line = s
      .output()
      .split('\n')
      .find((l) => WARNING.test(l))!;
    expect((JSON.parse(line) as { missing: string[] }).missing).toEqual(SERVE_NODE_FLAGS);
  });
});
