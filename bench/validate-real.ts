/**
 * `orchard validate` of 1,000 real profiles as a new process (issue 12, goal < 3 s): the corpus
 * of real public profiles in test/fixtures/real-profiles (those macOS installs), copied round-robin
 * to 1,000 `file:` Profiles. Each copy gets its own identifiers (the corpus text with every
 * PayloadIdentifier string suffixed), so that copies are distinct profiles, not conflicts.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = new URL('../..', import.meta.url).pathname;
const CORPUS = join(ROOT, 'test/fixtures/real-profiles');

interface Entry {
  file: string;
  expect: 'installs' | 'refused';
}

/** Every `<key>PayloadIdentifier</key><string>X</string>` gets `.copyN` appended to X. */
function renamed(xml: string, n: number): string {
  return xml.replace(/(<key>PayloadIdentifier<\/key>\s*<string>)([^<]*)(<\/string>)/g, (_, a: string, id: string, b: string) => `${a}${id}.copy${n}${b}`);
}

export function benchValidateReal(count = 1000): { profiles: number; cliMs: number; errors: number; warnings: number } {
  const entries = (JSON.parse(readFileSync(join(CORPUS, 'manifest.json'), 'utf8')) as Entry[]).filter((e) => e.expect === 'installs');
  const dir = mkdtempSync(join(tmpdir(), 'orchard-bench-real-'));
  try {
    mkdirSync(join(dir, 'files'));
    mkdirSync(join(dir, 'profiles'));
    const names: string[] = [];
    for (let i = 0; i < count; i++) {
      const e = entries[i % entries.length]!;
      writeFileSync(join(dir, 'files', `p${i}.mobileconfig`), renamed(readFileSync(join(CORPUS, e.file), 'utf8'), i));
      writeFileSync(
        join(dir, 'profiles', `p${i}.yaml`),
        `apiVersion: orchard/v1\nkind: Profile\nmetadata: {name: p${i}}\nspec:\n  file: ../files/p${i}.mobileconfig\n`,
      );
      names.push(`p${i}`);
    }
    writeFileSync(
      join(dir, 'blueprint.yaml'),
      `apiVersion: orchard/v1\nkind: Blueprint\nmetadata: {name: macs}\nspec:\n  selector: {platforms: [macOS]}\n  profiles: [${names.join(', ')}]\n`,
    );
    const cli = join(ROOT, 'dist/src/cli/main.js');
    const t0 = performance.now();
    let out: string;
    try {
      out = execFileSync(process.execPath, [cli, 'validate', dir, '--format', 'json'], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
    } catch (err) {
      out = (err as { stdout: string }).stdout;
    }
    const cliMs = performance.now() - t0;
    const report = JSON.parse(out) as { diagnostics: { severity: string }[] };
    const count_ = (s: string) => report.diagnostics.filter((d) => d.severity === s).length;
    return { profiles: count, cliMs, errors: count_('error'), warnings: count_('warning') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
