import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http, startTestServer, type TestServer } from '../helpers/server.js';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server.stop();
});

describe('the identifier domain at the admin API', () => {
  const read = () => ({ authorization: `Bearer ${server.readToken}` });

  it('answers 400 naming the problem for ids no store accepts, and keeps serving', async () => {
    const dev = server.device();
    await dev.enroll();
    const post = await http(`${server.url}/api/v1/commands`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ targets: [dev.udid, 'X\u0000'], command: { RequestType: 'ProfileList' } }),
    });
    expect(post.status).toBe(400);
    expect((post.json() as { error: string }).error).toMatch(/enrollment id "X\\u0000" contains U\+0000/);
    const lone = await http(`${server.url}/api/v1/commands`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
      // JSON can carry a lone surrogate as an escape; UTF-8 cannot, so no store could keep it.
      body: `{"targets": ["${dev.udid}", "X\\ud800"], "command": {"RequestType": "ProfileList"}}`,
    });
    expect(lone.status).toBe(400);
    expect((lone.json() as { error: string }).error).toMatch(/contains a lone surrogate/);
    // Nothing was queued, and the device is served as before.
    const listed = await http(`${server.url}/api/v1/devices/${dev.udid}/commands`, { headers: read() });
    expect(listed.status).toBe(200);
    expect((listed.json() as { commands: unknown[] }).commands).toEqual([]);
    const idle = await dev.report({ Status: 'Idle', UDID: dev.udid });
    expect(idle.status).toBe(200);
    expect(idle.body.length).toBe(0);
  });
});
