import { isUtf8 } from 'node:buffer';
import { build, type PlistValue } from 'plist';
import { ProtocolError } from './errors.js';
import { DEVICE_LIMITS, parsePlistXml, type PlistLimits } from './plist-xml.js';

export type { PlistValue, PlistLimits };
export type PlistDict = { [key: string]: PlistValue };
export { DEVICE_LIMITS, TRUSTED_LIMITS } from './plist-xml.js';

// Devices send XML plists with Apple's public DOCTYPE. The parser (plist-xml.ts) refuses any
// other DTD and any entity beyond XML's five, so billion-laughs style input is never expanded;
// it builds values without a DOM, iteratively and within `limits`, so a hostile body can neither
// overflow the stack nor hold the event loop for long.

/**
 * Parse an XML plist body into a dictionary, or throw a 400 ProtocolError that says what kind of
 * problem there is and where (line, col) without quoting the body.
 */
export function parsePlistDict(body: Buffer | string, limits: Readonly<PlistLimits> = DEVICE_LIMITS): PlistDict {
  const value = parsePlist(body, limits);
  if (value === null || typeof value !== 'object' || Array.isArray(value) || value instanceof Uint8Array || value instanceof Date) {
    throw new ProtocolError(400, `plist root is ${describe(value)}, expected a dict`);
  }
  return value;
}

export function parsePlist(body: Buffer | string, limits: Readonly<PlistLimits> = DEVICE_LIMITS): PlistValue {
  if (body.length === 0) throw new ProtocolError(400, 'empty body');
  if (typeof body !== 'string') {
    if (body.subarray(0, 6).toString('latin1') === 'bplist') throw new ProtocolError(400, 'binary plist not accepted; send XML');
    if (!isUtf8(body)) throw new ProtocolError(400, 'body is not valid UTF-8');
  }
  const text = typeof body === 'string' ? body : body.toString('utf8');
  if (text.startsWith('bplist')) throw new ProtocolError(400, 'binary plist not accepted; send XML');
  const first = text.charCodeAt(0) === 0xfeff ? text.slice(1).trimStart() : text.trimStart();
  if (!first.startsWith('<')) throw new ProtocolError(400, 'body is not an XML plist');
  return parsePlistXml(text, limits);
}

export function buildPlist(value: PlistValue): Buffer {
  let xml: string;
  try {
    xml = build(value);
  } catch {
    // xmlbuilder refuses characters XML 1.0 cannot carry (NUL, most C0 controls, U+FFFE/FFFF).
    throw new ProtocolError(400, 'a string holds a character that XML cannot carry');
  }
  return Buffer.from(xml, 'utf8');
}

export function describe(value: unknown): string {
  if (value === null || value === undefined) return 'empty';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Uint8Array) return 'data';
  if (value instanceof Date) return 'a date';
  return `a ${typeof value}`;
}
