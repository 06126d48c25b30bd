/** Fleet repositories with declarations, for the DDM tests. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FleetRepo } from '../gitops/helpers.js';
import { freePort, startTestServer, type TestServer } from '../helpers/server.js';

export const passcodeDecl = (name = 'passcode', minLength = 8, extra = '') => `apiVersion: orchard/v1
kind: Declaration
metadata: {name: ${name}}
spec:
  Type: com.apple.configuration.passcode.settings
  Identifier: com.example.${name}
  Payload:
    MinimumLength: ${minLength}
    RequireAlphanumericPasscode: true
${extra}`;

export const ddmBlueprint = (name: string, declarations: string[], extra = '') => `apiVersion: orchard/v1
kind: Blueprint
metadata: {name: ${name}}
spec:
  selector: {platforms: [macOS]}
  declarations: [${declarations.join(', ')}]
${extra}`;

/** The profile `wifi` delivered as a com.apple.configuration.legacy declaration. */
export const LEGACY_WIFI_DECL = `apiVersion: orchard/v1
kind: Declaration
metadata: {name: wifi-legacy}
spec:
  Type: com.apple.configuration.legacy
  Identifier: com.example.wifi-legacy
  profile: wifi
`;

/**
 * A server on the repository's main branch with a public URL (legacy declarations need one) and
 * the secret `psk` the Wi-Fi profile uses.
 */
export async function startLegacyServer(repo: FleetRepo): Promise<TestServer> {
  mkdirSync(join(repo.root, 'secrets'), { recursive: true });
  writeFileSync(join(repo.root, 'secrets', 'psk'), 'psk-value-1');
  const port = await freePort();
  return startTestServer({
    listen: { host: '127.0.0.1', port },
    publicUrl: `http://127.0.0.1:${port}`,
    repo: repo.url,
    pollIntervalMs: 0,
    driftIntervalMs: 0,
    dataDir: join(repo.root, 'server'),
    secretsDir: join(repo.root, 'secrets'),
  });
}
