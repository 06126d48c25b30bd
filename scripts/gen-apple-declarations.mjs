#!/usr/bin/env node
// Generates src/ddm/apple/declarations.json from Apple's declarative schema
// (declarative/declarations/**, declarative/status/*.yaml): per declaration Type its class
// (activation, asset, configuration, management), supported OS versions, enrollments and
// channels, its key tree (the same shape as src/gitops/apple/profiles.json, converted by
// scripts/apple-schema.mjs), the keys naming assets, Apple's status reasons and status item names.
// src/ddm/schema.ts validates authored declarations against it.
// Usage: node scripts/gen-apple-declarations.mjs [path to apple-device-management]
//        (or ORCHARD_APPLE_SCHEMA=path; default ../shared/reference/apple-device-management).
// The output is committed: nothing reads Apple's YAML at test or run time.
//
// Output shape (descriptions dropped):
//   { declarations: { [Type]: Declaration }, reasons: { [code]: description }, statusItems: { [name]: os } }
//   Declaration = { files, title, class, os, keys, defs?, assetRefs?: [{ path, types }] }
//   os[platform] = { introduced, removed?, supervised?: true, devicechannel, userchannel }
// Enrollments: Apple lists `allowed-enrollments` (supervised, device, user, local). On iOS, tvOS,
// visionOS and watchOS a list without `device` and `user` means supervision is required
// (supervised: true, which the payload validator warns about). macOS lists `supervised` for
// every device enrollment (it has no separate `device` entry), so nothing is derived there.
// Scopes: `allowed-scopes` system / user become devicechannel / userchannel.
import { readFileSync, readdirSync, writeFileSync, rmSync, mkdirSync, statSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { convertKeys, notes, osSummary, pretty, sharedLists } from './apple-schema.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const src = process.argv[2] ?? process.env.ORCHARD_APPLE_SCHEMA ?? join(here, '../../shared/reference/apple-device-management');
const root = join(src, 'declarative');
const CLASSES = { activations: 'activation', assets: 'asset', configurations: 'configuration', management: 'management' };

function yamlFiles(dir) {
  const out = [];
  for (const f of readdirSync(dir).sort()) {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) out.push(...yamlFiles(p));
    else if (f.endsWith('.yaml')) out.push(p);
  }
  return out;
}

const rel = (p) => p.slice(src.length + 1).replace(/\\/g, '/');

function declarationOS(supportedOS) {
  const os = osSummary(supportedOS) ?? {};
  for (const [platform, entry] of Object.entries(supportedOS ?? {})) {
    if (!entry || typeof entry !== 'object' || !os[platform] || os[platform].introduced === 'n/a') continue;
    const enrollments = entry['allowed-enrollments'];
    if (
      Array.isArray(enrollments) &&
      platform !== 'macOS' &&
      enrollments.includes('supervised') &&
      !enrollments.includes('device') &&
      !enrollments.includes('user')
    )
      os[platform].supervised = true;
    const scopes = [...(entry['allowed-scopes'] ?? []), ...(entry.sharedipad?.['allowed-scopes'] ?? [])];
    if (scopes.length) {
      os[platform].devicechannel = scopes.includes('system');
      os[platform].userchannel = scopes.includes('user');
    }
  }
  return os;
}

/** Keys whose value names an asset declaration, by key path ('*' for an array's items). */
function assetRefs(list, path = [], out = []) {
  for (const k of list ?? []) {
    const here = [...path, k.key];
    if (Array.isArray(k.assettypes)) out.push({ path: here, types: k.assettypes.map(String) });
    if (!Array.isArray(k.subkeys)) continue;
    if (k.type === '<array>') {
      const item = k.subkeys[0];
      if (!item) continue;
      if (Array.isArray(item.assettypes)) out.push({ path: [...here, '*'], types: item.assettypes.map(String) });
      if (Array.isArray(item.subkeys)) assetRefs(item.subkeys, [...here, '*'], out);
    } else assetRefs(k.subkeys, here, out);
  }
  return out;
}

const out = { declarations: {}, reasons: {}, statusItems: {} };
const base = parse(readFileSync(join(root, 'declarations/declarationbase.yaml'), 'utf8'));
for (const r of base.reasons ?? []) out.reasons[r.value] = String(r.description ?? '').replace(/\s+/g, ' ');

for (const [folder, cls] of Object.entries(CLASSES)) {
  for (const path of yamlFiles(join(root, 'declarations', folder))) {
    const doc = parse(readFileSync(path, 'utf8'), { maxAliasCount: -1 });
    const type = doc?.payload?.declarationtype;
    if (typeof type !== 'string' || !Array.isArray(doc.payloadkeys)) {
      notes.push(`${rel(path)}: no declarationtype or payloadkeys, skipped`);
      continue;
    }
    if (out.declarations[type]) throw new Error(`${type} defined twice (${rel(path)})`);
    const state = { shared: sharedLists(doc.payloadkeys), defName: new Map(), defs: {} };
    const d = {
      files: [rel(path)],
      title: doc.title ?? '',
      class: cls,
      os: declarationOS(doc.payload.supportedOS),
      keys: convertKeys(doc.payloadkeys, state, rel(path)),
    };
    if (Object.keys(state.defs).length) d.defs = state.defs;
    const refs = assetRefs(doc.payloadkeys);
    if (refs.length) d.assetRefs = refs;
    out.declarations[type] = d;
  }
}
for (const path of yamlFiles(join(root, 'status'))) {
  const doc = parse(readFileSync(path, 'utf8'), { maxAliasCount: -1 });
  const name = doc?.payload?.statusitemtype;
  if (typeof name === 'string') out.statusItems[name] = declarationOS(doc.payload.supportedOS);
}
out.declarations = Object.fromEntries(Object.entries(out.declarations).sort(([a], [b]) => (a < b ? -1 : 1)));

const target = join(here, '../src/ddm/apple');
mkdirSync(target, { recursive: true });
const json = pretty(out, '') + '\n';
writeFileSync(join(target, 'declarations.json'), json);
rmSync(join(target, 'LICENSE.txt'), { force: true });
writeFileSync(join(target, 'LICENSE.txt'), readFileSync(join(src, 'LICENSE.txt')));
for (const n of notes) console.log(`note: ${n}`);
console.log(
  `${Object.keys(out.declarations).length} declaration types, ${Object.keys(out.reasons).length} reasons, ${Object.keys(out.statusItems).length} status items, ${json.length} bytes -> src/ddm/apple/declarations.json`,
);
