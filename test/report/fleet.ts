/**
 * The fleet both report test files use: a real git repository with a passcode profile for Macs,
 * a real server following it, three simulated Macs of which the third refuses the install (with a
 * long retry so it stays failed), converged before the tests start.
 */
import { join } from 'node:path';
import type { ServerConfig } from '../../src/config.js';
import type { StartOptions } from '../../src/server.js';
import type { SimulatedDevice, SimOptions } from '../../src/sim/device.js';
import { FleetRepo, waitFor } from '../gitops/helpers.js';
import { blueprint, profile } from '../gitops/repo.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

export const REFUSAL = { ErrorCode: 4001, ErrorDomain: 'MCProfileErrorDomain', LocalizedDescription: 'Passcode policy refused' };

export interface FailingFleet {
  repo: FleetRepo;
  server: TestServer;
  macs: SimulatedDevice[];
  /** Devices beyond the Macs (selected by nothing). */
  others: SimulatedDevice[];
  goodSha: string;
  stop(): Promise<void>;
}

export async function startFailingFleet(
  opts: {
    /** More documents committed with the passcode profile and the Macs' blueprint. */
    files?: Record<string, string>;
    server?: StartOptions;
    /** Per-Mac simulator options (index 0..2). */
    mac?: (i: number) => Partial<SimOptions>;
    others?: Partial<SimOptions>[];
    /** Called with the server before anything else, e.g. to capture it for route contexts. */
    onServer?: (s: TestServer) => void;
  } = {},
): Promise<FailingFleet> {
  const repo = new FleetRepo();
  repo
    .write(
      'profiles/passcode.yaml',
      profile('passcode', 'com.example.passcode', '    - type: com.apple.mobiledevice.passwordpolicy\n      keys:\n        minLength: 8\n'),
    )
    .write('blueprints/macs.yaml', blueprint('macs', '    platforms: [macOS]', ['passcode']));
  for (const [path, text] of Object.entries(opts.files ?? {})) repo.write(path, text);
  const goodSha = repo.commit('passcode on macs');
  const cfg: Partial<ServerConfig> = { repo: repo.url, pollIntervalMs: 0, driftIntervalMs: 0, dataDir: join(repo.root, 'server') };
  // A long retry keeps the refused install failed for the whole file.
  const server = await startTestServer(cfg, { retry: { maxAttempts: 3, baseMs: 600_000, maxMs: 600_000 }, ...opts.server });
  opts.onServer?.(server);
  const macs = [0, 1, 2].map((i) => server.device({ serialNumber: `MAC00${i}`, model: 'Mac14,2', ...opts.mac?.(i) }));
  const others = (opts.others ?? []).map((o) => server.device(o));
  macs[2]!.fail = (type) => (type === 'InstallProfile' ? REFUSAL : undefined);
  const all = [...macs, ...others];
  for (const d of all) await d.enroll();
  await waitFor(
    'convergence',
    async () => {
      for (const d of all) await d.connect();
      const a = await Promise.all(macs.map(async (m) => (await server.store.getArtifacts(m.udid))?.artifacts['com.example.passcode']?.phase));
      return (a[0] === 'verified' && a[1] === 'verified' && a[2] === 'failed') || undefined;
    },
    15_000,
  );
  return {
    repo,
    server,
    macs,
    others,
    goodSha,
    async stop() {
      await server.stop();
      repo.cleanup();
    },
  };
}
