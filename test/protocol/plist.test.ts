import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../../src/protocol/errors.js';
import { decodeCheckin, decodeReport, messageKind } from '../../src/protocol/messages.js';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as packageParse } from 'plist';
import { buildPlist, DEVICE_LIMITS, parsePlist, parsePlistDict, TRUSTED_LIMITS } from '../../src/protocol/plist.js';
import { toJson } from '../../src/protocol/json.js';
import { installedApplicationListReport } from '../../src/sim/app-list.js';
import { buildCommand, fromJson, validateCommand } from '../../src/protocol/commands.js';
import { thrown } from '../helpers/thrown.js';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

const refusal = (fn: () => unknown): ProtocolError => thrown(ProtocolError, fn);
const VECTORS = join(import.meta.dirname, '../fixtures/vectors/nanomdm');
const captures = readdirSync(VECTORS)
  .filter((f) => f.endsWith('.plist'))
  .map((f) => readFileSync(join(VECTORS, f)));
const HEAD =
  '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n<plist version="1.0">\n';
const doc = (inner: string) => `${HEAD}${inner}\n</plist>\n`;
const dict = (inner: string) => doc(`<dict>${inner}</dict>`);

describe('plist parsing', () => {
  it('round-trips data, dates, numbers and nesting', () => {
    const value = { a: new Uint8Array([0, 1, 255]), d: new Date('2026-01-02T03:04:05Z'), n: 42, r: 1.5, t: true, arr: ['x', { y: 'z' }] };
    expect(parsePlistDict(buildPlist(value))).toEqual(value);
  });

  it('names the line and column of malformed XML', () => {
    const e = refusal(() => parsePlistDict('<?xml version="1.0"?>\n<plist>\n<dict><key>a</key><string>b</dict></plist>'));
    expect(e.status).toBe(400);
    expect(e.message).toMatch(/line \d+, col \d+/);
  });

  it("refuses custom DTDs and entities but accepts Apple's DOCTYPE", () => {
    expect(refusal(() => parsePlistDict('<!DOCTYPE plist [<!ENTITY x "y">]><plist><dict/></plist>')).message).toMatch(/DOCTYPE/);
    expect(refusal(() => parsePlistDict('<plist><dict><key>a</key><string>&x;</string></dict></plist>')).message).toMatch(
      /undefined XML entity at line 1, col 34/,
    );
    expect(
      parsePlistDict(
        '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n<plist version="1.0"><dict><key>a</key><string>&amp;&#65;</string></dict></plist>',
      ),
    ).toEqual({ a: '&A' });
  });

  it('refuses non-dict roots, binary plists and empty bodies', () => {
    expect(refusal(() => parsePlistDict(buildPlist(['a']))).message).toMatch(/an array, expected a dict/);
    expect(refusal(() => parsePlistDict(Buffer.from('bplist00xxxx'))).message).toMatch(/binary/);
    expect(refusal(() => parsePlistDict(Buffer.alloc(0))).message).toMatch(/empty/);
  });
});

describe('plist parsing: the same values as the plist package', () => {
  it('parses every real device capture exactly as the plist package does', () => {
    for (const c of captures) expect(parsePlist(c)).toStrictEqual(packageParse(c.toString('utf8')));
  });

  it("parses a Mac's 2,000-app InstalledApplicationList exactly as the plist package does", () => {
    const body = buildPlist(installedApplicationListReport(2000));
    const parsed = parsePlistDict(body);
    expect((parsed.InstalledApplicationList as unknown[]).length).toBe(2000);
    expect(parsed).toStrictEqual(packageParse(body.toString('utf8')));
  });

  it('reads what devices write: empty forms, whitespace in data, entities, CDATA, comments, line ends, a BOM', () => {
    const text =
      '\uFEFF' +
      dict(
        [
          '<key>s</key><string/>',
          '<key>s2</key><string></string>',
          '<key>k</key><string>a &lt;&gt;&amp;&quot;&apos; &#65;&#x42;&#x1F600;</string>',
          '<key>d</key><data>\n\tAAEC\n\t/w==\n\t</data>',
          '<key>d0</key><data/>',
          '<key>t</key><true/>',
          '<key>f</key><false></false>',
          '<key>i</key><integer> -42 </integer>',
          '<key>big</key><integer>12345678901234567890</integer>',
          '<key>r</key><real>1.5e3</real>',
          '<key>date</key><date>2026-01-02T03:04:05Z</date>',
          '<key>c</key><string>x<![CDATA[<y>&amp;]]>z</string>',
          '<!-- a comment --><key>crlf</key><string>a\r\nb\rc&#13;</string>',
          '<key/><string>empty key</string>',
          '<key>a</key><array/>',
          '<key>e</key><dict/>',
        ].join('\n'),
      );
    const v = parsePlistDict(text);
    expect(v).toStrictEqual(packageParse(text.slice(1)));
    expect(v).toStrictEqual({
      s: '',
      s2: '',
      k: 'a <>&"\' AB\u{1F600}',
      d: new Uint8Array([0, 1, 2, 255]),
      d0: new Uint8Array(0),
      t: true,
      f: false,
      i: -42,
      big: 12345678901234567000,
      r: 1500,
      date: new Date('2026-01-02T03:04:05Z'),
      c: 'x<y>&amp;z',
      crlf: 'a\nb\nc\r',
      '': 'empty key',
      a: [],
      e: {},
    });
    expect(v.d).toBeInstanceOf(Uint8Array);
  });
});

describe('plist parsing: refusals name the kind of problem and line:col, never the content', () => {
  const MARK = 'SECRETPUSHMAGIC';
  const cases: [string, string, RegExp][] = [
    ['an undefined entity', dict(`<key>PushMagic</key><string>&${MARK};</string>`), /undefined XML entity at line 4, col 35/],
    ['a mismatched closing tag', dict(`<key>PushMagic</key><string>${MARK}</${MARK}>`), /closing tag does not match <string> at line \d+, col \d+/],
    ['an unknown element', dict(`<key>Token</key><${MARK}/>`), /unknown element at line 4, col 23/],
    ['text between elements', dict(`<key>Token</key>${MARK}<string/>`), /text between elements at line 4, col 23/],
    ['a bad integer', dict(`<key>n</key><integer>${MARK}</integer>`), /invalid <integer> at line 4, col 19/],
    ['a bad character reference', dict(`<key>n</key><string>&#x${MARK};</string>`), /malformed character reference/],
    ['a bad base64', dict(`<key>Token</key><data>${MARK}!</data>`), /invalid base64 in <data>/],
    ['an unclosed string', `${HEAD}<dict><key>PushMagic</key><string>${MARK}`, /unclosed <string> at line 4, col 27/],
    ['a malformed attribute', doc(`<dict ${MARK}></dict>`), /malformed attribute at line 4, col 7/],
    [
      'a custom DTD',
      `<!DOCTYPE plist [<!ENTITY ${MARK} "x">]><plist><dict/></plist>`,
      /only Apple's plist DOCTYPE is accepted \(found a custom DTD at line 1, col 1\)/,
    ],
    ['an entity declaration', `<plist><!ENTITY ${MARK} "x"><dict/></plist>`, /XML entity declarations are not accepted \(at line 1, col 8\)/],
    ['an invalid date', dict(`<key>At</key><date>${MARK}</date>`), /invalid <date> at line 4, col 20/],
  ];
  for (const [name, text, message] of cases) {
    it(name, () => {
      const e = refusal(() => parsePlistDict(text));
      expect(e.status).toBe(400);
      expect(e.message).toMatch(message);
      expect(e.message).not.toContain(MARK);
      expect(e.message.toLowerCase()).not.toContain(MARK.toLowerCase().slice(0, 6));
    });
  }

  it('refuses invalid dates in every report that carries them, with their position (issue 11.5)', () => {
    for (const [key, inner] of [
      ['QueryResponses', '<dict><key>LastCloudBackupDate</key><date>not-a-date</date></dict>'],
      ['ProfileList', '<array><dict><key>InstallDate</key><date>not-a-date</date></dict></array>'],
      ['SecurityInfo', '<dict><key>FDE_Since</key><date>2026-02-30T00:00:00Z</date></dict>'],
      ['CertificateList', '<array><dict><key>NotAfter</key><date>2026-13-01T00:00:00Z</date></dict></array>'],
      ['InstalledApplicationList', '<array><dict><key>InstallDate</key><date></date></dict></array>'],
    ]) {
      const e = refusal(() => parsePlistDict(dict(`<key>Status</key><string>Acknowledged</string><key>${key}</key>${inner}`)));
      expect(e.message).toMatch(/^malformed plist: invalid <date> at line 4, col \d+$/);
    }
  });

  it('bounds nesting at parse time: 8,000 levels are a 400, 64 are fine', () => {
    const deep = (n: number) => doc(`<dict><key>a</key>${'<array>'.repeat(n)}${'</array>'.repeat(n)}</dict>`);
    expect(refusal(() => parsePlistDict(deep(8000))).message).toMatch(/nesting deeper than 64 at line 4, col \d+/);
    expect(refusal(() => parsePlistDict(deep(64))).message).toMatch(/nesting deeper than 64/);
    expect(parsePlistDict(deep(63)).a).toBeInstanceOf(Array);
    expect(parsePlistDict(deep(100), TRUSTED_LIMITS).a).toBeInstanceOf(Array);
  });

  it('bounds elements, distinct keys and string length; the limits are a parameter', () => {
    const many = dict(`<key>a</key><array>${'<true/>'.repeat(DEVICE_LIMITS.maxElements)}</array>`);
    expect(refusal(() => parsePlistDict(many)).message).toMatch(/more than 128000 elements at line 4, col \d+/);
    expect((parsePlistDict(many, TRUSTED_LIMITS).a as unknown[]).length).toBe(DEVICE_LIMITS.maxElements);
    const keys = dict(Array.from({ length: DEVICE_LIMITS.maxKeys + 1 }, (_, i) => `<key>k${i}</key><true/>`).join(''));
    expect(refusal(() => parsePlistDict(keys)).message).toMatch(/more than 8192 distinct keys/);
    const long = dict(`<key>a</key><string>${'x'.repeat(DEVICE_LIMITS.maxStringLength + 1)}</string>`);
    expect(refusal(() => parsePlistDict(long)).message).toMatch(/text longer than 1048576 characters at line 4, col 19/);
    expect((parsePlistDict(long, TRUSTED_LIMITS).a as string).length).toBe(DEVICE_LIMITS.maxStringLength + 1);
    // Comments, attributes and references cost like elements and count as them.
    expect(refusal(() => parsePlistDict(dict(`${'<!---->'.repeat(DEVICE_LIMITS.maxElements)}`))).message).toMatch(/more than 128000 elements/);
    expect(refusal(() => parsePlistDict(dict(`<key>a</key><string>${'&amp;'.repeat(DEVICE_LIMITS.maxElements)}</string>`))).message).toMatch(
      /more than 128000 elements/,
    );
  });

  it('keeps the other refusals: invalid UTF-8, __proto__, structure', () => {
    expect(
      refusal(() => parsePlistDict(Buffer.concat([Buffer.from(dict('<key>a</key><string>')), Buffer.from([0xc3, 0x28]), Buffer.from('</string>')]))).message,
    ).toBe('body is not valid UTF-8');
    expect(refusal(() => parsePlistDict(dict('<key>__proto__</key><dict/>'))).message).toMatch(/forbidden key __proto__/);
    expect(refusal(() => parsePlistDict(dict('<key>a</key>'))).message).toMatch(/<key> without a value/);
    expect(refusal(() => parsePlistDict(dict('<string>a</string>'))).message).toMatch(/expected <key> in <dict>/);
    expect(refusal(() => parsePlistDict(doc('<dict/><dict/>'))).message).toMatch(/more than one value in <plist>/);
    expect(refusal(() => parsePlistDict('<dict></dict>')).message).toMatch(/root element is not <plist>/);
    expect(refusal(() => parsePlistDict(doc('<dict/>') + '<dict/>')).message).toMatch(/content after the end of the plist/);
    expect(refusal(() => parsePlistDict(doc('<dict><key>a</key><string>&#0;</string></dict>'))).message).toMatch(/invalid character/);
    expect(refusal(() => parsePlistDict(doc('<dict><key>a</key><real>1..2</real></dict>'))).message).toMatch(/invalid <real>/);
    expect(refusal(() => parsePlistDict(doc(''))).message).toMatch(/empty <plist>/);
  });

  it('lets profiles (trusted limits) carry large payloads that device bodies may not', () => {
    const big = buildPlist({ PayloadType: 'Configuration', PayloadContent: [{ PayloadType: 'com.apple.font', Font: new Uint8Array(2 << 20).fill(7) }] });
    expect(refusal(() => parsePlistDict(big)).message).toMatch(/text longer than/);
    expect((parsePlistDict(big, TRUSTED_LIMITS).PayloadContent as { Font: Uint8Array }[])[0]!.Font.length).toBe(2 << 20);
  });
});

describe('message decoding: ids do not keep the body alive', () => {
  it('a UDID kept after decoding does not pin the text it came from', () => {
    // V8 represents a long substring as a view of its parent: a UDID kept in a cache would keep
    // its whole request body in memory, for as long as the device is cached.
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const padding = 'x'.repeat(200_000);
    gc();
    const before = getHeapStatistics().used_heap_size;
    const kept: string[] = [];
    for (let i = 0; i < 200; i++) {
      const udid = `00008110-${String(i).padStart(16, '0')}`;
      const body = Buffer.from(dict(`<key>Status</key><string>Idle</string><key>UDID</key><string>${udid}</string><key>Pad</key><string>${padding}</string>`));
      const rep = decodeReport(parsePlistDict(body));
      expect(rep.deviceId).toBe(udid);
      kept.push(rep.deviceId, rep.enrollmentId);
    }
    gc();
    const grown = getHeapStatistics().used_heap_size - before;
    // 200 bodies are 40 MB of text; 400 ids a few KB.
    expect(grown).toBeLessThan(8_000_000);
    expect(kept).toHaveLength(400);
  });
});

describe('toJson is total', () => {
  it('turns an invalid Date into null instead of throwing, and stops at any depth', () => {
    expect(toJson({ at: new Date('x'), ok: new Date(0) })).toEqual({ at: null, ok: '1970-01-01T00:00:00.000Z' });
    let deep: unknown = 'leaf';
    for (let i = 0; i < 10_000; i++) deep = [deep];
    expect(() => JSON.stringify(toJson(deep as never))).not.toThrow();
  });

  it('fromJson refuses nesting deeper than a plist may have (a 400, not a stack overflow)', () => {
    let deep: unknown = 'leaf';
    for (let i = 0; i < 10_000; i++) deep = { a: deep };
    expect(refusal(() => fromJson(deep)).message).toMatch(/nested deeper than 128 levels/);
    expect(refusal(() => fromJson({ $date: '+010000-01-01T00:00:00Z' })).message).toMatch(/outside years/);
    expect(refusal(() => buildCommand(fromJson({ RequestType: 'RemoveProfile', Identifier: 'a\u0001b' }) as never)).status).toBe(400);
  });
});

describe('message decoding', () => {
  it('tells check-ins from reports and decodes channels', () => {
    expect(messageKind({ MessageType: 'Authenticate' })).toBe('checkin');
    expect(messageKind({ Status: 'Idle' })).toBe('report');
    const tu = decodeCheckin({ MessageType: 'TokenUpdate', UDID: 'U', UserID: 'X', Topic: 't', Token: new Uint8Array([1]), PushMagic: 'm' });
    expect(tu).toMatchObject({ deviceId: 'U', enrollmentId: 'U:X', userId: 'X' });
    const ue = decodeReport({ Status: 'Idle', EnrollmentID: 'E1' });
    expect(ue.enrollmentId).toBe('E1');
  });

  it('names the offending key', () => {
    expect(refusal(() => decodeCheckin({ MessageType: 'TokenUpdate', UDID: 'U', Topic: 't', PushMagic: 'm' })).message).toBe('missing Token');
    expect(refusal(() => decodeCheckin({ MessageType: 'TokenUpdate', UDID: 'U', Topic: 't', Token: 'x', PushMagic: 'm' })).message).toBe(
      'Token is a string, expected data',
    );
    expect(refusal(() => decodeReport({ Status: 'Bogus', UDID: 'U' })).message).toMatch(/unknown Status/);
  });
});

describe('commands', () => {
  it('builds the exact plist the device receives', () => {
    const built = buildCommand(fromJson({ RequestType: 'InstallProfile', Payload: { $data: Buffer.from('abc').toString('base64') } }) as never, 'CMD-1');
    expect(parsePlistDict(built.payload)).toEqual({
      CommandUUID: 'CMD-1',
      Command: { RequestType: 'InstallProfile', Payload: new Uint8Array(Buffer.from('abc')) },
    });
  });

  it("validates against Apple's schema: unknown key, wrong type, allowed values", () => {
    expect(refusal(() => validateCommand({ RequestType: 'RemoveProfile', Identifer: 'x' })).message).toMatch(/unknown key "Identifer"/);
    expect(refusal(() => validateCommand({ RequestType: 'RemoveProfile', Identifier: 5 })).message).toMatch(/expected string/);
    expect(refusal(() => validateCommand({ RequestType: 'RemoveProfile' })).message).toMatch(/missing required key Identifier/);
    expect(validateCommand({ RequestType: 'DeviceInformation', Queries: ['UDID'] })).toBe('DeviceInformation');
  });
});
