/**
 * Mdm-Signature benchmark on one core: verify (what the server does on every request), sign
 * (what the simulator does), and certificate issuance (ca.ts).
 * `node dist/bench/cms.js` after `npx tsc -p tsconfig.json`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createCA, createDeviceIdentity } from '../src/identity/ca.js';
import { signDetached } from '../src/identity/cms-sign.js';
import { clearKeyCache, verifyDetachedSignature } from '../src/identity/cms.js';
import { TrustStore } from '../src/identity/trust.js';

export interface CmsBenchResult {
  verifyPerSec: number;
  signPerSec: number;
  notes: string;
}

// ../shared beside the checkout (dist/bench -> repo root is two levels up).
const VECTORS = new URL('../../test/fixtures/vectors', import.meta.url).pathname;

/** Operations per second of `fn` over about `ms` milliseconds, after a short warm-up. */
function rate(fn: () => void, ms: number): number {
  const warm = performance.now() + Math.min(200, ms / 5);
  while (performance.now() < warm) fn();
  let n = 0;
  const start = performance.now();
  let now = start;
  const end = start + ms;
  while (now < end) {
    // Batches keep the clock out of the measurement.
    for (let i = 0; i < 16; i++) fn();
    n += 16;
    now = performance.now();
  }
  return n / ((now - start) / 1000);
}

const r0 = (n: number) => Math.round(n).toLocaleString('en-US');

export async function benchCms(): Promise<CmsBenchResult> {
  const ca = createCA({ commonName: 'Bench CA' });
  const device = createDeviceIdentity(ca, 'bench-device');
  const body = Buffer.from(
    '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" ' +
      '"http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n<plist version="1.0">\n<dict>\n\t<key>Status</key>\n' +
      '\t<string>Idle</string>\n\t<key>UDID</key>\n\t<string>00008030-001A2B3C4D5E6F70</string>\n</dict>\n</plist>\n',
  );
  const sig = signDetached(body, device);
  const sigAttrs = signDetached(body, device, { digest: 'sha256', signedAttributes: true });
  const trust = new TrustStore([ca.certPem]);

  const verifyPerSec = rate(() => verifyDetachedSignature(sig, body), 2000);
  const uncachedPerSec = rate(() => {
    clearKeyCache();
    verifyDetachedSignature(sig, body);
  }, 1000);
  const attrsPerSec = rate(() => verifyDetachedSignature(sigAttrs, body), 1000);
  const withTrustPerSec = rate(() => {
    const v = verifyDetachedSignature(sig, body);
    trust.check(v.signerCert, v.certificates);
  }, 1000);

  let vectorNote = 'vector header2/body2 not found';
  const h2 = `${VECTORS}/mdm-signature/header2.b64`;
  if (existsSync(h2)) {
    const header2 = readFileSync(h2, 'utf8');
    const body2 = readFileSync(`${VECTORS}/mdm-signature/body2.plist`);
    vectorNote = `real device header (header2/body2, BER, sha1): ${r0(rate(() => verifyDetachedSignature(header2, body2), 2000))}/s`;
  }

  const signPerSec = rate(() => signDetached(body, device), 1000);
  const signAttrsPerSec = rate(() => signDetached(body, device, { digest: 'sha256', signedAttributes: true }), 1000);

  const issueCount = 1000;
  const issueStart = performance.now();
  for (let i = 0; i < issueCount; i++) createDeviceIdentity(ca, `bench-${i}`, { key: device.key });
  const issueMs = performance.now() - issueStart;

  const notes = [
    `Verify: ${body.length}-byte Idle body, RSA-2048 device certificate from ca.ts, sha1, no signed attributes: ${r0(verifyPerSec)}/s.`,
    `Also: ${vectorNote}; sha256 + signed attributes: ${r0(attrsPerSec)}/s;`,
    `without the public-key cache (X509Certificate parse per request): ${r0(uncachedPerSec)}/s;`,
    `verify + TrustStore.check (cached chain): ${r0(withTrustPerSec)}/s.`,
    `Sign: sha1 ${r0(signPerSec)}/s, sha256 + signed attributes ${r0(signAttrsPerSec)}/s.`,
    `Issue: ${issueCount} device certificates (key reused) in ${(issueMs / 1000).toFixed(2)} s (${r0(issueCount / (issueMs / 1000))}/s).`,
  ].join(' ');
  return { verifyPerSec, signPerSec, notes };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await benchCms();
  console.log(`verify/s: ${r0(r.verifyPerSec)}\nsign/s:   ${r0(r.signPerSec)}\n${r.notes}`);
}
