/**
 * Real device captures (test/fixtures/vectors/nanomdm, MIT, micromdm/nanomdm) drive the lifecycle:
 * the exact captured bytes are sent, signed by a device identity from the test CA.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDeviceIdentity } from '../../src/identity/ca.js';
import { signDetached } from '../../src/identity/cms-sign.js';
import { http, startTestServer, type TestServer } from '../helpers/server.js';

const VECTORS = join(import.meta.dirname, '../fixtures/vectors/nanomdm');
const capture = (name: string) => readFileSync(join(VECTORS, name));

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server.stop();
});

function sender(cn: string) {
  const identity = createDeviceIdentity(server.ca, cn);
  return (path: string, body: Buffer, type = 'application/x-apple-aspen-mdm-checkin') =>
    http(`${server.url}${path}`, { method: 'PUT', body, headers: { 'content-type': type, 'mdm-signature': signDetached(body, identity) } });
}

describe('nanomdm device captures', () => {
  it('iPad: Authenticate, TokenUpdate with UnlockToken -> active enrollment with push info', async () => {
    const send = sender('ipad');
    expect((await send('/mdm/checkin', capture('Authenticate.1.plist'))).status).toBe(200);
    const udid = '663b07bb783e9ade1dae4fbb92ea12afc0ce5b69';
    const before = await server.store.getEnrollment(udid);
    expect(before?.active ?? false).toBe(false);
    expect((await send('/mdm/checkin', capture('TokenUpdate.1.plist'))).status).toBe(200);
    const enr = await server.store.getEnrollment(udid);
    expect(enr?.active).toBe(true);
    expect(enr?.push?.token).toBe('47e8eec062c2f729ec1703c1b3e18f1971d85f00be76445d34080baa701b5f51');
    expect(enr?.push?.pushMagic).toBe('CEFDF0BD-E342-4A27-8742-E930EA116B0A');
    expect(enr?.unlockToken?.length).toBe(1288);
    const dev = await server.store.getDevice(udid);
    expect(dev?.facts).toMatchObject({ ProductName: 'iPad2,5', SerialNumber: 'F5JM992LF193', OSVersion: '9.3.5' });
    // The UnlockToken is a credential: it never appears in logs or the admin API.
    const api = await http(`${server.url}/api/v1/devices/${udid}`, { headers: { authorization: `Bearer ${server.readToken}` } });
    const unlockB64 = enr!.unlockToken!.toString('base64').slice(0, 40);
    expect(api.text).not.toContain(unlockB64);
    expect(JSON.stringify(server.logs)).not.toContain(unlockB64);
  });

  it('iMac: Authenticate, TokenUpdate, then the captured DeviceInformation result updates reported state', async () => {
    const send = sender('imac');
    const udid = '66ADE930-5FDF-5EC4-8429-15640684C489';
    expect((await send('/mdm/checkin', capture('Authenticate.2.plist'))).status).toBe(200);
    const dev = await server.store.getDevice(udid);
    expect(dev?.facts).toMatchObject({ SerialNumber: 'C02MT66KFLHH', Model: 'iMac14,2', DeviceName: 'Fruit', OSVersion: '10.12.6' });
    expect((await send('/mdm/checkin', capture('TokenUpdate.2.plist'))).status).toBe(200);
    const queued = await http(`${server.url}/api/v1/commands`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        targets: [udid],
        commandUUID: '76eda240-5488-4989-8339-f2ae160113c4',
        command: { RequestType: 'DeviceInformation', Queries: ['UDID'] },
      }),
    });
    expect(queued.status).toBe(201);
    const res = await send('/mdm/connect', capture('DeviceInformation.1.plist'), 'application/x-apple-aspen-mdm');
    expect(res.status).toBe(200);
    expect(res.text).toBe('');
    const after = await server.store.getDevice(udid);
    expect(after?.reported.DeviceInformation?.commandUUID).toBe('76eda240-5488-4989-8339-f2ae160113c4');
    expect(after?.reported.DeviceInformation?.value).toMatchObject({ UDID: udid });
    const cmds = (await server.store.listCommands(udid)).items;
    expect(cmds[0]?.status).toBe('Acknowledged');
    expect(cmds[0]?.result?.raw.equals(capture('DeviceInformation.1.plist'))).toBe(true);
  });
});
