/**
 * The DER writer of the CMS messages Orchard signs and encrypts (Mdm-Signature, SCEP, signed
 * profiles): it concatenates pre-encoded pieces, so a certificate is embedded verbatim and the
 * simulator's per-request signature costs a few copies (the schema serializer re-encodes every
 * certificate it carries). Reading goes through the schemas (decode.ts).
 */
import * as asn1js from 'asn1js';
import { Asn1Error } from './decode.js';

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
