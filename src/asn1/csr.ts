/**
 * PKCS#10 certificate requests (RFC 2986) through the @peculiar/asn1-csr schemas: parsed and
 * verified for the SCEP server, built for the simulator, tests and the APNs vendor flow; and the
 * self-signed certificate a SCEP requester signs its PKCSReq with.
 */
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { CertificationRequestInfo, Attributes } from '@peculiar/asn1-csr';
import { AsnConvert, AsnProp, AsnPropTypes } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier, Attribute, AttributeValue, Name, SubjectPublicKeyInfo } from '@peculiar/asn1-x509';
import { Asn1Error, bytes, decode, readable, textOf, valueText } from './decode.js';
import { SIGNATURE_OIDS } from './oids.js';
import { buildCertificate, buildName, randomSerial, signed, encodeName, type NameAttribute } from './certificate.js';
import { Malformed } from '../errors.js';
import { causeName, guarded } from '../identity/errors.js';

export const id_challengePassword = '1.2.840.113549.1.9.7';

const MD5_WITH_RSA = '1.2.840.113549.1.1.4';

const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

export class CsrError extends Malformed {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'CsrError';
  }
}

/** A subject entry as [short name or dotted OID, value], e.g. ['CN', 'device']. */
export type SubjectEntry = [string, string];

const attributesOf = (entries: SubjectEntry[]): NameAttribute[] => entries.map(([name, value]) => ({ name, value }));

/** X.501 Name of subject entries, DER. */
export function encodeSubject(entries: SubjectEntry[]): Buffer {
  return encodeName(attributesOf(entries));
}

export interface BuildCsrOptions {
  /** The requester's private key. */
  key: KeyObject;
  subject: SubjectEntry[] | NameAttribute[];
  challengePassword?: string;
}

/** A CSR, DER, signed SHA-256 with the requester's key (RSA or EC). */
export function buildCsr(opts: BuildCsrOptions): Buffer {
  const subject = opts.subject.map((e) => (Array.isArray(e) ? { name: e[0], value: e[1] } : e));
  const attributes = new Attributes();
  if (opts.challengePassword !== undefined) {
    const pw = PRINTABLE.test(opts.challengePassword)
      ? new AttributeValue({ printableString: opts.challengePassword })
      : new AttributeValue({ utf8String: opts.challengePassword });
    attributes.push(new Attribute({ type: id_challengePassword, values: [AsnConvert.serialize(pw)] }));
  }
  const info = new CertificationRequestInfo({
    version: 0,
    subject: buildName(subject),
    subjectPKInfo: AsnConvert.parse(createPublicKey(opts.key).export({ type: 'spki', format: 'der' }), SubjectPublicKeyInfo),
    attributes,
  });
  return signed(Buffer.from(AsnConvert.serialize(info)), opts.key);
}

/** A self-signed certificate for `key` (what a SCEP requester signs its first request with). */
export function selfSignedCertificate(key: KeyObject, subject: SubjectEntry[], days = 1): Buffer {
  const now = Date.now();
  return buildCertificate({
    serial: randomSerial(),
    issuer: encodeSubject(subject),
    subject: attributesOf(subject),
    publicKey: key,
    notBefore: new Date(now - 300_000),
    notAfter: new Date(now + days * 86_400_000),
    ca: false,
    signingKey: key,
  });
}

/** CertificationRequestInfo (RFC 2986 4.1) with the key kept as encoded. */
class CsrInfoParts {
  @AsnProp({ type: AsnPropTypes.Integer }) version = 0;
  @AsnProp({ type: Name }) subject = new Name();
  @AsnProp({ type: AsnPropTypes.Any }) subjectPKInfo = new ArrayBuffer(0);
  @AsnProp({ type: Attributes, implicit: true, context: 0, optional: true }) attributes?: Attributes;
}

/** CertificationRequest (RFC 2986 4.2), keeping the bytes the signature covers. */
class CsrParts {
  @AsnProp({ type: CsrInfoParts, raw: true }) certificationRequestInfo = new CsrInfoParts();
  certificationRequestInfoRaw?: ArrayBuffer | Uint8Array;
  @AsnProp({ type: AlgorithmIdentifier }) signatureAlgorithm = new AlgorithmIdentifier();
  @AsnProp({ type: AsnPropTypes.BitString }) signature = new ArrayBuffer(0);
}

export interface Csr {
  der: Buffer;
  /** One entry per attribute, dotted OIDs (multi-valued RDNs flattened). */
  subject: NameAttribute[];
  publicKey: KeyObject;
  /** DER SubjectPublicKeyInfo. */
  spki: Buffer;
  challengePassword?: string;
}

/**
 * Parse a CSR and verify its self-signature (proof that the requester holds the key). Throws only
 * CsrError: a structure error names what is wrong, any other exception is "could not be parsed".
 */
export function parseCsr(der: Buffer): Csr {
  return guarded(
    () => readable('CSR', () => parseUnguarded(der)),
    [CsrError],
    (cause) => new CsrError(cause instanceof Asn1Error ? `CSR: ${cause.message}` : `CSR could not be parsed ${causeName(cause)}`, { cause }),
  );
}

function parseUnguarded(der: Buffer): Csr {
  const csr = decode(der, CsrParts, 'CSR');
  const info = csr.certificationRequestInfo;
  const subject = info.subject.flatMap((rdn) => rdn.map((atv) => ({ name: atv.type, value: valueText(atv.value, 'attribute value') })));
  const spkiDer = Buffer.from(bytes(info.subjectPKInfo));
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: spkiDer, format: 'der', type: 'spki' });
  } catch (cause) {
    throw new CsrError('CSR public key cannot be read', { cause });
  }
  let challengePassword: string | undefined;
  for (const attr of info.attributes ?? []) {
    if (attr.type !== id_challengePassword) continue;
    if (attr.values.length !== 1) throw new Asn1Error('challengePassword must have one value');
    challengePassword = textOf(bytes(attr.values[0]!), 'challengePassword');
  }
  const sigOid = csr.signatureAlgorithm.algorithm;
  if (sigOid === MD5_WITH_RSA) throw new CsrError('CSR is signed with MD5');
  const alg = SIGNATURE_OIDS[sigOid];
  if (!alg?.hash) throw new CsrError(`CSR signature algorithm ${sigOid} is not supported`);
  if (publicKey.asymmetricKeyType !== alg.keyType) throw new CsrError('CSR key type does not match its signature algorithm');
  if (!csr.certificationRequestInfoRaw) throw new Asn1Error('CSR has no certificationRequestInfo');
  let ok: boolean;
  try {
    ok = verify(alg.hash, bytes(csr.certificationRequestInfoRaw), publicKey, bytes(csr.signature));
  } catch {
    ok = false;
  }
  if (!ok) throw new CsrError('CSR signature does not verify');
  return { der, subject, publicKey, spki: spkiDer, challengePassword };
}
