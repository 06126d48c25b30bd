// Conversion of Apple's device-management YAML (mdm/profiles and declarative/declarations share
// its format: payloadkeys with type, presence, rangelist, range, supportedOS, subkeys) into the
// compact key trees src/gitops/apple/payloads.ts validates against. Shared by
// gen-apple-profiles.mjs and gen-apple-declarations.mjs.
const OS_FIELDS = ['introduced', 'removed', 'supervised', 'devicechannel', 'userchannel'];
/** What the conversion changed or assumed, printed by the generators. */
export const notes = [];

export function osSummary(supportedOS) {
  const out = {};
  for (const [platform, entry] of Object.entries(supportedOS ?? {})) {
    if (!entry || typeof entry !== 'object') continue;
    const o = {};
    for (const f of OS_FIELDS) {
      if (entry[f] === undefined) continue;
      o[f] = f === 'introduced' || f === 'removed' ? String(entry[f]) : entry[f];
    }
    if (Object.keys(o).length) out[platform] = o;
  }
  return Object.keys(out).length ? out : undefined;
}

const literal = (s) => (s === 'true' ? true : s === 'false' ? false : s);

// Apple marks a few keys "required" whose own description makes them conditional; derive the
// condition from that text (printed below, so a wording change upstream shows in the log).
function condition(k, siblings) {
  const text = String(k.content ?? '').replace(/\s+/g, ' ');
  const has = (name) => siblings.some((s) => s.key === name);
  let m = /Required when the '(\w+)' is '([^']+)'/i.exec(text);
  if (m && has(m[1])) return { requiredIf: { key: m[1], equals: literal(m[2]) } };
  m = /required when the '(\w+)' key is present/i.exec(text);
  if (m && has(m[1])) return { requiredIf: { key: m[1] } };
  m = /either '(\w+)' or '(\w+)', but not both/i.exec(text);
  if (m && (m[1] === k.key || m[2] === k.key)) {
    const other = m[1] === k.key ? m[2] : m[1];
    if (has(other)) return { requiredUnless: { key: other }, excludes: other };
  }
  m = /If '(\w+)' is '([^']+)', this \w+ isn't needed/i.exec(text);
  if (m && has(m[1])) return { requiredUnless: { key: m[1], equals: literal(m[2]) } };
  return undefined;
}

/** Converts one file's payloadkeys; `state` is shared by the files of one PayloadType. */
export function convertKeys(list, state, where) {
  const out = {};
  for (const k of list) {
    if (Object.hasOwn(out, k.key)) {
      notes.push(`${where}/${k.key}: listed twice, kept the first`);
      continue;
    }
    out[k.key] = convertKey(k, list, state, `${where}/${k.key}`);
  }
  return out;
}

function convertKey(k, siblings, state, where) {
  const d = { type: String(k.type).replace(/[<>]/g, '') };
  if (k.presence === 'required') {
    d.presence = 'required';
    const cond = condition(k, siblings);
    if (cond) {
      Object.assign(d, cond);
      notes.push(`${where}: required only ${JSON.stringify(cond)}`);
    }
  }
  if (Array.isArray(k.rangelist)) d.rangelist = k.rangelist;
  if (k.range && typeof k.range === 'object') d.range = k.range;
  if (typeof k.format === 'string') d.format = k.format;
  if (k.repetition && typeof k.repetition === 'object') d.repetition = k.repetition;
  const os = osSummary(k.supportedOS);
  if (os) d.os = os;
  let sub = Array.isArray(k.subkeys) ? k.subkeys : undefined;
  // TopLevel's ConsentText wraps its language->text entries in a dictionary named like an array
  // item ("ConsentTextItem"); real profiles have the entries directly, so lift them.
  if (
    d.type === 'dictionary' &&
    sub?.length === 1 &&
    sub[0].key === `${k.key}Item` &&
    sub[0].type === '<dictionary>' &&
    Array.isArray(sub[0].subkeys) &&
    !state.shared.has(sub)
  ) {
    notes.push(`${where}: lifted the subkeys of placeholder ${sub[0].key}`);
    sub = sub[0].subkeys;
  }
  if (sub) {
    if (state.shared.has(sub)) {
      let name = state.defName.get(sub);
      if (!name) {
        name = k.subkeytype ?? k.key;
        for (let i = 2; Object.hasOwn(state.defs, name); i++) name = `${k.subkeytype ?? k.key}${i}`;
        state.defName.set(sub, name);
        state.defs[name] = {}; // reserve the name: lists nested inside must pick another
        state.defs[name] = convertKeys(sub, state, `${where}(${name})`);
      }
      d.ref = name;
    } else {
      d.subkeys = convertKeys(sub, state, where);
    }
  }
  return d;
}

/** Subkey lists reached more than once (YAML aliases), by object identity. */
export function sharedLists(list) {
  const seen = new Set();
  const shared = new Set();
  (function scan(l) {
    if (seen.has(l)) {
      shared.add(l);
      return;
    }
    seen.add(l);
    for (const k of l) if (Array.isArray(k.subkeys)) scan(k.subkeys);
  })(list);
  return shared;
}

export function versionLess(a, b) {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d) return d < 0;
  }
  return false;
}

// Indented JSON, but any value that fits on a line stays on one: diffable and about half the size.
export function pretty(value, indent) {
  const flat = JSON.stringify(value);
  if (flat.length + indent.length <= 110 || value === null || typeof value !== 'object') return flat;
  const inner = indent + ' ';
  if (Array.isArray(value)) return `[\n${value.map((v) => inner + pretty(v, inner)).join(',\n')}\n${indent}]`;
  const entries = Object.entries(value).map(([k, v]) => `${inner}${JSON.stringify(k)}: ${pretty(v, inner)}`);
  return `{\n${entries.join(',\n')}\n${indent}}`;
}
