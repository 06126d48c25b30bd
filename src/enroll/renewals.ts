/**
 * Which certificate each RenewalReq replaced, kept on disk (one small file per renewal, named by
 * the new certificate's SHA-256) so a renewed device is recognised after a restart too.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const sha256Hex = (der: Buffer): string => createHash('sha256').update(der).digest('hex');

export class RenewalLedger {
  constructor(private readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  record(newCertDer: Buffer, oldCertDer: Buffer): void {
    writeFileSync(join(this.dir, sha256Hex(newCertDer)), sha256Hex(oldCertDer));
  }

  /** The hash of the certificate `certHash` renewed, if it is a renewal. */
  previous = (certHash: string): string | undefined => {
    if (!/^[0-9a-f]{64}$/.test(certHash)) return undefined;
    try {
      return readFileSync(join(this.dir, certHash), 'utf8').trim();
    } catch {
      return undefined;
    }
  };
}
