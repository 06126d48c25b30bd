/**
 * The simulator's way in through the front door: fetch the enrollment profile, check its
 * signature, read the SCEP payload, make a key, PKCSReq with the profile's challenge, and end up
 * with the identity and MDM URLs a `SimulatedDevice` needs. Also RenewalReq with the current
 * identity. Speaks SCEP as a device does (GetCACaps, GetCACert, PKIOperation).
 */
import { X509Certificate, generateKeyPair, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { certificateFields, nameAttributes } from '../asn1/certificate.js';
import { buildCsr, selfSignedCertificate, type SubjectEntry } from '../asn1/csr.js';
import type { ContentCipher } from '../asn1/enveloped-data.js';
import { verifyEnrollmentProfile, type VerifiedProfile } from '../enroll/profile.js';
import { buildRequest, readCertRep, type FailInfo } from '../enroll/scep.js';
import type { SimIdentity } from './device.js';
import { Forbidden } from '../errors.js';
import { buildSignedData } from '../asn1/signed-data.js';
import { buildPlist, type PlistDict } from '../protocol/plist.js';

const generateKeyPairAsync = promisify(generateKeyPair);

export interface ScepIdentity extends SimIdentity {
  certPem: string;
  keyPem: string;
}

export class ScepEnrollError extends Forbidden {
  constructor(
    message: string,
    readonly failInfo?: FailInfo,
    readonly failInfoText?: string,
  ) {
    super(message);
    this.name = 'ScepEnrollError';
  }
}

export interface ScepClientOptions {
  /** Request content cipher; default what GetCACaps offers (AES, else 3DES). */
  cipher?: ContentCipher;
  /** PKIOperation by GET or POST; default POST when GetCACaps offers it. */
  method?: 'GET' | 'POST';
  /** Reuse a key (benchmarks); default a fresh RSA key. */
  key?: KeyObject;
}

export interface ScepEnrollOptions extends ScepClientOptions {
  /** The enrollment profile URL: `<server>/mdm/enroll`, or a one-time profileUrl. */
  profileUrl: string;
  /** PEM CA the profile signature must chain to; default the CA the profile carries. */
  trustedCa?: string;
  /**
   * Fetch it as Setup Assistant does (Automated Device Enrollment): POST the device's information,
   * a plist signed by the device, to the url of the ABM enrollment profile.
   */
  setupAssistant?: { serial: string; udid: string; product?: string; version?: string };
}

/** What `new SimulatedDevice({...})` needs to speak as the enrolled device. */
export interface ScepDeviceOptions {
  serverUrl: string;
  identity: ScepIdentity;
  topic: string;
  checkinPath: string;
  connectPath: string;
}

export interface ScepEnrollment {
  identity: ScepIdentity;
  device: ScepDeviceOptions;
  scepUrl: string;
  /** The CA certificate from GetCACert (the renewal goes to it too). */
  caCertDer: Buffer;
  profile: VerifiedProfile;
}

async function fetchBytes(url: string, init?: RequestInit): Promise<{ status: number; type: string; body: Buffer }> {
  const res = await fetch(url, init);
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: Buffer.from(await res.arrayBuffer()) };
}

function withQuery(base: string, params: Record<string, string>): string {
  const u = new URL(base);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.toString();
}

export async function getCACaps(scepUrl: string): Promise<string[]> {
  const r = await fetchBytes(withQuery(scepUrl, { operation: 'GetCACaps' }));
  if (r.status !== 200) throw new ScepEnrollError(`GetCACaps: HTTP ${r.status}`);
  return r.body
    .toString('utf8')
    .split(/\r?\n/)
    .map((s) => s.trim())
    .filter(Boolean);
}

export async function getCACert(scepUrl: string): Promise<Buffer> {
  const r = await fetchBytes(withQuery(scepUrl, { operation: 'GetCACert' }));
  if (r.status !== 200) throw new ScepEnrollError(`GetCACert: HTTP ${r.status}`);
  if (!r.type.startsWith('application/x-x509-ca-cert')) throw new ScepEnrollError(`GetCACert: unexpected content type ${r.type}`);
  return r.body;
}

/** Send a PKIOperation message; returns the CertRep DER. */
export async function pkiOperation(scepUrl: string, message: Buffer, method: 'GET' | 'POST'): Promise<Buffer> {
  const r =
    method === 'POST'
      ? await fetchBytes(withQuery(scepUrl, { operation: 'PKIOperation' }), {
          method: 'POST',
          body: new Uint8Array(message),
          headers: { 'content-type': 'application/x-pki-message' },
        })
      : await fetchBytes(withQuery(scepUrl, { operation: 'PKIOperation', message: message.toString('base64') }));
  if (r.status !== 200) throw new ScepEnrollError(`PKIOperation: HTTP ${r.status}: ${r.body.toString('utf8').trim().slice(0, 200)}`);
  return r.body;
}

interface Negotiated {
  caCertDer: Buffer;
  cipher: ContentCipher;
  method: 'GET' | 'POST';
}

async function negotiate(scepUrl: string, opts: ScepClientOptions): Promise<Negotiated> {
  const [caps, caCertDer] = await Promise.all([getCACaps(scepUrl), getCACert(scepUrl)]);
  const has = (c: string) => caps.some((x) => x.toLowerCase() === c.toLowerCase());
  const standard = has('SCEPStandard');
  return {
    caCertDer,
    cipher: opts.cipher ?? (has('AES') || standard ? 'aes-128-cbc' : 'des-ede3-cbc'),
    method: opts.method ?? (has('POSTPKIOperation') || standard ? 'POST' : 'GET'),
  };
}

async function newKey(bits: number): Promise<KeyObject> {
  return (await generateKeyPairAsync('rsa', { modulusLength: bits })).privateKey;
}

function identityFrom(certDer: Buffer, key: KeyObject): ScepIdentity {
  const x = new X509Certificate(certDer);
  if (!x.checkPrivateKey(key)) throw new ScepEnrollError('issued certificate is not for our key');
  return { certDer, key, certPem: x.toString(), keyPem: key.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

interface RequestArgs {
  scepUrl: string;
  negotiated: Negotiated;
  messageType: 'PKCSReq' | 'RenewalReq';
  key: KeyObject;
  subject: SubjectEntry[];
  challenge?: string;
  /** RenewalReq: the identity signing the request. */
  current?: SimIdentity;
}

async function request(a: RequestArgs): Promise<ScepIdentity> {
  const csr = buildCsr({ key: a.key, subject: a.subject, challengePassword: a.challenge });
  const signer = a.current ?? { certDer: selfSignedCertificate(a.key, a.subject), key: a.key };
  const req = buildRequest({ messageType: a.messageType, csr, signer, recipient: a.negotiated.caCertDer, cipher: a.negotiated.cipher });
  const reply = await pkiOperation(a.scepUrl, req.der, a.negotiated.method);
  const rep = readCertRep(reply, req, a.negotiated.caCertDer, signer);
  if (rep.status !== 'SUCCESS') {
    throw new ScepEnrollError(
      `${a.messageType} ${rep.status}${rep.failInfo ? ` ${rep.failInfo}` : ''}${rep.failInfoText ? `: ${rep.failInfoText}` : ''}`,
      rep.failInfo,
      rep.failInfoText,
    );
  }
  const cert = rep.certificates[0];
  if (!cert) throw new ScepEnrollError('CertRep SUCCESS without a certificate');
  return identityFrom(cert, a.key);
}

function subjectOf(profile: VerifiedProfile): SubjectEntry[] {
  return (profile.scep.Subject ?? []).flatMap((rdn) => rdn.map(([k, v]) => [String(k), String(v)] as SubjectEntry));
}

/** Setup Assistant's request for the profile: the device information, CMS-signed by a device key. */
async function setupAssistantFetch(d: NonNullable<ScepEnrollOptions['setupAssistant']>): Promise<RequestInit> {
  const info: PlistDict = { SERIAL: d.serial, UDID: d.udid, PRODUCT: d.product ?? 'Mac14,2', VERSION: d.version ?? '24B83', LANGUAGE: 'en' };
  const key = await newKey(2048);
  const subject: SubjectEntry[] = [['CN', d.udid]];
  const signed = buildSignedData({ content: buildPlist(info), signer: { key, certDer: selfSignedCertificate(key, subject) }, digest: 'sha256' });
  return { method: 'POST', body: new Uint8Array(signed), headers: { 'content-type': 'application/pkcs7-signature' } };
}

/** Fetch and verify the profile, then enroll through its SCEP payload. */
export async function enrollFromProfile(opts: ScepEnrollOptions): Promise<ScepEnrollment> {
  const r = await fetchBytes(opts.profileUrl, opts.setupAssistant && (await setupAssistantFetch(opts.setupAssistant)));
  if (r.status !== 200) throw new ScepEnrollError(`enrollment profile: HTTP ${r.status}: ${r.body.toString('utf8').trim().slice(0, 200)}`);
  if (!r.type.startsWith('application/x-apple-aspen-config')) throw new ScepEnrollError(`enrollment profile: unexpected content type ${r.type}`);
  const profile = verifyEnrollmentProfile(r.body, opts.trustedCa);
  const scepUrl = profile.scep.URL;
  const negotiated = await negotiate(scepUrl, opts);
  const key = opts.key ?? (await newKey(profile.scep.Keysize ?? 2048));
  const identity = await request({ scepUrl, negotiated, messageType: 'PKCSReq', key, subject: subjectOf(profile), challenge: profile.scep.Challenge });
  const server = new URL(profile.mdm.ServerURL);
  const checkin = new URL(profile.mdm.CheckInURL ?? profile.mdm.ServerURL);
  return {
    identity,
    scepUrl,
    caCertDer: negotiated.caCertDer,
    profile,
    device: { serverUrl: server.origin, identity, topic: profile.mdm.Topic, checkinPath: checkin.pathname, connectPath: server.pathname },
  };
}

/** RenewalReq signed by the current identity; a new key unless `opts.key` is given. */
export async function renewIdentity(scepUrl: string, current: SimIdentity, opts: ScepClientOptions = {}): Promise<ScepIdentity> {
  const negotiated = await negotiate(scepUrl, opts);
  const x = new X509Certificate(current.certDer);
  const subject = nameAttributes(certificateFields(current.certDer).subject).map((a): SubjectEntry => [a.name, a.value]);
  const key = opts.key ?? (await newKey(x.publicKey.asymmetricKeyDetails?.modulusLength ?? 2048));
  return request({ scepUrl, negotiated, messageType: 'RenewalReq', key, subject, current });
}
