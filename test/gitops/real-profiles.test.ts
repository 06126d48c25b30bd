/**
 * The corpus of real, public configuration profiles (test/fixtures/real-profiles, issue 12): each
 * file goes through the real loader as a `file:` Profile of a small fleet repository.
 *
 * - "installs" (macOS installs it as it is): the loader must report no error;
 * - "refused" (a concrete reason macOS refuses it, in the manifest's "why"): the loader must report an error;
 * - no file may make the loader throw, or report its internal `loader` error.
 *
 * Files the loader refuses today although macOS installs them are listed, with the first error's
 * rule, in known-failures.json; the test asserts that the failures are exactly that list, so a fix
 * must shrink it and any new failure fails the test. After a fix, regenerate the list with
 * `ORCHARD_CORPUS_UPDATE=1 npx vitest run test/gitops/real-profiles.test.ts` and review its diff
 * (the same check runs either way: only the file is rewritten first).
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadFleet } from '../../src/gitops/load.js';
import type { Diagnostic } from '../../src/gitops/model.js';
import { writeFiles } from './repo.js';

const CORPUS = join(import.meta.dirname, '../fixtures/real-profiles');
const MANIFEST = join(CORPUS, 'manifest.json');
const KNOWN = join(CORPUS, 'known-failures.json');

interface Entry {
  file: string;
  collection: string;
  expect: 'installs' | 'refused';
  why?: string;
}
interface KnownFailure {
  file: string;
  rule: string;
}
interface Outcome {
  entry: Entry;
  errors: Diagnostic[];
  warnings: Diagnostic[];
  threw?: string;
}

const manifest: Entry[] = JSON.parse(readFileSync(MANIFEST, 'utf8'));

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const abs = join(dir, name);
    return statSync(abs).isDirectory() ? walk(abs) : [relative(CORPUS, abs).split('\\').join('/')];
  });
}

const fleet = (file: string) => ({
  'profiles/corpus.yaml': `apiVersion: orchard/v1\nkind: Profile\nmetadata: {name: corpus}\nspec:\n  file: ${JSON.stringify(`../files/${file}`)}\n`,
  'blueprints/macs.yaml': 'apiVersion: orchard/v1\nkind: Blueprint\nmetadata: {name: macs}\nspec:\n  selector: {platforms: [macOS]}\n  profiles: [corpus]\n',
});

async function load(entry: Entry, root: string): Promise<Outcome> {
  const bytes = readFileSync(join(CORPUS, entry.file));
  writeFiles(root, { ...fleet('profile.mobileconfig'), 'files/profile.mobileconfig': bytes });
  try {
    const r = await loadFleet(root);
    const errors = r.diagnostics.filter((d) => d.severity === 'error');
    const warnings = r.diagnostics.filter((d) => d.severity === 'warning');
    const internal = errors.find((d) => d.rule === 'loader');
    return { entry, errors, warnings, threw: internal ? `loader error: ${internal.message}` : undefined };
  } catch (err) {
    return { entry, errors: [], warnings: [], threw: err instanceof Error ? `${err.name}: ${err.message}` : String(err) };
  }
}

const byFile = (a: { file: string }, b: { file: string }) => a.file.localeCompare(b.file);

describe('the real-profiles corpus', () => {
  const outcomes: Outcome[] = [];
  let root: string;

  beforeAll(async () => {
    for (const entry of manifest) {
      root = mkdtempSync(join(tmpdir(), 'orchard-corpus-'));
      try {
        outcomes.push(await load(entry, root));
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    }
    const failures = outcomes
      .filter((o) => o.entry.expect === 'installs' && o.errors.length > 0)
      .map((o) => ({ file: o.entry.file, rule: o.errors[0]!.rule }))
      .sort(byFile);
    if (process.env.ORCHARD_CORPUS_UPDATE === '1') writeFileSync(KNOWN, JSON.stringify(failures, null, 2) + '\n');
    printSummary(outcomes);
  }, 300_000);

  afterAll(() => {
    if (root && existsSync(root)) rmSync(root, { recursive: true, force: true });
  });

  it('has a manifest entry for every profile in the corpus, each with a source in SOURCES.md', () => {
    const files = walk(CORPUS)
      .filter((f) => f.endsWith('.mobileconfig'))
      .sort();
    expect(manifest.map((e) => e.file).sort()).toEqual(files);
    expect(new Set(manifest.map((e) => e.file)).size).toBe(manifest.length);
    const sources = readFileSync(join(CORPUS, 'SOURCES.md'), 'utf8');
    for (const e of manifest) {
      expect(e.file.startsWith(`${e.collection}/`), e.file).toBe(true);
      expect(['installs', 'refused']).toContain(e.expect);
      if (e.expect === 'refused') expect(e.why, `${e.file} is "refused" without a reason`).toBeTruthy();
      expect(sources.includes(`\`${e.file.slice(e.collection.length + 1)}\``), `${e.file} in SOURCES.md`).toBe(true);
      expect(existsSync(join(CORPUS, e.collection, 'LICENSE')) || existsSync(join(CORPUS, e.collection, 'LICENSE.md')), `${e.collection} has its licence`).toBe(
        true,
      );
    }
  });

  it('no profile makes the loader throw', () => {
    expect(outcomes.filter((o) => o.threw).map((o) => `${o.entry.file}: ${o.threw}`)).toEqual([]);
  });

  it('every profile macOS refuses is refused', () => {
    expect(outcomes.filter((o) => o.entry.expect === 'refused' && o.errors.length === 0).map((o) => o.entry.file)).toEqual([]);
  });

  it('the profiles macOS installs that the loader refuses are exactly known-failures.json', () => {
    const known: KnownFailure[] = JSON.parse(readFileSync(KNOWN, 'utf8'));
    const actual = outcomes
      .filter((o) => o.entry.expect === 'installs' && o.errors.length > 0)
      .map((o) => ({ file: o.entry.file, rule: o.errors[0]!.rule }))
      .sort(byFile);
    expect(actual).toEqual([...known].sort(byFile));
  });
});

function printSummary(outcomes: Outcome[]): void {
  const lines: string[] = [];
  const count = <K extends string>(keyOf: (o: Outcome) => K) => {
    const m = new Map<K, { total: number; ok: number }>();
    for (const o of outcomes) {
      const k = keyOf(o);
      const v = m.get(k) ?? { total: 0, ok: 0 };
      v.total++;
      if (o.errors.length === 0) v.ok++;
      m.set(k, v);
    }
    return [...m.entries()].sort((a, b) => a[0].localeCompare(b[0]));
  };
  lines.push(`real-profiles corpus: ${outcomes.length} files, ${outcomes.filter((o) => o.errors.length === 0).length} without errors`);
  lines.push('  by collection (files / without errors):');
  for (const [k, v] of count((o) => o.entry.collection)) lines.push(`    ${k}: ${v.total} / ${v.ok}`);
  lines.push('  by expectation:');
  for (const [k, v] of count((o) => o.entry.expect)) lines.push(`    ${k}: ${v.total} / ${v.ok}`);
  lines.push('  by first error rule:');
  for (const [k, v] of count((o) => (o.errors[0]?.rule ?? '(none)') as string)) lines.push(`    ${k}: ${v.total}`);
  const warned = new Map<string, number>();
  for (const o of outcomes) for (const rule of new Set(o.warnings.map((w) => w.rule))) warned.set(rule, (warned.get(rule) ?? 0) + 1);
  lines.push('  files with warnings, by rule:');
  for (const [k, v] of [...warned.entries()].sort((a, b) => a[0].localeCompare(b[0]))) lines.push(`    ${k}: ${v}`);
  lines.push('  failing "installs" files:');
  for (const o of outcomes.filter((x) => x.entry.expect === 'installs' && x.errors.length > 0)) {
    lines.push(`    ${o.entry.file}: [${o.errors[0]!.rule}] ${o.errors[0]!.message.slice(0, 160)}`);
  }
  console.log(lines.join('\n'));
}
