/**
 * Fuzzing the identity parsers of untrusted input (10,000 inputs each): the Mdm-Signature CMS
 * parser, the proxy client-certificate header, and certificate parsing in the trust check. Each
 * input gives a result or an IdentityError, never another exception (which would be a 500).
 * `npm run fuzz` runs the same targets for longer; FUZZ_SEED=n explores other inputs here.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readTree, writeTree } from './harness.js';
import { fuzzes } from './suite.js';
import { makeTargets, type Targets } from './targets.js';

let targets: Partial<Targets> & { cleanup(): void };
beforeAll(async () => {
  targets = await makeTargets(['cms', 'certHeader', 'trust']);
});
afterAll(() => targets.cleanup());

describe('fuzz: Mdm-Signature (device capture, openssl SHA-1 without attributes, SHA-256 with, ECDSA)', () => {
  fuzzes(() => targets.cms);

  it('the mutator starts from the exact bytes: every seed, BER indefinite lengths included, round-trips its TLV tree', () => {
    for (const { header } of targets.cms!.seeds) {
      const der = Buffer.from(header, 'base64');
      expect(writeTree(readTree(der)).equals(der)).toBe(true);
    }
  });
});

describe('fuzz: client certificate header (RFC 9440 :base64:, nginx URL-escaped PEM, folded PEM, bare base64)', () => {
  fuzzes(() => targets.certHeader);
});

describe('fuzz: certificate chain check (a mutated leaf or intermediate under a trusted openssl root)', () => {
  fuzzes(() => targets.trust);
});
