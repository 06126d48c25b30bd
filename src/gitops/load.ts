/**
 * Load and validate a fleet repository as a whole: YAML documents of each kind, checked against
 * the JSON Schemas in `schemas/`, Apple's payload schema, and each other (references, conflicts,
 * variables, secrets). Every problem is a Diagnostic naming file:line:col. A revision with any
 * error is never applied.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, normalize, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import { LineCounter, parseAllDocuments, type Document } from 'yaml';
import { isKnownPayloadType, validatePayload, validateTopLevel, type PayloadIssue } from './apple/payloads.js';
import type {
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
import { MobileconfigError, readProfile } from './mobileconfig.js';
import { mayOverlap, parseRange } from './selector.js';
import { DEVICE_VARIABLES, findVariables } from './variables.js';
import { locate, type JsonPath } from './yaml-pos.js';

const KINDS = ['Profile', 'Blueprint', 'DeviceGroup', 'Secret'] as const;
type Kind = (typeof KINDS)[number];

// Compiled once per process: schema compilation dominates small repositories otherwise.
let validators: Record<Kind, ValidateFunction> | undefined;
function schemaValidators(): Record<Kind, ValidateFunction> {
  if (validators) return validators;
  const dir = findSchemasDir();
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  const load = (f: string) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as object;
  validators = {
    Profile: ajv.compile(load('profile.schema.json')),
    Blueprint: ajv.compile(load('blueprint.schema.json')),
    DeviceGroup: ajv.compile(load('devicegroup.schema.json')),
    Secret: ajv.compile(load('secret.schema.json')),
  };
  return validators;
}

/** `schemas/` at the package root, from src/gitops or dist/src/gitops. */
function findSchemasDir(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = join(d, 'schemas');
    try {
      readFileSync(join(candidate, 'profile.schema.json'));
      return candidate;
    } catch {
      d = dirname(d);
    }
  }
  throw new Error('schemas/ directory not found next to the package');
}

interface ParsedDoc {
  file: string;
  doc: Document;
  lc: LineCounter;
  value: Record<string, unknown>;
}

class Collector {
  readonly diagnostics: Diagnostic[] = [];
  add(severity: Diagnostic['severity'], rule: string, at: Origin, message: string): void {
    this.diagnostics.push({ severity, rule, file: at.file, line: at.line, col: at.col, message });
  }
  at(d: ParsedDoc, path: JsonPath, key = false): Origin {
    return { file: d.file, ...locate(d.doc, d.lc, path, { key }) };
  }
  get errors(): number {
    return this.diagnostics.filter((x) => x.severity === 'error').length;
  }
}

const IGNORED_DIRS = new Set(['.git', 'node_modules']);

async function listYamlFiles(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string) => {
    const entries = await readdir(dir, { withFileTypes: true });
    for (const e of entries) {
      if (e.isDirectory()) {
        if (!IGNORED_DIRS.has(e.name) && !e.name.startsWith('.')) await walk(join(dir, e.name));
      } else if (e.isFile() && /\.ya?ml$/i.test(e.name)) {
        out.push(join(dir, e.name));
      }
    }
  };
  await walk(root);
  return out.sort();
}

const rel = (root: string, p: string) => relative(root, p).split(sep).join('/');

export async function loadFleet(root: string): Promise<LoadResult> {
  const c = new Collector();
  const hash = createHash('sha256');
  const docs: ParsedDoc[] = [];

  let files: string[];
  try {
    files = await listYamlFiles(root);
  } catch (err) {
    c.add('error', 'repository', { file: '.', line: 1, col: 1 }, `cannot read repository: ${(err as Error).message}`);
    return { ok: false, diagnostics: c.diagnostics };
  }
  for (const path of files) {
    const file = rel(root, path);
    const text = await readFile(path, 'utf8');
    hash.update(file).update('\0').update(text).update('\0');
    const lc = new LineCounter();
    const parsed = parseAllDocuments(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
    const list = Array.isArray(parsed) ? parsed : [parsed];
    for (const doc of list) {
      if (doc.errors.length > 0) {
        for (const e of doc.errors) {
          const p = lc.linePos(e.pos[0]);
          c.add('error', 'yaml', { file, line: p.line, col: p.col }, e.message.split('\n')[0]!);
        }
        continue;
      }
      const value = doc.toJS({ maxAliasCount: 100 }) as unknown;
      if (value === null || value === undefined) continue; // an empty document (e.g. a trailing ---)
      if (typeof value !== 'object' || Array.isArray(value)) {
        c.add('error', 'schema', { file, ...locate(doc, lc, []) }, 'a document must be a mapping with apiVersion, kind, metadata and spec');
        continue;
      }
      docs.push({ file, doc, lc, value: value as Record<string, unknown> });
    }
  }

  // Schema per kind.
  const valid: { d: ParsedDoc; kind: Kind }[] = [];
  for (const d of docs) {
    const kind = d.value.kind;
    if (d.value.apiVersion !== 'orchard/v1') {
      c.add('error', 'schema', c.at(d, ['apiVersion']), `apiVersion must be orchard/v1 (found ${JSON.stringify(d.value.apiVersion ?? null)})`);
      continue;
    }
    if (typeof kind !== 'string' || !(KINDS as readonly string[]).includes(kind)) {
      c.add('error', 'schema', c.at(d, ['kind']), `kind must be one of ${KINDS.join(', ')} (found ${JSON.stringify(kind ?? null)})`);
      continue;
    }
    const validate = schemaValidators()[kind as Kind];
    if (!validate(d.value)) {
      for (const e of schemaErrors(validate.errors ?? [])) {
        const at = c.at(d, e.path, e.key);
        c.add('error', 'schema', at, e.message);
      }
      continue;
    }
    valid.push({ d, kind: kind as Kind });
  }

  // Build documents, unique names per kind.
  const fleet: Fleet = {
    profiles: new Map(), blueprints: new Map(), deviceGroups: new Map(), secrets: new Map(),
    tagsBySerial: new Map(), contentHash: '',
  };
  const parsedOf = new Map<object, ParsedDoc>();
  for (const { d, kind } of valid) {
    const meta = d.value.metadata as { name: string };
    const spec = d.value.spec as Record<string, unknown>;
    const origin = c.at(d, ['metadata', 'name']);
    const map = { Profile: fleet.profiles, Blueprint: fleet.blueprints, DeviceGroup: fleet.deviceGroups, Secret: fleet.secrets }[kind] as Map<string, { origin: Origin }>;
    const prev = map.get(meta.name);
    if (prev) {
      c.add('error', 'duplicate-name', origin, `${kind} "${meta.name}" is already defined at ${prev.origin.file}:${prev.origin.line}`);
      continue;
    }
    let built: ProfileDoc | BlueprintDoc | DeviceGroupDoc | SecretDoc;
    if (kind === 'Profile') {
      built = {
        kind, name: meta.name, origin,
        identifier: spec.identifier as string, displayName: spec.displayName as string | undefined,
        description: spec.description as string | undefined, organization: spec.organization as string | undefined,
        scope: (spec.scope as 'System' | 'User' | undefined) ?? 'System',
        payloads: spec.payloads as AuthoredPayload[] | undefined,
        file: spec.file as string | undefined,
        variables: [], secrets: [],
      };
      built.payloads = built.payloads?.map((p) => ({ type: p.type, keys: p.keys ?? {} }));
    } else if (kind === 'Blueprint') {
      built = {
        kind, name: meta.name, origin,
        selector: spec.selector as Selector & { exclude?: Selector },
        profiles: spec.profiles as string[],
        prune: (spec.prune as boolean | undefined) ?? true,
        suspend: (spec.suspend as boolean | undefined) ?? false,
        rollout: spec.rollout as { percent: number } | undefined,
      };
    } else if (kind === 'DeviceGroup') {
      built = {
        kind, name: meta.name, origin,
        devices: (spec.devices as { serial: string; tags?: string[] }[]).map((x) => ({ serial: x.serial, tags: x.tags ?? [] })),
      };
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
  for (const b of fleet.blueprints.values()) {
    const d = parsedOf.get(b)!;
    for (const [path, range] of [[['spec', 'selector', 'osVersion'], b.selector.osVersion], [['spec', 'selector', 'exclude', 'osVersion'], b.selector.exclude?.osVersion]] as const) {
      if (range === undefined) continue;
      try {
        parseRange(range);
      } catch (err) {
        c.add('error', 'selector', c.at(d, [...path]), `osVersion: ${(err as Error).message}`);
      }
    }
    b.profiles.forEach((name, i) => {
      if (!fleet.profiles.has(name)) {
        c.add('error', 'ref-missing-profile', c.at(d, ['spec', 'profiles', i]), `profile "${name}" is not defined${suggest(name, [...fleet.profiles.keys()])}`);
        return;
      }
      const list = usedBy.get(name) ?? [];
      list.push(b);
      usedBy.set(name, list);
    });
  }

  // Profiles: files, payloads, variables.
  const secretsUsed: { name: string; at: Origin }[] = [];
  for (const p of fleet.profiles.values()) {
    const d = parsedOf.get(p)!;
    const users = usedBy.get(p.name) ?? [];
    const ctx = payloadContext(users);
    if (p.file !== undefined) {
      await loadProfileFile(root, p, d, c, hash, ctx);
    }
    p.payloads?.forEach((payload, i) => {
      const base: JsonPath = ['spec', 'payloads', i];
      for (const issue of validatePayload(payload.type, payload.keys, { ...ctx, mode: 'authored' })) {
        const path = issue.path.length === 0 && !isKnownPayloadType(payload.type) ? [...base, 'type'] : [...base, 'keys', ...issue.path];
        c.add(issue.severity, `apple-${ruleOf(issue)}`, c.at(d, path, issue.message.startsWith('unknown key')), issue.message);
      }
      scanStrings(payload.keys, [...base, 'keys'], (s, path) => {
        for (const v of findVariables(s)) {
          const at = c.at(d, path);
          if (v.kind === 'unknown') {
            c.add('error', 'variable', at, `unknown variable ${v.raw}: use \${device.<Fact>} or \${secret:<NAME>} ($\${ for a literal)`);
          } else if (v.kind === 'device') {
            if (!(DEVICE_VARIABLES as readonly string[]).includes(v.name)) {
              c.add('error', 'variable', at, `unknown device variable ${v.raw}${suggest(v.name, [...DEVICE_VARIABLES])}; known: ${DEVICE_VARIABLES.join(', ')}`);
            } else if (!p.variables.includes(v.name)) p.variables.push(v.name);
          } else {
            if (!p.secrets.includes(v.name)) p.secrets.push(v.name);
            secretsUsed.push({ name: v.name, at });
          }
        }
      });
    });
    if (users.length === 0) c.add('warning', 'unused-profile', p.origin, `profile "${p.name}" is not used by any blueprint`);
  }
  for (const s of secretsUsed) {
    if (!fleet.secrets.has(s.name)) {
      c.add('error', 'undeclared-secret', s.at, `secret "${s.name}" is not declared: add a document with kind: Secret and metadata.name: ${s.name} (its value stays on the server)`);
    }
  }

  checkIdentifiers(fleet, usedBy, c);

  const diagnostics = c.diagnostics.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.col - b.col);
  fleet.contentHash = hash.digest('hex');
  const ok = c.errors === 0;
  return ok ? { ok, fleet, diagnostics } : { ok, diagnostics };
}

/** Where a profile may land, from the blueprints that use it: for Apple's platform and supervision warnings. */
function payloadContext(users: BlueprintDoc[]): { platforms: Platform[]; supervised?: boolean } {
  if (users.length === 0 || users.some((b) => !b.selector.platforms)) return { platforms: [], supervised: users.length > 0 && users.every((b) => b.selector.supervised === true) ? true : undefined };
  const platforms = [...new Set(users.flatMap((b) => b.selector.platforms!))];
  return { platforms, supervised: users.every((b) => b.selector.supervised === true) ? true : undefined };
}

async function loadProfileFile(root: string, p: ProfileDoc, d: ParsedDoc, c: Collector, hash: ReturnType<typeof createHash>, ctx: { platforms: Platform[]; supervised?: boolean }): Promise<void> {
  const at = c.at(d, ['spec', 'file']);
  const abs = normalize(join(root, dirname(d.file), p.file!));
  const inRepo = rel(root, abs);
  if (inRepo.startsWith('..') || inRepo.startsWith('/')) {
    c.add('error', 'mobileconfig', at, `file "${p.file}" is outside the repository`);
    return;
  }
  let bytes: Buffer;
  try {
    bytes = await readFile(abs);
  } catch (err) {
    c.add('error', 'mobileconfig', at, `cannot read "${inRepo}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    return;
  }
  hash.update(inRepo).update('\0').update(bytes).update('\0');
  let profile;
  try {
    profile = readProfile(bytes).profile;
  } catch (err) {
    if (err instanceof MobileconfigError) {
      c.add('error', 'mobileconfig', at, `"${inRepo}" is not a usable profile: ${err.message}`);
      return;
    }
    throw err;
  }
  p.file = inRepo;
  p.fileBytes = bytes;
  const fileId = typeof profile.PayloadIdentifier === 'string' ? profile.PayloadIdentifier : undefined;
  if (p.identifier !== undefined && fileId !== undefined && p.identifier !== fileId) {
    c.add('error', 'mobileconfig', c.at(d, ['spec', 'identifier']), `identifier "${p.identifier}" differs from the file's PayloadIdentifier "${fileId}": remove it or make them equal`);
  }
  p.identifier ??= fileId!;
  p.displayName ??= typeof profile.PayloadDisplayName === 'string' ? profile.PayloadDisplayName : undefined;
  if (profile.PayloadScope === 'User') p.scope = 'User';
  const issues: PayloadIssue[] = validateTopLevel(profile);
  const content = Array.isArray(profile.PayloadContent) ? profile.PayloadContent : [];
  content.forEach((payload, i) => {
    if (!payload || typeof payload !== 'object' || Array.isArray(payload) || payload instanceof Uint8Array || payload instanceof Date) return;
    const type = String((payload as Record<string, unknown>).PayloadType ?? '');
    for (const issue of validatePayload(type, payload as Record<string, unknown>, { ...ctx, mode: 'complete' })) {
      issues.push({ ...issue, path: ['PayloadContent', i, ...issue.path] });
    }
  });
  for (const issue of issues) {
    c.add(issue.severity, `apple-${ruleOf(issue)}`, at, `${inRepo}: ${issue.path.length ? issue.path.join('.') + ': ' : ''}${issue.message}`);
  }
}

function ruleOf(issue: PayloadIssue): string {
  const m = issue.message.toLowerCase();
  if (m.startsWith('unknown key')) return 'unknown-key';
  if (m.includes('payload type')) return 'payload-type';
  if (m.includes('required')) return 'required-key';
  if (m.includes('supervis')) return 'supervision';
  if (m.includes('not supported') || m.includes('introduced') || m.includes('removed')) return 'platform';
  if (m.includes('one of') || m.includes('range') || m.includes('between') || m.includes('minimum') || m.includes('maximum')) return 'value';
  if (m.includes('expected')) return 'type';
  return 'payload';
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
function checkIdentifiers(fleet: Fleet, usedBy: Map<string, BlueprintDoc[]>, c: Collector): void {
  const byId = new Map<string, ProfileDoc[]>();
  for (const p of fleet.profiles.values()) {
    if (!p.identifier) continue;
    const list = byId.get(p.identifier) ?? [];
    list.push(p);
    byId.set(p.identifier, list);
  }
  for (const [id, profiles] of byId) {
    if (profiles.length < 2) continue;
    for (let i = 0; i < profiles.length; i++) {
      for (let j = i + 1; j < profiles.length; j++) {
        const a = profiles[i]!;
        const b = profiles[j]!;
        const ua = usedBy.get(a.name) ?? [];
        const ub = usedBy.get(b.name) ?? [];
        const clash = ua.flatMap((x) => ub.filter((y) => mayOverlap(x.selector, y.selector)).map((y) => [x, y] as const))[0];
        if (clash) {
          c.add('error', 'identifier-conflict', b.origin,
            `profiles "${a.name}" and "${b.name}" share identifier ${id}, and blueprints "${clash[0].name}" and "${clash[1].name}" can select the same device: it would be reinstalled back and forth. Give them different identifiers or make the selectors disjoint`);
        } else if (ua.length === 0 || ub.length === 0) {
          c.add('warning', 'identifier-duplicate', b.origin, `profiles "${a.name}" and "${b.name}" share identifier ${id}`);
        }
      }
    }
  }
}

interface MappedError {
  path: JsonPath;
  key: boolean;
  message: string;
}

/** Ajv errors -> one clear message per problem, pointing at the offending node. */
function schemaErrors(errors: ErrorObject[]): MappedError[] {
  const out: MappedError[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    if (e.schemaPath.includes('/oneOf/')) continue; // branch details; the oneOf error says it better
    const path: JsonPath = e.instancePath.split('/').slice(1).map((s) => (/^\d+$/.test(s) ? Number(s) : s.replace(/~1/g, '/').replace(/~0/g, '~')));
    const where = path.length ? path.join('.') : 'document';
    let m: MappedError;
    switch (e.keyword) {
      case 'additionalProperties': {
        const prop = String((e.params as { additionalProperty: string }).additionalProperty);
        m = { path: [...path, prop], key: true, message: `unknown key "${prop}" in ${where}` };
        break;
      }
      case 'required':
        m = { path, key: false, message: `${where}: missing required key "${(e.params as { missingProperty: string }).missingProperty}"` };
        break;
      case 'oneOf':
        m = { path, key: false, message: `${where}: a Profile needs either identifier, displayName and payloads, or file (not both)` };
        break;
      case 'enum':
        m = { path, key: false, message: `${where} must be one of ${((e.params as { allowedValues: unknown[] }).allowedValues).map((v) => JSON.stringify(v)).join(', ')}` };
        break;
      case 'const':
        m = { path, key: false, message: `${where} must be ${JSON.stringify((e.params as { allowedValue: unknown }).allowedValue)}` };
        break;
      default:
        m = { path, key: false, message: `${where} ${e.message ?? 'is invalid'}` };
    }
    const k = `${m.path.join('/')}|${m.message}`;
    if (!seen.has(k)) {
      seen.add(k);
      out.push(m);
    }
  }
  return out;
}

function suggest(name: string, options: string[]): string {
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
