/** ABM's side of a server token in tests: openssl encrypts it to the key pair, as ABM does, and it is imported as `orchard abm token import` does. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createKeypair, importToken } from '../../src/abm/material.js';
import type { OAuthCredentials } from '../../src/abm/oauth1.js';
import { serverTokenText } from '../../src/abm/token.js';
import { openssl } from './openssl.js';

export function importAbmToken(dataDir: string, name: string, expiry: Date, credentials: OAuthCredentials): void {
  const kp = createKeypair(dataDir);
  const input = join(dataDir, `${name}.txt`);
  writeFileSync(input, serverTokenText({ ...credentials, accessTokenExpiry: expiry }));
  importToken(dataDir, openssl(['smime', '-encrypt', '-aes256', '-in', input, kp.certFile]), name);
}
