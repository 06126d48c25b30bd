/** `orchard serve` and `orchard simulate` as a user runs them: two real processes. */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, expect, it } from 'vitest';
import { loadOrCreateCA } from '../../src/cli/simulate.js';
import { CLI, spawnServer, waitExit } from '../helpers/process.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'orchard-sim-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('a server that does not trust the simulator: a one-line reason, exit 1', async () => {
  const srv = await spawnServer(['--data-dir', join(dir, 'untrusting')]);
  try {
    const stateDir = join(dir, 'other-ca');
    const r = await run(process.execPath, [CLI, 'simulate', '--server', srv.url, '--state-dir', stateDir, '--once']).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => err,
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`start it with --trust-ca ${join(stateDir, 'ca.pem')}`);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  } finally {
    srv.child.kill('SIGTERM');
    await waitExit(srv.child);
  }
});

it('simulated devices enroll and answer a command queued through the admin API', async () => {
  const caDir = join(dir, 'ca');
  loadOrCreateCA(caDir);
  const srv = await spawnServer(['--data-dir', join(dir, 'data'), '--trust-ca', join(caDir, 'ca.pem')], { ORCHARD_API_TOKEN: 't0ken' });
  try {
    const first = await run(process.execPath, [CLI, 'simulate', '--server', srv.url, '--state-dir', caDir, '--count', '2', '--prefix', 'CLI', '--once']);
    expect(first.stdout).toMatch(/enrolled SIM-CLI000000/);
    expect(first.stdout).toMatch(/enrolled SIM-CLI000001/);
    const res = await fetch(`${srv.url}/api/v1/commands`, {
      method: 'POST', headers: { authorization: 'Bearer t0ken', 'content-type': 'application/json' },
      body: JSON.stringify({ targets: ['SIM-CLI000001'], command: { RequestType: 'DeviceInformation', Queries: ['SerialNumber'] } }),
    });
    expect(res.status).toBe(201);
    const { commandUUID } = (await res.json()) as { commandUUID: string };
    const second = await run(process.execPath, [CLI, 'simulate', '--server', srv.url, '--state-dir', caDir, '--count', '2', '--prefix', 'CLI', '--once']);
    expect(second.stdout).toContain(`SIM-CLI000001 DeviceInformation ${commandUUID} -> Acknowledged`);
    expect(second.stdout).not.toMatch(/enrolled/); // the same devices, not new enrollments
    const dev = (await (await fetch(`${srv.url}/api/v1/devices/SIM-CLI000001`, { headers: { authorization: 'Bearer t0ken' } })).json()) as { reported: { DeviceInformation: { value: unknown } } };
    expect(dev.reported.DeviceInformation.value).toEqual({ SerialNumber: 'CLI000001' });
  } finally {
    srv.child.kill('SIGTERM');
    await waitExit(srv.child);
  }
});
