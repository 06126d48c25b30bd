/**
 * A failed install's retry is a durable work row (src/store/work.ts), not a timer: a server that
 * stops before the retry time leaves the row in its data directory, and the next process on that
 * directory queues the retry at the row's due time by itself, with no contact from the device.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetRepo, waitFor } from '../gitops/helpers.js';
import { blueprint, profile } from '../gitops/repo.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const passcode = profile('passcode', 'com.example.passcode', '    - type: com.apple.mobiledevice.passwordpolicy\n      keys:\n        minLength: 8\n');
// Long enough that the restart happens before the retry is due.
const retry = { maxAttempts: 3, baseMs: 5000, maxMs: 5000 };

let repo: FleetRepo;
let first: TestServer | undefined;
let second: TestServer | undefined;

beforeAll(() => {
  repo = new FleetRepo();
  repo.write('profiles/passcode.yaml', passcode).write('blueprints/b.yaml', blueprint('macs', '    platforms: [macOS]', ['passcode']));
  repo.commit('passcode on macs');
});
afterAll(async () => {
  await first?.stop();
  await second?.stop();
  repo.cleanup();
});

describe('a retry row across a restart', () => {
  it('is kept on disk and acted on at its due time by the next process, without the device', async () => {
    const dataDir = join(repo.root, 'server');
    first = await startTestServer({ repo: repo.url, pollIntervalMs: 0, driftIntervalMs: 0, dataDir }, { retry });
    const mac = first.device({ serialNumber: 'RETRY0001', model: 'Mac14,2' });
    let failures = 1;
    mac.fail = (type) =>
      type === 'InstallProfile' && failures-- > 0
        ? { ErrorCode: 4001, ErrorDomain: 'MCProfileErrorDomain', LocalizedDescription: 'Passcode policy refused' }
        : undefined;
    await mac.enroll();
    await first.source!.sync('test');
    await waitFor(
      'the failed install',
      async () => {
        await mac.connect();
        return (await first!.store.getArtifacts(mac.udid))?.artifacts['com.example.passcode']?.phase === 'failed' || undefined;
      },
      20_000,
    );
    const row = await waitFor('the retry row', async () => {
      const w = await first!.store.getWork(mac.udid);
      return (w && w.dueAt.getTime() > Date.now() && w) || undefined;
    });
    expect(await first.store.nextCommand(mac.udid, { skipNotNow: false })).toBeUndefined();

    // Stop the first process (its data directory stays) and start another on the same directory and port.
    const port = Number(new URL(first.url).port);
    await first.close();
    second = await startTestServer(
      { repo: repo.url, pollIntervalMs: 0, driftIntervalMs: 0, dataDir, listen: { host: '127.0.0.1', port }, trustCa: [first.caFile] },
      { retry },
    );
    expect((await second.store.getWork(mac.udid))?.dueAt).toEqual(row.dueAt);

    // The device stays silent: only the row can bring the retry.
    const queued = await waitFor(
      'the retry queued',
      async () => {
        const next = await second!.store.nextCommand(mac.udid, { skipNotNow: false });
        return (next?.requestType === 'InstallProfile' && { next, at: Date.now() }) || undefined;
      },
      30_000,
    );
    // Not before the retry time the failure set (the new process's own start-up reconcile leaves it alone).
    expect(queued.at).toBeGreaterThanOrEqual(row.dueAt.getTime());
    await mac.connect();
    expect(mac.profiles.has('com.example.passcode')).toBe(true);
    await waitFor(
      'verified',
      async () => (await second!.store.getArtifacts(mac.udid))?.artifacts['com.example.passcode']?.phase === 'verified' || undefined,
      10_000,
    );
    expect((await second.store.getArtifacts(mac.udid))!.artifacts['com.example.passcode']!.attempts).toBe(2);
    expect(await second.store.getWork(mac.udid)).toBeUndefined();
  }, 90_000);
});
