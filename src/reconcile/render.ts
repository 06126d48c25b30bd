/**
 * Rendering a Profile document for one device: variables substituted, Orchard's payload
 * identifiers filled in, and PayloadUUIDs derived from the content. Same content -> same UUIDs,
 * on any server, on any run, so a ProfileList alone tells which version a device has.
 *
 * A profile is compiled once per revision into a pre-split template: the XML plist and the
 * canonical JSON that is hashed, each cut at the strings that hold variables and at the
 * PayloadUUIDs. Rendering for a device substitutes those few strings, hashes the canonical
 * segments and derives the UUIDs; the XML bytes are only joined when an install needs them. A
 * 5 MB profile costs a device one SHA-256 pass, not a walk and rebuild of the plist.
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import type { ProfileDoc } from '../gitops/model.js';
import { readProfile } from '../gitops/mobileconfig.js';
import { findVariables, substitute, type VariableRef } from '../gitops/variables.js';
import { buildPlist, type PlistDict, type PlistValue } from '../protocol/plist.js';
import { plistXml, PlistTextError, xmlString as xmlStringOf } from './plist-writer.js';
import { Malformed } from '../errors.js';

export interface RenderedProfile {
  identifier: string;
  uuid: string;
  /** Hash of the rendering with secrets left as placeholders: comparable without secret values. */
  templateHash: string;
  /** Length of the InstallProfile payload in bytes (about; exact for a constant profile). */
  size: number;
  /** Whether it depends on device facts (else every device gets this same rendering). */
  perDevice: boolean;
  /** The InstallProfile payload, joined on demand so that no per-device payload is held. */
  bytes(): Buffer;
  /**
   * The payload's base64, in parts to concatenate: the big literal parts of a template are
   * encoded once per revision, so a device costs a copy, not an encoding of 5 MB.
   */
  base64(): Buffer[];
}

export type DeviceValues = Partial<Record<string, string>>;

/** Secret values by name; undefined when the server has none. */
export type SecretLookup = (name: string) => string | undefined;

export class RenderError extends Malformed {}

/**
 * Work cut into slices: a generator that yields between slices (a few hundred KB of hashing
 * each). `runSteps` runs it straight through; `runStepsAsync` lets the event loop in between.
 */
export type Steps<T> = Generator<void, T, void>;

export function runSteps<T>(steps: Steps<T>): T {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

export async function runStepsAsync<T>(steps: Steps<T>, pace: () => Promise<void> | void): Promise<T> {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    await pace();
  }
}

/** Bytes hashed or copied between two yields. */
const SLICE_BYTES = 256 * 1024;

/** A name-based UUID (RFC 9562 layout, version 5 bits) from a SHA-256 digest. */
export function uuidFrom(hash: Buffer): string {
  const b = Buffer.from(hash.subarray(0, 16));
  b[6] = (b[6]! & 0x0f) | 0x50;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString('hex').toUpperCase();
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Canonical JSON of a plist value (sorted keys; data and dates tagged) for hashing. */
function canonical(v: PlistValue | undefined): string {
  return runSteps(canonicalSteps(v, { n: 0 }));
}

/** The same, yielding every few thousand containers. */
function* canonicalSteps(v: PlistValue | undefined, count: { n: number }): Steps<string> {
  if (v instanceof Uint8Array) return `{"$data":"${Buffer.from(v).toString('base64')}"}`;
  if (v instanceof Date) return `{"$date":"${v.toISOString()}"}`;
  if (Array.isArray(v) || (v && typeof v === 'object')) {
    if (++count.n % 5000 === 0) yield;
    const parts: string[] = [];
    if (Array.isArray(v)) {
      for (const x of v) parts.push(yield* canonicalSteps(x, count));
      return `[${parts.join(',')}]`;
    }
    for (const k of Object.keys(v).sort()) parts.push(`${JSON.stringify(k)}:${yield* canonicalSteps((v as PlistDict)[k], count)}`);
    return `{${parts.join(',')}}`;
  }
  return JSON.stringify(v ?? null);
}

function sha256(s: string | Buffer): Buffer {
  return createHash('sha256').update(s).digest();
}

/** YAML values -> plist values; strings get variables substituted. */
export function toPlist(v: unknown, sub: (s: string) => string): PlistValue {
  if (typeof v === 'string') return sub(v);
  if (typeof v === 'number' || typeof v === 'boolean') return v;
  if (v instanceof Uint8Array || v instanceof Date) return v;
  if (Array.isArray(v)) return v.map((x) => toPlist(x, sub));
  if (v && typeof v === 'object') {
    const out: PlistDict = {};
    for (const [k, x] of Object.entries(v)) out[k] = toPlist(x, sub);
    return out;
  }
  return '';
}

/** Substitutes device variables and secrets in a string; `what` names the document in errors ('profile "wifi"'). */
export function substituter(device: DeviceValues, secrets: SecretLookup | undefined, what: string): (s: string) => string {
  return (s: string) => {
    if (!s.includes('${')) return s;
    return substitute(s, (ref: VariableRef) => {
      if (ref.kind === 'device') {
        const v = device[ref.name];
        if (v === undefined) throw new RenderError(`${what}: the device has no ${ref.name} for ${ref.raw}`);
        return v;
      }
      if (ref.kind === 'secret') {
        // Without a lookup (plan, template hash) the placeholder itself is hashed.
        if (!secrets) return `\${secret:${ref.name}}`;
        const v = secrets(ref.name);
        if (v === undefined) throw new RenderError(`${what}: secret "${ref.name}" has no value on the server`);
        return v;
      }
      throw new RenderError(`${what}: unknown variable ${ref.raw}`);
    });
  };
}

function authoredDict(p: ProfileDoc, sub: (s: string) => string): PlistDict {
  const content: PlistDict[] = (p.payloads ?? []).map((payload, i) => ({
    ...(toPlist(payload.keys, sub) as PlistDict),
    PayloadType: payload.type,
    PayloadIdentifier: `${p.identifier}.${i + 1}.${payload.type}`,
    PayloadVersion: 1,
  }));
  const dict: PlistDict = {
    PayloadType: 'Configuration',
    PayloadIdentifier: p.identifier,
    PayloadDisplayName: p.displayName ?? p.name,
    PayloadScope: p.scope,
    PayloadVersion: 1,
    PayloadContent: content,
  };
  if (p.description) dict.PayloadDescription = p.description;
  if (p.organization) dict.PayloadOrganization = p.organization;
  return dict;
}

const strip = (d: PlistDict): PlistDict => {
  const { PayloadUUID: _u, ...rest } = d;
  return rest;
};
const contentOf = (dict: PlistDict) => (Array.isArray(dict.PayloadContent) ? dict.PayloadContent : []) as PlistDict[];
/** What the version hash covers: everything but the PayloadUUIDs it names. */
const hashedValue = (dict: PlistDict): PlistDict => ({ ...strip(dict), PayloadContent: contentOf(dict).map(strip) });
const hashed = (dict: PlistDict) => canonical(hashedValue(dict));
/** The dict with its PayloadUUIDs: the profile's, and each payload's from the hash and position. */
const withUuids = (dict: PlistDict, uuid: string, payloadUuid: (i: number) => string): PlistDict => ({
  ...dict,
  PayloadUUID: uuid,
  PayloadContent: contentOf(dict).map((c, i) => ({ ...c, PayloadUUID: payloadUuid(i) })),
});
const payloadUuid = (hash: Buffer, i: number) => uuidFrom(sha256(`${hash.toString('hex')}:${i}`));

function xmlString(s: string, profile: string): string {
  try {
    return xmlStringOf(s);
  } catch (err) {
    if (err instanceof PlistTextError) throw new RenderError(`profile "${profile}": a value contains a character a plist cannot carry`);
    throw err;
  }
}

/** A slot between two literal segments of a template. */
type Slot = { kind: 'string'; i: number } | { kind: 'uuid' } | { kind: 'payloadUuid'; i: number };

interface Template {
  /** Literal segments; slot k sits between segments k and k+1. */
  segments: Buffer[];
  slots: Slot[];
  /** Per big segment, its base64 from byte offset 0, 1 and 2 (whole 3-byte groups only); made when first needed. */
  base64?: (Buffer[] | undefined)[];
}

interface Compiled {
  /** Set when the rendering is the same for every device (files, profiles without variables). */
  constant?: RenderedProfile;
  /** The strings that hold variables, in slot order. */
  strings: string[];
  /** Canonical JSON (hashed) and XML plist, cut at the slots. */
  canonical: Template;
  xml: Template;
  usesSecrets: boolean;
  size: number;
}

const compiled = new WeakMap<ProfileDoc, Compiled>();

function* compile(p: ProfileDoc): Steps<Compiled> {
  let c = compiled.get(p);
  if (!c) compiled.set(p, (c = p.fileBytes ? compileFile(p) : yield* compileAuthored(p)));
  return c;
}

function constantRendering(r: Omit<RenderedProfile, 'size' | 'bytes' | 'base64' | 'perDevice'>, bytes: Buffer): RenderedProfile {
  let b64: Buffer[] | undefined;
  return { ...r, size: bytes.length, perDevice: false, bytes: () => bytes, base64: () => (b64 ??= [Buffer.from(bytes.toString('base64'), 'latin1')]) };
}

function constant(p: ProfileDoc, r: Omit<RenderedProfile, 'identifier' | 'size' | 'bytes' | 'base64' | 'perDevice'>, bytes: Buffer): Compiled {
  const empty: Template = { segments: [], slots: [] };
  return {
    constant: constantRendering({ identifier: p.identifier, ...r }, bytes),
    strings: [],
    canonical: empty,
    xml: empty,
    usesSecrets: false,
    size: bytes.length,
  };
}

function compileFile(p: ProfileDoc): Compiled {
  const { profile, signed } = readProfile(p.fileBytes!);
  if (signed) {
    // A signed profile is installed byte for byte; its own PayloadUUID names its version.
    const uuid = String(profile.PayloadUUID ?? uuidFrom(sha256(p.fileBytes!)));
    return constant(p, { uuid, templateHash: sha256(p.fileBytes!).toString('hex') }, p.fileBytes!);
  }
  // An unsigned file gets content-derived UUIDs like an authored profile: editing the file
  // without touching its PayloadUUID must still count as a new version.
  const hash = sha256(hashed(profile));
  const uuid = uuidFrom(hash);
  return constant(p, { uuid, templateHash: hash.toString('hex') }, buildPlist(withUuids(profile, uuid, (i) => payloadUuid(hash, i))));
}

/** Once per profile and revision, in slices: a 5 MB profile is a few hundred ms of work. */
function* compileAuthored(p: ProfileDoc): Steps<Compiled> {
  // Markers stand in for the slots while the plist and the canonical JSON are built once: private
  // use characters around a random nonce, which JSON and XML escaping leave alone.
  const nonce = randomBytes(8).toString('hex');
  const mark = (tag: string) => `\uE000${nonce}${tag}\uE001`;
  const strings: string[] = [];
  const dict = authoredDict(p, (s) => {
    if (!s.includes('${')) return s;
    // `$${` alone is a literal: the same for every device, substituted here once.
    if (findVariables(s).length === 0) return substitute(s, () => undefined);
    strings.push(s);
    return mark(`s${strings.length - 1}`);
  });
  yield;
  let xml: string;
  try {
    xml = yield* plistXml(withUuids(dict, mark('u'), (i) => mark(`p${i}`)));
  } catch (err) {
    if (err instanceof PlistTextError) throw new RenderError(`profile "${p.name}": ${err.message}`);
    throw err;
  }
  const canon = yield* canonicalSteps(hashedValue(dict), { n: 0 });
  const split = (text: string, markup: (m: string) => string): Template => {
    const re = new RegExp(markup(`\uE000${nonce}(s|p|u)(\\d*)\uE001`), 'g');
    const segments: Buffer[] = [];
    const slots: Slot[] = [];
    let last = 0;
    for (const m of text.matchAll(re)) {
      segments.push(Buffer.from(text.slice(last, m.index), 'utf8'));
      slots.push(m[1] === 's' ? { kind: 'string', i: Number(m[2]) } : m[1] === 'p' ? { kind: 'payloadUuid', i: Number(m[2]) } : { kind: 'uuid' });
      last = m.index! + m[0].length;
    }
    segments.push(Buffer.from(text.slice(last), 'utf8'));
    return { segments, slots };
  };
  // In the XML a string slot covers its whole element (an empty value is written `<string/>`).
  const xmlT = split(xml, (m) => `<string>${m}</string>`);
  yield;
  const canonT = split(canon, (m) => `"${m}"`);
  yield;
  const size = xmlT.segments.reduce((n, s) => n + s.length, 0);
  const c: Compiled = { strings, canonical: canonT, xml: xmlT, usesSecrets: p.secrets.length > 0, size };
  if (strings.length === 0) {
    const r = runSteps(renderCompiled(p, c, {}, undefined));
    c.constant = constantRendering(r, r.bytes());
  }
  return c;
}

function* hashTemplate(t: Template, strings: string[]): Steps<Buffer> {
  const h: Hash = createHash('sha256');
  let since = 0;
  const update = function* (b: Buffer): Steps<void> {
    for (let o = 0; o < b.length; o += SLICE_BYTES) {
      const part = b.subarray(o, o + SLICE_BYTES);
      h.update(part);
      since += part.length;
      if (since >= SLICE_BYTES) {
        since = 0;
        yield;
      }
    }
  };
  for (let k = 0; k < t.slots.length; k++) {
    yield* update(t.segments[k]!);
    // Canonical JSON has only string slots (the UUIDs are not hashed).
    h.update(JSON.stringify(strings[(t.slots[k] as { i: number }).i]!));
  }
  yield* update(t.segments[t.segments.length - 1]!);
  return h.digest();
}

/** The XML's pieces in order: literal segments and the slots' values. */
function xmlParts(c: Compiled, strings: string[], uuid: string, payloadUuids: string[], profile: string): { buf: Buffer; literal?: number }[] {
  const parts: { buf: Buffer; literal?: number }[] = [];
  const { segments, slots } = c.xml;
  for (let k = 0; k < slots.length; k++) {
    parts.push({ buf: segments[k]!, literal: k });
    const s = slots[k]!;
    parts.push({
      buf: Buffer.from(s.kind === 'string' ? xmlString(strings[s.i]!, profile) : `<string>${s.kind === 'uuid' ? uuid : payloadUuids[s.i]!}</string>`, 'utf8'),
    });
  }
  parts.push({ buf: segments[segments.length - 1]!, literal: segments.length - 1 });
  return parts;
}

/** Literal segments at least this long get their base64 precomputed. */
const BASE64_PRECOMPUTE = 4096;

/**
 * base64 of the pieces' concatenation: small pieces are encoded as they come; a big literal
 * segment's encoding is taken from the template, at the phase (offset mod 3) it falls on.
 */
function base64Parts(t: Template, parts: { buf: Buffer; literal?: number }[]): Buffer[] {
  const out: Buffer[] = [];
  let pending: Buffer[] = [];
  let pendingLen = 0;
  const flushWhole = () => {
    // Encode the pending bytes' whole 3-byte groups; keep the 0-2 left over.
    const data = Buffer.concat(pending, pendingLen);
    const whole = pendingLen - (pendingLen % 3);
    if (whole > 0) out.push(Buffer.from(data.subarray(0, whole).toString('base64'), 'latin1'));
    pending = [data.subarray(whole)];
    pendingLen -= whole;
  };
  for (const { buf, literal } of parts) {
    if (literal === undefined || buf.length < BASE64_PRECOMPUTE) {
      pending.push(buf);
      pendingLen += buf.length;
      continue;
    }
    flushWhole();
    // Complete the left-over group with the segment's first bytes, then its precomputed rest.
    const phase = (3 - pendingLen) % 3;
    if (phase > 0) {
      pending.push(buf.subarray(0, phase));
      pendingLen += phase;
      flushWhole();
    }
    t.base64 ??= [];
    const encoded = (t.base64[literal] ??= [0, 1, 2].map((ph) => {
      const seg = t.segments[literal]!;
      return Buffer.from(seg.subarray(ph, ph + Math.floor((seg.length - ph) / 3) * 3).toString('base64'), 'latin1');
    }));
    out.push(encoded[phase]!);
    const rest = buf.subarray(phase + Math.floor((buf.length - phase) / 3) * 3);
    pending = [rest];
    pendingLen = rest.length;
  }
  const tail = Buffer.concat(pending, pendingLen);
  if (tail.length > 0) out.push(Buffer.from(tail.toString('base64'), 'latin1'));
  return out;
}

function* renderCompiled(p: ProfileDoc, c: Compiled, device: DeviceValues, secrets: SecretLookup | undefined): Steps<RenderedProfile> {
  // The template hash first: a missing device fact is reported before a missing secret.
  const plain = c.strings.map(substituter(device, undefined, `profile "${p.name}"`));
  const templateHash = yield* hashTemplate(c.canonical, c.strings.length ? plain : []);
  const withSecrets = secrets && c.usesSecrets ? c.strings.map(substituter(device, secrets, `profile "${p.name}"`)) : plain;
  const hash = withSecrets === plain ? templateHash : yield* hashTemplate(c.canonical, withSecrets);
  const uuid = uuidFrom(hash);
  const payloadUuids = Array.from({ length: p.payloads?.length ?? 0 }, (_, i) => payloadUuid(hash, i));
  // Checked now, not when the bytes are joined: a value that cannot be written fails the render.
  for (const s of withSecrets) xmlString(s, p.name);
  return {
    identifier: p.identifier,
    uuid,
    templateHash: templateHash.toString('hex'),
    size: c.size,
    perDevice: p.variables.length > 0,
    bytes: () => Buffer.concat(xmlParts(c, withSecrets, uuid, payloadUuids, p.name).map((x) => x.buf)),
    base64: () => base64Parts(c.xml, xmlParts(c, withSecrets, uuid, payloadUuids, p.name)),
  };
}

/** Render in slices (see `Steps`); a RenderError says why this device cannot have it. */
export function* renderSteps(p: ProfileDoc, device: DeviceValues, secrets: SecretLookup | undefined): Steps<RenderedProfile> {
  const c = yield* compile(p);
  if (c.constant) return c.constant;
  return yield* renderCompiled(p, c, device, secrets);
}

export function renderProfile(p: ProfileDoc, device: DeviceValues, secrets: SecretLookup | undefined): RenderedProfile {
  return runSteps(renderSteps(p, device, secrets));
}
