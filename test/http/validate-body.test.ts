/**
 * API bodies are validated against their schema before the handler runs, on the real server:
 * a refusal is a 400 (415 for another media type, 413 over the limit) that names the path of each
 * problem, never quotes the body, and changes nothing; a valid body goes through.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http } from '../helpers/server.js';
import { startEnrollServer, type EnrollServer } from '../enroll/helpers.js';

let server: EnrollServer;
let udid: string;

beforeAll(async () => {
  server = await startEnrollServer();
  const mac = server.device();
  await mac.enroll();
  udid = mac.udid;
});
afterAll(async () => {
  await server?.stop();
});

const post = (path: string, body: string, type: string | undefined = 'application/json') =>
  http(`${server.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.adminToken}`, ...(type === undefined ? {} : { 'content-type': type }) },
    body,
  });
const error = (r: { json: () => unknown }) => (r.json() as { error: string }).error;

describe('POST /api/v1/commands', () => {
  it('refuses each kind of bad body with the path of the problem, and queues nothing', async () => {
    const cases: [string, RegExp][] = [
      [JSON.stringify({ targets: [], command: { RequestType: 'DeviceInformation' } }), /^targets must NOT have fewer than 1 items$/],
      [JSON.stringify({ targets: [udid], command: { RequestType: 'DeviceInformation' }, priority: 100 }), /^priority must be <= 99$/],
      [JSON.stringify({ targets: [udid], command: { RequestType: 'DeviceInformation' }, priority: 1.5 }), /^priority must be integer$/],
      [JSON.stringify({ targets: [udid], command: { Queries: [] } }), /^command: missing required key "RequestType"$/],
      [JSON.stringify({ targets: [udid], command: { RequestType: 'DeviceInformation' }, commandUUID: 7 }), /^commandUUID must be string$/],
      [JSON.stringify({ targets: [udid], command: { RequestType: 'DeviceInformation' }, priorty: 5 }), /^unknown key "priorty" in body$/],
      [JSON.stringify([udid]), /^body must be object$/],
      ['{"targets": ["SECRET-LOOKING-VALUE"', /^body is not JSON( \(at byte \d+\))?$/],
    ];
    for (const [body, message] of cases) {
      const r = await post('/api/v1/commands', body);
      expect(r.status, body).toBe(400);
      expect(error(r), body).toMatch(message);
      expect(r.text).not.toContain('SECRET-LOOKING-VALUE');
    }
    const listed = await http(`${server.url}/api/v1/devices/${udid}/commands`, { headers: { authorization: `Bearer ${server.adminToken}` } });
    expect((listed.json() as { commands: unknown[] }).commands.filter((c) => (c as { requestType: string }).requestType === 'DeviceInformation')).toEqual([]);
  });

  it('says every problem of one body (up to five)', async () => {
    const r = await post('/api/v1/commands', JSON.stringify({ targets: [''], command: {}, priority: -1 }));
    expect(r.status).toBe(400);
    expect(error(r).split('; ').sort()).toEqual([
      'command: missing required key "RequestType"',
      'priority must be >= 0',
      'targets.0 must NOT have fewer than 1 characters',
    ]);
  });

  it('queues a valid body, with or without a Content-Type, and refuses another media type with 415', async () => {
    const body = JSON.stringify({ targets: [udid], command: { RequestType: 'ProfileList' }, priority: 70 });
    const r = await post('/api/v1/commands', body);
    expect(r.status).toBe(201);
    expect(r.json()).toMatchObject({ requestType: 'ProfileList', targets: [udid] });
    expect((await post('/api/v1/commands', body, undefined)).status).toBe(201);
    const other = await post('/api/v1/commands', body, 'text/plain');
    expect(other.status).toBe(415);
    expect(error(other)).toMatch(/content type "text\/plain" not accepted: send application\/json or application\/x-apple-plist/);
  });

  it('a plist body still takes its targets from the query', async () => {
    const plist = '<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict><key>RequestType</key><string>SecurityInfo</string></dict></plist>';
    const none = await post('/api/v1/commands', plist, 'application/x-apple-plist');
    expect(none.status).toBe(400);
    expect(error(none)).toMatch(/targets/);
    const r = await post(`/api/v1/commands?target=${udid}`, plist, 'application/x-apple-plist');
    expect(r.status).toBe(201);
    expect(r.json()).toMatchObject({ requestType: 'SecurityInfo', targets: [udid] });
  });

  it('reads no body without a valid token', async () => {
    const r = await http(`${server.url}/api/v1/commands`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '[' });
    expect(r.status).toBe(401);
  });
});

describe('POST /api/v1/enrollments', () => {
  it('takes no body, an empty object or a device binding; refuses a bad binding by its field', async () => {
    for (const [body, type] of [
      ['', undefined],
      ['{}', 'application/json'],
      ['{"serial": "C02ABC123"}', 'application/x-www-form-urlencoded'], // curl -d without -H
    ] as const) {
      const r = await post('/api/v1/enrollments', body, type);
      expect(r.status, body).toBe(201);
    }
    const bound = await post('/api/v1/enrollments', JSON.stringify({ serial: 'C02ABC123', udid: 'ABCD-1234' }));
    expect(bound.json()).toMatchObject({ serial: 'C02ABC123', udid: 'ABCD-1234' });
    const cases: [string, RegExp][] = [
      ['{"serial": "C02 BAD"}', /^serial must match pattern/],
      ['{"udid": "A:B"}', /^udid must match pattern/],
      ['{"serial": 7}', /^serial must be string$/],
      ['{"owner": "x"}', /^unknown key "owner" in body$/],
    ];
    for (const [body, message] of cases) {
      const r = await post('/api/v1/enrollments', body);
      expect(r.status, body).toBe(400);
      expect(error(r), body).toMatch(message);
    }
  });

  it('refuses a body over its limit with 413', async () => {
    const r = await post('/api/v1/enrollments', JSON.stringify({ serial: 'x'.repeat(10_000) }));
    expect(r.status).toBe(413);
  });
});
