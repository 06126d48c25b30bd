import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bigProfileYaml } from '../../bench/reconcile-latency.js';
import { loadFleet } from '../../src/gitops/load.js';
import type { Fleet } from '../../src/gitops/model.js';
import { buildCommand } from '../../src/protocol/commands.js';
import { desiredFor, desiredForAsync, inRollout, rolloutBucket } from '../../src/reconcile/desired.js';
import { installCommand } from '../../src/reconcile/reconciler.js';
import { renderProfile, renderSteps } from '../../src/reconcile/render.js';
import { parsePlistDict, type PlistDict } from '../../src/protocol/plist.js';
import { makeRepo, blueprint, profile } from '../gitops/repo.js';

const wifi = `    - type: com.apple.wifi.managed\n      keys:\n        SSID_STR: net-\${device.SerialNumber}\n        Password: \${secret:psk}\n`;
async function fleet(files: Record<string, string>): Promise<Fleet> {
  const r = await loadFleet(makeRepo(files));
  if (!r.fleet) throw new Error(JSON.stringify(r.diagnostics));
  return r.fleet;
}
const base = {
  'p.yaml': profile('wifi', 'com.example.wifi', wifi),
  's.yaml': 'apiVersion: orchard/v1\nkind: Secret\nmetadata: {name: psk}\nspec: {}\n',
  'b.yaml': blueprint('macs', '    platforms: [macOS]', ['wifi']),
};
const device = (serial: string, extra: Record<string, unknown> = {}) => ({
  id: `UDID-${serial}`,
  facts: { Topic: 't', UDID: `UDID-${serial}`, SerialNumber: serial, Model: 'Mac14,2', OSVersion: '15.1', ...extra },
  reported: {},
});

describe('rendering', () => {
  it('same content gives the same UUIDs on any run; a change of content or secret gives new ones', async () => {
    const f = await fleet(base);
    const p = f.profiles.get('wifi')!;
    const a = renderProfile(p, { SerialNumber: 'S1' }, () => 'secret-1');
    const again = renderProfile((await fleet(base)).profiles.get('wifi')!, { SerialNumber: 'S1' }, () => 'secret-1');
    expect(again.uuid).toBe(a.uuid);
    expect(again.bytes().equals(a.bytes())).toBe(true);
    expect(a.uuid).toMatch(/^[0-9A-F]{8}-[0-9A-F]{4}-5[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$/);
    const otherDevice = renderProfile(p, { SerialNumber: 'S2' }, () => 'secret-1');
    expect(otherDevice.uuid).not.toBe(a.uuid);
    const rotated = renderProfile(p, { SerialNumber: 'S1' }, () => 'secret-2');
    expect(rotated.uuid).not.toBe(a.uuid);
    expect(rotated.templateHash).toBe(a.templateHash); // plan cannot see secrets, and need not
    const dict = parsePlistDict(a.bytes());
    expect(dict).toMatchObject({ PayloadType: 'Configuration', PayloadIdentifier: 'com.example.wifi', PayloadUUID: a.uuid, PayloadScope: 'System' });
    const payload = (dict.PayloadContent as Record<string, unknown>[])[0]!;
    expect(payload).toMatchObject({
      PayloadType: 'com.apple.wifi.managed',
      SSID_STR: 'net-S1',
      Password: 'secret-1',
      PayloadIdentifier: 'com.example.wifi.1.com.apple.wifi.managed',
    });
    expect(payload.PayloadUUID).not.toBe(a.uuid);
  });

  it('a missing secret or device fact fails that profile for that device, with the reason', async () => {
    const f = await fleet(base);
    const d = desiredFor(f, device('S1'), () => undefined);
    expect(d.profiles.get('com.example.wifi')!.error).toMatch(/secret "psk" has no value on the server/);
  });
});

// A profile with variables in several places (one in the middle of a big payload), a secret,
// a `$${` literal, and text that needs escaping.
const mixed = {
  'p.yaml': profile(
    'wifi',
    'com.example.wifi',
    `    - type: com.apple.wifi.managed
      keys:
        SSID_STR: "net-\${device.SerialNumber}-\${device.DeviceName}"
        Password: \${secret:psk}
        AutoJoin: true
    - type: com.apple.notificationsettings
      keys:
        NotificationSettings:
          - {BundleIdentifier: "a.\${device.SerialNumber}", AlertType: 1}
          - {BundleIdentifier: "lit-$\${x}", AlertType: 2}
          - {BundleIdentifier: "\${device.DeviceName}", AlertType: 0}
`,
    '  description: "d <&> é"\n  organization: Org\n',
  ),
  'q.yaml': profile('plain', 'com.example.plain', '    - type: com.apple.security.firewall\n      keys: {EnableFirewall: true, EnableStealthMode: false}\n'),
  's.yaml': 'apiVersion: orchard/v1\nkind: Secret\nmetadata: {name: psk}\nspec: {}\n',
  'b.yaml': blueprint('macs', '    platforms: [macOS]', ['wifi', 'plain']),
};
const sha16 = (b: Buffer) => createHash('sha256').update(b).digest('hex').slice(0, 16);

describe('rendering from the pre-split template', () => {
  it('gives the very UUIDs and bytes that rendering gave before templates (no reinstall after an upgrade)', async () => {
    // Figures from the tree-walking renderer this replaced, for the same documents and values.
    const f = await fleet(mixed);
    const wifi = f.profiles.get('wifi')!;
    const a = renderProfile(wifi, { SerialNumber: 'S1', DeviceName: 'Bob' }, undefined);
    expect([a.uuid, sha16(a.bytes())]).toEqual(['0092EF28-2C47-58CD-8D33-7C2E3B4A956D', '9280d8173a39983e']);
    const b = renderProfile(wifi, { SerialNumber: 'S<2>&', DeviceName: '' }, () => 'sek<r>&t');
    expect([b.uuid, sha16(b.bytes())]).toEqual(['449CC0B0-11DB-5077-B5E8-ECF72AC7E907', 'df959a9b910edf05']);
    const c = renderProfile(wifi, { SerialNumber: 'S3\r\n"\\\'', DeviceName: 'Zoë 🍎 \u2028' }, () => '');
    expect([c.uuid, sha16(c.bytes())]).toEqual(['AA3ED8E1-202C-5A1B-A7F1-767F506FEE32', 'b860de5998e07e59']);
    const plain = renderProfile(f.profiles.get('plain')!, { SerialNumber: 'S1' }, () => 'x');
    expect([plain.uuid, sha16(plain.bytes())]).toEqual(['D0889B9B-D594-56D8-9162-C136D5988554', '270cd3f874dc1ca3']);
  });

  it('any device values: substituted where they are used, escaped, and the InstallProfile is what the plist builder writes', async () => {
    const f = await fleet({ ...mixed, 'big.yaml': bigProfileYaml(40) });
    const big = f.profiles.get('big')!;
    const wifi = f.profiles.get('wifi')!;
    // XML-legal text (the plist builder refuses the rest); lengths vary, so the base64 phases do.
    const text = fc.string({ unit: 'grapheme', maxLength: 12 }).filter((s) => !/[\0-\x08\x0B\f\x0E-\x1F\uFFFE\uFFFF]/.test(s));
    fc.assert(
      fc.property(text, text, (serial, name) => {
        const r = renderProfile(big, { SerialNumber: serial }, undefined);
        const dict = parsePlistDict(r.bytes());
        const [w, n] = dict.PayloadContent as PlistDict[];
        expect(w!.SSID_STR).toBe(`lab-${serial}`);
        expect((n!.NotificationSettings as PlistDict[])[20]!.BundleIdentifier).toBe(`com.example.device-${serial}`);
        expect(dict.PayloadUUID).toBe(r.uuid);
        expect(Buffer.concat(r.base64()).toString('latin1')).toBe(r.bytes().toString('base64'));
        expect(
          installCommand(r, 'CMD-1').payload.equals(buildCommand({ RequestType: 'InstallProfile', Payload: new Uint8Array(r.bytes()) }, 'CMD-1').payload),
        ).toBe(true);
        const m = parsePlistDict(renderProfile(wifi, { SerialNumber: serial, DeviceName: name }, () => 'k').bytes());
        const [mw, mn] = m.PayloadContent as PlistDict[];
        expect(mw!.SSID_STR).toBe(`net-${serial}-${name}`);
        expect((mn!.NotificationSettings as PlistDict[]).map((x) => x.BundleIdentifier)).toEqual([`a.${serial}`, 'lit-${x}', name]);
      }),
      { numRuns: 60 },
    );
  });

  it('renders in slices: a 2 MB profile yields to the caller several times; sliced and straight agree', async () => {
    const f = await fleet({ 'big.yaml': bigProfileYaml(4000), 'b.yaml': blueprint('macs', '    platforms: [macOS]', ['big']) });
    const big = f.profiles.get('big')!;
    const slices = (serial: string) => {
      const steps = renderSteps(big, { SerialNumber: serial }, undefined);
      let yields = 0;
      let r = steps.next();
      for (; !r.done; r = steps.next()) yields++;
      return { yields, rendered: r.value };
    };
    const first = slices('S1'); // compiles the template, then hashes
    expect(first.rendered.size).toBeGreaterThan(2_000_000);
    expect(first.yields).toBeGreaterThanOrEqual(4);
    const second = slices('S2'); // hashes only
    expect(second.yields).toBeGreaterThanOrEqual(2);
    let paced = 0;
    const sliced = await desiredForAsync(f, device('S3'), undefined, undefined, () => void paced++);
    expect(paced).toBe(second.yields);
    expect(sliced.profiles.get('com.example.big')!.rendered!.uuid).toBe(renderProfile(big, { SerialNumber: 'S3' }, undefined).uuid);
    expect(desiredFor(f, device('S1'), undefined).profiles.get('com.example.big')!.rendered!.uuid).toBe(first.rendered.uuid);
  });
});

describe('desired state', () => {
  it('selects by platform, tags and OS version; suspended blueprints freeze their profiles', async () => {
    const f = await fleet({
      ...base,
      'b.yaml': `${blueprint('macs', '    platforms: [macOS]\n    osVersion: ">=15"', ['wifi'])}---\n${blueprint('lab', '    tags: [lab]', ['wifi']).replace('  profiles:', '  suspend: true\n  profiles:')}`,
      'g.yaml': 'apiVersion: orchard/v1\nkind: DeviceGroup\nmetadata: {name: g}\nspec:\n  devices: [{serial: LAB1, tags: [lab]}]\n',
    });
    expect([...desiredFor(f, device('S1'), () => 'x').profiles.keys()]).toEqual(['com.example.wifi']);
    expect(desiredFor(f, device('S1', { OSVersion: '14.6' }), () => 'x').profiles.size).toBe(0);
    const lab = desiredFor(f, device('LAB1', { OSVersion: '14.0' }), () => 'x');
    expect(lab.profiles.size).toBe(0);
    expect([...lab.frozen]).toEqual(['com.example.wifi']);
    // DeviceInformation's newer OSVersion wins over the Authenticate fact.
    const updated = { ...device('S2', { OSVersion: '14.6' }), reported: { DeviceInformation: { at: '', commandUUID: '', value: { OSVersion: '15.2' } } } };
    expect(desiredFor(f, updated, () => 'x').profiles.size).toBe(1);
  });

  it('rollout: about the given share of devices, the same ones every time, growing with the percent', () => {
    const serials = Array.from({ length: 2000 }, (_, i) => `C02R${String(i).padStart(6, '0')}`);
    const at = (percent: number) => new Set(serials.filter((s) => inRollout({ name: 'bp', rollout: { percent } } as never, s)));
    const twenty = at(20);
    expect(twenty.size / serials.length).toBeGreaterThan(0.17);
    expect(twenty.size / serials.length).toBeLessThan(0.23);
    expect(at(20)).toEqual(twenty);
    const fifty = at(50);
    for (const s of twenty) expect(fifty.has(s)).toBe(true);
    expect(at(0).size).toBe(0);
    expect(at(100).size).toBe(serials.length);
    // Another blueprint rolls out to a different subset.
    expect(serials.filter((s) => rolloutBucket(s, 'other') < 20)).not.toEqual([...twenty]);
  });
});
