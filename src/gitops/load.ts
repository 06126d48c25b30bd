/**
 * Load and validate a fleet repository as a whole: YAML documents of each kind, checked against
 * the JSON Schemas in `schemas/`, Apple's payload schema, and each other (references, conflicts,
 * variables, secrets). Every problem is a Diagnostic naming file:line:col. A revision with any
 * error is never applied.
 */
import { createHash } from 'node:crypto';
import { realpath } from 'node:fs/promises';
import { dirname, join, normalize } from 'node:path';
import type { Document, LineCounter } from 'yaml';
import {
  checkProfile,
  pathText,
  payloadIssue,
  shortText,
  validatePayload,
  validateTopLevel,
  type ManifestLookup,
  type PayloadIssue,
} from './apple/payloads.js';
import { ManifestSet } from './manifests.js';
import type {
  Rollout,
  AuthoredPayload,
  BlueprintDoc,
  DeviceGroupDoc,
  Diagnostic,
  Fleet,
  LoadResult,
  Origin,
  Platform,
  ProfileDoc,
  SecretDoc,
  Selector,
} from './model.js';
import { formatBytes, resolveLimits, type LoaderLimits } from './limits.js';
import { MobileconfigError, profileText, readProfile } from './mobileconfig.js';
import { PlistPositions } from './apple/positions.js';
import { readRegularFile, relPath as rel, resolveInside, walkYaml } from './repo-files.js';
import { newUsage, parseYamlFile } from './yaml-file.js';
import { mayOverlap, parseRange } from './selector.js';
import { DEVICE_VARIABLES, findVariables } from './variables.js';
import { locate, type JsonPath } from './yaml-pos.js';
import { documentSchema, KINDS, type Kind } from '../schema/fleet.js';
import { compileSchema, type Validator } from '../schema/validate.js';
import { parseDuration } from '../config.js';
import { buildDeclaration, checkDeclarations } from '../ddm/load.js';
import type { DeclarationDoc, SoftwareUpdateSpec } from '../ddm/model.js';

// Compiled once per process: schema compilation dominates small repositories otherwise.
let validators: Record<Kind, Validator<unknown>> | undefined;
function schemaValidators(): Record<Kind, Validator<unknown>> {
  validators ??= Object.fromEntries(KINDS.map((k) => [k, compileSchema(documentSchema(k))])) as Record<Kind, Validator<unknown>>;
  return validators;
}

interface ParsedDoc {
  file: string;
  doc: Document;
  lc: LineCounter;
  value: Record<string, unknown>;
}

class Collector {
  readonly diagnostics: Diagnostic[] = [];
  private errorCount = 0;
  private dropped = { errors: 0, warnings: 0 };
  /** Suggestions cost an edit distance against every name: a budget keeps hostile input cheap. */
  suggestions = 500;
  constructor(private readonly max: number) {}
  add(severity: Diagnostic['severity'], rule: string, at: Origin, message: string): void {
    if (severity === 'error') this.errorCount++;
    if (this.diagnostics.length >= this.max) {
      this.dropped[severity === 'error' ? 'errors' : 'warnings']++;
      return;
    }
    this.diagnostics.push({ severity, rule, file: at.file, line: at.line, col: at.col, message });
  }
  at(d: ParsedDoc, path: JsonPath, key = false): Origin {
    return { file: d.file, ...locate(d.doc, d.lc, path, { key }) };
  }
  get errors(): number {
    return this.errorCount;
  }
  /** The diagnostics, sorted, and one more saying how many were left out. */
  finish(): Diagnostic[] {
    const out = this.diagnostics.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.col - b.col);
    const { errors, warnings } = this.dropped;
    if (errors + warnings > 0) {
      out.push({
        severity: errors > 0 ? 'error' : 'warning',
        rule: 'limit-diagnostics',
        file: '.',
        line: 1,
        col: 1,
        message: `${errors} more errors and ${warnings} more warnings not shown (limit diagnostics: ${this.max})`,
      });
    }
    return out;
  }
}

export interface LoadOptions {
  /** Overrides of DEFAULT_LIMITS (limits.ts). */
  limits?: Partial<LoaderLimits>;
  /** A folder of ProfileManifests-format manifests: custom preference domains are checked against them. */
  manifests?: string;
}

/**
 * Load and validate the repository at `root`. Never throws for anything the repository holds:
 * every problem, including a limit reached or a bug of ours, is a diagnostic with file:line:col.
 */
export async function loadFleet(root: string, opts: LoadOptions = {}): Promise<LoadResult> {
  const limits = resolveLimits(opts.limits);
  const c = new Collector(limits.diagnostics);
  const state = { file: '.' };
  try {
    return await load(root, limits, c, state, opts.manifests !== undefined ? new ManifestSet(opts.manifests) : undefined);
  } catch (err) {
    // Last resort: whatever escaped is reported against the file being processed, not thrown.
    const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    c.add('error', 'loader', { file: state.file, line: 1, col: 1 }, `internal error while loading this file: ${message.slice(0, 300)}`);
    return { ok: false, diagnostics: c.finish() };
  }
}

/** Payload findings to diagnostics: each custom preference domain's "not checked" only once per repository. */
class PayloadReporter {
  private readonly unchecked = new Set<string>();
  constructor(private readonly c: Collector) {}
  add(issue: PayloadIssue, at: Origin, message = issue.message): void {
    if (issue.rule === 'custom-preferences') {
      // The message names the domain (a payload's type, or a domain inside managed preferences).
      if (this.unchecked.has(issue.message)) return;
      this.unchecked.add(issue.message);
    }
    this.c.add(issue.severity, issue.rule, at, message);
  }
}

async function load(root: string, limits: LoaderLimits, c: Collector, state: { file: string }, manifests: ManifestSet | undefined): Promise<LoadResult> {
  const hash = createHash('sha256');
  const docs: ParsedDoc[] = [];
  const stop = (): LoadResult => ({ ok: false, diagnostics: c.finish() });
  const atFile = (file: string): Origin => ({ file, line: 1, col: 1 });

  let realRoot: string;
  let walked;
  try {
    realRoot = await realpath(root);
    walked = await walkYaml(realRoot, limits.entries);
  } catch (err) {
    c.add('error', 'repository', atFile('.'), `cannot read repository: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    return stop();
  }
  for (const s of walked.skipped) c.add('warning', 'symlink', atFile(rel(realRoot, s.path)), `${rel(realRoot, s.path)} ${s.reason}`);
  if (walked.tooMany) {
    c.add(
      'error',
      'limit-entries',
      atFile(rel(realRoot, walked.tooMany.dir) || '.'),
      `more than ${limits.entries} files and directories in the repository (limit entries)`,
    );
    return stop();
  }
  const budget = { bytes: 0, yaml: newUsage() };
  for (const path of walked.files) {
    const file = rel(realRoot, path);
    state.file = file;
    const read = await readRegularFile(path, limits.yamlFileBytes);
    if (!read.ok) {
      const rule = /limit/.test(read.reason) ? 'limit-file-size' : 'repository';
      c.add('error', rule, atFile(file), `cannot load ${file}: ${read.reason}${rule === 'limit-file-size' ? ' for a YAML file (limit yamlFileBytes)' : ''}`);
      continue;
    }
    if ((budget.bytes += read.bytes.length) > limits.repoBytes) {
      c.add('error', 'limit-repo-bytes', atFile(file), `the YAML and profile files add up to more than ${formatBytes(limits.repoBytes)} (limit repoBytes)`);
      return stop();
    }
    const text = read.bytes.toString('utf8');
    hash.update(file).update('\0').update(text).update('\0');
    const parsed = parseYamlFile(file, text, limits, budget.yaml);
    for (const d of parsed.diagnostics) c.add(d.severity, d.rule, d, d.message);
    if (parsed.exhausted) return stop();
    for (const { doc, value } of parsed.docs) {
      if (value === null || value === undefined) continue; // an empty document (e.g. a trailing ---)
      if (typeof value !== 'object' || Array.isArray(value)) {
        c.add('error', 'schema', { file, ...locate(doc, parsed.lc, []) }, 'a document must be a mapping with apiVersion, kind, metadata and spec');
        continue;
      }
      docs.push({ file, doc, lc: parsed.lc, value: value as Record<string, unknown> });
    }
  }

  // Schema per kind.
  const valid: { d: ParsedDoc; kind: Kind }[] = [];
  for (const d of docs) {
    state.file = d.file;
    const kind = d.value.kind;
    if (d.value.apiVersion !== 'orchard/v1') {
      c.add('error', 'schema', c.at(d, ['apiVersion']), `apiVersion must be orchard/v1 (found ${JSON.stringify(d.value.apiVersion ?? null)})`);
      continue;
    }
    if (typeof kind !== 'string' || !(KINDS as readonly string[]).includes(kind)) {
      c.add('error', 'schema', c.at(d, ['kind']), `kind must be one of ${KINDS.join(', ')} (found ${JSON.stringify(kind ?? null)})`);
      continue;
    }
    const problems = schemaValidators()[kind as Kind].problems(d.value);
    if (problems.length > 0) {
      for (const e of problems) c.add('error', 'schema', c.at(d, e.path, e.key), e.message);
      continue;
    }
    valid.push({ d, kind: kind as Kind });
  }

  // Build documents, unique names per kind.
  const fleet: Fleet = {
    profiles: new Map(),
    blueprints: new Map(),
    deviceGroups: new Map(),
    secrets: new Map(),
    declarations: new Map(),
    tagsBySerial: new Map(),
    contentHash: '',
  };
  const parsedOf = new Map<object, ParsedDoc>();
  for (const { d, kind } of valid) {
    state.file = d.file;
    const meta = d.value.metadata as { name: string };
    const spec = d.value.spec as Record<string, unknown>;
    const origin = c.at(d, ['metadata', 'name']);
    const map = {
      Profile: fleet.profiles,
      Blueprint: fleet.blueprints,
      DeviceGroup: fleet.deviceGroups,
      Secret: fleet.secrets,
      Declaration: fleet.declarations,
    }[kind] as Map<string, { origin: Origin }>;
    const prev = map.get(meta.name);
    if (prev) {
      c.add('error', 'duplicate-name', origin, `${kind} "${meta.name}" is already defined at ${prev.origin.file}:${prev.origin.line}`);
      continue;
    }
    let built: ProfileDoc | BlueprintDoc | DeviceGroupDoc | SecretDoc | DeclarationDoc;
    if (kind === 'Profile') {
      built = {
        kind,
        name: meta.name,
        origin,
        identifier: spec.identifier as string,
        displayName: spec.displayName as string | undefined,
        description: spec.description as string | undefined,
        organization: spec.organization as string | undefined,
        scope: (spec.scope as 'System' | 'User' | undefined) ?? 'System',
        payloads: spec.payloads as AuthoredPayload[] | undefined,
        file: spec.file as string | undefined,
        variables: [],
        secrets: [],
      };
      built.payloads = built.payloads?.map((p) => ({ type: p.type, keys: p.keys ?? {} }));
    } else if (kind === 'Blueprint') {
      built = {
        kind,
        name: meta.name,
        origin,
        selector: spec.selector as Selector & { exclude?: Selector },
        profiles: (spec.profiles as string[] | undefined) ?? [],
        declarations: (spec.declarations as string[] | undefined) ?? [],
        softwareUpdate: spec.softwareUpdate as SoftwareUpdateSpec | undefined,
        deliver: [],
        prune: (spec.prune as boolean | undefined) ?? true,
        suspend: (spec.suspend as boolean | undefined) ?? false,
        rollout: spec.rollout as Rollout | undefined,
      };
    } else if (kind === 'DeviceGroup') {
      built = {
        kind,
        name: meta.name,
        origin,
        devices: (spec.devices as { serial: string; tags?: string[] }[]).map((x) => ({ serial: x.serial, tags: x.tags ?? [] })),
      };
    } else if (kind === 'Declaration') {
      built = buildDeclaration(meta.name, origin, spec);
    } else {
      built = { kind, name: meta.name, origin, description: spec.description as string | undefined };
    }
    map.set(meta.name, built);
    parsedOf.set(built, d);
  }

  for (const g of fleet.deviceGroups.values()) {
    for (const dev of g.devices) {
      let tags = fleet.tagsBySerial.get(dev.serial);
      if (!tags) fleet.tagsBySerial.set(dev.serial, (tags = new Set()));
      for (const t of dev.tags) tags.add(t);
    }
  }

  // Blueprints: selectors and references.
  const usedBy = new Map<string, BlueprintDoc[]>();
  const profileNames = [...fleet.profiles.keys()];
  for (const b of fleet.blueprints.values()) {
    const d = parsedOf.get(b)!;
    state.file = d.file;
    for (const [path, range] of [
      [['spec', 'selector', 'osVersion'], b.selector.osVersion],
      [['spec', 'selector', 'exclude', 'osVersion'], b.selector.exclude?.osVersion],
    ] as const) {
      if (range === undefined) continue;
      try {
        parseRange(range);
      } catch (err) {
        c.add('error', 'selector', c.at(d, [...path]), `osVersion: ${(err as Error).message}`);
      }
    }
    if (b.rollout)
      b.rollout = rolloutOf(b.rollout as RawRollout, (msg, key) => c.add('error', 'rollout', c.at(d, ['spec', 'rollout', ...(key ? [key] : [])]), msg));
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

  // Profiles: files, payloads, variables.
  const secretsUsed: { name: string; at: Origin }[] = [];
  const reporter = new PayloadReporter(c);
  for (const p of fleet.profiles.values()) {
    const d = parsedOf.get(p)!;
    state.file = d.file;
    const users = usedBy.get(p.name) ?? [];
    const ctx = payloadContext(users);
    if (p.file !== undefined) {
      const r = await loadProfileFile(realRoot, p, d, c, hash, { ...ctx, manifests }, limits, budget, reporter);
      if (r === 'stop') return stop();
    } else {
      checkProfileSize(p, authoredSize(p), c.at(d, ['spec', 'payloads']), c, limits);
    }
    p.payloads?.forEach((payload, i) => {
      const base: JsonPath = ['spec', 'payloads', i];
      for (const issue of validatePayload(payload.type, payload.keys, { ...ctx, manifests, mode: 'authored' })) {
        const aboutType =
          issue.path.length === 0 && (issue.rule === 'apple-payload-type' || issue.rule === 'apple-payload-type-typo' || issue.rule === 'custom-preferences');
        const path = aboutType ? [...base, 'type'] : [...base, 'keys', ...issue.path];
        reporter.add(issue, c.at(d, path, issue.rule.endsWith('unknown-key')));
      }
      checkVariables(c, d, payload.keys, [...base, 'keys'], p, secretsUsed);
    });
    if (users.length === 0) c.add('warning', 'unused-profile', p.origin, `profile "${p.name}" is not used by any blueprint`);
  }
  checkDeclarations(fleet, {
    add: (severity, rule, at, message) => c.add(severity, rule, at, message),
    at: (doc, path, key) => c.at(parsedOf.get(doc)!, path, key),
    suggest: (name, options) => suggest(name, options, c),
    variables: (doc, value, path, target) => checkVariables(c, parsedOf.get(doc)!, value, path, target, secretsUsed),
  });
  for (const s of secretsUsed) {
    if (!fleet.secrets.has(s.name)) {
      c.add(
        'error',
        'undeclared-secret',
        s.at,
        `secret "${s.name}" is not declared: add a document with kind: Secret and metadata.name: ${s.name} (its value stays on the server)`,
      );
    }
  }

  state.file = '.';
  checkIdentifiers(fleet, usedBy, c, limits);
  if (manifests && manifests.problems.length > 0) {
    const shown = manifests.problems.slice(0, 3).join('; ');
    c.add(
      'warning',
      'manifests',
      atFile('.'),
      `${manifests.problems.length} manifest file${manifests.problems.length === 1 ? '' : 's'} in ${manifests.dir} could not be used: ${shown}${manifests.problems.length > 3 ? '; …' : ''}`,
    );
  }

  const diagnostics = c.finish();
  fleet.contentHash = hash.digest('hex');
  const ok = c.errors === 0;
  return ok ? { ok, fleet, diagnostics } : { ok, diagnostics };
}

/** Where a profile may land, from the blueprints that use it: for Apple's platform and supervision warnings. */
function payloadContext(users: BlueprintDoc[]): { platforms: Platform[]; supervised?: boolean } {
  if (users.length === 0 || users.some((b) => !b.selector.platforms))
    return { platforms: [], supervised: users.length > 0 && users.every((b) => b.selector.supervised === true) ? true : undefined };
  const platforms = [...new Set(users.flatMap((b) => b.selector.platforms!))];
  return { platforms, supervised: users.every((b) => b.selector.supervised === true) ? true : undefined };
}

async function loadProfileFile(
  realRoot: string,
  p: ProfileDoc,
  d: ParsedDoc,
  c: Collector,
  hash: ReturnType<typeof createHash>,
  ctx: { platforms: Platform[]; supervised?: boolean; manifests?: ManifestLookup },
  limits: LoaderLimits,
  budget: { bytes: number },
  reporter: PayloadReporter,
): Promise<'stop' | void> {
  const at = c.at(d, ['spec', 'file']);
  // First by the path as written, then by the real path: a committed symbolic link may point anywhere.
  const abs = normalize(join(realRoot, dirname(d.file), p.file!));
  const asWritten = rel(realRoot, abs);
  if (asWritten === '..' || asWritten.startsWith('../') || asWritten.startsWith('/')) {
    c.add('error', 'mobileconfig', at, `file "${p.file}" is outside the repository`);
    return;
  }
  const real = await resolveInside(realRoot, abs);
  if (!real.ok) {
    c.add('error', 'mobileconfig', at, `cannot read "${asWritten}": ${real.reason}`);
    return;
  }
  const inRepo = rel(realRoot, real.real);
  const read = await readRegularFile(real.real, limits.profileFileBytes);
  if (!read.ok) {
    const limit = /limit/.test(read.reason);
    c.add(
      'error',
      limit ? 'limit-file-size' : 'mobileconfig',
      at,
      `cannot read "${asWritten}": ${read.reason}${limit ? ' for a profile file (limit profileFileBytes)' : ''}`,
    );
    return;
  }
  const bytes = read.bytes;
  if ((budget.bytes += bytes.length) > limits.repoBytes) {
    c.add('error', 'limit-repo-bytes', at, `the YAML and profile files add up to more than ${formatBytes(limits.repoBytes)} (limit repoBytes)`);
    return 'stop';
  }
  hash.update(inRepo).update('\0').update(bytes).update('\0');
  let profile;
  let signed = false;
  try {
    ({ profile, signed } = readProfile(bytes, { maxDepth: limits.depth }));
  } catch (err) {
    // Any failure of the parsers (asn1js, XML) on committed bytes is the file's problem, said here.
    const message = err instanceof MobileconfigError ? err.message : `unreadable (${err instanceof Error ? err.message : String(err)})`;
    c.add('error', 'mobileconfig', at, `"${inRepo}" is not a usable profile: ${message.slice(0, 300)}`);
    return;
  }
  p.file = inRepo;
  p.fileBytes = bytes;
  // A signed file is installed as it is; an unsigned one is rebuilt from its plist, about as large.
  checkProfileSize(p, bytes.length, at, c, limits);
  const fileId = typeof profile.PayloadIdentifier === 'string' ? profile.PayloadIdentifier : undefined;
  if (p.identifier !== undefined && fileId !== undefined && p.identifier !== fileId) {
    c.add(
      'error',
      'mobileconfig',
      c.at(d, ['spec', 'identifier']),
      `identifier "${p.identifier}" differs from the file's PayloadIdentifier "${fileId}": remove it or make them equal`,
    );
  }
  p.identifier ??= fileId!;
  p.displayName ??= typeof profile.PayloadDisplayName === 'string' ? profile.PayloadDisplayName : undefined;
  if (profile.PayloadScope === 'User') p.scope = 'User';
  const positions = xmlPositions(bytes, limits.depth);
  // A signed file's lines are those of the XML inside the signature: no editor shows them.
  const where = (path: (string | number)[]): Origin => ({ file: inRepo, ...(positions && !signed ? positions.find(path) : { line: 1, col: 1 }) });
  const report = (issue: PayloadIssue) => reporter.add(issue, where(issue.path), `${issue.path.length ? pathText(issue.path) + ': ' : ''}${issue.message}`);
  for (const dup of positions?.duplicates ?? []) {
    // CFPropertyList keeps the last value of a repeated key, as our parser does.
    report(
      payloadIssue(
        'plist-duplicate-key',
        dup.path,
        `key '${shortText(String(dup.path[dup.path.length - 1]))}' appears again in this dict: the device keeps this value and ignores the earlier one`,
      ),
    );
  }
  const numberTag = (prefix: (string | number)[]) => positions && ((path: readonly (string | number)[]) => positions.numberTag([...prefix, ...path]));
  for (const issue of validateTopLevel(profile, { ...ctx, numberTag: numberTag([]) })) report(issue);
  for (const issue of checkProfile(profile)) report(issue);
  const content = Array.isArray(profile.PayloadContent) ? profile.PayloadContent : [];
  content.forEach((payload, i) => {
    if (!payload || typeof payload !== 'object' || Array.isArray(payload) || payload instanceof Uint8Array || payload instanceof Date) return;
    const keys = payload as Record<string, unknown>;
    const type = keys.PayloadType;
    if (typeof type !== 'string' || type === '') {
      report(payloadIssue('apple-required-key', ['PayloadContent', i], 'a payload without PayloadType: the device refuses the profile'));
      return;
    }
    for (const issue of validatePayload(type, keys, { ...ctx, mode: 'complete', numberTag: numberTag(['PayloadContent', i]) }))
      report({ ...issue, path: ['PayloadContent', i, ...issue.path] });
  });
}

/** Positions of an XML profile's values (in the text readProfile parsed); undefined for a binary plist. */
function xmlPositions(bytes: Buffer, maxDepth: number): PlistPositions | undefined {
  try {
    const text = profileText(bytes, maxDepth);
    return text === undefined ? undefined : new PlistPositions(text);
  } catch {
    // readProfile read these bytes; should the second reading differ, findings point at line 1.
    return undefined;
  }
}

/**
 * Devices (and the push-triggered sessions that fetch InstallProfile) handle multi-MB profiles
 * badly: a warning above profileWarnBytes, an error above profileMaxBytes.
 */
function checkProfileSize(p: ProfileDoc, size: number, at: Origin, c: Collector, limits: LoaderLimits): void {
  if (size > limits.profileMaxBytes) {
    c.add(
      'error',
      'profile-size',
      at,
      `profile "${p.name}" is about ${formatBytes(size)} rendered, more than the limit of ${formatBytes(limits.profileMaxBytes)} (limit profileMaxBytes)`,
    );
  } else if (size > limits.profileWarnBytes) {
    c.add(
      'warning',
      'profile-size',
      at,
      `profile "${p.name}" is about ${formatBytes(size)} rendered; devices handle profiles over ${formatBytes(limits.profileWarnBytes)} badly (slow or failed installs): split it or move large data out`,
    );
  }
}

/**
 * The size of the XML plist an authored profile renders to, variables as written: close enough
 * for the size warning, without rendering (which needs a device).
 */
function authoredSize(p: ProfileDoc): number {
  const esc = (s: string) => Buffer.byteLength(s, 'utf8') + 4 * (s.match(/[<>&]/g)?.length ?? 0);
  // Iterative: aliases may share subtrees, so a value may be visited more than once (its size counts each time).
  let size = 600; // the plist header and the profile's own keys
  const stack: [unknown, number][] = (p.payloads ?? []).map((x) => [x.keys, 2]);
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    size += depth * 2 + 1; // indentation and newline
    if (typeof v === 'string') size += 17 + esc(v);
    else if (typeof v === 'number') size += 21 + String(v).length;
    else if (typeof v === 'boolean') size += 8;
    else if (Array.isArray(v)) {
      size += 16 + depth * 2;
      for (const x of v) stack.push([x, depth + 1]);
    } else if (v && typeof v === 'object') {
      size += 14 + depth * 2;
      for (const [k, x] of Object.entries(v)) {
        size += (depth + 1) * 2 + 12 + esc(k);
        stack.push([x, depth + 1]);
      }
    } else size += 17;
  }
  return size + 200 * (p.payloads?.length ?? 0);
}

/** Variables and secrets in an authored value: unknown ones are errors; known ones are recorded on `target`. */
function checkVariables(
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

/**
 * One identifier, one profile per device. Two profiles may share an identifier (variants for
 * disjoint sets of devices), but if any device could be selected for both, the device would get
 * one, then the other, forever: that is an error naming both blueprints.
 */
function checkIdentifiers(fleet: Fleet, usedBy: Map<string, BlueprintDoc[]>, c: Collector, limits: LoaderLimits): void {
  const byId = new Map<string, ProfileDoc[]>();
  for (const p of fleet.profiles.values()) {
    if (!p.identifier) continue;
    const list = byId.get(p.identifier) ?? [];
    list.push(p);
    byId.set(p.identifier, list);
  }
  for (const [id, profiles] of byId) {
    if (profiles.length < 2) continue;
    if (profiles.length > limits.profilesPerIdentifier) {
      // Every pair is compared below: thousands of variants would take quadratic time.
      const extra = profiles[limits.profilesPerIdentifier]!;
      c.add(
        'error',
        'limit-identifier',
        extra.origin,
        `${profiles.length} profiles share identifier ${id}; at most ${limits.profilesPerIdentifier} may (limit profilesPerIdentifier)`,
      );
      continue;
    }
    for (let i = 0; i < profiles.length; i++) {
      for (let j = i + 1; j < profiles.length; j++) {
        const a = profiles[i]!;
        const b = profiles[j]!;
        const ua = usedBy.get(a.name) ?? [];
        const ub = usedBy.get(b.name) ?? [];
        const clash = ua.flatMap((x) => ub.filter((y) => mayOverlap(x.selector, y.selector)).map((y) => [x, y] as const))[0];
        if (clash) {
          c.add(
            'error',
            'identifier-conflict',
            b.origin,
            `profiles "${a.name}" and "${b.name}" share identifier ${id}, and blueprints "${clash[0].name}" and "${clash[1].name}" can select the same device: it would be reinstalled back and forth. Give them different identifiers or make the selectors disjoint`,
          );
        } else if (ua.length === 0 || ub.length === 0) {
          c.add('warning', 'identifier-duplicate', b.origin, `profiles "${a.name}" and "${b.name}" share identifier ${id}`);
        }
      }
    }
  }
}

function suggest(name: string, options: string[], c: Collector): string {
  if (c.suggestions-- <= 0 || name.length > 200) return '';
  let best: string | undefined;
  let bestD = Infinity;
  for (const o of options) {
    const d = editDistance(name.toLowerCase(), o.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = o;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(name.length / 3)) ? ` (did you mean "${best}"?)` : '';
}

function editDistance(a: string, b: string): number {
  const dp = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = dp[0]!;
    dp[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = dp[j]!;
      dp[j] = Math.min(dp[j]! + 1, dp[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return dp[b.length]!;
}

type RawRollout = { percent?: number; steps?: number[]; wait?: string | number; maxFailures?: string | number };

/** The schema-checked `rollout` as the model has it; what the schema cannot say is reported through `fail`. */
function rolloutOf(raw: RawRollout, fail: (message: string, key?: string) => void): Rollout | undefined {
  if ((raw.percent === undefined) === (raw.steps === undefined)) {
    fail('rollout needs either percent or steps');
    return undefined;
  }
  if (raw.steps === undefined) {
    if (raw.wait !== undefined || raw.maxFailures !== undefined) fail('wait and maxFailures go with steps', raw.wait !== undefined ? 'wait' : 'maxFailures');
    return { percent: raw.percent! };
  }
  const steps = raw.steps;
  if (steps.some((x, i) => i > 0 && x <= steps[i - 1]!)) fail(`steps must increase (found ${steps.join(', ')})`, 'steps');
  let waitMs = 0;
  if (raw.wait !== undefined) {
    try {
      waitMs = typeof raw.wait === 'number' ? raw.wait * 1000 : parseDuration(raw.wait, 'wait');
    } catch (err) {
      fail((err as Error).message, 'wait');
    }
  }
  let maxFailures: Rollout['maxFailures'] = { count: 0 };
  if (typeof raw.maxFailures === 'number') maxFailures = { count: raw.maxFailures };
  else if (raw.maxFailures !== undefined) {
    const m = /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(raw.maxFailures);
    if (m && Number(m[1]) <= 100) maxFailures = { percent: Number(m[1]) };
    else fail(`maxFailures: "${raw.maxFailures}" is not a share like 2% or a count like 3`, 'maxFailures');
  }
  return { percent: steps[0]!, steps, waitMs, maxFailures };
}
