import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadFleet } from '../../src/gitops/load.js';
import type { Diagnostic } from '../../src/gitops/model.js';
import { buildPlist } from '../../src/protocol/plist.js';
import { opensslPki } from '../helpers/openssl.js';
import { blueprint, fileProfile, makeRepo, mobileconfig, passcodePayload, profile } from './repo.js';

const EXAMPLE = join(import.meta.dirname, '../../config-examples/fleet');

async function diagnostics(files: Record<string, string | Buffer>): Promise<Diagnostic[]> {
  return (await loadFleet(makeRepo(files))).diagnostics;
}
const errors = (ds: Diagnostic[]) => ds.filter((d) => d.severity === 'error');
const only = (ds: Diagnostic[], rule: string | RegExp) => ds.filter((d) => (typeof rule === 'string' ? d.rule === rule : rule.test(d.rule)));

const good = {
  'profiles/passcode.yaml': profile('passcode', 'com.example.passcode', passcodePayload),
  'blueprints/all.yaml': blueprint('all', '    platforms: [macOS]', ['passcode']),
};

describe('the example fleet', () => {
  it('validates with no errors and no warnings', async () => {
    const r = await loadFleet(EXAMPLE);
    expect(r.diagnostics).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.fleet!.profiles.size).toBe(7);
    expect(r.fleet!.blueprints.size).toBe(3);
    expect(r.fleet!.tagsBySerial.get('C02XD1AAJGH5')).toEqual(new Set(['design', 'office']));
    expect(r.fleet!.profiles.get('wifi-office')!.secrets).toEqual(['office-wifi-psk']);
    expect(r.fleet!.profiles.get('dock')!.identifier).toBe('com.example.dock');
  });
});

describe('YAML and schema', () => {
  it('a minimal good repository is valid', async () => {
    const r = await loadFleet(makeRepo(good));
    expect(r.diagnostics).toEqual([]);
    expect(r.fleet?.contentHash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('YAML syntax errors name the line', async () => {
    const ds = await diagnostics({ ...good, 'bad.yaml': 'apiVersion: orchard/v1\nkind: Profile\nmetadata: {name: x\n' });
    const e = only(ds, 'yaml')[0]!;
    expect(e.file).toBe('bad.yaml');
    expect(e.line).toBeGreaterThanOrEqual(3);
  });

  it('unknown key points at the key, missing key at the parent, with line numbers', async () => {
    const ds = await diagnostics({
      ...good,
      'blueprints/typo.yaml':
        'apiVersion: orchard/v1\nkind: Blueprint\nmetadata:\n  name: typo\nspec:\n  selector:\n    platform: [macOS]\n  profiles: [passcode]\n',
      'blueprints/missing.yaml': 'apiVersion: orchard/v1\nkind: Blueprint\nmetadata:\n  name: missing\nspec:\n  profiles: [passcode]\n',
    });
    const unknown = ds.find((d) => d.file === 'blueprints/typo.yaml')!;
    expect(unknown).toMatchObject({ rule: 'schema', line: 7, col: 5 });
    expect(unknown.message).toMatch(/unknown key "platform"/);
    const missing = ds.find((d) => d.file === 'blueprints/missing.yaml')!;
    expect(missing.message).toMatch(/missing required key "selector"/);
    expect(missing.line).toBe(6);
  });

  it('wrong enum values, apiVersion, kind and names are refused', async () => {
    const ds = await diagnostics({
      'a.yaml': 'apiVersion: orchard/v2\nkind: Profile\nmetadata: {name: a}\nspec: {}\n',
      'b.yaml': 'apiVersion: orchard/v1\nkind: Widget\nmetadata: {name: b}\nspec: {}\n',
      'c.yaml': 'apiVersion: orchard/v1\nkind: Blueprint\nmetadata: {name: Bad Name}\nspec:\n  selector: {platforms: [Windows]}\n  profiles: []\n',
    });
    expect(ds.find((d) => d.file === 'a.yaml')!.message).toMatch(/apiVersion must be orchard\/v1/);
    expect(ds.find((d) => d.file === 'b.yaml')!.message).toMatch(/kind must be one of/);
    const c = ds
      .filter((d) => d.file === 'c.yaml')
      .map((d) => d.message)
      .join('\n');
    expect(c).toMatch(/metadata.name must match/);
    expect(c).toMatch(/platforms.0 must be one of "macOS"/);
  });

  it('a profile with both payloads and file, or neither, gets one clear message', async () => {
    const ds = await diagnostics({ 'p.yaml': 'apiVersion: orchard/v1\nkind: Profile\nmetadata: {name: p}\nspec:\n  identifier: a.b\n' });
    expect(errors(ds).map((d) => d.message)).toEqual(['spec: a Profile needs either identifier, displayName and payloads, or file (not both)']);
  });

  it('duplicate names per kind are refused with both places', async () => {
    const ds = await diagnostics({ ...good, 'profiles/again.yaml': profile('passcode', 'com.example.other', passcodePayload) });
    const e = only(ds, 'duplicate-name')[0]!;
    expect(e.message).toMatch(/already defined at profiles\/(again|passcode)\.yaml:4/);
  });

  it('several documents per file, empty documents ignored', async () => {
    const r = await loadFleet(makeRepo({ 'all.yaml': `${good['profiles/passcode.yaml']}---\n${good['blueprints/all.yaml']}---\n` }));
    expect(r.diagnostics).toEqual([]);
    expect(r.fleet!.blueprints.get('all')!.profiles).toEqual(['passcode']);
  });
});

describe('Apple payload validation with positions', () => {
  it('a typo in an Apple key is a warning on that line with a suggestion (the device ignores the key)', async () => {
    const ds = await diagnostics({
      ...good,
      'profiles/passcode.yaml': profile(
        'passcode',
        'com.example.passcode',
        '    - type: com.apple.mobiledevice.passwordpolicy\n      keys:\n        minLength: 8\n        requireAlphanumerc: true\n',
      ),
    });
    const e = only(ds, 'apple-unknown-key')[0]!;
    expect(e).toMatchObject({ file: 'profiles/passcode.yaml', line: 12, col: 9, severity: 'warning' });
    expect(e.message).toMatch(/requireAlphanumeric/);
  });

  it('wrong types, values outside the allowed list, missing required keys, unknown payload types', async () => {
    const ds = (
      await diagnostics({
        'profiles/p.yaml': profile(
          'p',
          'com.example.p',
          [
            '    - type: com.apple.mobiledevice.passwordpolicy',
            '      keys:',
            '        minLength: eight',
            '    - type: com.apple.wifi.managed',
            '      keys:',
            '        SSID_STR: x',
            '        EncryptionType: WPA9',
            '    - type: com.apple.MCX.FileVault2',
            '      keys: {Defer: true}',
            '    - type: com.apple.wifi.manged',
            '      keys: {}',
            '',
          ].join('\n'),
        ),
        'b.yaml': blueprint('b', '    platforms: [macOS]', ['p']),
      })
    ).filter((d) => d.severity !== 'info');
    const at = (line: number) =>
      ds
        .filter((d) => d.line === line)
        .map((d) => d.message)
        .join(' | ');
    expect(at(11)).toMatch(/minLength/);
    expect(at(15)).toMatch(/WPA9|EncryptionType/);
    expect(ds.some((d) => /Enable/.test(d.message) && d.line === 17)).toBe(true);
    expect(at(18)).toMatch(/com\.apple\.wifi\.manged/);
    expect(at(18)).toMatch(/com\.apple\.wifi\.managed/); // the suggestion
    expect(ds.filter((d) => d.line === 18).map((d) => `${d.severity} ${d.rule}`)).toEqual(['warning apple-payload-type-typo']); // macOS would apply it as preferences
  });

  it('platform and supervision warnings come from the blueprints that use the profile', async () => {
    const payload = '    - type: com.apple.applicationaccess\n      keys:\n        allowAppRemoval: false\n';
    const ios = await loadFleet(makeRepo({ 'p.yaml': profile('p', 'com.example.p', payload), 'b.yaml': blueprint('b', '    platforms: [iOS]', ['p']) }));
    expect(ios.ok).toBe(true);
    expect(ios.diagnostics.some((d) => d.severity === 'warning' && /supervis/i.test(d.message))).toBe(true);
    const supervised = await loadFleet(
      makeRepo({ 'p.yaml': profile('p', 'com.example.p', payload), 'b.yaml': blueprint('b', '    platforms: [iOS]\n    supervised: true', ['p']) }),
    );
    expect(supervised.diagnostics.filter((d) => /supervis/i.test(d.message))).toEqual([]);
  });
});

describe('references, variables, secrets', () => {
  it('a blueprint naming a missing profile: error on that list item, with a suggestion', async () => {
    const ds = await diagnostics({
      ...good,
      'blueprints/all.yaml':
        'apiVersion: orchard/v1\nkind: Blueprint\nmetadata:\n  name: all\nspec:\n  selector: {}\n  profiles:\n    - passcode\n    - pascode\n',
    });
    const e = only(ds, 'ref-missing-profile')[0]!;
    expect(e).toMatchObject({ line: 9, col: 7 });
    expect(e.message).toMatch(/did you mean "passcode"/);
  });

  it('two profiles with one identifier conflict when blueprints can select the same device', async () => {
    const files = {
      'p.yaml': `${profile('a', 'com.example.same', passcodePayload)}---\n${profile('b', 'com.example.same', passcodePayload)}`,
    };
    const overlap = await diagnostics({
      ...files,
      'b.yaml': `${blueprint('one', '    tags: [x]', ['a'])}---\n${blueprint('two', '    platforms: [macOS]', ['b'])}`,
    });
    expect(only(overlap, 'identifier-conflict')[0]!.message).toMatch(/blueprints "one" and "two" can select the same device/);
    const disjoint = await diagnostics({
      ...files,
      'b.yaml': `${blueprint('one', '    platforms: [iOS]', ['a'])}---\n${blueprint('two', '    platforms: [macOS]', ['b'])}`,
    });
    expect(errors(disjoint)).toEqual([]);
    const excluded = await diagnostics({
      ...files,
      'b.yaml': `${blueprint('one', '    tags: [lab]', ['a'])}---\n${blueprint('two', '    exclude: {tags: [lab]}', ['b'])}`,
    });
    expect(errors(excluded)).toEqual([]);
  });

  it('variables: known device facts pass; unknown ones and undeclared secrets fail on their line', async () => {
    const payload = (v: string) => `    - type: com.apple.wifi.managed\n      keys:\n        SSID_STR: net-\${device.SerialNumber}\n        Password: ${v}\n`;
    const ok = await loadFleet(
      makeRepo({
        'p.yaml': profile('p', 'com.example.p', payload('${secret:psk}')),
        's.yaml': 'apiVersion: orchard/v1\nkind: Secret\nmetadata: {name: psk}\nspec: {}\n',
        'b.yaml': blueprint('b', '    platforms: [macOS]', ['p']),
      }),
    );
    expect(ok.diagnostics).toEqual([]);
    expect(ok.fleet!.profiles.get('p')!.variables).toEqual(['SerialNumber']);
    const undeclared = await diagnostics({
      'p.yaml': profile('p', 'com.example.p', payload('${secret:psk}')),
      'b.yaml': blueprint('b', '    platforms: [macOS]', ['p']),
    });
    expect(only(undeclared, 'undeclared-secret')[0]).toMatchObject({ line: 12 });
    const unknownDevice = await diagnostics({
      'p.yaml': profile('p', 'com.example.p', payload('${device.SerialNumbr}')),
      'b.yaml': blueprint('b', '    platforms: [macOS]', ['p']),
    });
    expect(only(unknownDevice, 'variable')[0]!.message).toMatch(/did you mean "SerialNumber"/);
    const unknownKind = await diagnostics({
      'p.yaml': profile('p', 'com.example.p', payload('${env:HOME}')),
      'b.yaml': blueprint('b', '    platforms: [macOS]', ['p']),
    });
    expect(only(unknownKind, 'variable')[0]!.message).toMatch(/unknown variable \$\{env:HOME\}/);
    const literal = await diagnostics({
      'p.yaml': profile('p', 'com.example.p', payload('$${not-a-variable}')),
      'b.yaml': blueprint('b', '    platforms: [macOS]', ['p']),
    });
    expect(errors(literal)).toEqual([]);
  });

  it('osVersion ranges are checked', async () => {
    const ds = await diagnostics({ ...good, 'blueprints/all.yaml': blueprint('all', '    osVersion: ">=14.0 <<16"', ['passcode']) });
    expect(only(ds, 'selector')[0]).toMatchObject({ line: 7 });
  });
});

describe('.mobileconfig files', () => {
  it('XML and CMS-signed files are read; their payloads are validated', async () => {
    const xml = await loadFleet(
      makeRepo({
        'profiles/f.yaml': fileProfile('f.mobileconfig'),
        'profiles/f.mobileconfig': mobileconfig(),
        'b.yaml': blueprint('b', '    platforms: [macOS]', ['f']),
      }),
    );
    expect(xml.diagnostics).toEqual([]);
    expect(xml.fleet!.profiles.get('f')!.identifier).toBe('com.example.file');

    const pki = opensslPki('Profile Signer');
    const { cert, key } = pki.issue('signer');
    const root = makeRepo({
      'profiles/f.yaml': fileProfile('f.mobileconfig'),
      'plain.xml': mobileconfig(),
      'b.yaml': blueprint('b', '    platforms: [macOS]', ['f']),
    });
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
      join(root, 'profiles/f.mobileconfig'),
    ]);
    const signed = await loadFleet(root);
    expect(signed.diagnostics).toEqual([]);
    expect(signed.fleet!.profiles.get('f')!.fileBytes![0]).toBe(0x30);

    const typo = await diagnostics({
      'profiles/f.yaml': fileProfile('f.mobileconfig'),
      'profiles/f.mobileconfig': mobileconfig({
        PayloadContent: [{ PayloadType: 'com.apple.mobiledevice.passwordpolicy', PayloadIdentifier: 'x', PayloadUUID: 'y', PayloadVersion: 1, minLenght: 6 }],
      }),
      'b.yaml': blueprint('b', '    platforms: [macOS]', ['f']),
    });
    expect(only(typo, 'apple-unknown-key')[0]!.message).toMatch(/minLenght/);
    expect(only(typo, 'apple-unknown-key')[0]).toMatchObject({ file: 'profiles/f.mobileconfig', severity: 'warning' });
  });

  it('unreadable, outside the repository, or not a profile: an error on the file: line', async () => {
    const missing = errors(await diagnostics({ 'f.yaml': fileProfile('nope.mobileconfig') }));
    expect(missing[0]).toMatchObject({ rule: 'mobileconfig', line: 5 });
    expect(missing[0]!.message).toMatch(/ENOENT/);
    const outside = errors(await diagnostics({ 'f.yaml': fileProfile('../../etc/passwd') }));
    expect(outside[0]!.message).toMatch(/outside the repository/);
    const notProfile = errors(await diagnostics({ 'f.yaml': fileProfile('x.mobileconfig'), 'x.mobileconfig': buildPlist({ PayloadType: 'com.apple.dock' }) }));
    expect(notProfile[0]!.message).toMatch(/not a configuration profile/);
    const garbage = errors(await diagnostics({ 'f.yaml': fileProfile('x.mobileconfig'), 'x.mobileconfig': Buffer.from([1, 2, 3]) }));
    expect(garbage[0]!.message).toMatch(/neither an XML plist nor a CMS-signed profile/);
  });
});
