/**
 * Key-level diffs (src/plan/diff.ts) on the real-profile corpus (test/fixtures/real-profiles) and
 * on small hand-made profiles: a profile against itself, reordered or rewritten, is no change; a
 * one-key edit names exactly that key with its old and new values; secrets never show.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readProfile } from '../../src/gitops/mobileconfig.js';
import { diffArtifacts, isNoChange, show } from '../../src/plan/diff.js';
import { buildPlist, type PlistDict, type PlistValue } from '../../src/protocol/plist.js';

const CORPUS = join(import.meta.dirname, '../fixtures/real-profiles');
const manifest = JSON.parse(readFileSync(join(CORPUS, 'manifest.json'), 'utf8')) as { file: string }[];

const corpus: { file: string; profile: PlistDict }[] = [];
for (const { file } of manifest) {
  try {
    corpus.push({ file, profile: readProfile(readFileSync(join(CORPUS, file))).profile });
  } catch {
    // A file macOS would refuse to read has no content to diff.
  }
}

const isDict = (v: PlistValue | undefined): v is PlistDict =>
  !!v && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof Date);

/** The same value with every dict's keys in reverse order. */
function reordered(v: PlistValue): PlistValue {
  if (Array.isArray(v)) return v.map(reordered);
  if (!isDict(v)) return v;
  const out: PlistDict = {};
  for (const k of Object.keys(v).reverse()) out[k] = reordered(v[k]!);
  return out;
}

const clone = (d: PlistDict) => readProfile(buildPlist(d)).profile;
const payloads = (d: PlistDict) => (Array.isArray(d.PayloadContent) ? d.PayloadContent.filter(isDict) : []);
const SKIP = new Set(['PayloadUUID', 'PayloadIdentifier', 'PayloadType']);

/** A payload's first key with a short string, number or boolean value that is not a secret. */
function editableKey(d: PlistDict): { payload: number; key: string; value: string | number | boolean } | undefined {
  for (const [i, p] of payloads(d).entries()) {
    for (const [key, value] of Object.entries(p)) {
      if (SKIP.has(key) || /password|secret|token|key$|pin$/i.test(key)) continue;
      if (typeof value === 'number' || typeof value === 'boolean' || (typeof value === 'string' && value.length < 60 && !value.includes('${')))
        return { payload: i, key, value };
    }
  }
  return undefined;
}

describe('the real-profile corpus', () => {
  it('is read (nearly all of it)', () => {
    expect(corpus.length).toBeGreaterThan(manifest.length * 0.8);
  });

  it('every profile against itself, reordered and rewritten, is no change', () => {
    for (const { file, profile } of corpus) {
      expect(isNoChange(diffArtifacts(profile, profile)), file).toBe(true);
      expect(isNoChange(diffArtifacts(profile, reordered(profile) as PlistDict)), `${file} reordered`).toBe(true);
      expect(isNoChange(diffArtifacts(profile, clone(profile))), `${file} rewritten`).toBe(true);
    }
  });

  it('a one-key edit names exactly that key, with its old and new values', () => {
    let edited = 0;
    for (const { file, profile } of corpus) {
      const at = editableKey(profile);
      if (!at) continue;
      const after = clone(profile);
      const next = typeof at.value === 'number' ? at.value + 1 : typeof at.value === 'boolean' ? !at.value : `${at.value}-edited`;
      payloads(after)[at.payload]![at.key] = next;
      const d = diffArtifacts(profile, after);
      expect(d.keys, file).toEqual([]);
      expect(d.payloads, file).toHaveLength(1);
      const p = d.payloads[0]!;
      expect(p.op).toBe('change');
      expect(p.identifier).toBe(payloads(profile)[at.payload]!.PayloadIdentifier);
      expect(p.keys, file).toEqual([{ op: 'change', path: at.key, old: show(at.value, at.key), new: show(next, at.key) }]);
      expect(p.keys[0]!.new).toContain(String(next));
      edited++;
    }
    expect(edited).toBeGreaterThan(corpus.length * 0.8);
  });
});

const base = (keys: PlistDict, more: PlistDict[] = []): PlistDict => ({
  PayloadType: 'Configuration',
  PayloadIdentifier: 'com.example.p',
  PayloadUUID: 'A',
  PayloadDisplayName: 'P',
  PayloadContent: [{ PayloadType: 'com.apple.wifi.managed', PayloadIdentifier: 'com.example.p.wifi', PayloadUUID: 'B', ...keys }, ...more],
});

describe('diffArtifacts', () => {
  it('new PayloadUUIDs alone are no change', () => {
    const a = base({ SSID_STR: 'office' });
    const b: PlistDict = { ...base({ SSID_STR: 'office' }), PayloadUUID: 'C' };
    (b.PayloadContent as PlistDict[])[0]!.PayloadUUID = 'D';
    expect(isNoChange(diffArtifacts(a, b))).toBe(true);
  });

  it('payloads added and removed, matched by identifier, then by a unique type', () => {
    const vpn = { PayloadType: 'com.apple.vpn.managed', PayloadIdentifier: 'com.example.p.vpn', VPNType: 'IKEv2' };
    const a = base({ SSID_STR: 'office' }, [vpn]);
    const font = { PayloadType: 'com.apple.font', PayloadIdentifier: 'com.example.p.font', Name: 'Inter' };
    const b = base({ SSID_STR: 'office' }, [font]);
    // The Wi-Fi payload renamed but still the only one of its type: a change of its identifier.
    (b.PayloadContent as PlistDict[])[0]!.PayloadIdentifier = 'com.example.p.wifi2';
    const d = diffArtifacts(a, b);
    expect(d.payloads).toEqual([
      {
        op: 'change',
        identifier: 'com.example.p.wifi2',
        type: 'com.apple.wifi.managed',
        keys: [{ op: 'change', path: 'PayloadIdentifier', old: '"com.example.p.wifi"', new: '"com.example.p.wifi2"' }],
      },
      { op: 'add', identifier: 'com.example.p.font', type: 'com.apple.font', keys: [{ op: 'add', path: 'Name', new: '"Inter"' }] },
      { op: 'remove', identifier: 'com.example.p.vpn', type: 'com.apple.vpn.managed', keys: [] },
    ]);
  });

  it('nested keys by path; arrays of dicts item by item; top-level keys apart from payloads', () => {
    const a = base({ EAPClientConfiguration: { UserName: 'a', AcceptEAPTypes: [25] }, Rules: [{ Id: 'x' }, { Id: 'y' }] });
    const b = { ...base({ EAPClientConfiguration: { UserName: 'b', AcceptEAPTypes: [25, 13] }, Rules: [{ Id: 'x' }, { Id: 'z' }] }), PayloadDisplayName: 'Q' };
    const d = diffArtifacts(a, b);
    expect(d.keys).toEqual([{ op: 'change', path: 'PayloadDisplayName', old: '"P"', new: '"Q"' }]);
    expect(d.payloads[0]!.keys).toEqual([
      { op: 'change', path: 'EAPClientConfiguration.AcceptEAPTypes', old: '[25]', new: '[25, 13]' },
      { op: 'change', path: 'EAPClientConfiguration.UserName', old: '"a"', new: '"b"' },
      { op: 'change', path: 'Rules[1].Id', old: '"y"', new: '"z"' },
    ]);
  });

  it('secrets are masked: ${secret:...} values and secret keys, also inside dicts', () => {
    const a = base({ Password: 'hunter2-old', SSID_STR: 'net', EAP: { UserPassword: 'pw-old' } });
    const b = base({ Password: '${secret:wifi}', SSID_STR: 'net-${secret:suffix}', EAP: { UserPassword: 'pw-new' } });
    const d = diffArtifacts(a, b);
    const text = JSON.stringify(d);
    for (const secret of ['hunter2', 'pw-old', 'pw-new']) expect(text).not.toContain(secret);
    expect(d.payloads[0]!.keys).toEqual([
      { op: 'change', path: 'EAP.UserPassword', old: '‹masked›', new: '‹masked›' },
      { op: 'change', path: 'Password', old: '‹masked›', new: '‹from secret wifi›' },
      { op: 'change', path: 'SSID_STR', old: '"net"', new: '‹from secret suffix›' },
    ]);
  });

  it('long data and strings are shown as size and sha256, short ones as they are', () => {
    const cert = new Uint8Array(2048).fill(7);
    const d = diffArtifacts(base({ PayloadContent: new Uint8Array([1, 2]), Note: 'x'.repeat(500) }), base({ PayloadContent: cert, Note: 'y' }));
    const [note, data] = d.payloads[0]!.keys;
    expect(data).toMatchObject({ path: 'PayloadContent', old: '<data AQI=>' });
    expect(data!.new).toMatch(/^<data, 2048 bytes, sha256 [0-9a-f]{12}>$/);
    expect(note).toMatchObject({ path: 'Note', new: '"y"' });
    expect(note!.old).toMatch(/^<string, 500 characters, sha256 [0-9a-f]{12}>$/);
  });

  it('an install lists every key; a removal names the payloads', () => {
    const p = base({ SSID_STR: 'office', AutoJoin: true });
    expect(diffArtifacts(undefined, p).payloads).toEqual([
      {
        op: 'add',
        identifier: 'com.example.p.wifi',
        type: 'com.apple.wifi.managed',
        keys: [
          { op: 'add', path: 'AutoJoin', new: 'true' },
          { op: 'add', path: 'SSID_STR', new: '"office"' },
        ],
      },
    ]);
    expect(diffArtifacts(p, undefined).payloads).toEqual([{ op: 'remove', identifier: 'com.example.p.wifi', type: 'com.apple.wifi.managed', keys: [] }]);
  });

  it('a declaration-like document (no PayloadContent) is diffed by its keys', () => {
    const a = { Type: 'com.apple.configuration.passcode.settings', Identifier: 'd1', ServerToken: '1', Payload: { MinimumLength: 6 } };
    const b = { ...a, ServerToken: '2', Payload: { MinimumLength: 8 } };
    expect(diffArtifacts(a, b)).toEqual({ keys: [{ op: 'change', path: 'Payload.MinimumLength', old: '6', new: '8' }], payloads: [] });
  });
});
