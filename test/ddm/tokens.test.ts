/**
 * The tokens against examples computed by hand with coreutils, e.g.
 *   printf '%s' '["com.apple.configuration.passcode.settings","com.example.passcode",{"MinimumLength":8,"RequireAlphanumericPasscode":true}]' | sha256sum
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { canonicalJson, declarationsToken, serverToken } from '../../src/ddm/tokens.js';
import { items } from '../../src/ddm/protocol.js';
import { renderDeclaration, setFor } from '../../src/ddm/desired.js';
import type { Fleet } from '../../src/gitops/model.js';
import { loadFleet } from '../../src/gitops/load.js';
import { renderProfile } from '../../src/reconcile/render.js';
import { makeRepo, profile } from '../gitops/repo.js';
import { LEGACY_WIFI_DECL, ddmBlueprint } from './fleet.js';

const passcode = (MinimumLength: number) => ({
  Type: 'com.apple.configuration.passcode.settings',
  Identifier: 'com.example.passcode',
  // Keys in another order than the canonical text: the token must not depend on it.
  Payload: { RequireAlphanumericPasscode: true, MinimumLength },
});

describe('ServerToken', () => {
  it('is the SHA-256 of the canonical [Type, Identifier, Payload]', () => {
    expect(canonicalJson([passcode(8).Type, passcode(8).Identifier, passcode(8).Payload])).toBe(
      '["com.apple.configuration.passcode.settings","com.example.passcode",{"MinimumLength":8,"RequireAlphanumericPasscode":true}]',
    );
    expect(serverToken(passcode(8))).toBe('96e35b3d9d247a9a123932804e5965b61c51a91999106138118b3ddf5fc56b17');
    expect(serverToken(passcode(9))).toBe('4719b3746bde1d51ee74d13da36e2bb60cf359b70fb6a18062140fb6a8f86647');
  });

  it('fits Apple’s 64 octets and ignores key order', () => {
    const t = serverToken(passcode(8));
    expect(Buffer.byteLength(t)).toBe(64);
    expect(serverToken({ ...passcode(8), Payload: { MinimumLength: 8, RequireAlphanumericPasscode: true } })).toBe(t);
  });
});

describe('DeclarationsToken', () => {
  it('is the SHA-256 of the sorted [Identifier, ServerToken] pairs', () => {
    expect(declarationsToken([])).toBe('4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945');
    const both = [
      { Identifier: 'b', ServerToken: 't2' },
      { Identifier: 'a', ServerToken: 't1' },
    ];
    expect(declarationsToken(both)).toBe('1dec44ca551f3743c73ff69a34d5236c5c664ff43ebcae3f39b01d933418aa35');
    // A removal changes it.
    expect(declarationsToken([both[1]!])).toBe('17d4256987fa55122f183d951fac473bc70ff7b017b9f784b9d0d3b5ea833458');
  });

  it('a set built from entries carries it, and the items response lists each class sorted', () => {
    const entry = (id: string, cls: 'configuration' | 'activation', token: string) => ({
      class: cls,
      source: id,
      blueprints: [],
      declaration: { Type: `com.apple.${cls}.x`, Identifier: id, ServerToken: token, Payload: {} },
      templateToken: token,
    });
    const s = setFor({ b: entry('b', 'configuration', 't2'), a: entry('a', 'activation', 't1') }, new Set(), undefined, 'rev', new Date(0));
    expect(s.declarationsToken).toBe('1dec44ca551f3743c73ff69a34d5236c5c664ff43ebcae3f39b01d933418aa35');
    expect(items(s)).toEqual({
      Declarations: {
        Activations: [{ Identifier: 'a', ServerToken: 't1' }],
        Configurations: [{ Identifier: 'b', ServerToken: 't2' }],
        Assets: [],
        Management: [],
      },
      DeclarationsToken: s.declarationsToken,
    });
  });
});

describe('ServerToken of a legacy declaration', () => {
  const LEGACY = LEGACY_WIFI_DECL;
  const fleetWith = async (ssid: string) => {
    const wifi = profile(
      'wifi',
      'com.example.wifi',
      `    - type: com.apple.wifi.managed\n      keys:\n        SSID_STR: ${ssid}\n        EncryptionType: WPA2\n`,
    );
    const r = await loadFleet(makeRepo({ 'p.yaml': wifi, 'd.yaml': LEGACY, 'b.yaml': ddmBlueprint('macs', ['wifi-legacy']) }));
    expect(r.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
    return r.fleet!;
  };
  const render = (fleet: Fleet, legacyUrl: (profile: string, version: string) => string) =>
    renderDeclaration(fleet.declarations.get('wifi-legacy')!, {}, undefined, { profiles: fleet.profiles, legacyUrl });

  it('covers the profile and its version, not the server or enrollment in the URL', async () => {
    const fleet = await fleetWith('corp');
    const version = renderProfile(fleet.profiles.get('wifi')!, {}, undefined).uuid;
    const here = render(fleet, (p, v) => `https://mdm.example.com/mdm/ddm/profile/ENROLLMENT-A/${p}/${v}`);
    const there = render(fleet, (p, v) => `http://10.0.0.2:8443/mdm/ddm/profile/ENROLLMENT-B/${p}/${v}`);
    expect(here.declaration.Payload.ProfileURL).not.toBe(there.declaration.Payload.ProfileURL);
    const text = `["com.apple.configuration.legacy","com.example.wifi-legacy",{"ProfileURL":"orchard-profile:wifi/${version}"}]`;
    expect(here.declaration.ServerToken).toBe(createHash('sha256').update(text).digest('hex'));
    expect(there.declaration.ServerToken).toBe(here.declaration.ServerToken);
    expect(here.templateToken).toBe(here.declaration.ServerToken);
  });

  it('changes when the profile changes', async () => {
    const url = (p: string, v: string) => `https://mdm.example.com/mdm/ddm/profile/E/${p}/${v}`;
    const corp = render(await fleetWith('corp'), url);
    const guest = render(await fleetWith('guest'), url);
    expect(guest.declaration.ServerToken).not.toBe(corp.declaration.ServerToken);
  });
});
