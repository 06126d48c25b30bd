/**
 * The tokens against examples computed by hand with coreutils, e.g.
 *   printf '%s' '["com.apple.configuration.passcode.settings","com.example.passcode",{"MinimumLength":8,"RequireAlphanumericPasscode":true}]' | sha256sum
 */
import { describe, expect, it } from 'vitest';
import { canonicalJson, declarationsToken, serverToken } from '../../src/ddm/tokens.js';
import { items } from '../../src/ddm/protocol.js';
import { setFor } from '../../src/ddm/desired.js';

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
