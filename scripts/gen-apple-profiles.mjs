#!/usr/bin/env node
// Generates src/gitops/apple/profiles.json from Apple's device-management schema files
// (mdm/profiles/*.yaml): per PayloadType its supported OS versions and its key tree (type,
// presence, allowed values, ranges, per-key OS support, subkeys), plus the profile's top-level
// keys and the keys every payload shares. src/gitops/apple/payloads.ts validates authored
// payloads against it so a typo'd or unsupported key never reaches a device.
// Usage: node scripts/gen-apple-profiles.mjs [path to apple-device-management]
//        (or ORCHARD_APPLE_SCHEMA=path; default ../shared/reference/apple-device-management).
// The output is committed: nothing reads Apple's YAML at test or run time.
//
// Output shape (descriptions dropped to keep it small):
//   { topLevel: Payload, common: Payload, payloads: { [PayloadType]: Payload } }
//   Payload = { files, title, os, keys, defs?, variants?, open? }
//             open: a preference domain Apple documents only partly; other keys are managed
//             preferences macOS applies as they are, not unknown keys.
//   Key     = { type, presence?: 'required', requiredIf?, requiredUnless?, excludes?, rangelist?,
//               range?, format?, repetition?, os?, subkeys?: { [name]: Key }, ref?: defs name }
// `os` on a key holds only Apple's overrides; a key inherits the rest from its parent (Apple's
// rule, docs/schema.md). Array subkeys hold one entry: the item (its name is a placeholder).
// Subkey lists Apple shares through YAML anchors (some recursive) are emitted once in `defs`.
import { readFileSync, readdirSync, writeFileSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { convertKeys, notes, osSummary, pretty, sharedLists, versionLess } from './apple-schema.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const src = process.argv[2] ?? process.env.ORCHARD_APPLE_SCHEMA ?? join(here, '../../shared/reference/apple-device-management');
const dir = join(src, 'mdm/profiles');
const docs = [];
for (const file of readdirSync(dir)
  .filter((f) => f.endsWith('.yaml'))
  .sort()) {
  const doc = parse(readFileSync(join(dir, file), 'utf8'), { maxAliasCount: -1 });
  const payloadType = doc?.payload?.payloadtype;
  if (!payloadType || !Array.isArray(doc.payloadkeys)) continue;
  docs.push({ file: `mdm/profiles/${file}`, doc, payloadType });
}

function convertFile({ file, doc }, state) {
  for (const l of sharedLists(doc.payloadkeys)) state.shared.add(l);
  return { files: [file], title: doc.title ?? '', os: osSummary(doc.payload.supportedOS) ?? {}, keys: convertKeys(doc.payloadkeys, state, file) };
}

function newState() {
  return { shared: new Set(), defName: new Map(), defs: {} };
}

function withDefs(p, state) {
  return Object.keys(state.defs).length ? { ...p, defs: state.defs } : p;
}

// A PayloadType described by several files: a file whose first required single-value key is
// unconstrained in a sibling file is a variant selected by that value (the Kerberos SSO
// extension); the others describe disjoint key sets of one payload (com.apple.MCX) and merge.
function discriminator(entry, group) {
  const k = entry.doc.payloadkeys.find((x) => x.presence === 'required' && Array.isArray(x.rangelist) && x.rangelist.length === 1);
  if (!k) return undefined;
  const elsewhere = group.some(
    (o) => o !== entry && o.doc.payloadkeys.some((x) => x.key === k.key && !(Array.isArray(x.rangelist) && x.rangelist.length === 1)),
  );
  return elsewhere ? { key: k.key, equals: k.rangelist[0] } : undefined;
}

function mergeUnion(group) {
  const state = newState();
  const parts = group.map((e) => convertFile(e, state));
  const os = {};
  for (const platform of new Set(parts.flatMap((p) => Object.keys(p.os)))) {
    const supported = parts.map((p) => p.os[platform]).filter((o) => o && o.introduced !== 'n/a');
    if (!supported.length) {
      os[platform] = { introduced: 'n/a' };
      continue;
    }
    const earliest = supported.reduce((a, b) => (b.introduced && a.introduced && versionLess(b.introduced, a.introduced) ? b : a));
    os[platform] = { ...earliest };
  }
  const keys = {};
  for (const p of parts) {
    for (const [name, def] of Object.entries(p.keys)) {
      if (Object.hasOwn(keys, name)) {
        if (JSON.stringify(keys[name]) !== JSON.stringify(def))
          notes.push(`${p.files[0]}/${name}: differs from an earlier file of the same type, kept the first`);
        continue;
      }
      // The file's own payload-level support becomes the key's override where it differs.
      const override = {};
      for (const [platform, entry] of Object.entries(p.os)) {
        const diff = Object.fromEntries(Object.entries(entry).filter(([f, v]) => os[platform]?.[f] !== v));
        if (Object.keys(diff).length) override[platform] = diff;
      }
      for (const [platform, entry] of Object.entries(def.os ?? {})) override[platform] = { ...override[platform], ...entry };
      const merged = { ...def };
      delete merged.os;
      if (Object.keys(override).length) merged.os = override;
      // A key one file requires cannot be required of a payload that uses another file's keys.
      if (merged.presence === 'required' && !parts.every((q) => q.keys[name]?.presence === 'required')) {
        delete merged.presence;
        notes.push(`${p.files[0]}/${name}: required in one file of a merged type, made optional`);
      }
      keys[name] = merged;
    }
  }
  const titles = [...new Set(parts.map((p) => p.title).filter(Boolean))];
  return withDefs({ files: parts.flatMap((p) => p.files), title: titles.join(' / '), os, keys }, state);
}

function convertType(group) {
  if (group.length === 1) {
    const state = newState();
    return withDefs(convertFile(group[0], state), state);
  }
  const variants = [];
  const rest = [];
  for (const e of group) {
    const when = discriminator(e, group);
    if (when) variants.push({ e, when });
    else rest.push(e);
  }
  if (!rest.length) throw new Error(`${group[0].payloadType}: every file is a variant, no base`);
  const base = mergeUnion(rest);
  if (variants.length) {
    base.variants = variants.map(({ e, when }) => {
      const state = newState();
      notes.push(`${e.file}: variant of ${e.payloadType} when ${when.key} = ${JSON.stringify(when.equals)}`);
      return { when, ...withDefs(convertFile(e, state), state) };
    });
  }
  if (rest.length > 1) notes.push(`${base.files.join(', ')}: merged into one ${group[0].payloadType}`);
  return base;
}

const groups = new Map();
for (const d of docs) groups.set(d.payloadType, [...(groups.get(d.payloadType) ?? []), d]);
const out = { topLevel: undefined, common: undefined, payloads: {} };
for (const [payloadType, group] of [...groups].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
  const converted = convertType(group);
  if (payloadType === 'TopLevel') out.topLevel = converted;
  else if (payloadType === 'CommonPayloadKeys') out.common = converted;
  else out.payloads[payloadType] = converted;
}
if (!out.topLevel || !out.common) throw new Error('TopLevel.yaml or CommonPayloadKeys.yaml missing');

// Where Apple's YAML and real devices disagree, the device is right. Each entry corrects one
// known quirk, says why, and fails loudly when the YAML it corrects changes (then re-check it).
// test/gitops/apple-overrides.test.ts holds a test for each.
const keyAt = (keys, path, what) => {
  let k = { subkeys: keys };
  for (const name of path) {
    k = k.subkeys?.[name];
    if (!k) throw new Error(`override "${what}": ${path.join('.')} not found in Apple's YAML any more`);
  }
  return k;
};
const payloadOf = (type, what) => {
  const p = out.payloads[type];
  if (!p) throw new Error(`override "${what}": payload type ${type} not found in Apple's YAML any more`);
  return p;
};
const OVERRIDES = [
  {
    what: 'PayloadEnabled at profile and payload level',
    // Written by Profile Manager, ProfileCreator and iMazing Profile Editor; macOS reads it (false
    // installs the payload disabled). Apple's YAML lists it nowhere.
    apply() {
      for (const keys of [out.topLevel.keys, out.common.keys]) {
        if (keys.PayloadEnabled) throw new Error('override "PayloadEnabled": Apple documents it now; drop this entry');
        keys.PayloadEnabled = { type: 'boolean' };
      }
    },
  },
  {
    what: 'com.apple.system.logging keys supported on macOS',
    // Apple marks Processes, Subsystems and System "n/a" on macOS, the only platform of the payload,
    // so every key would be "not supported on any platform"; macOS 10.12+ applies them (log(1)).
    apply() {
      const p = payloadOf('com.apple.system.logging', this.what);
      for (const name of ['Processes', 'Subsystems', 'System']) {
        const k = keyAt(p.keys, [name], this.what);
        if (k.os?.macOS?.introduced !== 'n/a') throw new Error(`override "${this.what}": ${name} is no longer n/a on macOS; drop this entry`);
        delete k.os.macOS;
        if (Object.keys(k.os).length === 0) delete k.os;
      }
    },
  },
  {
    what: 'com.apple.screensaver moduleName optional',
    // Apple marks it required, yet macOS installs a screensaver payload with only idleTime or
    // modulePath (and Apple's own examples set modulePath alone).
    apply() {
      const k = keyAt(payloadOf('com.apple.screensaver', this.what).keys, ['moduleName'], this.what);
      if (k.presence !== 'required') throw new Error(`override "${this.what}": moduleName is optional upstream now; drop this entry`);
      delete k.presence;
    },
  },
  {
    what: 'com.apple.vpn.managed VPN.RemoteAddress',
    // The server of a VPN-type (custom provider) configuration: Apple's prose and every VPN profile
    // set VPN.RemoteAddress, but the YAML lists it only in the IKEv2/IPSec dictionaries.
    apply() {
      const k = keyAt(payloadOf('com.apple.vpn.managed', this.what).keys, ['VPN'], this.what);
      if (k.subkeys.RemoteAddress) throw new Error(`override "${this.what}": Apple lists it now; drop this entry`);
      k.subkeys.RemoteAddress = { type: 'string' };
    },
  },
  {
    what: 'com.apple.ManagedClient.preferences MCX structure',
    // Managed preferences as macOS's MCX reads them: Forced, Set-Once and Often (the YAML has only
    // the first two); each item carries, next to mcx_preference_settings, the metadata Profile
    // Manager and Workgroup Manager write: mcx_data_timestamp (Set-Once: apply again when newer)
    // and mcx_targets (undocumented structure, so not checked).
    apply() {
      const p = payloadOf('com.apple.ManagedClient.preferences', this.what);
      const domain = keyAt(p.keys, ['PayloadContent', 'ANY'], this.what);
      if (!domain.subkeys.Forced || domain.subkeys.Often)
        throw new Error(`override "${this.what}": the domain dictionary changed upstream; re-check this entry`);
      domain.subkeys.Often = { ...domain.subkeys['Set-Once'] };
      const item = p.defs?.[domain.subkeys.Forced.ref]?.Settings;
      if (!item?.subkeys?.mcx_preference_settings) throw new Error(`override "${this.what}": mcx_preference_settings not found`);
      item.subkeys.mcx_data_timestamp = { type: 'date' };
      item.subkeys.mcx_targets = { type: 'any' };
    },
  },
  {
    what: 'preference domains Apple documents only partly',
    // These payloads are preference domains: macOS applies every key as a managed preference, and
    // admins set many that Apple's YAML leaves out (e.g. loginwindow's LoginwindowText variants,
    // Finder's ShowHardDrivesOnDesktop, AppleInterfaceStyle in .GlobalPreferences).
    apply() {
      for (const type of [
        'com.apple.loginwindow',
        'loginwindow',
        'com.apple.finder',
        'com.apple.screensaver',
        'com.apple.screensaver.user',
        '.GlobalPreferences',
      ]) {
        payloadOf(type, this.what).open = true;
      }
    },
  },
];
for (const o of OVERRIDES) {
  o.apply();
  notes.push(`override: ${o.what}`);
}

const target = join(here, '../src/gitops/apple');
const json = pretty(out, '') + '\n';
writeFileSync(join(target, 'profiles.json'), json);
// Apple's copy is read-only; rewrite rather than copy so a rerun can replace ours.
rmSync(join(target, 'LICENSE.txt'), { force: true });
writeFileSync(join(target, 'LICENSE.txt'), readFileSync(join(src, 'LICENSE.txt')));
for (const n of notes) console.log(`note: ${n}`);
let keyCount = 0;
const count = (keys) => {
  for (const k of Object.values(keys)) {
    keyCount++;
    if (k.subkeys) count(k.subkeys);
  }
};
for (const p of [out.topLevel, out.common, ...Object.values(out.payloads)]) {
  for (const v of [p, ...(p.variants ?? [])]) {
    count(v.keys);
    for (const d of Object.values(v.defs ?? {})) count(d);
  }
}
console.log(`${Object.keys(out.payloads).length} payload types, ${keyCount} keys, ${json.length} bytes -> src/gitops/apple/profiles.json`);
