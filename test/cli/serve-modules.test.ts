/**
 * `orchard serve` starts without what it does not use until it uses it (issue 18: the listening
 * server's memory): a real server process runs with loader hooks that log every module it loads
 * (test/helpers/module-log.mjs), and the modules that should load on demand are not in the log
 * once it listens, until a request needs them.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, waitExit } from '../helpers/process.js';

const MODULE_LOG = join(import.meta.dirname, '../helpers/module-log.mjs');
const TOKEN = 'serve-modules-token';

/** Loaded on demand only: each is either never needed by a LevelDB server or only by a cold path. */
const LAZY: { what: string; pattern: RegExp }[] = [
  { what: 'TypeBox (the admin API schemas, until a body arrives)', pattern: /\/node_modules\/typebox\// },
  { what: 'Ajv (validation, until a body arrives)', pattern: /\/node_modules\/ajv\// },
  { what: 'the OpenAPI document', pattern: /\/dist\/src\/http\/openapi\.js$/ },
  { what: 'the admin API schemas', pattern: /\/dist\/src\/schema\/api\.js$/ },
  { what: 'the fleet repository schema', pattern: /\/dist\/src\/schema\/fleet\.js$/ },
  { what: 'pg (a LevelDB store)', pattern: /\/node_modules\/pg\// },
  { what: 'the PostgreSQL store (a LevelDB store)', pattern: /\/dist\/src\/store\/postgres\.js$/ },
  { what: 'node-forge (reading a .p12 push certificate)', pattern: /\/node_modules\/node-forge\// },
  { what: 'the simulator', pattern: /\/dist\/src\/sim\// },
  { what: "the CLI's other commands", pattern: /\/dist\/src\/cli\/(?!main\.js$|enroll\.js$|store\.js$|node-flags\.js$)[^/]+$/ },
];

let dir: string;
let logFile: string;
let child: ReturnType<typeof spawn> | undefined;
let url: string;

const loaded = () => readFileSync(logFile, 'utf8').split('\n').filter(Boolean);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'orchard-serve-modules-'));
  logFile = join(dir, 'modules.log');
  child = spawn(process.execPath, ['--import', MODULE_LOG, CLI, 'serve', '--listen', '127.0.0.1:0', '--data-dir', join(dir, 'data')], {
    env: { ...process.env, ORCHARD_MODULE_LOG: logFile, ORCHARD_API_TOKEN: TOKEN },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  url = await new Promise<string>((resolve, reject) => {
    child!.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /"url":"(http[^"]+)"[^\n]*"msg":"orchard listening"/.exec(out);
      if (m) resolve(m[1]!);
    });
    child!.once('exit', (code) => reject(new Error(`server exited with ${code}:\n${out}`)));
  });
});

afterAll(async () => {
  if (child) {
    child.kill('SIGTERM');
    await waitExit(child);
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('orchard serve start', () => {
  it('listens without the modules that load on demand', () => {
    const modules = loaded();
    // The log is the server's own: it saw the entry and the server (else the test proves nothing).
    expect(modules.some((u) => u.endsWith('/dist/src/cli/main.js'))).toBe(true);
    expect(modules.some((u) => u.endsWith('/dist/src/server.js'))).toBe(true);
    const early = LAZY.flatMap(({ what, pattern }) => modules.filter((u) => pattern.test(u)).map((u) => `${what}: ${u}`));
    expect(early).toEqual([]);
  });

  it('loads the body schemas when the first admin API body arrives, and refuses a bad one', async () => {
    const res = await fetch(`${url}/api/v1/commands`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ targets: [], command: { RequestType: 'DeviceInformation' } }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toMatch(/targets/);
    const modules = loaded();
    expect(modules.some((u) => /\/node_modules\/ajv\//.test(u))).toBe(true);
    expect(modules.some((u) => u.endsWith('/dist/src/schema/api.js'))).toBe(true);
  });

  it('loads the OpenAPI document on its first request', async () => {
    const res = await fetch(`${url}/api/v1/openapi.json`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { openapi: string }).openapi).toMatch(/^3\./);
    expect(loaded().some((u) => u.endsWith('/dist/src/http/openapi.js'))).toBe(true);
  });
});
