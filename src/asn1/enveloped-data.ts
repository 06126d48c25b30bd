/**
 * CMS EnvelopedData (RFC 5652 6) as SCEP and S/MIME use it: one RSA key-transport recipient,
 * content encrypted with AES-CBC or (old clients) 3DES/DES-CBC. Built with der.ts, read through
 * the @peculiar/asn1-cms schemas.
 *
 * Node 20 refuses RSA PKCS#1 v1.5 private decryption (CVE-2023-46809, the Marvin timing attack),
 * but SCEP clients (micromdm's scepclient, devices) use exactly that key transport. So the RSA
 * operation runs without padding and the padding is checked here with the standard
 * countermeasure: the check is branch-free and a bad padding yields a synthetic key (HMAC of the
 * ciphertext under a process secret) instead of an error, so a wrong key and a bad padding fail
 * identically, later, at content decryption.
 *
 * Single DES is not in OpenSSL 3's default provider; DES-EDE3 with K1=K2=K3 is DES, so it is
 * decrypted that way (and never used for replies).
 */
import {
  X509Certificate,
  constants,
  createCipheriv,
  createDecipheriv,
  createHmac,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { AsnArray, AsnProp, AsnPropTypes, AsnType, AsnTypeTypes, OctetString } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier } from '@peculiar/asn1-x509';
import { causeName, guarded } from '../identity/errors.js';
import { certificateFields } from './certificate.js';
import { Asn1Error, bytes, contentInfo, decode, decodeBlock, implicitOctetsOf, octetsOf } from './decode.js';
import { algorithm, ctx, ctxPrim, int, NULL, octets, oid, seq, set } from './der.js';
import { id_data } from './oids.js';
import { pemToDer } from './pem.js';
import { identifies, type Signer } from './signed-data.js';
import { Malformed } from '../errors.js';

export type ContentCipher = 'aes-128-cbc' | 'aes-192-cbc' | 'aes-256-cbc' | 'des-ede3-cbc' | 'des-cbc';

export const id_envelopedData = '1.2.840.113549.1.7.3';
const RSA_ENCRYPTION = '1.2.840.113549.1.1.1';
const RSAES_OAEP = '1.2.840.113549.1.1.7';

interface CipherSpec {
  oid: string;
  keyLen: number;
  ivLen: number;
}

export const CIPHERS: Record<ContentCipher, CipherSpec> = {
  'aes-128-cbc': { oid: '2.16.840.1.101.3.4.1.2', keyLen: 16, ivLen: 16 },
  'aes-192-cbc': { oid: '2.16.840.1.101.3.4.1.22', keyLen: 24, ivLen: 16 },
  'aes-256-cbc': { oid: '2.16.840.1.101.3.4.1.42', keyLen: 32, ivLen: 16 },
  'des-ede3-cbc': { oid: '1.2.840.113549.3.7', keyLen: 24, ivLen: 8 },
  'des-cbc': { oid: '1.3.14.3.2.7', keyLen: 8, ivLen: 8 },
};

const CIPHER_BY_OID = new Map<string, ContentCipher>((Object.entries(CIPHERS) as [ContentCipher, CipherSpec][]).map(([name, spec]) => [spec.oid, name]));

export type EnvelopeProblem = 'unsupported' | 'recipient' | 'decrypt' | 'malformed';

export class EnvelopeError extends Malformed {
  constructor(
    readonly problem: EnvelopeProblem,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'EnvelopeError';
  }
}

/** Node cipher name and key for a content cipher (DES runs as 3DES with the key repeated). */
function nodeCipher(cipher: ContentCipher, key: Buffer): [string, Buffer] {
  if (cipher === 'des-cbc') return ['des-ede3-cbc', Buffer.concat([key, key, key])];
  return [cipher, key];
}

const recipientKeys = new WeakMap<Buffer, KeyObject>();

function recipientKey(certDer: Buffer): KeyObject {
  let key = recipientKeys.get(certDer);
  if (!key) {
    key = new X509Certificate(certDer).publicKey;
    recipientKeys.set(certDer, key);
  }
  return key;
}

/**
 * Encrypt `content` to the holder of `recipientCertDer` (RSA); returns ContentInfo DER.
 * `publicKey`: the certificate's key when the caller already has it (saves a certificate parse).
 */
export function sealEnvelope(content: Buffer, recipientCertDer: Buffer, cipher: ContentCipher = 'aes-128-cbc', publicKey?: KeyObject): Buffer {
  const spec = CIPHERS[cipher];
  const pub = publicKey ?? recipientKey(recipientCertDer);
  if (pub.asymmetricKeyType !== 'rsa')
    throw new EnvelopeError('unsupported', `recipient key type ${pub.asymmetricKeyType} cannot receive an RSA key transport`);
  const cek = randomBytes(spec.keyLen);
  const iv = randomBytes(spec.ivLen);
  const [name, key] = nodeCipher(cipher, cek);
  const c = createCipheriv(name, key, iv);
  const encrypted = Buffer.concat([c.update(content), c.final()]);
  const encryptedKey = publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_PADDING }, cek);
  const ktri = seq(int(0), certificateFields(recipientCertDer).issuerAndSerial, algorithm(RSA_ENCRYPTION, NULL), octets(encryptedKey));
  const eci = seq(oid(id_data), algorithm(spec.oid, octets(iv)), ctxPrim(0, encrypted));
  return seq(oid(id_envelopedData), ctx(0, seq(int(0), set(ktri), eci)));
}

// Secret for synthetic keys; per process is enough: it only has to be unpredictable.
const implicitRejectionKey = randomBytes(32);

/**
 * RSAES-PKCS1-v1_5 decryption of a key of known length without a padding oracle: always returns
 * `expectedLen` bytes, the real key or a synthetic one, with no data-dependent branch.
 */
export function decryptKeyPkcs1(key: KeyObject, encryptedKey: Buffer, expectedLen: number): Buffer {
  const synthetic = createHmac('sha256', implicitRejectionKey).update(encryptedKey).digest().subarray(0, expectedLen);
  let em: Buffer;
  try {
    em = privateDecrypt({ key, padding: constants.RSA_NO_PADDING }, encryptedKey);
  } catch {
    return synthetic; // wrong length or out of range: public properties of the ciphertext
  }
  const k = em.length;
  const sep = k - expectedLen - 1;
  if (sep < 10) return synthetic; // modulus too small for 8 bytes of padding: public
  let bad = em[0]! | (em[1]! ^ 0x02) | em[sep]!;
  for (let i = 2; i < sep; i++) bad |= ((em[i]! - 1) >> 31) & 1; // a zero padding byte
  const mask = (-bad >> 31) & 0xff; // 0xff when bad
  const out = Buffer.alloc(expectedLen);
  for (let i = 0; i < expectedLen; i++) out[i] = (em[sep + 1 + i]! & ~mask) | (synthetic[i]! & mask);
  return out;
}

export interface OpenedEnvelope {
  content: Buffer;
  cipher: ContentCipher;
}

/** A SET OF elements kept as encoded. */
@AsnType({ type: AsnTypeTypes.Set, itemType: AsnPropTypes.Any })
class RawSet extends AsnArray<ArrayBuffer> {}

/** EncryptedContentInfo (RFC 5652 6.1) with the [0] IMPLICIT encryptedContent kept as encoded (primitive or BER chunks). */
class EncryptedContentParts {
  @AsnProp({ type: AsnPropTypes.ObjectIdentifier }) contentType = '';
  @AsnProp({ type: AlgorithmIdentifier }) contentEncryptionAlgorithm = new AlgorithmIdentifier();
  @AsnProp({ type: AsnPropTypes.Any, optional: true }) encryptedContent?: ArrayBuffer;
}

/** EnvelopedData (RFC 5652 6.1) with the RecipientInfos kept as encoded: only key transport is read. */
class EnvelopedDataParts {
  @AsnProp({ type: AsnPropTypes.Integer }) version = 0;
  @AsnProp({ type: AsnPropTypes.Any, context: 0, implicit: true, optional: true }) originatorInfo?: ArrayBuffer;
  @AsnProp({ type: RawSet }) recipientInfos = new RawSet();
  @AsnProp({ type: EncryptedContentParts }) encryptedContentInfo = new EncryptedContentParts();
  @AsnProp({ type: RawSet, context: 1, implicit: true, optional: true }) unprotectedAttrs?: RawSet;
}

/** KeyTransRecipientInfo (RFC 5652 6.2.1) with its rid kept as encoded (identifies() reads it). */
class KeyTransParts {
  @AsnProp({ type: AsnPropTypes.Integer }) version = 0;
  @AsnProp({ type: AsnPropTypes.Any }) rid = new ArrayBuffer(0);
  @AsnProp({ type: AlgorithmIdentifier }) keyEncryptionAlgorithm = new AlgorithmIdentifier();
  @AsnProp({ type: OctetString }) encryptedKey = new OctetString();
}

export interface KeyTransRecipient {
  /** issuerAndSerialNumber or [0] subjectKeyIdentifier, as encoded. */
  rid: Buffer;
  keyAlgorithm: string;
  /** The parameters as encoded; null for NULL, undefined when absent. */
  keyAlgorithmParams?: Buffer | null;
  encryptedKey: Buffer;
}

/** The parts of an EnvelopedData, before any decryption. */
export interface EnvelopeParts {
  /** The key-transport recipients (others are not for us). */
  recipients: KeyTransRecipient[];
  cipherOid: string;
  /** Undefined for an algorithm this module cannot decrypt. */
  cipher?: ContentCipher;
  iv: Buffer;
  encrypted: Buffer;
}

/** The guard of the envelope readers: anything but an EnvelopeError is EnvelopeError('malformed'). */
function envelopeGuard<T>(parse: () => T): T {
  return guarded(
    parse,
    [EnvelopeError],
    (cause) => new EnvelopeError('malformed', cause instanceof Asn1Error ? cause.message : `EnvelopedData could not be parsed ${causeName(cause)}`, { cause }),
  );
}

/** Read an EnvelopedData (ContentInfo DER). Throws only EnvelopeError('malformed'). */
export function readEnvelope(der: Buffer): EnvelopeParts {
  return envelopeGuard(() => {
    const ci = contentInfo(der, 'EnvelopedData');
    if (ci.contentType !== id_envelopedData) throw new Asn1Error('content is not a CMS EnvelopedData');
    const ed = decodeBlock(ci.content, EnvelopedDataParts, 'EnvelopedData');
    const recipients: KeyTransRecipient[] = [];
    for (const encoded of ed.recipientInfos) {
      const ri = bytes(encoded);
      if (ri[0] !== 0x30) continue; // kari/kekri/pwri/ori are [n]-tagged: not for us
      const ktri = decode(ri, KeyTransParts, 'KeyTransRecipientInfo');
      const params = ktri.keyEncryptionAlgorithm.parameters;
      recipients.push({
        rid: bytes(ktri.rid),
        keyAlgorithm: ktri.keyEncryptionAlgorithm.algorithm,
        keyAlgorithmParams: params === undefined || params === null ? params : bytes(params),
        encryptedKey: bytes(ktri.encryptedKey.buffer),
      });
    }
    const eci = ed.encryptedContentInfo;
    const cipherOid = eci.contentEncryptionAlgorithm.algorithm;
    const ivParam = eci.contentEncryptionAlgorithm.parameters;
    if (!ivParam) throw new Asn1Error('content encryption IV missing');
    const ec = eci.encryptedContent ? bytes(eci.encryptedContent) : undefined;
    if (!ec || (ec[0] !== 0x80 && ec[0] !== 0xa0)) throw new Asn1Error('EnvelopedData has no encryptedContent');
    const encrypted = implicitOctetsOf(ec, 'encryptedContent');
    return { recipients, cipherOid, cipher: CIPHER_BY_OID.get(cipherOid), iv: octetsOf(bytes(ivParam), 'IV'), encrypted };
  });
}

/** Decrypt an EnvelopedData (ContentInfo DER) addressed to `recipient`. Throws only EnvelopeError. */
export function openEnvelope(der: Buffer, recipient: Signer): OpenedEnvelope {
  return envelopeGuard(() => openUnguarded(der, recipient));
}

function openUnguarded(der: Buffer, recipient: Signer): OpenedEnvelope {
  const env = readEnvelope(der);
  const ktri = env.recipients.find((r) => identifies(r.rid, recipient.certDer));
  if (!ktri) throw new EnvelopeError('recipient', 'not encrypted to this certificate');
  const cipher = env.cipher;
  if (!cipher) throw new EnvelopeError('unsupported', `content encryption algorithm ${env.cipherOid} is not supported`);
  const spec = CIPHERS[cipher];
  if (env.iv.length !== spec.ivLen) throw new EnvelopeError('malformed', `IV must be ${spec.ivLen} bytes for ${cipher}`);

  let cek: Buffer;
  if (ktri.keyAlgorithm === RSA_ENCRYPTION) {
    cek = decryptKeyPkcs1(recipient.key, ktri.encryptedKey, spec.keyLen);
  } else if (ktri.keyAlgorithm === RSAES_OAEP) {
    const params = ktri.keyAlgorithmParams;
    // Only the default parameters (SHA-1, MGF1-SHA-1): absent or an empty SEQUENCE.
    if (params !== undefined && !(params && params.length === 2 && params[0] === 0x30 && params[1] === 0)) {
      throw new EnvelopeError('unsupported', 'RSAES-OAEP with non-default parameters is not supported');
    }
    try {
      cek = privateDecrypt({ key: recipient.key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, ktri.encryptedKey);
    } catch {
      cek = randomBytes(spec.keyLen); // fail later, like a bad PKCS#1 padding
    }
    if (cek.length !== spec.keyLen) cek = randomBytes(spec.keyLen);
  } else {
    throw new EnvelopeError('unsupported', `key encryption algorithm ${ktri.keyAlgorithm} is not supported`);
  }

  try {
    const [name, key] = nodeCipher(cipher, cek);
    const d = createDecipheriv(name, key, env.iv);
    return { content: Buffer.concat([d.update(env.encrypted), d.final()]), cipher };
  } catch {
    throw new EnvelopeError('decrypt', 'content could not be decrypted');
  }
}

/**
 * Decrypt an S/MIME enveloped message (`smime.p7m`: MIME headers, then the base64 EnvelopedData),
 * or the EnvelopedData as PEM (PKCS7, CMS) or DER, with a key and its certificate: how Apple
 * delivers an Apple Business Manager server token. Returns the decrypted content (for a token,
 * itself a small MIME entity). Throws only EnvelopeError.
 */
export function decryptSmime(data: Buffer | string, recipient: Signer): Buffer {
  const der = envelopeGuard(() => smimeDer(typeof data === 'string' ? Buffer.from(data, 'utf8') : data));
  return openEnvelope(der, recipient).content;
}

function smimeDer(data: Buffer): Buffer {
  if (data[0] === 0x30) return data;
  const text = data.toString('latin1');
  for (const label of ['PKCS7', 'CMS']) if (text.includes(`-----BEGIN ${label}-----`)) return pemToDer(text, label);
  const blank = /\r?\n\r?\n/.exec(text);
  if (!blank) throw new EnvelopeError('malformed', 'not an S/MIME message: no blank line after the headers');
  const headers = text.slice(0, blank.index);
  if (!/^content-type:\s*application\/(x-)?pkcs7-mime/im.test(headers))
    throw new EnvelopeError('malformed', 'not an S/MIME message: no application/pkcs7-mime content type');
  if (!/^content-transfer-encoding:\s*base64/im.test(headers)) throw new EnvelopeError('malformed', 'S/MIME message is not base64-encoded');
  const body = text.slice(blank.index + blank[0].length).replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body)) throw new EnvelopeError('malformed', 'S/MIME body is not base64');
  return Buffer.from(body, 'base64');
}
