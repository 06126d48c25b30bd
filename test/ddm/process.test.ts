/**
 * DDM against a real `orchard serve` process and simulated devices: a revision converges, a
 * changed declaration changes exactly its ServerToken, a removal removes it, the user channel
 * works, an invalid revision is never served, and a restart keeps every token.
 */
import { createHmac } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCA, createDeviceIdentity } from '../../src/identity/ca.js';
import { SimulatedDevice } from '../../src/sim/device.js';
import { FleetRepo, waitFor } from '../gitops/helpers.js';
import { spawnServer, waitExit, type ServerProcess } from '../helpers/process.js';
import { ddmBlueprint, passcodeDecl } from './fleet.js';

const SECRET = 'hook';
const repo = new FleetRepo();
const ca = createCA({ commonName: 'DDM process CA' });
const identity = createDeviceIdentity(ca, 'mac');
let srv: ServerProcess;
let mac: SimulatedDevice;
let args: string[];
const env = { ORCHARD_WEBHOOK_SECRET: SECRET, ORCHARD_READ_TOKEN: 'read' };

async function get(path: string): Promise<unknown> {
  const res = await fetch(`${srv.url}${path}`, { headers: { authorization: 'Bearer read' } });
  expect(res.status).toBe(200);
  return res.json();
}

type View = { ddm: { declarations: { identifier: string; phase: string; serverToken: string; channel: string }[] } };
const view = async () => (await get(`/api/v1/devices/${mac.udid}`)) as View;

async function apply(message: string): Promise<void> {
  repo.commit(message);
  const body = '{}';
  const res = await fetch(`${srv.url}/api/v1/hooks/git`, {
    method: 'POST',
    body,
    headers: { 'x-orchard-signature': `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}` },
  });
  expect(res.status).toBe(202);
}

/** The device answers commands (and syncs) until the server says every declaration is verified and `done` holds. */
async function converge(done: (v: View) => boolean): Promise<View> {
  return waitFor(
    'convergence',
    async () => {
      await mac.connect();
      const v = await view();
      return v.ddm.declarations.length > 0 && v.ddm.declarations.every((d) => d.phase === 'verified') && done(v) ? v : undefined;
    },
    20_000,
  );
}

beforeAll(async () => {
  writeFileSync(join(repo.root, 'ca.pem'), ca.certPem);
  repo.write('declarations/passcode.yaml', passcodeDecl('passcode', 8)).write('declarations/other.yaml', passcodeDecl('other', 6));
  repo.write('blueprints/b.yaml', ddmBlueprint('macs', ['passcode', 'other']));
  repo.commit('start');
  args = ['--data-dir', join(repo.root, 'data'), '--trust-ca', join(repo.root, 'ca.pem'), '--repo', repo.url, '--poll-interval', '0', '--drift-interval', '0'];
  srv = await spawnServer(args, env);
  mac = new SimulatedDevice({ serverUrl: srv.url, identity, serialNumber: 'C02DDM0001', osVersion: '15.1' });
  await mac.enroll();
});
afterAll(async () => {
  srv.child.kill('SIGTERM');
  await waitExit(srv.child);
  repo.cleanup();
});

describe('DDM against orchard serve', () => {
  let tokens: Record<string, string>;

  it('converges: the device holds every declaration the server verified', async () => {
    const v = await converge((x) => x.ddm.declarations.some((d) => d.identifier === 'com.example.other'));
    tokens = Object.fromEntries(v.ddm.declarations.map((d) => [d.identifier, d.serverToken]));
    expect(Object.keys(tokens).sort()).toEqual([
      'com.example.other',
      'com.example.passcode',
      'orchard.blueprint.macs.activation',
      'orchard.status-subscriptions',
    ]);
    for (const [id, t] of Object.entries(tokens)) expect(mac.ddm.held().get(id)!.declaration.ServerToken).toBe(t);
  });

  it('changing one declaration changes exactly that ServerToken and the DeclarationsToken', async () => {
    const before = mac.ddm.tokens.get('');
    repo.write('declarations/passcode.yaml', passcodeDecl('passcode', 10));
    await apply('passcode 10');
    const v = await converge((x) => x.ddm.declarations.find((d) => d.identifier === 'com.example.passcode')!.serverToken !== tokens['com.example.passcode']);
    const now = Object.fromEntries(v.ddm.declarations.map((d) => [d.identifier, d.serverToken]));
    expect(Object.keys(now).filter((id) => now[id] !== tokens[id])).toEqual(['com.example.passcode']);
    expect(mac.ddm.tokens.get('')).not.toBe(before);
    tokens = now;
  });

  it('removing one removes it; the user channel gets its own', async () => {
    repo.remove('declarations/other.yaml');
    repo.write(
      'declarations/user.yaml',
      'apiVersion: orchard/v1\nkind: Declaration\nmetadata: {name: user-passcode}\nspec:\n  Type: com.apple.configuration.passcode.settings\n  channel: user\n  Payload: {MinimumLength: 4}\n',
    );
    repo.write('blueprints/b.yaml', ddmBlueprint('macs', ['passcode', 'user-passcode']));
    await apply('drop other, user declaration');
    await converge((x) => !x.ddm.declarations.some((d) => d.identifier === 'com.example.other'));
    expect(mac.ddm.held().has('com.example.other')).toBe(false);
    expect((await mac.tokenUpdate({ userId: 'U1' })).status).toBe(200);
    await waitFor(
      'user channel synced',
      async () => {
        await mac.connect({ userId: 'U1' });
        return mac.ddm.held('U1').has('user-passcode') || undefined;
      },
      20_000,
    );
    const v = await view();
    expect(v.ddm.declarations.filter((d) => d.channel === 'user').map((d) => d.identifier)).toEqual(['user-passcode']);
  });

  it('an invalid declaration is never served: the revision is refused with file:line', async () => {
    const token = mac.ddm.tokens.get('');
    repo.write('declarations/passcode.yaml', passcodeDecl('passcode', 11, '    MinimumComplexCharacters: lots\n'));
    await apply('invalid');
    const source = await waitFor(
      'rejected',
      async () => {
        const s = (await get('/api/v1/source')) as { rejected?: { reason: string } };
        return s.rejected ? s : undefined;
      },
      30_000,
    );
    expect(source.rejected!.reason).toMatch(/declarations\/passcode\.yaml:10:\d+/);
    await mac.connect();
    const r = await mac.ddm.sync();
    expect(r.changed).toBe(false);
    expect(mac.ddm.tokens.get('')).toBe(token);
  });

  it('after a restart every token is the same', async () => {
    srv.child.kill('SIGTERM');
    await waitExit(srv.child);
    srv = await spawnServer(args, env);
    // The device keeps talking to the restarted server (at its new port).
    const moved = new SimulatedDevice({ serverUrl: srv.url, identity, udid: mac.udid, serialNumber: mac.serialNumber });
    const tokens = (await moved.ddm.request('tokens')) as { SyncTokens: { DeclarationsToken: string } };
    expect(tokens.SyncTokens.DeclarationsToken).toBe(mac.ddm.tokens.get(''));
  });
});
