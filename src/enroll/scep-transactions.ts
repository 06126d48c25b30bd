/**
 * SCEP transactions in the store (kind `scep-transaction`, keyed by a hash of the transactionID,
 * expiring with the retry window): a device whose reply got lost retries or polls and gets the
 * same certificate, whichever replica it reaches.
 */
import { createHash } from 'node:crypto';
import type { MaterialStore } from '../store/material.js';
import type { CachedIssue, IssuedCertificate, ScepTransactions } from './authority.js';

type Stored = Omit<CachedIssue, 'issued'> & { issued: Omit<IssuedCertificate, 'certDer' | 'renewedFrom'> & { certDer: string; renewedFrom?: string } };

// transactionIDs are client text of any length: the key is their hash.
const key = (tx: string) => createHash('sha256').update(tx, 'utf8').digest('hex');

export function storeTransactions(store: Pick<MaterialStore, 'getMaterial' | 'putMaterial'>): ScepTransactions {
  return {
    async get(tx) {
      const v = await store.getMaterial('scep-transaction', key(tx));
      if (!v) return undefined;
      const s = JSON.parse(v.toString('utf8')) as Stored;
      const { certDer, renewedFrom, ...rest } = s.issued;
      return {
        ...s,
        issued: { ...rest, certDer: Buffer.from(certDer, 'base64'), ...(renewedFrom !== undefined ? { renewedFrom: Buffer.from(renewedFrom, 'base64') } : {}) },
      };
    },
    async put(tx, entry, expiresAt) {
      const { certDer, renewedFrom, ...rest } = entry.issued;
      const s: Stored = {
        ...entry,
        issued: { ...rest, certDer: certDer.toString('base64'), ...(renewedFrom !== undefined ? { renewedFrom: renewedFrom.toString('base64') } : {}) },
      };
      await store.putMaterial('scep-transaction', key(tx), Buffer.from(JSON.stringify(s), 'utf8'), { expiresAt });
    },
  };
}
