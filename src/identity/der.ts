/**
 * Small DER writer and BER reader for the enrollment CMS structures (SCEP, signed profiles).
 * Writing concatenates pre-encoded pieces (cheap, exact); reading walks asn1js's BER tree, which
 * keeps every element's encoded bytes (needed for signed attributes and certificate DER).
 */
import * as asn1js from 'asn1js';
import { causeName } from './errors.js';
import { Malformed } from '../errors.js';

export class Asn1Error extends Malformed {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'Asn1Error';
  }
}

// ---- writing ----

/** DER tag-length-value around already-encoded content. */
export function tlv(tag: number, ...content: Uint8Array[]): Buffer {
  let len = 0;
  for (const c of content) len += c.length;
  let header: number[];
  if (len < 0x80) header = [tag, len];
  else if (len < 0x100) header = [tag, 0x81, len];
  else if (len < 0x10000) header = [tag, 0x82, len >> 8, len & 0xff];
  else if (len < 0x1000000) header = [tag, 0x83, (len >> 16) & 0xff, (len >> 8) & 0xff, len & 0xff];
  else throw new Asn1Error('element too long');
  return Buffer.concat([Buffer.from(header), ...content], header.length + len);
}

export const seq = (...c: Uint8Array[]): Buffer => tlv(0x30, ...c);
export const set = (...c: Uint8Array[]): Buffer => tlv(0x31, ...c);
export const octets = (b: Uint8Array): Buffer => tlv(0x04, b);
export const printable = (s: string): Buffer => tlv(0x13, Buffer.from(s, 'latin1'));
export const utf8 = (s: string): Buffer => tlv(0x0c, Buffer.from(s, 'utf8'));
export const bitString = (b: Uint8Array): Buffer => tlv(0x03, Buffer.from([0]), b);
/** [n] EXPLICIT, or an IMPLICIT constructed type. */
export const ctx = (n: number, ...c: Uint8Array[]): Buffer => tlv(0xa0 | n, ...c);
/** [n] IMPLICIT around a primitive type's content octets. */
export const ctxPrim = (n: number, b: Uint8Array): Buffer => tlv(0x80 | n, b);
export const NULL = Buffer.from([0x05, 0x00]);

const oidCache = new Map<string, Buffer>();
export function oid(dotted: string): Buffer {
  let enc = oidCache.get(dotted);
  if (!enc) {
    enc = Buffer.from(new asn1js.ObjectIdentifier({ value: dotted }).toBER(false));
    oidCache.set(dotted, enc);
  }
  return enc;
}

/** INTEGER from a non-negative number or big-endian unsigned bytes (minimal, kept positive). */
export function int(value: number | Uint8Array): Buffer {
  let bytes: Buffer;
  if (typeof value === 'number') {
    const hex = value.toString(16);
    bytes = Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex');
  } else {
    bytes = Buffer.from(value);
  }
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0 && bytes[i + 1]! < 0x80) i++;
  bytes = bytes.subarray(i);
  if (bytes.length === 0) bytes = Buffer.from([0]);
  if (bytes[0]! >= 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return tlv(0x02, bytes);
}

/** RFC 5652 11.3 / RFC 5280 4.1.2.5: UTCTime for 1950-2049, GeneralizedTime otherwise. */
export function time(date: Date): Buffer {
  const year = date.getUTCFullYear();
  const t = year >= 1950 && year < 2050 ? new asn1js.UTCTime({ valueDate: date }) : new asn1js.GeneralizedTime({ valueDate: date });
  return Buffer.from(t.toBER(false));
}

/** DER SET OF: elements sorted by their encodings (X.690 11.6). */
export function setOf(elements: Buffer[]): Buffer {
  return set(...[...elements].sort(Buffer.compare));
}

/** AlgorithmIdentifier. */
export function algorithm(dotted: string, params?: Buffer): Buffer {
  return params ? seq(oid(dotted), params) : seq(oid(dotted));
}

// ---- reading ----

export type Block = asn1js.AsnType;

const BER_OPTIONS: asn1js.FromBerOptions = { maxDepth: 64, maxNodes: 20_000, parseEmbedded: false, copyInput: false };

/** Parse one BER element that must fill `buf` exactly. */
export function parse(buf: Uint8Array, what: string): Block {
  const view = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  let parsed: ReturnType<typeof asn1js.fromBER>;
  try {
    parsed = asn1js.fromBER(view, BER_OPTIONS);
  } catch (cause) {
    // asn1js decodes string and time values while parsing and throws on bad ones (a BMPString of
    // odd length, an invalid GeneralizedTime) instead of reporting them like other errors.
    throw new Asn1Error(`${what} is not valid BER ${causeName(cause)}`, { cause });
  }
  if (parsed.offset === -1) throw new Asn1Error(`${what} is not valid BER: ${parsed.result.error}`);
  if (parsed.offset !== buf.byteLength) throw new Asn1Error(`${what} has trailing bytes`);
  return parsed.result;
}

export function isCtx(b: Block | undefined, n: number): b is Block {
  return !!b && b.idBlock.tagClass === 3 && b.idBlock.tagNumber === n;
}

export function isUniversal(b: Block | undefined, n: number): b is Block {
  return !!b && b.idBlock.tagClass === 1 && b.idBlock.tagNumber === n;
}

export function kids(b: Block | undefined, what: string): Block[] {
  const value = b?.idBlock.isConstructed ? (b.valueBlock as { value?: unknown }).value : undefined;
  if (!Array.isArray(value)) throw new Asn1Error(`${what} is not a constructed element`);
  return value as Block[];
}

export function oidOf(b: Block | undefined, what: string): string {
  if (!(b instanceof asn1js.ObjectIdentifier)) throw new Asn1Error(`${what} is not an OBJECT IDENTIFIER`);
  return b.getValue();
}

/** Exact encoded bytes of a decoded element (shares memory with the input). */
export function raw(b: Block): Buffer {
  const v = b.valueBeforeDecodeView;
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/**
 * Content octets of a primitive element (any tag, e.g. an IMPLICIT [0] OCTET STRING), or the
 * concatenated chunks of a BER constructed string.
 */
export function contentOf(b: Block | undefined, what: string): Buffer {
  if (!b) throw new Asn1Error(`${what} is missing`);
  if (b.idBlock.isConstructed) {
    return Buffer.concat(kids(b, what).map((k) => contentOf(k, what)));
  }
  const v = (b.valueBlock as { valueHexView?: Uint8Array }).valueHexView;
  if (!v) throw new Asn1Error(`${what} is not a primitive element`);
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/** A string-typed element's text (PrintableString, UTF8String, IA5String, T61String, BMPString). */
export function textOf(b: Block | undefined, what: string): string {
  if (!b || b.idBlock.tagClass !== 1) throw new Asn1Error(`${what} is not a string`);
  const bytes = contentOf(b, what);
  switch (b.idBlock.tagNumber) {
    case 12:
      return bytes.toString('utf8'); // UTF8String
    case 19:
    case 22:
    case 20:
    case 26:
      return bytes.toString('latin1'); // Printable, IA5, T61, Visible
    case 30: {
      // BMPString: UTF-16BE
      if (bytes.length % 2) throw new Asn1Error(`${what} is a BMPString of odd length`);
      const le = Buffer.from(bytes);
      le.swap16();
      return le.toString('utf16le');
    }
    default:
      throw new Asn1Error(`${what} has unsupported string type ${b.idBlock.tagNumber}`);
  }
}

/** Re-encode an [n] IMPLICIT SET (e.g. signedAttrs) as the DER SET OF that was signed (RFC 5652 5.4). */
export function asSet(b: Block): Buffer {
  if (!b.lenBlock.isIndefiniteForm) {
    const copy = Buffer.from(raw(b));
    copy[0] = 0x31;
    return copy;
  }
  return set(...kids(b, 'attributes').map(raw));
}
