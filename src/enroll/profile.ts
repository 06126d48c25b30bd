/**
 * The enrollment profile (`.mobileconfig`, PROTOCOL.md 3): the CA certificate, a SCEP payload
 * and the MDM payload whose identity is the SCEP certificate; CMS-signed (attached) by a
 * certificate from our CA so `openssl smime -verify` and devices can check who made it.
 */
import { X509Certificate, randomUUID } from 'node:crypto';
import type { CertifiedKey } from '../identity/ca.js';
import { TrustStore } from '../identity/trust.js';
import { buildPlist, parsePlistDict, type PlistDict, type PlistValue } from '../protocol/plist.js';
import { certificateFields, nameAttribute } from '../asn1/certificate.js';
import type { SubjectEntry } from '../asn1/csr.js';
import { id_userId } from '../asn1/oids.js';
import { isPem, pemToDer } from '../asn1/pem.js';
import { buildSignedData, checkSignature, parseSignedData } from '../asn1/signed-data.js';

export const PROFILE_CONTENT_TYPE = 'application/x-apple-aspen-config';

/** Every MDM access right (AccessRights bits 1..4096). */
export const ALL_ACCESS_RIGHTS = 8191;

export interface EnrollmentProfileOptions {
  /** Base URL devices reach the server at, e.g. https://mdm.example.com (a path prefix is kept). */
  publicUrl: string;
  challenge: string;
  /** The push certificate's topic, com.apple.mgmt.External.<uuid>. */
  topic: string;
  caCertDer: Buffer;
  /** Top-level PayloadIdentifier; default derived from the public URL's host. */
  identifier?: string;
  organization?: string;
  displayName?: string;
  /** Subject of the device identity; default O=<organization>, CN=Orchard MDM identity. */
  subject?: SubjectEntry[];
  keySize?: 1024 | 2048 | 4096;
  accessRights?: number;
  /** Default: per-user connections (macOS user channel) and bootstrap tokens, both served. */
  serverCapabilities?: string[];
  paths?: { scep?: string; checkin?: string; connect?: string };
}

/** A stable reverse-DNS identifier for the server at `publicUrl`: mdm.example.com -> com.example.mdm.orchard.enroll. */
export function defaultIdentifier(publicUrl: string): string {
  const host = new URL(publicUrl).hostname;
  if (!/[a-z]/i.test(host) || host === 'localhost' || host.includes(':')) return 'orchard.enroll';
  return `${host.split('.').filter(Boolean).reverse().join('.')}.orchard.enroll`;
}

function urlFor(base: string, path: string): string {
  return `${base.replace(/\/+$/, '')}${path}`;
}

/** The unsigned profile, XML. */
export function buildEnrollmentProfile(o: EnrollmentProfileOptions): Buffer {
  const org = o.organization ?? 'Orchard';
  const id = o.identifier ?? defaultIdentifier(o.publicUrl);
  const scepUuid = randomUUID().toUpperCase();
  const caName =
    new X509Certificate(o.caCertDer).subject
      ?.split('\n')
      .find((l) => l.startsWith('CN='))
      ?.slice(3) ?? 'Orchard CA';
  const subject: PlistValue[] = (
    o.subject ?? [
      ['O', org],
      ['CN', 'Orchard MDM identity'],
    ]
  ).map(([k, v]) => [[k, v]]);
  const payloads: PlistDict[] = [
    {
      PayloadType: 'com.apple.security.root',
      PayloadIdentifier: `${id}.ca`,
      PayloadUUID: randomUUID().toUpperCase(),
      PayloadVersion: 1,
      PayloadDisplayName: caName,
      PayloadCertificateFileName: 'orchard-ca.cer',
      PayloadContent: new Uint8Array(o.caCertDer),
    },
    {
      PayloadType: 'com.apple.security.scep',
      PayloadIdentifier: `${id}.scep`,
      PayloadUUID: scepUuid,
      PayloadVersion: 1,
      PayloadDisplayName: 'MDM identity (SCEP)',
      PayloadContent: {
        URL: urlFor(o.publicUrl, o.paths?.scep ?? '/scep'),
        Name: 'Orchard',
        Subject: subject,
        Challenge: o.challenge,
        Keysize: o.keySize ?? 2048,
        'Key Type': 'RSA',
        // 1 signing | 4 encryption: the identity signs requests and decrypts the SCEP reply.
        'Key Usage': 5,
      },
    },
    {
      PayloadType: 'com.apple.mdm',
      PayloadIdentifier: `${id}.mdm`,
      PayloadUUID: randomUUID().toUpperCase(),
      PayloadVersion: 1,
      PayloadDisplayName: 'Mobile Device Management',
      IdentityCertificateUUID: scepUuid,
      Topic: o.topic,
      ServerURL: urlFor(o.publicUrl, o.paths?.connect ?? '/mdm/connect'),
      CheckInURL: urlFor(o.publicUrl, o.paths?.checkin ?? '/mdm/checkin'),
      SignMessage: true,
      CheckOutWhenRemoved: true,
      AccessRights: o.accessRights ?? ALL_ACCESS_RIGHTS,
      ServerCapabilities: o.serverCapabilities ?? ['com.apple.mdm.per-user-connections', 'com.apple.mdm.bootstraptoken'],
    },
  ];
  return buildPlist({
    PayloadType: 'Configuration',
    PayloadVersion: 1,
    PayloadIdentifier: id,
    PayloadUUID: randomUUID().toUpperCase(),
    PayloadDisplayName: o.displayName ?? `${org} MDM enrollment`,
    PayloadOrganization: org,
    PayloadDescription: 'Enrolls this device in Orchard mobile device management.',
    PayloadScope: 'System',
    PayloadContent: payloads,
  });
}

/** CMS SignedData around the profile, with the signer's chain embedded. */
export function signProfile(xml: Buffer, signer: CertifiedKey, chain: Buffer[] = []): Buffer {
  return buildSignedData({ content: xml, signer: { certDer: signer.certDer, key: signer.key }, digest: 'sha256', certificates: [signer.certDer, ...chain] });
}

/** The topic (subject UID) of an APNs push certificate. */
export function topicFromPushCert(pem: string | Buffer): string {
  const der = isPem(pem) ? pemToDer(pem) : Buffer.from(pem);
  const uid = nameAttribute(certificateFields(der).subject, id_userId);
  if (!uid || !uid.startsWith('com.apple.mgmt.')) throw new Error('not an MDM push certificate: no com.apple.mgmt.* UID in its subject');
  return uid;
}

export interface ScepPayload {
  URL: string;
  Challenge?: string;
  Keysize?: number;
  Subject?: string[][][];
}

export interface MdmPayload {
  IdentityCertificateUUID: string;
  Topic: string;
  ServerURL: string;
  CheckInURL?: string;
  SignMessage?: boolean;
}

export interface VerifiedProfile {
  profile: PlistDict;
  scep: ScepPayload;
  scepUuid: string;
  mdm: MdmPayload;
  /** The com.apple.security.root payload's certificate, DER. */
  caCertDer?: Buffer;
  signerCert: Buffer;
}

/**
 * Verify a signed enrollment profile as a careful device would and read its payloads. The signer
 * must chain to `trustedCaPem`, or, without it, to the CA certificate the profile itself carries
 * (trust on first use: the profile is at least intact and self-consistent).
 */
export function verifyEnrollmentProfile(der: Buffer, trustedCaPem?: string): VerifiedProfile {
  const signed = parseSignedData(der, 'enrollment profile');
  const { signerCert } = checkSignature(signed);
  if (!signed.content) throw new Error('enrollment profile has no content');
  const profile = parsePlistDict(signed.content);
  const content = Array.isArray(profile.PayloadContent) ? (profile.PayloadContent as PlistDict[]) : [];
  const byType = (t: string) => content.find((p) => p.PayloadType === t);
  const root = byType('com.apple.security.root');
  const scepPayload = byType('com.apple.security.scep');
  const mdm = byType('com.apple.mdm') as unknown as MdmPayload | undefined;
  if (!scepPayload || !mdm) throw new Error('enrollment profile lacks a SCEP or MDM payload');
  const caCertDer = root?.PayloadContent instanceof Uint8Array ? Buffer.from(root.PayloadContent) : undefined;
  const anchor = trustedCaPem ?? (caCertDer ? new X509Certificate(caCertDer).toString() : undefined);
  if (!anchor) throw new Error('no CA to check the profile signature against');
  new TrustStore([anchor]).check(signerCert, signed.certificates);
  if (mdm.IdentityCertificateUUID !== scepPayload.PayloadUUID) throw new Error('MDM IdentityCertificateUUID does not name the SCEP payload');
  return { profile, scep: scepPayload.PayloadContent as unknown as ScepPayload, scepUuid: String(scepPayload.PayloadUUID), mdm, caCertDer, signerCert };
}
