/**
 * Property and fuzz tests of the plist parser, the first code that reads a device's body:
 * random values round-trip and agree with the `plist` package; random and mutated documents
 * (the real captures, generated plists) give a value or a ProtocolError(400) whose message names
 * only the kind of problem and its position.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { parse as packageParse } from 'plist';
import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../../src/protocol/errors.js';
import { buildPlist, parsePlist, type PlistValue } from '../../src/protocol/plist.js';

/** The plist package as Orchard used it before: xmldom reports problems on console.error and may still return a partial document. */
function packageStrict(xml: string): PlistValue {
  const problems: unknown[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => problems.push(args);
  try {
    const v = packageParse(xml);
    if (problems.length > 0) throw new Error('xmldom reported a problem');
    return v;
  } finally {
    console.error = original;
  }
}

const VECTORS = join(import.meta.dirname, '../fixtures/vectors/nanomdm');
const captures = readdirSync(VECTORS)
  .filter((f) => f.endsWith('.plist'))
  .map((f) => readFileSync(join(VECTORS, f)));

// Characters XML 1.0 can carry, weighted towards the ones that need escaping or normalizing.
const char = fc.oneof(
  fc.constantFrom('<', '>', '&', '"', "'", '\r', '\n', '\r\n', '\t', ' ', ']]>', ';', '#', 'é', '写', '😀', '\u2028', '\u0085'),
  fc.integer({ min: 0x20, max: 0xd7ff }).map((c) => String.fromCharCode(c)),
  fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
);
const text = fc.string({ unit: char, maxLength: 40 });
const key = text.filter((k) => k !== '__proto__');
const number = fc.oneof(
  fc.integer(),
  fc.maxSafeInteger(),
  // Integral doubles from 1e21 up are written as "1e+21" inside <integer>, which the plist package
  // misreads too; -0 is written as "0".
  fc.double().filter((x) => !Object.is(x, -0) && !(Number.isInteger(x) && Math.abs(x) >= 1e21)),
);
// <date> has whole seconds (the builder drops milliseconds) and four-digit years.
const date = fc
  .date({ min: new Date('0000-01-01T00:00:00Z'), max: new Date('9999-12-31T23:59:59Z'), noInvalidDate: true })
  .map((d) => new Date(Math.floor(d.getTime() / 1000) * 1000));
const { value } = fc.letrec<{ value: PlistValue }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    text,
    number,
    fc.boolean(),
    date,
    fc.uint8Array({ maxLength: 64 }),
    fc.array(tie('value'), { maxLength: 5 }),
    // fast-check's dictionaries have no prototype; parsed dicts are plain objects.
    fc.dictionary(key, tie('value'), { maxKeys: 5 }).map((d) => ({ ...d }) as PlistValue),
  ),
}));

describe('plist parser properties', () => {
  it("parse(build(v)) equals v and the plist package's parse of the same text", () => {
    fc.assert(
      fc.property(value, (v) => {
        const xml = buildPlist(v);
        const parsed = parsePlist(xml);
        expect(parsed).toStrictEqual(v);
        // xmldom reads U+2028 and U+0085 as line ends (XML 1.1); XML 1.0, and so Apple, keeps them.
        const text = xml.toString('utf8');
        if (!/[\u2028\u0085]/.test(text)) expect(parsed).toStrictEqual(packageParse(text));
      }),
      { numRuns: 1500 },
    );
  });
});

// Every refusal is one of these shapes: a kind of problem and a position, or a fixed sentence.
const REFUSAL = new RegExp(
  [
    /^malformed plist: [a-zA-Z0-9 <>/_"-]+ at line \d+, col \d+$/,
    /^only Apple's plist DOCTYPE is accepted \(found a custom DTD at line \d+, col \d+\)$/,
    /^XML entity declarations are not accepted \(at line \d+, col \d+\)$/,
    /^(empty body|binary plist not accepted; send XML|body is not valid UTF-8|body is not an XML plist)$/,
  ]
    .map((r) => r.source)
    .join('|'),
);

const MUTATIONS = [
  '<',
  '>',
  '</',
  '/>',
  '&',
  '&amp;',
  '&#',
  '&#x;',
  ';',
  '<![CDATA[',
  ']]>',
  '<!--',
  '-->',
  '<?',
  '?>',
  '<!DOCTYPE',
  '<!ENTITY',
  '"',
  '=',
  '<dict>',
  '</dict>',
  '<array>',
  '</array>',
  '<key>',
  '</key>',
  '<string>',
  '</string>',
  '<data>',
  '</data>',
  '<date>',
  '</date>',
  '<integer>',
  '</integer>',
  '<real>',
  '<true/>',
  '<false/>',
  '<plist>',
  '</plist>',
  '\u0000',
  '\r',
  '\uFEFF',
  'é',
  '\uD800',
  '__proto__',
  '999999999999999999999',
  '-',
  '.',
  'e',
  'Z',
];

type Op = { kind: 'insert' | 'delete' | 'replace' | 'truncate' | 'byte' | 'dup'; at: number; len: number; piece: number; byte: number };
const op: fc.Arbitrary<Op> = fc.record({
  kind: fc.constantFrom('insert', 'delete', 'replace', 'truncate', 'byte', 'dup'),
  at: fc.nat(),
  len: fc.nat({ max: 64 }),
  piece: fc.nat({ max: MUTATIONS.length - 1 }),
  byte: fc.nat({ max: 255 }),
});

function mutate(src: Buffer, ops: Op[]): Buffer {
  let b = src;
  for (const o of ops) {
    const at = b.length === 0 ? 0 : o.at % (b.length + 1);
    const piece = Buffer.from(MUTATIONS[o.piece]!);
    switch (o.kind) {
      case 'insert':
        b = Buffer.concat([b.subarray(0, at), piece, b.subarray(at)]);
        break;
      case 'delete':
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + o.len + 1)]);
        break;
      case 'replace':
        b = Buffer.concat([b.subarray(0, at), piece, b.subarray(at + o.len)]);
        break;
      case 'truncate':
        b = b.subarray(0, at);
        break;
      case 'byte':
        b = Buffer.from(b);
        if (at < b.length) b[at] = o.byte;
        break;
      case 'dup':
        b = Buffer.concat([b.subarray(0, at + o.len), b.subarray(at, at + o.len), b.subarray(at + o.len)]);
        break;
    }
  }
  return b;
}

const input = fc.oneof(
  // The real captures, mutated.
  fc.tuple(fc.nat({ max: captures.length - 1 }), fc.array(op, { minLength: 1, maxLength: 4 })).map(([i, ops]) => mutate(captures[i]!, ops)),
  // Generated plists, mutated (or not: the comparison with the plist package needs accepted ones too).
  fc.tuple(value, fc.array(op, { maxLength: 3 })).map(([v, ops]) => mutate(buildPlist(v), ops)),
  // Random token soup.
  fc.array(fc.oneof(fc.constantFrom(...MUTATIONS), text), { maxLength: 30 }).map((parts) => Buffer.from(parts.join(''))),
);

describe('plist parser fuzz', () => {
  it('10,000 random and mutated inputs: a value, or a ProtocolError(400) naming only kind and position', () => {
    const outcomes = new Map<string, number>();
    const tally = (k: string) => outcomes.set(k, (outcomes.get(k) ?? 0) + 1);
    let agreed = 0;
    fc.assert(
      fc.property(input, (body) => {
        let parsed: PlistValue;
        try {
          parsed = parsePlist(body);
        } catch (err) {
          expect(err).toBeInstanceOf(ProtocolError);
          const e = err as ProtocolError;
          expect(e.status).toBe(400);
          expect(e.message).toMatch(REFUSAL);
          tally(e.message.replace(/ \((found a custom DTD )?at line \d+, col \d+\)$| at line \d+, col \d+$/, ''));
          return;
        }
        tally('accepted');
        // What both parsers accept, they must read alike (the plist package is laxer in places
        // that devices never use: text after numbers, lenient dates; those it accepts alone).
        let theirs: PlistValue;
        const text = body.toString('utf8');
        if (/[\u2028\u0085]/.test(text)) return; // see above: xmldom's XML 1.1 line ends
        try {
          theirs = packageStrict(text);
        } catch {
          return;
        }
        expect(parsed).toStrictEqual(theirs);
        agreed++;
      }),
      { numRuns: 10_000, seed: 11 },
    );
    const total = [...outcomes.values()].reduce((a, b) => a + b, 0);
    expect(total).toBe(10_000);
    // Both outcomes are exercised, not just refusals.
    expect(outcomes.get('accepted') ?? 0).toBeGreaterThan(500);
    console.log(
      `plist fuzz: ${total} inputs; ${agreed} accepted by both parsers and equal; outcomes:\n${[...outcomes]
        .sort((a, b) => b[1] - a[1])
        .map(([k, n]) => `  ${n}\t${k}`)
        .join('\n')}`,
    );
  });
});
