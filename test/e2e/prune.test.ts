/**
 * `prune: false` set in the same commit that drops a profile from the blueprint: the revision
 * being applied decides, so the profile stays on the devices (no longer managed). `orchard plan`
 * (with and without --base) and the server, run on the same two revisions, say the same thing.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runPlan } from '../../src/cli/plan.js';
import type { Plan } from '../../src/reconcile/plan.js';
import type { SimulatedDevice } from '../../src/sim/device.js';
import { FleetRepo, waitFor } from '../gitops/helpers.js';
import { blueprint, profile } from '../gitops/repo.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const KEEP = 'com.example.keep';
const DROP = 'com.example.drop';
const keep = profile('keep', KEEP, '    - type: com.apple.security.firewall\n      keys:\n        EnableFirewall: true\n');
const drop = profile('drop', DROP, '    - type: com.apple.mobiledevice.passwordpolicy\n      keys:\n        minLength: 8\n');
const withPrune = (doc: string, prune: boolean) => doc.replace('  profiles:', `  prune: ${prune}\n  profiles:`);

let repo: FleetRepo;
let server: TestServer;
let macs: SimulatedDevice[];
let inventory: string;

async function managed(d: SimulatedDevice): Promise<string[]> {
  return Object.keys((await server.store.getArtifacts(d.udid))?.artifacts ?? {}).sort();
}

/** "serial identifier kind" lines, sorted: what a plan says, or what the server did. */
const lines = (plan: Plan) => plan.changes.map((c) => `${c.serial} ${c.identifier} ${c.kind}`).sort();

beforeAll(async () => {
  repo = new FleetRepo();
  repo
    .write('profiles.yaml', `${keep}---\n${drop}`)
    .write('keeper.yaml', blueprint('keeper', '    platforms: [macOS]', ['keep']))
    .write('dropper.yaml', blueprint('dropper', '    platforms: [macOS]', ['drop']));
  repo.commit('both profiles on every Mac');
  server = await startTestServer({ repo: repo.url, pollIntervalMs: 0, driftIntervalMs: 0, dataDir: join(repo.root, 'server') });
  macs = [0, 1].map((i) => server.device({ serialNumber: `PRUNE${i}`, model: 'Mac14,2' }));
  for (const d of macs) await d.enroll();
  await waitFor(
    'both profiles verified',
    async () => {
      for (const d of macs) await d.connect();
      for (const d of macs) {
        const a = (await server.store.getArtifacts(d.udid))?.artifacts ?? {};
        if (a[KEEP]?.phase !== 'verified' || a[DROP]?.phase !== 'verified') return false;
      }
      return true;
    },
    15_000,
  );
  const res = await fetch(`${server.url}/api/v1/devices`, { headers: { authorization: `Bearer ${server.readToken}` } });
  inventory = join(repo.root, 'inventory.json');
  writeFileSync(inventory, await res.text());
}, 30_000);
afterAll(async () => {
  await server?.stop();
  repo?.cleanup();
});

describe('prune: false in the commit that drops the profile', () => {
  it('keeps it: plan and server agree, profile by profile and device by device', async () => {
    // One commit: keeper says prune: false and no longer lists "keep"; dropper just drops "drop".
    repo
      .write('keeper.yaml', withPrune(blueprint('keeper', '    platforms: [macOS]', []), false))
      .write('dropper.yaml', blueprint('dropper', '    platforms: [macOS]', []));
    repo.commit('keep what keeper installed; drop the passcode');

    const expected = macs.flatMap((d) => [`${d.serialNumber} ${DROP} remove`, `${d.serialNumber} ${KEEP} unmanage`]).sort();
    const between = await runPlan({ path: repo.work, inventory, base: 'HEAD~1', format: 'json' });
    expect(between.exitCode).toBe(2);
    expect(lines(JSON.parse(between.stdout) as Plan)).toEqual(expected);
    const against = await runPlan({ path: repo.work, inventory, format: 'json' });
    expect(lines(JSON.parse(against.stdout) as Plan)).toEqual(expected);

    await server.source!.sync('test');
    await waitFor(
      'the server applied the commit',
      async () => {
        for (const d of macs) await d.connect();
        for (const d of macs) if ((await managed(d)).length > 0 || d.profiles.has(DROP)) return false;
        return true;
      },
      15_000,
    );
    // What the server did, in the plan's terms: gone from the device is a removal, still there but
    // no longer managed is "unmanage".
    const did = macs.flatMap((d) => [KEEP, DROP].map((id) => `${d.serialNumber} ${id} ${d.profiles.has(id) ? 'unmanage' : 'remove'}`)).sort();
    expect(did).toEqual(expected);
    for (const d of macs) {
      const removes = (await server.store.listCommands(d.udid)).items.filter((c) => c.requestType === 'RemoveProfile');
      expect(removes).toHaveLength(1); // the passcode's only
    }
  });

  it('prune: true in the commit that drops it removes it, even where the previous revision said false', async () => {
    // keeper wants "keep" again with prune: false; once verified, a commit flips prune to true and drops it.
    repo.write('keeper.yaml', withPrune(blueprint('keeper', '    platforms: [macOS]', ['keep']), false)).commit('manage keep again');
    await server.source!.sync('test');
    await waitFor(
      'keep managed again',
      async () => {
        for (const d of macs) await d.connect();
        for (const d of macs) if ((await server.store.getArtifacts(d.udid))?.artifacts[KEEP]?.phase !== 'verified') return false;
        return true;
      },
      15_000,
    );
    const res = await fetch(`${server.url}/api/v1/devices`, { headers: { authorization: `Bearer ${server.readToken}` } });
    writeFileSync(inventory, await res.text());

    repo.write('keeper.yaml', withPrune(blueprint('keeper', '    platforms: [macOS]', []), true)).commit('remove keep after all');
    const expected = macs.map((d) => `${d.serialNumber} ${KEEP} remove`).sort();
    expect(lines(JSON.parse((await runPlan({ path: repo.work, inventory, base: 'HEAD~1', format: 'json' })).stdout) as Plan)).toEqual(expected);
    expect(lines(JSON.parse((await runPlan({ path: repo.work, inventory, format: 'json' })).stdout) as Plan)).toEqual(expected);
    await server.source!.sync('test');
    await waitFor(
      'keep removed',
      async () => {
        for (const d of macs) await d.connect();
        return macs.every((d) => !d.profiles.has(KEEP)) || undefined;
      },
      15_000,
    );
    for (const d of macs) expect(await managed(d)).toEqual([]);
  });
});
