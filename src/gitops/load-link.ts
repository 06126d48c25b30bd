/**
 * Loader pass 4, link: what the documents refer to is resolved and completes them. Blueprints'
 * profiles, profiles' `.mobileconfig` files (identifier, scope and bytes taken from the file),
 * variables and secrets used, declarations (src/ddm/load.ts, which adds those Orchard
 * generates), and the Secret documents the secrets need. An unresolvable reference is an error.
 */
import type { Hash } from 'node:crypto';
import { dirname, join, normalize } from 'node:path';
import { checkDeclarations } from '../ddm/load.js';
import { must } from '../util/must.js';
import { formatBytes, type LoaderLimits } from './limits.js';
import { suggest, type Collector, type LoadState, type ParsedDoc } from './load-context.js';
import type { BuiltFleet } from './load-build.js';
import type { ParsedRepository } from './load-parse.js';
import { MobileconfigError, readProfile } from './mobileconfig.js';
import type { BlueprintDoc, Fleet, Origin, ProfileDoc } from './model.js';
import type { PlistDict } from '../protocol/plist.js';
import { readRegularFile, relPath as rel, resolveInside } from './repo-files.js';
import { DEVICE_VARIABLES, findVariables } from './variables.js';
import type { JsonPath } from './yaml-pos.js';

/** A profile's `.mobileconfig` as read. */
export interface ProfileFile {
  /** Its path in the repository (symbolic links resolved). */
  inRepo: string;
  bytes: Buffer;
  profile: PlistDict;
  signed: boolean;
  /** Where spec.file is. */
  at: Origin;
}

export interface Links {
  /** Profile name -> the blueprints that list it. */
  usedBy: Map<string, BlueprintDoc[]>;
  files: Map<ProfileDoc, ProfileFile>;
}

/** The links, or undefined when a limit stops the whole load. */
export async function linkPass(built: BuiltFleet, repo: ParsedRepository, c: Collector, state: LoadState, limits: LoaderLimits): Promise<Links | undefined> {
  const { fleet, parsedOf } = built;
  const parsed = (doc: object) => must(parsedOf.get(doc), 'the parsed document of a built one');
  const usedBy = linkBlueprints(fleet, parsed, c, state);
  const files = new Map<ProfileDoc, ProfileFile>();
  const secretsUsed: { name: string; at: Origin }[] = [];
  for (const p of fleet.profiles.values()) {
    const d = parsed(p);
    state.file = d.file;
    if (p.file !== undefined) {
      const f = await linkProfileFile(p, d, repo, c, limits);
      if (f === 'stop') return undefined;
      if (f) files.set(p, f);
    }
    p.payloads?.forEach((payload, i) => linkVariables(c, d, payload.keys, ['spec', 'payloads', i, 'keys'], p, secretsUsed));
  }
  checkDeclarations(fleet, {
    add: (severity, rule, at, message) => c.add(severity, rule, at, message),
    at: (doc, path, key) => c.at(parsed(doc), path, key),
    suggest: (name, options) => suggest(name, options, c),
    variables: (doc, value, path, target) => linkVariables(c, parsed(doc), value, path, target, secretsUsed),
  });
  for (const s of secretsUsed) {
    if (fleet.secrets.has(s.name)) continue;
    c.add(
      'error',
      'undeclared-secret',
      s.at,
      `secret "${s.name}" is not declared: add a document with kind: Secret and metadata.name: ${s.name} (its value stays on the server)`,
    );
  }
  return { usedBy, files };
}

/** Each blueprint's profiles must exist; returns who uses each profile. */
function linkBlueprints(fleet: Fleet, parsed: (doc: object) => ParsedDoc, c: Collector, state: LoadState): Map<string, BlueprintDoc[]> {
  const usedBy = new Map<string, BlueprintDoc[]>();
  const profileNames = [...fleet.profiles.keys()];
  for (const b of fleet.blueprints.values()) {
    const d = parsed(b);
    state.file = d.file;
    b.profiles.forEach((name, i) => {
      if (!fleet.profiles.has(name)) {
        c.add('error', 'ref-missing-profile', c.at(d, ['spec', 'profiles', i]), `profile "${name}" is not defined${suggest(name, profileNames, c)}`);
        return;
      }
      const list = usedBy.get(name) ?? [];
      list.push(b);
      usedBy.set(name, list);
    });
  }
  return usedBy;
}

/** Reads a profile's `file:` inside the repository and completes the profile from it; 'stop' past the repository's byte limit. */
async function linkProfileFile(
  p: ProfileDoc,
  d: ParsedDoc,
  repo: ParsedRepository,
  c: Collector,
  limits: LoaderLimits,
): Promise<ProfileFile | 'stop' | undefined> {
  const { realRoot } = repo;
  const at = c.at(d, ['spec', 'file']);
  const written = must(p.file, 'the file of a file-based profile');
  // First by the path as written, then by the real path: a committed symbolic link may point anywhere.
  const abs = normalize(join(realRoot, dirname(d.file), written));
  const asWritten = rel(realRoot, abs);
  if (asWritten === '..' || asWritten.startsWith('../') || asWritten.startsWith('/')) {
    c.add('error', 'mobileconfig', at, `file "${written}" is outside the repository`);
    return undefined;
  }
  const real = await resolveInside(realRoot, abs);
  if (!real.ok) {
    c.add('error', 'mobileconfig', at, `cannot read "${asWritten}": ${real.reason}`);
    return undefined;
  }
  const inRepo = rel(realRoot, real.real);
  const read = await readRegularFile(real.real, limits.profileFileBytes);
  if (!read.ok) {
    const limit = /limit/.test(read.reason);
    const why = `cannot read "${asWritten}": ${read.reason}${limit ? ' for a profile file (limit profileFileBytes)' : ''}`;
    c.add('error', limit ? 'limit-file-size' : 'mobileconfig', at, why);
    return undefined;
  }
  const bytes = read.bytes;
  if ((repo.budget.bytes += bytes.length) > limits.repoBytes) {
    c.add('error', 'limit-repo-bytes', at, `the YAML and profile files add up to more than ${formatBytes(limits.repoBytes)} (limit repoBytes)`);
    return 'stop';
  }
  hashFile(repo.hash, inRepo, bytes);
  let file: ProfileFile;
  try {
    file = { inRepo, bytes, at, ...readProfile(bytes, { maxDepth: limits.depth }) };
  } catch (err) {
    // Any failure of the parsers (asn1js, XML) on committed bytes is the file's problem, said here.
    const message = err instanceof MobileconfigError ? err.message : `unreadable (${err instanceof Error ? err.message : String(err)})`;
    c.add('error', 'mobileconfig', at, `"${inRepo}" is not a usable profile: ${message.slice(0, 300)}`);
    return undefined;
  }
  completeFromFile(p, file, d, c);
  return file;
}

function hashFile(hash: Hash, inRepo: string, bytes: Buffer): void {
  hash.update(inRepo).update('\0').update(bytes).update('\0');
}

/** The profile's file, identifier, name and scope from its `.mobileconfig`; an identifier that contradicts the file is an error. */
function completeFromFile(p: ProfileDoc, file: ProfileFile, d: ParsedDoc, c: Collector): void {
  const { profile } = file;
  p.file = file.inRepo;
  p.fileBytes = file.bytes;
  const fileId = typeof profile.PayloadIdentifier === 'string' ? profile.PayloadIdentifier : undefined;
  if (p.identifier !== undefined && fileId !== undefined && p.identifier !== fileId) {
    c.add(
      'error',
      'mobileconfig',
      c.at(d, ['spec', 'identifier']),
      `identifier "${p.identifier}" differs from the file's PayloadIdentifier "${fileId}": remove it or make them equal`,
    );
  }
  // Without either, the profile has no identifier: checkProfile reports the file's missing key.
  p.identifier ??= fileId as string;
  p.displayName ??= typeof profile.PayloadDisplayName === 'string' ? profile.PayloadDisplayName : undefined;
  if (profile.PayloadScope === 'User') p.scope = 'User';
}

/** Variables and secrets in an authored value: unknown ones are errors; known ones are recorded on `target`. */
function linkVariables(
  c: Collector,
  d: ParsedDoc,
  value: unknown,
  base: JsonPath,
  target: { variables: string[]; secrets: string[] },
  secretsUsed: { name: string; at: Origin }[],
): void {
  scanStrings(value, base, (s, path) => {
    for (const v of findVariables(s)) {
      const at = c.at(d, path);
      if (v.kind === 'unknown') {
        c.add('error', 'variable', at, `unknown variable ${v.raw}: use \${device.<Fact>} or \${secret:<NAME>} ($\${ for a literal)`);
      } else if (v.kind === 'device') {
        if (!(DEVICE_VARIABLES as readonly string[]).includes(v.name)) {
          c.add('error', 'variable', at, `unknown device variable ${v.raw}${suggest(v.name, [...DEVICE_VARIABLES], c)}; known: ${DEVICE_VARIABLES.join(', ')}`);
        } else if (!target.variables.includes(v.name)) target.variables.push(v.name);
      } else {
        if (!target.secrets.includes(v.name)) target.secrets.push(v.name);
        secretsUsed.push({ name: v.name, at });
      }
    }
  });
}

function scanStrings(v: unknown, path: JsonPath, fn: (s: string, path: JsonPath) => void): void {
  if (typeof v === 'string') fn(v, path);
  else if (Array.isArray(v)) v.forEach((x, i) => scanStrings(x, [...path, i], fn));
  else if (v && typeof v === 'object' && !(v instanceof Uint8Array) && !(v instanceof Date)) {
    for (const [k, x] of Object.entries(v)) scanStrings(x, [...path, k], fn);
  }
}
