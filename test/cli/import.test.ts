/**
 * `orchard import` as an admin runs it: the real CLI (dist/) on real public profiles
 * (test/fixtures/real-profiles), signatures made by openssl, then `orchard validate` on what it
 * wrote, and each YAML conversion rendered back by Orchard's own loader and renderer.
 */
import { execFile, execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { loadFleet } from '../../src/gitops/load.js';
import { readProfile } from '../../src/gitops/mobileconfig.js';
import { parsePlist, TRUSTED_LIMITS, type PlistDict } from '../../src/protocol/plist.js';
import { renderProfile } from '../../src/reconcile/render.js';
import { CLI } from '../helpers/process.js';
import { opensslPki } from '../helpers/openssl.js';

const exec = promisify(execFile);
const REAL = join(import.meta.dirname, '../fixtures/real-profiles');
const tmp = (p = 'orchard-import-') => mkdtempSync(join(tmpdir(), p));

async function orchard(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await exec(process.execPath, [CLI, ...args], { maxBuffer: 64 << 20 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

interface Report {
  profiles: { source: string; name: string; document: string; file?: string; as: 'yaml' | 'file'; signed: boolean; note?: string; listed: boolean }[];
  skipped: { source: string; reason: string }[];
  validation: { valid: boolean; errors: number; diagnostics: { severity: string; file: string; rule: string; message: string }[] };
}
async function importJson(args: string[]): Promise<{ code: number; report: Report; out: string }> {
  const out = join(tmp(), 'fleet');
  const r = await orchard(['import', ...args, '--out', out, '--format', 'json']);
  return { code: r.code, report: JSON.parse(r.stdout) as Report, out };
}

/** The profile as a device would get it, set aside what Orchard derives (UUIDs, payload identifiers) or defaults. */
function comparable(p: PlistDict): PlistDict {
  const { PayloadUUID: _u, ...top } = p;
  if (top.PayloadEnabled === true) delete top.PayloadEnabled;
  if (top.PayloadRemovalDisallowed === false) delete top.PayloadRemovalDisallowed;
  return {
    ...top,
    PayloadScope: top.PayloadScope ?? 'System',
    PayloadVersion: top.PayloadVersion ?? 1,
    PayloadContent: (p.PayloadContent as PlistDict[]).map(({ PayloadUUID: _pu, PayloadIdentifier: _pi, ...keys }) => ({
      ...keys,
      PayloadVersion: keys.PayloadVersion ?? 1,
    })),
  };
}

/** Load the YAML document alone with the repository's loader and render it with Orchard's renderer. */
async function renderYaml(document: string): Promise<PlistDict> {
  const dir = tmp();
  writeFileSync(join(dir, 'p.yaml'), document);
  const r = await loadFleet(dir);
  expect(r.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
  const doc = [...r.fleet!.profiles.values()][0]!;
  return parsePlist(renderProfile(doc, {}, undefined).bytes(), TRUSTED_LIMITS) as PlistDict;
}

const profileXml = (payloadKeys: string, top = '') => `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict>
  <key>PayloadContent</key><array><dict>
    <key>PayloadType</key><string>com.apple.dock</string>
    <key>PayloadIdentifier</key><string>com.example.crafted.dock</string>
    <key>PayloadUUID</key><string>11111111-2222-4333-8444-555555555555</string>
    <key>PayloadVersion</key><integer>1</integer>
    ${payloadKeys}
  </dict></array>
  <key>PayloadDisplayName</key><string>Crafted</string>
  <key>PayloadIdentifier</key><string>com.example.crafted</string>
  <key>PayloadType</key><string>Configuration</string>
  <key>PayloadUUID</key><string>AAAAAAAA-2222-4333-8444-555555555555</string>
  <key>PayloadVersion</key><integer>1</integer>
  ${top}
</dict></plist>
`;

describe('orchard import of the real profiles', () => {
  it('--to-yaml: YAML where it says the same, file: otherwise with a reason; errors only in the originals themselves', async () => {
    const { code, report, out } = await importJson([REAL, '--to-yaml']);
    // The corpus holds a few deliberately broken files (test inputs of other tools): skipped,
    // each with the reason the loader gives, the others imported.
    for (const sk of report.skipped) expect(() => readProfile(readFileSync(sk.source)), sk.source).toThrow(sk.reason);
    const yaml = report.profiles.filter((p) => p.as === 'yaml');
    expect(yaml.length).toBeGreaterThanOrEqual(10);
    for (const p of report.profiles.filter((x) => x.as === 'file')) expect(p.note, p.source).toMatch(/kept as file: |signed/);
    // The corpus's Santa profiles say PayloadVersion 2, which Orchard's schema check refuses: those
    // copies are the only errors, and they are the files' own.
    const errors = report.validation.diagnostics.filter((d) => d.severity === 'error');
    for (const e of errors) expect(e.file, e.message).toMatch(/^files\/.*\.mobileconfig$/);
    expect(code).toBe(errors.length > 0 || report.skipped.length > 0 ? 1 : 0);
    // Reasons the YAML format cannot say: a top-level key it has no place for, <data>.
    const notes = report.profiles.map((p) => p.note ?? '').join('\n');
    expect(notes).toMatch(/its top-level key PayloadRemovalDisallowed has no place in a YAML Profile/);
    expect(notes).toMatch(/PayloadContent\.2\.PayloadContent is <data>, which the YAML format cannot represent/);
    // Names from the PayloadIdentifier, UUIDs left out; collisions numbered.
    const names = report.profiles.map((p) => p.name);
    expect(names).toContain('com.google.santa.notificationsettings');
    expect(names).toContain('com.google.santa-2');
    expect(new Set(names).size).toBe(names.length);
    expect(readdirSync(join(out, 'profiles'))).toHaveLength(report.profiles.length);
  });

  it('round trip: each YAML conversion, loaded and rendered by Orchard, is the original profile', async () => {
    const { report, out } = await importJson([REAL, '--to-yaml']);
    const yaml = report.profiles.filter((p) => p.as === 'yaml');
    for (const p of yaml) {
      const original = readProfile(readFileSync(p.source)).profile;
      const rendered = await renderYaml(readFileSync(join(out, p.document), 'utf8'));
      expect(comparable(rendered), p.source).toEqual(comparable(original));
    }
  });

  it('on the profiles with no errors of their own, orchard validate is clean on both forms', async () => {
    // The corpus grows; which of its files the validator finds fault with is not import's business.
    const input = tmp();
    let n = 0;
    for (const f of readdirSync(REAL, { recursive: true, encoding: 'utf8' }).filter((x) => x.endsWith('.mobileconfig'))) {
      const alone = tmp();
      cpSync(join(REAL, f), join(alone, 'x.mobileconfig'));
      writeFileSync(join(alone, 'p.yaml'), 'apiVersion: orchard/v1\nkind: Profile\nmetadata: {name: p}\nspec:\n  file: x.mobileconfig\n');
      if ((await loadFleet(alone)).diagnostics.every((d) => d.severity !== 'error')) cpSync(join(REAL, f), join(input, `${++n}.mobileconfig`));
    }
    expect(n).toBeGreaterThanOrEqual(30);
    for (const flags of [[], ['--to-yaml']]) {
      const { code, report, out } = await importJson([input, ...flags]);
      expect(report.validation.errors, JSON.stringify(report.validation.diagnostics.filter((d) => d.severity === 'error'))).toBe(0);
      expect(code).toBe(0);
      const v = await orchard(['validate', out, '--format', 'json']);
      expect(v.code).toBe(0);
      expect(JSON.parse(v.stdout)).toMatchObject({ valid: true, errors: 0 });
      if (flags.length === 0) {
        // Default: every profile a file: reference to a byte-for-byte copy.
        for (const p of report.profiles) {
          expect(p.as).toBe('file');
          expect(readFileSync(join(out, p.file!)).equals(readFileSync(p.source))).toBe(true);
        }
      }
      // One blueprint lists them all and selects no device.
      const blueprint = readFileSync(join(out, 'blueprints/imported.yaml'), 'utf8');
      expect(blueprint).toMatch(/^# Written by `orchard import`/);
      expect(blueprint).toMatch(/selector:\n {4}serials: \[\]\n/);
      for (const p of report.profiles.filter((x) => x.listed)) expect(blueprint).toContain(`    - ${p.name} `);
    }
  });
});

describe('orchard import: signed, crafted and broken inputs', () => {
  const pki = opensslPki('Import Signer CA');
  const signer = pki.issue('Import Signer');

  it('signed profiles are kept byte for byte, also with --to-yaml, and validate', async () => {
    const dir = tmp();
    const signed = execFileSync('openssl', [
      'smime',
      '-sign',
      '-binary',
      '-nodetach',
      '-in',
      join(REAL, 'rtrouton-profiles/DisableSiri/DisableSiri.mobileconfig'),
      '-signer',
      signer.cert,
      '-inkey',
      signer.key,
      '-outform',
      'DER',
    ]);
    writeFileSync(join(dir, 'signed.mobileconfig'), signed);
    const { code, report, out } = await importJson([dir, '--to-yaml']);
    expect(code).toBe(0);
    expect(report.profiles).toMatchObject([{ as: 'file', signed: true, note: 'signed: kept byte for byte as file:' }]);
    expect(readFileSync(join(out, report.profiles[0]!.file!)).equals(signed)).toBe(true);
  });

  it('data, dates, integral reals and cross-payload UUID references stay file:, saying why; ${ is escaped and comes back', async () => {
    const dir = tmp();
    const files: Record<string, string> = {
      'data.mobileconfig': profileXml('<key>Blob</key><data>AAEC</data>'),
      'date.mobileconfig': profileXml('<key>When</key><date>2027-01-02T03:04:05Z</date>'),
      'real.mobileconfig': profileXml('<key>tilesize</key><real>48</real>'),
      'ref.mobileconfig': profileXml('<key>Other</key><string>11111111-2222-4333-8444-555555555555</string>'),
      'dollar.mobileconfig': profileXml('<key>Label</key><string>${device.SerialNumber} and $${x} and ${</string>'),
      // Strings YAML would read as something else unless quoted, and keys that look like syntax.
      'tricky.mobileconfig': profileXml(
        ['true', '0123', '1e3', 'null', '~', ' lead', 'a: b', '- x', '#c', 'multi\nline\n', 'Grüße &amp; 日本', '', '0x1F', '.inf']
          .map((v, i) => `<key>k${i}: &amp; [x]</key><string>${v}</string>`)
          .join('') + '<key>n</key><integer>-9007199254740991</integer><key>f</key><real>0.1</real><key>e</key><array/><key>d</key><dict/>',
      ),
    };
    for (const [f, xml] of Object.entries(files)) writeFileSync(join(dir, f), xml.replace(/com\.example\.crafted(?=<)/, `com.example.${f.split('.')[0]}`));
    const { code, report, out } = await importJson([dir, '--to-yaml']);
    expect(code).toBe(0);
    const by = (n: string) => report.profiles.find((p) => p.source.endsWith(`/${n}.mobileconfig`))!;
    expect(by('data')).toMatchObject({ as: 'file', note: 'kept as file: PayloadContent.0.Blob is <data>, which the YAML format cannot represent' });
    expect(by('date')).toMatchObject({ as: 'file', note: 'kept as file: PayloadContent.0.When is <date>, which the YAML format cannot represent' });
    expect(by('real')).toMatchObject({ as: 'file', note: 'kept as file: it holds a <real> with an integral value, which YAML would make an <integer>' });
    expect(by('ref').note).toMatch(/PayloadContent\.0\.Other names payload 0's PayloadUUID/);
    const dollar = by('dollar');
    expect(dollar.as).toBe('yaml');
    const text = readFileSync(join(out, dollar.document), 'utf8');
    expect(text).toContain('Label: $${device.SerialNumber} and $$${x} and ${');
    expect((await renderYaml(text)).PayloadContent).toMatchObject([{ Label: '${device.SerialNumber} and $${x} and ${' }]);
    const tricky = by('tricky');
    expect(tricky.as).toBe('yaml');
    const original = readProfile(readFileSync(tricky.source)).profile;
    expect(comparable(await renderYaml(readFileSync(join(out, tricky.document), 'utf8')))).toEqual(comparable(original));
  });

  it('binary and UTF-16 profiles are read as macOS reads them and convert', async () => {
    const dir = tmp();
    const xml = profileXml('<key>autohide</key><true/>');
    writeFileSync(
      join(dir, 'binary.mobileconfig'),
      execFileSync(
        'python3',
        ['-c', 'import plistlib,sys; sys.stdout.buffer.write(plistlib.dumps(plistlib.loads(sys.stdin.buffer.read()), fmt=plistlib.FMT_BINARY))'],
        { input: xml.replace('com.example.crafted<', 'com.example.binary<') },
      ),
    );
    writeFileSync(
      join(dir, 'utf16.mobileconfig'),
      Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(xml.replace('com.example.crafted<', 'com.example.utf16<').replace('UTF-8', 'UTF-16'), 'utf16le')]),
    );
    const { code, report } = await importJson([dir, '--to-yaml']);
    expect(code).toBe(0);
    expect(report.profiles.map((p) => [p.name, p.as])).toEqual([
      ['com.example.binary', 'yaml'],
      ['com.example.utf16', 'yaml'],
    ]);
  });

  it('a broken file is skipped with its reason and never stops the others; same identifier: numbered, listed once; an identical copy: skipped', async () => {
    const dir = tmp();
    const siri = join(REAL, 'rtrouton-profiles/DisableSiri/DisableSiri.mobileconfig');
    mkdirSync(join(dir, 'a'));
    mkdirSync(join(dir, 'b'));
    cpSync(siri, join(dir, 'a/siri.mobileconfig'));
    cpSync(siri, join(dir, 'b/siri.mobileconfig'));
    writeFileSync(join(dir, 'broken.mobileconfig'), profileXml('<key>x</key><string>fish & chips</string>'));
    writeFileSync(join(dir, 'other.mobileconfig'), profileXml('<key>autohide</key><true/>'));
    writeFileSync(join(dir, 'variant.mobileconfig'), profileXml('<key>autohide</key><false/>'));
    const { code, report, out } = await importJson([dir]);
    expect(code).toBe(1);
    expect(report.skipped.map((s) => s.reason)).toEqual([
      expect.stringMatching(/^the same file as profile "disablesiri"$/),
      expect.stringMatching(/malformed entity reference/),
    ]);
    expect(report.profiles.map((p) => [p.name, p.listed])).toEqual([
      ['disablesiri', true],
      ['com.example.crafted', true],
      ['com.example.crafted-2', false],
    ]);
    expect(report.profiles[2]!.note).toMatch(/shares PayloadIdentifier com.example.crafted with profile "com.example.crafted": not listed/);
    expect(readFileSync(join(out, 'blueprints/imported.yaml'), 'utf8')).toMatch(/# Not listed: [^\n]*\n[^\n]*\n {2}# - com.example.crafted-2\n$/);
    expect(report.validation.errors).toBe(0);
  });

  it('usage: no paths, or an --out that is not empty, is exit 2', async () => {
    expect((await orchard(['import', '--out', tmp()])).code).toBe(2);
    const full = tmp();
    writeFileSync(join(full, 'x'), '');
    const r = await orchard(['import', REAL, '--out', full]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/is not empty/);
    const json = await orchard(['import', REAL, '--out', full, '--format', 'json']);
    expect([json.code, JSON.parse(json.stdout).error]).toEqual([2, expect.stringMatching(/is not empty/)]);
  });
});

describe('orchard validate on a signed profile whose SignedData content is not constructed', () => {
  it('--format json prints JSON naming the file; the other profiles are checked', async () => {
    const repo = tmp();
    const xml = profileXml('<key>autohide</key><true/>');
    writeFileSync(join(repo, 'plain.xml'), xml);
    const pki = opensslPki('Validate Signer');
    const { cert, key } = pki.issue('signer');
    const signed = execFileSync('openssl', [
      'cms',
      '-sign',
      '-nodetach',
      '-binary',
      '-in',
      join(repo, 'plain.xml'),
      '-signer',
      cert,
      '-inkey',
      key,
      '-outform',
      'DER',
    ]);
    // ContentInfo's [0] (offset 15 after SEQUENCE and OID, long lengths): made primitive.
    const at = signed.indexOf(Buffer.from([0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02])) + 11;
    expect(signed[at]).toBe(0xa0);
    signed[at] = 0x80;
    writeFileSync(join(repo, 'bad.mobileconfig'), signed);
    writeFileSync(join(repo, 'broken.mobileconfig'), '<plist><dict><key>PayloadType</key>');
    const doc = (n: string, f: string) => `apiVersion: orchard/v1\nkind: Profile\nmetadata: {name: ${n}}\nspec:\n  file: ${f}\n---\n`;
    writeFileSync(join(repo, 'p.yaml'), doc('bad', 'bad.mobileconfig') + doc('broken', 'broken.mobileconfig'));
    const r = await orchard(['validate', repo, '--format', 'json']);
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout) as Report['validation'];
    const messages = out.diagnostics.filter((d) => d.severity === 'error').map((d) => d.message);
    expect(messages).toEqual([
      expect.stringMatching(/^"bad.mobileconfig" is not a usable profile: ContentInfo content is not a constructed element$/),
      expect.stringMatching(/^"broken.mobileconfig" is not a usable profile: /),
    ]);
  });
});
