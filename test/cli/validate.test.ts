/** `orchard validate` as CI runs it: a real process, exit codes and output formats. */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { blueprint, makeRepo, passcodePayload, profile } from '../gitops/repo.js';
import { CLI } from '../helpers/process.js';

const exec = promisify(execFile);
async function validate(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await exec(process.execPath, [CLI, 'validate', ...args]);
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const bad = makeRepo({
  'profiles/p.yaml': profile('p', 'com.example.p', '    - type: com.apple.mobiledevice.passwordpolicy\n      keys:\n        minLenght: 8\n'),
  'blueprints/b.yaml': blueprint('b', '    platforms: [macOS]', ['p', 'missing']),
});

describe('orchard validate', () => {
  it('exit 0 on the example fleet', async () => {
    const r = await validate([join(import.meta.dirname, '../../config-examples/fleet')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^valid: 0 errors, 0 warnings/m);
  });

  it('exit 1 with file:line:col and what to change', async () => {
    const r = await validate([bad]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('profiles/p.yaml:11:9: error:');
    expect(r.stdout).toMatch(/minLength/);
    expect(r.stdout).toMatch(/blueprints\/b\.yaml:8:17: error: profile "missing" is not defined \[ref-missing-profile\]/);
    expect(r.stdout).toMatch(/^invalid: 2 errors/m);
  });

  it('github format prints workflow annotations', async () => {
    const r = await validate([bad, '--format', 'github']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^::error file=profiles\/p\.yaml,line=11,col=9,title=orchard apple-unknown-key::/m);
  });

  it('json format is machine-readable', async () => {
    const r = await validate([bad, '--format', 'json']);
    const out = JSON.parse(r.stdout) as { valid: boolean; errors: number; diagnostics: { rule: string }[] };
    expect(out.valid).toBe(false);
    expect(out.errors).toBe(2);
    expect(out.diagnostics.map((d) => d.rule).sort()).toEqual(['apple-unknown-key', 'ref-missing-profile']);
  });

  it('exit 2 on usage errors', async () => {
    expect((await validate(['/nonexistent/path'])).code).toBe(2);
    const badFormat = await validate([bad, '--format', 'xml']);
    expect(badFormat.code).toBe(2);
    expect(badFormat.stderr).toMatch(/xml/);
  });
});
