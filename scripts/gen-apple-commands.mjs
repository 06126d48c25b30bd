#!/usr/bin/env node
// Generates src/protocol/apple/commands.json from Apple's device-management schema files
// (mdm/commands/*.yaml): each RequestType with its top-level keys (type, presence, allowed
// values). The admin API validates queued commands against it so a typo never reaches a device.
// Usage: node scripts/gen-apple-commands.mjs [path to apple-device-management]
import { readFileSync, readdirSync, writeFileSync, copyFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

const here = dirname(fileURLToPath(import.meta.url));
const src = process.argv[2] ?? join(here, '../../shared/reference/apple-device-management');
const dir = join(src, 'mdm/commands');
const out = {};
for (const file of readdirSync(dir)
  .filter((f) => f.endsWith('.yaml'))
  .sort()) {
  const doc = parse(readFileSync(join(dir, file), 'utf8'));
  const requestType = doc?.payload?.requesttype;
  if (!requestType) continue;
  const keys = {};
  for (const k of doc.payloadkeys ?? []) {
    keys[k.key] = {
      type: String(k.type).replace(/[<>]/g, ''),
      presence: k.presence ?? 'optional',
      ...(Array.isArray(k.rangelist) ? { rangelist: k.rangelist } : {}),
    };
  }
  out[requestType] = { file: `mdm/commands/${file}`, keys };
}
const target = join(here, '../src/protocol/apple');
writeFileSync(join(target, 'commands.json'), JSON.stringify(out, null, 1) + '\n');
copyFileSync(join(src, 'LICENSE.txt'), join(target, 'LICENSE.txt'));
console.log(`${Object.keys(out).length} request types -> src/protocol/apple/commands.json`);
