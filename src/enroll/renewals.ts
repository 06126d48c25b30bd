/**
 * What the built-in CA issued each certificate for, kept in the store (kind `issuance`, keyed by
 * the certificate's SHA-256), so the identity checks hold after a restart and on every replica.
 * Only certificates with something to say have a record: those issued through a one-time
 * enrollment created for a device, renewals, and certificates that were renewed (retired). A
 * certificate for the static challenge has none: it proves nothing about which device holds it.
 *
 * Read on Authenticate and on a certificate mismatch only, never on the hot path, and not cached:
 * another replica may have renewed the certificate meanwhile.
 *
 * Earlier versions kept one JSON file per certificate in `<dataDir>/enroll/issued/` (and, before
 * that, `enroll/renewals/`: a file per renewed certificate holding the hash of the one it
 * renewed); `importIssuanceFiles` moves them into the store once.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, renameSync } from 'node:fs';
import type { Issuance } from '../mdm/service.js';
import type { MaterialStore } from '../store/material.js';

export const sha256Hex = (der: Buffer): string => createHash('sha256').update(der).digest('hex');

const HASH = /^[0-9a-f]{64}$/;

export class IssuanceLedger {
  constructor(private readonly store: Pick<MaterialStore, 'getMaterial' | 'putMaterial'>) {}

  /** A certificate issued through a one-time enrollment for this device. */
  async issuedFor(certDer: Buffer, bind: { serial?: string; udid?: string }): Promise<void> {
    if (bind.serial === undefined && bind.udid === undefined) return;
    await this.merge(sha256Hex(certDer), bind);
  }

  /**
   * `newCertDer` renews `oldCertDer`, bound to `deviceId`: the new one speaks only for that device
   * and inherits what the old one was issued for; the old one is retired.
   */
  async renewal(newCertDer: Buffer, oldCertDer: Buffer, deviceId: string): Promise<void> {
    const oldHash = sha256Hex(oldCertDer);
    const newHash = sha256Hex(newCertDer);
    const old = await this.lookup(oldHash);
    await this.merge(newHash, {
      renewalOf: oldHash,
      device: deviceId,
      ...(old?.serial !== undefined ? { serial: old.serial } : {}),
      ...(old?.udid !== undefined ? { udid: old.udid } : {}),
    });
    await this.merge(oldHash, { renewedBy: newHash });
  }

  lookup = async (certHash: string): Promise<Issuance | undefined> => {
    if (!HASH.test(certHash)) return undefined;
    const v = await this.store.getMaterial('issuance', certHash);
    return v && (JSON.parse(v.toString('utf8')) as Issuance);
  };

  private async merge(certHash: string, fields: Issuance): Promise<void> {
    const next = { ...(await this.lookup(certHash)), ...fields };
    await this.store.putMaterial('issuance', certHash, Buffer.from(JSON.stringify(next), 'utf8'));
  }
}

function readDir(dir: string): string[] {
  try {
    return readdirSync(dir).filter((n) => HASH.test(n));
  } catch {
    return [];
  }
}

/**
 * Moves an earlier version's records into the store (a record already there wins), then renames
 * each directory to `<dir>.imported`, so this happens once. Returns how many records were read.
 */
export async function importIssuanceFiles(store: Pick<MaterialStore, 'putMaterial'>, dirs: { issued: string; renewals?: string }): Promise<number> {
  let n = 0;
  for (const name of readDir(dirs.issued)) {
    let rec: Issuance;
    try {
      rec = JSON.parse(readFileSync(`${dirs.issued}/${name}`, 'utf8')) as Issuance;
    } catch {
      continue;
    }
    await store.putMaterial('issuance', name, Buffer.from(JSON.stringify(rec), 'utf8'), { ifAbsent: true });
    n++;
  }
  for (const name of dirs.renewals ? readDir(dirs.renewals) : []) {
    const prev = readFileSync(`${dirs.renewals}/${name}`, 'utf8').trim();
    if (!HASH.test(prev)) continue;
    await store.putMaterial('issuance', name, Buffer.from(JSON.stringify({ renewalOf: prev }), 'utf8'), { ifAbsent: true });
    n++;
  }
  for (const dir of [dirs.issued, dirs.renewals]) {
    if (dir && readDir(dir).length > 0) renameSync(dir, `${dir}.imported`);
  }
  return n;
}
