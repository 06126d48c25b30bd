/**
 * A profile delivered as a com.apple.configuration.legacy declaration, end to end: the server
 * serves it at the declaration's ProfileURL to the enrollment it was rendered for only, and the
 * simulated device fetches it with its identity and installs it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { phaseOf } from '../../src/ddm/status.js';
import { parsePlistDict } from '../../src/protocol/plist.js';
import type { SimulatedDevice } from '../../src/sim/device.js';
import { FleetRepo, waitFor } from '../gitops/helpers.js';
import { profile } from '../gitops/repo.js';
import { http, type TestServer } from '../helpers/server.js';
import { LEGACY_WIFI_DECL, ddmBlueprint, startLegacyServer } from './fleet.js';

let repo: FleetRepo;
let server: TestServer;
let mac: SimulatedDevice;
let other: SimulatedDevice;

const LEGACY = LEGACY_WIFI_DECL;
const wifi = (ssid: string) =>
  profile(
    'wifi',
    'com.example.wifi',
    `    - type: com.apple.wifi.managed\n      keys:\n        SSID_STR: ${ssid}-\${device.SerialNumber}\n        EncryptionType: WPA2\n        Password: \${secret:psk}\n`,
  );
const SECRET = 'apiVersion: orchard/v1\nkind: Secret\nmetadata: {name: psk}\nspec: {}\n';

const legacyEntry = async (d: SimulatedDevice) => (await server.ddmStore.getDeclarationSet(d.udid, 'current'))?.entries['com.example.wifi-legacy'];
const profileUrl = async (d: SimulatedDevice) => String((await legacyEntry(d))!.declaration.Payload.ProfileURL);

/** Connect (and sync) until the device's legacy declaration is verified under the revision `sha`. */
async function converge(d: SimulatedDevice, sha: string): Promise<void> {
  await waitFor(
    'legacy declaration verified',
    async () => {
      await d.connect();
      const set = await server.ddmStore.getDeclarationSet(d.udid, 'current');
      const e = set?.entries['com.example.wifi-legacy'];
      if (!set || set.revision !== sha || !e) return undefined;
      return phaseOf(e, await server.ddmStore.getDdmStatus(d.udid)).phase === 'verified' || undefined;
    },
    30_000,
  );
}

beforeAll(async () => {
  repo = new FleetRepo();
  repo
    .write('profiles/wifi.yaml', wifi('corp'))
    .write('secrets.yaml', SECRET)
    .write('declarations/wifi.yaml', LEGACY)
    .write('blueprints/b.yaml', ddmBlueprint('macs', ['wifi-legacy']));
  repo.commit('legacy wifi');
  server = await startLegacyServer(repo);
  mac = server.device({ serialNumber: 'MACL01', model: 'Mac14,2', osVersion: '15.1' });
  other = server.device({ serialNumber: 'MACL02', model: 'Mac14,2', osVersion: '15.1' });
  for (const d of [mac, other]) await d.enroll();
});
afterAll(async () => {
  await server.stop();
  repo.cleanup();
});

describe('legacy declarations: the profile at ProfileURL', () => {
  it('the device fetches the profile with its identity and installs it, rendered with its values and secrets', async () => {
    await converge(mac, repo.head());
    expect(mac.profiles.has('com.example.wifi')).toBe(true);
    const url = await profileUrl(mac);
    expect(url.startsWith(`${server.url}/mdm/ddm/profile/${mac.udid}/wifi/`)).toBe(true);
    const res = await mac.mdmGet(url);
    expect(res.status).toBe(200);
    const served = parsePlistDict(res.body);
    const payload = (served.PayloadContent as Record<string, unknown>[])[0]!;
    expect(payload.SSID_STR).toBe('corp-MACL01');
    expect(payload.Password).toBe('psk-value-1');
    // The URL names the version: the PayloadUUID of the rendering it serves.
    expect(url.endsWith(`/${String(served.PayloadUUID)}`)).toBe(true);
    expect(mac.profiles.get('com.example.wifi')!.PayloadUUID).toBe(served.PayloadUUID);
  });

  it("another device's certificate is refused, and so is a request without one", async () => {
    const url = await profileUrl(mac);
    const stolen = await other.mdmGet(url);
    expect(stolen.status).toBe(403);
    expect(stolen.body.toString()).not.toContain('psk-value');
    const bare = await http(url);
    expect(bare.status).toBe(403);
    expect(bare.text).not.toContain('psk-value');
    // The other device's own URL has its own serial in it.
    await converge(other, repo.head());
    const own = await other.mdmGet(await profileUrl(other));
    expect((parsePlistDict(own.body).PayloadContent as Record<string, unknown>[])[0]!.SSID_STR).toBe('corp-MACL02');
  });

  it('a URL that is not in the enrollment set is 404: another profile, another version', async () => {
    const url = await profileUrl(mac);
    const version = url.slice(url.lastIndexOf('/') + 1);
    expect((await mac.mdmGet(url.replace(`/${version}`, '/00000000-0000-0000-0000-000000000000'))).status).toBe(404);
    expect((await mac.mdmGet(url.replace('/wifi/', '/nope/'))).status).toBe(404);
    expect((await mac.mdmGet(url.replace(`/${mac.udid}/`, `/${other.udid}/`))).status).toBe(403);
  });

  it('a changed profile changes the ServerToken; the device fetches and installs the new rendering', async () => {
    const before = (await legacyEntry(mac))!.declaration.ServerToken;
    const uuidBefore = mac.profiles.get('com.example.wifi')!.PayloadUUID;
    repo.write('profiles/wifi.yaml', wifi('guest'));
    const sha = repo.commit('wifi guest');
    await server.source!.sync('test');
    await converge(mac, sha);
    expect((await legacyEntry(mac))!.declaration.ServerToken).not.toBe(before);
    expect(mac.profiles.get('com.example.wifi')!.PayloadUUID).not.toBe(uuidBefore);
    const served = parsePlistDict((await mac.mdmGet(await profileUrl(mac))).body);
    expect((served.PayloadContent as Record<string, unknown>[])[0]!.SSID_STR).toBe('guest-MACL01');
  });

  it('removing the declaration removes the profile from the device', async () => {
    repo.write('blueprints/b.yaml', ddmBlueprint('macs', [])).remove('declarations/wifi.yaml');
    const sha = repo.commit('no legacy');
    await server.source!.sync('test');
    await waitFor(
      'profile removed',
      async () => {
        await mac.connect();
        const set = await server.ddmStore.getDeclarationSet(mac.udid, 'current');
        return (set?.revision === sha && !mac.profiles.has('com.example.wifi')) || undefined;
      },
      30_000,
    );
    expect(mac.ddm.held().has('com.example.wifi-legacy')).toBe(false);
  });
});
