/**
 * Getting a push certificate from Apple without a third-party MDM vendor:
 *
 * 1. `vendorCsr`: an RSA-2048 key and a CSR for Apple's MDM vendor certificate (uploaded to the
 *    developer portal as an "MDM CSR"; Apple returns the vendor certificate, `mdm.cer`).
 * 2. `pushRequest`: a push key and CSR, signed with the vendor key the way Apple's push
 *    certificates portal (identity.apple.com) expects: base64 of an XML plist holding
 *    `PushCertRequestCSR` (base64 DER CSR), `PushCertCertificateChain` (PEM: vendor certificate,
 *    Apple's intermediate, Apple's root) and `PushCertSignature` (base64 RSA-SHA256 signature
 *    by the vendor key over the DER CSR). This is the format of mdmvendorsign and
 *    `mdmctl mdmcert upload`.
 * 3. The portal returns the push certificate, which `orchard push-cert import` stores together
 *    with the push key from step 2.
 *
 * Keys are never overwritten: a vendor key Apple has certified, or a push key whose request is
 * at Apple, would be lost for good.
 */
import { X509Certificate, createPrivateKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type NameAttribute } from '../asn1/certificate.js';
import { buildCsr } from '../asn1/csr.js';
import { toPem } from '../asn1/pem.js';
import { buildPlist } from '../protocol/plist.js';
import { PushCertError, pushDir } from './push-cert.js';
import { writeAtomic } from '../util/files.js';

export const VENDOR_KEY_FILE = 'vendor.key';
export const VENDOR_CSR_FILE = 'vendor.csr';
export const PUSH_KEY_FILE = 'push.key';
export const PUSH_CSR_FILE = 'push.csr';
export const PUSH_REQUEST_FILE = 'push-request.b64';

/** Where `vendor-csr` writes by default: `<dataDir>/push/vendor/`. */
export function vendorDir(dataDir: string): string {
  return join(pushDir(dataDir), 'vendor');
}

/** Where `request` writes by default (and where `import` looks for the key): `<dataDir>/push/request/`. */
export function requestDir(dataDir: string): string {
  return join(pushDir(dataDir), 'request');
}

/** The push key `request` makes, which `import` uses when given no key. */
export function defaultPushKeyFile(dataDir: string): string {
  return join(requestDir(dataDir), PUSH_KEY_FILE);
}

export interface CsrSubject {
  commonName: string;
  email?: string;
  /** Two-letter ISO 3166 code. */
  country?: string;
}

function subjectAttributes(s: CsrSubject): NameAttribute[] {
  if (!s.commonName.trim()) throw new PushCertError('unreadable', 'the common name is empty');
  const attrs: NameAttribute[] = [];
  if (s.country !== undefined) {
    if (!/^[A-Z]{2}$/.test(s.country))
      throw new PushCertError('unreadable', `country must be two capital letters (ISO 3166), not ${JSON.stringify(s.country)}`);
    attrs.push({ name: 'C', value: s.country });
  }
  attrs.push({ name: 'CN', value: s.commonName });
  if (s.email !== undefined) {
    // PKCS#9 emailAddress is an IA5String: ASCII only.
    if (!/^[\x21-\x7e]+@[\x21-\x7e]+$/.test(s.email)) throw new PushCertError('unreadable', `not an email address: ${JSON.stringify(s.email)}`);
    attrs.push({ name: 'emailAddress', value: s.email });
  }
  return attrs;
}

/** A PKCS#10 CSR (DER) for `key`'s public key, signed SHA-256 with RSA (src/asn1/csr.ts). */
export function createCsr(key: KeyObject, subject: CsrSubject): Buffer {
  if (key.asymmetricKeyType !== 'rsa') throw new Error(`CSR key must be RSA, not ${key.asymmetricKeyType}`);
  return buildCsr({ key, subject: subjectAttributes(subject) });
}

function newKey(): KeyObject {
  return generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
}

function keyPem(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }).toString();
}

function readFile(p: string): Buffer {
  try {
    return readFileSync(p);
  } catch (err) {
    throw new PushCertError('unreadable', `cannot read ${p}: ${(err as Error).message}`);
  }
}

function readPrivateKey(p: string): KeyObject {
  const data = readFile(p);
  try {
    return data.includes('-----BEGIN ') ? createPrivateKey(data) : createPrivateKey({ key: data, format: 'der', type: 'pkcs8' });
  } catch (err) {
    throw new PushCertError('unreadable', `cannot read the private key ${p}: ${(err as Error).message}`);
  }
}

export interface VendorCsrOptions extends CsrSubject {
  /** Output directory (created 0700). */
  dir: string;
  /** Replace an existing vendor key. */
  force?: boolean;
}

export interface VendorCsrResult {
  keyFile: string;
  csrFile: string;
  /** True when --force replaced an existing key. */
  replacedKey: boolean;
}

/** Write `vendor.key` (0600) and `vendor.csr` (PEM) into `opts.dir`; refuses an existing key unless forced. */
export function vendorCsr(opts: VendorCsrOptions): VendorCsrResult {
  const keyFile = join(opts.dir, VENDOR_KEY_FILE);
  const csrFile = join(opts.dir, VENDOR_CSR_FILE);
  const exists = existsSync(keyFile);
  if (exists && !opts.force) {
    throw new PushCertError(
      'key-exists',
      `${keyFile} already exists: a new key would orphan the vendor certificate Apple issued for it (the existing ${VENDOR_CSR_FILE} can be uploaded again); pass --force to replace it`,
    );
  }
  const key = newKey();
  const csr = createCsr(key, opts); // validates the subject before anything is written
  mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
  writeAtomic(keyFile, keyPem(key), 0o600);
  writeAtomic(csrFile, toPem(csr, 'CERTIFICATE REQUEST'), 0o644);
  return { keyFile, csrFile, replacedKey: exists };
}

/** Every certificate in a file: PEM blocks in order, or a single DER certificate. */
export function readCertificates(data: Buffer): X509Certificate[] {
  const text = data.toString('latin1');
  if (text.includes('-----BEGIN ')) {
    const blocks = [...text.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g)];
    return blocks.map((m) => new X509Certificate(Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64')));
  }
  return [new X509Certificate(data)];
}

export interface PushRequestOptions {
  /** The vendor certificate from Apple, optionally followed by Apple's intermediate and root (PEM), or one DER certificate. */
  vendorCertFile: string;
  vendorKeyFile: string;
  /** Output directory (created 0700): push.key, push.csr, push-request.b64. */
  dir: string;
  /** Subject of the push CSR (Apple replaces it; default CN "Orchard MDM push"). */
  subject?: CsrSubject;
  now?: Date;
}

export interface PushRequestResult {
  keyFile: string;
  /** False when an existing push key was reused. */
  createdKey: boolean;
  csrFile: string;
  requestFile: string;
  vendorSubject: string;
  vendorNotAfter: Date;
  /** Chain certificates in the order written (vendor first), by subject. */
  chain: string[];
  hasIntermediate: boolean;
  hasRoot: boolean;
}

/** The plist Apple's push certificates portal accepts, before its base64. */
export function buildPushRequestPlist(csrDer: Buffer, chainPem: string, vendorKey: KeyObject): Buffer {
  return buildPlist({
    PushCertRequestCSR: csrDer.toString('base64'),
    PushCertCertificateChain: chainPem,
    PushCertSignature: sign('sha256', csrDer, vendorKey).toString('base64'),
  });
}

/**
 * Make (or reuse) the push key, a push CSR, and the vendor-signed request for identity.apple.com.
 * Refuses a vendor key that is not the vendor certificate's, and an expired vendor certificate.
 */
export function pushRequest(opts: PushRequestOptions): PushRequestResult {
  const now = opts.now ?? new Date();
  let certs: X509Certificate[];
  try {
    certs = readCertificates(readFile(opts.vendorCertFile));
  } catch (err) {
    if (err instanceof PushCertError) throw err;
    throw new PushCertError('unreadable', `cannot read the vendor certificate ${opts.vendorCertFile}: ${(err as Error).message}`);
  }
  if (certs.length === 0) throw new PushCertError('no-certificate', `no certificate in ${opts.vendorCertFile}`);
  const vendorKey = readPrivateKey(opts.vendorKeyFile);
  const vendor = certs.find((c) => c.checkPrivateKey(vendorKey));
  if (!vendor) {
    throw new PushCertError(
      'key-mismatch',
      `the vendor key ${opts.vendorKeyFile} does not belong to ${certs.length === 1 ? 'the certificate' : 'any certificate'} in ${opts.vendorCertFile}: use the key that made the vendor CSR`,
    );
  }
  const vendorNotAfter = new Date(vendor.validTo);
  if (vendorNotAfter.getTime() <= now.getTime()) {
    throw new PushCertError(
      'expired',
      `the vendor certificate expired on ${vendorNotAfter.toISOString().slice(0, 10)}: Apple would refuse the request; renew it in the developer portal`,
    );
  }
  const rest = certs.filter((c) => c !== vendor);
  const chain = [vendor, ...rest];
  const hasIntermediate = rest.some((c) => vendor.checkIssued(c) && vendor.verify(c.publicKey));
  const hasRoot = rest.some((c) => c.subject === c.issuer && c.checkIssued(c) && c.verify(c.publicKey));

  mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
  const keyFile = join(opts.dir, PUSH_KEY_FILE);
  const createdKey = !existsSync(keyFile);
  let pushKey: KeyObject;
  if (createdKey) {
    pushKey = newKey();
    writeAtomic(keyFile, keyPem(pushKey), 0o600);
  } else {
    pushKey = readPrivateKey(keyFile);
  }
  const csr = createCsr(pushKey, opts.subject ?? { commonName: 'Orchard MDM push' });
  const csrFile = join(opts.dir, PUSH_CSR_FILE);
  writeAtomic(csrFile, toPem(csr, 'CERTIFICATE REQUEST'), 0o644);
  const chainPem = chain.map((c) => c.toString()).join('');
  const plist = buildPushRequestPlist(csr, chainPem, vendorKey);
  const requestFile = join(opts.dir, PUSH_REQUEST_FILE);
  writeAtomic(requestFile, plist.toString('base64'), 0o644);
  return {
    keyFile,
    createdKey,
    csrFile,
    requestFile,
    vendorSubject: vendor.subject.replace(/\n/g, ', '),
    vendorNotAfter,
    chain: chain.map((c) => c.subject.replace(/\n/g, ', ')),
    hasIntermediate,
    hasRoot,
  };
}
