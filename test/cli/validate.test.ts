/** `orchard validate` as CI runs it: a real process, exit codes and output formats. */
import { execFile } from 'node:child_process';
import { mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { buildPlist } from '../../src/protocol/plist.js';
import { blueprint, makeRepo, profile } from '../gitops/repo.js';
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
    expect(r.stdout).toContain('profiles/p.yaml:11:9: warning:');
    expect(r.stdout).toMatch(/minLength/);
    expect(r.stdout).toMatch(/blueprints\/b\.yaml:8:17: error: profile "missing" is not defined \[ref-missing-profile\]/);
    expect(r.stdout).toMatch(/^invalid: 1 error, 1 warning/m);
  });

  it('github format prints workflow annotations (notices for what was not checked)', async () => {
    const r = await validate([bad, '--format', 'github']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^::warning file=profiles\/p\.yaml,line=11,col=9,title=orchard apple-unknown-key::/m);
    const chrome = makeRepo({
      'p.yaml': profile('p', 'com.example.p', '    - type: com.google.Chrome\n      keys: {HomepageLocation: "https://example.com"}\n'),
      'b.yaml': blueprint('b', '    platforms: [macOS]', ['p']),
    });
    const n = await validate([chrome, '--format', 'github']);
    expect(n.code).toBe(0);
    expect(n.stdout).toMatch(/^::notice file=p\.yaml,line=9,col=13,title=orchard custom-preferences::keys of com\.google\.Chrome are not checked/m);
    expect(n.stdout).toMatch(/^valid: 0 errors, 0 warnings, 1 note/m);
  });

  it('json format is machine-readable', async () => {
    const r = await validate([bad, '--format', 'json']);
    const out = JSON.parse(r.stdout) as { valid: boolean; errors: number; warnings: number; diagnostics: { rule: string }[] };
    expect(out.valid).toBe(false);
    expect(out).toMatchObject({ errors: 1, warnings: 1 });
    expect(out.diagnostics.map((d) => d.rule).sort()).toEqual(['apple-unknown-key', 'ref-missing-profile']);
  });

  it('--strict: warnings are errors; without it a repository with only warnings is valid', async () => {
    const warned = makeRepo({
      'p.yaml': profile('p', 'com.example.p', '    - type: com.apple.mobiledevice.passwordpolicy\n      keys:\n        minLenght: 8\n'),
      'b.yaml': blueprint('b', '    platforms: [macOS]', ['p']),
    });
    const lax = await validate([warned]);
    expect(lax.code).toBe(0);
    expect(lax.stdout).toMatch(/^valid: 0 errors, 1 warning/m);
    const strict = await validate([warned, '--strict']);
    expect(strict.code).toBe(1);
    expect(strict.stdout).toMatch(/^p\.yaml:11:9: error: unknown key 'minLenght'.*\[apple-unknown-key\]$/m);
    expect(strict.stdout).toMatch(/^invalid: 1 error, 0 warnings/m);
    expect(JSON.parse((await validate([warned, '--strict', '--format', 'json'])).stdout)).toMatchObject({ valid: false, errors: 1, warnings: 0 });
  });

  it('--manifests checks custom preference domains against a folder of manifests', async () => {
    const repo = makeRepo({
      'p.yaml': profile('p', 'com.example.p', '    - type: com.google.Chrome\n      keys: {HomepageIsNewTabPage: "yes"}\n'),
      'b.yaml': blueprint('b', '    platforms: [macOS]', ['p']),
    });
    expect((await validate([repo])).code).toBe(0);
    const dir = mkdtempSync(join(tmpdir(), 'orchard-manifests-'));
    writeFileSync(
      join(dir, 'com.google.Chrome.plist'),
      buildPlist({ pfm_domain: 'com.google.Chrome', pfm_subkeys: [{ pfm_name: 'HomepageIsNewTabPage', pfm_type: 'boolean' }] }),
    );
    const r = await validate([repo, '--manifests', dir]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^p\.yaml:10:\d+: error: 'HomepageIsNewTabPage' must be a boolean, got string "yes" \[manifest-type\]$/m);
  });

  it('exit 2 on usage errors', async () => {
    expect((await validate(['/nonexistent/path'])).code).toBe(2);
    const badFormat = await validate([bad, '--format', 'xml']);
    expect(badFormat.code).toBe(2);
    expect(badFormat.stderr).toMatch(/xml/);
  });

  describe('hostile repositories: diagnostics in every format, never a stack trace', () => {
    const outside = mkdtempSync(join(tmpdir(), 'orchard-outside-'));
    writeFileSync(
      join(outside, 'leak.mobileconfig'),
      '<plist><dict><key>PayloadType</key><string>Configuration</string><key>Leak</key><string>TOP-SECRET-VALUE</string></dict></plist>',
    );
    const secret = (extra: string) => `apiVersion: orchard/v1\nkind: Secret\nmetadata: {name: s}\nspec:\n  description: d\n${extra}`;
    const bomb = [
      'a: &a [x, x, x, x, x, x, x, x, x, x]',
      ...Array.from({ length: 8 }, (_, i) => `${'bcdefghij'[i]}: &${'bcdefghij'[i]} [${Array(10).fill(`*${'abcdefghij'[i]}`).join(', ')}]`),
    ].join('\n');
    const hostile = makeRepo({
      'bomb.yaml': `${bomb}\n`,
      'unresolved.yaml': secret('  x: *nowhere\n'),
      'a-deep.yaml': `${'['.repeat(50_000)}${']'.repeat(50_000)}\n`,
      'f.yaml': 'apiVersion: orchard/v1\nkind: Profile\nmetadata: {name: f}\nspec:\n  file: leak.mobileconfig\n',
    });
    symlinkSync(join(outside, 'leak.mobileconfig'), join(hostile, 'leak.mobileconfig'));
    const noTrace = (r: { stdout: string; stderr: string }) => {
      expect(`${r.stdout}${r.stderr}`).not.toMatch(/\n\s+at .*:\d+:\d+|Error:|RangeError|ReferenceError/);
      expect(`${r.stdout}${r.stderr}`).not.toMatch(/TOP-SECRET|orchard-outside/);
    };

    it('text', async () => {
      const r = await validate([hostile]);
      noTrace(r);
      expect(r.code).toBe(1);
      // The bomb stops the loading at the repository's node limit: the files after it are not reached.
      expect(r.stdout).toMatch(
        /^bomb\.yaml:\d+:\d+: error: more than 300000 YAML nodes in the repository, aliases counted as what they expand to \(limit nodes\) \[limit-nodes\]$/m,
      );
      expect(r.stdout).toMatch(/^a-deep\.yaml:1:65: error: nesting deeper than 64 levels \(limit depth\) \[yaml-depth\]$/m);
      const rest = makeRepo({
        'unresolved.yaml': secret('  x: *nowhere\n'),
        'f.yaml': 'apiVersion: orchard/v1\nkind: Profile\nmetadata: {name: f}\nspec:\n  file: leak.mobileconfig\n',
      });
      symlinkSync(join(outside, 'leak.mobileconfig'), join(rest, 'leak.mobileconfig'));
      const r2 = await validate([rest]);
      noTrace(r2);
      expect(r2.stdout).toMatch(/^unresolved\.yaml:6:6: error: alias \*nowhere has no anchor &nowhere before it \[yaml\]$/m);
      expect(r2.stdout).toMatch(
        /^f\.yaml:5:9: error: cannot read "leak\.mobileconfig": it resolves \(through a symbolic link\) to a path outside the repository \[mobileconfig\]$/m,
      );
    });

    it('json and github', async () => {
      const json = await validate([hostile, '--format', 'json']);
      noTrace(json);
      expect(json.code).toBe(1);
      const out = JSON.parse(json.stdout) as { valid: boolean; diagnostics: { file: string; rule: string; line: number }[] };
      expect(out.valid).toBe(false);
      expect(out.diagnostics.map((d) => `${d.file} ${d.rule}`)).toEqual(['a-deep.yaml yaml-depth', 'bomb.yaml limit-nodes']);
      const gh = await validate([hostile, '--format', 'github']);
      noTrace(gh);
      expect(gh.stdout).toMatch(/^::error file=a-deep\.yaml,line=1,col=65,title=orchard yaml-depth::nesting deeper than 64 levels/m);
    });

    it('a harmless anchor reused 120 times is valid', async () => {
      const devices = Array.from(
        { length: 120 },
        (_, i) => `    - {serial: C02XD${String(i).padStart(7, '0')}, tags: ${i === 0 ? '&t [design, office]' : '*t'}}\n`,
      ).join('');
      const r = await validate([makeRepo({ 'g.yaml': `apiVersion: orchard/v1\nkind: DeviceGroup\nmetadata: {name: g}\nspec:\n  devices:\n${devices}` })]);
      noTrace(r);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^valid: 0 errors, 0 warnings/m);
    });
  });
});
