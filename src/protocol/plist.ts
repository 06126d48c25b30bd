import { parse, build, type PlistValue } from 'plist';
import { ProtocolError } from './errors.js';

export type { PlistValue };
export type PlistDict = { [key: string]: PlistValue };

// Devices send XML plists with Apple's public DOCTYPE. Anything declaring its own DTD (an
// internal subset, entities) is refused before parsing: plist@5 does not expand entities, but a
// message that relies on them is not a device's, and billion-laughs style input must never reach
// an XML parser.
const DOCTYPE = /<!DOCTYPE/i;
const APPLE_DOCTYPE = /^<!DOCTYPE\s+plist\s+PUBLIC\s+"-\/\/Apple(?: Computer)?\/\/DTD PLIST 1\.0\/\/EN"\s+"http:\/\/www\.apple\.com\/DTDs\/PropertyList-1\.0\.dtd"\s*>/i;
const NAMED_ENTITY = /&(?!(?:lt|gt|amp|quot|apos|#\d+|#x[0-9a-fA-F]+);)[^;\s]*;/;

/**
 * Parse an XML plist body into a dictionary, or throw a 400 ProtocolError that says what is
 * wrong and where (xmldom's line:col).
 */
export function parsePlistDict(body: Buffer | string): PlistDict {
  const value = parsePlist(body);
  if (value === null || typeof value !== 'object' || Array.isArray(value) || value instanceof Uint8Array || value instanceof Date) {
    throw new ProtocolError(400, `plist root is ${describe(value)}, expected a dict`);
  }
  return value;
}

export function parsePlist(body: Buffer | string): PlistValue {
  const text = typeof body === 'string' ? body : body.toString('utf8');
  if (text.length === 0) throw new ProtocolError(400, 'empty body');
  if (text.startsWith('bplist')) throw new ProtocolError(400, 'binary plist not accepted; send XML');
  if (text.includes('\uFFFD') && typeof body !== 'string' && !Buffer.from(text, 'utf8').equals(body)) {
    throw new ProtocolError(400, 'body is not valid UTF-8');
  }
  const dt = DOCTYPE.exec(text);
  if (dt) {
    if (!APPLE_DOCTYPE.test(text.slice(dt.index)) || DOCTYPE.test(text.slice(dt.index + 9))) {
      throw new ProtocolError(400, `only Apple's plist DOCTYPE is accepted (found a custom DTD at ${lineCol(text, dt.index)})`);
    }
  }
  if (/<!ENTITY/i.test(text)) throw new ProtocolError(400, 'XML entity declarations are not accepted');
  const ent = NAMED_ENTITY.exec(text);
  if (ent) throw new ProtocolError(400, `undefined XML entity ${ent[0].slice(0, 40)} at ${lineCol(text, ent.index)}`);
  const trimmed = text.trimStart();
  if (!trimmed.startsWith('<')) throw new ProtocolError(400, 'body is not an XML plist');

  // xmldom reports problems through console.error and may still return a partial document.
  // Capture those reports (parse is synchronous, so nothing else can log meanwhile) and treat
  // any of them as a malformed body, keeping the message with its line and column.
  const problems: string[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => {
    problems.push(args.map((a) => (typeof a === 'string' ? a : String(a))).join(' '));
  };
  let value: PlistValue;
  try {
    value = parse(text);
  } catch (err) {
    const detail = problems[0] ?? (err instanceof Error ? err.message : String(err));
    throw new ProtocolError(400, `malformed plist: ${clean(detail)}`);
  } finally {
    console.error = original;
  }
  if (problems.length > 0) throw new ProtocolError(400, `malformed plist: ${clean(problems[0]!)}`);
  return value;
}

export function buildPlist(value: PlistValue): Buffer {
  return Buffer.from(build(value), 'utf8');
}

function clean(msg: string): string {
  // "[xmldom fatalError]\tunclosed xml tag(s): plist @#[line:1,col:34]" -> "unclosed xml tag(s): plist (line 1, col 34)"
  return msg
    .replace(/^\[xmldom \w+\]\s*/, '')
    .replace(/\s*\n?\s*@#\[line:(\d+),col:(\d+)\]/, ' (line $1, col $2)')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, 300);
}

function lineCol(text: string, index: number): string {
  const before = text.slice(0, index);
  const line = before.split('\n').length;
  return `line ${line}, col ${index - before.lastIndexOf('\n')}`;
}

export function describe(value: unknown): string {
  if (value === null || value === undefined) return 'empty';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Uint8Array) return 'data';
  if (value instanceof Date) return 'a date';
  return `a ${typeof value}`;
}
