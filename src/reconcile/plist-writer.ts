/**
 * An XML plist writer for profile templates, in slices: it writes exactly what the `plist`
 * package's `build` writes (pretty, two-space indent, xmlbuilder's escaping; a test keeps them
 * equal), but as a loop that yields between slices instead of building an xmlbuilder tree, which
 * took half a second of blocked event loop for a 5 MB profile.
 */
import type { PlistValue } from '../protocol/plist.js';
import { Malformed } from '../errors.js';

const HEADER = '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">';

// XML 1.0 characters xmlbuilder refuses (as its assertLegalChar).
const ILLEGAL_XML = /[\0-\x08\x0B\f\x0E-\x1F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?:[^\uD800-\uDBFF]|^)[\uDC00-\uDFFF]/;

export class PlistTextError extends Malformed {}

/** Element text as xmlbuilder escapes it; throws PlistTextError for characters XML cannot carry. */
export function xmlText(s: string): string {
  if (ILLEGAL_XML.test(s)) throw new PlistTextError('a string contains a character a plist cannot carry');
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/\r/g, '&#xD;');
}

/** `<string>` as the builder writes it (an empty one is `<string/>`). */
export function xmlString(s: string): string {
  return s === '' ? '<string/>' : `<string>${xmlText(s)}</string>`;
}

/** Values written between yields. */
const SLICE_NODES = 20_000;

type Frame = { array: PlistValue[]; i: number; pad: string } | { dict: Record<string, PlistValue>; keys: string[]; i: number; pad: string };

/** The plist XML of `root`; yields every few thousand values. */
export function* plistXml(root: PlistValue): Generator<void, string, void> {
  const out: string[] = [HEADER];
  const stack: Frame[] = [];
  let nodes = 0;
  // Writes a value at `pad`; returns the frame to descend into for a non-empty container.
  const value = (v: PlistValue | undefined | null, pad: string): Frame | undefined => {
    if (v === undefined || v === null) return undefined;
    if (Array.isArray(v)) {
      if (v.length === 0 || v.every((x) => x === undefined || x === null)) {
        out.push(`${pad}<array/>`);
        return undefined;
      }
      out.push(`${pad}<array>`);
      return { array: v, i: 0, pad };
    }
    if (v instanceof ArrayBuffer || ArrayBuffer.isView(v)) {
      const bytes = v instanceof ArrayBuffer ? Buffer.from(v) : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
      out.push(bytes.length === 0 ? `${pad}<data/>` : `${pad}<data>${bytes.toString('base64')}</data>`);
      return undefined;
    }
    if (v instanceof Date) {
      out.push(`${pad}<date>${new Date(v).toISOString().replace(/\.\d{3}Z$/, 'Z')}</date>`);
      return undefined;
    }
    if (typeof v === 'object') {
      const dict = v as Record<string, PlistValue>;
      const keys: string[] = [];
      for (const k in dict) if (Object.hasOwn(dict, k) && dict[k] !== undefined && dict[k] !== null) keys.push(k);
      if (keys.length === 0) {
        out.push(`${pad}<dict/>`);
        return undefined;
      }
      out.push(`${pad}<dict>`);
      return { dict, keys, i: 0, pad };
    }
    if (typeof v === 'number') out.push(`${pad}<${v % 1 === 0 ? 'integer' : 'real'}>${xmlText(v.toString())}</${v % 1 === 0 ? 'integer' : 'real'}>`);
    else if (typeof v === 'bigint') out.push(`${pad}<integer>${(v as bigint).toString()}</integer>`);
    else if (typeof v === 'boolean') out.push(`${pad}<${v ? 'true' : 'false'}/>`);
    else if (typeof v === 'string') out.push(pad + xmlString(v));
    return undefined;
  };
  const top = value(root, '  ');
  if (out.length === 1) return `${HEADER}\n<plist version="1.0"/>`;
  out.splice(1, 0, '<plist version="1.0">');
  if (top) stack.push(top);
  while (stack.length > 0) {
    const f = stack[stack.length - 1]!;
    const inner = `${f.pad}  `;
    let child: Frame | undefined;
    if ('array' in f) {
      if (f.i >= f.array.length) {
        stack.pop();
        out.push(`${f.pad}</array>`);
        continue;
      }
      child = value(f.array[f.i++], inner);
    } else {
      if (f.i >= f.keys.length) {
        stack.pop();
        out.push(`${f.pad}</dict>`);
        continue;
      }
      const k = f.keys[f.i++]!;
      out.push(k === '' ? `${inner}<key/>` : `${inner}<key>${xmlText(k)}</key>`);
      child = value(f.dict[k], inner);
    }
    if (child) stack.push(child);
    if (++nodes % SLICE_NODES === 0) yield;
  }
  out.push('</plist>');
  return out.join('\n');
}
