/**
 * X.509 certificates (RFC 5280) through the @peculiar/asn1-x509 schemas: the TBSCertificate
 * fields Orchard reads (serial, names, key, extensions), names built and read, and certificates
 * built and signed with node:crypto (which cannot build them; the schemas can, synchronously).
 */
import { createHash, createPublicKey, randomBytes, sign, type KeyObject } from 'node:crypto';
import { AsnConvert, AsnIntegerArrayBufferConverter, AsnProp, AsnPropTypes, OctetString } from '@peculiar/asn1-schema';
import {
  AlgorithmIdentifier,
  AttributeTypeAndValue,
  AttributeValue,
  BasicConstraints,
  ExtendedKeyUsage,
  Extension,
  Extensions,
  GeneralName,
  KeyUsage,
  Name,
  RelativeDistinguishedName,
  SubjectAlternativeName,
  SubjectPublicKeyInfo,
  id_ce_authorityKeyIdentifier,
  id_ce_basicConstraints,
  id_ce_extKeyUsage,
  id_ce_keyUsage,
  id_ce_subjectAltName,
  id_ce_subjectKeyIdentifier,
  id_kp_clientAuth,
  id_kp_serverAuth,
} from '@peculiar/asn1-x509';
import { Asn1Error, bytes, decode, octetsOf, readable, valueText } from './decode.js';
import { algorithm, bitString, ctx, ctxPrim, int, NULL, octets, oid, seq, time, tlv } from './der.js';
import { signatureOid } from './oids.js';
import { LruMap } from '../store/lru.js';

/** One attribute of a distinguished name: a short name ('CN'), long name ('commonName') or dotted OID. */
export interface NameAttribute {
  name: string;
  value: string;
}

// ---- reading ----

/** TBSCertificate with the names and the key kept as encoded: issuerAndSerialNumber must repeat them exactly. */
class TbsParts {
  @AsnProp({ type: AsnPropTypes.Integer, context: 0, defaultValue: 0 }) version = 0;
  @AsnProp({ type: AsnPropTypes.Integer, converter: AsnIntegerArrayBufferConverter }) serialNumber = new ArrayBuffer(0);
  @AsnProp({ type: AlgorithmIdentifier }) signature = new AlgorithmIdentifier();
  @AsnProp({ type: AsnPropTypes.Any }) issuer = new ArrayBuffer(0);
  @AsnProp({ type: AsnPropTypes.Any }) validity = new ArrayBuffer(0);
  @AsnProp({ type: AsnPropTypes.Any }) subject = new ArrayBuffer(0);
  @AsnProp({ type: AsnPropTypes.Any }) subjectPublicKeyInfo = new ArrayBuffer(0);
  @AsnProp({ type: AsnPropTypes.BitString, context: 1, implicit: true, optional: true }) issuerUniqueID?: ArrayBuffer;
  @AsnProp({ type: AsnPropTypes.BitString, context: 2, implicit: true, optional: true }) subjectUniqueID?: ArrayBuffer;
  // Kept as encoded until asked for (subjectKeyIdentifier): matching a CMS signer needs only the serial and issuer.
  @AsnProp({ type: AsnPropTypes.Any, context: 3, optional: true }) extensions?: ArrayBuffer;
}

class CertificateParts {
  @AsnProp({ type: TbsParts }) tbsCertificate = new TbsParts();
  @AsnProp({ type: AlgorithmIdentifier }) signatureAlgorithm = new AlgorithmIdentifier();
  @AsnProp({ type: AsnPropTypes.BitString }) signatureValue = new ArrayBuffer(0);
}

/** What Orchard reads from a certificate's TBSCertificate; names and key as encoded. */
export interface CertificateFields {
  /** The serial INTEGER's content octets. */
  serial: Buffer;
  issuer: Buffer;
  subject: Buffer;
  /** SubjectPublicKeyInfo DER. */
  spki: Buffer;
  /** IssuerAndSerialNumber DER (RFC 5652 10.2.4), as CMS names this certificate. */
  issuerAndSerial: Buffer;
  /** SubjectKeyIdentifier, when the certificate has one (read on first use). */
  readonly ski: Buffer | undefined;
  /** The extensions (read on first use). */
  readonly extensions: Extension[];
}

class Fields implements CertificateFields {
  private exts?: Extension[];
  private ias?: Buffer;
  constructor(
    readonly serial: Buffer,
    readonly issuer: Buffer,
    readonly subject: Buffer,
    readonly spki: Buffer,
    private readonly extensionsDer: Buffer | undefined,
  ) {}

  get issuerAndSerial(): Buffer {
    this.ias ??= seq(this.issuer, tlv(0x02, this.serial));
    return this.ias;
  }

  get extensions(): Extension[] {
    const der = this.extensionsDer;
    this.exts ??= der ? readable('certificate extensions', () => [...decode(der, Extensions, 'extensions')]) : [];
    return this.exts;
  }

  get ski(): Buffer | undefined {
    const ext = this.extensions.find((e) => e.extnID === id_ce_subjectKeyIdentifier);
    return ext ? keyIdOf(bytes(ext.extnValue.buffer)) : undefined;
  }
}

// Keyed by the caller's Buffer (a CA certificate signs every reply; entries die with the
// Buffer), and by the digest of the bytes: a device's certificate arrives in a new Buffer with
// every signature the fast reader leaves to the schema reader.
const fieldsCache = new WeakMap<Buffer, CertificateFields>();
const fieldsByDigest = new LruMap<string, CertificateFields>(10_000);

/** The TBSCertificate fields of a DER certificate. Throws only Asn1Error. */
export function certificateFields(der: Buffer): CertificateFields {
  const cached = fieldsCache.get(der);
  if (cached) return cached;
  const digest = createHash('sha256').update(der).digest('base64');
  const known = fieldsByDigest.get(digest);
  if (known) {
    fieldsCache.set(der, known);
    return known;
  }
  const fields = readable('certificate', () => {
    const tbs = decode(der, CertificateParts, 'certificate').tbsCertificate;
    const exts = tbs.extensions;
    return new Fields(bytes(tbs.serialNumber), bytes(tbs.issuer), bytes(tbs.subject), bytes(tbs.subjectPublicKeyInfo), exts ? bytes(exts) : undefined);
  });
  fieldsCache.set(der, fields);
  fieldsByDigest.set(digest, fields);
  return fields;
}

/** An unreadable SubjectKeyIdentifier names nothing; the rest of the certificate stays readable. */
function keyIdOf(extnValue: Buffer): Buffer | undefined {
  try {
    return octetsOf(extnValue, 'subjectKeyIdentifier');
  } catch {
    return undefined;
  }
}

/** The attributes of an encoded Name, in order (multi-valued RDNs flattened), types as dotted OIDs. */
export function nameAttributes(nameDer: Buffer, what = 'name'): NameAttribute[] {
  return readable(what, () => decode(nameDer, Name, what).flatMap((rdn) => rdn.map((atv) => ({ name: atv.type, value: valueText(atv.value, what) }))));
}

/** The value of the first `oid` attribute of an encoded Name. */
export function nameAttribute(nameDer: Buffer, oid: string): string | undefined {
  return nameAttributes(nameDer).find((a) => a.name === oid)?.value;
}

// ---- names ----

const NAME_OIDS: Record<string, string> = {
  CN: '2.5.4.3',
  COMMONNAME: '2.5.4.3',
  SERIALNUMBER: '2.5.4.5',
  C: '2.5.4.6',
  COUNTRYNAME: '2.5.4.6',
  L: '2.5.4.7',
  LOCALITYNAME: '2.5.4.7',
  ST: '2.5.4.8',
  STATEORPROVINCENAME: '2.5.4.8',
  O: '2.5.4.10',
  ORGANIZATIONNAME: '2.5.4.10',
  OU: '2.5.4.11',
  ORGANIZATIONALUNITNAME: '2.5.4.11',
  E: '1.2.840.113549.1.9.1',
  EMAILADDRESS: '1.2.840.113549.1.9.1',
  UID: '0.9.2342.19200300.100.1.1',
  USERID: '0.9.2342.19200300.100.1.1',
  DC: '0.9.2342.19200300.100.1.25',
};
const IA5_TYPES = new Set([NAME_OIDS.E, NAME_OIDS.DC]);
const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

/** The dotted OID of a name attribute given by short name, long name or OID. */
export function attributeOid(name: string): string {
  if (/^\d+(\.\d+)+$/.test(name)) return name;
  const o = NAME_OIDS[name.toUpperCase()];
  if (!o) throw new Error(`unknown name attribute ${name}`);
  return o;
}

/**
 * An X.501 Name, one attribute per RDN: PrintableString where the value allows it, else
 * UTF8String; IA5String for emailAddress and domainComponent.
 */
export function buildName(attributes: NameAttribute[]): Name {
  return new Name(
    attributes.map(({ name, value }) => {
      const type = attributeOid(name);
      const v = IA5_TYPES.has(type)
        ? new AttributeValue({ ia5String: value })
        : PRINTABLE.test(value)
          ? new AttributeValue({ printableString: value })
          : new AttributeValue({ utf8String: value });
      return new RelativeDistinguishedName([new AttributeTypeAndValue({ type, value: v })]);
    }),
  );
}

// A CA issues for few distinct subjects (SCEP devices share theirs): each encoded once.
const encodedNames = new LruMap<string, Buffer>(1000);

/** buildName, DER. */
export function encodeName(attributes: NameAttribute[]): Buffer {
  const key = JSON.stringify(attributes.map((a) => [a.name, a.value]));
  let der = encodedNames.get(key);
  if (!der) encodedNames.set(key, (der = Buffer.from(AsnConvert.serialize(buildName(attributes)))));
  return der;
}

// ---- building ----

/** The signature AlgorithmIdentifier (DER) for a signing key: SHA-256 with RSA or ECDSA. */
export function signatureAlgorithm(key: KeyObject): Buffer {
  if (key.asymmetricKeyType === 'rsa') return algorithm(signatureOid('rsa', 'sha256'), NULL);
  if (key.asymmetricKeyType === 'ec') return algorithm(signatureOid('ec', 'sha256'));
  throw new Error(`unsupported signing key type ${key.asymmetricKeyType}`);
}

/** ToBeSigned bytes, their signature algorithm and signature: the outer SEQUENCE of certificates and CSRs. */
export function signed(tbs: Buffer, key: KeyObject): Buffer {
  return seq(tbs, signatureAlgorithm(key), bitString(sign('sha256', tbs, key)));
}

function spkiOf(key: KeyObject): Buffer {
  return (key.type === 'private' ? createPublicKey(key) : key).export({ type: 'spki', format: 'der' });
}

/** RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits of a SubjectPublicKeyInfo. */
function keyIdOfSpki(spki: Buffer): Buffer {
  return createHash('sha1')
    .update(bytes(decode(spki, SubjectPublicKeyInfo, 'public key').subjectPublicKey))
    .digest();
}

/** RFC 5280 4.2.1.2 method 1 for a key. */
export function keyIdentifier(key: KeyObject): Buffer {
  return keyIdOfSpki(spkiOf(key));
}

/** A random positive 128-bit serial, minimally encoded. */
export function randomSerial(): Buffer {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x3f) | 0x40;
  return b;
}

export type ExtendedKeyUsageName = 'clientAuth' | 'serverAuth';

export interface CertificateSpec {
  /** The serial INTEGER's content octets (positive). */
  serial: Buffer;
  /** The issuer's subject Name, DER (byte for byte as in the issuer's certificate). */
  issuer: Buffer;
  subject: NameAttribute[];
  /** The certified key (a private key stands for its public half). */
  publicKey: KeyObject;
  notBefore: Date;
  notAfter: Date;
  ca: boolean;
  extKeyUsage?: ExtendedKeyUsageName[];
  /** subjectAltName entries (a TLS server certificate's names). */
  altNames?: { dns?: string[]; ip?: string[] };
  /** The issuer's key identifier (its SubjectKeyIdentifier); default the certified key's (self-signed). */
  authorityKeyId?: Buffer;
  signingKey: KeyObject;
}

function extension(extnID: string, value: object, critical = false): Buffer {
  return Buffer.from(AsnConvert.serialize(new Extension({ extnID, critical, extnValue: new OctetString(AsnConvert.serialize(value)) })));
}

// The extensions every certificate of a kind shares, encoded once: issuing is a hot loop for
// the SCEP CA and the benchmarks.
const constantExtensions = new Map<string, Buffer>();
function constant(key: string, make: () => Buffer): Buffer {
  let der = constantExtensions.get(key);
  if (!der) constantExtensions.set(key, (der = make()));
  return der;
}

const EKU_OIDS: Record<ExtendedKeyUsageName, string> = { clientAuth: id_kp_clientAuth, serverAuth: id_kp_serverAuth };

function subjectAltName(names: { dns?: string[]; ip?: string[] }): SubjectAlternativeName {
  return new SubjectAlternativeName([
    ...(names.dns ?? []).map((dNSName) => new GeneralName({ dNSName })),
    ...(names.ip ?? []).map((iPAddress) => new GeneralName({ iPAddress })),
  ]);
}

/**
 * A certificate, DER: v3, SHA-256 signature by `signingKey`, SubjectKeyIdentifier and
 * AuthorityKeyIdentifier. The TBSCertificate's fields (RFC 5280 4.1) are written in order from
 * their encodings: the issuer name and the key as given, names and extensions by the schemas.
 */
export function buildCertificate(spec: CertificateSpec): Buffer {
  const spki = spkiOf(spec.publicKey);
  const ski = keyIdOfSpki(spki);
  const usage = spec.ca ? 0x20 | 0x40 : 0x01 | 0x04; // keyCertSign|cRLSign, digitalSignature|keyEncipherment
  const eku = spec.extKeyUsage ?? [];
  const extensions = [
    constant(`basicConstraints ${spec.ca}`, () => extension(id_ce_basicConstraints, new BasicConstraints({ cA: spec.ca }), spec.ca)),
    constant(`keyUsage ${usage}`, () => extension(id_ce_keyUsage, new KeyUsage(usage), true)),
    ...(eku.length ? [constant(`extKeyUsage ${eku.join()}`, () => extension(id_ce_extKeyUsage, new ExtendedKeyUsage(eku.map((u) => EKU_OIDS[u]))))] : []),
    ...(spec.altNames ? [extension(id_ce_subjectAltName, subjectAltName(spec.altNames))] : []),
    // Per certificate, so written directly: SEQUENCE { extnID, OCTET STRING { SubjectKeyIdentifier / AuthorityKeyIdentifier } }.
    seq(oid(id_ce_subjectKeyIdentifier), octets(octets(ski))),
    seq(oid(id_ce_authorityKeyIdentifier), octets(seq(ctxPrim(0, spec.authorityKeyId ?? ski)))),
  ];
  const tbs = seq(
    ctx(0, int(2)), // version: v3
    tlv(0x02, spec.serial),
    signatureAlgorithm(spec.signingKey),
    spec.issuer,
    seq(time(spec.notBefore), time(spec.notAfter)),
    encodeName(spec.subject),
    spki,
    ctx(3, seq(...extensions)),
  );
  return signed(tbs, spec.signingKey);
}

/** Check a positive serial given as hex; returns its INTEGER content octets. */
export function serialFromHex(hex: string): Buffer {
  let h = hex.toLowerCase().replace(/^0x/, '').replace(/^0+/, '');
  if (!/^[0-9a-f]*$/.test(h)) throw new Asn1Error(`serial must be hex: ${hex}`);
  if (h === '') h = '0';
  if (h.length % 2) h = `0${h}`;
  if (parseInt(h[0]!, 16) >= 8) h = `00${h}`; // keep the INTEGER positive
  return Buffer.from(h, 'hex');
}
