/**
 * `orchard import PATH... --out DIR`: existing .mobileconfig files (a folder of them, or
 * profiles exported from another MDM) become a fleet repository. Each profile is a Profile
 * document referring to a copy of the file (`file:`), or with `--to-yaml` a YAML document with
 * its payloads; signed profiles are always copied byte for byte. A blueprint lists them all and
 * selects no device. A conversion is kept only if the repository's own loader reads it back and
 * Orchard's renderer turns it into the same profile (PayloadUUIDs and payload identifiers aside,
 * which Orchard derives); otherwise the profile stays a `file:` and the output says why.
 */
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { DEFAULT_LIMITS, formatBytes } from '../gitops/limits.js';
import { loadFleet } from '../gitops/load.js';
import { hasIntegralReal, MobileconfigError, readProfile } from '../gitops/mobileconfig.js';
import type { ProfileDoc } from '../gitops/model.js';
import { parsePlist, TRUSTED_LIMITS, type PlistDict, type PlistValue } from '../protocol/plist.js';
import { renderProfile } from '../reconcile/render.js';

export interface ImportOptions {
  paths: string[];
  out: string;
  toYaml: boolean;
  format: 'text' | 'json';
}

export interface ImportOutput {
  exitCode: 0 | 1 | 2;
  stdout: string;
  stderr?: string;
}

interface Imported {
  source: string;
  name: string;
  identifier?: string;
  /** Repository paths of the Profile document and, for `file:`, the copy. */
  document: string;
  file?: string;
  as: 'yaml' | 'file';
  signed: boolean;
  /** Why a profile asked for as YAML is a `file:` (or is not in the blueprint). */
  note?: string;
  listed: boolean;
}

const BLUEPRINT = 'blueprints/imported.yaml';
const NAME = /^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$/;
const IDENTIFIER = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
/** Top-level keys a YAML Profile expresses (identifier, displayName, description, organization, scope, payloads). */
const TOP_KEYS = new Set([
  'PayloadType',
  'PayloadIdentifier',
  'PayloadUUID',
  'PayloadVersion',
  'PayloadDisplayName',
  'PayloadDescription',
  'PayloadOrganization',
  'PayloadScope',
  'PayloadContent',
]);
/**
 * Top-level keys whose value here is what a device assumes without them: left out of the YAML,
 * nothing changes. (PayloadEnabled is no top-level key of Apple's, but exporters write it.)
 */
const TOP_DEFAULTS: Record<string, PlistValue> = { PayloadEnabled: true, PayloadRemovalDisallowed: false };
/** Payload keys Orchard writes itself when rendering. */
const DERIVED_PAYLOAD_KEYS = new Set(['PayloadType', 'PayloadUUID', 'PayloadIdentifier', 'PayloadVersion']);

export async function runImport(opts: ImportOptions): Promise<ImportOutput> {
  // With --format json, stdout is JSON whatever happens.
  const usage = (m: string): ImportOutput => ({
    exitCode: 2,
    stdout: opts.format === 'json' ? `${JSON.stringify({ error: m })}\n` : '',
    stderr: `orchard import: ${m}\n`,
  });
  if (opts.paths.length === 0) return usage('name at least one .mobileconfig file or folder');
  const out = resolve(opts.out);
  try {
    const entries = await readdir(out);
    if (entries.length > 0) return usage(`${opts.out} is not empty: import into a new or empty folder`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      return usage(`cannot use ${opts.out}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }

  const skipped: { source: string; reason: string }[] = [];
  const sources: string[] = [];
  for (const p of opts.paths) {
    const found = await collect(resolve(p));
    if (typeof found === 'string') skipped.push({ source: p, reason: found });
    else sources.push(...found);
  }

  await mkdir(join(out, 'profiles'), { recursive: true });
  const imported: Imported[] = [];
  const names = new Set<string>();
  const byIdentifier = new Map<string, { bytes: Buffer; name: string }>();
  const originals = new Map<string, PlistDict>();
  for (const source of sources) {
    let bytes: Buffer;
    try {
      bytes = await readFile(source);
    } catch (err) {
      skipped.push({ source, reason: `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` });
      continue;
    }
    if (bytes.length > DEFAULT_LIMITS.profileFileBytes) {
      skipped.push({ source, reason: `larger than ${formatBytes(DEFAULT_LIMITS.profileFileBytes)} (the loader's limit profileFileBytes)` });
      continue;
    }
    let read;
    try {
      read = readProfile(bytes, { maxDepth: DEFAULT_LIMITS.depth });
    } catch (err) {
      skipped.push({ source, reason: err instanceof MobileconfigError ? err.message : String(err) });
      continue;
    }
    const { profile, signed } = read;
    const identifier = typeof profile.PayloadIdentifier === 'string' ? profile.PayloadIdentifier : undefined;
    const same = identifier === undefined ? undefined : byIdentifier.get(identifier);
    if (same?.bytes.equals(bytes)) {
      skipped.push({ source, reason: `the same file as profile "${same.name}"` });
      continue;
    }
    const name = uniqueName(nameFrom(identifier, profile.PayloadDisplayName, source), names);
    const entry: Imported = { source, name, identifier, document: `profiles/${name}.yaml`, as: 'file', signed, listed: !same };
    if (same) entry.note = `shares PayloadIdentifier ${identifier} with profile "${same.name}": not listed in the blueprint (one identifier per device)`;
    else if (identifier !== undefined) byIdentifier.set(identifier, { bytes, name });

    let spec: Record<string, unknown> | undefined;
    if (opts.toYaml && signed) entry.note = join2(entry.note, 'signed: kept byte for byte as file:');
    else if (opts.toYaml) {
      const converted = toYamlSpec(profile, () => hasIntegralReal(bytes));
      if ('reason' in converted) entry.note = join2(entry.note, `kept as file: ${converted.reason}`);
      else spec = converted.spec;
    }
    if (spec) {
      entry.as = 'yaml';
      originals.set(name, profile);
      await writeFile(join(out, entry.document), yamlDocument(entry, spec));
    } else {
      await writeFileProfile(out, entry, bytes);
    }
    imported.push(entry);
  }

  await mkdir(join(out, 'blueprints'), { recursive: true });
  await writeFile(join(out, BLUEPRINT), blueprintDocument(imported));

  // The repository's own loader and renderer judge every conversion, each in a repository of its
  // own (another profile's errors must not hide it); a miss is a file: after all.
  for (const e of imported.filter((x) => x.as === 'yaml')) {
    const reason = await roundTrip(e, await readFile(join(out, e.document)), originals.get(e.name)!);
    if (reason) {
      e.note = join2(e.note, `kept as file: ${reason}`);
      await writeFileProfile(out, e, await readFile(e.source));
    }
  }
  const result = await loadFleet(out);
  const errors = result.diagnostics.filter((d) => d.severity === 'error');
  const exitCode = skipped.length === 0 && errors.length === 0 ? 0 : 1;
  if (opts.format === 'json') {
    return {
      exitCode,
      stdout: `${JSON.stringify(
        {
          out,
          profiles: imported,
          skipped,
          blueprint: BLUEPRINT,
          validation: { valid: result.ok, errors: errors.length, warnings: result.diagnostics.length - errors.length, diagnostics: result.diagnostics },
        },
        null,
        2,
      )}\n`,
    };
  }
  const lines: string[] = [];
  for (const e of imported) {
    const how = e.as === 'yaml' ? 'YAML payloads' : `file: ${e.file}${e.signed ? ', signed: kept byte for byte' : ''}`;
    lines.push(`${e.document} <- ${e.source} (${how})${e.note ? `\n    ${e.note}` : ''}`);
  }
  for (const s of skipped) lines.push(`skipped ${s.source}: ${s.reason}`);
  lines.push(`${BLUEPRINT}: ${imported.filter((e) => e.listed).length} profiles, selecting no device (edit its selector to roll out)`);
  for (const d of result.diagnostics) lines.push(`${d.file}:${d.line}:${d.col}: ${d.severity}: ${d.message} [${d.rule}]`);
  lines.push(
    `imported ${imported.length} profiles into ${opts.out} (${imported.filter((e) => e.as === 'yaml').length} as YAML), skipped ${skipped.length}; orchard validate: ${result.ok ? 'valid' : 'invalid'}, ${errors.length} errors, ${result.diagnostics.length - errors.length} warnings`,
  );
  return { exitCode, stdout: `${lines.join('\n')}\n` };
}

const join2 = (a: string | undefined, b: string) => (a ? `${a}; ${b}` : b);

/** The profile files under `path` (a file is taken whatever its name), or why there are none. */
async function collect(path: string): Promise<string[] | string> {
  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    return `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
  }
  if (st.isFile()) return [path];
  if (!st.isDirectory()) return 'neither a file nor a folder (symbolic links are not followed)';
  const out: string[] = [];
  const walk = async (dir: string) => {
    for (const e of (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
      if (e.name.startsWith('.')) continue;
      const p = join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile() && /\.mobileconfig$/i.test(e.name)) out.push(p);
    }
  };
  await walk(path);
  return out.length > 0 ? out : 'no .mobileconfig files in this folder';
}

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;

/**
 * What to name a profile: its PayloadIdentifier without the UUIDs exporters put in them
 * (com.example.wifi.5C3E...-> com.example.wifi); if nothing is left, its display name, then the
 * file's name.
 */
function nameFrom(identifier: string | undefined, display: PlistValue | undefined, source: string): string {
  const meaningful = (s: string) => /[a-z0-9]/i.test(s.replace(/[^a-z0-9]+/gi, ''));
  const stripped = identifier
    ?.replace(UUID, '')
    .replace(/[.-]{2,}/g, '.')
    .replace(/^[.-]+|[.-]+$/g, '');
  if (stripped && meaningful(stripped)) return stripped;
  if (typeof display === 'string' && meaningful(display)) return display;
  return basename(source).replace(/\.[^.]*$/, '');
}

/** A metadata.name: lower case, [a-z0-9._-], at most 63; -2, -3... on collision. */
function uniqueName(from: string, taken: Set<string>): string {
  let base = from
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .slice(0, 63)
    .replace(/[^a-z0-9]+$/, '');
  if (!NAME.test(base)) base = 'profile';
  let name = base;
  for (let n = 2; taken.has(name); n++) name = `${base.slice(0, 63 - String(n).length - 1).replace(/[^a-z0-9]+$/, '')}-${n}`;
  taken.add(name);
  return name;
}

async function writeFileProfile(out: string, e: Imported, bytes: Buffer): Promise<void> {
  e.as = 'file';
  e.file = `files/${e.name}.mobileconfig`;
  await mkdir(join(out, 'files'), { recursive: true });
  await writeFile(join(out, e.file), bytes);
  const header = [`Imported by \`orchard import\` from ${basename(e.source)}${e.signed ? ' (signed: installed byte for byte)' : ''}.`];
  if (e.note) header.push(e.note);
  await writeFile(join(out, e.document), document(header, 'Profile', e.name, { file: `../${e.file}` }));
}

function yamlDocument(e: Imported, spec: Record<string, unknown>): string {
  const header = [
    `Imported by \`orchard import\` from ${basename(e.source)}. Orchard derives the PayloadUUIDs and`,
    'names each payload <identifier>.<n>.<type>.',
  ];
  if (e.note) header.push(e.note);
  return document(header, 'Profile', e.name, spec);
}

function document(comments: string[], kind: string, name: string, spec: Record<string, unknown>): string {
  const head = comments
    .flatMap((c) => c.split('\n'))
    .map((c) => `# ${c}`.trimEnd())
    .join('\n');
  return `${head}\n${stringify({ apiVersion: 'orchard/v1', kind, metadata: { name }, spec }, { lineWidth: 0 })}`;
}

function blueprintDocument(imported: Imported[]): string {
  const listed = imported.filter((e) => e.listed);
  const left = imported.filter((e) => !e.listed);
  const lines = [
    '# Written by `orchard import`: the imported profiles, on no device yet.',
    '# `serials: []` selects nothing. To roll out, replace it with a selector, for example',
    '#   platforms: [macOS]',
    '#   tags: [pilot]        # tags come from DeviceGroups',
    '# and perhaps start with `rollout: {percent: 10}`.',
    'apiVersion: orchard/v1',
    'kind: Blueprint',
    'metadata:',
    '  name: imported',
    'spec:',
    '  selector:',
    '    serials: []',
    listed.length > 0 ? '  profiles:' : '  profiles: []',
    ...listed.map((e) => `    - ${e.name}${' '.repeat(Math.max(1, 40 - e.name.length))}# ${comment(e.identifier ?? basename(e.source))}`),
  ];
  if (left.length > 0) {
    lines.push(
      '  # Not listed: each shares a PayloadIdentifier with a profile above, and a device has one',
      '  # profile per identifier. Give them blueprints whose devices are disjoint from this one.',
    );
    for (const e of left) lines.push(`  # - ${e.name}`);
  }
  return `${lines.join('\n')}\n`;
}

const comment = (s: string) => s.replace(/[\r\n]+/g, ' ');

/**
 * The spec of a YAML Profile for `profile`, or why the YAML format cannot say the same: keys it
 * has no place for, <data> and <date> (YAML here is JSON's types), reals with integral values,
 * and payloads that name each other's PayloadUUID (Orchard derives new ones).
 */
function toYamlSpec(profile: PlistDict, integralReal: () => boolean): { spec: Record<string, unknown> } | { reason: string } {
  const extra = Object.keys(profile).find((k) => !TOP_KEYS.has(k) && !(k in TOP_DEFAULTS && profile[k] === TOP_DEFAULTS[k]));
  if (extra !== undefined) return { reason: `its top-level key ${extra} has no place in a YAML Profile` };
  const {
    PayloadIdentifier: id,
    PayloadDisplayName: display,
    PayloadDescription: desc,
    PayloadOrganization: org,
    PayloadScope: scope,
    PayloadContent: content,
  } = profile;
  if (typeof id !== 'string' || !IDENTIFIER.test(id)) return { reason: 'its PayloadIdentifier is not an identifier a YAML Profile accepts' };
  if (typeof display !== 'string' || display.length === 0) return { reason: 'it has no PayloadDisplayName (a YAML Profile needs displayName)' };
  if (desc !== undefined && typeof desc !== 'string') return { reason: 'its PayloadDescription is not a string' };
  if (org !== undefined && typeof org !== 'string') return { reason: 'its PayloadOrganization is not a string' };
  // Orchard's renderer writes no empty PayloadDescription or PayloadOrganization.
  if (desc === '' || org === '')
    return { reason: `its ${desc === '' ? 'PayloadDescription' : 'PayloadOrganization'} is empty, and a rendered profile has none` };
  if (scope !== undefined && scope !== 'System' && scope !== 'User') return { reason: `its PayloadScope ${JSON.stringify(scope)} is neither System nor User` };
  if ((profile.PayloadVersion ?? 1) !== 1) return { reason: 'its PayloadVersion is not 1 (Orchard writes 1)' };
  if (!Array.isArray(content) || content.length === 0) return { reason: 'it has no payloads (a YAML Profile needs at least one)' };
  const payloads: { type: string; keys: Record<string, unknown> }[] = [];
  const uuids = new Map<string, number>();
  for (const [i, p] of content.entries()) {
    if (!isDict(p) || typeof p.PayloadType !== 'string' || p.PayloadType.length === 0)
      return { reason: `PayloadContent.${i} is not a payload with a PayloadType` };
    if ((p.PayloadVersion ?? 1) !== 1) return { reason: `PayloadContent.${i}: its PayloadVersion is not 1 (Orchard writes 1)` };
    if (typeof p.PayloadUUID === 'string') uuids.set(p.PayloadUUID.toUpperCase(), i);
  }
  const unsayable = findValue(content, (v) => v instanceof Uint8Array || v instanceof Date, ['PayloadContent']);
  if (unsayable) return { reason: `${unsayable.path} is ${unsayable.value instanceof Date ? '<date>' : '<data>'}, which the YAML format cannot represent` };
  // A payload's own PayloadUUID and PayloadIdentifier are dropped (derived), whatever they say.
  const ref = findValue(
    content,
    (v, path) => typeof v === 'string' && uuids.has(v.toUpperCase()) && !/^PayloadContent\.\d+\.Payload(UUID|Identifier)$/.test(path),
    ['PayloadContent'],
  );
  if (ref) return { reason: `${ref.path} names payload ${uuids.get((ref.value as string).toUpperCase())}'s PayloadUUID, which Orchard derives anew` };
  if (integralReal()) return { reason: 'it holds a <real> with an integral value, which YAML would make an <integer>' };
  for (const p of content as PlistDict[]) {
    const keys: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(p)) if (!DERIVED_PAYLOAD_KEYS.has(k)) setKey(keys, k, escape(v));
    payloads.push({ type: p.PayloadType as string, keys });
  }
  const spec: Record<string, unknown> = { identifier: id, displayName: escape(display) };
  if (desc !== undefined) spec.description = escape(desc);
  if (org !== undefined) spec.organization = escape(org);
  if (scope === 'User') spec.scope = 'User';
  spec.payloads = payloads;
  return { spec };
}

function isDict(v: unknown): v is PlistDict {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof Date);
}

/** The first value (depth first) for which `test` holds, with its dotted path. */
function findValue(v: PlistValue, test: (v: PlistValue, path: string) => boolean, path: (string | number)[]): { path: string; value: PlistValue } | undefined {
  const at = path.join('.');
  if (test(v, at)) return { path: at, value: v };
  if (Array.isArray(v)) {
    for (const [i, x] of v.entries()) {
      const r = findValue(x, test, [...path, i]);
      if (r) return r;
    }
  } else if (isDict(v)) {
    for (const [k, x] of Object.entries(v)) {
      const r = findValue(x, test, [...path, k]);
      if (r) return r;
    }
  }
  return undefined;
}

/** Strings as the renderer substitutes them: a `${...}` of the original is written `$${...}`. */
function escape(v: PlistValue): unknown {
  if (typeof v === 'string') return v.replace(/\$\{(?=[^}]*\})/g, () => '$${');
  if (Array.isArray(v)) return v.map(escape);
  if (isDict(v)) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) setKey(out, k, escape(x));
    return out;
  }
  return v;
}

function setKey(obj: Record<string, unknown>, k: string, v: unknown): void {
  Object.defineProperty(obj, k, { value: v, enumerable: true, writable: true, configurable: true });
}

/**
 * Why the YAML document `e` wrote is not the original, as the loader reads it and the renderer
 * renders it (undefined if it is). Set aside: PayloadUUIDs and payload PayloadIdentifiers, which
 * Orchard derives; PayloadScope, PayloadVersion and TOP_DEFAULTS when the original leaves them
 * out or has the value a device assumes without them.
 */
async function roundTrip(e: Imported, yaml: Buffer, original: PlistDict): Promise<string | undefined> {
  const dir = await mkdtemp(join(tmpdir(), 'orchard-import-'));
  let loaded;
  try {
    await writeFile(join(dir, 'profile.yaml'), yaml);
    loaded = await loadFleet(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const problem = loaded.diagnostics.find((d) => d.severity === 'error');
  if (problem) return `as YAML it is not valid (${problem.message})`;
  const doc: ProfileDoc | undefined = loaded.fleet?.profiles.get(e.name);
  if (!doc) return 'as YAML it did not load';
  let rendered: PlistValue;
  try {
    rendered = parsePlist(renderProfile(doc, {}, undefined).bytes(), TRUSTED_LIMITS);
  } catch (err) {
    return `rendering it failed (${(err as Error).message})`;
  }
  const diff = difference(normalized(original), normalized(rendered as PlistDict), 'profile');
  return diff ? `rendering it back differs at ${diff}` : undefined;
}

function normalized(p: PlistDict): PlistDict {
  const { PayloadUUID: _u, ...rest } = p;
  for (const [k, v] of Object.entries(TOP_DEFAULTS)) if (rest[k] === v) delete rest[k];
  const content = Array.isArray(p.PayloadContent) ? p.PayloadContent : [];
  return {
    ...rest,
    PayloadScope: rest.PayloadScope ?? 'System',
    PayloadVersion: rest.PayloadVersion ?? 1,
    PayloadContent: content.map((c) => {
      if (!isDict(c)) return c;
      const { PayloadUUID: _pu, PayloadIdentifier: _pi, ...keys } = c;
      return { ...keys, PayloadVersion: keys.PayloadVersion ?? 1 };
    }),
  };
}

/** The path of the first difference of two plist values, types included. */
function difference(a: PlistValue | undefined, b: PlistValue | undefined, path: string): string | undefined {
  if (a instanceof Uint8Array || b instanceof Uint8Array) {
    return a instanceof Uint8Array && b instanceof Uint8Array && Buffer.from(a).equals(Buffer.from(b)) ? undefined : path;
  }
  if (a instanceof Date || b instanceof Date) return a instanceof Date && b instanceof Date && a.getTime() === b.getTime() ? undefined : path;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return path;
    for (let i = 0; i < a.length; i++) {
      const d = difference(a[i], b[i], `${path}.${i}`);
      if (d) return d;
    }
    return undefined;
  }
  if (isDict(a) || isDict(b)) {
    if (!isDict(a) || !isDict(b)) return path;
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      if (!Object.hasOwn(a, k) || !Object.hasOwn(b, k)) return `${path}.${k}`;
      const d = difference(a[k], b[k], `${path}.${k}`);
      if (d) return d;
    }
    return undefined;
  }
  return Object.is(a, b) ? undefined : path;
}
