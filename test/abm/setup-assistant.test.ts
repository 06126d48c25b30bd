/**
 * An ABM device enrolling from Setup Assistant, bound to its ABM record: the simulator asks the
 * stand-in for its serial's cloud configuration, POSTs its device information to the profile's
 * URL and gets a profile whose challenge was created for its serial and UDID, so its certificate
 * proves the serial (facts proven, the ABM record bound) and cannot speak for another ABM serial
 * or device later. A serial ABM did not assign to this server is refused with a 403 saying why.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DepStandin } from '../../src/sim/dep.js';
import { SimulatedDevice } from '../../src/sim/device.js';
import { enrollFromProfile } from '../../src/sim/scep-enroll.js';
import { enrollFromSetupAssistant, fetchCloudConfiguration } from '../../src/sim/setup-assistant.js';
import { FleetRepo } from '../gitops/helpers.js';
import { abmServerConfig } from '../helpers/abm.js';
import { freePort, startTestServer, type TestServer } from '../helpers/server.js';
import { TOPIC } from '../enroll/helpers.js';

const creds = { consumerKey: 'CK_sa', consumerSecret: 'CS_sa_secret', accessToken: 'AT_sa', accessSecret: 'AS_sa_secret' };
const STATIC = 'the-shared-static-challenge';

const enrollmentProfile = `apiVersion: orchard/v1
kind: EnrollmentProfile
metadata:
  name: staff
spec:
  is_supervised: true
  await_device_configured: true
  assign:
    models: [MacBook Air]
`;

let dep: DepStandin;
let repo: FleetRepo;
let server: TestServer;

beforeAll(async () => {
  dep = await new DepStandin({ credentials: creds }).start();
  dep.add({ serial_number: 'ADEAIR00001', model: 'MacBook Air', device_family: 'Mac' });
  dep.add({ serial_number: 'ADEAIR00002', model: 'MacBook Air', device_family: 'Mac' });
  dep.add({ serial_number: 'ADEPRO00003', model: 'MacBook Pro', device_family: 'Mac' });
  repo = new FleetRepo();
  repo.write('abm/staff.yaml', enrollmentProfile).commit('staff enrollment profile');
  // The profile's url is the server's own enrollment endpoint: it must know its URL before it listens.
  const port = await freePort();
  server = await startTestServer(
    { ...abmServerConfig(repo, dep, creds), listen: { host: '127.0.0.1', port }, publicUrl: `http://127.0.0.1:${port}` },
    { enrollment: { topic: TOPIC, staticChallenge: STATIC } },
  );
  await server.source!.sync('test');
  await server.abm.runOnce();
});
afterAll(async () => {
  await server.stop();
  await dep.stop();
  repo.cleanup();
});

describe('an ABM device from Setup Assistant', () => {
  it('gets its cloud configuration from ABM, a profile bound to its serial and UDID, and enrolls awaiting configuration with its serial proven', async () => {
    const config = await fetchCloudConfiguration(dep.url, 'ADEAIR00001');
    expect(config).toMatchObject({ ConfigurationURL: `${server.url}/mdm/enroll`, AwaitDeviceConfigured: true, IsSupervised: true });

    const { device, enrollment } = await enrollFromSetupAssistant({ activationUrl: dep.url, serial: 'ADEAIR00001', udid: 'ADE-UDID-00001' });
    expect(device.awaitingConfiguration).toBe(true);
    // Not the shared challenge: one created for this device.
    expect(enrollment.profile.scep.Challenge).not.toBe(STATIC);
    expect(server.logs.some((l) => l.outcome === 'profile (Setup Assistant, ABM serial ADEAIR00001, challenge bound to it)')).toBe(true);

    const rec = await server.store.getDevice('ADE-UDID-00001');
    expect(rec?.identity.issuedFor).toEqual({ serial: 'ADEAIR00001', udid: 'ADE-UDID-00001' });
    expect(rec?.facts.provenSerialNumber).toBe('ADEAIR00001');
    expect(rec?.facts.abm).toMatchObject({ token: 'acme', model: 'MacBook Air', deviceFamily: 'Mac' });
    expect(await server.store.getEnrollment('ADE-UDID-00001')).toMatchObject({ active: true, awaitingConfiguration: true });
  });

  it('its certificate cannot authenticate as another ABM serial, nor as another device', async () => {
    const { enrollment } = await enrollFromSetupAssistant({ activationUrl: dep.url, serial: 'ADEAIR00002', udid: 'ADE-UDID-00002' });
    const as = (udid: string, serialNumber: string) => new SimulatedDevice({ ...enrollment.device, udid, serialNumber });

    const otherSerial = await as('ADE-UDID-00002', 'ADEPRO00003').authenticate();
    expect(otherSerial.status).toBe(403);
    expect(otherSerial.body.toString()).toContain('it was issued for another serial number');
    const otherDevice = await as('ADE-UDID-99999', 'ADEAIR00002').authenticate();
    expect(otherDevice.status).toBe(403);
    expect(otherDevice.body.toString()).toContain('it was issued for another device');
    // The device itself still speaks for itself, serial proven.
    expect((await as('ADE-UDID-00002', 'ADEAIR00002').authenticate()).status).toBe(200);
    expect((await server.store.getDevice('ADE-UDID-00002'))?.facts.provenSerialNumber).toBe('ADEAIR00002');
  });

  it('a serial ABM did not assign to this server is refused with a 403 saying so, and the server keeps serving', async () => {
    const stranger = enrollFromProfile({ profileUrl: `${server.url}/mdm/enroll`, setupAssistant: { serial: 'NOTINABM0001', udid: 'STRANGER-1' } });
    await expect(stranger).rejects.toThrow(/HTTP 403: serial number NOTINABM0001 is not assigned to this MDM server in Apple Business Manager/);
    expect(server.logs.some((l) => l.level === 40 && l.serial === 'NOTINABM0001' && /not assigned to this MDM server in ABM/.test(l.msg))).toBe(true);
    expect(await server.store.getDevice('STRANGER-1')).toBeUndefined();

    // A serial ABM lists but gave no enrollment profile: Setup Assistant has no URL to go to.
    await expect(enrollFromSetupAssistant({ activationUrl: dep.url, serial: 'ADEPRO00003', udid: 'ADE-UDID-00003' })).rejects.toThrow(
      /ADEPRO00003 has no enrollment profile assigned in ABM/,
    );
    // Still serving the ABM devices.
    const again = await fetchCloudConfiguration(dep.url, 'ADEAIR00001');
    await expect(
      enrollFromProfile({ profileUrl: again.ConfigurationURL!, setupAssistant: { serial: 'ADEAIR00001', udid: 'ADE-UDID-00001' } }),
    ).resolves.toBeDefined();
  });
});
