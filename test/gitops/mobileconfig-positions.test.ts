/**
 * Findings inside a .mobileconfig point at the profile's own file:line:col (the line of the
 * offending key), with the rule of the check that fired; what only the plist text shows (duplicate
 * keys, <real> for an integer) is found from a recording parse.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadFleet } from '../../src/gitops/load.js';
import type { Diagnostic } from '../../src/gitops/model.js';
import { parsePlistXml, type PlistValueRecord } from '../../src/protocol/plist-xml.js';
import { buildPlist } from '../../src/protocol/plist.js';
import { opensslPki } from '../helpers/openssl.js';
import { blueprint, makeRepo } from './repo.js';

const fileProfile = (name: string, path: string) => `apiVersion: orchard/v1\nkind: Profile\nmetadata: {name: ${name}}\nspec:\n  file: ${path}\n`;

/** A profile as Profile Manager writes it, one key per line: line numbers are easy to count. */
function xmlProfile(payloads: string[], top = ''): string {
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">',
    '<plist version="1.0">',
    '<dict>',
    '\t<key>PayloadContent</key>',
    '\t<array>',
    ...payloads,
    '\t</array>',
    '\t<key>PayloadIdentifier</key><string>com.example.file</string>',
    '\t<key>PayloadType</key><string>Configuration</string>',
    '\t<key>PayloadUUID</key><string>6B29FC40-CA47-1067-B31D-00DD01066200</string>',
    '\t<key>PayloadVersion</key><integer>1</integer>',
    ...(top ? [top] : []),
    '</dict>',
    '</plist>',
    '',
  ].join('\n');
}
const payload = (type: string, uuid: string, ...keys: string[]) =>
  [
    '\t\t<dict>',
    `\t\t\t<key>PayloadIdentifier</key><string>com.example.${uuid}</string>`,
    `\t\t\t<key>PayloadType</key><string>${type}</string>`,
    `\t\t\t<key>PayloadUUID</key><string>6B29FC40-CA47-1067-B31D-00DD0106620${uuid}</string>`,
    '\t\t\t<key>PayloadVersion</key><integer>1</integer>',
    ...keys.map((k) => `\t\t\t${k}`),
    '\t\t</dict>',
  ].join('\n');
// Lines: payload() starts at line 7; its own keys from line 12.
const KEY_LINE = 12;

async function load(files: Record<string, string | Buffer>, opts = {}): Promise<{ ok: boolean; ds: Diagnostic[] }> {
  const r = await loadFleet(
    makeRepo({
      ...files,
      'b.yaml': blueprint(
        'b',
        '    platforms: [macOS]',
        Object.keys(files)
          .filter((f) => f.endsWith('.yaml'))
          .map((f) => f.slice(0, -5).split('/').pop()!),
      ),
    }),
    opts,
  );
  return { ok: r.ok, ds: r.diagnostics };
}

describe("parsePlistXml's record option", () => {
  it('gives every value its path, the offset of its key, its element, and marks a repeated key', () => {
    const text = '<plist><dict><key>a</key><real>1</real><key>b</key><array><integer>2</integer></array><key>a</key><true/></dict></plist>';
    const seen: PlistValueRecord[] = [];
    const value = parsePlistXml(text, undefined, { record: (r) => seen.push(r) });
    expect(value).toEqual({ a: true, b: [2] });
    expect(seen.map((r) => [r.path.join('/'), r.tag, r.duplicate])).toEqual([
      ['a', 'real', false],
      ['b/0', 'integer', false],
      ['b', 'array', false],
      ['a', 'true', true],
      ['', 'dict', false],
    ]);
    expect(text.startsWith('<key>a</key><true/>', seen[3]!.keyAt)).toBe(true);
    expect(text.startsWith('<integer>', seen[1]!.at)).toBe(true);
    expect(seen[1]!.keyAt).toBeUndefined();
  });
});

describe('findings inside a .mobileconfig', () => {
  it("carry the profile's own path and the line and column of the offending key, and the rule that fired", async () => {
    const xml = xmlProfile([
      payload(
        'com.apple.mobiledevice.passwordpolicy',
        '1',
        '<key>minLength</key><integer>6</integer>',
        '<key>minLenght</key><integer>6</integer>',
        '<key>maxPINAgeInDays</key><string>90</string>',
      ),
    ]);
    const { ok, ds } = await load({ 'profiles/f.yaml': fileProfile('f', 'f.mobileconfig'), 'profiles/f.mobileconfig': xml });
    expect(ok).toBe(false);
    expect(ds.map((d) => `${d.file}:${d.line}:${d.col} ${d.severity} ${d.rule}`)).toEqual([
      `profiles/f.mobileconfig:${KEY_LINE + 1}:4 warning apple-unknown-key`,
      `profiles/f.mobileconfig:${KEY_LINE + 2}:4 error apple-type`,
    ]);
    expect(ds[0]!.message).toMatch(/^PayloadContent\.0\.minLenght: unknown key 'minLenght'.*did you mean 'minLength'\?/);
  });

  it('a missing key points at the dict that lacks it; a duplicate key at its second occurrence', async () => {
    const xml = xmlProfile([payload('com.apple.MCX.FileVault2', '1', '<key>Defer</key><true/>', '<key>Defer</key><false/>')]);
    const { ok, ds } = await load({ 'f.yaml': fileProfile('f', 'f.mobileconfig'), 'f.mobileconfig': xml });
    expect(ok).toBe(false);
    expect(ds.map((d) => `${d.line}:${d.col} ${d.severity} ${d.rule}`)).toEqual([
      '7:3 error apple-required-key',
      `${KEY_LINE + 1}:4 warning plist-duplicate-key`,
    ]);
    expect(ds[1]!.message).toMatch(/key 'Defer' appears again in this dict: the device keeps this value/);
  });

  it('integer for boolean and a whole <real> for an integer are warnings: the revision is valid', async () => {
    const xml = xmlProfile([
      payload('com.apple.mobiledevice.passwordpolicy', '1', '<key>minLength</key><real>8.0</real>', '<key>allowSimple</key><integer>0</integer>'),
    ]);
    const { ok, ds } = await load({ 'f.yaml': fileProfile('f', 'f.mobileconfig'), 'f.mobileconfig': xml });
    expect(ok).toBe(true);
    expect(ds.map((d) => `${d.line} ${d.severity} ${d.rule}`)).toEqual([
      `${KEY_LINE} warning apple-real-for-integer`,
      `${KEY_LINE + 1} warning apple-integer-for-boolean`,
    ]);
  });

  it('duplicate PayloadUUIDs are an error at the second one; PayloadEnabled is accepted', async () => {
    const xml = xmlProfile(
      [payload('com.apple.dock', '1', '<key>PayloadEnabled</key><true/>'), payload('com.apple.dock', '1')],
      '\t<key>PayloadEnabled</key><true/>',
    );
    const { ok, ds } = await load({ 'f.yaml': fileProfile('f', 'f.mobileconfig'), 'f.mobileconfig': xml });
    expect(ok).toBe(false);
    expect(ds.map((d) => `${d.line}:${d.col} ${d.severity} ${d.rule}`)).toEqual([`${KEY_LINE + 1 + 1 + 3}:4 error duplicate-uuid`]);
  });

  it('custom preference domains: info once per domain for the repository; --manifests checks them', async () => {
    const chrome = (uuid: string, ...keys: string[]) => xmlProfile([payload('com.google.Chrome', uuid, ...keys)]);
    const files = {
      'a.yaml': fileProfile('a', 'a.mobileconfig'),
      'a.mobileconfig': chrome('1', '<key>HomepageLocation</key><integer>3</integer>'),
      'c.yaml': fileProfile('c', 'c.mobileconfig'),
      'c.mobileconfig': chrome('2').replace('com.example.file', 'com.example.other'),
    };
    const plain = await load(files);
    expect(plain.ok).toBe(true);
    expect(plain.ds.map((d) => `${d.file} ${d.severity} ${d.rule}`)).toEqual(['a.mobileconfig info custom-preferences']);

    const dir = mkdtempSync(join(tmpdir(), 'orchard-manifests-'));
    writeFileSync(
      join(dir, 'com.google.Chrome.plist'),
      buildPlist({ pfm_domain: 'com.google.Chrome', pfm_subkeys: [{ pfm_name: 'HomepageLocation', pfm_type: 'string' }] }),
    );
    const checked = await load(files, { manifests: dir });
    expect(checked.ok).toBe(false);
    expect(checked.ds.map((d) => `${d.file}:${d.line} ${d.severity} ${d.rule}`)).toEqual([`a.mobileconfig:${KEY_LINE} error manifest-type`]);
  });

  it('a hostile profile: a 1 MB key above 2,000 values, repeated, costs memory per value, not per key length, and short messages', async () => {
    const long = 'K'.repeat(1 << 20);
    const children = Array.from({ length: 2000 }, (_, i) => `<key>k${i}</key><true/>`).join('');
    const xml = xmlProfile([payload('com.apple.dock', '1', `<key>${long}</key><dict>${children}</dict>`, `<key>${long}</key><dict>${children}</dict>`)]);
    const { ok, ds } = await load({ 'f.yaml': fileProfile('f', 'f.mobileconfig'), 'f.mobileconfig': xml });
    expect(ok).toBe(true);
    // The value the device keeps (the second) is the one checked; the file is over the size warning.
    expect(ds.map((d) => `${d.file}:${d.line} ${d.rule}`)).toEqual([
      `f.mobileconfig:${KEY_LINE + 1} plist-duplicate-key`,
      `f.mobileconfig:${KEY_LINE + 1} apple-unknown-key`,
      'f.yaml:5 profile-size',
    ]);
    for (const d of ds) expect(d.message.length).toBeLessThan(400);
  });

  it('UTF-16 and CRLF files: positions in the decoded text are the lines an editor shows', async () => {
    const xml = xmlProfile([payload('com.apple.mobiledevice.passwordpolicy', '1', '<key>minLenght</key><integer>6</integer>')]).replace(/\n/g, '\r\n');
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(xml, 'utf16le')]);
    const { ds } = await load({ 'f.yaml': fileProfile('f', 'f.mobileconfig'), 'f.mobileconfig': utf16 });
    expect(ds.map((d) => `${d.file}:${d.line}:${d.col} ${d.rule}`)).toEqual([`f.mobileconfig:${KEY_LINE}:4 apple-unknown-key`]);
  });

  it('a signed profile: findings at line 1 (its lines are inside the signature), the key path in the message', async () => {
    const root = makeRepo({
      'f.yaml': fileProfile('f', 'f.mobileconfig'),
      'plain.xml': xmlProfile([payload('com.apple.mobiledevice.passwordpolicy', '1', '<key>minLenght</key><integer>6</integer>')]),
      'b.yaml': blueprint('b', '    platforms: [macOS]', ['f']),
    });
    const pki = opensslPki('Profile Signer');
    const { cert, key } = pki.issue('signer');
    execFileSync('openssl', [
      'cms',
      '-sign',
      '-nodetach',
      '-binary',
      '-in',
      join(root, 'plain.xml'),
      '-signer',
      cert,
      '-inkey',
      key,
      '-outform',
      'DER',
      '-out',
      join(root, 'f.mobileconfig'),
    ]);
    const r = await loadFleet(root);
    expect(r.diagnostics.map((d) => `${d.file}:${d.line}:${d.col} ${d.rule} ${d.message.slice(0, 27)}`)).toEqual([
      'f.mobileconfig:1:1 apple-unknown-key PayloadContent.0.minLenght:',
    ]);
  });
});
