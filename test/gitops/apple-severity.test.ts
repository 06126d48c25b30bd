/**
 * The severity model (errors where the device refuses or misreads, warnings where it accepts what
 * the admin probably did not mean, info where nothing is checked), the generator's overrides of
 * Apple's YAML quirks, custom preference domains and community manifests.
 */
import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkProfile, RULES, validatePayload, validateTopLevel, type PayloadContext, type PayloadIssue } from '../../src/gitops/apple/payloads.js';
import { ManifestSet } from '../../src/gitops/manifests.js';
import { buildPlist } from '../../src/protocol/plist.js';

const complete = (platforms: PayloadContext['platforms'] = [], extra: Partial<PayloadContext> = {}): PayloadContext => ({
  platforms,
  mode: 'complete',
  ...extra,
});
const ids = (type: string) => ({
  PayloadType: type,
  PayloadIdentifier: `com.example.${type}`,
  PayloadUUID: '6B29FC40-CA47-1067-B31D-00DD010662DA',
  PayloadVersion: 1,
});
const rules = (issues: PayloadIssue[]) => issues.map((i) => `${i.severity} ${i.rule}`);

describe('every issue has the severity its rule declares', () => {
  it('RULES is the single table of rule ids and severities', () => {
    const samples: PayloadIssue[] = [
      ...validatePayload('com.apple.wifi.managed', { SSID_STR: 3, AutoJoin: 1, Bogus: true, EncryptionType: 'x' }, complete(['iOS'])),
      ...validatePayload('com.google.Chrome', { HomepageLocation: 'x' }, complete()),
      ...validatePayload('com.google.Chrome', {}, complete(['iOS'])),
      ...checkProfile({ PayloadUUID: 'a', PayloadContent: [{ PayloadUUID: 'a' }] }),
    ];
    expect(samples.length).toBeGreaterThan(5);
    for (const i of samples) expect(i.severity).toBe(RULES[i.rule].severity);
  });
});

describe("overrides of Apple's YAML quirks (scripts/gen-apple-profiles.mjs)", () => {
  it('PayloadEnabled is known at profile and payload level (Profile Manager, ProfileCreator, iMazing write it)', () => {
    const payload = { ...ids('com.apple.dock'), PayloadEnabled: true, orientation: 'left' };
    expect(validatePayload('com.apple.dock', payload, complete(['macOS']))).toEqual([]);
    const top = {
      PayloadType: 'Configuration',
      PayloadVersion: 1,
      PayloadIdentifier: 'p',
      PayloadUUID: '6B29FC40-CA47-1067-B31D-00DD010662DB',
      PayloadEnabled: true,
      PayloadContent: [],
    };
    expect(validateTopLevel(top)).toEqual([]);
    expect(rules(validatePayload('com.apple.dock', { ...payload, PayloadEnabled: 'yes' }, complete(['macOS'])))).toEqual(['error apple-type']);
  });

  it('com.apple.system.logging keys are supported on macOS (Apple marks them n/a there)', () => {
    const payload = {
      ...ids('com.apple.system.logging'),
      System: { 'Enable-Private-Data': true },
      Subsystems: { 'com.example': { DEFAULT_OPTIONS: { Level: { Enable: 'debug' } } } },
    };
    expect(validatePayload('com.apple.system.logging', payload, complete(['macOS']))).toEqual([]);
  });

  it('com.apple.screensaver does not require moduleName', () => {
    expect(
      validatePayload('com.apple.screensaver', { ...ids('com.apple.screensaver'), askForPassword: true, loginWindowIdleTime: 600 }, complete(['macOS'])),
    ).toEqual([]);
  });

  it('com.apple.vpn.managed knows VPN.RemoteAddress', () => {
    const vpn = {
      ...ids('com.apple.vpn.managed'),
      UserDefinedName: 'Corp',
      VPNType: 'VPN',
      VPNSubType: 'com.example.vpn',
      VPN: { RemoteAddress: 'vpn.example.com', AuthenticationMethod: 'Password' },
    };
    expect(validatePayload('com.apple.vpn.managed', vpn, complete(['macOS'])).filter((i) => i.rule === 'apple-unknown-key')).toEqual([]);
  });

  it('com.apple.ManagedClient.preferences: Forced, Set-Once and Often, with MCX metadata; structure still checked', () => {
    const settings = { mcx_preference_settings: { HomepageLocation: 'https://example.com' } };
    const ok = {
      ...ids('com.apple.ManagedClient.preferences'),
      PayloadContent: {
        'com.google.Chrome': {
          Forced: [settings],
          'Set-Once': [{ ...settings, mcx_data_timestamp: new Date('2024-01-01T00:00:00Z') }],
          Often: [{ ...settings, mcx_targets: { user: true } }],
        },
      },
    };
    expect(rules(validatePayload('com.apple.ManagedClient.preferences', ok, complete(['macOS'])))).toEqual(['info custom-preferences']);
    const bad = { ...ids('com.apple.ManagedClient.preferences'), PayloadContent: { 'com.google.Chrome': { Forced: settings, Sometimes: [settings] } } };
    expect(rules(validatePayload('com.apple.ManagedClient.preferences', bad, complete(['macOS'])))).toEqual([
      'error apple-type',
      'warning apple-unknown-key',
      'info custom-preferences',
    ]);
    const stamp = {
      ...ids('com.apple.ManagedClient.preferences'),
      PayloadContent: { 'com.google.Chrome': { 'Set-Once': [{ ...settings, mcx_data_timestamp: 'yesterday' }] } },
    };
    expect(rules(validatePayload('com.apple.ManagedClient.preferences', stamp, complete(['macOS'])))).toEqual(['error apple-type', 'info custom-preferences']);
  });

  it('partly documented preference domains: other keys are one info, not unknown-key warnings', () => {
    const issues = validatePayload(
      'com.apple.finder',
      { ...ids('com.apple.finder'), ShowHardDrivesOnDesktop: true, ShowStatusBar: true, FXPreferredViewStyle: 'Nlsv' },
      complete(['macOS']),
    );
    expect(issues).toEqual([
      {
        severity: 'info',
        rule: 'apple-undocumented-key',
        path: [],
        message: expect.stringMatching(/'ShowStatusBar', 'FXPreferredViewStyle' are not in Apple's schema of com.apple.finder/),
      },
    ]);
    // Documented keys are still checked.
    expect(rules(validatePayload('com.apple.finder', { ...ids('com.apple.finder'), ShowHardDrivesOnDesktop: 'yes' }, complete(['macOS'])))).toEqual([
      'error apple-type',
    ]);
    expect(rules(validatePayload('.GlobalPreferences', { ...ids('.GlobalPreferences'), AppleInterfaceStyle: 'Dark' }, complete(['macOS'])))).toEqual([
      'info apple-undocumented-key',
    ]);
  });

  it('the newer schema: Apple Intelligence restrictions of iOS 18.2 / macOS 15.2 are known', () => {
    const keys = {
      allowExternalIntelligenceIntegrations: false,
      allowExternalIntelligenceIntegrationsSignIn: false,
      allowGenmoji: false,
      allowWritingTools: false,
    };
    expect(validatePayload('com.apple.applicationaccess', { ...ids('com.apple.applicationaccess'), ...keys }, complete(['macOS']))).toEqual([]);
  });
});

describe('coercions the device makes', () => {
  it('<integer>0/1</integer> for a boolean is a warning; other numbers are errors', () => {
    const base = { ...ids('com.apple.wifi.managed'), SSID_STR: 'x' };
    expect(validatePayload('com.apple.wifi.managed', { ...base, AutoJoin: 1 }, complete())).toEqual([
      { severity: 'warning', rule: 'apple-integer-for-boolean', path: ['AutoJoin'], message: expect.stringMatching(/integer 1 for a boolean: read as true/) },
    ]);
    expect(rules(validatePayload('com.apple.wifi.managed', { ...base, AutoJoin: 0 }, complete()))).toEqual(['warning apple-integer-for-boolean']);
    expect(rules(validatePayload('com.apple.wifi.managed', { ...base, AutoJoin: 2 }, complete()))).toEqual(['error apple-type']);
    expect(rules(validatePayload('com.apple.wifi.managed', { ...base, AutoJoin: 'true' }, complete()))).toEqual(['error apple-type']);
  });

  it('a whole <real> for an integer is a warning, a fraction an error (told apart by the plist element)', () => {
    const keys = { ...ids('com.apple.mobiledevice.passwordpolicy'), minLength: 8 };
    const real = (path: readonly (string | number)[]) => (path[0] === 'minLength' ? ('real' as const) : ('integer' as const));
    expect(validatePayload('com.apple.mobiledevice.passwordpolicy', keys, complete())).toEqual([]);
    expect(validatePayload('com.apple.mobiledevice.passwordpolicy', keys, complete([], { numberTag: real }))).toEqual([
      {
        severity: 'warning',
        rule: 'apple-real-for-integer',
        path: ['minLength'],
        message: expect.stringMatching(/<real>8.0<\/real> for an integer: read as 8/),
      },
    ]);
    expect(rules(validatePayload('com.apple.mobiledevice.passwordpolicy', { ...keys, minLength: 8.5 }, complete([], { numberTag: real })))).toEqual([
      'error apple-type',
    ]);
  });
});

describe('custom preference domains', () => {
  it('are managed preferences on macOS: info; an error where only Apple types install', () => {
    for (const type of ['com.google.Chrome', 'com.microsoft.wdav', 'com.apple.NetworkBrowser', 'com.apple.SubmitDiagInfo']) {
      expect(validatePayload(type, { ...ids(type), Anything: 1 }, complete(['macOS']))).toEqual([
        {
          severity: 'info',
          rule: 'custom-preferences',
          path: [],
          message: `keys of ${type} are not checked (a preference domain outside Apple's schema, applied by macOS as managed preferences; --manifests checks it)`,
        },
      ]);
    }
    expect(rules(validatePayload('com.google.Chrome', {}, complete([])))).toEqual(['info custom-preferences']);
    expect(validatePayload('com.google.Chrome', {}, complete(['macOS', 'iPadOS']))).toEqual([
      { severity: 'error', rule: 'apple-payload-type', path: [], message: expect.stringMatching(/iPadOS install only payload types Apple defines/) },
    ]);
  });

  describe('with community manifests (ProfileManifests format)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'orchard-manifests-'));
    mkdirSync(join(dir, 'ManagedPreferencesApplications'));
    const sub = (name: string, type: string, extra: Record<string, unknown> = {}) => ({ pfm_name: name, pfm_type: type, ...extra });
    writeFileSync(
      join(dir, 'ManagedPreferencesApplications', 'com.google.Chrome.plist'),
      buildPlist({
        pfm_domain: 'com.google.Chrome',
        pfm_title: 'Google Chrome',
        pfm_format_version: 1,
        pfm_subkeys: [
          sub('PayloadType', 'string', { pfm_require: 'always', pfm_range_list: ['com.google.Chrome'] }),
          sub('HomepageLocation', 'url'),
          sub('HomepageIsNewTabPage', 'boolean'),
          sub('RestoreOnStartup', 'integer', { pfm_range_list: [1, 4, 5] }),
          sub('DiskCacheSize', 'integer', { pfm_range_min: 0, pfm_range_max: 1000 }),
          sub('ExtensionInstallForcelist', 'array', { pfm_subkeys: [{ pfm_type: 'string' }] }),
          sub('ManagedBookmarks', 'array', {
            pfm_subkeys: [{ pfm_type: 'dictionary', pfm_subkeys: [sub('name', 'string', { pfm_require: 'always' }), sub('url', 'string')] }],
          }),
          sub('ExtensionSettings', 'dictionary'),
          sub('DownloadDirectory', 'string', { pfm_format: '/.*|\\$\\{[a-z_]+\\}.*' }),
        ],
      }),
    );
    // A manifest named otherwise is found by its pfm_domain; a broken one is a problem, not a crash.
    writeFileSync(
      join(dir, 'wdav.plist'),
      buildPlist({
        pfm_domain: 'com.microsoft.wdav',
        pfm_subkeys: [sub('antivirusEngine', 'dictionary', { pfm_subkeys: [sub('enforcementLevel', 'string', { pfm_range_list: ['passive', 'real_time'] })] })],
      }),
    );
    writeFileSync(
      join(dir, 'com.apple.finder.plist'),
      buildPlist({
        pfm_domain: 'com.apple.finder',
        pfm_subkeys: [sub('ShowStatusBar', 'boolean'), sub('WarnOnEmptyTrash', 'boolean', { pfm_require: 'always' })],
      }),
    );
    writeFileSync(join(dir, 'broken.plist'), '<plist><dict><key>pfm_domain</key></plist>');
    const manifests = new ManifestSet(dir);
    const ctx = complete(['macOS'], { manifests });

    it('a valid payload passes', () => {
      const keys = {
        ...ids('com.google.Chrome'),
        HomepageLocation: 'https://example.com',
        RestoreOnStartup: 4,
        ExtensionInstallForcelist: ['abc'],
        ManagedBookmarks: [{ name: 'Intranet', url: 'https://intranet' }],
        DownloadDirectory: '/Users/Shared/Downloads',
        ExtensionSettings: { '*': { installation_mode: 'blocked' } },
      };
      expect(validatePayload('com.google.Chrome', keys, ctx)).toEqual([]);
    });

    it('type errors are errors; unknown keys, values and required keys are warnings (the device does not enforce a manifest)', () => {
      const keys = {
        ...ids('com.google.Chrome'),
        HomepageIsNewTabPage: 'yes',
        HomepagLocation: 'x',
        RestoreOnStartup: 2,
        DiskCacheSize: 5000,
        ManagedBookmarks: [{ url: 'https://intranet' }],
        DownloadDirectory: 'Downloads/x',
      };
      expect(validatePayload('com.google.Chrome', keys, ctx).map((i) => [i.severity, i.rule, i.path.join('.')])).toEqual([
        ['error', 'manifest-type', 'HomepageIsNewTabPage'],
        ['warning', 'manifest-unknown-key', 'HomepagLocation'],
        ['warning', 'manifest-value', 'RestoreOnStartup'],
        ['warning', 'manifest-value', 'DiskCacheSize'],
        ['warning', 'manifest-required-key', 'ManagedBookmarks.0'],
        // pfm_format matches the whole value: 'Downloads/x' contains a '/' but does not start with one.
        ['warning', 'manifest-value', 'DownloadDirectory'],
      ]);
      expect(validatePayload('com.google.Chrome', keys, ctx)[1]?.message).toMatch(/did you mean 'HomepageLocation'\?/);
    });

    it("managed preferences (com.apple.ManagedClient.preferences) of a domain are checked against the domain's manifest", () => {
      const mcx = (prefs: Record<string, unknown>) => ({
        ...ids('com.apple.ManagedClient.preferences'),
        PayloadContent: {
          'com.google.Chrome': { Forced: [{ mcx_preference_settings: prefs }] },
          'com.example.other': { Forced: [{ mcx_preference_settings: {} }] },
        },
      });
      expect(rules(validatePayload('com.apple.ManagedClient.preferences', mcx({ HomepageLocation: 'https://example.com', RestoreOnStartup: 4 }), ctx))).toEqual(
        ['info custom-preferences'],
      );
      expect(
        validatePayload('com.apple.ManagedClient.preferences', mcx({ HomepageIsNewTabPage: 1, RestoreOnStartup: 'x' }), ctx).map((i) => [
          i.severity,
          i.rule,
          i.path.join('.'),
        ]),
      ).toEqual([
        ['warning', 'apple-integer-for-boolean', 'PayloadContent.com.google.Chrome.Forced.0.mcx_preference_settings.HomepageIsNewTabPage'],
        ['error', 'manifest-type', 'PayloadContent.com.google.Chrome.Forced.0.mcx_preference_settings.RestoreOnStartup'],
        ['info', 'custom-preferences', 'PayloadContent.com.example.other'],
      ]);
      expect(validatePayload('com.apple.ManagedClient.preferences', mcx({}), ctx)[0]!.message).toMatch(
        /keys of com.example.other are not checked .*no manifest for it in --manifests/,
      );
    });

    it("a partly documented Apple domain: the keys Apple leaves out are checked against the domain's manifest", () => {
      const finder = (extra: Record<string, unknown>) =>
        validatePayload('com.apple.finder', { ...ids('com.apple.finder'), ShowHardDrivesOnDesktop: true, ...extra }, ctx);
      expect(finder({ ShowStatusBar: true })).toEqual([]);
      expect(finder({ ShowStatusBar: 'yes', FXPreferredViewStyle: 'Nlsv' }).map((i) => [i.severity, i.rule, i.path.join('.')])).toEqual([
        ['error', 'manifest-type', 'ShowStatusBar'],
        ['warning', 'manifest-unknown-key', 'FXPreferredViewStyle'],
      ]);
    });

    it('found by pfm_domain in any file; unusable files are listed as problems', () => {
      expect(rules(validatePayload('com.microsoft.wdav', { ...ids('com.microsoft.wdav'), antivirusEngine: { enforcementLevel: 'loud' } }, ctx))).toEqual([
        'warning manifest-value',
      ]);
      expect(rules(validatePayload('com.example.none', {}, ctx))).toEqual(['info custom-preferences']);
      expect(manifests.problems).toEqual([expect.stringMatching(/broken\.plist: /)]);
    });
  });
});

describe('whole-profile checks', () => {
  const uuid = (n: number) => `6B29FC40-CA47-1067-B31D-00DD0106620${n}`;
  it("duplicate PayloadUUIDs (also the profile's own) are errors: the device refuses the profile", () => {
    const issues = checkProfile({
      PayloadUUID: uuid(1),
      PayloadContent: [{ PayloadUUID: uuid(2) }, { PayloadUUID: uuid(2).toLowerCase() }, { PayloadUUID: uuid(1) }],
    });
    expect(issues).toEqual([
      {
        severity: 'error',
        rule: 'duplicate-uuid',
        path: ['PayloadContent', 1, 'PayloadUUID'],
        message: expect.stringMatching(/also the PayloadUUID of PayloadContent.0/),
      },
      {
        severity: 'error',
        rule: 'duplicate-uuid',
        path: ['PayloadContent', 2, 'PayloadUUID'],
        message: expect.stringMatching(/also the PayloadUUID of the profile/),
      },
    ]);
  });

  it('a malformed UUID is a warning; an empty PayloadContent is a warning', () => {
    expect(
      checkProfile({
        PayloadUUID: 'not-a-uuid',
        PayloadContent: [{ PayloadUUID: uuid(3), PayloadType: 'com.apple.ManagedClient.preferences', PayloadContent: {} }],
      }),
    ).toEqual([
      { severity: 'warning', rule: 'uuid-format', path: ['PayloadUUID'], message: expect.stringMatching(/"not-a-uuid" is not a UUID/) },
      {
        severity: 'warning',
        rule: 'empty-payload-content',
        path: ['PayloadContent', 0, 'PayloadContent'],
        message: expect.stringMatching(/com.apple.ManagedClient.preferences payload is empty/),
      },
    ]);
    expect(rules(checkProfile({ PayloadUUID: uuid(4), PayloadContent: [] }))).toEqual(['warning empty-payload-content']);
    expect(checkProfile({ PayloadUUID: uuid(4), PayloadContent: [], IsEncrypted: true })).toEqual([]);
  });
});
