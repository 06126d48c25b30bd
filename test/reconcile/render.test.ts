import { describe, expect, it } from 'vitest';
import { loadFleet } from '../../src/gitops/load.js';
import type { Fleet } from '../../src/gitops/model.js';
import { desiredFor, inRollout, rolloutBucket } from '../../src/reconcile/desired.js';
import { renderProfile } from '../../src/reconcile/render.js';
import { parsePlistDict } from '../../src/protocol/plist.js';
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
const device = (serial: string, extra: Record<string, unknown> = {}) => ({ id: `UDID-${serial}`, facts: { Topic: 't', UDID: `UDID-${serial}`, SerialNumber: serial, Model: 'Mac14,2', OSVersion: '15.1', ...extra }, reported: {} });

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
    expect(payload).toMatchObject({ PayloadType: 'com.apple.wifi.managed', SSID_STR: 'net-S1', Password: 'secret-1', PayloadIdentifier: 'com.example.wifi.1.com.apple.wifi.managed' });
    expect(payload.PayloadUUID).not.toBe(a.uuid);
  });

  it('a missing secret or device fact fails that profile for that device, with the reason', async () => {
    const f = await fleet(base);
    const d = desiredFor(f, device('S1'), () => undefined);
    expect(d.profiles.get('com.example.wifi')!.error).toMatch(/secret "psk" has no value on the server/);
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
