/**
 * What a committer to the fleet repository can do to the loader: symbolic links out of the
 * repository, special files, huge and hostile YAML, profile sizes. Repositories are real git
 * checkouts (committed, pushed, cloned), so links are what git makes of them.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from '../../src/gitops/limits.js';
import { loadFleet } from '../../src/gitops/load.js';
import type { Diagnostic, LoadResult } from '../../src/gitops/model.js';
import { FleetRepo, git } from './helpers.js';
import { blueprint, fileProfile, makeRepo, mobileconfig, passcodePayload, profile } from './repo.js';

const repos: FleetRepo[] = [];
afterAll(() => repos.forEach((r) => r.cleanup()));

/** Commit `files` (and symbolic links: target text) to a repository, push, and clone it: the checkout git makes. */
function checkout(files: Record<string, string | Buffer>, links: Record<string, string> = {}): string {
  const repo = new FleetRepo();
  repos.push(repo);
  for (const [p, content] of Object.entries(files)) {
    if (typeof content === 'string') repo.write(p, content);
    else {
      mkdirSync(join(repo.work, p, '..'), { recursive: true });
      writeFileSync(join(repo.work, p), content);
    }
  }
  for (const [p, target] of Object.entries(links)) {
    mkdirSync(join(repo.work, p, '..'), { recursive: true });
    symlinkSync(target, join(repo.work, p));
  }
  repo.commit('fleet');
  const dir = join(repo.root, 'checkout');
  git(repo.root, 'clone', '-q', '-b', 'main', repo.url, dir);
  return dir;
}

const errors = (r: LoadResult) => r.diagnostics.filter((d) => d.severity === 'error');
const text = (ds: Diagnostic[]) => ds.map((d) => `${d.file}:${d.line}:${d.col}: ${d.severity}: ${d.message} [${d.rule}]`).join('\n');

const uses = blueprint('b', '    platforms: [macOS]', ['f']);

describe('spec.file and symbolic links', () => {
  // A plist outside the repository with values that must never show up anywhere.
  const outside = mkdtempSync(join(tmpdir(), 'orchard-outside-'));
  writeFileSync(
    join(outside, 'secret.mobileconfig'),
    mobileconfig({
      PayloadDisplayName: 'TOP-SECRET-VALUE',
      PayloadContent: [
        { PayloadType: 'com.apple.mobiledevice.passwordpolicy', PayloadIdentifier: 'x', PayloadUUID: 'y', PayloadVersion: 1, leakMe: 'TOP-SECRET-VALUE' },
      ],
    }),
  );

  it('a link out of the repository is refused without reading it or naming its target', async () => {
    const dir = checkout(
      { 'profiles/f.yaml': fileProfile('f.mobileconfig'), 'b.yaml': uses },
      { 'profiles/f.mobileconfig': join(outside, 'secret.mobileconfig') },
    );
    const r = await loadFleet(dir);
    expect(r.ok).toBe(false);
    expect(errors(r)).toEqual([expect.objectContaining({ file: 'profiles/f.yaml', line: 5, col: 9, rule: 'mobileconfig' })]);
    expect(errors(r)[0]!.message).toMatch(/resolves \(through a symbolic link\) to a path outside the repository/);
    expect(text(r.diagnostics)).not.toMatch(/TOP-SECRET|leakMe|orchard-outside/);
  });

  it('links to /etc/shadow, /dev/zero and a directory chain out are refused the same way', async () => {
    const dir = checkout(
      {
        'p/a.yaml': fileProfile('a.mobileconfig').replace('name: f', 'name: a'),
        'p/b.yaml': fileProfile('z.mobileconfig').replace('name: f', 'name: z'),
        'p/c.yaml': fileProfile('up/secret.mobileconfig').replace('name: f', 'name: c'),
      },
      { 'p/a.mobileconfig': '/etc/shadow', 'p/z.mobileconfig': '/dev/zero', 'p/up': outside },
    );
    const r = await loadFleet(dir);
    const es = errors(r).filter((d) => d.rule === 'mobileconfig');
    expect(es.map((d) => d.file)).toEqual(['p/a.yaml', 'p/b.yaml', 'p/c.yaml']);
    for (const e of es) expect(e.message).toMatch(/outside the repository|ENOENT/);
    expect(text(r.diagnostics)).not.toMatch(/TOP-SECRET|root:/);
  });

  it('a link that stays inside the repository is followed to the regular file', async () => {
    const dir = checkout(
      { 'profiles/f.yaml': fileProfile('current.mobileconfig'), 'files/v2.mobileconfig': mobileconfig(), 'b.yaml': uses },
      { 'profiles/current.mobileconfig': '../files/v2.mobileconfig' },
    );
    const r = await loadFleet(dir);
    expect(r.diagnostics).toEqual([]);
    expect(r.fleet!.profiles.get('f')!.file).toBe('files/v2.mobileconfig');
  });

  it('dangling and looping links are an error on the file: line', async () => {
    const dir = checkout(
      { 'a.yaml': fileProfile('gone.mobileconfig').replace('name: f', 'name: a'), 'b.yaml': fileProfile('loop.mobileconfig').replace('name: f', 'name: b') },
      { 'gone.mobileconfig': 'nowhere', 'loop.mobileconfig': 'loop.mobileconfig' },
    );
    const r = await loadFleet(dir);
    expect(errors(r).map((d) => [d.file, d.line, d.message.replace(/: .*$/, '')])).toEqual([
      ['a.yaml', 5, 'cannot read "gone.mobileconfig"'],
      ['b.yaml', 5, 'cannot read "loop.mobileconfig"'],
    ]);
    expect(errors(r).map((d) => d.message)).toEqual([expect.stringMatching(/ENOENT/), expect.stringMatching(/ELOOP/)]);
  });

  it('symlinked YAML files and directories are not loaded, and a warning says so', async () => {
    const good = {
      'profiles/passcode.yaml': profile('passcode', 'com.example.passcode', passcodePayload),
      'blueprints/all.yaml': blueprint('all', '    platforms: [macOS]', ['passcode']),
    };
    const dir = checkout(good, { 'linked.yaml': join(outside, 'nothing.yaml'), 'inside.yml': 'profiles/passcode.yaml', more: outside, again: 'profiles' });
    const r = await loadFleet(dir);
    expect(r.ok).toBe(true);
    expect(r.diagnostics.map((d) => [d.file, d.severity, d.rule])).toEqual([
      ['again', 'warning', 'symlink'],
      ['inside.yml', 'warning', 'symlink'],
      ['linked.yaml', 'warning', 'symlink'],
      ['more', 'warning', 'symlink'],
    ]);
    expect(r.diagnostics.find((d) => d.file === 'inside.yml')!.message).toMatch(/symbolic link: not loaded/);
    expect(r.diagnostics.find((d) => d.file === 'more')!.message).toMatch(/symbolic link to a directory: not followed/);
  });

  it('FIFOs (in a local directory: git cannot commit them) are never opened, so nothing hangs', async () => {
    const dir = makeRepo({ 'profiles/f.yaml': fileProfile('pipe.mobileconfig'), 'b.yaml': uses });
    execFileSync('mkfifo', [join(dir, 'profiles/pipe.mobileconfig'), join(dir, 'pipe.yaml')]);
    symlinkSync('pipe.yaml', join(dir, 'via-link.mobileconfig'));
    writeFileSync(join(dir, 'g.yaml'), fileProfile('via-link.mobileconfig').replace('name: f', 'name: g'));
    const r = await loadFleet(dir);
    expect(r.diagnostics.find((d) => d.file === 'pipe.yaml')).toMatchObject({
      severity: 'warning',
      message: expect.stringMatching(/is a FIFO, not a regular file: not loaded/),
    });
    expect(errors(r).map((d) => [d.file, d.line, d.message])).toEqual([
      ['g.yaml', 5, 'cannot read "via-link.mobileconfig": it is a FIFO, not a regular file'],
      ['profiles/f.yaml', 5, 'cannot read "profiles/pipe.mobileconfig": it is a FIFO, not a regular file'],
    ]);
  });
});

describe('size limits', () => {
  it('a YAML file over 2 MiB is refused before it is parsed', async () => {
    const big = `# ${'x'.repeat(DEFAULT_LIMITS.yamlFileBytes)}\n`;
    const r = await loadFleet(checkout({ 'big.yaml': big }));
    expect(errors(r)).toEqual([expect.objectContaining({ file: 'big.yaml', line: 1, col: 1, rule: 'limit-file-size' })]);
    expect(errors(r)[0]!.message).toMatch(/is 2 MiB, more than the limit of 2 MiB for a YAML file \(limit yamlFileBytes\)/);
  });

  it('a profile file over 4 MiB is refused; one over 1 MiB gets a warning', async () => {
    // Certificates (or fonts) are what make real profiles large.
    const cert = (i: number, bytes: number) => ({
      PayloadType: 'com.apple.security.root',
      PayloadIdentifier: `com.example.ca${i}`,
      PayloadUUID: `11111111-2222-3333-4444-55555555555${i}`,
      PayloadVersion: 1,
      PayloadContent: Buffer.alloc(bytes, i),
    });
    const pad = (n: number, bytes: number) => mobileconfig({ PayloadContent: Array.from({ length: n }, (_, i) => cert(i, bytes)) });
    const r = await loadFleet(checkout({ 'f.yaml': fileProfile('f.mobileconfig'), 'f.mobileconfig': pad(6, 600_000), 'b.yaml': uses }));
    expect(errors(r)).toEqual([
      expect.objectContaining({
        file: 'f.yaml',
        line: 5,
        rule: 'limit-file-size',
        message: expect.stringMatching(/more than the limit of 4 MiB for a profile file/),
      }),
    ]);
    const warn = await loadFleet(checkout({ 'f.yaml': fileProfile('f.mobileconfig'), 'f.mobileconfig': pad(2, 600_000), 'b.yaml': uses }));
    expect(warn.ok).toBe(true);
    expect(warn.diagnostics).toEqual([
      expect.objectContaining({
        file: 'f.yaml',
        line: 5,
        severity: 'warning',
        rule: 'profile-size',
        message: expect.stringMatching(/about 1\.\d MiB rendered; devices handle profiles over 1 MiB badly/),
      }),
    ]);
  });

  it('an authored profile that aliases make larger than 4 MiB rendered is an error', async () => {
    const big = 'q'.repeat(700_000);
    const yaml = `apiVersion: orchard/v1\nkind: Profile\nmetadata: {name: f}\nspec:\n  identifier: com.example.f\n  displayName: f\n  payloads:\n    - type: com.apple.dock\n      keys:\n        a: &big ${big}\n${[1, 2, 3, 4, 5, 6].map((i) => `        a${i}: *big\n`).join('')}`;
    const r = await loadFleet(checkout({ 'f.yaml': yaml, 'b.yaml': uses }));
    expect(errors(r).filter((d) => d.rule === 'profile-size')).toEqual([
      expect.objectContaining({ file: 'f.yaml', line: 8, message: expect.stringMatching(/about 4\.\d MiB rendered, more than the limit of 4 MiB/) }),
    ]);
  });

  it('the repository total, the number of entries, documents and nodes are limited, each with its position', async () => {
    const doc = (n: number) => `apiVersion: orchard/v1\nkind: Secret\nmetadata: {name: s${n}}\nspec: {}\n`;
    const many = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`s/${String(i).padStart(2, '0')}.yaml`, doc(i)]));
    const dir = checkout(many);
    expect(errors(await loadFleet(dir))).toEqual([]);
    const bytes = errors(await loadFleet(dir, { limits: { repoBytes: 1000 } }));
    let total = 0;
    const crossing = Object.keys(many).find((f) => (total += Buffer.byteLength(many[f]!)) > 1000);
    expect(bytes).toEqual([
      expect.objectContaining({
        rule: 'limit-repo-bytes',
        file: crossing,
        line: 1,
        col: 1,
        message: 'the YAML and profile files add up to more than 1000 bytes (limit repoBytes)',
      }),
    ]);
    expect(errors(await loadFleet(dir, { limits: { entries: 20 } }))).toEqual([
      expect.objectContaining({ rule: 'limit-entries', message: 'more than 20 files and directories in the repository (limit entries)' }),
    ]);
    const nodes = errors(await loadFleet(dir, { limits: { nodes: 100 } }));
    // 11 nodes per document (4 mappings, 7 scalars): the 10th crosses 100 at its second scalar.
    expect(nodes).toEqual([expect.objectContaining({ rule: 'limit-nodes', file: 's/09.yaml', line: 1, col: 13 })]);
    expect(nodes[0]!.message).toMatch(/more than 100 YAML nodes in the repository/);
    const docs = errors(await loadFleet(checkout({ 'a.yaml': doc(1), 'b.yaml': `${doc(2)}---\n${doc(3)}---\n${doc(4)}` }), { limits: { documents: 3 } }));
    expect(docs).toEqual([
      expect.objectContaining({
        rule: 'limit-documents',
        file: 'b.yaml',
        line: 10,
        col: 1,
        message: 'more than 3 YAML documents in the repository (limit documents)',
      }),
    ]);
  });

  it('10,001 empty documents and a 2 MiB flow sequence stop at the default limits, before parsing', async () => {
    const r = await loadFleet(checkout({ 'docs.yaml': '---\n'.repeat(DEFAULT_LIMITS.documents + 1), 'flow.yaml': `[${'0,'.repeat(1_000_000)}0]\n` }));
    expect(errors(r)).toEqual([expect.objectContaining({ file: 'docs.yaml', line: DEFAULT_LIMITS.documents + 1, col: 1, rule: 'limit-documents' })]);
    const flow = errors(await loadFleet(checkout({ 'flow.yaml': `[${'0,'.repeat(1_000_000)}0]\n` })));
    expect(flow).toEqual([expect.objectContaining({ file: 'flow.yaml', line: 1, col: 2 * DEFAULT_LIMITS.nodes, rule: 'limit-nodes' })]);
  });

  it('a DeviceGroup over the node limit (the crash-loop commit, scaled to the limits) is one error', async () => {
    const devices = (from: number, n: number) =>
      Array.from({ length: n }, (_, i) => `    - {serial: C02XD${String(from + i).padStart(7, '0')}, tags: [design]}\n`).join('');
    const group = (name: string, from: number, n: number) =>
      `apiVersion: orchard/v1\nkind: DeviceGroup\nmetadata: {name: ${name}}\nspec:\n  devices:\n${devices(from, n)}`;
    const r = await loadFleet(checkout({ 'g1.yaml': group('one', 0, 40), 'g2.yaml': group('two', 40, 40) }), { limits: { nodes: 500 } });
    expect(errors(r)).toEqual([expect.objectContaining({ file: 'g2.yaml', rule: 'limit-nodes' })]);
    expect(errors(r)[0]!.line).toBeGreaterThan(5);
  });
});

describe('hostile and unusual YAML', () => {
  const secret = (extra: string) => `apiVersion: orchard/v1\nkind: Secret\nmetadata: {name: s}\nspec:\n  description: d\n${extra}`;

  it('one anchor reused 120 times loads', async () => {
    const devices = Array.from(
      { length: 120 },
      (_, i) => `    - {serial: C02XD${String(i).padStart(7, '0')}, tags: ${i === 0 ? '&t [design, office]' : '*t'}}\n`,
    ).join('');
    const dir = checkout({ 'g.yaml': `apiVersion: orchard/v1\nkind: DeviceGroup\nmetadata: {name: g}\nspec:\n  devices:\n${devices}` });
    const r = await loadFleet(dir);
    expect(r.diagnostics).toEqual([]);
    expect(r.fleet!.tagsBySerial.size).toBe(120);
    expect(r.fleet!.tagsBySerial.get('C02XD0000119')).toEqual(new Set(['design', 'office']));
  });

  it('an alias bomb is a clear error at the alias that crosses the node limit', async () => {
    const levels = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 9; i++)
      levels.push(
        `${'abcdefghij'[i]}: &${'abcdefghij'[i]} [${Array(10)
          .fill(`*${'abcdefghij'[i - 1]}`)
          .join(', ')}]`,
      );
    const r = await loadFleet(checkout({ 'bomb.yaml': `${levels.join('\n')}\n` }));
    expect(errors(r)).toEqual([
      expect.objectContaining({ file: 'bomb.yaml', rule: 'limit-nodes', message: expect.stringMatching(/aliases counted as what they expand to/) }),
    ]);
    expect(errors(r)[0]!.line).toBeGreaterThan(4);
  });

  it('an unresolved alias, a recursive alias and a duplicate key are diagnostics at their position', async () => {
    const r = await loadFleet(
      checkout({
        'unresolved.yaml': secret('  x: *nowhere\n'),
        'recursive.yaml': secret('  x: &r [1, *r]\n'),
        'dup.yaml': secret('  description: again\n'),
      }),
    );
    expect(errors(r).map((d) => [d.file, d.line, d.col, d.message])).toEqual([
      ['dup.yaml', 6, 3, 'duplicate key "description" (first at line 5)'],
      ['recursive.yaml', 6, 13, 'alias *r is inside the node it refers to (a recursive structure)'],
      ['unresolved.yaml', 6, 6, 'alias *nowhere has no anchor &nowhere before it'],
    ]);
  });

  it('nesting deeper than 64, in block, flow or through aliases, is a diagnostic, never a stack overflow', async () => {
    const block = `${'- '.repeat(100_000)}x\n`;
    const r = await loadFleet(
      checkout({
        'block.yaml': block,
        'flow.yaml': `${'['.repeat(100_000)}${']'.repeat(100_000)}\n`,
        'indent.yaml': Array.from({ length: 80 }, (_, i) => `${' '.repeat(i)}k${i}:\n`).join(''),
        'alias.yaml': `a: &a ${'['.repeat(40)}1${']'.repeat(40)}\nb: &b ${'['.repeat(30)}*a${']'.repeat(30)}\n`,
        'ok.yaml': `x: ${'['.repeat(63)}1${']'.repeat(63)}\n`,
      }),
    );
    expect(errors(r).map((d) => [d.file, d.line, d.col, d.rule])).toEqual([
      ['alias.yaml', 2, 37, 'yaml-depth'],
      ['block.yaml', 1, 129, 'yaml-depth'],
      ['flow.yaml', 1, 65, 'yaml-depth'],
      ['indent.yaml', 65, 65, 'yaml-depth'],
      ['ok.yaml', 1, 1, 'schema'],
    ]);
    expect(
      errors(r)
        .filter((d) => d.rule === 'yaml-depth')
        .every((d) => /deeper than 64 levels/.test(d.message)),
    ).toBe(true);
  });

  it('a profile plist nested deeper than 64 is refused before parsing', async () => {
    const deep = mobileconfig()
      .toString()
      .replace('<key>PayloadContent</key>', `<key>Deep</key>${'<array>'.repeat(70)}${'</array>'.repeat(70)}<key>PayloadContent</key>`);
    const r = await loadFleet(checkout({ 'f.yaml': fileProfile('f.mobileconfig'), 'f.mobileconfig': deep, 'b.yaml': uses }));
    expect(errors(r)).toEqual([
      expect.objectContaining({
        file: 'f.yaml',
        line: 5,
        message: expect.stringMatching(/dict and array nesting deeper than 64 levels at line \d+ \(limit depth\)/),
      }),
    ]);
  });

  it('diagnostics stop at the limit and the last one says how many more there were', async () => {
    const keys = Array.from({ length: 50 }, (_, i) => `  k${i}: 1\n`).join('');
    const r = await loadFleet(checkout({ 's.yaml': secret(keys) }), { limits: { diagnostics: 10 } });
    expect(r.ok).toBe(false);
    expect(r.diagnostics).toHaveLength(11);
    expect(r.diagnostics[10]).toMatchObject({
      rule: 'limit-diagnostics',
      severity: 'error',
      message: '40 more errors and 0 more warnings not shown (limit diagnostics: 10)',
    });
  });

  it('many profiles sharing one identifier are one error, not a quadratic comparison', async () => {
    const docs = Array.from({ length: 101 }, (_, i) => profile(`p${i}`, 'com.example.same', passcodePayload)).join('---\n');
    const r = await loadFleet(checkout({ 'p.yaml': docs }));
    expect(errors(r)).toEqual([
      expect.objectContaining({
        rule: 'limit-identifier',
        message: '101 profiles share identifier com.example.same; at most 100 may (limit profilesPerIdentifier)',
      }),
    ]);
  });
});
