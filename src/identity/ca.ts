/**
 * A small certificate authority: for the device simulator, tests, benchmarks, and the built-in
 * SCEP CA. Certificates are built by src/asn1/certificate.ts (the @peculiar/asn1-x509 schemas)
 * and signed with node:crypto; keys come from node:crypto. The issuer name is the CA
 * certificate's subject byte for byte; CA keys may be RSA or EC.
 */
import { X509Certificate, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { buildCertificate, certificateFields, encodeName, keyIdentifier, randomSerial, serialFromHex, type NameAttribute } from '../asn1/certificate.js';
import { pemToDer, toPem } from '../asn1/pem.js';

export interface CertifiedKey {
  certPem: string;
  certDer: Buffer;
  keyPem: string;
  key: KeyObject;
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
  /** subjectAltName: DNS names and IP addresses (a TLS server certificate). */
  altNames?: { dns?: string[]; ip?: string[] };
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

interface IssuerInfo {
  subject: Buffer;
  keyId: Buffer;
}

// Read once per CA object: issuing many certificates must not re-read the CA each time.
const issuerCache = new WeakMap<CertifiedKey, IssuerInfo>();

function issuerInfo(ca: CertifiedKey): IssuerInfo {
  let info = issuerCache.get(ca);
  if (!info) {
    const fields = certificateFields(ca.certDer);
    info = { subject: fields.subject, keyId: fields.ski ?? keyIdentifier(new X509Certificate(ca.certDer).publicKey) };
    issuerCache.set(ca, info);
  }
  return info;
}

function build(spec: Omit<Parameters<typeof buildCertificate>[0], 'issuer' | 'authorityKeyId'> & { issuer?: CertifiedKey }): {
  certPem: string;
  certDer: Buffer;
} {
  const issuer = spec.issuer ? issuerInfo(spec.issuer) : undefined;
  const certDer = buildCertificate({
    ...spec,
    issuer: issuer ? issuer.subject : encodeName(spec.subject),
    authorityKeyId: issuer?.keyId,
  });
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
    serial: randomSerial(),
    subject,
    publicKey: createPublicKey(key),
    notBefore,
    notAfter: new Date(notBefore.getTime() + (opts.days ?? 3650) * DAY_MS),
    ca: true,
    issuer: opts.issuer,
    signingKey: opts.issuer ? opts.issuer.key : key,
  });
  return certified(cert, key);
}

/** Issue an end-entity certificate for `opts.publicKey`, signed by `ca`. */
export function issueCertificate(ca: CertifiedKey, opts: IssueOptions): { certPem: string; certDer: Buffer } {
  const notBefore = opts.notBefore ?? new Date(Date.now() - CLOCK_SKEW_MS);
  const notAfter = opts.notAfter ?? new Date(notBefore.getTime() + (opts.days ?? 365) * DAY_MS);
  const subject = opts.subject ?? (opts.commonName !== undefined ? [{ name: 'commonName', value: opts.commonName }] : []);
  return build({
    subject,
    publicKey: opts.publicKey.type === 'private' ? createPublicKey(opts.publicKey) : opts.publicKey,
    notBefore,
    notAfter,
    serial: opts.serial === undefined ? randomSerial() : serialFromHex(opts.serial),
    ca: false,
    extKeyUsage: opts.extKeyUsage,
    altNames: opts.altNames,
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
