import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDeviceIdentity } from '../../src/identity/ca.js';
import { buildPlist } from '../../src/protocol/plist.js';
import { SimulatedDevice } from '../../src/sim/device.js';
import { http, startTestServer, type TestServer } from '../helpers/server.js';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server.stop();
});

async function enqueue(targets: string[], command: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  const res = await http(`${server.url}/api/v1/commands`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ targets, command, ...extra }),
  });
  return res;
}

describe('command queue over HTTP', () => {
  it('follows the NanoMDM sequence: Idle->cmd1, Ack->cmd2, NotNow->empty, Idle->cmd2, Ack->empty', async () => {
    const dev = server.device();
    await dev.enroll();
    const r1 = await enqueue([dev.udid], { RequestType: 'ProfileList' });
    const r2 = await enqueue([dev.udid], { RequestType: 'SecurityInfo' });
    expect(r1.status).toBe(201);
    const cmd1 = (r1.json() as { commandUUID: string }).commandUUID;
    const cmd2 = (r2.json() as { commandUUID: string }).commandUUID;

    const idle = await dev.report({ Status: 'Idle', UDID: dev.udid });
    expect(idle.status).toBe(200);
    expect(idle.body.toString()).toContain(cmd1);

    const ack1 = await dev.report({ Status: 'Acknowledged', UDID: dev.udid, CommandUUID: cmd1, ProfileList: [] });
    expect(ack1.body.toString()).toContain(cmd2);

    const notNow = await dev.report({ Status: 'NotNow', UDID: dev.udid, CommandUUID: cmd2 });
    expect(notNow.status).toBe(200);
    expect(notNow.body.length).toBe(0);

    const idle2 = await dev.report({ Status: 'Idle', UDID: dev.udid });
    expect(idle2.body.toString()).toContain(cmd2);

    const ack2 = await dev.report({ Status: 'Acknowledged', UDID: dev.udid, CommandUUID: cmd2, SecurityInfo: { FDE_Enabled: true } });
    expect(ack2.status).toBe(200);
    expect(ack2.body.length).toBe(0);

    const cmds = await http(`${server.url}/api/v1/devices/${dev.udid}/commands`, { headers: { authorization: `Bearer ${server.readToken}` } });
    const list = (cmds.json() as { commands: { commandUUID: string; status: string; notNowCount: number }[] }).commands;
    expect(list.map((c) => [c.commandUUID, c.status])).toEqual([
      [cmd1, 'Acknowledged'],
      [cmd2, 'Acknowledged'],
    ]);
    expect(list[1]!.notNowCount).toBe(1);
  });

  it('serves higher priority first, then oldest', async () => {
    const dev = server.device();
    await dev.enroll();
    const low = (await enqueue([dev.udid], { RequestType: 'CertificateList' }, { priority: 10 })).json() as { commandUUID: string };
    const mid = (await enqueue([dev.udid], { RequestType: 'ProfileList' })).json() as { commandUUID: string };
    const high = (await enqueue([dev.udid], { RequestType: 'SecurityInfo' }, { priority: 90 })).json() as { commandUUID: string };
    const session = await dev.connect();
    expect(session.map((c) => c.commandUUID)).toEqual([high.commandUUID, mid.commandUUID, low.commandUUID]);
  });

  it('stores results: reported state, errors with ErrorChain, raw response', async () => {
    const dev = server.device({ serialNumber: 'C02TESTSERIAL' });
    await dev.enroll();
    await enqueue([dev.udid], { RequestType: 'DeviceInformation', Queries: ['SerialNumber', 'OSVersion'] });
    await enqueue([dev.udid], {
      RequestType: 'InstallProfile',
      Payload: {
        $data: Buffer.from(
          buildPlist({
            PayloadType: 'Configuration',
            PayloadIdentifier: 'com.example.test',
            PayloadUUID: 'A0000000-0000-0000-0000-000000000001',
            PayloadVersion: 1,
            PayloadDisplayName: 'Test',
            PayloadContent: [],
          }),
        ).toString('base64'),
      },
    });
    await enqueue([dev.udid], { RequestType: 'ProfileList' });
    await enqueue([dev.udid], { RequestType: 'RemoveProfile', Identifier: 'com.example.missing' });
    const session = await dev.connect();
    expect(session.map((c) => c.status)).toEqual(['Acknowledged', 'Acknowledged', 'Acknowledged', 'Error']);

    const devRes = await http(`${server.url}/api/v1/devices/${dev.udid}`, { headers: { authorization: `Bearer ${server.readToken}` } });
    const body = devRes.json() as {
      reported: { DeviceInformation: { value: Record<string, string> }; ProfileList: { value: { PayloadIdentifier: string }[] } };
      enrolled: boolean;
    };
    expect(body.enrolled).toBe(true);
    expect(body.reported.DeviceInformation.value).toEqual({ SerialNumber: 'C02TESTSERIAL', OSVersion: '15.1' });
    expect(body.reported.ProfileList.value.map((p) => p.PayloadIdentifier)).toEqual(['com.example.test']);

    const cmds = (await http(`${server.url}/api/v1/devices/${dev.udid}/commands`, { headers: { authorization: `Bearer ${server.readToken}` } })).json() as {
      commands: { requestType: string; status: string; result?: { errorChain?: { ErrorDomain: string }[]; response: Record<string, unknown> } }[];
    };
    const remove = cmds.commands.find((c) => c.requestType === 'RemoveProfile')!;
    expect(remove.status).toBe('Error');
    expect(remove.result!.errorChain![0]!.ErrorDomain).toBe('MCProfileErrorDomain');
    expect(remove.result!.response.Status).toBe('Error');
  });

  it('a new Authenticate clears the queue left from an earlier enrollment', async () => {
    const identity = createDeviceIdentity(server.ca, 're-authenticates');
    const dev = new SimulatedDevice({ serverUrl: server.url, identity });
    await dev.enroll();
    await enqueue([dev.udid], { RequestType: 'ProfileList' });
    // A different Authenticate (the device was updated since): the same bytes again would be a replay.
    const again = new SimulatedDevice({ serverUrl: server.url, identity, udid: dev.udid, serialNumber: dev.serialNumber, osVersion: '15.2' });
    expect((await again.authenticate()).status).toBe(200);
    // Not active until TokenUpdate: nothing offered, and the admin API refuses to queue.
    expect((await again.report({ Status: 'Idle', UDID: dev.udid })).body.length).toBe(0);
    expect((await enqueue([dev.udid], { RequestType: 'ProfileList' })).status).toBe(404);
    await again.tokenUpdate();
    expect(await again.connect()).toEqual([]);
  });

  it('CheckOut deactivates the enrollment', async () => {
    const dev = server.device();
    await dev.enroll();
    expect((await dev.checkOut()).status).toBe(200);
    const res = await enqueue([dev.udid], { RequestType: 'ProfileList' });
    expect(res.status).toBe(404);
    expect(res.text).toContain(dev.udid);
  });

  it('user channel: TokenUpdate with UserID makes enrollment UDID:UserID with its own queue', async () => {
    const dev = server.device();
    await dev.enroll();
    expect((await dev.tokenUpdate({ userId: 'A1B2C3D4-0000-0000-0000-000000000501' })).status).toBe(200);
    const eid = `${dev.udid}:A1B2C3D4-0000-0000-0000-000000000501`;
    const res = await enqueue([eid], { RequestType: 'ProfileList' });
    expect(res.status).toBe(201);
    expect(await dev.connect()).toEqual([]);
    const user = await dev.connect({ userId: 'A1B2C3D4-0000-0000-0000-000000000501' });
    expect(user.map((c) => c.requestType)).toEqual(['ProfileList']);
    // The user channel's answer is stored, but does not stand for the device's profiles.
    expect((await server.store.listCommands(eid)).items[0]?.status).toBe('Acknowledged');
    expect((await server.store.getDevice(dev.udid))?.reported.ProfileList).toBeUndefined();
  });

  it('bootstrap token: stored, returned, never logged', async () => {
    const dev = server.device();
    await dev.enroll();
    const token = Buffer.from('super-secret-bootstrap-token-value');
    expect((await dev.checkin({ MessageType: 'SetBootstrapToken', UDID: dev.udid, BootstrapToken: new Uint8Array(token) })).status).toBe(200);
    const got = await dev.checkin({ MessageType: 'GetBootstrapToken', UDID: dev.udid });
    expect(got.status).toBe(200);
    expect(got.body.toString()).toContain(token.toString('base64'));
    const logged = JSON.stringify(server.logs);
    expect(logged).not.toContain(token.toString('base64'));
    expect(logged).not.toContain('super-secret');
  });

  it('UserAuthenticate is declined with 410; GetToken is a clear 400; DeclarativeManagement answers JSON', async () => {
    const dev = server.device();
    await dev.enroll();
    expect((await dev.checkin({ MessageType: 'UserAuthenticate', UDID: dev.udid, UserID: 'U1', DigestResponse: '' })).status).toBe(410);
    const ddm = await dev.checkin({ MessageType: 'DeclarativeManagement', UDID: dev.udid, Endpoint: 'tokens' });
    expect(ddm.status).toBe(200);
    expect(JSON.parse(ddm.body.toString()).SyncTokens.DeclarationsToken).toMatch(/^[0-9a-f]{64}$/);
    expect((await dev.checkin({ MessageType: 'GetToken', UDID: dev.udid })).status).toBe(400);
  });

  it('checkin URL and connect URL both take both kinds of message', async () => {
    const dev = server.device({ checkinPath: '/mdm/connect', connectPath: '/mdm/checkin' });
    await dev.enroll();
    await enqueue([dev.udid], { RequestType: 'ProfileList' });
    expect((await dev.connect()).map((c) => c.status)).toEqual(['Acknowledged']);
  });
});

describe('admin API', () => {
  it('needs a token; the read-only token cannot write; bad commands are refused with the reason', async () => {
    const dev = server.device();
    await dev.enroll();
    const noToken = await http(`${server.url}/api/v1/devices`);
    expect(noToken.status).toBe(401);
    const wrong = await http(`${server.url}/api/v1/devices`, { headers: { authorization: 'Bearer nope' } });
    expect(wrong.status).toBe(403);
    const readList = await http(`${server.url}/api/v1/devices`, { headers: { authorization: `Bearer ${server.readToken}` } });
    expect(readList.status).toBe(200);
    expect((readList.json() as { devices: { id: string }[] }).devices.map((d) => d.id)).toContain(dev.udid);
    const readWrite = await http(`${server.url}/api/v1/commands`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.readToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ targets: [dev.udid], command: { RequestType: 'ProfileList' } }),
    });
    expect(readWrite.status).toBe(403);

    const typo = await enqueue([dev.udid], { RequestType: 'ProfileList', ManagedOnlyy: true });
    expect(typo.status).toBe(400);
    expect(typo.text).toContain('ManagedOnlyy');
    const unknown = await enqueue([dev.udid], { RequestType: 'MakeCoffee' });
    expect(unknown.status).toBe(400);
    const missing = await enqueue([dev.udid], { RequestType: 'InstallProfile' });
    expect(missing.text).toContain('Payload');
    const wrongType = await enqueue([dev.udid], { RequestType: 'InstallProfile', Payload: 'not data' });
    expect(wrongType.status).toBe(400);
    expect(wrongType.text).toMatch(/expected data/);
  });

  it('accepts a raw command plist', async () => {
    const dev = server.device();
    await dev.enroll();
    const res = await http(`${server.url}/api/v1/commands?target=${dev.udid}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/x-apple-plist' },
      body: buildPlist({ CommandUUID: 'raw-cmd-1', Command: { RequestType: 'DeviceInformation', Queries: ['OSVersion'] } }),
    });
    expect(res.status).toBe(201);
    expect((res.json() as { commandUUID: string }).commandUUID).toBe('raw-cmd-1');
    const session = await dev.connect();
    expect(session).toEqual([{ commandUUID: 'raw-cmd-1', requestType: 'DeviceInformation', status: 'Acknowledged' }]);
  });
});

describe('compaction', () => {
  it('deletes finished commands after the retention period, keeps pending ones', async () => {
    const short = await startTestServer({ retentionMs: 1 }, { compactEveryMs: 200 });
    try {
      const dev = short.device();
      await dev.enroll();
      const q = (cmd: string) =>
        http(`${short.url}/api/v1/commands`, {
          method: 'POST',
          headers: { authorization: `Bearer ${short.adminToken}`, 'content-type': 'application/json' },
          body: JSON.stringify({ targets: [dev.udid], command: { RequestType: cmd } }),
        });
      await q('ProfileList');
      expect((await dev.connect()).length).toBe(1);
      const pending = (await q('SecurityInfo')).json() as { commandUUID: string };
      const deadline = Date.now() + 5000;
      let left = (await short.store.listCommands(dev.udid)).items;
      const logged = () => short.logs.some((l) => l.msg === 'compacted finished commands');
      // The log line follows the deletion: wait for both.
      while ((left.length > 1 || !logged()) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        left = (await short.store.listCommands(dev.udid)).items;
      }
      expect(left.map((c) => [c.uuid, c.status])).toEqual([[pending.commandUUID, 'Pending']]);
      expect(short.logs.some((l) => l.msg === 'compacted finished commands')).toBe(true);
    } finally {
      await short.stop();
    }
  });
});
