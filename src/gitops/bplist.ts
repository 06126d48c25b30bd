/**
 * A bounded reader of binary property lists (`bplist00`), the format CoreFoundation writes with
 * kCFPropertyListBinaryFormat_v1_0 and reads before trying XML. It reads what
 * CFBinaryPList.c reads and refuses what it refuses: a trailer whose sizes or offsets do not fit
 * the file, objects outside the object area, references past the object count, a container that
 * contains itself. Beyond CoreFoundation it also bounds the work: objects may be shared (a DAG),
 * so a few hundred bytes could expand into billions of values; every value produced, and every
 * byte of string and data, counts against a limit. Every failure is a BplistError naming the
 * problem and the byte offset; no other exception escapes.
 *
 * Layout: "bplist00", objects, an offset table (one offset per object, offsetIntSize bytes
 * each), and a 32-byte trailer: 6 unused bytes, sort version, offsetIntSize, objectRefSize,
 * numObjects (8), topObject (8), offsetTableOffset (8), all big-endian.
 */
import type { PlistValue } from 'plist';
import { Malformed } from '../errors.js';

export class BplistError extends Malformed {
  constructor(message: string) {
    super(message);
    this.name = 'BplistError';
  }
}

export interface BplistLimits {
  /** Deepest nesting of dict and array. */
  maxDepth: number;
  /** Values produced, a shared object counting each time it is used. */
  maxValues: number;
  /** Bytes of strings and data produced (UTF-16 strings count two per unit), shared ones each time. */
  maxBytes: number;
}

/**
 * Depth and bytes as TRUSTED_LIMITS for XML. Values: a profile renders to XML of at least 7 bytes
 * a value (`<true/>`), and more than 4 MiB is refused (profileMaxBytes), so no usable profile has
 * a million; the bound also keeps a hostile DAG of a few hundred bytes to well under a second.
 */
export const BPLIST_LIMITS: Readonly<BplistLimits> = Object.freeze({ maxDepth: 128, maxValues: 1_000_000, maxBytes: 64 << 20 });

export interface BplistOptions extends Partial<BplistLimits> {
  /**
   * CoreFoundation reads the null object (0x00) as kCFNull, which no XML plist can hold. With
   * false it is refused (a configuration profile cannot carry it); with true it is `null`.
   */
  allowNull?: boolean;
  /** Called with every real read: XML and YAML tell 2.0 from 2 by element and syntax, JS numbers do not. */
  onReal?: (value: number) => void;
}

export type BplistValue = PlistValue | null;

const MAGIC = 'bplist00';
const TRAILER = 32;
// Seconds from 1970-01-01 to 2001-01-01, CoreFoundation's reference date.
const CF_EPOCH_MS = 978_307_200_000;

export function isBinaryPlist(bytes: Uint8Array): boolean {
  return bytes.length >= 6 && Buffer.from(bytes.buffer, bytes.byteOffset, 6).toString('latin1') === 'bplist';
}

/** The value of a binary plist. Throws only BplistError. */
export function parseBinaryPlist(input: Uint8Array, opts: BplistOptions = {}): BplistValue {
  try {
    return new Reader(input, opts).read();
  } catch (err) {
    if (err instanceof BplistError) throw err;
    // A bug of ours, or the engine refusing an allocation: still this file's typed failure.
    throw new BplistError(`binary plist could not be read (${err instanceof Error ? err.name : 'non-error thrown'})`);
  }
}

class Reader {
  private readonly b: Buffer;
  private readonly limits: BplistLimits;
  private readonly allowNull: boolean;
  private readonly onReal?: (value: number) => void;
  private offsetIntSize = 0;
  private refSize = 0;
  private numObjects = 0;
  private tableOffset = 0;
  private values = 0;
  private bytes = 0;
  /** Offsets of the containers on the path from the root to the one being read (1): a ref to one is a cycle. */
  private path = new Uint8Array(0);

  constructor(input: Uint8Array, opts: BplistOptions) {
    this.b = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
    this.limits = {
      maxDepth: opts.maxDepth ?? BPLIST_LIMITS.maxDepth,
      maxValues: opts.maxValues ?? BPLIST_LIMITS.maxValues,
      maxBytes: opts.maxBytes ?? BPLIST_LIMITS.maxBytes,
    };
    this.allowNull = opts.allowNull ?? true;
    this.onReal = opts.onReal;
  }

  read(): BplistValue {
    const b = this.b;
    if (b.length < MAGIC.length + 1 + TRAILER) throw new BplistError('binary plist is too short for its header and trailer');
    const magic = b.toString('latin1', 0, 8);
    if (magic !== MAGIC) throw new BplistError(`binary plist version "${magic.slice(6).replace(/[^\x20-\x7e]/g, '?')}" is not supported (only bplist00)`);
    const t = b.length - TRAILER;
    this.offsetIntSize = b[t + 6]!;
    this.refSize = b[t + 7]!;
    const numObjects = b.readBigUInt64BE(t + 8);
    const top = b.readBigUInt64BE(t + 16);
    const tableOffset = b.readBigUInt64BE(t + 24);
    if (this.offsetIntSize < 1 || this.offsetIntSize > 8) throw new BplistError(`trailer: offset size ${this.offsetIntSize} is not 1 to 8 bytes`);
    if (this.refSize < 1 || this.refSize > 8) throw new BplistError(`trailer: object reference size ${this.refSize} is not 1 to 8 bytes`);
    if (numObjects < 1n) throw new BplistError('trailer: no objects');
    if (top >= numObjects) throw new BplistError(`trailer: top object ${top} is not below the object count ${numObjects}`);
    if (tableOffset < 9n || tableOffset >= BigInt(t)) throw new BplistError(`trailer: offset table at ${tableOffset} is outside the file`);
    if (tableOffset + numObjects * BigInt(this.offsetIntSize) > BigInt(t))
      throw new BplistError(`trailer: ${numObjects} offsets of ${this.offsetIntSize} bytes do not fit between the offset table and the trailer`);
    // As CoreFoundation: the sizes must be able to express every offset and reference.
    if (this.refSize < 8 && 1n << BigInt(8 * this.refSize) <= numObjects)
      throw new BplistError(`trailer: ${this.refSize}-byte references cannot name ${numObjects} objects`);
    if (this.offsetIntSize < 8 && 1n << BigInt(8 * this.offsetIntSize) <= tableOffset)
      throw new BplistError(`trailer: ${this.offsetIntSize}-byte offsets cannot reach the offset table at ${tableOffset}`);
    this.numObjects = Number(numObjects);
    this.tableOffset = Number(tableOffset);
    this.path = new Uint8Array(this.tableOffset);
    return this.object(Number(top), 0);
  }

  /** Byte offset of object `ref`, checked to lie in the object area. */
  private offsetOf(ref: number): number {
    const at = this.tableOffset + ref * this.offsetIntSize;
    const off = this.uint(at, this.offsetIntSize);
    if (off < 8 || off >= this.tableOffset) throw new BplistError(`object ${ref}: offset ${off} is outside the object area (8 to ${this.tableOffset - 1})`);
    return off;
  }

  /** An unsigned big-endian integer of `size` bytes (1-8) at `at`; beyond 2^53 is refused. */
  private uint(at: number, size: number): number {
    let v = 0;
    for (let i = 0; i < size; i++) v = v * 256 + this.b[at + i]!;
    if (!Number.isSafeInteger(v)) throw new BplistError(`offset or count at ${at} is too large`);
    return v;
  }

  /** `len` bytes from `at` must end inside the object area. */
  private need(at: number, len: number, what: string): void {
    if (len < 0 || at + len > this.tableOffset) throw new BplistError(`${what} at ${at}: ${len} bytes run past the object area`);
  }

  private count(off: number, marker: number): { n: number; at: number } {
    const low = marker & 0x0f;
    if (low !== 0x0f) return { n: low, at: off + 1 };
    // 0xF: the count follows as an int object (0x1n).
    this.need(off + 1, 1, 'count');
    const m = this.b[off + 1]!;
    if ((m & 0xf0) !== 0x10 || (m & 0x0f) > 3) throw new BplistError(`object at ${off}: its count is not an integer of 1 to 8 bytes`);
    const size = 1 << (m & 0x0f);
    this.need(off + 2, size, 'count');
    return { n: this.uint(off + 2, size), at: off + 2 + size };
  }

  private spend(bytes: number): void {
    if (++this.values > this.limits.maxValues)
      throw new BplistError(`more than ${this.limits.maxValues} values (shared objects count each time they are used)`);
    if ((this.bytes += bytes) > this.limits.maxBytes)
      throw new BplistError(`more than ${this.limits.maxBytes} bytes of strings and data (shared objects count each time they are used)`);
  }

  private ref(at: number): number {
    const ref = this.uint(at, this.refSize);
    if (ref >= this.numObjects) throw new BplistError(`reference at ${at} names object ${ref}, but there are ${this.numObjects}`);
    return ref;
  }

  private object(ref: number, depth: number): BplistValue {
    const off = this.offsetOf(ref);
    const b = this.b;
    const marker = b[off]!;
    const kind = marker >> 4;
    switch (kind) {
      case 0x0:
        this.spend(0);
        if (marker === 0x08) return false;
        if (marker === 0x09) return true;
        if (marker === 0x00) {
          if (!this.allowNull) throw new BplistError(`null object at ${off}: a configuration profile cannot hold null (XML has no such value)`);
          return null;
        }
        throw new BplistError(`unknown object marker 0x${marker.toString(16).padStart(2, '0')} at ${off}`);
      case 0x1: {
        // 1, 2 and 4 bytes are unsigned, 8 signed, 16 the low 64 bits as unsigned (CF-1153).
        const size = 1 << (marker & 0x0f);
        if (size > 16) throw new BplistError(`integer of ${size} bytes at ${off}`);
        this.need(off + 1, size, 'integer');
        this.spend(0);
        if (size <= 4) return this.uint(off + 1, size);
        if (size === 8) return Number(b.readBigInt64BE(off + 1));
        return Number(b.readBigUInt64BE(off + 9));
      }
      case 0x2: {
        const low = marker & 0x0f;
        if (low !== 2 && low !== 3) throw new BplistError(`real of ${1 << low} bytes at ${off}`);
        this.need(off + 1, 1 << low, 'real');
        this.spend(0);
        const v = low === 2 ? b.readFloatBE(off + 1) : b.readDoubleBE(off + 1);
        this.onReal?.(v);
        return v;
      }
      case 0x3: {
        if (marker !== 0x33) throw new BplistError(`unknown object marker 0x${marker.toString(16)} at ${off}`);
        this.need(off + 1, 8, 'date');
        this.spend(0);
        const d = new Date(CF_EPOCH_MS + b.readDoubleBE(off + 1) * 1000);
        if (Number.isNaN(d.getTime())) throw new BplistError(`date at ${off} is not a representable time`);
        return d;
      }
      case 0x4: {
        const { n, at } = this.count(off, marker);
        this.need(at, n, 'data');
        this.spend(n);
        return new Uint8Array(b.subarray(at, at + n));
      }
      case 0x5: {
        const { n, at } = this.count(off, marker);
        this.need(at, n, 'ASCII string');
        this.spend(n);
        for (let i = at; i < at + n; i++) {
          // CoreFoundation creates these with kCFStringEncodingASCII, which fails on other bytes.
          if (b[i]! > 0x7f) throw new BplistError(`ASCII string at ${off} holds a byte above 0x7F`);
        }
        return b.toString('latin1', at, at + n);
      }
      case 0x6: {
        const { n, at } = this.count(off, marker);
        if (n > this.tableOffset) throw new BplistError(`UTF-16 string at ${off}: ${n} units run past the object area`);
        this.need(at, 2 * n, 'UTF-16 string');
        this.spend(2 * n);
        const le = Buffer.from(b.subarray(at, at + 2 * n));
        le.swap16();
        return le.toString('utf16le');
      }
      case 0x8: {
        // A keyed archiver UID, written in XML by CoreFoundation as <dict><key>CF$UID</key><integer>.
        const size = (marker & 0x0f) + 1;
        this.need(off + 1, size, 'UID');
        this.spend(0);
        let v = 0n;
        for (let i = 0; i < size; i++) v = (v << 8n) | BigInt(b[off + 1 + i]!);
        return { CF$UID: Number(v) };
      }
      case 0xa:
      case 0xd: {
        const { n, at } = this.count(off, marker);
        const refs = kind === 0xd ? 2 * n : n;
        if (refs > this.tableOffset) throw new BplistError(`${kind === 0xd ? 'dict' : 'array'} at ${off}: ${n} entries run past the object area`);
        this.need(at, refs * this.refSize, kind === 0xd ? 'dict' : 'array');
        if (depth + 1 > this.limits.maxDepth)
          throw new BplistError(`dict and array nesting deeper than ${this.limits.maxDepth} levels at ${off} (limit depth)`);
        if (this.path[off]) throw new BplistError(`${kind === 0xd ? 'dict' : 'array'} at ${off} contains itself (a reference cycle)`);
        this.spend(0);
        this.path[off] = 1;
        let out: BplistValue;
        if (kind === 0xa) {
          const arr: PlistValue[] = [];
          for (let i = 0; i < n; i++) arr.push(this.object(this.ref(at + i * this.refSize), depth + 1) as PlistValue);
          out = arr;
        } else {
          const dict: Record<string, PlistValue> = {};
          for (let i = 0; i < n; i++) {
            const key = this.object(this.ref(at + i * this.refSize), depth + 1);
            if (typeof key !== 'string') throw new BplistError(`dict at ${off}: key ${i} is not a string`);
            const value = this.object(this.ref(at + (n + i) * this.refSize), depth + 1) as PlistValue;
            // Refused like the XML parser does: assigned, it would replace the dict's prototype.
            if (key === '__proto__') throw new BplistError(`dict at ${off}: forbidden key __proto__`);
            dict[key] = value;
          }
          out = dict;
        }
        this.path[off] = 0;
        return out;
      }
      case 0xc:
        throw new BplistError(`set at ${off}: sets have no XML form and no place in a configuration profile`);
      default:
        throw new BplistError(`unknown object marker 0x${marker.toString(16).padStart(2, '0')} at ${off}`);
    }
  }
}
