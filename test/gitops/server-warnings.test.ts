/**
 * A real server (the validating child process, dist/src/gitops/load-worker.js): a revision with
 * warnings is applied and its warnings are shown; the `manifests` option reaches the child.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import type { SourceStatus } from '../../src/gitops/source.js';
import { buildPlist } from '../../src/protocol/plist.js';
import { http, startTestServer, type TestServer } from '../helpers/server.js';
import { FleetRepo } from './helpers.js';
import { blueprint, profile } from './repo.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function serve(files: Record<string, string>, cfg: { manifests?: string } = {}): Promise<{ server: TestServer; commit: string }> {
  const repo = new FleetRepo();
  cleanups.push(() => repo.cleanup());
  for (const [path, text] of Object.entries(files)) repo.write(path, text);
  const commit = repo.commit('fleet');
  const server = await startTestServer({ repo: repo.url, pollIntervalMs: 0, dataDir: join(repo.root, 'server-data'), ...cfg });
  cleanups.push(() => server.stop());
  return { server, commit };
}
const status = async (s: TestServer) =>
  (await http(`${s.url}/api/v1/source`, { headers: { authorization: `Bearer ${s.readToken}` } })).json() as Promise<SourceStatus>;

const fleet = {
  'p.yaml': profile(
    'p',
    'com.example.p',
    [
      '    - type: com.apple.mobiledevice.passwordpolicy',
      '      keys:',
      '        minLength: 8',
      '        minLenght: 8',
      '    - type: com.google.Chrome',
      '      keys: {HomepageIsNewTabPage: "yes"}',
      '',
    ].join('\n'),
  ),
  'b.yaml': blueprint('b', '    platforms: [macOS]', ['p']),
};

describe('the manifests setting', () => {
  it('comes from --manifests or the config file (relative to it)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'orchard-config-'));
    writeFileSync(join(dir, 'orchard.yaml'), 'manifests: ../profile-manifests\n');
    expect(loadConfig({ config: join(dir, 'orchard.yaml') }).manifests).toBe(join(dir, '../profile-manifests'));
    expect(loadConfig({ config: join(dir, 'orchard.yaml'), manifests: 'elsewhere' }).manifests).toBe(join(process.cwd(), 'elsewhere'));
    expect(loadConfig({}).manifests).toBeUndefined();
  });
});

describe('the server and findings that are not errors', () => {
  it('applies a revision with warnings and shows them (and the notes) in GET /api/v1/source', async () => {
    const { server, commit } = await serve(fleet);
    const st = await status(server);
    expect(st.applied?.commit).toBe(commit);
    expect(st.applied).toMatchObject({ valid: true, errorCount: 0, warningCount: 1 });
    expect(st.applied!.errors.map((d) => `${d.file}:${d.line} ${d.severity} ${d.rule}`)).toEqual([
      'p.yaml:12 warning apple-unknown-key',
      'p.yaml:13 info custom-preferences',
    ]);
    expect(server.source!.current()?.fleet.profiles.get('p')?.payloads).toHaveLength(2);
  });

  it('with `manifests`, the validating process checks the domain and refuses a value the app would misread', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'orchard-manifests-'));
    writeFileSync(
      join(dir, 'com.google.Chrome.plist'),
      buildPlist({ pfm_domain: 'com.google.Chrome', pfm_subkeys: [{ pfm_name: 'HomepageIsNewTabPage', pfm_type: 'boolean' }] }),
    );
    const { server, commit } = await serve(fleet, { manifests: dir });
    const st = await status(server);
    expect(st.applied).toBeUndefined();
    expect(st.lastAttempt).toMatchObject({ commit, valid: false, errorCount: 1 });
    expect(st.lastAttempt!.errors[0]).toMatchObject({ file: 'p.yaml', line: 14, severity: 'error', rule: 'manifest-type' });
  });
});
