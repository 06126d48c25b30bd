/**
 * Reading profiles as macOS does: encodings, binary plists (made by python3's plistlib, a peer
 * nobody here wrote), signed profiles (openssl), and refusing what CoreFoundation refuses.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as asn1js from 'asn1js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BplistError, parseBinaryPlist } from '../../src/gitops/bplist.js';
import { loadFleet } from '../../src/gitops/load.js';
import { MobileconfigError, profileText, readProfile } from '../../src/gitops/mobileconfig.js';
import { opensslPki } from '../helpers/openssl.js';
import { blueprint, makeRepo } from './repo.js';

const dir = mkdtempSync(join(tmpdir(), 'orchard-mcread-'));
const pki = opensslPki('Profile Signer CA');
const signer = pki.issue('Profile Signer');

/** `openssl smime -sign` with the content attached, DER: how admins sign profiles outside Apple's tools. */
function sign(content: Buffer, stream = false): Buffer {
  const inFile = join(dir, `in-${Math.random().toString(36).slice(2)}`);
  writeFileSync(inFile, content);
  return execFileSync(
    'openssl',
    ['smime', '-sign', '-binary', '-nodetach', '-in', inFile, '-signer', signer.cert, '-inkey', signer.key, '-outform', 'DER', ...(stream ? ['-stream'] : [])],
    { maxBuffer: 64 << 20 },
  );
}

/** Run python3 with `code`, which reads JSON args from stdin; returns its stdout bytes. */
function python(code: string, args: unknown = null): Buffer {
  return execFileSync('python3', ['-c', code], { input: JSON.stringify(args), maxBuffer: 64 << 20 });
}

const XML = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>PayloadContent</key>
  <array>
    <dict>
      <key>PayloadType</key><string>com.apple.dock</string>
      <key>PayloadIdentifier</key><string>com.example.dock.payload</string>
      <key>PayloadUUID</key><string>5C3E7C2B-7B55-4B4B-8B9E-0C1D2E3F4A5B</string>
      <key>PayloadVersion</key><integer>1</integer>
      <key>autohide</key><true/>
      <key>tilesize</key><integer>48</integer>
    </dict>
  </array>
  <key>PayloadDisplayName</key><string>Dock – Größe</string>
  <key>PayloadIdentifier</key><string>com.example.dock</string>
  <key>PayloadType</key><string>Configuration</string>
  <key>PayloadUUID</key><string>0B8A7C6D-5E4F-4A3B-9C2D-1E0F9A8B7C6D</string>
  <key>PayloadVersion</key><integer>1</integer>
  <key>ConsentText</key><dict><key>default</key><string>Fish &amp; chips</string></dict>
  <key>RemovalDate</key><date>2027-01-02T03:04:05Z</date>
  <key>Blob</key><data>AAEC/w==</data>
</dict>
</plist>
`;
const EXPECTED = readProfile(Buffer.from(XML)).profile;

/** The profile written by plistlib as a binary plist. */
function binaryOf(xml: string): Buffer {
  return execFileSync(
    'python3',
    ['-c', 'import plistlib,sys; sys.stdout.buffer.write(plistlib.dumps(plistlib.loads(sys.stdin.buffer.read()), fmt=plistlib.FMT_BINARY))'],
    { input: xml },
  );
}

const utf16 = (s: string, le: boolean) => {
  const b = Buffer.from(s, 'utf16le');
  if (!le) b.swap16();
  return Buffer.concat([Buffer.from(le ? [0xff, 0xfe] : [0xfe, 0xff]), b]);
};

const variantsOf = (xml: string): [string, Buffer][] => [
  ['whitespace before <?xml', Buffer.from(`\n \t\r\n${xml}`)],
  ['NUL bytes after </plist>', Buffer.concat([Buffer.from(xml), Buffer.alloc(37)])],
  ['a second document after </plist>', Buffer.from(`${xml}<plist><dict></dict></plist> trailing`)],
  ['a UTF-8 BOM', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(xml)])],
  ['UTF-16LE with BOM', utf16(xml.replace('UTF-8', 'UTF-16'), true)],
  ['UTF-16BE with BOM', utf16(xml.replace('UTF-8', 'UTF-16'), false)],
  ['ISO-8859-1 as declared', Buffer.from(xml.replace('UTF-8', 'ISO-8859-1').replace('–', '&#8211;'), 'latin1')],
  ['a root <dict> without <plist>', Buffer.from(xml.replace('<plist version="1.0">\n', '').replace('</plist>\n', '\n\0'))],
  ['a binary plist (plistlib)', binaryOf(xml)],
];

describe('files macOS reads', () => {
  const variants = variantsOf(XML);
  for (const [name, bytes] of variants) {
    it(`${name}: plain and signed, the same profile`, () => {
      const plain = readProfile(bytes);
      expect(plain.profile).toEqual(EXPECTED);
      expect(plain.signed).toBe(false);
      const signed = readProfile(sign(bytes));
      expect(signed.profile).toEqual(EXPECTED);
      expect(signed).toMatchObject({ signed: true, format: name.startsWith('a binary') ? 'binary' : 'xml' });
    });
  }

  it('profileText: the XML as the parser reads it (decoded, up to the root end), for positions; none for binary', () => {
    for (const [name, bytes] of variants) {
      const text = profileText(bytes);
      if (name.startsWith('a binary')) expect(text).toBeUndefined();
      else {
        if (name.startsWith('a root <dict>')) expect(text).toMatch(/\.dtd">\n<plist><dict>\n[^]*<\/dict><\/plist>$/);
        else expect(text!.trimStart().replace('UTF-16', 'UTF-8').replace('ISO-8859-1', 'UTF-8').replace('&#8211;', '–'), name).toBe(XML.trimEnd());
        expect(profileText(sign(bytes))).toBe(text);
      }
    }
  });

  it('a BER-streamed signature (openssl -stream) of a 3 MB profile', () => {
    const big = XML.replace('AAEC/w==', Buffer.alloc(3 << 20, 7).toString('base64'));
    expect(readProfile(sign(Buffer.from(big), true)).profile.Blob).toHaveLength(3 << 20);
  });

  it('the loader reads every form: a fleet of them is valid', async () => {
    const files: Record<string, string | Buffer> = {
      'blueprints/all.yaml': blueprint(
        'all',
        '    platforms: [macOS]',
        variants.map((_, i) => `p${i}`),
      ),
    };
    variants.forEach(([name], i) => {
      // Each its own identifier: one identifier for the same devices would be a conflict.
      const bytes = variantsOf(XML.replace('>com.example.dock<', `>com.example.dock${i}<`)).find(([n]) => n === name)![1];
      files[`files/p${i}.mobileconfig`] = i % 2 ? sign(bytes) : bytes;
      files[`profiles/p${i}.yaml`] = `apiVersion: orchard/v1\nkind: Profile\nmetadata: {name: p${i}}\nspec:\n  file: ../files/p${i}.mobileconfig\n`;
    });
    const r = await loadFleet(makeRepo(files));
    expect(r.diagnostics.filter((d) => d.severity === 'error').map((d) => `${d.file}: ${d.message}`)).toEqual([]);
    expect(r.fleet!.profiles.get('p7')!.identifier).toBe('com.example.dock7');
  });
});

describe('files macOS refuses', () => {
  it('an unescaped & in a string, plain and signed', () => {
    const bad = Buffer.from(XML.replace('Fish &amp; chips', 'Fish & chips'));
    expect(() => readProfile(bad)).toThrow(/malformed entity reference at line 21/);
    expect(() => readProfile(sign(bad))).toThrow(/malformed entity reference at line 21/);
  });

  it('UTF-16 without a byte order mark, and encodings Orchard does not read, with a reason', () => {
    expect(() => readProfile(utf16(XML, true).subarray(2))).toThrow(/without a byte order mark/);
    expect(() => readProfile(Buffer.from(XML.replace('UTF-8', 'Shift_JIS')))).toThrow(/declares encoding "shift_jis"/);
    expect(() => readProfile(Buffer.from(XML.replace('UTF-8', 'UTF-16')))).toThrow(/declares utf-16 but has no byte order mark/);
    expect(() => readProfile(Buffer.concat([Buffer.from(XML), Buffer.from([0xff])]).subarray(0, XML.length - 20))).toThrow(MobileconfigError);
  });

  it('a binary plist with a bad offset or a cycle, with a clear error', () => {
    const bin = binaryOf(XML);
    const t = bin.length - 32;
    const badTable = Buffer.from(bin);
    badTable.writeBigUInt64BE(BigInt(bin.length), t + 24);
    expect(() => readProfile(badTable)).toThrow(/binary plist: trailer: offset table at \d+ is outside the file/);
    expect(() => readProfile(cyclic())).toThrow(/binary plist: array at 54 contains itself \(a reference cycle\)/);
    expect(() => readProfile(sign(cyclic()))).toThrow(/contains itself/);
  });
});

describe('a SignedData that is not what a signed profile is', () => {
  const oid = new asn1js.ObjectIdentifier({ value: '1.2.840.113549.1.7.2' });
  const der = (b: asn1js.AsnType) => Buffer.from(b.toBER());
  const ctx0 = (value: asn1js.AsnType[]) => new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber: 0 }, value });
  const cases: [string, Buffer, RegExp][] = [
    // ContentInfo [0] primitive: the content is not a constructed element (was a TypeError).
    [
      'content [0] primitive',
      der(new asn1js.Sequence({ value: [oid, new asn1js.Primitive({ idBlock: { tagClass: 3, tagNumber: 0 }, valueHex: new Uint8Array([1, 2, 3]).buffer })] })),
      /ContentInfo content is not a constructed element/,
    ],
    ['SignedData an INTEGER', der(new asn1js.Sequence({ value: [oid, ctx0([new asn1js.Integer({ value: 3 })])] })), /SignedData is not a SEQUENCE/],
    [
      'encapContentInfo primitive',
      der(
        new asn1js.Sequence({
          value: [oid, ctx0([new asn1js.Sequence({ value: [new asn1js.Integer({ value: 1 }), new asn1js.Set(), new asn1js.Integer({ value: 1 })] })])],
        }),
      ),
      /encapContentInfo is not a constructed element/,
    ],
  ];
  for (const [name, bytes, message] of cases) {
    it(`${name}: a MobileconfigError naming it`, () => {
      let thrown: unknown;
      try {
        readProfile(bytes);
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(MobileconfigError);
      expect((thrown as Error).message).toMatch(message);
    });
  }

  it('eContent patched into a primitive [0] in real openssl output: refused, and the other profiles are still checked', async () => {
    const signed = sign(Buffer.from(XML));
    // openssl writes eContent as A0 82 LL LL 04 82 ...: make the [0] primitive (80).
    const at = signed.indexOf(Buffer.from([0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01])) + 11;
    expect(signed[at]).toBe(0xa0);
    const patched = Buffer.from(signed);
    patched[at] = 0x80;
    expect(() => readProfile(patched)).toThrow(MobileconfigError);
    const r = await loadFleet(
      makeRepo({
        'a.yaml': 'apiVersion: orchard/v1\nkind: Profile\nmetadata: {name: a}\nspec:\n  file: a.mobileconfig\n',
        'a.mobileconfig': patched,
        'b.yaml': 'apiVersion: orchard/v1\nkind: Profile\nmetadata: {name: b}\nspec:\n  file: b.mobileconfig\n',
        'b.mobileconfig': Buffer.from(XML.replace('Fish &amp;', 'Fish &')),
      }),
    );
    const errs = r.diagnostics.filter((d) => d.severity === 'error');
    expect(errs.find((d) => d.file === 'a.yaml')!.message).toMatch(/"a.mobileconfig" is not a usable profile: eContent .*not a|could not be parsed|is not/);
    expect(errs.find((d) => d.file === 'a.yaml')!.message).not.toMatch(/TypeError|Cannot read/);
    expect(errs.find((d) => d.file === 'b.yaml')!.message).toMatch(/malformed entity reference/);
  });
});

// ---- the binary plist reader ----

/** A hand-made bplist00: objects as given (raw bytes each), 1-byte refs, offsets as small as they fit. */
function bplist(objects: (number[] | Buffer)[], top = 0): Buffer {
  const parts: Buffer[] = [Buffer.from('bplist00')];
  const offsets: number[] = [];
  let at = 8;
  for (const o of objects) {
    offsets.push(at);
    parts.push(Buffer.from(o));
    at += o.length;
  }
  const size = at < 0x100 ? 1 : at < 0x10000 ? 2 : 4;
  const offsetTable = Buffer.alloc(offsets.length * size);
  offsets.forEach((o, i) => offsetTable.writeUIntBE(o, i * size, size));
  const trailer = Buffer.alloc(32);
  trailer[6] = size;
  trailer[7] = 1;
  trailer.writeBigUInt64BE(BigInt(objects.length), 8);
  trailer.writeBigUInt64BE(BigInt(top), 16);
  trailer.writeBigUInt64BE(BigInt(at), 24);
  return Buffer.concat([...parts, offsetTable, trailer]);
}
/** A profile dict whose PayloadContent array holds itself. */
function cyclic(): Buffer {
  // 0: dict {1: 2, 3: 4}; 1 "PayloadType"; 2 "Configuration"; 3 "PayloadContent"; 4 array [4]
  return bplist([
    [0xd2, 1, 3, 2, 4],
    [0x5b, ...Buffer.from('PayloadType')],
    [0x5d, ...Buffer.from('Configuration')],
    [0x5e, ...Buffer.from('PayloadContent')],
    [0xa1, 4],
  ]).subarray(0) as Buffer;
}

describe('parseBinaryPlist', () => {
  it('round trip: values written by plistlib read back equal, every type and size class', () => {
    // Python writes the plist and, beside it, the values as tagged JSON, read back here.
    const out = python(`import plistlib, sys, json, datetime, base64
v = {
  'ints': [0, 1, 255, 256, 65535, 65536, 2**31, 2**32 - 1, 2**32, -1, -2**63, 2**53 - 1, 2**63 - 1, 2**64 - 1],
  'reals': [0.0, -1.5, 1e300, 3.141592653589793],
  'date': datetime.datetime(2026, 12, 1, 23, 59, 58),
  'old': datetime.datetime(1999, 1, 1, 0, 0, 0),
  'data': b'\\x00\\x01\\xfe\\xff' * 10,
  'empty': b'',
  'ascii': 'x' * 14, 'ascii15': 'y' * 15, 'long': 'z' * 70000,
  'unicode': 'Grüße – 日本 😀', 'unicodeLong': 'é' * 300,
  'bools': [True, False], 'nested': {'a': [{'b': []}, {}]},
  'uid': plistlib.UID(7),
  'many': [str(i) for i in range(300)],
}
b = plistlib.dumps(v, fmt=plistlib.FMT_BINARY)
sys.stdout.write(json.dumps({'bplist': base64.b64encode(b).decode()}))`);
    const bytes = Buffer.from(JSON.parse(out.toString()).bplist, 'base64');
    const v = parseBinaryPlist(bytes) as Record<string, unknown>;
    expect(v.ints).toEqual([0, 1, 255, 256, 65535, 65536, 2 ** 31, 2 ** 32 - 1, 2 ** 32, -1, -(2 ** 63), 2 ** 53 - 1, 2 ** 63 - 1, 2 ** 64 - 1]);
    expect(v.reals).toEqual([0, -1.5, 1e300, Math.PI]);
    expect(v.date).toEqual(new Date('2026-12-01T23:59:58Z'));
    expect(v.old).toEqual(new Date('1999-01-01T00:00:00Z'));
    expect(Buffer.from(v.data as Uint8Array)).toEqual(Buffer.from('0001feff'.repeat(10), 'hex'));
    expect(v.empty).toEqual(new Uint8Array(0));
    expect([v.ascii, v.ascii15, (v.long as string).length]).toEqual(['x'.repeat(14), 'y'.repeat(15), 70000]);
    expect([v.unicode, v.unicodeLong]).toEqual(['Grüße – 日本 😀', 'é'.repeat(300)]);
    expect(v.bools).toEqual([true, false]);
    expect(v.nested).toEqual({ a: [{ b: [] }, {}] });
    expect(v.uid).toEqual({ CF$UID: 7 });
    expect(v.many).toEqual(Array.from({ length: 300 }, (_, i) => String(i)));
  });

  it('null is read, or refused for profiles', () => {
    expect(parseBinaryPlist(bplist([[0xa1, 1], [0x00]]))).toEqual([null]);
    expect(() => parseBinaryPlist(bplist([[0xa1, 1], [0x00]]), { allowNull: false })).toThrow(/null object at 10/);
  });

  it('refuses out-of-range references, offsets, counts, markers, sets, non-ASCII ASCII strings, non-string keys', () => {
    const cases: [number[][], RegExp][] = [
      [[[0xa1, 5]], /reference at 9 names object 5, but there are 1/],
      [[[0xa2, 0, 0]], /array at 8 contains itself/],
      [[[0x5f, 0x10, 0xff]], /ASCII string at 11: 255 bytes run past the object area/],
      [[[0x4f, 0x13, 0, 0, 0, 0, 0, 0, 0, 9]], /data at 18: 9 bytes run past/],
      [[[0x4f, 0x50, 1]], /its count is not an integer/],
      [[[0x14, 0, 0]], /integer at 9: 16 bytes run past/],
      [[[0x15, 0, 0]], /integer of 32 bytes/],
      [[[0x24, 0, 0]], /real of 16 bytes/],
      [[[0x70]], /unknown object marker 0x70/],
      [[[0x0c]], /unknown object marker 0x0c/],
      [[[0xc1, 0]], /set at 8/],
      [[[0x51, 0xe9]], /holds a byte above 0x7F/],
      [
        [
          [0xd1, 1, 1],
          [0x10, 1],
        ],
        /dict at 8: key 0 is not a string/,
      ],
      [[[0xd1, 1, 2], [0x59, ...Buffer.from('__proto__')], [0xd0]], /dict at 8: forbidden key __proto__/],
    ];
    for (const [objects, message] of cases) expect(() => parseBinaryPlist(bplist(objects)), message.source).toThrow(message);
    const ok = bplist([[0x10, 1]]);
    const bad = (f: (b: Buffer, t: number) => void) => {
      const b = Buffer.from(ok);
      f(b, b.length - 32);
      return () => parseBinaryPlist(b);
    };
    expect(bad((b, t) => (b[t + 6] = 0))).toThrow(/offset size 0 is not 1 to 8/);
    expect(bad((b, t) => (b[t + 7] = 9))).toThrow(/reference size 9/);
    expect(bad((b, t) => b.writeBigUInt64BE(0n, t + 8))).toThrow(/no objects/);
    expect(bad((b, t) => b.writeBigUInt64BE(1n, t + 16))).toThrow(/top object 1 is not below/);
    expect(bad((b, t) => b.writeBigUInt64BE(2n ** 60n, t + 8))).toThrow(/do not fit/);
    expect(bad((b, t) => (b[t - 1] = 3))).toThrow(/offset 3 is outside the object area/);
    // As CoreFoundation: 1-byte references name at most 255 objects (CFBinaryPList.c compares with <=).
    expect(() => parseBinaryPlist(bplist(Array.from({ length: 256 }, () => [0x09])))).toThrow(/1-byte references cannot name 256 objects/);
    expect(parseBinaryPlist(bplist(Array.from({ length: 255 }, () => [0x09])))).toBe(true);
    expect(bad((b) => b.write('bplist15', 0, 'latin1'))).toThrow(/version "15" is not supported/);
    expect(() => parseBinaryPlist(Buffer.from('bplist00'))).toThrow(/too short/);
  });

  it('bounds shared objects, depth and bytes (a DAG of 40 levels would be 2^40 values)', () => {
    // Object i is an array holding object i+1 twice; the last is an empty array.
    const levels = 40;
    const dag = bplist([...Array.from({ length: levels }, (_, i) => [0xa2, i + 1, i + 1]), [0xa0]]);
    expect(() => parseBinaryPlist(dag)).toThrow(/more than 1000000 values \(shared objects count each time/);
    expect(() => parseBinaryPlist(dag, { maxValues: 100_000 })).toThrow(/more than 100000 values \(shared objects count each time/);
    const deep = bplist([...Array.from({ length: 200 }, (_, i) => [0xa1, i + 1]), [0xa0]]);
    expect(() => parseBinaryPlist(deep)).toThrow(/deeper than 128 levels/);
    expect(() => parseBinaryPlist(deep, { maxDepth: 300 })).not.toThrow();
    // 300 references to one 1 MiB string: 300 MiB of text from a 1 MiB file.
    const wide = bplist([
      [0xaf, 0x11, 0x01, 0x2c, ...Array(300).fill(1)],
      Buffer.concat([Buffer.from([0x4f, 0x12, 0x00, 0x10, 0x00, 0x00]), Buffer.alloc(1 << 20)]),
    ]);
    expect(() => parseBinaryPlist(wide)).toThrow(/more than 67108864 bytes of strings and data/);
  });

  it('fuzz: 3,000 mutated plistlib files and hand-made ones give a value or a BplistError, never another exception', () => {
    const seeds = [
      binaryOf(XML),
      bplist([
        [0xa2, 1, 2],
        [0x5f, 0x10, 3, 0x61, 0x62, 0x63],
        [0x23, 0, 0, 0, 0, 0, 0, 0, 0],
      ]),
      cyclic(),
    ];
    const mutation = fc.record({
      seed: fc.nat(seeds.length - 1),
      edits: fc.array(fc.tuple(fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 8 }),
      trailer: fc.option(fc.tuple(fc.nat(31), fc.nat(255))),
      cut: fc.option(fc.nat()),
    });
    const outcomes = { value: 0, error: 0 };
    fc.assert(
      fc.property(mutation, ({ seed, edits, trailer, cut }) => {
        let b = Buffer.from(seeds[seed]!);
        for (const [at, v] of edits) b[8 + (at % (b.length - 8))] = v;
        if (trailer) b[b.length - 32 + trailer[0]] = trailer[1];
        if (cut !== null) b = b.subarray(0, cut % b.length);
        try {
          parseBinaryPlist(b);
          outcomes.value++;
        } catch (err) {
          if (!(err instanceof BplistError)) throw err;
          outcomes.error++;
        }
        try {
          readProfile(b);
        } catch (err) {
          if (!(err instanceof MobileconfigError)) throw err;
        }
      }),
      { numRuns: 3000, seed: 20261202 },
    );
    expect(outcomes.value).toBeGreaterThan(0);
    expect(outcomes.error).toBeGreaterThan(0);
  });

  it('fuzz: 1,000 mutated signed profiles (XML and binary inside) give a profile or a MobileconfigError', () => {
    const seeds = [sign(Buffer.from(XML)), sign(binaryOf(XML))];
    const outcomes = { profile: 0, error: 0 };
    fc.assert(
      fc.property(
        fc.nat(seeds.length - 1),
        fc.array(fc.tuple(fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 4 }),
        fc.option(fc.nat()),
        (seed, edits, cut) => {
          let b = Buffer.from(seeds[seed]!);
          for (const [at, v] of edits) b[at % b.length] = v;
          if (cut !== null) b = b.subarray(0, cut % b.length);
          try {
            readProfile(b);
            outcomes.profile++;
          } catch (err) {
            if (!(err instanceof MobileconfigError)) throw err;
            outcomes.error++;
          }
        },
      ),
      { numRuns: 1000, seed: 20261203 },
    );
    expect(outcomes.profile).toBeGreaterThan(0);
    expect(outcomes.error).toBeGreaterThan(0);
  });
});
