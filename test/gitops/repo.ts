/** Build fleet repositories in temp dirs for tests. */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { buildPlist, type PlistDict } from '../../src/protocol/plist.js';

export function makeRepo(files: Record<string, string | Buffer>): string {
  const root = mkdtempSync(join(tmpdir(), 'orchard-fleet-'));
  writeFiles(root, files);
  return root;
}

export function writeFiles(root: string, files: Record<string, string | Buffer>): void {
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), content);
  }
}

export const profile = (name: string, identifier: string, payloads: string, extra = '') => `apiVersion: orchard/v1
kind: Profile
metadata:
  name: ${name}
spec:
  identifier: ${identifier}
  displayName: ${name}
${extra}  payloads:
${payloads}`;

export const passcodePayload = `    - type: com.apple.mobiledevice.passwordpolicy
      keys:
        minLength: 8
`;

export const blueprint = (name: string, selector: string, profiles: string[]) => `apiVersion: orchard/v1
kind: Blueprint
metadata:
  name: ${name}
spec:
  selector:
${selector}
  profiles: [${profiles.join(', ')}]
`;

/** A small valid `.mobileconfig` (XML), with top-level keys replaced or added by `extra`. */
export const mobileconfig = (extra: Record<string, unknown> = {}) =>
  buildPlist({
    PayloadType: 'Configuration',
    PayloadIdentifier: 'com.example.file',
    PayloadUUID: '11111111-2222-3333-4444-555555555555',
    PayloadVersion: 1,
    PayloadDisplayName: 'From a file',
    PayloadContent: [
      {
        PayloadType: 'com.apple.mobiledevice.passwordpolicy',
        PayloadIdentifier: 'com.example.file.pw',
        PayloadUUID: '11111111-2222-3333-4444-555555555556',
        PayloadVersion: 1,
        minLength: 6,
      },
    ],
    ...extra,
  } as PlistDict);

/** A Profile document named `f` that reads `path`. */
export const fileProfile = (path: string) => `apiVersion: orchard/v1\nkind: Profile\nmetadata: {name: f}\nspec:\n  file: ${path}\n`;
