/**
 * Community manifests of preference domains (the ProfileManifests plist format that ProfileCreator
 * and iMazing Profile Editor use: pfm_domain, pfm_subkeys, pfm_name, pfm_type, pfm_range_list,
 * pfm_range_min/max, pfm_format, pfm_require, pfm_repetition_min/max), read from a local folder
 * (`--manifests DIR`) and converted to the schema form payloads.ts validates against. Orchard
 * ships none: the admin points at a checkout of the manifests they trust.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parsePlist, TRUSTED_LIMITS, type PlistValue } from '../protocol/plist.js';
import type { KeyJson, KeysJson, KeyType, ManifestLookup, PayloadJson } from './apple/payloads.js';

/** Bounds on the folder: ProfileManifests holds about 1,500 manifests of a few KB to 200 KB each. */
const MAX_FILES = 20_000;
const MAX_FILE_BYTES = 4 << 20;
const MAX_DEPTH = 8;

type Dict = { [key: string]: PlistValue };
const isDict = (v: unknown): v is Dict => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof Date);

const PFM_TYPES: Record<string, KeyType> = {
  string: 'string',
  url: 'string',
  integer: 'integer',
  real: 'real',
  float: 'real',
  boolean: 'boolean',
  date: 'date',
  data: 'data',
  array: 'array',
  dictionary: 'dictionary',
};

/** pfm_subkeys -> KeysJson. An entry without pfm_name stands for every key (or, in an array, every item). */
function convertSubkeys(list: PlistValue[], isArray: boolean): KeysJson {
  const out: KeysJson = {};
  for (const sub of list) {
    if (!isDict(sub)) continue;
    const name = isArray ? 'item' : typeof sub.pfm_name === 'string' && sub.pfm_name !== '' ? sub.pfm_name : 'ANY';
    const key = convertKey(sub);
    const prev = out[name];
    if (isArray && prev) continue; // an array's item is described once; later entries are alternatives
    // The same name twice (pfm_conditionals variants): only what both agree on is checked.
    out[name] = prev && prev.type !== key.type ? { type: 'any' } : (prev ?? key);
  }
  return out;
}

function convertKey(sub: Dict): KeyJson {
  const type = PFM_TYPES[String(sub.pfm_type ?? '')] ?? 'any';
  const k: KeyJson = { type };
  if (sub.pfm_require === 'always') k.presence = 'required';
  if (Array.isArray(sub.pfm_range_list)) {
    const values = sub.pfm_range_list.filter((v): v is string | number | boolean => typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean');
    if (values.length === sub.pfm_range_list.length && values.length > 0) k.rangelist = values;
  }
  const min = typeof sub.pfm_range_min === 'number' ? sub.pfm_range_min : undefined;
  const max = typeof sub.pfm_range_max === 'number' ? sub.pfm_range_max : undefined;
  if (min !== undefined || max !== undefined) k.range = { ...(min !== undefined ? { min } : {}), ...(max !== undefined ? { max } : {}) };
  // ProfileCreator matches pfm_format against the whole value (NSPredicate MATCHES).
  if (typeof sub.pfm_format === 'string') k.format = `^(?:${sub.pfm_format})$`;
  const subkeys = Array.isArray(sub.pfm_subkeys) ? sub.pfm_subkeys : undefined;
  if (type === 'dictionary') {
    // A dictionary the manifest does not describe is free-form.
    k.subkeys = subkeys && subkeys.length > 0 ? convertSubkeys(subkeys, false) : { ANY: { type: 'any' } };
  } else if (type === 'array' && subkeys && subkeys.length > 0) {
    k.subkeys = convertSubkeys(subkeys, true);
    const item = k.subkeys.item;
    const rmin = typeof sub.pfm_repetition_min === 'number' ? sub.pfm_repetition_min : undefined;
    const rmax = typeof sub.pfm_repetition_max === 'number' ? sub.pfm_repetition_max : undefined;
    if (item && (rmin !== undefined || rmax !== undefined))
      item.repetition = { ...(rmin !== undefined ? { min: rmin } : {}), ...(rmax !== undefined ? { max: rmax } : {}) };
  }
  return k;
}

/** A parsed manifest file as the schema of its domain, or why it cannot be used. */
export function manifestSchema(manifest: PlistValue, file: string): { domain: string; schema: PayloadJson } | { problem: string } {
  if (!isDict(manifest)) return { problem: `${file}: not a dictionary` };
  const domain = manifest.pfm_domain;
  if (typeof domain !== 'string' || domain === '') return { problem: `${file}: no pfm_domain` };
  if (!Array.isArray(manifest.pfm_subkeys)) return { problem: `${file}: no pfm_subkeys` };
  const title = typeof manifest.pfm_title === 'string' ? manifest.pfm_title : domain;
  return { domain, schema: { files: [file], title, os: {}, keys: convertSubkeys(manifest.pfm_subkeys, false) } };
}

/**
 * The manifests under a folder, read lazily: a domain is looked up first in `<domain>.plist`
 * (ProfileManifests' naming), then, once, in every other file by its pfm_domain.
 */
export class ManifestSet implements ManifestLookup {
  private readonly files = new Map<string, string[]>();
  private readonly schemas = new Map<string, PayloadJson>();
  private readonly parsed = new Set<string>();
  private scannedAll = false;
  /** Files that could not be used, for a note (never fatal: a manifest is advice). */
  readonly problems: string[] = [];

  constructor(readonly dir: string) {
    const pending: [string, number][] = [[dir, 0]];
    let count = 0;
    while (pending.length > 0) {
      const [d, depth] = pending.pop()!;
      let entries;
      try {
        entries = readdirSync(d, { withFileTypes: true });
      } catch (err) {
        this.problems.push(`${d}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
        continue;
      }
      for (const e of entries) {
        if (e.name.startsWith('.')) continue;
        const path = join(d, e.name);
        if (e.isDirectory() && depth < MAX_DEPTH) pending.push([path, depth + 1]);
        else if (e.isFile() && e.name.endsWith('.plist') && ++count <= MAX_FILES) {
          const stem = basename(e.name, '.plist');
          this.files.set(stem, [...(this.files.get(stem) ?? []), path]);
        }
      }
    }
    if (count > MAX_FILES) this.problems.push(`${dir}: more than ${MAX_FILES} manifests; the rest are not read`);
  }

  get(domain: string): PayloadJson | undefined {
    const hit = this.schemas.get(domain);
    if (hit) return hit;
    for (const f of this.files.get(domain) ?? []) this.read(f);
    if (!this.schemas.has(domain) && !this.scannedAll) {
      this.scannedAll = true;
      for (const list of this.files.values()) for (const f of list) this.read(f);
    }
    return this.schemas.get(domain);
  }

  private read(file: string): void {
    if (this.parsed.has(file)) return;
    this.parsed.add(file);
    try {
      if (statSync(file).size > MAX_FILE_BYTES) throw new Error(`larger than ${MAX_FILE_BYTES} bytes`);
      const r = manifestSchema(parsePlist(readFileSync(file), TRUSTED_LIMITS), file);
      if ('problem' in r) this.problems.push(r.problem);
      else if (!this.schemas.has(r.domain)) this.schemas.set(r.domain, r.schema);
    } catch (err) {
      this.problems.push(`${file}: ${(err as Error).message.slice(0, 200)}`);
    }
  }
}
