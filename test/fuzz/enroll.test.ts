/**
 * Fuzzing the enrollment parsers of untrusted input (10,000 inputs each): whole SCEP
 * PKIOperation messages (the real PKCSReq vector, scepclient's, ours), the EnvelopedData inside
 * (ours and openssl's), and PKCS#10 requests (openssl's). Each input gives a result or the
 * parser's typed error, never another exception (which the SCEP route would answer with a 500).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fuzzes } from './suite.js';
import { makeTargets, type Targets } from './targets.js';

let targets: Partial<Targets> & { cleanup(): void };
beforeAll(async () => {
  targets = await makeTargets(['scep', 'envelope', 'pkcs10']);
});
afterAll(() => targets.cleanup());

describe('fuzz: SCEP PKIOperation through ScepAuthority', () => {
  fuzzes(
    () => targets.scep,
    (s) => s,
  );

  it('the unmutated scepclient and openssl-CSR requests are issued for', () => {
    const outcomes = targets.scep!.seeds.map((s) => (targets.scep!.run(s) as { outcome: string }).outcome);
    expect(outcomes[0]).toMatch(/PKCSReq FAILURE badRequest: not encrypted to this certificate/); // the vector: another CA's
    for (const o of outcomes.slice(1)) expect(o).toMatch(/^PKCSReq( \(retry\))? SUCCESS/);
  });
});

describe('fuzz: EnvelopedData (openEnvelope)', () => {
  fuzzes(
    () => targets.envelope,
    (s) => s,
  );
});

describe('fuzz: PKCS#10 (parseCsr)', () => {
  fuzzes(
    () => targets.pkcs10,
    (s) => s,
  );
});
