/** The tests every fuzz target gets: its seeds are accepted, and 10,000 mutations never throw untyped. */
import { expect, it } from 'vitest';
import { fuzz, readTree, testSeed, writeTree, type FuzzTarget } from './harness.js';

export const RUNS = 10_000;

/** `roundTrip`: the seeds are DER/BER the mutator must rebuild byte for byte from its TLV tree. */
export function fuzzes<I>(get: () => FuzzTarget<I> | undefined, roundTrip?: (seed: I) => Buffer): void {
  it(roundTrip ? "the seeds themselves are accepted, and round-trip the mutator's TLV tree" : 'the seeds themselves are accepted', () => {
    const t = get()!;
    for (const s of t.seeds) {
      t.run(s);
      if (roundTrip) expect(writeTree(readTree(roundTrip(s))).equals(roundTrip(s))).toBe(true);
    }
  });

  it(`${RUNS} mutated inputs: each a result or the typed error, and some still accepted`, () => {
    const tally = fuzz(get()!, { runs: RUNS, seed: testSeed(), stopAtOther: true });
    expect(tally).toMatchObject({ runs: RUNS, other: 0 });
    expect(tally.ok + tally.typed).toBe(RUNS);
    expect(tally.ok).toBeGreaterThan(0);
  });
}
