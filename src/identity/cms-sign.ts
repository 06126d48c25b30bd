/**
 * Produce an `Mdm-Signature` value the way a device does: a detached CMS SignedData over the
 * body, DER, base64 (the one SignedData builder, src/asn1/signed-data.ts, which embeds the
 * certificate verbatim and reads its issuerAndSerialNumber once per certificate Buffer: the
 * simulator signs every request).
 */
import type { KeyObject } from 'node:crypto';
import { buildSignedData } from '../asn1/signed-data.js';

export interface CmsSigner {
  certDer: Buffer;
  key: KeyObject;
}

export interface SignOptions {
  /** Default 'sha1', as real devices do. */
  digest?: 'sha1' | 'sha256';
  /** Default false (real devices send none); true adds contentType, signingTime, messageDigest. */
  signedAttributes?: boolean;
  /** The signingTime attribute (with signedAttributes); default now. */
  signingTime?: Date;
}

/**
 * Sign `body` as a detached CMS SignedData and return it base64 (an Mdm-Signature value).
 * Supports RSA (PKCS#1 v1.5, sha*WithRSAEncryption as devices write it) and EC keys.
 */
export function signDetached(body: Buffer, signer: CmsSigner, opts: SignOptions = {}): string {
  return buildSignedData({
    content: body,
    detached: true,
    signer,
    digest: opts.digest ?? 'sha1',
    signedAttributes: opts.signedAttributes ?? false,
    signingTime: opts.signingTime,
    rsaSignatureOid: 'withDigest',
  }).toString('base64');
}
