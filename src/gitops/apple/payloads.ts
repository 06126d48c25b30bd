/**
 * Validation of configuration-profile payloads against Apple's schema (mdm/profiles, vendored
 * as profiles.json by scripts/gen-apple-profiles.mjs), and of custom preference domains against
 * community manifests (manifests.ts). Severities follow the device (see RULES): an error where
 * the device refuses the payload or misreads a setting, a warning where it accepts it but the
 * admin probably meant something else, info where nothing can be checked.
 */
import appleProfiles from './profiles.json' with { type: 'json' };
import { at } from '../../util/must.js';

export type Platform = 'macOS' | 'iOS' | 'iPadOS' | 'tvOS' | 'visionOS' | 'watchOS'; // iPadOS is Apple's iOS entry
export type Severity = 'error' | 'warning' | 'info';

/**
 * Every rule this module reports, with its one severity: a case the device treats differently is
 * a rule of its own (apple-payload-type and apple-payload-type-typo). The README's table is this list.
 */
export const RULES = {
  'apple-payload': { severity: 'error', meaning: 'a payload that is not a dictionary: the device refuses the profile' },
  'apple-payload-type': {
    severity: 'error',
    meaning:
      'a PayloadType Apple does not define in a profile for iOS, iPadOS, tvOS, visionOS or watchOS (they refuse it; only macOS applies custom preference domains), or a PayloadType differing from the one validated',
  },
  'apple-payload-type-typo': {
    severity: 'warning',
    meaning: 'an unknown PayloadType one or two edits from an Apple type: macOS would apply it as preferences of a domain nothing reads',
  },
  'custom-preferences': {
    severity: 'info',
    meaning:
      "a preference domain outside Apple's schema (com.google.Chrome, ...): macOS applies it as managed preferences; its keys are not checked (no --manifests manifest for it)",
  },
  'apple-undocumented-key': {
    severity: 'info',
    meaning:
      'keys Apple does not document in a preference domain it documents only partly (loginwindow, finder, screensaver, .GlobalPreferences): applied as managed preferences, not checked (with a --manifests manifest for the domain they are checked against it instead)',
  },
  'apple-unknown-key': { severity: 'warning', meaning: "a key Apple's schema does not define for this payload (with a suggestion): the device ignores it" },
  'apple-type': {
    severity: 'error',
    meaning: 'a value of a type the device does not read for this key (string for integer, real with a fraction for integer, ...)',
  },
  'apple-integer-for-boolean': {
    severity: 'warning',
    meaning: '<integer>0</integer> or 1 for a boolean: macOS reads it as false/true; write <false/>/<true/>',
  },
  'apple-real-for-integer': { severity: 'warning', meaning: 'a whole <real> (1.0) for an integer: read as the integer; write <integer>' },
  'apple-value': { severity: 'error', meaning: "a value outside Apple's allowed list, range or format, or an array with too few or too many items" },
  'apple-required-key': { severity: 'error', meaning: 'a key Apple requires is missing (also when its condition holds)' },
  'apple-payload-version': { severity: 'warning', meaning: 'PayloadVersion missing or other than 1 (profile or payload): devices install it anyway' },
  'apple-exclusive': { severity: 'error', meaning: 'two keys that cannot both be set' },
  'apple-generated': {
    severity: 'error',
    meaning: 'PayloadType, PayloadUUID, PayloadIdentifier or PayloadVersion in an authored payload: Orchard writes them',
  },
  'apple-circular': { severity: 'error', meaning: 'a YAML value that contains itself' },
  'apple-platform': { severity: 'warning', meaning: "a key or payload type not supported (or removed) on a platform the profile's blueprints select" },
  'apple-supervision': { severity: 'warning', meaning: 'a key or payload type that needs supervision the blueprints do not require' },
  'manifest-unknown-key': { severity: 'warning', meaning: "a key the domain's manifest (--manifests) does not list" },
  'manifest-type': { severity: 'error', meaning: "a value whose type differs from the manifest's: the app misreads it" },
  'manifest-value': {
    severity: 'warning',
    meaning: "a value outside the manifest's list, range or format (manifests are community-written; the device does not enforce them)",
  },
  'manifest-required-key': { severity: 'warning', meaning: 'a key the manifest marks required is missing' },
  'duplicate-uuid': {
    severity: 'error',
    meaning: 'two payloads (or a payload and the profile) of one .mobileconfig share a PayloadUUID: the device refuses the profile',
  },
  'uuid-format': { severity: 'warning', meaning: 'a PayloadUUID that is not a UUID: devices accept any string, tools expect a UUID' },
  'empty-payload-content': { severity: 'warning', meaning: 'an empty PayloadContent (profile or payload): installs, configures nothing' },
  'plist-duplicate-key': {
    severity: 'warning',
    meaning: 'a key twice in one dict of a .mobileconfig: the device keeps the last value, the first is silently lost',
  },
} as const satisfies Record<string, { severity: Severity; meaning: string }>;
export type PayloadRule = keyof typeof RULES;

export interface PayloadIssue {
  severity: Severity;
  /** The check that fired. */
  rule: PayloadRule;
  /**
   * Key path inside the payload dict, e.g. ['EAPClientConfiguration','AcceptEAPTypes',0]. A
   * missing required key is reported at the dictionary that lacks it.
   */
  path: (string | number)[];
  message: string;
}

/** Text from the profile as messages show it: a hostile key or value must not make a megabyte message. */
export function shortText(s: string, max = 80): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

/** A key path as messages show it ('PayloadContent.0.minLength'). */
export function pathText(path: readonly (string | number)[]): string {
  return path.map((p) => (typeof p === 'string' ? shortText(p) : p)).join('.');
}

/** An issue of `rule`, at the rule's severity. */
export function payloadIssue(rule: PayloadRule, path: (string | number)[], message: string): PayloadIssue {
  return { severity: RULES[rule].severity, rule, path, message };
}

/** Community manifests of preference domains, by domain (manifests.ts). */
export interface ManifestLookup {
  get(domain: string): PayloadJson | undefined;
}

export interface PayloadContext {
  /** Platforms the profile may be installed on (from the blueprints that use it); empty = unknown, skip platform warnings. */
  platforms: Platform[];
  /** true if every selecting blueprint requires supervised devices. */
  supervised?: boolean;
  /**
   * 'authored': a payload written in YAML: PayloadType/PayloadUUID/PayloadIdentifier/PayloadVersion
   * are generated by Orchard, so they must NOT appear (error telling to remove them) and are not
   * required. 'complete': a payload from an existing .mobileconfig: they must be present like Apple says.
   */
  mode: 'authored' | 'complete';
  /** Manifests for preference domains outside Apple's schema. */
  manifests?: ManifestLookup;
  /**
   * The plist element a number was written as (a parsed plist has only JS numbers): a whole
   * <real> for an integer key is then told apart from an <integer>. Absent: judged by the value.
   */
  numberTag?: (path: readonly (string | number)[]) => 'integer' | 'real' | undefined;
}

// ---- profiles.json as written by the generator ----

type AppleOS = 'iOS' | 'macOS' | 'tvOS' | 'visionOS' | 'watchOS';
export type KeyType = 'string' | 'integer' | 'real' | 'boolean' | 'data' | 'date' | 'array' | 'dictionary' | 'any';
type Scalar = string | number | boolean;

export interface OSEntry {
  introduced?: string;
  removed?: string;
  supervised?: boolean;
  devicechannel?: boolean;
  userchannel?: boolean;
}
export type OSMap = Partial<Record<AppleOS, OSEntry>>;
export interface Condition {
  key: string;
  equals?: Scalar;
}
export interface KeyJson {
  type: KeyType;
  presence?: 'required';
  /** Required only when the sibling condition holds / unless it holds (from Apple's description). */
  requiredIf?: Condition;
  requiredUnless?: Condition;
  excludes?: string;
  rangelist?: Scalar[];
  range?: { min?: number; max?: number };
  format?: string;
  /** On an array's item: how many items the array holds. */
  repetition?: { min?: number; max?: number };
  os?: OSMap;
  subkeys?: KeysJson;
  ref?: string;
}
export type KeysJson = Record<string, KeyJson>;
/** One payload type's schema: Apple's (profiles.json) or one converted from a manifest. */
export interface PayloadJson {
  files: string[];
  title: string;
  os: OSMap;
  keys: KeysJson;
  defs?: Record<string, KeysJson>;
  variants?: (PayloadJson & { when: Condition })[];
  /** A preference domain Apple documents only partly: other keys are preferences, not unknown keys. */
  open?: boolean;
}
interface ProfilesJson {
  topLevel: PayloadJson;
  common: PayloadJson;
  payloads: Record<string, PayloadJson>;
}

const DATA = appleProfiles as unknown as ProfilesJson;

// ---- compiled form, built lazily per payload type ----

const APPLE_OS: readonly AppleOS[] = ['iOS', 'macOS', 'tvOS', 'visionOS', 'watchOS'];
const PLATFORM_OS: Record<Platform, AppleOS> = { macOS: 'macOS', iOS: 'iOS', iPadOS: 'iOS', tvOS: 'tvOS', visionOS: 'visionOS', watchOS: 'watchOS' };
/** Keys Orchard writes into every authored payload. */
const GENERATED = new Set(['PayloadType', 'PayloadUUID', 'PayloadIdentifier', 'PayloadVersion']);

/** Effective support per Apple OS; interned, so "same as the parent" is an identity check. */
type Support = Readonly<Record<AppleOS, Readonly<OSEntry>>>;

interface Note {
  os: AppleOS;
  kind: 'unsupported' | 'removed' | 'supervised';
  version?: string;
}

interface Node {
  name: string;
  type: KeyType;
  required: boolean;
  requiredIf?: Condition;
  requiredUnless?: Condition;
  excludes?: string;
  rangelist?: ReadonlySet<Scalar>;
  rangelistText?: string;
  range?: { min?: number; max?: number };
  format?: RegExp;
  repetition?: { min?: number; max?: number };
  support: Support;
  /** Where this key's support differs from its parent's (warnings are raised only there). */
  notes: Note[];
  /** Needs supervision on every OS that supports it, and its parent did not. */
  supervisedEverywhere: boolean;
  supportedText: string;
  dict?: Dict;
  item?: Node;
}

interface Dict {
  fields: Map<string, Node>;
  any?: Node;
  required: Node[];
  /** Excluding ANY, for suggestions. */
  names: string[];
}

interface CompiledPayload {
  type: string;
  root: Node;
  variants: { when: Condition; root: Node }[];
  open: boolean;
  source: Source;
}

/** Whose schema a payload is checked against: Apple's, or a community manifest's. */
type Source = 'apple' | 'manifest';

const supportIntern = new Map<string, Support>();
function intern(s: Record<AppleOS, OSEntry>): Support {
  const id = JSON.stringify(APPLE_OS.map((o) => s[o]));
  let hit = supportIntern.get(id);
  if (!hit) supportIntern.set(id, (hit = Object.freeze(s)));
  return hit;
}
const FULL_SUPPORT = intern({ iOS: {}, macOS: {}, tvOS: {}, visionOS: {}, watchOS: {} });

/** Apple's rule: a key inherits its parent's supportedOS, updated field by field by its own. */
function applyOS(parent: Support, os: OSMap | undefined): Support {
  if (!os) return parent;
  const next = { ...parent } as Record<AppleOS, OSEntry>;
  for (const o of APPLE_OS) if (os[o]) next[o] = { ...parent[o], ...os[o] };
  return intern(next);
}

const unsupported = (e: OSEntry): boolean => e.introduced === 'n/a';

function notesFor(parent: Support, own: Support): Note[] {
  if (parent === own) return [];
  const notes: Note[] = [];
  for (const o of APPLE_OS) {
    const p = parent[o];
    const s = own[o];
    if (unsupported(p)) continue; // already reported at the parent
    if (unsupported(s)) notes.push({ os: o, kind: 'unsupported' });
    else {
      if (s.removed && s.removed !== p.removed) notes.push({ os: o, kind: 'removed', version: s.removed });
      if (s.supervised === true && p.supervised !== true) notes.push({ os: o, kind: 'supervised' });
    }
  }
  return notes;
}

function supervisedEverywhere(s: Support): boolean {
  const supported = APPLE_OS.filter((o) => !unsupported(s[o]));
  return supported.length > 0 && supported.every((o) => s[o].supervised === true);
}

function supportedText(s: Support): string {
  const on = APPLE_OS.filter((o) => !unsupported(s[o])).map((o) => {
    const v = s[o].introduced;
    return v && /^\d/.test(v) ? `${o} ${v}+` : o;
  });
  return on.length ? `supported on ${on.join(', ')}` : 'not supported on any platform';
}

/** Compiles one schema tree; memoised per (subkey list, inherited support) so recursive definitions close into a cycle. */
class Compiler {
  private readonly dicts = new WeakMap<KeysJson, Map<Support, Dict>>();
  private readonly items = new WeakMap<KeysJson, Map<Support, Node>>();
  constructor(private readonly defs: Record<string, KeysJson> | undefined) {}

  node(name: string, json: KeyJson, parent: Support): Node {
    const support = applyOS(parent, json.os);
    const node: Node = {
      name,
      type: json.type,
      required: json.presence === 'required' && name !== 'ANY',
      requiredIf: json.requiredIf,
      requiredUnless: json.requiredUnless,
      excludes: json.excludes,
      range: json.range,
      repetition: json.repetition,
      support,
      notes: notesFor(parent, support),
      supervisedEverywhere: supervisedEverywhere(support) && !supervisedEverywhere(parent),
      supportedText: supportedText(support),
    };
    if (json.rangelist) {
      node.rangelist = new Set(json.rangelist);
      const shown = json.rangelist.slice(0, 20).map((v) => JSON.stringify(v));
      node.rangelistText = shown.join(', ') + (json.rangelist.length > 20 ? `, … (${json.rangelist.length} values)` : '');
    }
    if (json.format) {
      try {
        node.format = new RegExp(json.format);
      } catch {
        // An expression JavaScript cannot compile is not checked.
      }
    }
    const sub = json.ref ? this.defs?.[json.ref] : json.subkeys;
    if (sub) {
      if (json.type === 'dictionary') node.dict = this.dict(sub, support);
      else if (json.type === 'array') node.item = this.item(sub, support);
    }
    return node;
  }

  dict(keys: KeysJson, parent: Support): Dict {
    let bySupport = this.dicts.get(keys);
    if (!bySupport) this.dicts.set(keys, (bySupport = new Map()));
    const hit = bySupport.get(parent);
    if (hit) return hit;
    const d: Dict = { fields: new Map(), required: [], names: [] };
    bySupport.set(parent, d); // registered before its children: they may lead back here
    for (const [name, json] of Object.entries(keys)) {
      const n = this.node(name, json, parent);
      if (name === 'ANY') d.any = n;
      else {
        d.fields.set(name, n);
        d.names.push(name);
        if (n.required) d.required.push(n);
      }
    }
    return d;
  }

  /** An array's subkeys hold a single entry describing every item. */
  item(keys: KeysJson, parent: Support): Node | undefined {
    let bySupport = this.items.get(keys);
    if (!bySupport) this.items.set(keys, (bySupport = new Map()));
    const hit = bySupport.get(parent);
    if (hit) return hit;
    const first = Object.entries(keys)[0];
    if (!first) return undefined;
    const [name, json] = first;
    // A recursive item (array of arrays of itself) must be findable before its subkeys compile.
    const placeholder: KeyJson = { ...json, subkeys: undefined, ref: undefined };
    const n = this.node(name, placeholder, parent);
    bySupport.set(parent, n);
    const sub = json.ref ? this.defs?.[json.ref] : json.subkeys;
    if (sub) {
      if (json.type === 'dictionary') n.dict = this.dict(sub, n.support);
      else if (json.type === 'array') n.item = this.item(sub, n.support);
    }
    return n;
  }
}

function rootNode(name: string, p: PayloadJson, withCommon: Dict | undefined): Node {
  const support = applyOS(FULL_SUPPORT, p.os);
  const node: Node = {
    name,
    type: 'dictionary',
    required: true,
    support,
    notes: notesFor(FULL_SUPPORT, support),
    supervisedEverywhere: supervisedEverywhere(support),
    supportedText: supportedText(support),
  };
  const own = new Compiler(p.defs).dict(p.keys, support);
  if (!withCommon) node.dict = own;
  else {
    // The payload's own definition wins over a common key of the same name.
    const fields = new Map(own.fields);
    for (const [k, n] of withCommon.fields) if (!fields.has(k)) fields.set(k, n);
    node.dict = {
      fields,
      any: own.any,
      required: [...own.required, ...withCommon.required.filter((n) => !own.fields.has(n.name))],
      names: [...fields.keys()],
    };
  }
  return node;
}

let commonDict: Dict | undefined;
let topLevelRoot: Node | undefined;
const compiled = new Map<string, CompiledPayload>();
let typeNames: string[] | undefined;

function common(): Dict {
  if (!commonDict) commonDict = new Compiler(DATA.common.defs).dict(DATA.common.keys, applyOS(FULL_SUPPORT, DATA.common.os));
  return commonDict;
}

function compile(type: string, p: PayloadJson, source: Source): CompiledPayload {
  return {
    type,
    root: rootNode(type, p, common()),
    variants: (p.variants ?? []).map((v) => ({ when: v.when, root: rootNode(type, v, common()) })),
    open: p.open === true,
    source,
  };
}

function payloadSpec(type: string): CompiledPayload | undefined {
  let c = compiled.get(type);
  if (c) return c;
  const p = Object.hasOwn(DATA.payloads, type) ? DATA.payloads[type] : undefined;
  if (!p) return undefined;
  c = compile(type, p, 'apple');
  compiled.set(type, c);
  return c;
}

const compiledManifests = new WeakMap<PayloadJson, CompiledPayload>();
function manifestSpec(type: string, p: PayloadJson): CompiledPayload {
  let c = compiledManifests.get(p);
  if (!c) compiledManifests.set(p, (c = compile(type, p, 'manifest')));
  return c;
}

/** Platforms the context targets that install only payload types Apple defines. */
function strictPlatforms(ctx: PayloadContext): Platform[] {
  return [...new Set(ctx.platforms)].filter((p) => p !== 'macOS');
}

// ---- public API ----

export function isKnownPayloadType(type: string): boolean {
  return Object.hasOwn(DATA.payloads, type);
}

export function knownPayloadTypes(): string[] {
  typeNames ??= Object.keys(DATA.payloads).sort();
  return [...typeNames];
}

/**
 * Validate one payload's keys (merged with CommonPayloadKeys) against Apple's schema, or, for a
 * preference domain outside it, against its manifest in ctx.manifests (else one info saying its
 * keys are not checked). Each issue carries its rule and that rule's severity (RULES).
 */
export function validatePayload(type: string, keys: Record<string, unknown>, ctx: PayloadContext): PayloadIssue[] {
  const issues: PayloadIssue[] = [];
  if (!isDict(keys)) return [payloadIssue('apple-payload', [], `a ${shortText(type)} payload must be a dictionary, got ${describe(keys)}`)];
  let spec = payloadSpec(type);
  if (!spec) {
    const manifest = ctx.manifests?.get(type);
    const strict = strictPlatforms(ctx);
    if (strict.length > 0) {
      // Only macOS turns an unknown PayloadType into managed preferences; the others refuse the profile.
      const hint = suggest(type, knownPayloadTypes(), 2);
      return [
        payloadIssue(
          'apple-payload-type',
          [],
          `unknown payload type '${shortText(type)}'${hint ? `; did you mean '${hint}'?` : ''}: ${strict.join(', ')} install only payload types Apple defines (a custom preference domain is macOS-only)`,
        ),
      ];
    }
    if (!manifest) {
      const hint = suggest(type, knownPayloadTypes(), 2);
      if (hint && hint !== type) {
        return [
          payloadIssue(
            'apple-payload-type-typo',
            [],
            `unknown payload type '${shortText(type)}'; did you mean '${hint}'? (macOS would apply it as managed preferences of the domain '${shortText(type)}')`,
          ),
        ];
      }
      return [payloadIssue('custom-preferences', [], uncheckedDomain(type, ctx))];
    }
    spec = manifestSpec(type, manifest);
  }
  const root = spec.variants.find((v) => matches(keys, v.when))?.root ?? spec.root;
  const domainManifest = spec.open ? ctx.manifests?.get(type) : undefined;
  const run = new Run(issues, ctx, spec.source, domainManifest ? manifestOnly(type, domainManifest) : undefined);
  if (ctx.mode === 'authored') {
    for (const k of GENERATED) {
      if (Object.hasOwn(keys, k)) issues.push(payloadIssue('apple-generated', [k], `'${k}' is generated by Orchard; remove it from the payload`));
    }
  } else if (typeof keys.PayloadType === 'string' && keys.PayloadType !== type) {
    issues.push(
      payloadIssue(
        'apple-payload-type',
        ['PayloadType'],
        `PayloadType '${shortText(keys.PayloadType)}' does not match the payload type '${type}' being validated`,
      ),
    );
  }
  run.notes(root, [], `payload type ${type}`);
  run.dict(root.dict!, keys, [], ctx.mode === 'authored' ? GENERATED : undefined, type, spec.open);
  if (type === MCX_PREFERENCES && isDict(keys.PayloadContent)) mcxDomains(keys.PayloadContent, ctx, issues);
  return issues;
}

/**
 * Validate a dictionary against a schema of profiles.json's shape from elsewhere (Apple's
 * declarations, src/ddm/apple): the same checks and rules as an Apple payload, without the
 * common payload keys. `label` names it in messages.
 */
export function validateWithSchema(label: string, spec: PayloadJson, keys: Record<string, unknown>, ctx: Omit<PayloadContext, 'mode'>): PayloadIssue[] {
  if (!isDict(keys)) return [payloadIssue('apple-payload', [], `${shortText(label)} must be a dictionary, got ${describe(keys)}`)];
  let root = foreignRoots.get(spec);
  if (!root) foreignRoots.set(spec, (root = rootNode(label, spec, undefined)));
  const issues: PayloadIssue[] = [];
  const run = new Run(issues, { ...ctx, mode: 'complete' }, 'apple');
  run.notes(root, [], label);
  run.dict(root.dict!, keys, [], undefined, label, spec.open === true);
  return issues;
}
const foreignRoots = new WeakMap<PayloadJson, Node>();

const MCX_PREFERENCES = 'com.apple.ManagedClient.preferences';

function uncheckedDomain(domain: string, ctx: PayloadContext): string {
  const how = ctx.manifests ? 'no manifest for it in --manifests' : '--manifests checks it';
  return `keys of ${shortText(domain)} are not checked (a preference domain outside Apple's schema, applied by macOS as managed preferences; ${how})`;
}

const mcxRoots = new WeakMap<PayloadJson, Node>();

/** A manifest's own keys, without CommonPayloadKeys (for keys inside another payload or MCX). */
function manifestOnly(domain: string, manifest: PayloadJson): Node {
  let root = mcxRoots.get(manifest);
  if (!root) mcxRoots.set(manifest, (root = rootNode(domain, manifest, undefined)));
  return root;
}

/**
 * The settings of each domain in a managed-preferences payload, against the domain's manifest:
 * they are that domain's preferences, without the payload keys around them.
 */
function mcxDomains(content: Record<string, unknown>, ctx: PayloadContext, issues: PayloadIssue[]): void {
  for (const [domain, v] of Object.entries(content)) {
    if (!isDict(v)) continue;
    if (isKnownPayloadType(domain)) continue; // Apple's own domains: their payload keys differ from preference keys
    const manifest = ctx.manifests?.get(domain);
    if (!manifest) {
      issues.push(payloadIssue('custom-preferences', ['PayloadContent', domain], uncheckedDomain(domain, ctx)));
      continue;
    }
    const root = manifestOnly(domain, manifest);
    const run = new Run(issues, ctx, 'manifest');
    // A manifest describes a payload: its Payload* keys have no place among the preferences.
    const payloadKeys = new Set(common().names);
    for (const kind of ['Forced', 'Set-Once', 'Often']) {
      const items = v[kind];
      if (!Array.isArray(items)) continue;
      items.forEach((item, i) => {
        if (isDict(item) && isDict(item.mcx_preference_settings)) {
          run.dict(root.dict!, item.mcx_preference_settings, ['PayloadContent', domain, kind, i, 'mcx_preference_settings'], payloadKeys, domain, false);
        }
      });
    }
  }
}

/**
 * Validate the top-level keys of a complete profile dict (TopLevel.yaml), for .mobileconfig
 * files, not recursing into PayloadContent (the caller validates each payload with
 * validatePayload). `ctx` (optional) adds platform warnings, e.g. PayloadScope outside macOS.
 */
export function validateTopLevel(profile: Record<string, unknown>, ctx?: Pick<PayloadContext, 'platforms' | 'supervised' | 'numberTag'>): PayloadIssue[] {
  topLevelRoot ??= rootNode('profile', DATA.topLevel, undefined);
  const issues: PayloadIssue[] = [];
  // PayloadContent's items are <any>-keyed dictionaries in TopLevel.yaml, so this stops there.
  new Run(issues, { platforms: ctx?.platforms ?? [], supervised: ctx?.supervised, mode: 'complete', numberTag: ctx?.numberTag }, 'apple').dict(
    topLevelRoot.dict!,
    profile,
    [],
    undefined,
    'the profile',
    false,
  );
  return issues;
}

const UUID = /^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$/;

/** What Apple's schema cannot say about a whole profile (a .mobileconfig): its UUIDs, empty content. */
export function checkProfile(profile: Record<string, unknown>): PayloadIssue[] {
  const issues: PayloadIssue[] = [];
  const seen = new Map<string, string>();
  const uuid = (v: unknown, path: (string | number)[]) => {
    if (typeof v !== 'string') return;
    const where = path.length ? path.join('.') : 'the profile';
    const key = v.toUpperCase();
    const first = seen.get(key);
    // The device refuses a profile whose payloads share a UUID ("duplicate payload UUID").
    if (first !== undefined)
      issues.push(
        payloadIssue('duplicate-uuid', [...path, 'PayloadUUID'], `PayloadUUID ${v} is also the PayloadUUID of ${first}: the device refuses the profile`),
      );
    else seen.set(key, where);
    // Devices accept any string, but tools and other MDMs expect a UUID.
    if (!UUID.test(v))
      issues.push(
        payloadIssue('uuid-format', [...path, 'PayloadUUID'], `PayloadUUID ${JSON.stringify(v.slice(0, 60))} is not a UUID (8-4-4-4-12 hexadecimal digits)`),
      );
  };
  uuid(profile.PayloadUUID, []);
  const content = profile.PayloadContent;
  if (Array.isArray(content)) {
    if (content.length === 0 && profile.IsEncrypted !== true)
      issues.push(payloadIssue('empty-payload-content', ['PayloadContent'], 'PayloadContent is empty: the profile installs but configures nothing'));
    content.forEach((payload, i) => {
      if (!payload || typeof payload !== 'object' || Array.isArray(payload)) return;
      const keys = payload as Record<string, unknown>;
      uuid(keys.PayloadUUID, ['PayloadContent', i]);
      const inner = keys.PayloadContent;
      const empty = Array.isArray(inner)
        ? inner.length === 0
        : inner !== null && typeof inner === 'object' && !(inner instanceof Uint8Array) && !(inner instanceof Date) && Object.keys(inner).length === 0;
      if (empty)
        issues.push(
          payloadIssue(
            'empty-payload-content',
            ['PayloadContent', i, 'PayloadContent'],
            `the PayloadContent of this ${String(keys.PayloadType)} payload is empty: it configures nothing`,
          ),
        );
    });
  }
  return issues;
}

// ---- validation walk ----

type Path = (string | number)[];

class Run {
  /** Apple OS -> the requested platform names that map to it (iPadOS shares iOS's entry). */
  private readonly targets = new Map<AppleOS, Platform[]>();
  /** Values on the current path, so cyclic input (YAML aliases) cannot recurse forever. */
  private readonly stack = new Set<object>();

  constructor(
    private readonly issues: PayloadIssue[],
    private readonly ctx: PayloadContext,
    private readonly source: Source,
    /** For an open (partly documented) domain: the manifest its undocumented keys are checked against. */
    private readonly manifestRoot?: Node,
  ) {
    for (const p of new Set(ctx.platforms)) {
      const o = PLATFORM_OS[p];
      if (!o) continue;
      this.targets.set(o, [...(this.targets.get(o) ?? []), p]);
    }
  }

  private add(rule: PayloadRule, path: Path, message: string): void {
    this.issues.push({ severity: RULES[rule].severity, rule, path: [...path], message });
  }

  /** Platform and supervision warnings where this key's support differs from its parent's. */
  notes(node: Node, path: Path, label: string): void {
    const wantSupervision = this.ctx.supervised !== true;
    if (this.targets.size === 0) {
      if (wantSupervision && node.supervisedEverywhere)
        this.add(
          'apple-supervision',
          path,
          `${label} requires a supervised device (${node.supportedText}); not every blueprint using this profile requires supervision`,
        );
      return;
    }
    if (node.notes.length === 0) return;
    const off: string[] = [];
    const removed: string[] = [];
    const supervised: string[] = [];
    for (const n of node.notes) {
      const names = this.targets.get(n.os);
      if (!names) continue;
      for (const name of names) {
        if (n.kind === 'unsupported') off.push(name);
        else if (n.kind === 'removed') removed.push(`${name} ${n.version}`);
        else supervised.push(name);
      }
    }
    if (off.length) this.add('apple-platform', path, `${label} is not supported on ${off.join(', ')} (${node.supportedText})`);
    if (removed.length) this.add('apple-platform', path, `${label} was removed in ${removed.join(', ')}`);
    if (supervised.length && wantSupervision)
      this.add(
        'apple-supervision',
        path,
        `${label} requires a supervised device on ${supervised.join(', ')}; not every blueprint using this profile requires supervision`,
      );
  }

  /**
   * `generated`: keys Orchard writes (authored payload root): neither checked nor required here.
   * `open`: a partly documented preference domain: other keys are preferences, said once.
   */
  dict(d: Dict, value: Record<string, unknown>, path: Path, generated: ReadonlySet<string> | undefined, where: string, open: boolean): void {
    const undocumented: string[] = [];
    for (const [k, v] of Object.entries(value)) {
      if (generated?.has(k)) continue; // reported by the caller
      const field = d.fields.get(k);
      const node = field ?? d.any;
      if (!node) {
        if (open) {
          undocumented.push(k);
          continue;
        }
        const names = generated ? d.names.filter((n) => !generated.has(n)) : d.names;
        const hint = suggest(k, names, Math.max(1, Math.min(3, Math.floor(k.length / 3))));
        const whose = this.source === 'manifest' ? `; not in its manifest` : '';
        this.add(
          this.source === 'manifest' ? 'manifest-unknown-key' : 'apple-unknown-key',
          [...path, k],
          `unknown key '${shortText(k)}' in ${where}${hint ? `; did you mean '${hint}'?` : ''}${whose}`,
        );
        continue;
      }
      path.push(k);
      if (field) this.notes(field, path, `'${k}'`);
      this.value(node, v, path, k);
      path.pop();
    }
    if (undocumented.length > 0) this.undocumented(value, undocumented, path, where);
    for (const n of d.required) {
      if (Object.hasOwn(value, n.name) || generated?.has(n.name)) continue;
      if (n.requiredIf && !matches(value, n.requiredIf)) continue;
      if (n.requiredUnless && matches(value, n.requiredUnless)) continue;
      // Devices install profiles and payloads without PayloadVersion.
      const rule: PayloadRule =
        this.source === 'manifest'
          ? 'manifest-required-key'
          : n.name === 'PayloadVersion' && path.length === 0
            ? 'apple-payload-version'
            : 'apple-required-key';
      this.add(rule, path, `missing required key '${n.name}' in ${where}${conditionText(n)}`);
    }
    for (const n of d.fields.values()) {
      if (n.excludes && Object.hasOwn(value, n.name) && Object.hasOwn(value, n.excludes)) {
        this.add('apple-exclusive', [...path, n.name], `'${n.name}' and '${n.excludes}' cannot both be set in ${where}`);
      }
    }
  }

  /** Keys of a partly documented domain Apple leaves out: against the domain's manifest, if there is one. */
  private undocumented(value: Record<string, unknown>, keys: string[], path: Path, where: string): void {
    const manifest = this.manifestRoot?.dict;
    if (manifest) {
      // Only these keys: the manifest's required ones may be among those Apple documents.
      const run = new Run(this.issues, this.ctx, 'manifest');
      run.dict({ ...manifest, required: [] }, Object.fromEntries(keys.map((k) => [k, value[k]])), path, undefined, where, false);
      return;
    }
    const shown =
      keys
        .slice(0, 10)
        .map((k) => `'${shortText(k)}'`)
        .join(', ') + (keys.length > 10 ? `, … (${keys.length} keys)` : '');
    this.add(
      'apple-undocumented-key',
      path,
      `${shown} ${keys.length === 1 ? 'is' : 'are'} not in Apple's schema of ${where}: applied as managed preferences, not checked`,
    );
  }

  private value(node: Node, v: unknown, path: Path, label: string): void {
    const manifest = this.source === 'manifest';
    const tag = typeof v === 'number' ? this.ctx.numberTag?.(path) : undefined;
    if (node.type === 'boolean' && (v === 0 || v === 1) && tag !== 'real') {
      // CFPreferences and the profile daemons read a number as a boolean (vendors ship this).
      this.add('apple-integer-for-boolean', path, `'${label}' is the integer ${v} for a boolean: read as ${v === 1}, but write <${v === 1}/>`);
      return;
    }
    if (node.type === 'integer' && tag === 'real') {
      if (Number.isInteger(v))
        this.add('apple-real-for-integer', path, `'${label}' is <real>${String(v)}.0</real> for an integer: read as ${String(v)}, but write <integer>`);
      else {
        this.add(manifest ? 'manifest-type' : 'apple-type', path, `'${label}' must be an integer, got real ${String(v)} (the device would truncate it)`);
        return;
      }
    } else {
      const problem = typeProblem(node.type, v);
      if (problem) {
        this.add(manifest ? 'manifest-type' : 'apple-type', path, `'${label}' ${problem}`);
        return;
      }
    }
    if (typeof v === 'string' && v.includes('${')) return; // a variable: its value is only known per device
    // Apple says PayloadVersion must be 1; devices install other values (Santa's profiles ship 2).
    const valueRule: PayloadRule = manifest ? 'manifest-value' : label === 'PayloadVersion' && path.length === 1 ? 'apple-payload-version' : 'apple-value';
    if (node.rangelist && !node.rangelist.has(v as Scalar)) {
      this.add(valueRule, path, `'${label}' must be one of ${node.rangelistText}; got ${shortText(JSON.stringify(v))}`);
    }
    if (node.range && (typeof v === 'number' || typeof v === 'bigint')) {
      const n = Number(v);
      const { min, max } = node.range;
      if ((min !== undefined && n < min) || (max !== undefined && n > max)) {
        const bounds = min !== undefined && max !== undefined ? `between ${min} and ${max}` : min !== undefined ? `at least ${min}` : `at most ${max}`;
        this.add(valueRule, path, `'${label}' must be ${bounds}; got ${n}`);
      }
    }
    if (node.format && typeof v === 'string' && !node.format.test(v)) {
      this.add(valueRule, path, `'${label}' must match ${node.format.source}; got ${shortText(JSON.stringify(v))}`);
    }
    if (node.type === 'dictionary' && node.dict)
      this.nested(v as object, () => this.dict(node.dict!, v as Record<string, unknown>, path, undefined, `'${label}'`, false), path);
    else if (node.type === 'array' && node.item) {
      const item = node.item;
      const arr = v as unknown[];
      const rep = item.repetition;
      if (rep && ((rep.min !== undefined && arr.length < rep.min) || (rep.max !== undefined && arr.length > rep.max))) {
        const want = rep.min === rep.max ? `exactly ${rep.min}` : `${rep.min ?? 0} to ${rep.max ?? '∞'}`;
        this.add(valueRule, path, `'${label}' must have ${want} items; has ${arr.length}`);
      }
      this.notes(item, path, `items of '${label}'`);
      this.nested(
        arr,
        () => {
          for (let i = 0; i < arr.length; i++) {
            path.push(i);
            this.value(item, arr[i], path, `${label}[${i}]`);
            path.pop();
          }
        },
        path,
      );
    }
  }

  private nested(v: object, walk: () => void, path: Path): void {
    if (this.stack.has(v)) {
      this.add('apple-circular', path, 'value contains itself (circular YAML alias)');
      return;
    }
    this.stack.add(v);
    walk();
    this.stack.delete(v);
  }
}

function matches(dict: Record<string, unknown>, c: Condition): boolean {
  if (!Object.hasOwn(dict, c.key)) return false;
  return c.equals === undefined || dict[c.key] === c.equals;
}

function conditionText(n: Node): string {
  const c = n.requiredIf ?? n.requiredUnless;
  if (!c) return '';
  const cond = c.equals === undefined ? `'${c.key}' is set` : `'${c.key}' is ${JSON.stringify(c.equals)}`;
  return n.requiredIf ? ` (required when ${cond})` : ` (required unless ${cond})`;
}

function isDict(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof Date);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'string') return `string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return `${typeof v} ${String(v)}`;
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Uint8Array) return 'data';
  if (v instanceof Date) return 'a date';
  if (typeof v === 'object') return 'a dictionary';
  return typeof v;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/; // tested with whitespace (line breaks) removed
// YAML has no date type: an RFC 3339 / ISO 8601 string stands for a <date>.
const ISO_DATE = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/;

/** Why `v` is not of Apple type `type`, or undefined when it is. */
function typeProblem(type: KeyType, v: unknown): string | undefined {
  let ok: boolean;
  let want: string;
  switch (type) {
    case 'string':
      ok = typeof v === 'string';
      want = 'a string';
      if (!ok && (typeof v === 'number' || typeof v === 'boolean')) return `must be a string, got ${describe(v)} (quote it in YAML)`;
      break;
    case 'integer':
      ok = (typeof v === 'number' && Number.isInteger(v)) || typeof v === 'bigint';
      want = 'an integer';
      break;
    case 'real':
      ok = (typeof v === 'number' && !Number.isNaN(v)) || typeof v === 'bigint'; // YAML integers are fine for <real>
      want = 'a number';
      break;
    case 'boolean':
      ok = typeof v === 'boolean';
      want = 'a boolean';
      break;
    case 'data':
      // Plists give Uint8Array; YAML has no binary type, so a <data> value there is a base64 string.
      if (typeof v === 'string')
        return BASE64.test(v.replace(/\s+/g, ''))
          ? undefined
          : `must be data (base64 in YAML), got ${describe(v)}${v.includes('${') ? '; variables are only substituted in <string> values' : ''}`;
      ok = v instanceof Uint8Array;
      want = 'data (base64 in YAML)';
      break;
    case 'date':
      if (typeof v === 'string') return ISO_DATE.test(v) ? undefined : `must be a date (ISO 8601 in YAML), got ${describe(v)}`;
      ok = v instanceof Date && !Number.isNaN(v.getTime());
      want = 'a date';
      break;
    case 'array':
      ok = Array.isArray(v);
      want = 'an array';
      break;
    case 'dictionary':
      ok = isDict(v);
      want = 'a dictionary';
      break;
    default:
      return undefined; // <any>
  }
  if (ok) return undefined;
  const variable = typeof v === 'string' && v.includes('${') ? '; variables are only substituted in <string> values' : '';
  return `must be ${want}, got ${describe(v)}${variable}`;
}

/** The closest candidate within `max` edits (case-insensitive; a transposition counts once). */
export function suggest(word: string, candidates: readonly string[], max: number): string | undefined {
  const w = word.toLowerCase();
  let best: string | undefined;
  let bestD = max + 1;
  for (const c of candidates) {
    if (Math.abs(c.length - w.length) >= bestD) continue;
    const d = distance(w, c.toLowerCase(), bestD);
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best;
}

/** Optimal string alignment distance, giving up (returning `limit`) once it must exceed limit - 1. */
function distance(a: string, b: string, limit: number): number {
  if (a === b) return 0;
  const n = b.length;
  let prev2 = new Array<number>(n + 1).fill(0);
  let prev = Array.from({ length: n + 1 }, (_, j) => j);
  let cur = new Array<number>(n + 1).fill(0);
  for (let i = 1; i <= a.length; i++) {
    cur[0] = i;
    let rowMin = i;
    for (let j = 1; j <= n; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(at(prev, j) + 1, at(cur, j - 1) + 1, at(prev, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, at(prev2, j - 2) + 1);
      cur[j] = d;
      if (d < rowMin) rowMin = d;
    }
    if (rowMin >= limit) return limit;
    [prev2, prev, cur] = [prev, cur, prev2];
  }
  return at(prev, n);
}
