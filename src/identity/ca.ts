/**
 * A small certificate authority: for the device simulator, tests, benchmarks, and the built-in
 * SCEP CA. node:crypto cannot build certificates, so node-forge assembles the TBSCertificate;
 * keys come from node:crypto (forge's JS keygen is slow) and node:crypto signs the TBS, which
 * makes issuing ~1,000 certificates a second-scale job.
 *
 * The subject public key and the issuer name are spliced into forge's TBS as DER taken from
 * node:crypto and from the CA certificate, so any subject key type (RSA, EC) works and the issuer
 * name is byte-identical to the CA's subject. The CA key itself must be RSA (forge writes
 * RSA signature-algorithm parameters).
 */
import { X509Certificate, createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import forge from 'node-forge';

export interface CertifiedKey {
  certPem: string;
  certDer: Buffer;
  keyPem: string;
  key: KeyObject;
}

export interface NameAttribute {
  /** Long name ('commonName'), short name ('CN') or dotted OID. */
  name: string;
  value: string;
}

export interface CreateCAOptions {
  commonName?: string;
  organization?: string;
  /** Default 3650. */
  days?: number;
  notBefore?: Date;
  /** Sign with this CA instead of self-signing: makes an intermediate CA. */
  issuer?: CertifiedKey;
}

export interface IssueOptions {
  publicKey: KeyObject;
  commonName?: string;
  /** Full subject; overrides commonName. An empty array gives an empty subject (as SCEP devices have). */
  subject?: NameAttribute[];
  /** Default 365. */
  days?: number;
  notBefore?: Date;
  notAfter?: Date;
  /** Hex; default a random positive 128-bit serial. */
  serial?: string;
  extKeyUsage?: ('clientAuth' | 'serverAuth')[];
}

export interface DeviceIdentityOptions {
  days?: number;
  notBefore?: Date;
  notAfter?: Date;
  /** Reuse a key (benchmarks issuing many certs); default a fresh RSA-2048 key. */
  key?: KeyObject;
}

const DAY_MS = 86_400_000;
// Default notBefore is slightly in the past so a peer with a lagging clock accepts new certs.
const CLOCK_SKEW_MS = 5 * 60_000;
const SHA256_WITH_RSA = '1.2.840.113549.1.1.11';
const ID_SKI = '2.5.29.14';

// forge's TBS builder is public but missing from @types/node-forge.
const getTBSCertificate = (forge.pki as unknown as { getTBSCertificate(cert: forge.pki.Certificate): forge.asn1.Asn1 }).getTBSCertificate;

// forge needs *a* public key to build the TBS; the real SubjectPublicKeyInfo replaces it.
const PLACEHOLDER_KEY = forge.pki.setRsaPublicKey(new forge.jsbn.BigInteger('1', 16), new forge.jsbn.BigInteger('10001', 16));

const SHORT_NAMES: Record<string, string> = {
  CN: 'commonName',
  O: 'organizationName',
  OU: 'organizationalUnitName',
  C: 'countryName',
  ST: 'stateOrProvinceName',
  L: 'localityName',
  E: 'emailAddress',
  SERIALNUMBER: 'serialName',
};

const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

function toForgeAttr(a: NameAttribute): forge.pki.CertificateField {
  // forge writes PrintableString by default, which can't hold e.g. '_' or non-ASCII names.
  // (@types/node-forge types valueTagClass as a Class, but forge reads a universal Type.)
  const valueTagClass = (PRINTABLE.test(a.value) ? forge.asn1.Type.PRINTABLESTRING : forge.asn1.Type.UTF8) as number as forge.asn1.Class;
  if (/^\d+(\.\d+)+$/.test(a.name)) return { type: a.name, value: a.value, valueTagClass };
  const long = SHORT_NAMES[a.name.toUpperCase()] ?? a.name;
  if (!(long in forge.pki.oids)) throw new Error(`unknown name attribute ${a.name}`);
  return { name: long, value: a.value, valueTagClass };
}

function binary(buf: Buffer): string {
  return buf.toString('binary');
}

/** PEM CERTIFICATE block of a DER certificate. */
export function toPem(der: Buffer): string {
  const b64 = der.toString('base64').replace(/.{64}(?=.)/g, '$&\n');
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}

/** DER of the first CERTIFICATE block of a PEM. */
export function pemToDer(pem: string): Buffer {
  const m = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/.exec(pem);
  if (!m) throw new Error('no CERTIFICATE block in PEM');
  return Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
}

interface SubjectKeyInfo {
  asn1: forge.asn1.Asn1;
  /** RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
  keyId: Buffer;
}

function subjectKeyInfo(publicKey: KeyObject): SubjectKeyInfo {
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const asn1 = forge.asn1.fromDer(binary(spki));
  const bits = (asn1.value as forge.asn1.Asn1[])[1]!.value as string;
  // Skip the BIT STRING's leading unused-bits octet.
  const keyId = createHash('sha1').update(Buffer.from(bits, 'binary').subarray(1)).digest();
  return { asn1, keyId };
}

interface IssuerInfo {
  subject: forge.asn1.Asn1;
  keyId: Buffer;
}

// Parsed once per CA object: issuing many certificates must not re-parse the CA each time.
const issuerCache = new WeakMap<CertifiedKey, IssuerInfo>();

function issuerInfo(ca: CertifiedKey): IssuerInfo {
  const cached = issuerCache.get(ca);
  if (cached) return cached;
  const cert = forge.asn1.fromDer(binary(ca.certDer));
  const tbs = (cert.value as forge.asn1.Asn1[])[0]!.value as forge.asn1.Asn1[];
  const off = tbs[0]!.tagClass === forge.asn1.Class.CONTEXT_SPECIFIC ? 1 : 0;
  const subject = tbs[off + 4]!;
  let keyId: Buffer | undefined;
  const exts = tbs.find((n) => n.tagClass === forge.asn1.Class.CONTEXT_SPECIFIC && n.type === 3);
  for (const ext of ((exts?.value as forge.asn1.Asn1[] | undefined)?.[0]?.value as forge.asn1.Asn1[]) ?? []) {
    const parts = ext.value as forge.asn1.Asn1[];
    if (forge.asn1.derToOid(parts[0]!.value as string) !== ID_SKI) continue;
    const inner = forge.asn1.fromDer(parts[parts.length - 1]!.value as string);
    keyId = Buffer.from(inner.value as string, 'binary');
  }
  keyId ??= subjectKeyInfo(new X509Certificate(ca.certDer).publicKey).keyId;
  const info = { subject, keyId };
  issuerCache.set(ca, info);
  return info;
}

function normaliseSerial(serial: string | undefined): string {
  if (serial === undefined) {
    const b = randomBytes(16);
    b[0] = (b[0]! & 0x3f) | 0x40; // positive and minimally encoded
    return b.toString('hex');
  }
  let hex = serial.toLowerCase().replace(/^0x/, '').replace(/^0+/, '');
  if (!/^[0-9a-f]*$/.test(hex)) throw new Error(`serial must be hex: ${serial}`);
  if (hex === '') hex = '0';
  if (hex.length % 2) hex = `0${hex}`;
  if (parseInt(hex[0]!, 16) >= 8) hex = `00${hex}`; // keep the INTEGER positive
  return hex;
}

interface BuildOptions {
  subject: NameAttribute[];
  publicKey: KeyObject;
  notBefore: Date;
  notAfter: Date;
  serial?: string;
  extensions: object[];
  /** undefined: self-signed. */
  issuer?: CertifiedKey;
  signingKey: KeyObject;
}

function build(opts: BuildOptions): { certPem: string; certDer: Buffer } {
  if (opts.signingKey.asymmetricKeyType !== 'rsa') {
    throw new Error(`CA key must be RSA, not ${opts.signingKey.asymmetricKeyType}`);
  }
  const ski = subjectKeyInfo(opts.publicKey);
  const issuer = opts.issuer ? issuerInfo(opts.issuer) : undefined;

  const cert = forge.pki.createCertificate();
  cert.publicKey = PLACEHOLDER_KEY;
  cert.serialNumber = normaliseSerial(opts.serial);
  cert.validity.notBefore = opts.notBefore;
  cert.validity.notAfter = opts.notAfter;
  const subject = opts.subject.map(toForgeAttr);
  cert.setSubject(subject);
  cert.setIssuer(subject); // replaced below when issued by another CA
  cert.setExtensions([
    ...opts.extensions,
    {
      name: 'subjectKeyIdentifier',
      value: forge.asn1.create(forge.asn1.Class.UNIVERSAL, forge.asn1.Type.OCTETSTRING, false, binary(ski.keyId)),
    },
    { name: 'authorityKeyIdentifier', keyIdentifier: binary(issuer ? issuer.keyId : ski.keyId) },
  ]);
  cert.signatureOid = SHA256_WITH_RSA;
  cert.siginfo.algorithmOid = SHA256_WITH_RSA;

  const tbs = getTBSCertificate(cert);
  const fields = tbs.value as forge.asn1.Asn1[];
  // Layout fixed by forge: version, serial, signature, issuer, validity, subject, spki, ...
  if (issuer) fields[3] = issuer.subject;
  fields[6] = ski.asn1;
  cert.tbsCertificate = tbs;

  const tbsDer = Buffer.from(forge.asn1.toDer(tbs).getBytes(), 'binary');
  cert.signature = binary(sign('sha256', tbsDer, opts.signingKey));
  const certDer = Buffer.from(forge.asn1.toDer(forge.pki.certificateToAsn1(cert)).getBytes(), 'binary');
  return { certPem: toPem(certDer), certDer };
}

function certified(cert: { certPem: string; certDer: Buffer }, key: KeyObject): CertifiedKey {
  return { ...cert, key, keyPem: key.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

function newKey(): KeyObject {
  return generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
}

/** A CA with a fresh RSA-2048 key: self-signed, or an intermediate when `opts.issuer` is given. */
export function createCA(opts: CreateCAOptions = {}): CertifiedKey {
  const key = newKey();
  const notBefore = opts.notBefore ?? new Date(Date.now() - CLOCK_SKEW_MS);
  const subject: NameAttribute[] = [];
  if (opts.organization !== undefined) subject.push({ name: 'organizationName', value: opts.organization });
  subject.push({ name: 'commonName', value: opts.commonName ?? 'Orchard CA' });
  const cert = build({
    subject,
    publicKey: createPublicKey(key),
    notBefore,
    notAfter: new Date(notBefore.getTime() + (opts.days ?? 3650) * DAY_MS),
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    ],
    issuer: opts.issuer,
    signingKey: opts.issuer ? opts.issuer.key : key,
  });
  return certified(cert, key);
}

/** Issue an end-entity certificate for `opts.publicKey`, signed by `ca`. */
export function issueCertificate(ca: CertifiedKey, opts: IssueOptions): { certPem: string; certDer: Buffer } {
  const notBefore = opts.notBefore ?? new Date(Date.now() - CLOCK_SKEW_MS);
  const notAfter = opts.notAfter ?? new Date(notBefore.getTime() + (opts.days ?? 365) * DAY_MS);
  const extensions: object[] = [
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
  ];
  if (opts.extKeyUsage?.length) {
    extensions.push({ name: 'extKeyUsage', ...Object.fromEntries(opts.extKeyUsage.map((u) => [u, true])) });
  }
  const subject = opts.subject ?? (opts.commonName !== undefined ? [{ name: 'commonName', value: opts.commonName }] : []);
  return build({
    subject,
    publicKey: opts.publicKey.type === 'private' ? createPublicKey(opts.publicKey) : opts.publicKey,
    notBefore,
    notAfter,
    serial: opts.serial,
    extensions,
    issuer: ca,
    signingKey: ca.key,
  });
}

/** A device identity (client-auth certificate + key) issued by `ca`. */
export function createDeviceIdentity(ca: CertifiedKey, commonName: string, opts: DeviceIdentityOptions = {}): CertifiedKey {
  const key = opts.key ?? newKey();
  const cert = issueCertificate(ca, {
    publicKey: createPublicKey(key),
    commonName,
    days: opts.days,
    notBefore: opts.notBefore,
    notAfter: opts.notAfter,
    extKeyUsage: ['clientAuth'],
  });
  return certified(cert, key);
}

/** Load a certificate and its private key (PEM); throws if they don't belong together. */
export function loadCertifiedKey(certPem: string, keyPem: string): CertifiedKey {
  const certDer = pemToDer(certPem);
  const key = createPrivateKey(keyPem);
  if (!new X509Certificate(certDer).checkPrivateKey(key)) {
    throw new Error('private key does not match certificate');
  }
  return { certPem: toPem(certDer), certDer, keyPem, key };
}
