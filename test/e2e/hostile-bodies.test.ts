/**
 * Hostile and malformed plist bodies against a real server on loopback, signed by an enrolled
 * device: each is a 4xx (never a 500) with a reason that names the kind of problem and its
 * position, never the body's content; the server keeps serving; the largest legitimate report
 * (a Mac's InstalledApplicationList) is recorded.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDeviceIdentity } from '../../src/identity/ca.js';
import { signDetached } from '../../src/identity/cms-sign.js';
import { buildPlist } from '../../src/protocol/plist.js';
import { installedApplicationListReport } from '../../src/sim/app-list.js';
import type { SimulatedDevice } from '../../src/sim/device.js';
import { hostileBodies } from '../../bench/hostile.js';
import { http, startTestServer, type TestServer } from '../helpers/server.js';

const UDID = '5A7E4C1D-0B2F-4E6A-9C8D-7F1E2D3C4B5A';
let server: TestServer;
let device: SimulatedDevice;
let sign: (body: Buffer) => string;
beforeAll(async () => {
  server = await startTestServer();
  const identity = createDeviceIdentity(server.ca, 'hostile');
  sign = (body) => signDetached(body, identity);
  device = server.device({ identity, udid: UDID });
  await device.enroll();
});
afterAll(async () => {
  await server.stop();
});

const HEAD =
  '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n<plist version="1.0">\n';

function put(body: Buffer | string, path = '/mdm/connect', type = 'application/x-apple-aspen-mdm') {
  const buf = Buffer.isBuffer(body) ? body : Buffer.from(body);
  return http(`${server.url}${path}`, { method: 'PUT', body: buf, headers: { 'content-type': type, 'mdm-signature': sign(buf) } });
}

const report = (inner: string, uuid = randomUUID()) =>
  `${HEAD}<dict>\n\t<key>CommandUUID</key>\n\t<string>${uuid}</string>\n\t<key>Status</key>\n\t<string>Acknowledged</string>\n\t<key>UDID</key>\n\t<string>${UDID}</string>\n${inner}</dict>\n</plist>\n`;

/** Queue a command for the device through the admin API, so that its report is recorded. */
async function queue(requestType: string, uuid: string) {
  const command = requestType === 'DeviceInformation' ? { RequestType: requestType, Queries: ['DeviceName'] } : { RequestType: requestType };
  const res = await http(`${server.url}/api/v1/commands`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ targets: [UDID], commandUUID: uuid, command }),
  });
  expect(res.status).toBe(201);
}

/** The log line of the request just made. */
function lastRefusal(before: number) {
  return server.logs.slice(before).find((l) => l.msg === 'request refused');
}

describe('reports with an invalid <date> (issue 11.5): a 400 naming the position, then the retry is recorded', () => {
  const cases: [string, string, string][] = [
    ['QueryResponses', 'DeviceInformation', '<dict><key>LastCloudBackupDate</key><date>not-a-date</date><key>DeviceName</key><string>Fruit</string></dict>'],
    ['ProfileList', 'ProfileList', '<array><dict><key>PayloadIdentifier</key><string>p</string><key>InstallDate</key><date>not-a-date</date></dict></array>'],
    ['SecurityInfo', 'SecurityInfo', '<dict><key>FDE_Enabled</key><true/><key>Since</key><date>not-a-date</date></dict>'],
    ['CertificateList', 'CertificateList', '<array><dict><key>CommonName</key><string>c</string><key>NotAfter</key><date>not-a-date</date></dict></array>'],
    [
      'InstalledApplicationList',
      'InstalledApplicationList',
      '<array><dict><key>Identifier</key><string>a</string><key>InstallDate</key><date>not-a-date</date></dict></array>',
    ],
  ];
  for (const [key, field, inner] of cases) {
    it(key, async () => {
      const uuid = randomUUID();
      await queue(field, uuid);
      const before = server.logs.length;
      const bad = await put(report(`\t<key>${key}</key>\n\t${inner}\n`, uuid));
      expect(bad.status).toBe(400);
      expect(bad.text).toMatch(/^malformed plist: invalid <date> at line 12, col \d+\n$/);
      expect(bad.text).not.toContain('not-a-date');
      expect(lastRefusal(before)?.reason).toMatch(/invalid <date> at line 12, col \d+/);
      // The device sends it again, this time with a real date: recorded.
      const good = await put(report(`\t<key>${key}</key>\n\t${inner.replace('not-a-date', '2026-11-30T10:00:00Z')}\n`, uuid));
      expect(good.status).toBe(200);
      const dev = await server.store.getDevice(UDID);
      const reported = (dev?.reported as Record<string, { commandUUID: string }> | undefined)?.[field];
      expect(reported?.commandUUID).toBe(uuid);
    });
  }
});

describe('parser errors in logs and answers name kind and position, never content (issue 11.9)', () => {
  const MARK = 'PUSHMAGICMARKER7F3A';
  const tokenUpdate = (pushMagic: string, token = '<data>AAEC</data>') =>
    `${HEAD}<dict>\n<key>MessageType</key><string>TokenUpdate</string>\n<key>UDID</key><string>${UDID}</string>\n<key>Topic</key><string>com.apple.mgmt.test</string>\n<key>PushMagic</key>${pushMagic}\n<key>Token</key>${token}\n</dict>\n</plist>\n`;
  const crafted: [string, string][] = [
    ['an undefined entity in PushMagic', tokenUpdate(`<string>&${MARK};</string>`)],
    ['a mismatched closing tag after PushMagic', tokenUpdate(`<string>${MARK}</${MARK}>`)],
    ['PushMagic as an element name', tokenUpdate(`<${MARK}/>`)],
    ['PushMagic as text between elements', tokenUpdate(`${MARK}<string/>`)],
    ['a push token that is not base64', tokenUpdate('<string>m</string>', `<data>${MARK}!!</data>`)],
    ['a push token in a character reference', tokenUpdate(`<string>&#x${MARK};</string>`)],
    ['PushMagic in an unterminated attribute', tokenUpdate(`<string a="${MARK}>x</string>`)],
    ['PushMagic in a custom DTD', `<?xml version="1.0"?><!DOCTYPE plist [<!ENTITY ${MARK} "x">]>${tokenUpdate('<string>m</string>').slice(HEAD.length - 22)}`],
    ['PushMagic in an unclosed string', tokenUpdate(`<string>${MARK}`).replace(/<\/dict>\n<\/plist>\n$/, '')],
    ['PushMagic as an integer', tokenUpdate(`<integer>${MARK}</integer>`)],
  ];
  for (const [name, body] of crafted) {
    it(name, async () => {
      const before = server.logs.length;
      const res = await put(body, '/mdm/checkin', 'application/x-apple-aspen-mdm-checkin');
      expect(res.status).toBe(400);
      expect(lastRefusal(before)?.reason).toMatch(/line \d+, col \d+/);
      const logged = JSON.stringify(server.logs.slice(before));
      for (const part of [MARK, MARK.slice(0, 10), MARK.slice(-10)]) {
        expect(res.text).not.toContain(part);
        expect(logged).not.toContain(part);
      }
    });
  }
});

describe('the largest legitimate report and hostile bodies', () => {
  it("records a Mac's 2,000-app InstalledApplicationList", async () => {
    const uuid = randomUUID().toUpperCase();
    await queue('InstalledApplicationList', uuid);
    const res = await put(buildPlist(installedApplicationListReport(2000, { udid: UDID, commandUUID: uuid })));
    expect(res.status).toBe(200);
    const dev = await server.store.getDevice(UDID);
    const apps = (dev?.reported as Record<string, { commandUUID: string; value: unknown[] }>).InstalledApplicationList!;
    expect(apps.commandUUID).toBe(uuid);
    expect(apps.value.length).toBe(2000);
  });

  it('answers every hostile body with a 4xx or 200, never a 500, and keeps serving', async () => {
    const outcomes: Record<string, number> = {};
    for (const { name, body } of hostileBodies(UDID)) {
      const res = await put(body);
      outcomes[name] = res.status;
      expect(res.status, name).not.toBe(500);
      expect(res.status, name).toBeLessThan(500);
      expect((await http(`${server.url}/healthz`)).status).toBe(200);
    }
    // The ones beyond the limits are refused as such; those within them are accepted.
    expect(outcomes).toMatchObject({
      '200k keys (7.9 MB)': 400,
      '700k empty elements': 400,
      '8,000 levels of nesting': 400,
      '1M levels of nesting (8 MB)': 400,
      'one 8 MB string': 400,
      comments: 400,
      attributes: 400,
      'invalid date': 400,
      '127k integers, within the limits': 200,
      "a Mac's InstalledApplicationList, 2,000 apps (legitimate, recorded)": 200,
      "a Mac's InstalledApplicationList, 3,900 apps (within the limits)": 200,
    });
    expect((await device.report({ Status: 'Idle', UDID: UDID })).status).toBe(200);
  });
});
