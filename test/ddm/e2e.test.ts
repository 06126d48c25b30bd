/**
 * End to end in one process: a real git repository, the server following it, simulated devices
 * that sync declarations through the real DeclarativeManagement check-in endpoints.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SimulatedDevice } from '../../src/sim/device.js';
import { phaseOf } from '../../src/ddm/status.js';
import { FleetRepo, waitFor } from '../gitops/helpers.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { ddmBlueprint, passcodeDecl } from './fleet.js';

let repo: FleetRepo;
let server: TestServer;
let mac: SimulatedDevice;
let other: SimulatedDevice;

const set = async (d: SimulatedDevice, user?: string) => (await server.ddmStore.getDeclarationSet(user ? `${d.udid}:${user}` : d.udid, 'current'))!;
const tokensOf = (entries: Record<string, { declaration: { ServerToken: string } }>) =>
  Object.fromEntries(Object.entries(entries).map(([id, e]) => [id, e.declaration.ServerToken]));

/** Commit, sync, and (unless `changes` is false) wait until the reconciler stored the mac's new set. */
async function apply(message: string, changes = true): Promise<void> {
  const sha = repo.commit(message);
  await server.source!.sync('test');
  if (changes) await waitFor(`set of ${message}`, async () => ((await set(mac)).revision === sha ? true : undefined), 30_000);
}

/** Devices answer commands (and sync DDM after a DeclarativeManagement) until every declaration is verified. */
async function converge(devices: SimulatedDevice[]): Promise<void> {
  await waitFor(
    'declarations verified',
    async () => {
      for (const d of devices) await d.connect();
      for (const d of devices) {
        const s = await set(d);
        const status = await server.ddmStore.getDdmStatus(d.udid);
        if (!s || Object.values(s.entries).some((e) => phaseOf(e, status).phase !== 'verified')) return undefined;
      }
      return true;
    },
    30_000,
  );
}

beforeAll(async () => {
  repo = new FleetRepo();
  repo
    .write('declarations/passcode.yaml', passcodeDecl('passcode', 8))
    .write('declarations/other.yaml', passcodeDecl('other', 6))
    .write('blueprints/b.yaml', ddmBlueprint('macs', ['passcode', 'other']));
  repo.commit('declarations');
  server = await startTestServer({ repo: repo.url, pollIntervalMs: 0, driftIntervalMs: 0, dataDir: join(repo.root, 'server') });
  mac = server.device({ serialNumber: 'MAC001', model: 'Mac14,2', osVersion: '15.1' });
  other = server.device({ serialNumber: 'MAC002', model: 'Mac14,2', osVersion: '15.1' });
  for (const d of [mac, other]) await d.enroll();
});
afterAll(async () => {
  await server.stop();
  repo.cleanup();
});

describe('DDM end to end', () => {
  it('a revision with declarations converges: every declaration verified with its ServerToken', async () => {
    await converge([mac, other]);
    const s = await set(mac);
    expect(Object.keys(s.entries).sort()).toEqual([
      'com.example.other',
      'com.example.passcode',
      'orchard.blueprint.macs.activation',
      'orchard.status-subscriptions',
    ]);
    expect(mac.ddm.tokens.get('')).toBe(s.declarationsToken);
    expect([...mac.ddm.held().keys()].sort()).toEqual(Object.keys(s.entries).sort());
    expect(mac.ddm.held().get('com.example.passcode')!.declaration.Payload).toEqual({ MinimumLength: 8, RequireAlphanumericPasscode: true });
    const status = (await server.ddmStore.getDdmStatus(mac.udid))!;
    expect(status.items['device.operating-system.version']).toBe('15.1');
  });

  it('changing one declaration changes exactly its ServerToken, its activation stays, and the DeclarationsToken changes', async () => {
    const before = await set(mac);
    repo.write('declarations/passcode.yaml', passcodeDecl('passcode', 10));
    await apply('passcode 10');
    await converge([mac, other]);
    const after = await set(mac);
    expect(after.declarationsToken).not.toBe(before.declarationsToken);
    const a = tokensOf(before.entries);
    const b = tokensOf(after.entries);
    const changed = Object.keys(b).filter((id) => a[id] !== b[id]);
    expect(changed).toEqual(['com.example.passcode']);
    expect(mac.ddm.held().get('com.example.passcode')!.declaration.Payload.MinimumLength).toBe(10);
  });

  it('removing one removes it from the device', async () => {
    repo.write('blueprints/b.yaml', ddmBlueprint('macs', ['passcode'])).remove('declarations/other.yaml');
    await apply('drop other');
    await converge([mac, other]);
    expect(Object.keys((await set(mac)).entries)).not.toContain('com.example.other');
    expect(mac.ddm.held().has('com.example.other')).toBe(false);
    const act = mac.ddm.held().get('orchard.blueprint.macs.activation')!;
    expect(act.declaration.Payload.StandardConfigurations).toEqual(['com.example.passcode', 'orchard.status-subscriptions']);
  });

  it('a revision applied between declaration-items and the fetch does not break the sync', async () => {
    mac.ddmAutoSync = false;
    // The server queues the DeclarativeManagement command for the revision; the device syncs on its own.
    let applied = false;
    mac.ddm.beforeFetch = async () => {
      if (applied) return;
      applied = true;
      repo.write('declarations/passcode.yaml', passcodeDecl('passcode', 12));
      await apply('passcode 12 mid-sync');
    };
    repo.write('declarations/passcode.yaml', passcodeDecl('passcode', 11));
    await apply('passcode 11');
    const r = await mac.ddm.sync();
    mac.ddm.beforeFetch = undefined;
    expect(applied).toBe(true);
    // The fetch was answered from the set the device was given (MinimumLength 11), not the newer one.
    expect(r.fetched).toEqual(['com.example.passcode']);
    expect(mac.ddm.held().get('com.example.passcode')!.declaration.Payload.MinimumLength).toBe(11);
    mac.ddmAutoSync = true;
    await converge([mac]);
    expect(mac.ddm.held().get('com.example.passcode')!.declaration.Payload.MinimumLength).toBe(12);
  });

  it('a FullReport replaces earlier status; an incremental one updates', async () => {
    await mac.ddm.request('status', {
      StatusItems: { management: { declarations: { configurations: [{ identifier: 'gone', 'server-token': 'x', active: true, valid: 'valid' }] } } },
      Errors: [],
    });
    expect((await server.ddmStore.getDdmStatus(mac.udid))!.declarations.gone).toBeDefined();
    expect((await server.ddmStore.getDdmStatus(mac.udid))!.declarations['com.example.passcode']).toBeDefined();
    mac.ddm.fullReportNext = true;
    await mac.ddm.sync({ force: true });
    const status = (await server.ddmStore.getDdmStatus(mac.udid))!;
    expect(status.declarations.gone).toBeUndefined();
    expect(status.declarations['com.example.passcode']!.valid).toBe('valid');
    expect(status.fullReportAt).toBeDefined();
  });

  it('a declaration the device refuses is failed with Apple reasons', async () => {
    mac.ddm.fail = (d) => (d.Identifier === 'com.example.passcode' ? { code: 'Error.ConfigurationCannotBeApplied', description: 'simulated' } : undefined);
    repo.write('declarations/passcode.yaml', passcodeDecl('passcode', 13));
    await apply('passcode 13');
    await waitFor(
      'failed',
      async () => {
        await mac.connect();
        const s = await set(mac);
        const st = phaseOf(s.entries['com.example.passcode']!, await server.ddmStore.getDdmStatus(mac.udid));
        return st.phase === 'failed' ? st : undefined;
      },
      20_000,
    ).then((st) => expect(st.reasons?.[0]?.code).toBe('Error.ConfigurationCannotBeApplied'));
    mac.ddm.fail = undefined;
  });

  it('the user channel gets user-channel declarations', async () => {
    repo.write(
      'declarations/user.yaml',
      `apiVersion: orchard/v1
kind: Declaration
metadata: {name: user-passcode}
spec:
  Type: com.apple.configuration.passcode.settings
  Identifier: com.example.user-passcode
  channel: user
  Payload: {MinimumLength: 4}
`,
    );
    repo.write('blueprints/b.yaml', ddmBlueprint('macs', ['passcode', 'user-passcode']));
    await apply('user declaration', false);
    const r = await other.tokenUpdate({ userId: 'USER-1' });
    expect(r.status).toBe(200);
    const userSet = await waitFor('user set', async () => (await server.ddmStore.getDeclarationSet(`${other.udid}:USER-1`, 'current')) ?? undefined, 20_000);
    expect(Object.keys(userSet.entries)).toEqual(['com.example.user-passcode']);
    await other.connect({ userId: 'USER-1' });
    expect([...other.ddm.held('USER-1').keys()]).toEqual(['com.example.user-passcode']);
    expect(other.ddm.held().has('com.example.user-passcode')).toBe(false);
  });

  it('an invalid declaration is never served: the revision is refused with file:line', async () => {
    const before = await set(mac);
    repo.write('declarations/passcode.yaml', passcodeDecl('passcode', 14, '    MaximumFailedAttempts: many\n'));
    await apply('invalid', false);
    const st = server.source!.status();
    expect(JSON.stringify(st)).toContain('declarations/passcode.yaml');
    expect((await set(mac)).declarationsToken).toBe(before.declarationsToken);
  });
});
