/** Plist values <-> JSON for the admin API: binary as `{"$data": base64}`, dates as `{"$date": iso}` in and ISO strings out. */
import { ProtocolError } from './errors.js';
import { TRUSTED_LIMITS, type PlistDict, type PlistValue } from './plist.js';

/** Turn JSON (`$data`/`$date` markers) into plist values, no deeper than a plist may nest. */
export function fromJson(value: unknown, path = 'command', depth = 0): PlistValue {
  if (value === null) throw new ProtocolError(400, `${path}: null is not a plist value`);
  if (typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new ProtocolError(400, `${path}: not a finite number`);
    return value;
  }
  if (typeof value === 'object' && depth >= TRUSTED_LIMITS.maxDepth) {
    throw new ProtocolError(400, `${path}: nested deeper than ${TRUSTED_LIMITS.maxDepth} levels`);
  }
  if (Array.isArray(value)) return value.map((v, i) => fromJson(v, `${path}[${i}]`, depth + 1));
  if (typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj);
    if (keys.length === 1 && keys[0] === '$data') {
      if (typeof obj.$data !== 'string' || !/^[A-Za-z0-9+/\s]*={0,2}\s*$/.test(obj.$data)) {
        throw new ProtocolError(400, `${path}: $data must be a base64 string`);
      }
      return new Uint8Array(Buffer.from(obj.$data, 'base64'));
    }
    if (keys.length === 1 && keys[0] === '$date') {
      const d = new Date(String(obj.$date));
      if (Number.isNaN(d.getTime())) throw new ProtocolError(400, `${path}: $date is not a date`);
      // A plist <date> has a four-digit year; anything else would not parse back.
      if (d.getUTCFullYear() < 0 || d.getUTCFullYear() > 9999) throw new ProtocolError(400, `${path}: $date is outside years 0000-9999`);
      return d;
    }
    const out: PlistDict = {};
    for (const k of keys) {
      // `out.__proto__ = ...` would set the prototype instead of a key; the plist parser refuses it too.
      if (k === '__proto__') throw new ProtocolError(400, `${path}: the key __proto__ is not accepted`);
      out[k] = fromJson(obj[k], `${path}.${k}`, depth + 1);
    }
    return out;
  }
  throw new ProtocolError(400, `${path}: ${typeof value} is not a plist value`);
}

/**
 * Plist values as JSON for the admin API (binary as `{"$data": base64}`, dates as ISO strings).
 * Total: it never throws, whatever it is given (an invalid Date becomes null, as JSON.stringify
 * writes it; nesting deeper than any parsed plist can be becomes null rather than overflowing the
 * stack).
 */
export function toJson(value: PlistValue | undefined, depth = 0): unknown {
  if (value instanceof Uint8Array) return { $data: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64') };
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  if (value && typeof value === 'object') {
    if (depth >= TRUSTED_LIMITS.maxDepth) return null;
    if (Array.isArray(value)) return value.map((v) => toJson(v, depth + 1));
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = toJson(v, depth + 1);
    return out;
  }
  return value;
}
