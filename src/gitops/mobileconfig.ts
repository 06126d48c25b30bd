/**
 * Reading an existing .mobileconfig from the repository the way macOS does
 * (CFPropertyListCreateWithData, CFPropertyList.c and CFBinaryPList.c): a binary plist
 * (`bplist00`), or XML in UTF-8 (with or without a BOM), UTF-16 or UTF-32 with a BOM, leading
 * whitespace and anything after the root element ignored; plain or CMS-signed (SignedData with
 * the plist as its encapsulated content). The signature is not checked: the admin committed the
 * file, and a signed profile is installed byte for byte as it is.
 */
import { isUtf8 } from 'node:buffer';
import { describe, parsePlist, TRUSTED_LIMITS, type PlistDict, type PlistValue } from '../protocol/plist.js';
import { parseSignedData } from '../asn1/signed-data.js';
import { causeName, guarded } from '../identity/errors.js';
import { BplistError, isBinaryPlist, parseBinaryPlist } from './bplist.js';
import { Malformed } from '../errors.js';

export class MobileconfigError extends Malformed {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'MobileconfigError';
  }
}

export type PlistFormat = 'xml' | 'binary';

/** The property list inside the file (still encoded), and whether the file was signed. */
export function profileContent(bytes: Buffer): { plist: Buffer; signed: boolean } {
  // A plist starts with "bplist", a BOM, whitespace or "<"; a DER SEQUENCE with 0x30 ("0").
  if (bytes[0] !== 0x30) return { plist: bytes, signed: false };
  let content: Buffer | undefined;
  try {
    // The one SignedData reader (the SCEP and enrollment one): total, typed errors only.
    content = parseSignedData(bytes, 'signed profile').content;
  } catch (err) {
    throw new MobileconfigError((err as Error).message);
  }
  if (!content) throw new MobileconfigError('signed profile has no content (detached signature?)');
  if (content[0] === 0x30) throw new MobileconfigError('signed profile holds another signed message, not a property list');
  return { plist: content, signed: true };
}

export interface ReadProfileOptions {
  /** Deepest nesting of dict and array accepted (the loader's depth limit); 128 if absent. */
  maxDepth?: number;
}

export interface ReadProfile {
  profile: PlistDict;
  signed: boolean;
  format: PlistFormat;
}

/** Throws only MobileconfigError, whatever the bytes. */
export function readProfile(bytes: Buffer, opts: ReadProfileOptions = {}): ReadProfile {
  return guarded(
    () => readUnguarded(bytes, opts),
    [MobileconfigError],
    (cause) => new MobileconfigError(`unreadable ${causeName(cause)}`, { cause }),
  );
}

function readUnguarded(bytes: Buffer, opts: ReadProfileOptions): ReadProfile {
  if (bytes.length === 0) throw new MobileconfigError('empty file');
  const { plist, signed } = profileContent(bytes);
  const { value, format } = decodePlist(plist, opts.maxDepth ?? TRUSTED_LIMITS.maxDepth);
  if (value === null || typeof value !== 'object' || Array.isArray(value) || value instanceof Uint8Array || value instanceof Date) {
    throw new MobileconfigError(`plist root is ${describe(value)}, expected a dict`);
  }
  const profile = value as PlistDict;
  if (profile.PayloadType !== 'Configuration') {
    throw new MobileconfigError(`PayloadType is ${JSON.stringify(profile.PayloadType)}, expected "Configuration": not a configuration profile`);
  }
  return { profile, signed, format };
}

function decodePlist(plist: Buffer, maxDepth: number): { value: PlistValue; format: PlistFormat } {
  if (plist.length === 0) throw new MobileconfigError('the property list is empty');
  // CoreFoundation tries the binary format first, then XML.
  if (isBinaryPlist(plist)) {
    try {
      return { value: parseBinaryPlist(plist, { maxDepth, allowNull: false }) as PlistValue, format: 'binary' };
    } catch (err) {
      throw new MobileconfigError(`binary plist: ${(err as BplistError).message}`);
    }
  }
  const xml = rootText(plist, maxDepth);
  try {
    return { value: parsePlist(xml, TRUSTED_LIMITS), format: 'xml' };
  } catch (err) {
    throw new MobileconfigError((err as Error).message);
  }
}

/**
 * Whether the profile holds a real with an integral value (`<real>2</real>`): read into a JS
 * number it is indistinguishable from an integer, so it would not survive a conversion to YAML.
 * Call on bytes readProfile accepted.
 */
export function hasIntegralReal(bytes: Buffer): boolean {
  const { plist } = profileContent(bytes);
  let found = false;
  const check = (v: number) => (found ||= Number.isInteger(v) || !Number.isFinite(v));
  if (isBinaryPlist(plist)) {
    parseBinaryPlist(plist, { onReal: check });
    return found;
  }
  // Linear: no nested quantifiers. A <real> inside a comment or CDATA only errs on the safe side.
  for (const m of rootText(plist, TRUSTED_LIMITS.maxDepth).matchAll(/<real(?:>([^<]*)<\/real>|\s*\/>)/g)) {
    const t = (m[1] ?? '0').trim().toLowerCase();
    check(/^[+-]?(nan|inf|infinity)$/.test(t) ? Infinity : Number(t));
  }
  return found;
}

/**
 * The XML text the parser reads for a plain or signed profile: decoded, up to the end of the
 * root element (positions in it are the file's). Undefined for a binary plist. Throws only
 * MobileconfigError.
 */
export function profileText(bytes: Buffer, maxDepth = TRUSTED_LIMITS.maxDepth): string | undefined {
  return guarded(
    () => {
      const { plist } = profileContent(bytes);
      return isBinaryPlist(plist) ? undefined : rootText(plist, maxDepth);
    },
    [MobileconfigError],
    (cause) => new MobileconfigError(`unreadable ${causeName(cause)}`, { cause }),
  );
}

function rootText(plist: Buffer, maxDepth: number): string {
  const xml = xmlText(plist);
  if (xml[xml.search(/[^ \t\r\n]/)] !== '<') throw new MobileconfigError('neither an XML plist nor a CMS-signed profile (nor a binary plist)');
  const { end, bareDict } = scanMarkup(xml, maxDepth);
  // CFPropertyList.c parses the first element, whatever it is, and stops: a root <dict> needs no
  // <plist> around it, and whatever follows the root (NUL padding, a second document) is never
  // looked at, so a device installs such a file. The wrapper adds no line: positions stay.
  if (bareDict !== undefined) return `${xml.slice(0, bareDict)}<plist>${xml.slice(bareDict, end)}</plist>`;
  return end === -1 ? xml : xml.slice(0, end);
}

/** The XML's text, decoded as CoreFoundation's encodingForXMLData decides. */
function xmlText(b: Buffer): string {
  const starts = (...bytes: number[]) => bytes.every((x, i) => b[i] === x);
  if (b.length > 4 && starts(0x00, 0x00, 0xfe, 0xff)) return utf32(b.subarray(4), false);
  if (b.length > 4 && starts(0xff, 0xfe, 0x00, 0x00)) return utf32(b.subarray(4), true);
  if (b.length > 3 && starts(0xef, 0xbb, 0xbf)) return utf8(b.subarray(3));
  if (b.length > 2 && starts(0xff, 0xfe)) return utf16(b.subarray(2), true);
  if (b.length > 2 && starts(0xfe, 0xff)) return utf16(b.subarray(2), false);
  // CoreFoundation guesses "Unicode" here, in an order it does not document: refused rather than guessed.
  if (b.length > 2 && (b[0] === 0 || b[1] === 0) && (b[0] === 0x3c || b[1] === 0x3c))
    throw new MobileconfigError('UTF-16 or UTF-32 without a byte order mark: save the file as UTF-8');
  const declared = declaredEncoding(b);
  if (declared === undefined || declared === 'utf-8' || declared === 'utf8') return utf8(b);
  if (declared === 'us-ascii' || declared === 'ascii') {
    if (b.some((x) => x > 0x7f)) throw new MobileconfigError('the XML declares US-ASCII but holds other bytes');
    return b.toString('latin1');
  }
  if (declared === 'iso-8859-1' || declared === 'latin1' || declared === 'iso_8859-1') return b.toString('latin1');
  if (declared.startsWith('utf-16') || declared.startsWith('utf-32')) throw new MobileconfigError(`the XML declares ${declared} but has no byte order mark`);
  throw new MobileconfigError(`the XML declares encoding ${JSON.stringify(declared.slice(0, 40))}, which Orchard does not read: save the file as UTF-8`);
}

/** `encoding="..."` of an XML declaration at byte 0 (only there, as CoreFoundation looks), lower case. */
function declaredEncoding(b: Buffer): string | undefined {
  if (b.toString('latin1', 0, 5) !== '<?xml') return undefined;
  const end = b.indexOf('?>', 5, 'latin1');
  const decl = b.toString('latin1', 5, end === -1 ? Math.min(b.length, 256) : Math.min(end, 256));
  return /\sencoding\s*=\s*["']([^"']*)["']/.exec(decl)?.[1]?.toLowerCase();
}

function utf8(b: Buffer): string {
  if (!isUtf8(b)) throw new MobileconfigError('the XML is not valid UTF-8');
  return b.toString('utf8');
}

function utf16(b: Buffer, le: boolean): string {
  if (b.length % 2) throw new MobileconfigError('UTF-16 text of odd length');
  if (le) return b.toString('utf16le');
  const swapped = Buffer.from(b);
  swapped.swap16();
  return swapped.toString('utf16le');
}

function utf32(b: Buffer, le: boolean): string {
  if (b.length % 4) throw new MobileconfigError('UTF-32 text whose length is not a multiple of 4');
  const parts: string[] = [];
  for (let i = 0; i < b.length; i += 4) {
    const cp = le ? b.readUInt32LE(i) : b.readUInt32BE(i);
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) throw new MobileconfigError(`invalid UTF-32 character at byte ${i + 4}`);
    parts.push(String.fromCodePoint(cp));
  }
  return parts.join('');
}

/**
 * Refuse dict/array nesting deeper than `max` before any parser (or, later, the renderer, which
 * recurses) sees it, and find the root element: where it ends (after its end tag; -1 if it does
 * not) and, for a root <dict> without <plist> around it, where it starts. A scan with indexOf,
 * not a regular expression: linear on any input.
 */
function scanMarkup(xml: string, max: number): { end: number; bareDict?: number } {
  let depth = 0;
  let root: 'plist' | 'dict' | 'other' | undefined;
  let rootAt = -1;
  const nameChar = (c: string | undefined) => c !== undefined && /[\w.:-]/.test(c);
  const named = (at: number, n: string) => xml.startsWith(n, at) && !nameChar(xml[at + n.length]);
  for (let i = xml.indexOf('<'); i !== -1; i = xml.indexOf('<', i + 1)) {
    if (xml.startsWith('<!--', i)) {
      i = xml.indexOf('-->', i + 4);
    } else if (xml.startsWith('<![CDATA[', i)) {
      i = xml.indexOf(']]>', i + 9);
    } else {
      const close = xml[i + 1] === '/';
      const name = close ? i + 2 : i + 1;
      const end = xml.indexOf('>', i);
      if (end === -1) break; // unterminated: the parser says what is wrong
      const selfClosing = xml[end - 1] === '/';
      if (root === undefined && !close && xml[i + 1] !== '?' && xml[i + 1] !== '!') {
        root = named(name, 'plist') ? 'plist' : named(name, 'dict') ? 'dict' : 'other';
        rootAt = i;
        if (root === 'dict' && selfClosing) return { end: end + 1, bareDict: rootAt };
      }
      if (close && root === 'plist' && named(name, 'plist')) return { end: end + 1 };
      if (named(name, 'dict') || named(name, 'array')) {
        if (close) {
          depth = Math.max(0, depth - 1);
          if (depth === 0 && root === 'dict') return { end: end + 1, bareDict: rootAt };
        } else if (!selfClosing && ++depth > max) {
          const line = xml.slice(0, i).split('\n').length;
          throw new MobileconfigError(`dict and array nesting deeper than ${max} levels at line ${line} (limit depth)`);
        }
      }
      i = end;
    }
    if (i === -1) break;
  }
  return { end: -1 };
}
