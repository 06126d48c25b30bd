/**
 * Property: whatever a committer puts in a YAML or .mobileconfig file, the loader answers with
 * diagnostics (file:line:col) and never throws. Random and mutated inputs, seeded from the
 * example fleet and from hostile snippets: 10,000 through the function that parses one YAML
 * file, 1,000 through the profile reader, and 200 whole repositories through loadFleet.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { resolveLimits } from '../../src/gitops/limits.js';
import { loadFleet } from '../../src/gitops/load.js';
import { MobileconfigError, readProfile } from '../../src/gitops/mobileconfig.js';
import type { Diagnostic } from '../../src/gitops/model.js';
import { newUsage, parseYamlFile } from '../../src/gitops/yaml-file.js';

const FLEET = join(import.meta.dirname, '../../config-examples/fleet');
const examples = readdirSync(FLEET, { recursive: true, encoding: 'utf8' })
  .filter((f) => f.endsWith('.yaml'))
  .map((f) => readFileSync(join(FLEET, f), 'utf8'));
const hostile = [
  'a: &a [x, x, x, x]\nb: &b [*a, *a, *a, *a]\nc: &c [*b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c]\n',
  'x: *nowhere\n',
  'x: &r [1, *r]\n',
  '&a a: *a\n',
  '? [a, b]\n: c\n',
  '? {a: 1}\n: 2\n',
  '__proto__: {polluted: true}\nconstructor: 1\n',
  '<<: {a: 1}\nb: 2\n',
  'a: !!binary aGVsbG8=\nb: !custom x\n',
  `${'- '.repeat(80)}x\n`,
  `${'['.repeat(80)}${']'.repeat(80)}\n`,
  `${'{a: '.repeat(70)}1${'}'.repeat(70)}\n`,
  'a: 1\na: 2\n',
  '%YAML 1.2\n---\na: 1\n...\n---\nb: 2\n',
  '---\n---\n---\n',
  "a: 'unterminated\n",
  'a: "x\n  y\n  z"\n',
  'a: |\n  text\n  more\nb: >-\n  folded\n',
  '\uFEFFa: 1\n',
  'a:\tb\n',
  'a: [1, 2\n',
  '- a\nb: c\n',
  '* * *\n',
  '&&&\n',
  ':\n:\n:\n',
  'apiVersion: orchard/v1\nkind: Profile\nmetadata: {name: p}\nspec:\n  file: ../../../../etc/passwd\n',
  'apiVersion: orchard/v1\nkind: Blueprint\nmetadata: {name: b}\nspec:\n  selector: {osVersion: ">=1 <<2"}\n  profiles: [x, x]\n',
];
const seeds = [...examples, ...hostile];

const plistSeed = readFileSync(join(FLEET, 'files/dock.mobileconfig'), 'utf8');
const plistHostile = [
  plistSeed.replace('<dict>', `<dict><key>D</key>${'<array>'.repeat(100)}${'</array>'.repeat(100)}`),
  '<!DOCTYPE plist [<!ENTITY a "aaaa">]><plist><dict><key>a</key><string>&a;</string></dict></plist>',
  '<plist><dict><key>PayloadType</key><string>Configuration</string><key>PayloadContent</key><array><integer>1</integer><string/><dict/></array></dict></plist>',
  '<plist><dict><!-- <dict><dict> --><![CDATA[<array>]]></dict></plist>',
  '<plist><dict><key>x</key><date>never</date></dict></plist>',
];

const YAML_CHARS = [
  ...'[]{}:,-?&*!|>\'"#%@`\n\n  \t\\~.0123456789abcxyz=<$',
  '\u0000',
  '\u00e9',
  '\ud83c\udf4e',
  '\r\n',
  '---\n',
  '...\n',
  '&a ',
  '*a',
  '<<: ',
  '!!str ',
];
const XML_CHARS = [
  ...'<>/!?="\' \n&;#x0123456789abc[]-',
  '<dict>',
  '</dict>',
  '<array>',
  '</array>',
  '<key>',
  '</key>',
  '<string>',
  '</string>',
  '<data>',
  '<integer>',
  '<!--',
  ']]>',
  '<![CDATA[',
];

/** A mutated copy of one of `seeds`: insertions, deletions, duplications, truncation. */
function mutated(seedList: string[], chars: string[], maxEdits = 6): fc.Arbitrary<string> {
  const edit = fc.tuple(
    fc.constantFrom('insert', 'delete', 'duplicate', 'truncate'),
    fc.nat(),
    fc.nat({ max: 40 }),
    fc.array(fc.constantFrom(...chars), { minLength: 1, maxLength: 8 }),
  );
  return fc.tuple(fc.constantFrom(...seedList), fc.array(edit, { minLength: 1, maxLength: maxEdits })).map(([seed, edits]) => {
    let s = seed;
    for (const [op, pos, len, ins] of edits) {
      const at = s.length === 0 ? 0 : pos % (s.length + 1);
      if (op === 'insert') s = s.slice(0, at) + ins.join('') + s.slice(at);
      else if (op === 'delete') s = s.slice(0, at) + s.slice(at + len);
      else if (op === 'duplicate') s = s.slice(0, at + len) + s.slice(at, at + len).repeat(1 + (len % 5)) + s.slice(at + len);
      else s = s.slice(0, at);
    }
    return s;
  });
}
const randomText = (chars: string[]) => fc.array(fc.constantFrom(...chars), { maxLength: 200 }).map((a) => a.join(''));
const yamlInput = fc.oneof(
  { arbitrary: mutated(seeds, YAML_CHARS), weight: 4 },
  { arbitrary: randomText(YAML_CHARS), weight: 1 },
  { arbitrary: fc.string({ unit: 'binary', maxLength: 100 }), weight: 1 },
);
const plistInput = fc.oneof({ arbitrary: mutated([plistSeed, ...plistHostile], XML_CHARS, 2), weight: 4 }, { arbitrary: randomText(XML_CHARS), weight: 1 });

// Small limits as well as the defaults, so that the limit paths are fuzzed too.
const SMALL = resolveLimits({ nodes: 300, scalarChars: 2000, depth: 8, documents: 5 });
const DEFAULT = resolveLimits();

/** Plain checks (not expect): this runs 10,000 times. */
function wellFormed(ds: Diagnostic[], file: string): void {
  for (const d of ds) {
    if (d.file !== file || !(d.line >= 1) || !(d.col >= 1) || d.message.length === 0 || d.severity !== 'error') {
      throw new Error(`malformed diagnostic ${JSON.stringify(d)}`);
    }
  }
}

const outcomes = { yaml: new Map<string, number>(), plist: new Map<string, number>(), repos: new Map<string, number>() };
const tally = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
afterAll(() => {
  // Kept short: one line per run, for the record of what was tried.
  const show = (m: Map<string, number>) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
  console.info(`loader fuzz: yaml {${show(outcomes.yaml)}}; plist {${show(outcomes.plist)}}; repositories {${show(outcomes.repos)}}`);
});

describe('loader fuzz', () => {
  it('parseYamlFile: 10,000 inputs, diagnostics only', () => {
    fc.assert(
      fc.property(yamlInput, fc.boolean(), (text, small) => {
        const r = parseYamlFile('f.yaml', text, small ? SMALL : DEFAULT, newUsage());
        wellFormed(r.diagnostics, 'f.yaml');
        tally(outcomes.yaml, r.diagnostics[0]?.rule ?? (r.docs.length > 0 ? 'parsed' : 'empty'));
      }),
      { numRuns: 10_000, seed: 20261201 },
    );
  });

  it('readProfile: 1,000 inputs, a MobileconfigError or a profile', () => {
    fc.assert(
      fc.property(plistInput, (text) => {
        try {
          readProfile(Buffer.from(text), { maxDepth: 64 });
          tally(outcomes.plist, 'profile');
        } catch (err) {
          if (!(err instanceof MobileconfigError)) throw err;
          tally(outcomes.plist, 'MobileconfigError');
        }
      }),
      { numRuns: 1000, seed: 20261202 },
    );
  });

  const dirs: string[] = [];
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  it('loadFleet: 200 repositories of mutated YAML and profile files, never a throw', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(yamlInput, { minLength: 1, maxLength: 3 }), plistInput, fc.boolean(), async (yamls, plist, small) => {
        const dir = mkdtempSync(join(tmpdir(), 'orchard-fuzz-'));
        dirs.push(dir);
        yamls.forEach((y, i) => writeFileSync(join(dir, `f${i}.yaml`), y));
        writeFileSync(join(dir, 'p.yaml'), 'apiVersion: orchard/v1\nkind: Profile\nmetadata: {name: p}\nspec:\n  file: p.mobileconfig\n');
        writeFileSync(join(dir, 'p.mobileconfig'), plist);
        const r = await loadFleet(dir, small ? { limits: { nodes: 300, depth: 8, documents: 5 } } : {});
        expect(r.ok).toBe(r.diagnostics.every((d) => d.severity !== 'error'));
        for (const d of r.diagnostics) {
          expect(d.line).toBeGreaterThanOrEqual(1);
          expect(d.col).toBeGreaterThanOrEqual(1);
          expect(d.rule).not.toBe('loader'); // the last-resort catch means a bug of ours
        }
        tally(outcomes.repos, r.ok ? 'valid' : [...new Set(r.diagnostics.filter((d) => d.severity === 'error').map((d) => d.rule))].sort().join('+'));
      }),
      { numRuns: 200, seed: 20261203 },
    );
  });
});
