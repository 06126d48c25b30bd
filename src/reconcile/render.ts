/**
 * Rendering a Profile document for one device: variables substituted, Orchard's payload
 * identifiers filled in, and PayloadUUIDs derived from the content. Same content -> same UUIDs,
 * on any server, on any run, so a ProfileList alone tells which version a device has.
 */
import { createHash } from 'node:crypto';
import type { ProfileDoc } from '../gitops/model.js';
import { readProfile } from '../gitops/mobileconfig.js';
import { substitute, type VariableRef } from '../gitops/variables.js';
import { buildPlist, type PlistDict, type PlistValue } from '../protocol/plist.js';

export interface RenderedProfile {
  identifier: string;
  uuid: string;
  /** Hash of the rendering with secrets left as placeholders: comparable without secret values. */
  templateHash: string;
  /** The InstallProfile payload. */
  bytes: Buffer;
}

export type DeviceValues = Partial<Record<string, string>>;

/** Secret values by name; undefined when the server has none. */
export type SecretLookup = (name: string) => string | undefined;

export class RenderError extends Error {}

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
  if (v instanceof Uint8Array) return `{"$data":"${Buffer.from(v).toString('base64')}"}`;
  if (v instanceof Date) return `{"$date":"${v.toISOString()}"}`;
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical((v as PlistDict)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v ?? null);
}

function sha256(s: string | Buffer): Buffer {
  return createHash('sha256').update(s).digest();
}

/** YAML values -> plist values; strings get variables substituted. */
function toPlist(v: unknown, sub: (s: string) => string): PlistValue {
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

function substituter(device: DeviceValues, secrets: SecretLookup | undefined, profile: string): (s: string) => string {
  return (s: string) => {
    if (!s.includes('${')) return s;
    return substitute(s, (ref: VariableRef) => {
      if (ref.kind === 'device') {
        const v = device[ref.name];
        if (v === undefined) throw new RenderError(`profile "${profile}": the device has no ${ref.name} for ${ref.raw}`);
        return v;
      }
      if (ref.kind === 'secret') {
        // Without a lookup (plan, template hash) the placeholder itself is hashed.
        if (!secrets) return `\${secret:${ref.name}}`;
        const v = secrets(ref.name);
        if (v === undefined) throw new RenderError(`profile "${profile}": secret "${ref.name}" has no value on the server`);
        return v;
      }
      throw new RenderError(`profile "${profile}": unknown variable ${ref.raw}`);
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

/** Fill PayloadUUIDs from the content; payload UUIDs from the profile's hash and position. */
function withUuids(dict: PlistDict): { dict: PlistDict; uuid: string; hash: Buffer } {
  const strip = (d: PlistDict): PlistDict => {
    const { PayloadUUID: _u, ...rest } = d;
    return rest;
  };
  const content = (Array.isArray(dict.PayloadContent) ? dict.PayloadContent : []) as PlistDict[];
  const hash = sha256(canonical({ ...strip(dict), PayloadContent: content.map(strip) }));
  const uuid = uuidFrom(hash);
  return {
    hash,
    uuid,
    dict: {
      ...dict,
      PayloadUUID: uuid,
      PayloadContent: content.map((c, i) => ({ ...c, PayloadUUID: uuidFrom(sha256(`${hash.toString('hex')}:${i}`)) })),
    },
  };
}

export function renderProfile(p: ProfileDoc, device: DeviceValues, secrets: SecretLookup | undefined): RenderedProfile {
  if (p.fileBytes) {
    const { profile, signed } = readProfile(p.fileBytes);
    if (signed) {
      // A signed profile is installed byte for byte; its own PayloadUUID names its version.
      const uuid = String(profile.PayloadUUID ?? uuidFrom(sha256(p.fileBytes)));
      const templateHash = sha256(p.fileBytes).toString('hex');
      return { identifier: p.identifier, uuid, templateHash, bytes: p.fileBytes };
    }
    // An unsigned file gets content-derived UUIDs like an authored profile: editing the file
    // without touching its PayloadUUID must still count as a new version.
    const r = withUuids(profile);
    return { identifier: p.identifier, uuid: r.uuid, templateHash: r.hash.toString('hex'), bytes: buildPlist(r.dict) };
  }
  const template = withUuids(authoredDict(p, substituter(device, undefined, p.name)));
  const r = secrets && p.secrets.length > 0 ? withUuids(authoredDict(p, substituter(device, secrets, p.name))) : template;
  return { identifier: p.identifier, uuid: r.uuid, templateHash: template.hash.toString('hex'), bytes: buildPlist(r.dict) };
}
