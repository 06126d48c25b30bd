/**
 * A single-pass XML plist parser that builds values directly (no DOM), iteratively (no
 * recursion, so nesting cannot overflow the stack), within limits on depth, element count and
 * string length. It reads exactly the XML that property lists use: the XML declaration and
 * other processing instructions, Apple's public DOCTYPE (no other), comments, CDATA, the five
 * predefined entities and numeric character references. Errors name the kind of problem and its
 * line and column, never any text of the document: bodies carry push tokens and PushMagic, and
 * error messages end up in logs.
 */
import { ProtocolError } from './errors.js';
import type { PlistValue } from 'plist';

type PlistDict = { [key: string]: PlistValue };

export interface PlistLimits {
  /** Deepest nesting of `<dict>`/`<array>`. */
  maxDepth: number;
  /**
   * Most markup items in one document: elements (empty ones included), and also attributes,
   * comments, CDATA sections and processing instructions, which cost as much to skip.
   */
  maxElements: number;
  /**
   * Most distinct key names in one document. Each new name costs V8 a new internalized string
   * (and often a new object shape), several times an ordinary element.
   */
  maxKeys: number;
  /** Longest text of one `<string>`, `<key>`, `<data>` (base64 text), ... in characters. */
  maxStringLength: number;
}

/**
 * For device bodies (up to 8 MiB). Real reports nest 2-6 levels (ProfileList: report, list,
 * profile, PayloadContent, payload); a Mac's InstalledApplicationList has about 32 elements per
 * app and 17 distinct keys, so 128,000 elements is ~4,000 apps (twice a large Mac), and the worst
 * body within these limits stays under 100 ms of event-loop time (bench/hostile.ts). Dicts keyed
 * by identifiers (ManagedApplicationList) have hundreds of keys, not thousands. No device report
 * has a megabyte string (certificates are a few KB each).
 */
export const DEVICE_LIMITS: Readonly<PlistLimits> = Object.freeze({ maxDepth: 64, maxElements: 128_000, maxKeys: 8192, maxStringLength: 1 << 20 });

/**
 * For documents an admin provides (profiles in the repository, raw command plists): profiles
 * may embed large payloads (fonts, certificates, packages as data).
 */
export const TRUSTED_LIMITS: Readonly<PlistLimits> = Object.freeze({ maxDepth: 128, maxElements: 4_000_000, maxKeys: 1_000_000, maxStringLength: 64 << 20 });

// Apple's DOCTYPE, exactly (both publisher spellings), matched where the parser stands.
const APPLE_DOCTYPE =
  /<!DOCTYPE\s+plist\s+PUBLIC\s+"-\/\/Apple(?: Computer)?\/\/DTD PLIST 1\.0\/\/EN"\s+"http:\/\/www\.apple\.com\/DTDs\/PropertyList-1\.0\.dtd"\s*>/iy;
const INTEGER = /^[ \t\n\r]*[+-]?\d+[ \t\n\r]*$/;
// Written so that no input makes them backtrack more than linearly.
const REAL = /^[ \t\n\r]*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?[ \t\n\r]*$/;
// Longer number or date text is no number or date a device writes; refused before any regex.
const MAX_SCALAR = 256;
const REAL_SPECIAL = /^[ \t\n\r]*(?:([+-]?)(inf|infinity)|nan)[ \t\n\r]*$/i;
// Apple writes `2026-01-02T03:04:05Z`; fractions and offsets are tolerated.
const DATE = /^[ \t\n\r]*(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})[ \t\n\r]*$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const WHITESPACE = /[ \t\n\r]+/g;
const HAS_WHITESPACE = /[ \t\n\r]/;
const NON_BLANK = /[^ \t\n\r]/g;

const DICT = 0;
const ARRAY = 1;
const PLIST = 2;
const CONTAINER_NAMES = ['dict', 'array', 'plist'];

// Element names as small integers, so that no name string is allocated per tag.
const T_UNKNOWN = 0;
const T_PLIST = 1;
const T_DICT = 2;
const T_ARRAY = 3;
const T_KEY = 4;
const T_STRING = 5;
const T_INTEGER = 6;
const T_REAL = 7;
const T_DATE = 8;
const T_DATA = 9;
const T_TRUE = 10;
const T_FALSE = 11;
const TAG_NAMES = ['', 'plist', 'dict', 'array', 'key', 'string', 'integer', 'real', 'date', 'data', 'true', 'false'];
const CONTAINER_TAGS = [T_DICT, T_ARRAY, T_PLIST];

/** The element whose name is text[from, to). */
function tagAt(text: string, from: number, to: number): number {
  let tag: number;
  switch (text.charCodeAt(from)) {
    case 0x6b:
      tag = T_KEY;
      break; // k
    case 0x73:
      tag = T_STRING;
      break; // s
    case 0x64:
      tag = text.charCodeAt(from + 1) === 0x69 ? T_DICT : T_DATE;
      break; // di / da
    case 0x69:
      tag = T_INTEGER;
      break; // i
    case 0x74:
      tag = T_TRUE;
      break; // t
    case 0x66:
      tag = T_FALSE;
      break; // f
    case 0x61:
      tag = T_ARRAY;
      break; // a
    case 0x72:
      tag = T_REAL;
      break; // r
    case 0x70:
      tag = T_PLIST;
      break; // p
    default:
      return T_UNKNOWN;
  }
  if (tag === T_DATE && text.charCodeAt(from + 2) === 0x74 && text.charCodeAt(from + 3) === 0x61) tag = T_DATA; // data, not date
  const name = TAG_NAMES[tag]!;
  return to - from === name.length && text.startsWith(name, from) ? tag : T_UNKNOWN;
}

interface Frame {
  kind: typeof DICT | typeof ARRAY | typeof PLIST;
  dict: PlistDict | undefined;
  array: PlistValue[] | undefined;
  /** In a dict: the key waiting for its value. In the plist: the value, once read. */
  key: string | undefined;
  value: PlistValue | undefined;
  /** Offset of the start tag, for errors about the element as a whole. */
  at: number;
  /** Offset of `key`'s `<key>` (kept only for a `record` callback). */
  keyAt?: number;
}

/** "line 3, col 14" of an offset (columns count UTF-16 units from 1). */
export function lineCol(text: string, index: number): string {
  let line = 1;
  let lineStart = 0;
  for (let i = text.indexOf('\n'); i !== -1 && i < index; i = text.indexOf('\n', i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return `line ${line}, col ${index - lineStart + 1}`;
}

/** Where one value stood, for a `record` callback (validators that point at the offending line). */
export interface PlistValueRecord {
  /** Keys and array indices from the root to the value. */
  path: (string | number)[];
  /** Offset of the value's start tag in the text, and of its `<key>` when in a dict. */
  at: number;
  keyAt?: number;
  /** The element it was written as: `integer` and `real` both become JS numbers. */
  tag: string;
  /** A dict key seen before in the same dict: this value replaced the earlier one. */
  duplicate: boolean;
}

export interface ParseOptions {
  /** Called for every value once it is complete (containers after their contents). */
  record?: (r: PlistValueRecord) => void;
}

/** Parse the text of an XML plist. Throws only ProtocolError(400). */
export function parsePlistXml(text: string, limits: Readonly<PlistLimits> = DEVICE_LIMITS, options: ParseOptions = {}): PlistValue {
  return new Parser(text, limits, options.record).parse();
}

class Parser {
  private pos = 0;
  private elements = 0;
  /** Whether the tag startTag() just read was `<name/>`. */
  private selfClosing = false;
  private readonly stack: Frame[] = [];
  private readonly keys = new Set<string>();

  constructor(
    private readonly text: string,
    private readonly limits: Readonly<PlistLimits>,
    private readonly record?: (r: PlistValueRecord) => void,
  ) {}

  private fail(kind: string, at: number): never {
    throw new ProtocolError(400, `malformed plist: ${kind} at ${lineCol(this.text, Math.min(at, this.text.length))}`);
  }

  parse(): PlistValue {
    const { text, stack } = this;
    const n = text.length;
    let sawDoctype = false;
    let sawRoot = false;
    let result: PlistValue | undefined;
    if (text.charCodeAt(0) === 0xfeff) this.pos = 1; // a BOM

    for (;;) {
      const lt = text.indexOf('<', this.pos);
      const textEnd = lt === -1 ? n : lt;
      if (textEnd > this.pos) {
        const bad = firstNonBlank(text, this.pos, textEnd);
        if (bad !== -1)
          this.fail(stack.length === 0 ? (sawRoot ? 'content after the end of the plist' : 'text outside the plist') : 'text between elements', bad);
      }
      if (lt === -1) break;
      this.pos = lt;
      const c = text.charCodeAt(lt + 1);

      if (c === 0x3f /* ? */) {
        // The XML declaration, or a processing instruction: nothing a plist needs.
        this.count(lt);
        const end = text.indexOf('?>', lt + 2);
        if (end === -1) this.fail('unterminated processing instruction', lt);
        this.pos = end + 2;
        continue;
      }
      if (c === 0x21 /* ! */) {
        if (text.startsWith('<!--', lt)) {
          this.count(lt);
          const end = text.indexOf('-->', lt + 4);
          if (end === -1) this.fail('unterminated comment', lt);
          this.pos = end + 3;
          continue;
        }
        if (startsWithIgnoreCase(text, lt, '<!DOCTYPE')) {
          APPLE_DOCTYPE.lastIndex = lt;
          if (sawDoctype || sawRoot || !APPLE_DOCTYPE.test(text)) {
            throw new ProtocolError(400, `only Apple's plist DOCTYPE is accepted (found a custom DTD at ${lineCol(text, lt)})`);
          }
          sawDoctype = true;
          this.pos = APPLE_DOCTYPE.lastIndex;
          continue;
        }
        if (startsWithIgnoreCase(text, lt, '<!ENTITY')) {
          throw new ProtocolError(400, `XML entity declarations are not accepted (at ${lineCol(text, lt)})`);
        }
        this.fail(text.startsWith('<![CDATA[', lt) ? 'text between elements' : 'malformed markup', lt);
      }
      if (c === 0x2f /* / */) {
        const value = this.closeContainer(lt);
        if (value === undefined) continue;
        result = value;
        continue;
      }

      // A start tag.
      const tag = this.startTag(lt);
      const selfClosing = this.selfClosing;
      this.count(lt);
      const top = stack[stack.length - 1];
      if (!top) {
        if (sawRoot) this.fail('content after the end of the plist', lt);
        if (tag !== T_PLIST) this.fail('root element is not <plist>', lt);
        sawRoot = true;
        if (selfClosing) this.fail('empty <plist>', lt);
        stack.push({ kind: PLIST, dict: undefined, array: undefined, key: undefined, value: undefined, at: lt });
        continue;
      }
      if (top.kind === DICT && top.key === undefined) {
        if (tag !== T_KEY) this.fail('expected <key> in <dict>', lt);
        const key = selfClosing ? '' : this.content(T_KEY, lt);
        // Assigning it would replace the dict's prototype (CVE-2022-22912 in plist.js).
        if (key === '__proto__') this.fail('forbidden key __proto__', lt);
        if (!this.keys.has(key)) {
          if (this.keys.size >= this.limits.maxKeys) this.fail(`more than ${this.limits.maxKeys} distinct keys`, lt);
          this.keys.add(key);
        }
        top.key = key;
        if (this.record) top.keyAt = lt;
        continue;
      }
      switch (tag) {
        case T_DICT:
        case T_ARRAY: {
          if (stack.length > this.limits.maxDepth) this.fail(`nesting deeper than ${this.limits.maxDepth}`, lt);
          const isDict = tag === T_DICT;
          if (selfClosing) {
            this.place(isDict ? {} : [], lt, tag);
          } else {
            stack.push({
              kind: isDict ? DICT : ARRAY,
              dict: isDict ? {} : undefined,
              array: isDict ? undefined : [],
              key: undefined,
              value: undefined,
              at: lt,
            });
          }
          break;
        }
        case T_STRING:
          this.place(selfClosing ? '' : this.content(T_STRING, lt), lt, tag);
          break;
        case T_INTEGER:
          this.place(this.integer(selfClosing ? '' : this.content(T_INTEGER, lt), lt), lt, tag);
          break;
        case T_REAL:
          this.place(this.real(selfClosing ? '' : this.content(T_REAL, lt), lt), lt, tag);
          break;
        case T_DATE:
          this.place(this.date(selfClosing ? '' : this.content(T_DATE, lt), lt), lt, tag);
          break;
        case T_DATA:
          this.place(this.data(selfClosing ? '' : this.content(T_DATA, lt), lt), lt, tag);
          break;
        case T_TRUE:
        case T_FALSE:
          if (!selfClosing && firstNonBlank(this.content(tag, lt), 0) !== -1) this.fail(`text inside <${TAG_NAMES[tag]}>`, lt);
          this.place(tag === T_TRUE, lt, tag);
          break;
        case T_KEY:
          this.fail(top.kind === DICT ? 'two <key>s in a row in <dict>' : '<key> outside a <dict>', lt);
        // falls through: fail() never returns
        default:
          this.fail('unknown element', lt);
      }
    }

    if (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      this.fail(`unclosed <${CONTAINER_NAMES[top.kind]}>`, top.at);
    }
    if (!sawRoot) this.fail('no <plist> element', n);
    return result!;
  }

  /** A close tag of the innermost container; returns the plist's value when the root closes. */
  private closeContainer(lt: number): PlistValue | undefined {
    const { text, stack } = this;
    const nameEnd = scanName(text, lt + 2);
    const p = skipBlank(text, nameEnd);
    if (text.charCodeAt(p) !== 0x3e /* > */) this.fail('malformed closing tag', lt);
    this.pos = p + 1;
    const top = stack.pop();
    if (!top || tagAt(text, lt + 2, nameEnd) !== CONTAINER_TAGS[top.kind]) {
      this.fail(top ? `closing tag does not match <${CONTAINER_NAMES[top.kind]}>` : 'closing tag without a start tag', lt);
    }
    switch (top.kind) {
      case DICT:
        if (top.key !== undefined) this.fail('<key> without a value', lt);
        this.place(top.dict!, top.at, T_DICT);
        return undefined;
      case ARRAY:
        this.place(top.array!, top.at, T_ARRAY);
        return undefined;
      default:
        if (top.value === undefined) this.fail('empty <plist>', top.at);
        return top.value;
    }
  }

  private count(at: number): void {
    if (++this.elements > this.limits.maxElements) this.fail(`more than ${this.limits.maxElements} elements`, at);
  }

  /** Put a finished value into the innermost container. */
  private place(value: PlistValue, at: number, tag: number): void {
    const top = this.stack[this.stack.length - 1]!;
    if (this.record) this.recordValue(top, at, tag);
    if (top.kind === DICT) {
      top.dict![top.key!] = value;
      top.key = undefined;
    } else if (top.kind === ARRAY) {
      top.array!.push(value);
    } else {
      if (top.value !== undefined) this.fail('more than one value in <plist>', at);
      top.value = value;
    }
  }

  private recordValue(top: Frame, at: number, tag: number): void {
    // The open containers' pending keys and item counts are the path (the <plist> frame excluded).
    const path: (string | number)[] = [];
    for (let i = 1; i < this.stack.length; i++) {
      const f = this.stack[i]!;
      path.push(f.kind === DICT ? f.key! : f.array!.length);
    }
    const duplicate = top.kind === DICT && Object.hasOwn(top.dict!, top.key!);
    this.record!({ path, at, keyAt: top.kind === DICT ? top.keyAt : undefined, tag: TAG_NAMES[tag]!, duplicate });
  }

  /** Reads `<name attr="...">` or `<name/>` at `lt`: the tag, with selfClosing set; leaves pos after it. */
  private startTag(lt: number): number {
    const { text } = this;
    const nameEnd = scanName(text, lt + 1);
    if (nameEnd === lt + 1) this.fail('malformed tag', lt);
    const tag = tagAt(text, lt + 1, nameEnd);
    const c = text.charCodeAt(nameEnd);
    if (c === 0x3e /* > */) {
      this.pos = nameEnd + 1;
      this.selfClosing = false;
    } else if (c === 0x2f /* / */ && text.charCodeAt(nameEnd + 1) === 0x3e) {
      this.pos = nameEnd + 2;
      this.selfClosing = true;
    } else {
      this.attributes(lt, nameEnd);
    }
    return tag;
  }

  /** Attributes (plist version="1.0") up to the end of the start tag: read and ignored. */
  private attributes(lt: number, from: number): void {
    const { text } = this;
    let p = from;
    for (;;) {
      const q = skipBlank(text, p);
      const c = text.charCodeAt(q);
      if (c === 0x3e /* > */) {
        this.pos = q + 1;
        this.selfClosing = false;
        return;
      }
      if (c === 0x2f /* / */ && text.charCodeAt(q + 1) === 0x3e) {
        this.pos = q + 2;
        this.selfClosing = true;
        return;
      }
      if (q === p) this.fail('malformed tag', lt);
      this.count(q);
      const attrEnd = scanName(text, q);
      if (attrEnd === q) this.fail('malformed tag', lt);
      const eq = skipBlank(text, attrEnd);
      if (text.charCodeAt(eq) !== 0x3d /* = */) this.fail('malformed attribute', q);
      const quoteAt = skipBlank(text, eq + 1);
      const quote = text.charCodeAt(quoteAt);
      if (quote !== 0x22 && quote !== 0x27) this.fail('malformed attribute', q);
      const close = text.indexOf(quote === 0x22 ? '"' : "'", quoteAt + 1);
      if (close === -1) this.fail('unterminated attribute value', q);
      const inside = text.slice(quoteAt + 1, close).indexOf('<');
      if (inside !== -1) this.fail('"<" in an attribute value', quoteAt + 1 + inside);
      p = close + 1;
    }
  }

  /** The text up to `</name>` (entities decoded, line ends normalized); leaves pos after it. */
  private content(tag: number, at: number): string {
    const { text } = this;
    const name = TAG_NAMES[tag]!;
    const max = this.limits.maxStringLength;
    let out = '';
    let raw = 0;
    let p = this.pos;
    for (;;) {
      const lt = text.indexOf('<', p);
      if (lt === -1) this.fail(`unclosed <${name}>`, at);
      raw += lt - p;
      if (raw > max) this.fail(`text longer than ${max} characters`, at);
      if (lt > p) out += this.decode(p, lt);
      const c = text.charCodeAt(lt + 1);
      if (c === 0x2f /* / */) {
        const nameEnd = lt + 2 + name.length;
        // The common case first: exactly `</name>`.
        if (text.charCodeAt(nameEnd) === 0x3e && text.startsWith(name, lt + 2)) {
          this.pos = nameEnd + 1;
          return out;
        }
        if (tagAt(text, lt + 2, scanName(text, lt + 2)) !== tag) this.fail(`closing tag does not match <${name}>`, lt);
        const gt = skipBlank(text, nameEnd);
        if (text.charCodeAt(gt) !== 0x3e) this.fail('malformed closing tag', lt);
        this.pos = gt + 1;
        return out;
      }
      if (c === 0x21 /* ! */) {
        if (text.startsWith('<![CDATA[', lt)) {
          this.count(lt);
          const end = text.indexOf(']]>', lt + 9);
          if (end === -1) this.fail('unterminated CDATA section', lt);
          raw += end - (lt + 9);
          if (raw > max) this.fail(`text longer than ${max} characters`, at);
          const cdata = text.slice(lt + 9, end);
          out += cdata.indexOf('\r') === -1 ? cdata : cdata.replace(/\r\n?/g, '\n');
          p = end + 3;
          continue;
        }
        if (text.startsWith('<!--', lt)) {
          this.count(lt);
          const end = text.indexOf('-->', lt + 4);
          if (end === -1) this.fail('unterminated comment', lt);
          p = end + 3;
          continue;
        }
      }
      this.fail(`markup inside <${name}>`, lt);
    }
  }

  /**
   * Character data between `from` and `to`: references resolved (each counts as a markup item,
   * so that their cost is bounded too), CR LF and CR read as LF (XML 1.0 §2.11).
   */
  private decode(from: number, to: number): string {
    const { text } = this;
    const chunk = text.slice(from, to);
    let amp = chunk.indexOf('&');
    let cr = chunk.indexOf('\r');
    if (amp === -1 && cr === -1) return chunk;
    let out = '';
    let last = 0;
    while (amp !== -1 || cr !== -1) {
      if (cr !== -1 && (amp === -1 || cr < amp)) {
        out += chunk.slice(last, cr) + '\n';
        last = chunk.charCodeAt(cr + 1) === 0x0a ? cr + 2 : cr + 1;
        cr = chunk.indexOf('\r', last);
      } else {
        this.count(from + amp);
        const semi = chunk.indexOf(';', amp + 1);
        if (semi === -1 || semi - amp > 32) this.fail('malformed entity reference', from + amp);
        out += chunk.slice(last, amp) + this.reference(from + amp, from + semi);
        last = semi + 1;
        amp = chunk.indexOf('&', last);
        if (cr !== -1 && cr < last) cr = chunk.indexOf('\r', last);
      }
    }
    return out + chunk.slice(last);
  }

  /** The character `&...;` between `amp` and `semi` stands for. */
  private reference(amp: number, semi: number): string {
    const { text } = this;
    if (text.charCodeAt(amp + 1) !== 0x23 /* # */) {
      switch (text.slice(amp + 1, semi)) {
        case 'lt':
          return '<';
        case 'gt':
          return '>';
        case 'amp':
          return '&';
        case 'quot':
          return '"';
        case 'apos':
          return "'";
        default:
          throw new ProtocolError(400, `malformed plist: undefined XML entity at ${lineCol(text, amp)}`);
      }
    }
    const hex = text.charCodeAt(amp + 2) === 0x78; /* x */
    const digits = text.slice(amp + (hex ? 3 : 2), semi);
    if (!(hex ? /^[0-9a-fA-F]{1,6}$/ : /^[0-9]{1,7}$/).test(digits)) this.fail('malformed character reference', amp);
    const code = parseInt(digits, hex ? 16 : 10);
    // XML 1.0 Char: no NUL, no surrogates, nothing past U+10FFFF.
    if (code === 0 || (code >= 0xd800 && code <= 0xdfff) || code > 0x10ffff) this.fail('character reference to an invalid character', amp);
    return String.fromCodePoint(code);
  }

  private integer(s: string, at: number): number {
    // Most integers are short runs of digits: read them without a regex or Number().
    if (s.length > 0 && s.length < 16) {
      let v = 0;
      let i = 0;
      for (; i < s.length; i++) {
        const d = s.charCodeAt(i) - 0x30;
        if (d < 0 || d > 9) break;
        v = v * 10 + d;
      }
      if (i === s.length) return v;
    }
    if (s.length > MAX_SCALAR || !INTEGER.test(s)) this.fail('invalid <integer>', at);
    const v = Number(s);
    if (!Number.isFinite(v)) this.fail('<integer> out of range', at);
    return v;
  }

  private real(s: string, at: number): number {
    if (s.length > MAX_SCALAR) this.fail('invalid <real>', at);
    if (REAL.test(s)) {
      const v = Number(s);
      // Out-of-range literals become ±Infinity, as CoreFoundation reads them.
      return v;
    }
    const special = REAL_SPECIAL.exec(s);
    if (!special) this.fail('invalid <real>', at);
    return special[2] ? (special[1] === '-' ? -Infinity : Infinity) : NaN;
  }

  private date(s: string, at: number): Date {
    const m = s.length > MAX_SCALAR ? null : DATE.exec(s);
    if (!m) this.fail('invalid <date>', at);
    const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
    // Date() rolls 2026-02-30 over into March; a device never sends such a date.
    const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
    const daysInMonth = month === 2 ? (leap ? 29 : 28) : [4, 6, 9, 11].includes(month) ? 30 : 31;
    if (month < 1 || month > 12 || day < 1 || day > daysInMonth || hour > 23 || minute > 59 || second > 60) this.fail('invalid <date>', at);
    const d = new Date(s.trim());
    if (Number.isNaN(d.getTime())) this.fail('invalid <date>', at);
    return d;
  }

  private data(s: string, at: number): Uint8Array {
    const b64 = HAS_WHITESPACE.test(s) ? s.replace(WHITESPACE, '') : s;
    // atob's rules (the plist package's): standard alphabet, padding optional, never 4n+1 characters.
    if (!BASE64.test(b64) || b64.length % 4 === 1) this.fail('invalid base64 in <data>', at);
    const buf = Buffer.from(b64, 'base64');
    // A plain Uint8Array of its own, as the plist package returned (Buffer's small pool is shared).
    if (buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength) return new Uint8Array(buf.buffer);
    return new Uint8Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  }
}

function isBlankCode(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x09 || c === 0x0d;
}

function firstNonBlank(s: string, from: number, to = s.length): number {
  if (to - from > 64) {
    // Long runs (padding) are scanned by the regex engine, several times faster than a loop.
    NON_BLANK.lastIndex = from;
    const m = NON_BLANK.exec(s);
    return m && m.index < to ? m.index : -1;
  }
  for (let i = from; i < to; i++) if (!isBlankCode(s.charCodeAt(i))) return i;
  return -1;
}

function skipBlank(s: string, from: number): number {
  let i = from;
  while (i < s.length && isBlankCode(s.charCodeAt(i))) i++;
  return i;
}

/** End of an XML name starting at `from` (ASCII name characters, and anything non-ASCII). */
function scanName(s: string, from: number): number {
  let i = from;
  for (; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const ok =
      (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x5f || c === 0x3a || c === 0x2d || c === 0x2e || c >= 0x80;
    if (!ok) break;
  }
  return i;
}

function startsWithIgnoreCase(s: string, at: number, prefix: string): boolean {
  return s.length - at >= prefix.length && s.slice(at, at + prefix.length).toUpperCase() === prefix;
}
