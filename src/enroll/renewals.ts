/**
 * What the built-in CA issued each certificate for, kept on disk (one small JSON file per
 * certificate, named by its SHA-256) so the identity checks hold after a restart too. Only
 * certificates with something to say have a record: those issued through a one-time enrollment
 * created for a device, renewals, and certificates that were renewed (retired). A certificate
 * for the static challenge has none: it proves nothing about which device holds it.
 *
 * Read on Authenticate and on a certificate mismatch only, never on the hot path, and not cached:
 * nothing here grows with requests.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Issuance } from '../mdm/service.js';

export const sha256Hex = (der: Buffer): string => createHash('sha256').update(der).digest('hex');

const HASH = /^[0-9a-f]{64}$/;

export class IssuanceLedger {
  /**
   * @param dir the records
   * @param legacyDir format of earlier versions: a file per renewed certificate holding the hash of the one it renewed
   */
  constructor(
    private readonly dir: string,
    private readonly legacyDir?: string,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  /** A certificate issued through a one-time enrollment for this device. */
  issuedFor(certDer: Buffer, bind: { serial?: string; udid?: string }): void {
    if (bind.serial === undefined && bind.udid === undefined) return;
    this.merge(sha256Hex(certDer), bind);
  }

  /**
   * `newCertDer` renews `oldCertDer`, bound to `deviceId`: the new one speaks only for that device
   * and inherits what the old one was issued for; the old one is retired.
   */
  renewal(newCertDer: Buffer, oldCertDer: Buffer, deviceId: string): void {
    const oldHash = sha256Hex(oldCertDer);
    const newHash = sha256Hex(newCertDer);
    const old = this.lookup(oldHash);
    this.merge(newHash, {
      renewalOf: oldHash,
      device: deviceId,
      ...(old?.serial !== undefined ? { serial: old.serial } : {}),
      ...(old?.udid !== undefined ? { udid: old.udid } : {}),
    });
    this.merge(oldHash, { renewedBy: newHash });
  }

  lookup = (certHash: string): Issuance | undefined => {
    if (!HASH.test(certHash)) return undefined;
    try {
      return JSON.parse(readFileSync(join(this.dir, certHash), 'utf8')) as Issuance;
    } catch {
      // Not recorded here; perhaps a renewal recorded by an earlier version.
    }
    if (!this.legacyDir) return undefined;
    try {
      const prev = readFileSync(join(this.legacyDir, certHash), 'utf8').trim();
      return HASH.test(prev) ? { renewalOf: prev } : undefined;
    } catch {
      return undefined;
    }
  };

  private merge(certHash: string, fields: Issuance): void {
    const next = { ...this.lookup(certHash), ...fields };
    // Written whole, then renamed: a reader never sees half a record.
    const file = join(this.dir, certHash);
    writeFileSync(`${file}.tmp`, JSON.stringify(next), { mode: 0o600 });
    renameSync(`${file}.tmp`, file);
  }
}
