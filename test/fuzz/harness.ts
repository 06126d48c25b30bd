/**
 * Structure-aware mutation fuzzing of the parsers of untrusted input, on fast-check.
 *
 * A seed (a real BER/DER message) is read into a TLV tree by a walker of its own, independent of
 * the parsers under test, so mutations can change one element deep inside (a certificate's
 * validity, a signed attribute, an encapsulated EnvelopedData) and still have every enclosing
 * length right: that is how inputs get past the outer checks to the decoders that throw. Byte
 * level mutations (bytes, truncation, raw length octets) come on top. The vitest suites (10,000
 * inputs per parser) and `npm run fuzz` (bench/fuzz.ts, 1,000,000, seedable) share this file.
 */
import * as fc from 'fast-check';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

// ---- a TLV tree of the seed ----

export interface Tlv {
  tag: Buffer;
  indefinite: boolean;
  /** Constructed elements, and OCTET/BIT STRINGs whose content is itself DER (encapsulated). */
  kids?: Tlv[];
  /** Primitive content; for an encapsulated BIT STRING, its unused-bits octet. */
  content: Buffer;
  encapsulated?: boolean;
  /** The element's encoding as read, while it is unchanged (saves re-encoding the rest of a seed). */
  enc?: Buffer;
}

function readLength(buf: Buffer, at: number): { len: number; at: number } | undefined {
  const first = buf[at];
  if (first === undefined) return undefined;
  if (first < 0x80) return { len: first, at: at + 1 };
  if (first === 0x80) return { len: -1, at: at + 1 };
  const n = first & 0x7f;
  if (n > 4 || at + 1 + n > buf.length) return undefined;
  let len = 0;
  for (let i = 0; i < n; i++) len = len * 256 + buf[at + 1 + i]!;
  return { len, at: at + 1 + n };
}

/** Elements filling buf[start, end) exactly (end undefined: up to an end-of-contents). */
function readList(buf: Buffer, start: number, end: number | undefined, depth: number): { list: Tlv[]; at: number } | undefined {
  const list: Tlv[] = [];
  let at = start;
  for (;;) {
    if (end !== undefined && at === end) return { list, at };
    if (end === undefined && buf[at] === 0 && buf[at + 1] === 0) return { list, at: at + 2 };
    const el = readElement(buf, at, end ?? buf.length, depth);
    if (!el) return undefined;
    list.push(el.tlv);
    at = el.at;
  }
}

function readElement(buf: Buffer, start: number, limit: number, depth: number): { tlv: Tlv; at: number } | undefined {
  if (depth > 40 || start >= limit) return undefined;
  let at = start + 1;
  if ((buf[start]! & 0x1f) === 0x1f) {
    while (at < limit && buf[at]! & 0x80) at++;
    at++;
  }
  if (at > limit) return undefined;
  const tag = buf.subarray(start, at);
  const l = readLength(buf, at);
  if (!l) return undefined;
  const constructed = (buf[start]! & 0x20) !== 0;
  if (l.len === -1) {
    if (!constructed) return undefined;
    const r = readList(buf, l.at, undefined, depth + 1);
    return r && { tlv: { tag, indefinite: true, kids: r.list, content: Buffer.alloc(0), enc: buf.subarray(start, r.at) }, at: r.at };
  }
  const end = l.at + l.len;
  if (end > limit) return undefined;
  if (constructed) {
    const r = readList(buf, l.at, end, depth + 1);
    return r && { tlv: { tag, indefinite: false, kids: r.list, content: Buffer.alloc(0), enc: buf.subarray(start, end) }, at: end };
  }
  const content = buf.subarray(l.at, end);
  // OCTET STRING or BIT STRING holding DER (eContent, extnValue, a public key): descend.
  const skip = tag.length === 1 && tag[0] === 0x03 ? 1 : tag.length === 1 && tag[0] === 0x04 ? 0 : -1;
  if (skip >= 0 && content.length > skip + 2 && (skip === 0 || content[0] === 0)) {
    const inner = readList(buf, l.at + skip, end, depth + 1);
    if (inner && inner.list.length > 0) {
      return {
        tlv: { tag, indefinite: false, kids: inner.list, content: content.subarray(0, skip), encapsulated: true, enc: buf.subarray(start, end) },
        at: end,
      };
    }
  }
  return { tlv: { tag, indefinite: false, content, enc: buf.subarray(start, end) }, at: end };
}

/** The seed as a tree of TLVs (the top level may hold several elements); throws if it is not BER. */
export function readTree(buf: Buffer): Tlv[] {
  const r = readList(buf, 0, buf.length, 0);
  if (!r) throw new Error('seed is not BER');
  return r.list;
}

function lengthOctets(len: number): Buffer {
  if (len < 0x80) return Buffer.from([len]);
  const bytes: number[] = [];
  for (let v = len; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

export function writeTree(list: Tlv[]): Buffer {
  return Buffer.concat(list.map(writeTlv));
}

function writeTlv(t: Tlv): Buffer {
  if (t.enc) return t.enc;
  const content = t.kids ? Buffer.concat([t.content, writeTree(t.kids)]) : t.content;
  if (t.indefinite) return Buffer.concat([t.tag, Buffer.from([0x80]), content, Buffer.from([0, 0])]);
  return Buffer.concat([t.tag, lengthOctets(content.length), content]);
}

// Trees are never changed in place (seeds are shared by every input): an edit copies the path
// from the top to the element, and the copies drop their cached encoding.

/** Index paths of every element, in document order. */
function flatten(list: Tlv[], prefix: number[] = [], out: number[][] = []): number[][] {
  list.forEach((tlv, i) => {
    const path = [...prefix, i];
    out.push(path);
    if (tlv.kids) flatten(tlv.kids, path, out);
  });
  return out;
}

function at(tree: Tlv[], path: number[]): Tlv {
  let t = tree[path[0]!]!;
  for (const i of path.slice(1)) t = t.kids![i]!;
  return t;
}

/** A new tree in which `edit` has changed the list holding the element at `path`. */
function edited(tree: Tlv[], path: number[], edit: (list: Tlv[], i: number) => void): Tlv[] {
  const top = [...tree];
  let list = top;
  for (const i of path.slice(0, -1)) {
    const copy: Tlv = { ...list[i]!, kids: [...list[i]!.kids!], enc: undefined };
    list[i] = copy;
    list = copy.kids!;
  }
  edit(list, path[path.length - 1]!);
  return top;
}

// ---- mutations ----

// Universal types asn1js decodes while parsing (strings, times, INTEGER, OID, BOOLEAN, REAL...),
// the constructed ones CMS uses, context tags, and a long-form tag.
const TAGS = [
  0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0c, 0x0d, 0x0e, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d,
  0x1e, 0x23, 0x24, 0x2c, 0x30, 0x31, 0x37, 0x38, 0x3c, 0x3e, 0x80, 0x81, 0x82, 0x83, 0xa0, 0xa1, 0xa2, 0xa3, 0xbf, 0xff,
];
const tagArb = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...TAGS).map((t) => Buffer.from([t])) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }).map((t) => Buffer.from([t])) },
  { weight: 1, arbitrary: fc.constantFrom(Buffer.from([0x1f, 0x81, 0x00]), Buffer.from([0x9f, 0xff, 0xff, 0xff, 0x7f]), Buffer.from([0x3f, 0x1e])) },
);

// Contents decoders choke on: empty, odd lengths, bad times, huge INTEGERs, OID edge cases.
const CONTENTS = [
  '',
  '00',
  '41',
  'ff',
  '8000',
  '0000',
  'ffffffffffffffffff',
  '2a864886f70d',
  '2a',
  '80808080808080808001',
  '7f',
  '00ff',
  Buffer.from('991231235959Z').toString('hex'),
  Buffer.from('20991231235959.123Z').toString('hex'),
  Buffer.from('2026023015').toString('hex'),
  Buffer.from('A').toString('hex'),
  Buffer.from('1').toString('hex'),
  Buffer.from('19990101000000+2500').toString('hex'),
  Buffer.from('0a').toString('hex'),
].map((h) => Buffer.from(h, 'hex'));
const contentArb = fc.oneof(
  { weight: 2, arbitrary: fc.constantFrom(...CONTENTS) },
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 24 }).map((b) => Buffer.from(b)) },
);

// Raw length octets: indefinite on a primitive, too long, too many octets, off by one.
const LENGTHS = ['80', '81', '8100', '81ff', '82ffff', '84ffffffff', '847fffffff', '89', 'ff', '00', '7f', '01'].map((h) => Buffer.from(h, 'hex'));

type TreeOp =
  | { k: 'retag'; n: number; tag: Buffer }
  | { k: 'content'; n: number; content: Buffer }
  | { k: 'drop'; n: number }
  | { k: 'dup'; n: number }
  | { k: 'transplant'; n: number; from: number }
  | { k: 'indefinite'; n: number }
  | { k: 'wrap'; n: number; tag: Buffer }
  | { k: 'generated'; n: number; tlv: Tlv };

type ByteOp =
  | { k: 'set'; at: number; v: number }
  | { k: 'flip'; at: number; bit: number }
  | { k: 'truncate'; at: number }
  | { k: 'delete'; at: number; len: number }
  | { k: 'insert'; at: number; bytes: Buffer }
  | { k: 'length'; at: number; octets: Buffer };

const nat = fc.nat({ max: 1 << 20 });

/** A small random TLV tree: the shapes of ASN.1 with garbage where values go. */
export const generatedTlv: fc.Arbitrary<Tlv> = fc.letrec<{ tlv: Tlv }>((tie) => ({
  tlv: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({ tag: tagArb, content: contentArb }).map(({ tag, content }) => ({ tag, indefinite: false, content })),
    fc
      .record({
        tag: fc.constantFrom(0x30, 0x31, 0xa0, 0xa3, 0x24, 0x23, 0x3e, 0x38).map((t) => Buffer.from([t])),
        indefinite: fc.boolean(),
        kids: fc.array(tie('tlv'), { maxLength: 3 }),
      })
      .map(({ tag, indefinite, kids }) => ({ tag, indefinite, kids, content: Buffer.alloc(0) })),
  ),
})).tlv;

const treeOp: fc.Arbitrary<TreeOp> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant('retag' as const), n: nat, tag: tagArb }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('content' as const), n: nat, content: contentArb }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('drop' as const), n: nat }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('dup' as const), n: nat }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('transplant' as const), n: nat, from: nat }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('indefinite' as const), n: nat }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('wrap' as const), n: nat, tag: tagArb }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('generated' as const), n: nat, tlv: generatedTlv }) },
);

const byteOp: fc.Arbitrary<ByteOp> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ k: fc.constant('set' as const), at: nat, v: fc.integer({ min: 0, max: 255 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('flip' as const), at: nat, bit: fc.integer({ min: 0, max: 7 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('truncate' as const), at: nat }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('delete' as const), at: nat, len: fc.integer({ min: 1, max: 16 }) }) },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant('insert' as const), at: nat, bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }).map((b) => Buffer.from(b)) }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('length' as const), at: nat, octets: fc.constantFrom(...LENGTHS) }) },
);

function applyTreeOp(tree: Tlv[], op: TreeOp): Tlv[] {
  const paths = flatten(tree);
  if (paths.length === 0) return tree;
  const path = paths[op.n % paths.length]!;
  const tlv = at(tree, path);
  const changed = (c: Partial<Tlv>) =>
    edited(tree, path, (list, i) => {
      list[i] = { ...tlv, ...c, enc: undefined };
    });
  switch (op.k) {
    case 'retag':
      return changed({ tag: op.tag });
    case 'content':
      return changed({ kids: undefined, encapsulated: undefined, content: op.content, indefinite: false });
    case 'indefinite':
      return tlv.kids && !tlv.encapsulated ? changed({ indefinite: !tlv.indefinite }) : tree;
    case 'drop':
      return edited(tree, path, (list, i) => {
        list.splice(i, 1);
      });
    case 'dup':
      return edited(tree, path, (list, i) => {
        list.splice(i, 0, tlv);
      });
    case 'transplant': {
      const from = at(tree, paths[op.from % paths.length]!);
      return edited(tree, path, (list, i) => {
        list[i] = from;
      });
    }
    case 'wrap':
      return edited(tree, path, (list, i) => {
        list[i] = { tag: op.tag, indefinite: false, kids: [tlv], content: Buffer.alloc(0) };
      });
    case 'generated':
      return edited(tree, path, (list, i) => {
        list[i] = op.tlv;
      });
  }
}

function applyByteOp(buf: Buffer, op: ByteOp): Buffer {
  if (buf.length === 0) return op.k === 'insert' ? Buffer.from(op.bytes) : buf;
  const at = op.at % buf.length;
  switch (op.k) {
    case 'set': {
      const b = Buffer.from(buf);
      b[at] = op.v;
      return b;
    }
    case 'flip': {
      const b = Buffer.from(buf);
      b[at] = b[at]! ^ (1 << op.bit);
      return b;
    }
    case 'truncate':
      return buf.subarray(0, at);
    case 'delete':
      return Buffer.concat([buf.subarray(0, at), buf.subarray(at + op.len)]);
    case 'insert':
      return Buffer.concat([buf.subarray(0, at), op.bytes, buf.subarray(at)]);
    case 'length':
      return Buffer.concat([buf.subarray(0, at), op.octets, buf.subarray(at + 1)]);
  }
}

export interface Mutated {
  /** Index of the seed it came from (-1: generated from nothing). */
  seed: number;
  bytes: Buffer;
}

/**
 * Inputs made from `seeds`: mostly 1-3 tree mutations plus up to 2 byte mutations of one seed;
 * some byte mutations only; a few small generated TLV trees (seed -1) for the outer decoder.
 */
export function mutations(seeds: Buffer[]): fc.Arbitrary<Mutated> {
  const trees = seeds.map(readTree);
  const seedIndex = fc.nat({ max: seeds.length - 1 });
  const structural = fc.record({ seed: seedIndex, tree: fc.array(treeOp, { minLength: 1, maxLength: 3 }), bytes: fc.array(byteOp, { maxLength: 2 }) });
  const bytesOnly = fc.record({ seed: seedIndex, tree: fc.constant([] as TreeOp[]), bytes: fc.array(byteOp, { minLength: 1, maxLength: 4 }) });
  const mutated = fc.oneof({ weight: 6, arbitrary: structural }, { weight: 3, arbitrary: bytesOnly }).map(({ seed, tree, bytes }): Mutated => {
    let t = trees[seed]!;
    for (const op of tree) t = applyTreeOp(t, op);
    let out = writeTree(t);
    for (const op of bytes) out = applyByteOp(out, op);
    return { seed, bytes: out };
  });
  const generated = fc.array(generatedTlv, { minLength: 1, maxLength: 2 }).map((list): Mutated => ({ seed: -1, bytes: writeTree(list) }));
  return fc.oneof({ weight: 19, arbitrary: mutated }, { weight: 1, arbitrary: generated });
}

/** Text mutations of a header value (characters, not bytes): for the base64/PEM/URL layers. */
export function textMutations(values: fc.Arbitrary<string>): fc.Arbitrary<string> {
  const op = fc.record({
    at: nat,
    kind: fc.constantFrom('set', 'delete', 'insert', 'truncate'),
    ch: fc.constantFrom(
      '%',
      '%2',
      '%zz',
      '%00',
      ':',
      '=',
      ' ',
      '\t',
      '\n',
      '-',
      '+',
      '/',
      '_',
      'A',
      '\u00e9',
      '-----END CERTIFICATE-----',
      '-----BEGIN CERTIFICATE-----',
      '',
    ),
  });
  return fc.record({ v: values, ops: fc.array(op, { minLength: 1, maxLength: 3 }) }).map(({ v, ops }) => {
    let s = v;
    for (const o of ops) {
      const at = s.length === 0 ? 0 : o.at % s.length;
      if (o.kind === 'set') s = s.slice(0, at) + o.ch + s.slice(at + 1);
      else if (o.kind === 'delete') s = s.slice(0, at) + s.slice(at + 1);
      else if (o.kind === 'insert') s = s.slice(0, at) + o.ch + s.slice(at);
      else s = s.slice(0, at);
    }
    return s;
  });
}

// ---- running ----

type ErrorClass = abstract new (...args: never[]) => Error;

export interface FuzzTarget<I> {
  /** e.g. "Mdm-Signature (verifyDetachedSignature)". */
  name: string;
  input: fc.Arbitrary<I>;
  /** The unmutated inputs: each must be "ok", or the fuzzer starts from the wrong place. */
  seeds: I[];
  /** Call the parser; returning is "ok". */
  run(input: I): unknown;
  /** The parser's typed refusals. */
  typed: readonly ErrorClass[];
}

export interface Tally {
  runs: number;
  ok: number;
  typed: number;
  other: number;
  /** Up to 5 inputs that threw something else, with what they threw. */
  examples: string[];
}

/** Buffers as base64, so a failing input can be pasted into a regression test. */
function describeInput(input: unknown): string {
  return JSON.stringify(input, (_k, v: unknown) => {
    if (v && typeof v === 'object' && (v as { type?: unknown }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data)) {
      return `base64:${Buffer.from((v as { data: number[] }).data).toString('base64')}`;
    }
    return v;
  });
}

export interface FuzzOptions {
  runs: number;
  seed: number;
  /** true: fail at the first other exception (and shrink it, for tests); false: count and go on. */
  stopAtOther?: boolean;
}

/** Feed `runs` inputs to a parser; count ok / typed error / any other exception. */
export function fuzz<I>(target: FuzzTarget<I>, opts: FuzzOptions): Tally {
  const tally: Tally = { runs: 0, ok: 0, typed: 0, other: 0, examples: [] };
  let shrinking = false;
  const property = fc.property(target.input, (input) => {
    let outcome: 'ok' | 'typed' | 'other';
    let thrown: unknown;
    try {
      target.run(input);
      outcome = 'ok';
    } catch (err) {
      thrown = err;
      outcome = target.typed.some((t) => err instanceof t) ? 'typed' : 'other';
    }
    if (!shrinking) {
      tally.runs++;
      tally[outcome]++;
      if (outcome === 'other' && tally.examples.length < 5) {
        tally.examples.push(`${describeInput(input)} -> ${thrown instanceof Error ? `${thrown.name}: ${thrown.message}` : String(thrown)}`);
      }
    }
    if (outcome === 'other' && opts.stopAtOther) {
      shrinking = true;
      throw thrown; // fast-check shrinks the input and keeps this as errorInstance
    }
    return true;
  });
  const details = fc.check(property, { numRuns: opts.runs, seed: opts.seed });
  if (details.failed && opts.stopAtOther) {
    throw new Error(
      `${target.name}: an input threw something other than ${target.typed.map((t) => t.name).join('/')} ` +
        `(seed ${opts.seed}, path ${details.counterexamplePath})\n${tally.examples.join('\n')}\n` +
        `shrunk: ${describeInput(details.counterexample?.[0])}\n${details.errorInstance instanceof Error ? details.errorInstance.stack : ''}`,
    );
  }
  return tally;
}

/** The checkout's root (this file runs from test/fuzz, and compiled from dist/test/fuzz). */
export function repoRoot(): string {
  let dir = import.meta.dirname;
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('package.json not found above the fuzz harness');
    dir = up;
  }
  return dir;
}

export const VECTORS = (): string => join(repoRoot(), 'test/fixtures/vectors');

/** FUZZ_SEED overrides the fixed seed of the test runs (to explore; failures print it). */
export function testSeed(): number {
  const s = process.env.FUZZ_SEED;
  return s ? Number(s) : 0x0c4a2d;
}
