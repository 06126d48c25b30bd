/** The sliced template writer writes byte for byte what the plist builder writes. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildPlist, type PlistValue } from '../../src/protocol/plist.js';
import { plistXml, PlistTextError } from '../../src/reconcile/plist-writer.js';
import { runSteps } from '../../src/reconcile/render.js';

// XML-legal text only: the builder refuses the rest, and so does the writer (tested below).
const text = fc.string({ unit: 'grapheme', maxLength: 8 }).filter((s) => !/[\0-\x08\x0B\f\x0E-\x1F\uFFFE\uFFFF]/.test(s));
const { value } = fc.letrec<{ value: PlistValue }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    text,
    fc.integer(),
    fc.double({ noNaN: false }),
    fc.boolean(),
    fc.date({ noInvalidDate: true }),
    fc.uint8Array({ maxLength: 12 }),
    fc.constant(null as unknown as PlistValue),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(text, tie('value'), { maxKeys: 4 }),
  ),
}));

describe('plist template writer', () => {
  it('equals buildPlist for any plist value', () => {
    fc.assert(
      fc.property(fc.dictionary(text, value, { maxKeys: 5 }), (v) => {
        expect(runSteps(plistXml(v))).toBe(buildPlist(v).toString('utf8'));
      }),
      { numRuns: 400 },
    );
  });

  it('edge cases: empty containers, empty strings and data, escaping', () => {
    for (const v of [
      {},
      { a: [] },
      { a: {} },
      { '': '' },
      { a: new Uint8Array(0) },
      { a: [null, undefined] },
      { a: { b: null } },
      { 'k<&>': 'v\r<&>"\'' },
      { n: -0, r: 1.5, big: 1e21, inf: Infinity },
    ]) {
      expect(runSteps(plistXml(v as PlistValue))).toBe(buildPlist(v as PlistValue).toString('utf8'));
    }
    expect(() => runSteps(plistXml({ a: 'nul\u0000' }))).toThrow(PlistTextError);
    expect(() => buildPlist({ a: 'nul\u0000' })).toThrow();
  });

  it('yields while writing a big value', () => {
    const steps = plistXml({ list: Array.from({ length: 100_000 }, (_, i) => ({ i })) });
    let yields = 0;
    while (!steps.next().done) yields++;
    expect(yields).toBeGreaterThan(5);
  });
});
