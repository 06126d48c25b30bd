/** ABM's side of a server token in tests: openssl encrypts it to the key pair, as ABM does, and it is imported as `orchard abm token import` does. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createKeypair, importToken } from '../../src/abm/material.js';
import type { OAuthCredentials } from '../../src/abm/oauth1.js';
import { serverTokenText } from '../../src/abm/token.js';
import { openssl } from './openssl.js';
import type { ServerConfig } from '../../src/config.js';
import { startTestServer, type TestServer } from './server.js';

export function importAbmToken(dataDir: string, name: string, expiry: Date, credentials: OAuthCredentials): void {
  const kp = createKeypair(dataDir);
  const input = join(dataDir, `${name}.txt`);
  writeFileSync(input, serverTokenText({ ...credentials, accessTokenExpiry: expiry }));
  importToken(dataDir, openssl(['smime', '-encrypt', '-aes256', '-in', input, kp.certFile]), name);
}

/**
 * The configuration of a server on a fleet repository (polling and drift checks off) with an ABM
 * token for the stand-in imported into its data directory; ABM is synced when a test calls
 * `server.abm.runOnce()`.
 */
export function abmServerConfig(
  repo: { url: string; root: string },
  dep: { url: string },
  credentials: OAuthCredentials,
  tokenExpiry = new Date(Date.now() + 300 * 86_400_000),
): Partial<ServerConfig> {
  const dataDir = join(repo.root, 'server');
  importAbmToken(dataDir, 'acme', tokenExpiry, credentials);
  return { repo: repo.url, pollIntervalMs: 0, driftIntervalMs: 0, dataDir, abmUrl: dep.url, abmSyncIntervalMs: 0, publicUrl: 'https://mdm.example.com' };
}

/** A server started with `abmServerConfig`. */
export function startAbmServer(repo: { url: string; root: string }, dep: { url: string }, credentials: OAuthCredentials): Promise<TestServer> {
  return startTestServer(abmServerConfig(repo, dep, credentials));
}
