/**
 * Reading DER and BER through the @peculiar/asn1-* schemas: every cold-path reader (certificates,
 * CSRs, SignedData, EnvelopedData, SCEP attributes) decodes here, with bounded work and exact
 * framing, and every public reader of this module runs behind `readable()`, the one guard that
 * turns whatever a library throws on hostile bytes into an `Asn1Error`.
 */
import { AsnParser } from '@peculiar/asn1-schema';
import { AttributeValue } from '@peculiar/asn1-x509';
import * as asn1js from 'asn1js';
import { Forbidden, Malformed } from '../errors.js';
import { causeName, guarded } from '../identity/errors.js';

/** The bytes are not the structure they should be (malformed input). */
export class Asn1Error extends Malformed {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'Asn1Error';
  }
}

/** Well-formed, but a signature or digest does not verify (as opposed to Asn1Error). */
export class SignatureError extends Forbidden {
  constructor(message: string) {
    super(message);
    this.name = 'SignatureError';
  }
}

export interface DecodeLimits {
  /** Deepest nesting; default 64. */
  maxDepth?: number;
  /** Most elements; default 20,000. */
  maxNodes?: number;
  /** Accept bytes after the element (the Mdm-Signature reader always has); default false. */
  trailing?: boolean;
}

type Schema<T> = new () => T;

/** One BER element that fills `der` (shares memory with it: raw values are views). */
export function parseBer(der: Uint8Array, what: string, limits: DecodeLimits = {}): asn1js.AsnType {
  const view = new Uint8Array(der.buffer, der.byteOffset, der.byteLength);
  // asn1js decodes string and time values while parsing and throws on bad ones (an invalid
  // GeneralizedTime): that exception is left to the caller's guard, which names its class.
  const parsed = asn1js.fromBER(view, { maxDepth: limits.maxDepth ?? 64, maxNodes: limits.maxNodes ?? 20_000, parseEmbedded: false, copyInput: false });
  if (parsed.offset === -1) throw new Asn1Error(`${what} is not valid BER: ${parsed.result.error}`);
  if (!limits.trailing && parsed.offset !== der.byteLength) throw new Asn1Error(`${what} has trailing bytes`);
  return parsed.result;
}

/** Decode `der` as the schema `type`. Unguarded: call it inside `readable()` (or another guard). */
export function decode<T>(der: Uint8Array, type: Schema<T>, what: string, limits?: DecodeLimits): T {
  return decodeBlock(parseBer(der, what, limits), type, what);
}

/** Decode an element already parsed (see contentInfo). */
export function decodeBlock<T>(block: asn1js.AsnType, type: Schema<T>, what: string): T {
  try {
    return AsnParser.fromASN(block, type) as T;
  } catch (cause) {
    // Named by the schema, without the suffix of this module's raw-keeping variants (SignedDataParts).
    throw new Asn1Error(`${what} is not a well-formed ${type.name.replace(/Parts$/, '')} ${causeName(cause)}`, { cause });
  }
}

/**
 * ContentInfo (RFC 5652 3), the frame of every CMS message: its content type and its [0]
 * EXPLICIT content, still parsed (the content's own schema reads it without a second parse).
 */
export function contentInfo(der: Uint8Array, what: string, limits?: DecodeLimits): { contentType: string; content: asn1js.AsnType } {
  const ci = parseBer(der, what, limits);
  if (!(ci instanceof asn1js.Sequence)) throw new Asn1Error(`${what} ContentInfo is not a constructed element`);
  const [type, content] = ci.valueBlock.value;
  if (!(type instanceof asn1js.ObjectIdentifier)) throw new Asn1Error('contentType is not an OBJECT IDENTIFIER');
  if (!content || content.idBlock.tagClass !== 3 || content.idBlock.tagNumber !== 0) throw new Asn1Error(`${what} has no content`);
  const inner = content instanceof asn1js.Constructed ? content.valueBlock.value : undefined;
  if (!inner) throw new Asn1Error('ContentInfo content is not a constructed element');
  if (inner.length !== 1) throw new Asn1Error('ContentInfo content must be one element');
  return { contentType: type.getValue(), content: inner[0]! };
}

/**
 * The guard of this module's readers: its own Asn1Error and SignatureError pass through; any
 * other exception (asn1js on an invalid time, node:crypto on an unusable key) means the input
 * could not be read. The message names only the exception's class: a library's text may quote
 * the input.
 */
export function readable<T>(what: string, read: () => T): T {
  return guarded(read, [Asn1Error, SignatureError], (cause) => new Asn1Error(`${what} could not be parsed ${causeName(cause)}`, { cause }));
}

/** A view of the bytes of an ArrayBuffer the schemas returned. */
export function bytes(b: ArrayBuffer | ArrayBufferView): Buffer {
  return ArrayBuffer.isView(b) ? Buffer.from(b.buffer, b.byteOffset, b.byteLength) : Buffer.from(b);
}

/** The content of an encoded OCTET STRING, primitive or (BER) constructed. */
export function octetsOf(der: Uint8Array, what: string): Buffer {
  const b = parseBer(der, what);
  if (!(b instanceof asn1js.OctetString)) throw new Asn1Error(`${what} is not an OCTET STRING`);
  return bytes(b.valueBlock.isConstructed ? b.getValue() : b.valueBlock.valueHexView);
}

/** The content octets of an encoded [n] IMPLICIT OCTET STRING, primitive or (BER) constructed. */
export function implicitOctetsOf(der: Uint8Array, what: string): Buffer {
  const b = parseBer(der, what);
  if (b.idBlock.tagClass !== 3) throw new Asn1Error(`${what} is not a context-specific element`);
  if (!(b instanceof asn1js.Constructed)) return bytes((b as asn1js.Primitive).valueBlock.valueHexView);
  return Buffer.concat(
    b.valueBlock.value.map((chunk) => {
      if (!(chunk instanceof asn1js.OctetString) || chunk.valueBlock.isConstructed)
        throw new Asn1Error(`${what} holds something other than OCTET STRING chunks`);
      return bytes(chunk.valueBlock.valueHexView);
    }),
  );
}

/** The text of an encoded string value (Printable, UTF8, IA5, Teletex, BMP, Universal). */
export function textOf(der: Uint8Array, what: string): string {
  // One primitive element: its asn1js block is the string (a schema mapping would add nothing but cost).
  const b = parseBer(der, what);
  if (STRING_TYPES.some((t) => b instanceof t)) return (b as asn1js.PrintableString).getValue();
  throw new Asn1Error(`${what} is not a string`);
}

const STRING_TYPES = [asn1js.PrintableString, asn1js.Utf8String, asn1js.IA5String, asn1js.TeletexString, asn1js.BmpString, asn1js.UniversalString];

/** The text of a decoded name or attribute value; Asn1Error when it is not a string type. */
export function valueText(v: AttributeValue, what: string): string {
  const text = v.printableString ?? v.utf8String ?? v.ia5String ?? v.teletexString ?? v.bmpString ?? v.universalString;
  if (text === undefined) throw new Asn1Error(`${what} is not a string`);
  return text;
}

/** The dotted value of an encoded OBJECT IDENTIFIER. */
export function oidOf(der: Uint8Array, what: string): string {
  const b = parseBer(der, what);
  if (!(b instanceof asn1js.ObjectIdentifier)) throw new Asn1Error(`${what} is not an OBJECT IDENTIFIER`);
  return b.getValue();
}
