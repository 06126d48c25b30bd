/**
 * Setup Assistant's way in (Automated Device Enrollment): the device POSTs its information, a
 * signed plist with its serial and UDID, to the ABM profile's url, gets the enrollment profile,
 * enrolls through SCEP and says AwaitingConfiguration in its TokenUpdate. Bad device information
 * is a clear 400 and the server keeps serving.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildPlist } from '../../src/protocol/plist.js';
import { SimulatedDevice } from '../../src/sim/device.js';
import { enrollFromProfile } from '../../src/sim/scep-enroll.js';
import { http } from '../helpers/server.js';
import { startEnrollServer, type EnrollServer } from './helpers.js';

let server: EnrollServer;

beforeAll(async () => {
  server = await startEnrollServer({ staticChallenge: 'setup-assistant-challenge' });
});
afterAll(async () => {
  await server.stop();
});

describe('enrolling from Setup Assistant', () => {
  it('POSTs the signed device information, enrolls, and TokenUpdate says AwaitingConfiguration', async () => {
    const setupAssistant = { serial: 'ADE000001', udid: 'ADE-DEVICE-0001' };
    const enrollment = await enrollFromProfile({ profileUrl: `${server.url}/mdm/enroll`, trustedCa: server.caPem, setupAssistant });
    expect(server.logs.some((l) => l.path === '/mdm/enroll' && l.outcome === 'profile (Setup Assistant, serial ADE000001)')).toBe(true);
    const device = new SimulatedDevice({ ...enrollment.device, udid: setupAssistant.udid, serialNumber: setupAssistant.serial, awaitingConfiguration: true });
    await device.enroll();
    const e = await server.store.getEnrollment(device.udid);
    expect(e).toMatchObject({ active: true, awaitingConfiguration: true });
  });

  it('device information that is not a plist, or has no serial, is a 400 saying so', async () => {
    const post = (body: Buffer) => http(`${server.url}/mdm/enroll`, { method: 'POST', body, headers: { 'content-type': 'application/pkcs7-signature' } });
    const garbage = await post(Buffer.from('not a plist'));
    expect(garbage.status).toBe(400);
    expect(garbage.text).toContain('device information is not a plist');
    const noSerial = await post(buildPlist({ UDID: 'X' }));
    expect(noSerial.status).toBe(400);
    expect(noSerial.text).toContain('device information without SERIAL');
    const badCms = await post(Buffer.from([0x30, 0x03, 0x02, 0x01]));
    expect(badCms.status).toBe(400);
    // Still serving.
    expect((await http(`${server.url}/mdm/enroll`)).status).toBe(200);
  });
});
