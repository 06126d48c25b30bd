import { describe, expect, it } from 'vitest';
import {
  isKnownPayloadType,
  knownPayloadTypes,
  validatePayload,
  validateTopLevel,
  type PayloadContext,
  type PayloadIssue,
} from '../../src/gitops/apple/payloads.js';

const authored = (platforms: PayloadContext['platforms'], supervised?: boolean): PayloadContext => ({ platforms, supervised, mode: 'authored' });
const errors = (issues: PayloadIssue[]) => issues.filter((i) => i.severity === 'error');
const warnings = (issues: PayloadIssue[]) => issues.filter((i) => i.severity === 'warning');

const wifi = () => ({
  PayloadDisplayName: 'Corporate Wi-Fi',
  SSID_STR: 'Corp',
  AutoJoin: true,
  HIDDEN_NETWORK: false,
  EncryptionType: 'WPA2',
  ProxyType: 'None',
  EAPClientConfiguration: {
    AcceptEAPTypes: [25, 21],
    UserName: '${device.SerialNumber}',
    UserPassword: '${secret:WIFI_PSK}',
    TTLSInnerAuthentication: 'MSCHAPv2',
    TLSTrustedServerNames: ['radius.example.com'],
  },
});

describe('valid payloads', () => {
  it('Wi-Fi (with nested EAP settings and variables) has no issues on iOS and macOS', () => {
    expect(validatePayload('com.apple.wifi.managed', wifi(), authored(['iOS', 'macOS']))).toEqual([]);
  });

  it('passcode policy has no issues on iOS', () => {
    const keys = {
      allowSimple: false,
      forcePIN: true,
      maxFailedAttempts: 6,
      minLength: 8,
      maxInactivity: 5,
      requireAlphanumeric: true,
      pinHistory: 5,
      maxPINAgeInDays: 365,
    };
    expect(validatePayload('com.apple.mobiledevice.passwordpolicy', keys, authored(['iOS']))).toEqual([]);
  });

  it('restrictions have no issues on supervised iOS', () => {
    const keys = {
      allowCamera: true,
      allowAppInstallation: false,
      allowAirDrop: false,
      allowScreenShot: true,
      forceEncryptedBackup: true,
      safariAcceptCookies: 1.5,
    };
    expect(validatePayload('com.apple.applicationaccess', keys, authored(['iOS'], true))).toEqual([]);
  });

  it('FileVault has no issues on macOS', () => {
    const keys = {
      Enable: 'On',
      Defer: true,
      UseRecoveryKey: true,
      ShowRecoveryKey: false,
      DeferForceAtUserLoginMaxBypassAttempts: -1,
      DeferDontAskAtUserLogout: true,
    };
    expect(validatePayload('com.apple.MCX.FileVault2', keys, authored(['macOS']))).toEqual([]);
  });

  it('software update has no issues on macOS', () => {
    const keys = {
      AutomaticCheckEnabled: true,
      AutomaticDownload: true,
      CriticalUpdateInstall: true,
      AutomaticallyInstallMacOSUpdates: true,
      CatalogURL: 'https://swscan.example.com/index.sucatalog',
    };
    expect(validatePayload('com.apple.SoftwareUpdate', keys, authored(['macOS']))).toEqual([]);
  });
});

describe('errors', () => {
  it('unknown key, with a suggestion: a warning (the device ignores keys it does not know)', () => {
    const keys = { ...wifi(), SSID_ST: 'Corp', AutoJion: true };
    const issues = validatePayload('com.apple.wifi.managed', keys, authored([]));
    expect(errors(issues)).toEqual([]);
    const warns = warnings(issues);
    expect(warns).toHaveLength(2);
    expect(warns[0]).toMatchObject({
      rule: 'apple-unknown-key',
      path: ['SSID_ST'],
      message: expect.stringMatching(/unknown key 'SSID_ST'.*did you mean 'SSID_STR'\?/),
    });
    expect(warns[1]).toMatchObject({ rule: 'apple-unknown-key', path: ['AutoJion'], message: expect.stringMatching(/did you mean 'AutoJoin'\?/) });
  });

  it('unknown key far from every known key gets no suggestion', () => {
    const [e] = warnings(validatePayload('com.apple.wifi.managed', { ...wifi(), CompletelyDifferent: 1 }, authored([])));
    expect(e?.message).toMatch(/unknown key 'CompletelyDifferent'/);
    expect(e?.message).not.toMatch(/did you mean/);
  });

  it('wrong type', () => {
    const errs = errors(validatePayload('com.apple.wifi.managed', { ...wifi(), AutoJoin: 'yes', SSID_STR: 42 }, authored([])));
    expect(errs.map((e) => e.path)).toEqual([['SSID_STR'], ['AutoJoin']]);
    expect(errs[0]?.message).toMatch(/must be a string, got number 42 \(quote it in YAML\)/);
    expect(errs[1]?.message).toMatch(/'AutoJoin' must be a boolean, got string "yes"/);
  });

  it('value outside rangelist', () => {
    const errs = errors(validatePayload('com.apple.wifi.managed', { ...wifi(), EncryptionType: 'WPA4' }, authored([])));
    expect(errs).toEqual([
      {
        severity: 'error',
        rule: 'apple-value',
        path: ['EncryptionType'],
        message: expect.stringMatching(/must be one of "WEP", "WPA", "WPA2", "WPA3", "Any", "None"; got "WPA4"/),
      },
    ]);
  });

  it('value outside range', () => {
    const errs = errors(validatePayload('com.apple.mobiledevice.passwordpolicy', { maxFailedAttempts: 20, minLength: 8 }, authored([])));
    expect(errs).toEqual([
      { severity: 'error', rule: 'apple-value', path: ['maxFailedAttempts'], message: expect.stringMatching(/must be between 2 and 11; got 20/) },
    ]);
    // Ranges on <real> keys too.
    expect(errors(validatePayload('com.apple.universalaccess', { contrast: 1.5 }, authored([])))[0]?.message).toMatch(/between 0 and 1/);
    expect(errors(validatePayload('com.apple.universalaccess', { contrast: 1 }, authored([])))).toEqual([]);
  });

  it('missing required key', () => {
    const errs = errors(validatePayload('com.apple.MCX.FileVault2', { Defer: true }, authored(['macOS'])));
    expect(errs).toEqual([{ severity: 'error', rule: 'apple-required-key', path: [], message: expect.stringMatching(/missing required key 'Enable'/) }]);
  });

  it('unknown payload type: a typo of an Apple type (warning on macOS), an error where only Apple types install', () => {
    const issues = validatePayload('com.apple.wifi.manged', { SSID_STR: 'x' }, authored([]));
    expect(issues).toEqual([
      {
        severity: 'warning',
        rule: 'apple-payload-type-typo',
        path: [],
        message: expect.stringMatching(/unknown payload type 'com.apple.wifi.manged'; did you mean 'com.apple.wifi.managed'\?/),
      },
    ]);
    expect(validatePayload('com.apple.wifi.manged', { SSID_STR: 'x' }, authored(['macOS']))[0]).toMatchObject({
      severity: 'warning',
      rule: 'apple-payload-type-typo',
    });
    expect(validatePayload('com.apple.wifi.manged', { SSID_STR: 'x' }, authored(['macOS', 'iOS']))).toEqual([
      {
        severity: 'error',
        rule: 'apple-payload-type',
        path: [],
        message: expect.stringMatching(/did you mean 'com.apple.wifi.managed'\?: iOS install only payload types Apple defines/),
      },
    ]);
    expect(isKnownPayloadType('com.apple.wifi.manged')).toBe(false);
    expect(isKnownPayloadType('com.apple.wifi.managed')).toBe(true);
    expect(isKnownPayloadType('TopLevel')).toBe(false);
  });

  it('nested errors carry the key path inside the payload', () => {
    const keys = wifi();
    keys.EAPClientConfiguration.AcceptEAPTypes = [25, 99];
    (keys.EAPClientConfiguration as Record<string, unknown>).UserNam = 'x';
    const errs = validatePayload('com.apple.wifi.managed', keys, authored([]));
    expect(errs.map((e) => [e.rule, e.path])).toEqual([
      ['apple-value', ['EAPClientConfiguration', 'AcceptEAPTypes', 1]],
      ['apple-unknown-key', ['EAPClientConfiguration', 'UserNam']],
    ]);
    expect(errs[0]?.message).toMatch(/must be one of 13, 17, 18, 21, 23, 25, 43; got 99/);
    expect(errs[1]?.message).toMatch(/did you mean 'UserName'\?/);
    // A required subkey is reported at the dictionary that lacks it.
    const missing = errors(validatePayload('com.apple.wifi.managed', { SSID_STR: 'x', EAPClientConfiguration: { UserName: 'u' } }, authored([])));
    expect(missing).toEqual([
      {
        severity: 'error',
        rule: 'apple-required-key',
        path: ['EAPClientConfiguration'],
        message: expect.stringMatching(/missing required key 'AcceptEAPTypes' in 'EAPClientConfiguration'/),
      },
    ]);
  });

  it('format (Apple regular expression) is checked', () => {
    const errs = errors(validatePayload('com.apple.wifi.managed', { ...wifi(), PayloadCertificateUUID: 'not-a-uuid' }, authored([])));
    expect(errs).toEqual([{ severity: 'error', rule: 'apple-value', path: ['PayloadCertificateUUID'], message: expect.stringMatching(/must match/) }]);
    expect(
      errors(validatePayload('com.apple.wifi.managed', { ...wifi(), PayloadCertificateUUID: '6B29FC40-CA47-1067-B31D-00DD010662DA' }, authored([]))),
    ).toEqual([]);
  });

  it('repetition bounds an array length', () => {
    const scep = (pair: string[]) => ({ PayloadContent: { URL: 'https://scep.example.com', Subject: [[pair]] } });
    expect(errors(validatePayload('com.apple.security.scep', scep(['O', 'Example']), authored([])))).toEqual([]);
    const errs = errors(validatePayload('com.apple.security.scep', scep(['O', 'Example', 'extra']), authored([])));
    expect(errs).toEqual([
      { severity: 'error', rule: 'apple-value', path: ['PayloadContent', 'Subject', 0, 0], message: expect.stringMatching(/must have exactly 2 items; has 3/) },
    ]);
  });
});

describe('authored and complete payloads', () => {
  it('authored: generated keys must be removed, and are not required', () => {
    const keys = { ...wifi(), PayloadUUID: 'A', PayloadType: 'com.apple.wifi.managed' };
    const errs = errors(validatePayload('com.apple.wifi.managed', keys, authored([])));
    expect(errs).toEqual([
      { severity: 'error', rule: 'apple-generated', path: ['PayloadType'], message: expect.stringMatching(/generated by Orchard; remove it/) },
      { severity: 'error', rule: 'apple-generated', path: ['PayloadUUID'], message: expect.stringMatching(/generated by Orchard; remove it/) },
    ]);
  });

  it('complete: PayloadIdentifier, PayloadUUID and PayloadType are required; a missing PayloadVersion is a warning (devices install it)', () => {
    const ctx: PayloadContext = { platforms: [], mode: 'complete' };
    const issues = validatePayload('com.apple.wifi.managed', wifi(), ctx);
    const msgs = errors(issues).map((e) => e.message);
    for (const k of ['PayloadIdentifier', 'PayloadUUID', 'PayloadType'])
      expect(msgs).toContainEqual(expect.stringMatching(new RegExp(`missing required key '${k}'`)));
    expect(warnings(issues)).toEqual([
      { severity: 'warning', rule: 'apple-payload-version', path: [], message: expect.stringMatching(/missing required key 'PayloadVersion'/) },
    ]);
    const full = {
      ...wifi(),
      PayloadIdentifier: 'com.example.wifi',
      PayloadUUID: '6B29FC40-CA47-1067-B31D-00DD010662DA',
      PayloadType: 'com.apple.wifi.managed',
      PayloadVersion: 1,
    };
    expect(validatePayload('com.apple.wifi.managed', full, ctx)).toEqual([]);
    expect(validatePayload('com.apple.wifi.managed', { ...full, PayloadVersion: 2 }, ctx)).toEqual([
      {
        severity: 'warning',
        rule: 'apple-payload-version',
        path: ['PayloadVersion'],
        message: expect.stringMatching(/'PayloadVersion' must be one of 1; got 2/),
      },
    ]);
    expect(errors(validatePayload('com.apple.wifi.managed', { ...full, PayloadType: 'com.apple.vpn.managed' }, ctx))[0]?.message).toMatch(/does not match/);
  });
});

describe('warnings', () => {
  it('payload type not supported on a target platform', () => {
    const issues = validatePayload('com.apple.SoftwareUpdate', { AutomaticCheckEnabled: true }, authored(['macOS', 'iOS']));
    expect(issues).toEqual([
      {
        severity: 'warning',
        rule: 'apple-platform',
        path: [],
        message: expect.stringMatching(/payload type com.apple.SoftwareUpdate is not supported on iOS \(supported on macOS 10.7\+\)/),
      },
    ]);
    expect(validatePayload('com.apple.SoftwareUpdate', { AutomaticCheckEnabled: true }, authored([]))).toEqual([]);
  });

  it('key not supported on a target platform (iPadOS uses the iOS entry)', () => {
    const issues = validatePayload('com.apple.mobiledevice.passwordpolicy', { minLength: 8, changeAtNextAuth: true }, authored(['iPadOS', 'macOS']));
    expect(issues).toEqual([
      {
        severity: 'warning',
        rule: 'apple-platform',
        path: ['changeAtNextAuth'],
        message: expect.stringMatching(/'changeAtNextAuth' is not supported on iPadOS \(supported on macOS 10.13\+\)/),
      },
    ]);
  });

  it('key removed on a target platform names the version', () => {
    const keys = wifi();
    (keys.EAPClientConfiguration as Record<string, unknown>).TLSAllowTrustExceptions = false;
    const issues = validatePayload('com.apple.wifi.managed', keys, authored(['iOS', 'macOS']));
    expect(issues).toEqual([
      {
        severity: 'warning',
        rule: 'apple-platform',
        path: ['EAPClientConfiguration', 'TLSAllowTrustExceptions'],
        message: expect.stringMatching(/was removed in iOS 8.0/),
      },
    ]);
  });

  it('key that requires supervision', () => {
    const keys = { allowAppInstallation: false, allowCamera: true };
    const issues = validatePayload('com.apple.applicationaccess', keys, authored(['iOS', 'macOS']));
    expect(issues).toContainEqual({
      severity: 'warning',
      rule: 'apple-supervision',
      path: ['allowAppInstallation'],
      message: expect.stringMatching(/requires a supervised device on iOS/),
    });
    expect(issues.filter((i) => i.path[0] === 'allowCamera')).toEqual([]);
    expect(validatePayload('com.apple.applicationaccess', keys, authored(['iOS'], true))).toEqual([]);
  });

  it('payload type that needs supervision wherever it is supported warns even with unknown platforms', () => {
    const layout = { Pages: [[{ Type: 'App', BundleID: 'com.apple.mobilesafari' }]] };
    expect(validatePayload('com.apple.homescreenlayout', layout, authored([]))).toEqual([
      {
        severity: 'warning',
        rule: 'apple-supervision',
        path: [],
        message: expect.stringMatching(/payload type com.apple.homescreenlayout requires a supervised device/),
      },
    ]);
    expect(validatePayload('com.apple.homescreenlayout', layout, authored([], true))).toEqual([]);
  });
});

describe('values', () => {
  it('variables are accepted in strings, even for keys with allowed values, but not in other types', () => {
    const keys = { ...wifi(), SSID_STR: '${device.SerialNumber}-net', EncryptionType: '${secret:ENC}' };
    expect(validatePayload('com.apple.wifi.managed', keys, authored([]))).toEqual([]);
    const errs = errors(
      validatePayload('com.apple.wifi.managed', { ...wifi(), AutoJoin: '${device.AutoJoin}', ProxyServerPort: '${secret:PORT}' }, authored([])),
    );
    expect(errs.map((e) => e.path)).toEqual([['AutoJoin'], ['ProxyServerPort']]);
    for (const e of errs) expect(e.message).toMatch(/variables are only substituted in <string> values/);
  });

  it('<data> takes bytes or a base64 string; <real> takes integers; <date> takes a Date or ISO 8601 string', () => {
    const fv = { Enable: 'On', Certificate: new Uint8Array([48, 130, 1]) };
    expect(validatePayload('com.apple.MCX.FileVault2', fv, authored([]))).toEqual([]);
    expect(validatePayload('com.apple.MCX.FileVault2', { ...fv, Certificate: 'MIIB\nCg==' }, authored([]))).toEqual([]);
    expect(errors(validatePayload('com.apple.MCX.FileVault2', { ...fv, Certificate: '${secret:CERT}' }, authored([])))[0]?.message).toMatch(
      /must be data \(base64 in YAML\)/,
    );
    expect(errors(validatePayload('com.apple.MCX.FileVault2', { ...fv, Certificate: 12 }, authored([])))[0]?.message).toMatch(/must be data/);
    expect(validatePayload('com.apple.universalaccess', { contrast: 0 }, authored([]))).toEqual([]);
    const rule = { Expiration: new Date('2030-01-01T00:00:00Z'), LeafCertificate: new Uint8Array([1]) };
    expect(errors(validatePayload('com.apple.systempolicy.rule', rule, authored([])))).toEqual([]);
    expect(errors(validatePayload('com.apple.systempolicy.rule', { ...rule, Expiration: '2030-01-01T00:00:00Z' }, authored([])))).toEqual([]);
    expect(errors(validatePayload('com.apple.systempolicy.rule', { ...rule, Expiration: 'next week' }, authored([])))[0]?.message).toMatch(/must be a date/);
  });

  it('<any> and ANY-named keys accept anything', () => {
    const prefs = { PayloadContent: { 'com.example.app': { Forced: [{ mcx_preference_settings: { Anything: [1, { b: true }], Other: 'x' } }] } } };
    expect(validatePayload('com.apple.ManagedClient.preferences', prefs, authored([]))).toEqual([
      {
        severity: 'info',
        rule: 'custom-preferences',
        path: ['PayloadContent', 'com.example.app'],
        message: expect.stringMatching(/keys of com.example.app are not checked/),
      },
    ]);
    const missing = errors(validatePayload('com.apple.ManagedClient.preferences', { PayloadContent: { 'com.example.app': { Forced: [{}] } } }, authored([])));
    expect(missing).toEqual([
      {
        severity: 'error',
        rule: 'apple-required-key',
        path: ['PayloadContent', 'com.example.app', 'Forced', 0],
        message: expect.stringMatching(/missing required key 'mcx_preference_settings'/),
      },
    ]);
  });

  it('a recursive definition (home screen folders inside folders) validates at any depth without looping', () => {
    const folder = (pages: unknown[][]) => ({ Type: 'Folder', DisplayName: 'Work', Pages: pages });
    const layout = { Pages: [[folder([[folder([[{ Type: 'App', BundleID: 'com.example.x', Bogus: 1 }, { Type: 'Widget' }]])]])]] };
    const errs = validatePayload('com.apple.homescreenlayout', layout, authored(['iOS'], true));
    expect(errs.map((e) => e.path)).toEqual([
      ['Pages', 0, 0, 'Pages', 0, 0, 'Pages', 0, 0, 'Bogus'],
      ['Pages', 0, 0, 'Pages', 0, 0, 'Pages', 0, 1, 'Type'],
    ]);
  });

  it('a value that contains itself (YAML alias cycle) is reported, not followed', () => {
    // Only a recursive schema can follow a cycle: a folder whose page holds the folder itself.
    const folder: Record<string, unknown> = { Type: 'Folder', DisplayName: 'Loop' };
    folder.Pages = [[folder]];
    const errs = errors(validatePayload('com.apple.homescreenlayout', { Pages: [[folder]] }, authored(['iOS'], true)));
    expect(errs).toEqual([
      { severity: 'error', rule: 'apple-circular', path: ['Pages', 0, 0, 'Pages', 0, 0], message: expect.stringMatching(/contains itself/) },
    ]);
  });
});

describe('conditional requirements and merged types', () => {
  it('a key Apple describes as required only under a condition is required only then', () => {
    const id = (extra: Record<string, unknown>) => ({ PayloadIdentification: { UserName: 'u', FullName: 'U', EmailAddress: 'u@example.com', ...extra } });
    expect(errors(validatePayload('com.apple.configurationprofile.identification', id({ AuthMethod: 'UserEnteredPassword' }), authored([])))).toEqual([]);
    const errs = errors(validatePayload('com.apple.configurationprofile.identification', id({ AuthMethod: 'Password' }), authored([])));
    expect(errs).toEqual([
      {
        severity: 'error',
        rule: 'apple-required-key',
        path: ['PayloadIdentification'],
        message: expect.stringMatching(/missing required key 'Password'.*required when 'AuthMethod' is "Password"/),
      },
    ]);
  });

  it('TCC: either Allowed or Authorization, not both', () => {
    const entry = (extra: Record<string, unknown>) => ({
      Services: { Camera: [{ Identifier: 'com.example.app', IdentifierType: 'bundleID', CodeRequirement: 'identifier "com.example.app"', ...extra }] },
    });
    const type = 'com.apple.TCC.configuration-profile-policy';
    expect(errors(validatePayload(type, entry({ Allowed: true }), authored([])))).toEqual([]);
    expect(errors(validatePayload(type, entry({ Authorization: 'Allow' }), authored([])))).toEqual([]);
    expect(errors(validatePayload(type, entry({}), authored([])))[0]?.message).toMatch(/missing required key 'Allowed'.*unless 'Authorization' is set/);
    expect(errors(validatePayload(type, entry({ Allowed: true, Authorization: 'Allow' }), authored([])))[0]?.message).toMatch(/cannot both be set/);
  });

  it('a payload type Apple describes in several files: merged key sets, or a variant selected by its identifying value', () => {
    // com.apple.MCX: keys from the Accounts and Time Server files in one payload.
    expect(validatePayload('com.apple.MCX', { DisableGuestAccount: true, timeServer: 'time.apple.com' }, authored(['macOS']))).toEqual([]);
    // com.apple.extensiblesso: the Kerberos variant knows its ExtensionData keys; other extensions' are free-form.
    const kerberos = {
      ExtensionIdentifier: 'com.apple.AppSSOKerberos.KerberosExtension',
      TeamIdentifier: 'apple',
      Type: 'Credential',
      Realm: 'EXAMPLE.COM',
      Hosts: ['.example.com'],
    };
    expect(errors(validatePayload('com.apple.extensiblesso', { ...kerberos, ExtensionData: { allowPassword: true } }, authored([])))).toEqual([]);
    expect(warnings(validatePayload('com.apple.extensiblesso', { ...kerberos, ExtensionData: { allowPasword: true } }, authored([])))[0]?.message).toMatch(
      /did you mean 'allowPassword'/,
    );
    const { Realm: _realm, ...noRealm } = kerberos;
    expect(errors(validatePayload('com.apple.extensiblesso', noRealm, authored([])))[0]?.message).toMatch(/missing required key 'Realm'/);
    const other = { ExtensionIdentifier: 'com.example.sso', Type: 'Redirect', URLs: ['https://login.example.com'], ExtensionData: { whatever: 1 } };
    expect(errors(validatePayload('com.apple.extensiblesso', other, authored([])))).toEqual([]);
  });
});

describe('top level', () => {
  const profile = () => ({
    PayloadType: 'Configuration',
    PayloadVersion: 1,
    PayloadIdentifier: 'com.example.profile',
    PayloadUUID: '6B29FC40-CA47-1067-B31D-00DD010662DA',
    PayloadDisplayName: 'Example',
    PayloadScope: 'System',
    ConsentText: { default: 'Agree', en: 'Agree' },
    DurationUntilRemoval: 3600,
    PayloadContent: [{ PayloadType: 'com.apple.wifi.managed', NotCheckedHere: true }],
  });

  it('a complete profile passes, without looking inside PayloadContent', () => {
    expect(validateTopLevel(profile())).toEqual([]);
  });

  it('missing PayloadIdentifier and a wrong PayloadScope', () => {
    const { PayloadIdentifier: _id, ...rest } = profile();
    const errs = validateTopLevel({ ...rest, PayloadScope: 'Device' });
    expect(errs).toEqual([
      { severity: 'error', rule: 'apple-value', path: ['PayloadScope'], message: expect.stringMatching(/must be one of "System", "User"; got "Device"/) },
      { severity: 'error', rule: 'apple-required-key', path: [], message: expect.stringMatching(/missing required key 'PayloadIdentifier'/) },
    ]);
  });

  it('PayloadContent is required unless the profile is encrypted; unknown keys and payload items are checked', () => {
    const { PayloadContent: _c, ...rest } = profile();
    expect(validateTopLevel(rest)[0]?.message).toMatch(/missing required key 'PayloadContent'/);
    expect(validateTopLevel({ ...rest, IsEncrypted: true, EncryptedPayloadContent: new Uint8Array([1]) })).toEqual([]);
    expect(validateTopLevel({ ...profile(), PayloadContent: ['x'] })[0]).toMatchObject({
      path: ['PayloadContent', 0],
      message: expect.stringMatching(/must be a dictionary/),
    });
    expect(validateTopLevel({ ...profile(), PayloadDisplayname: 'x' })[0]?.message).toMatch(/did you mean 'PayloadDisplayName'/);
  });

  it('with platforms, top-level keys get platform warnings too', () => {
    const p = { ...profile(), PayloadRemovalDisallowed: true };
    expect(validateTopLevel(p)).toEqual([]);
    expect(validateTopLevel(p, { platforms: ['iOS', 'visionOS'] })).toEqual([
      { severity: 'warning', rule: 'apple-platform', path: ['PayloadRemovalDisallowed'], message: expect.stringMatching(/not supported on visionOS/) },
      {
        severity: 'warning',
        rule: 'apple-supervision',
        path: ['PayloadRemovalDisallowed'],
        message: expect.stringMatching(/requires a supervised device on iOS/),
      },
    ]);
    expect(validateTopLevel(p, { platforms: ['iOS'], supervised: true })).toEqual([]);
  });
});

describe('schema coverage and speed', () => {
  it('every payload type compiles and validates an empty payload', () => {
    const types = knownPayloadTypes();
    expect(types.length).toBeGreaterThan(100);
    expect(types).toContain('com.apple.wifi.managed');
    for (const t of types) {
      const issues = validatePayload(t, {}, { platforms: ['macOS', 'iOS', 'iPadOS', 'tvOS', 'visionOS', 'watchOS'], mode: 'complete' });
      // Every payload in a .mobileconfig needs at least the common identifying keys.
      expect(issues.map((i) => i.message)).toContainEqual(expect.stringMatching(/missing required key 'PayloadUUID'/));
    }
  });
});
