/** Object identifiers of the CMS and certificate fields Orchard reads (RFC 5652 §5.1, §11). Imports nothing: the hot path loads it. */
export const id_data = '1.2.840.113549.1.7.1';
export const id_signedData = '1.2.840.113549.1.7.2';
export const id_contentType = '1.2.840.113549.1.9.3';
export const id_messageDigest = '1.2.840.113549.1.9.4';
export const id_signingTime = '1.2.840.113549.1.9.5';

/** userId (RFC 4519 UID), where Apple puts an APNs certificate's topic. */
export const id_userId = '0.9.2342.19200300.100.1.1';

export type DigestName = 'sha1' | 'sha256' | 'sha384' | 'sha512';

export const DIGEST_OID: Record<DigestName, string> = {
  sha1: '1.3.14.3.2.26',
  sha256: '2.16.840.1.101.3.4.2.1',
  sha384: '2.16.840.1.101.3.4.2.2',
  sha512: '2.16.840.1.101.3.4.2.3',
};

/** Digest by OID; old signers put the signature OID in digestAlgorithm, whose hash is unambiguous. */
export const DIGEST_BY_OID: Record<string, DigestName> = {
  ...Object.fromEntries(Object.entries(DIGEST_OID).map(([k, v]) => [v, k as DigestName])),
  '1.2.840.113549.1.1.5': 'sha1',
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
};

export interface SigAlg {
  keyType: 'rsa' | 'ec';
  /** Hash fixed by the OID; undefined when the OID names only the key type. */
  hash?: DigestName;
}

export const SIGNATURE_OIDS: Record<string, SigAlg> = {
  '1.2.840.113549.1.1.1': { keyType: 'rsa' },
  '1.2.840.113549.1.1.5': { keyType: 'rsa', hash: 'sha1' },
  '1.2.840.113549.1.1.11': { keyType: 'rsa', hash: 'sha256' },
  '1.2.840.113549.1.1.12': { keyType: 'rsa', hash: 'sha384' },
  '1.2.840.113549.1.1.13': { keyType: 'rsa', hash: 'sha512' },
  '1.2.840.10045.2.1': { keyType: 'ec' },
  '1.2.840.10045.4.1': { keyType: 'ec', hash: 'sha1' },
  '1.2.840.10045.4.3.2': { keyType: 'ec', hash: 'sha256' },
  '1.2.840.10045.4.3.3': { keyType: 'ec', hash: 'sha384' },
  '1.2.840.10045.4.3.4': { keyType: 'ec', hash: 'sha512' },
};

/** The OID of a signature by a key type with a hash (sha256WithRSAEncryption, ecdsa-with-SHA256, ...). */
export function signatureOid(keyType: 'rsa' | 'ec', hash: DigestName): string {
  const found = Object.entries(SIGNATURE_OIDS).find(([, a]) => a.keyType === keyType && a.hash === hash);
  if (!found) throw new Error(`no signature algorithm for ${keyType} with ${hash}`);
  return found[0];
}
