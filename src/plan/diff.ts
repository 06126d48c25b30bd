/**
 * What changed inside an artifact between two renderings: payloads added or removed (matched by
 * PayloadIdentifier, then by PayloadType), keys added, removed or changed with old and new
 * values. Works on rendered plist/JSON values, so a configuration profile (a dict with
 * PayloadContent) and a declaration (a dict with a Payload) are diffed the same way.
 *
 * Values are compared as values: key order, plist encoding (XML, binary) and whitespace are no
 * change. What is shown is safe for a pull-request comment: values from `${secret:...}` and the
 * values of keys that hold secrets are masked, long strings and data are shown as size + hash.
 */
import { createHash } from 'node:crypto';
import type { PlistDict, PlistValue } from '../protocol/plist.js';

export type ChangeOp = 'add' | 'remove' | 'change';

export interface KeyChange {
  op: ChangeOp;
  /** Dotted path below the payload (`Rules[0].Identifier`). */
  path: string;
  /** Display forms, already masked and summarized. */
  old?: string;
  new?: string;
}

export interface PayloadChange {
  op: ChangeOp;
  identifier: string;
  type: string;
  keys: KeyChange[];
}

export interface ArtifactDiff {
  /** Keys of the artifact itself (PayloadDisplayName, PayloadScope, a declaration's Payload keys...). */
  keys: KeyChange[];
  payloads: PayloadChange[];
}

/** Keys that are derived, not authored: a new rendering gives them new values by itself. */
const DERIVED = new Set(['PayloadUUID', 'ServerToken']);

/** Keys whose string or data values are secrets (Wi-Fi and VPN passwords, PKCS#12 passwords, shared secrets). */
const SENSITIVE = /password|passphrase|secret|presharedkey|sharedkey|privatekey|token|pin$/i;

const SECRET_REF = /\$\{secret:([A-Za-z0-9_.-]+)\}/;

/** Longest value shown as it is. */
const MAX_SHOWN = 120;

type Dict = PlistDict;
const isDict = (v: PlistValue | undefined): v is Dict =>
  v !== null && v !== undefined && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof Date);

export function valuesEqual(a: PlistValue | undefined, b: PlistValue | undefined): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined || a === null || b === null) return false;
  if (a instanceof Uint8Array || b instanceof Uint8Array) return a instanceof Uint8Array && b instanceof Uint8Array && Buffer.from(a).equals(Buffer.from(b));
  if (a instanceof Date || b instanceof Date) return a instanceof Date && b instanceof Date && a.getTime() === b.getTime();
  if (Array.isArray(a) || Array.isArray(b)) return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => valuesEqual(x, b[i]));
  if (isDict(a) && isDict(b)) {
    const ka = Object.keys(a);
    if (ka.length !== Object.keys(b).length) return false;
    return ka.every((k) => Object.hasOwn(b, k) && valuesEqual(a[k], b[k]));
  }
  return false;
}

function digest(v: PlistValue): string {
  return createHash('sha256').update(canonical(v)).digest('hex').slice(0, 12);
}

function canonical(v: PlistValue | undefined): string {
  if (v instanceof Uint8Array) return `{"$data":"${Buffer.from(v).toString('base64')}"}`;
  if (v instanceof Date) return `{"$date":"${v.toISOString()}"}`;
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (isDict(v))
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`)
      .join(',')}}`;
  return JSON.stringify(v ?? null);
}

function compact(v: PlistValue): string {
  if (v instanceof Uint8Array) return `<data ${v.length} bytes>`;
  if (v instanceof Date) return v.toISOString();
  if (Array.isArray(v)) return `[${v.map(compact).join(', ')}]`;
  if (isDict(v))
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${k}: ${compact(v[k]!)}`)
      .join(', ')}}`;
  return JSON.stringify(v);
}

/** Whether a value (or anything inside it) comes from a secret or sits under a secret's key. */
function secretIn(v: PlistValue, key: string): string | undefined {
  if (typeof v === 'string') {
    const m = SECRET_REF.exec(v);
    if (m) return `‹from secret ${m[1]}›`;
    return SENSITIVE.test(key) ? '‹masked›' : undefined;
  }
  if (v instanceof Uint8Array) return SENSITIVE.test(key) ? '‹masked›' : undefined;
  if (Array.isArray(v)) {
    for (const x of v) {
      const s = secretIn(x, key);
      if (s) return s;
    }
  } else if (isDict(v)) {
    for (const [k, x] of Object.entries(v)) {
      const s = secretIn(x, k);
      if (s) return s;
    }
  }
  return undefined;
}

/** A value as the plan shows it: masked, or as it is when short, else its kind, size and hash. */
export function show(v: PlistValue, key: string): string {
  const masked = secretIn(v, key);
  if (masked) return masked;
  if (typeof v === 'string') return v.length <= MAX_SHOWN ? JSON.stringify(v) : `<string, ${v.length} characters, sha256 ${digest(v)}>`;
  if (v instanceof Uint8Array) return v.length <= 24 ? `<data ${Buffer.from(v).toString('base64')}>` : `<data, ${v.length} bytes, sha256 ${digest(v)}>`;
  const c = compact(v);
  if (c.length <= MAX_SHOWN) return c;
  if (Array.isArray(v)) return `<array, ${v.length} items, sha256 ${digest(v)}>`;
  if (isDict(v)) return `<dict, ${Object.keys(v).length} keys, sha256 ${digest(v)}>`;
  return c;
}

const join = (path: string, key: string) => (path ? `${path}.${key}` : key);

function diffValue(path: string, key: string, a: PlistValue | undefined, b: PlistValue | undefined, out: KeyChange[]): void {
  if (valuesEqual(a, b)) return;
  if (a === undefined) {
    out.push({ op: 'add', path, new: show(b!, key) });
    return;
  }
  if (b === undefined) {
    out.push({ op: 'remove', path, old: show(a, key) });
    return;
  }
  if (isDict(a) && isDict(b)) {
    diffDict(path, a, b, out);
    return;
  }
  // Arrays of dicts of the same length (rules, servers, app lists) are compared item by item.
  if (Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every(isDict) && b.every(isDict)) {
    a.forEach((x, i) => diffValue(`${path}[${i}]`, key, x, b[i], out));
    return;
  }
  out.push({ op: 'change', path, old: show(a, key), new: show(b, key) });
}

function diffDict(path: string, a: Dict, b: Dict, out: KeyChange[], skip: ReadonlySet<string> = DERIVED): void {
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => !skip.has(k)).sort();
  for (const k of keys) diffValue(join(path, k), k, a[k], b[k], out);
}

/** Every key of a value added or removed whole, leaf by leaf (an installed or removed payload). */
function allKeys(op: 'add' | 'remove', d: Dict, skip: ReadonlySet<string>): KeyChange[] {
  const out: KeyChange[] = [];
  diffDict('', op === 'add' ? {} : d, op === 'add' ? d : {}, out, skip);
  return out;
}

const PAYLOAD_ENVELOPE = new Set([...DERIVED, 'PayloadIdentifier', 'PayloadType', 'PayloadVersion']);
const TOP_SKIP = new Set([...DERIVED, 'PayloadContent']);
const WHOLE_SKIP = new Set([...TOP_SKIP, 'PayloadIdentifier', 'PayloadType', 'PayloadVersion']);

function payloadsOf(d: Dict | undefined): Dict[] {
  const c = d?.PayloadContent;
  return Array.isArray(c) ? c.filter(isDict) : [];
}

const str = (v: PlistValue | undefined) => (typeof v === 'string' ? v : '');

/** Pairs of payloads: by PayloadIdentifier first, then the leftovers by PayloadType when it is unique on both sides. */
function matchPayloads(before: Dict[], after: Dict[]): { a?: Dict; b?: Dict }[] {
  const pairs: { a?: Dict; b?: Dict }[] = [];
  const restA = new Set(before);
  const restB = new Set(after);
  const byId = new Map<string, Dict>();
  for (const a of before) if (str(a.PayloadIdentifier) && !byId.has(str(a.PayloadIdentifier))) byId.set(str(a.PayloadIdentifier), a);
  for (const b of after) {
    const a = byId.get(str(b.PayloadIdentifier));
    if (a && restA.has(a)) {
      pairs.push({ a, b });
      restA.delete(a);
      restB.delete(b);
    }
  }
  const count = (set: Set<Dict>, type: string) => [...set].filter((x) => str(x.PayloadType) === type).length;
  for (const b of [...restB]) {
    const type = str(b.PayloadType);
    if (count(restB, type) !== 1 || count(restA, type) !== 1) continue;
    const a = [...restA].find((x) => str(x.PayloadType) === type)!;
    pairs.push({ a, b });
    restA.delete(a);
    restB.delete(b);
  }
  for (const b of restB) pairs.push({ b });
  const at = (x: { b?: Dict }) => (x.b ? after.indexOf(x.b) : after.length);
  pairs.sort((x, y) => at(x) - at(y));
  for (const a of restA) pairs.push({ a });
  return pairs;
}

/**
 * The difference between two renderings of one artifact; `before` absent: an install (every key
 * added), `after` absent: a removal. Payloads come in the order of the new rendering, removed ones last.
 */
export function diffArtifacts(before: Dict | undefined, after: Dict | undefined): ArtifactDiff {
  const keys: KeyChange[] = [];
  // An install or removal lists what the artifact says, not the envelope every profile has.
  diffDict('', before ?? {}, after ?? {}, keys, before && after ? TOP_SKIP : WHOLE_SKIP);
  const payloads: PayloadChange[] = [];
  for (const { a, b } of matchPayloads(payloadsOf(before), payloadsOf(after))) {
    const p = (b ?? a)!;
    const head = { identifier: str(p.PayloadIdentifier), type: str(p.PayloadType) };
    if (!a) payloads.push({ op: 'add', ...head, keys: allKeys('add', b!, PAYLOAD_ENVELOPE) });
    else if (!b) payloads.push({ op: 'remove', ...head, keys: [] });
    else {
      const changes: KeyChange[] = [];
      diffDict('', a, b, changes, DERIVED);
      if (changes.length) payloads.push({ op: 'change', ...head, keys: changes });
    }
  }
  return { keys, payloads };
}

export function isNoChange(d: ArtifactDiff): boolean {
  return d.keys.length === 0 && d.payloads.length === 0;
}
