/**
 * Blueprint selectors: which devices a blueprint applies to. Used by validation (can two
 * blueprints ever select the same device?) and by the reconciler (does this device match?).
 */
import type { AbmSelector, Platform, Selector } from './model.js';
import type { AbmFacts } from '../model/device.js';
import { Malformed } from '../errors.js';

/** What a selector looks at on a device. */
export interface DeviceView {
  serial?: string;
  tags: ReadonlySet<string>;
  platform?: Platform;
  /** Model identifier (Mac14,2) and product name (iPad13,1); a selector model matches either. */
  model?: string;
  productName?: string;
  osVersion?: string;
  supervised?: boolean;
  /** The serial above is the one the device's certificate was issued for (not just claimed). */
  serialProven?: boolean;
  /** The device's ABM record, when ABM assigned it to this server. */
  abm?: Omit<AbmFacts, 'token'>;
}

const ABM_FIELDS: [keyof AbmSelector, keyof AbmFacts][] = [
  ['models', 'model'],
  ['colors', 'color'],
  ['descriptions', 'description'],
  ['os', 'os'],
  ['deviceFamilies', 'deviceFamily'],
  ['assignedBy', 'assignedBy'],
];

function matchesAbm(s: boolean | AbmSelector, abm: DeviceView['abm']): boolean {
  if (s === false) return abm === undefined;
  if (abm === undefined) return false;
  if (s === true) return true;
  return ABM_FIELDS.every(([list, field]) => {
    const want = s[list];
    const have = abm[field as keyof typeof abm];
    return !want || (have !== undefined && want.includes(have));
  });
}

type Op = '>=' | '>' | '<=' | '<' | '=';
export interface Comparator {
  op: Op;
  version: number[];
}

export class RangeError_ extends Malformed {}

/** ">=14.0 <16" -> comparators that must all hold. Throws with a message naming the bad part. */
export function parseRange(range: string): Comparator[] {
  const parts = range.trim().split(/\s+/).filter(Boolean);
  if (parts.length === 0) throw new RangeError_('empty version range');
  return parts.map((p) => {
    const m = /^(>=|<=|>|<|=)?\s*(\d+(?:\.\d+){0,2})$/.exec(p);
    if (!m) throw new RangeError_(`"${p}" is not a comparator like >=14.0 or <16 (use spaces between comparators)`);
    return { op: (m[1] ?? '=') as Op, version: m[2]!.split('.').map(Number) };
  });
}

export function compareVersions(a: number[], b: number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return 0;
}

export function parseVersion(v: string): number[] | undefined {
  const m = /^(\d+(?:\.\d+)*)/.exec(v.trim());
  return m ? m[1]!.split('.').map(Number) : undefined;
}

export function satisfies(version: string, range: Comparator[]): boolean {
  const v = parseVersion(version);
  if (!v) return false;
  return range.every(({ op, version: r }) => {
    const c = compareVersions(v, r);
    return op === '>=' ? c >= 0 : op === '>' ? c > 0 : op === '<=' ? c <= 0 : op === '<' ? c < 0 : c === 0;
  });
}

/** Apple's platform for a device, from its model identifier or product name. */
export function platformOf(model?: string, productName?: string): Platform | undefined {
  const id = productName || model || '';
  if (/^iPhone|^iPod/.test(id)) return 'iOS';
  if (/^iPad/.test(id)) return 'iPadOS';
  if (/^AppleTV/.test(id)) return 'tvOS';
  if (/^RealityDevice/.test(id)) return 'visionOS';
  if (/^Watch/.test(id)) return 'watchOS';
  if (/Mac/.test(id)) return 'macOS';
  return undefined;
}

function matchesPositive(s: Selector, d: DeviceView, range?: Comparator[]): boolean {
  if (s.serials && !(d.serial !== undefined && s.serials.includes(d.serial))) return false;
  if (s.tags && !s.tags.every((t) => d.tags.has(t))) return false;
  if (s.platforms && !(d.platform !== undefined && s.platforms.includes(d.platform))) return false;
  if (s.models && !s.models.some((m) => m === d.model || m === d.productName)) return false;
  if (s.osVersion && !(d.osVersion !== undefined && satisfies(d.osVersion, range ?? parseRange(s.osVersion)))) return false;
  if (s.supervised !== undefined && (d.supervised ?? false) !== s.supervised) return false;
  // proven: false asks for nothing (it is not "unproven only").
  if (s.proven === true && !(d.serialProven === true && d.serial !== undefined)) return false;
  if (s.abm !== undefined && !matchesAbm(s.abm, d.abm)) return false;
  return true;
}

/**
 * Whether the serial a selector sees is proven: the device's record carries the serial its
 * certificate was issued for, and the serial in use (DeviceInformation may report another) is it.
 */
export function serialProven(serial: string | undefined, facts: { provenSerialNumber?: string }): boolean {
  return serial !== undefined && facts.provenSerialNumber === serial;
}

/** An exclude matches when every field it sets matches; an empty exclude excludes nothing. */
function excluded(x: Selector | undefined, d: DeviceView): boolean {
  if (!x || Object.keys(x).length === 0) return false;
  return matchesPositive(x, d);
}

export function matches(s: Selector & { exclude?: Selector }, d: DeviceView): boolean {
  return matchesPositive(s, d) && !excluded(s.exclude, d);
}

function intersects<T>(a: T[] | undefined, b: T[] | undefined): boolean {
  return !a || !b || a.some((x) => b.includes(x));
}

interface Bound {
  v: number[];
  inclusive: boolean;
}

/** The interval a range allows; versions are treated as dense (there is a 14.0.0.1 between 14.0 and 14.0.1). */
function interval(r: Comparator[]): { lo?: Bound; hi?: Bound } {
  let lo: Bound | undefined;
  let hi: Bound | undefined;
  const tighterLo = (b: Bound) => {
    if (!lo) return (lo = b);
    const c = compareVersions(b.v, lo.v);
    if (c > 0 || (c === 0 && !b.inclusive)) lo = b;
  };
  const tighterHi = (b: Bound) => {
    if (!hi) return (hi = b);
    const c = compareVersions(b.v, hi.v);
    if (c < 0 || (c === 0 && !b.inclusive)) hi = b;
  };
  for (const { op, version } of r) {
    if (op === '>=' || op === '=') tighterLo({ v: version, inclusive: true });
    if (op === '>') tighterLo({ v: version, inclusive: false });
    if (op === '<=' || op === '=') tighterHi({ v: version, inclusive: true });
    if (op === '<') tighterHi({ v: version, inclusive: false });
  }
  return { lo, hi };
}

/** Can one version satisfy both ranges? */
function rangesOverlap(a: Comparator[], b: Comparator[]): boolean {
  const ia = interval(a);
  const ib = interval(b);
  const lo = [ia.lo, ib.lo].filter((x): x is Bound => !!x).sort((x, y) => compareVersions(y.v, x.v) || (x.inclusive ? 1 : -1))[0];
  const hi = [ia.hi, ib.hi].filter((x): x is Bound => !!x).sort((x, y) => compareVersions(x.v, y.v) || (x.inclusive ? 1 : -1))[0];
  if (!lo || !hi) return true;
  const c = compareVersions(lo.v, hi.v);
  return c < 0 || (c === 0 && lo.inclusive && hi.inclusive);
}

/**
 * Could some device match both selectors? Conservative: "maybe" is true. Only provable
 * disjointness returns false: disjoint serials, platforms, models, OS ranges or supervision, or
 * one selector requiring a tag/serial/platform the other excludes outright.
 */
export function mayOverlap(a: Selector & { exclude?: Selector }, b: Selector & { exclude?: Selector }): boolean {
  if (!intersects(a.serials, b.serials)) return false;
  if (!intersects(a.platforms, b.platforms)) return false;
  if (!intersects(a.models, b.models)) return false;
  if (a.supervised !== undefined && b.supervised !== undefined && a.supervised !== b.supervised) return false;
  if ((a.abm === false && b.abm !== undefined && b.abm !== false) || (b.abm === false && a.abm !== undefined && a.abm !== false)) return false;
  if (a.osVersion && b.osVersion) {
    try {
      if (!rangesOverlap(parseRange(a.osVersion), parseRange(b.osVersion))) return false;
    } catch {
      return true;
    }
  }
  // A single-field exclude that covers everything the other side requires.
  for (const [x, y] of [
    [a, b],
    [b, a],
  ] as const) {
    const ex = x.exclude;
    if (!ex) continue;
    const fields = Object.keys(ex);
    if (fields.length !== 1) continue;
    if (ex.tags && y.tags && ex.tags.every((t) => y.tags!.includes(t))) return false;
    if (ex.serials && y.serials && y.serials.every((s) => ex.serials!.includes(s))) return false;
    if (ex.platforms && y.platforms && y.platforms.every((p) => ex.platforms!.includes(p))) return false;
    if (ex.models && y.models && y.models.every((m) => ex.models!.includes(m))) return false;
    if (ex.supervised !== undefined && y.supervised === ex.supervised) return false;
  }
  return true;
}
