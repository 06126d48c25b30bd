/** Plist values <-> JSON for the admin API: binary as `{"$data": base64}`, dates as `{"$date": iso}` in and ISO strings out. */
import { ProtocolError } from './errors.js';
import type { PlistDict, PlistValue } from './plist.js';

/** Turn JSON (`$data`/`$date` markers) into plist values. */
export function fromJson(value: unknown, path = 'command'): PlistValue {
  if (value === null) throw new ProtocolError(400, `${path}: null is not a plist value`);
  if (typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new ProtocolError(400, `${path}: not a finite number`);
    return value;
  }
  if (Array.isArray(value)) return value.map((v, i) => fromJson(v, `${path}[${i}]`));
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
      return d;
    }
    const out: PlistDict = {};
    for (const k of keys) out[k] = fromJson(obj[k], `${path}.${k}`);
    return out;
  }
  throw new ProtocolError(400, `${path}: ${typeof value} is not a plist value`);
}

/** Plist values as JSON for the admin API (binary as `{"$data": base64}`). */
export function toJson(value: PlistValue | undefined): unknown {
  if (value instanceof Uint8Array) return { $data: Buffer.from(value).toString('base64') };
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map(toJson);
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = toJson(v);
    return out;
  }
  return value;
}

