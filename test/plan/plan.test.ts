/**
 * Plans with key-level diffs from real repositories (loaded by the real loader) and inventories in
 * the shape of `GET /api/v1/devices`: the devices that see the same change share one entry, a
 * per-device change is one entry per device, and the markdown of a 100,000-device plan fits a
 * GitHub comment.
 */
import { rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { loadFleet } from '../../src/gitops/load.js';
import type { Fleet } from '../../src/gitops/model.js';
import { entries, markdownPlan, textPlan } from '../../src/plan/format.js';
import { desiredFor } from '../../src/reconcile/desired.js';
import { planAgainstInventory, planBetween, type InventoryDevice } from '../../src/reconcile/plan.js';
import type { ArtifactStatus } from '../../src/reconcile/types.js';
import { blueprint, makeRepo, profile } from '../gitops/repo.js';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

async function fleet(files: Record<string, string>): Promise<Fleet> {
  const dir = makeRepo(files);
  dirs.push(dir);
  const r = await loadFleet(dir);
  if (!r.fleet) throw new Error(JSON.stringify(r.diagnostics.filter((d) => d.severity === 'error')));
  return r.fleet;
}

const wifi = (ssid: string, extra = '') =>
  profile('wifi', 'com.example.wifi', `    - type: com.apple.wifi.managed\n      keys:\n        SSID_STR: ${ssid}\n        AutoJoin: true\n${extra}`);
const macs = blueprint('macs', '    platforms: [macOS]', ['wifi']);

function devices(n: number, prefix = 'MAC'): InventoryDevice[] {
  return Array.from({ length: n }, (_, i) => {
    const serial = `${prefix}${String(i).padStart(6, '0')}`;
    return { id: `UDID-${serial}`, facts: { UDID: `UDID-${serial}`, SerialNumber: serial, Model: 'Mac14,2', Topic: 'com.apple.mgmt.test' }, reported: {} };
  });
}

describe('plan diffs', () => {
  it('a one-key change of a per-device profile: one entry for every device, naming that key with old and new values', async () => {
    const before = await fleet({
      'profiles/wifi.yaml': wifi('office', '        DisplayedOperatorName: ${device.SerialNumber}\n'),
      'blueprints/macs.yaml': macs,
    });
    const after = await fleet({
      'profiles/wifi.yaml': wifi('office-5g', '        DisplayedOperatorName: ${device.SerialNumber}\n'),
      'blueprints/macs.yaml': macs,
    });
    const iphone = {
      id: 'UDID-PHONE',
      facts: { UDID: 'UDID-PHONE', SerialNumber: 'PHONE', Model: 'iPhone15,2', ProductName: 'iPhone15,2', Topic: 't' },
      reported: {},
    };
    const plan = planBetween(before, after, [...devices(3), iphone]);
    expect(plan.changes.map((c) => c.serial)).toEqual(['MAC000000', 'MAC000001', 'MAC000002']);
    const es = entries(plan);
    expect(es).toHaveLength(1);
    expect(es[0]!.devices).toEqual(['MAC000000', 'MAC000001', 'MAC000002']);
    expect(es[0]!.diff!.payloads).toEqual([
      {
        op: 'change',
        identifier: 'com.example.wifi.1.com.apple.wifi.managed',
        type: 'com.apple.wifi.managed',
        keys: [{ op: 'change', path: 'SSID_STR', old: '"office"', new: '"office-5g"' }],
      },
    ]);
    const text = textPlan(plan);
    expect(text).toMatch(/update +3 +MAC000000, MAC000001, MAC000002/);
    expect(text).toContain(
      '\n        payload com.example.wifi.1.com.apple.wifi.managed (com.apple.wifi.managed)\n      -     SSID_STR: "office"\n      +     SSID_STR: "office-5g"\n',
    );
    const md = markdownPlan(plan, { base: 'main' });
    expect(md).toContain('<details><summary><b>update</b> <code>wifi</code> (com.example.wifi) on 3 devices: MAC000000, MAC000001, MAC000002</summary>');
    expect(md).toMatch(
      /```diff\n {2}payload com\.example\.wifi\.1\.com\.apple\.wifi\.managed \(com\.apple\.wifi\.managed\)\n- {5}SSID_STR: "office"\n\+ {5}SSID_STR: "office-5g"\n```/,
    );
  });

  it('a change of the per-device value itself: one entry per device, each with its own values', async () => {
    const before = await fleet({ 'profiles/wifi.yaml': wifi('net-${device.SerialNumber}'), 'blueprints/macs.yaml': macs });
    const after = await fleet({ 'profiles/wifi.yaml': wifi('corp-${device.SerialNumber}'), 'blueprints/macs.yaml': macs });
    const es = entries(planBetween(before, after, devices(2)));
    expect(es.map((e) => [e.devices, e.diff!.payloads[0]!.keys])).toEqual([
      [['MAC000000'], [{ op: 'change', path: 'SSID_STR', old: '"net-MAC000000"', new: '"corp-MAC000000"' }]],
      [['MAC000001'], [{ op: 'change', path: 'SSID_STR', old: '"net-MAC000001"', new: '"corp-MAC000001"' }]],
    ]);
  });

  it("reordering keys and payloads' keys in the YAML is no change; secrets stay masked", async () => {
    const a = await fleet({
      'profiles/wifi.yaml': wifi('office', '        Password: ${secret:wifi}\n'),
      'blueprints/macs.yaml': macs,
      'secrets/wifi.yaml': secretDoc,
    });
    const reordered = profile(
      'wifi',
      'com.example.wifi',
      '    - type: com.apple.wifi.managed\n      keys:\n        Password: ${secret:wifi}\n        AutoJoin: true\n        SSID_STR: office\n',
    );
    const b = await fleet({ 'profiles/wifi.yaml': reordered, 'blueprints/macs.yaml': macs, 'secrets/wifi.yaml': secretDoc });
    expect(planBetween(a, b, devices(2)).changes).toEqual([]);
    const install = planBetween(await fleet({ 'blueprints/macs.yaml': blueprint('macs', '    platforms: [macOS]', []) }), b, devices(1));
    expect(textPlan(install)).toContain(
      '  install      1  MAC000000\n      + PayloadDisplayName: "wifi"\n      + PayloadScope: "System"\n      + payload com.example.wifi.1.com.apple.wifi.managed (com.apple.wifi.managed) added\n      +     AutoJoin: true\n      +     Password: ‹from secret wifi›\n      +     SSID_STR: "office"\n',
    );
  });

  it('against the inventory: an update is diffed against the revision the device has, when it is known', async () => {
    const before = await fleet({ 'profiles/wifi.yaml': wifi('office'), 'blueprints/macs.yaml': macs });
    const after = await fleet({ 'profiles/wifi.yaml': wifi('lab'), 'blueprints/macs.yaml': macs });
    const inv = devices(2).map((d) => ({ ...d, profiles: [artifact('rev-a', before)] }));
    const known = planAgainstInventory(after, inv, (rev) => (rev === 'rev-a' ? before : undefined));
    expect(entries(known)[0]!.diff!.payloads[0]!.keys).toEqual([{ op: 'change', path: 'SSID_STR', old: '"office"', new: '"lab"' }]);
    const unknown = planAgainstInventory(after, inv);
    expect(unknown.changes.map((c) => c.kind)).toEqual(['update', 'update']);
    expect(textPlan(unknown)).toContain('plan with --base to see what changes');
  });

  it('the markdown of a 100,000-device plan with a different change on every device fits a GitHub comment', async () => {
    const before = await fleet({ 'profiles/wifi.yaml': wifi('net-${device.SerialNumber}'), 'blueprints/macs.yaml': macs });
    const after = await fleet({ 'profiles/wifi.yaml': wifi('corp-${device.SerialNumber}-${device.UDID}'), 'blueprints/macs.yaml': macs });
    const plan = planBetween(before, after, devices(100_000));
    expect(plan.changes).toHaveLength(100_000);
    expect(plan.diffs).toHaveLength(100_000);
    const md = markdownPlan(plan);
    expect(md.length).toBeLessThan(65_536);
    expect(md).toContain('**100000 updates on 100000 of 100000 devices.**');
    expect(md).toContain('| … | 99970 more entries | | | |');
    expect(md).toMatch(/_99970 more entries not shown here: `orchard plan --format json` has them all\._/);
    expect(md.match(/<details>/g)).toHaveLength(30);
  }, 300_000);
});

const secretDoc = 'apiVersion: orchard/v1\nkind: Secret\nmetadata: {name: wifi}\nspec: {}\n';

/** What the server records for a device that has the profile as `f` renders it. */
function artifact(revision: string, f: Fleet): ArtifactStatus {
  const want = desiredFor(f, devices(1)[0]!, undefined).profiles.get('com.example.wifi')!;
  return {
    kind: 'profile',
    identifier: want.identifier,
    profile: want.profile,
    blueprints: want.blueprints,
    uuid: want.rendered!.uuid,
    templateHash: want.rendered!.templateHash,
    phase: 'verified',
    revision,
    attempts: 1,
    prune: true,
    updatedAt: new Date(0).toISOString(),
    drift: 0,
  };
}
