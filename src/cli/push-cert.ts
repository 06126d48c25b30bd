/**
 * `orchard push-cert import CERT [KEY]`, `orchard push-cert show [CERT]`, and the way to a push
 * certificate: `orchard push-cert vendor-csr` (key and CSR for Apple's MDM vendor certificate) and
 * `orchard push-cert request --vendor-cert FILE` (the vendor-signed push request for
 * identity.apple.com).
 *
 * Exit codes: 0 done (warnings allowed), 1 refused or expired (topic change without --force, an
 * expired certificate, a key that does not match, not a push certificate, nothing imported),
 * 2 input that cannot be read (missing file, not PEM/DER/PKCS#12, wrong password, bad option).
 * vendor-csr and request: 1 refused (an existing vendor key without --force, a vendor key not the
 * vendor certificate's, an expired vendor certificate), 2 unreadable input or a bad option.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import {
  PushCertError,
  expiryState,
  importPushCertificate,
  loadPushCredentials,
  parsePushCertificate,
  readStoredPushCredentials,
  type PushCertInfo,
} from '../push/push-cert.js';
import { defaultPushKeyFile, pushRequest, requestDir, vendorCsr, vendorDir, VENDOR_KEY_FILE } from '../push/vendor.js';

export interface CliOutput {
  exitCode: 0 | 1 | 2;
  stdout: string;
  stderr: string;
}

export interface PushCertImportOptions {
  dataDir: string;
  /** Store even when the topic changes or the certificate has expired. */
  force?: boolean;
  /** PKCS#12 password or encrypted-key passphrase (the CLI reads ORCHARD_PUSH_CERT_PASSWORD). */
  password?: string;
  now?: Date;
}

function describe(c: PushCertInfo, now: Date): string[] {
  const e = expiryState(c.notAfter, now);
  const when = e.expired ? `EXPIRED (${-e.daysLeft} days ago)` : `in ${e.daysLeft} days`;
  return [
    `  topic:    ${c.topic}`,
    `  subject:  ${c.subject}`,
    `  issuer:   ${c.issuer}`,
    `  valid:    ${c.notBefore.toISOString()} to ${c.notAfter.toISOString()}`,
    `  expires:  ${c.notAfter.toISOString().slice(0, 10)}, ${when}`,
    `  sha256:   ${c.fingerprint256}`,
  ];
}

function failure(err: unknown, what: string): CliOutput {
  if (err instanceof PushCertError) {
    return { exitCode: err.problem === 'unreadable' ? 2 : 1, stdout: '', stderr: `orchard push-cert ${what}: ${err.message}\n` };
  }
  return { exitCode: 2, stdout: '', stderr: `orchard push-cert ${what}: ${(err as Error).message}\n` };
}

/**
 * Check a push certificate and store it under `<dataDir>/push/`. Without a key argument, and
 * none in the certificate file, the key is the one `push-cert request` made
 * (`<dataDir>/push/request/push.key`).
 */
export async function pushCertImport(certPath: string, keyPath: string | undefined, opts: PushCertImportOptions): Promise<CliOutput> {
  const now = opts.now ?? new Date();
  try {
    const importOpts = { force: opts.force, password: opts.password, now };
    let r: ReturnType<typeof importPushCertificate>;
    let defaultKey: string | undefined;
    try {
      r = importPushCertificate(opts.dataDir, certPath, keyPath, importOpts);
    } catch (err) {
      const fallback = defaultPushKeyFile(opts.dataDir);
      if (keyPath !== undefined || !(err instanceof PushCertError) || err.problem !== 'no-key' || !existsSync(fallback)) throw err;
      defaultKey = fallback;
      try {
        r = importPushCertificate(opts.dataDir, certPath, fallback, importOpts);
      } catch (err2) {
        if (err2 instanceof PushCertError && err2.problem === 'key-mismatch') {
          throw new PushCertError(
            'key-mismatch',
            `the key from orchard push-cert request (${show(fallback)}) does not belong to this certificate: pass the key whose CSR Apple signed`,
          );
        }
        throw err2;
      }
    }
    const out = ['imported the push certificate', ...describe(r.cert, now), `  stored:   ${show(r.certFile)}, ${show(r.keyFile)} (mode 0600)`];
    if (defaultKey) out.push(`  key from: ${show(defaultKey)} (made by orchard push-cert request)`);
    const err: string[] = [];
    if (r.previousTopic === undefined) out.push('first push certificate: devices enroll under this topic');
    else if (!r.topicChanged) out.push('renewal: same topic as before, enrolled devices keep working');
    else
      err.push(
        `warning: the topic changed from ${r.previousTopic} to ${r.cert.topic} (--force): devices enrolled under the old topic can no longer be pushed and must enroll again`,
      );
    if (r.expiry.warning) err.push(`warning: ${r.expiry.warning}`);
    out.push('restart orchard serve to use it');
    return { exitCode: 0, stdout: `${out.join('\n')}\n`, stderr: err.map((l) => `${l}\n`).join('') };
  } catch (err) {
    return failure(err, 'import');
  }
}

/** Describe a push certificate file (PEM, DER or PKCS#12), or the imported one. */
export async function pushCertShow(certPath: string | undefined, opts: { dataDir: string; password?: string; now?: Date }): Promise<CliOutput> {
  const now = opts.now ?? new Date();
  try {
    let cert: PushCertInfo | undefined;
    if (certPath) {
      let data: Buffer;
      try {
        data = readFileSync(certPath);
      } catch (err) {
        return { exitCode: 2, stdout: '', stderr: `orchard push-cert show: cannot read ${certPath}: ${(err as Error).message}\n` };
      }
      cert = readAny(data, opts.password);
    } else {
      cert = readStoredPushCredentials(opts.dataDir);
      if (!cert) return { exitCode: 1, stdout: '', stderr: `orchard push-cert show: no push certificate imported in ${opts.dataDir}\n` };
    }
    const e = expiryState(cert.notAfter, now);
    return {
      exitCode: e.expired ? 1 : 0,
      stdout: `${['push certificate', ...describe(cert, now)].join('\n')}\n`,
      stderr: e.warning ? `warning: ${e.warning}\n` : '',
    };
  } catch (err) {
    return failure(err, 'show');
  }
}

/** A certificate alone (PEM/DER), or a PKCS#12 bundle (which needs no separate key to show). */
function readAny(data: Buffer, password?: string): PushCertInfo {
  try {
    return parsePushCertificate(data);
  } catch (err) {
    if (!(err instanceof PushCertError) || err.problem !== 'unreadable') throw err;
    return loadPushCredentials(data, undefined, { password });
  }
}

function show(p: string): string {
  const r = relative(process.cwd(), p);
  return r.startsWith('..') ? p : r;
}

export interface PushCertVendorCsrOptions {
  dataDir: string;
  /** Default `<dataDir>/push/vendor/`. */
  dir?: string;
  /** Subject CN, e.g. the organization's name. */
  cn?: string;
  /** Subject emailAddress: the Apple developer account's. */
  email?: string;
  /** Two-letter country code. */
  country?: string;
  /** Replace an existing vendor.key (orphans the vendor certificate issued for it). */
  force?: boolean;
}

/** `orchard push-cert vendor-csr`: vendor.key (0600) and vendor.csr for Apple's MDM vendor certificate. */
export async function pushCertVendorCsr(opts: PushCertVendorCsrOptions): Promise<CliOutput> {
  if (!opts.cn || !opts.email) {
    return { exitCode: 2, stdout: '', stderr: "orchard push-cert vendor-csr: --cn and --email are required (the Apple developer account's email)\n" };
  }
  const dir = opts.dir ?? vendorDir(opts.dataDir);
  try {
    const r = vendorCsr({ dir, commonName: opts.cn, email: opts.email, country: opts.country, force: opts.force });
    const out = [
      `wrote ${show(r.keyFile)} (private key, mode 0600: keep it, the vendor certificate is useless without it)`,
      `wrote ${show(r.csrFile)}`,
      '',
      'next steps:',
      `  1. at developer.apple.com > Certificates, Identifiers & Profiles, add a certificate of type "MDM CSR" and upload ${show(r.csrFile)}`,
      "  2. download the vendor certificate (mdm.cer), and Apple's intermediate (Apple Worldwide Developer Relations CA) and",
      '     root (Apple Root CA) from apple.com/certificateauthority; put them in one PEM file, vendor certificate first:',
      '       (openssl x509 -inform der -in mdm.cer; openssl x509 -inform der -in AppleWWDRCAG3.cer; openssl x509 -inform der -in AppleIncRootCertificate.cer) > vendor.pem',
      `  3. orchard push-cert request --vendor-cert vendor.pem${opts.dir ? ` --vendor-key ${show(r.keyFile)}` : ''}`,
    ];
    const err = r.replacedKey
      ? `warning: replaced the existing ${VENDOR_KEY_FILE} (--force): a vendor certificate issued for the old key no longer works with it\n`
      : '';
    return { exitCode: 0, stdout: `${out.join('\n')}\n`, stderr: err };
  } catch (err) {
    return failure(err, 'vendor-csr');
  }
}

export interface PushCertRequestOptions {
  dataDir: string;
  /** Vendor certificate (PEM, optionally followed by Apple's intermediate and root; or DER). */
  vendorCert: string;
  /** Default `<dataDir>/push/vendor/vendor.key`. */
  vendorKey?: string;
  /** Default `<dataDir>/push/request/`. */
  dir?: string;
  now?: Date;
}

/** `orchard push-cert request`: the push key and the vendor-signed request for identity.apple.com. */
export async function pushCertRequest(opts: PushCertRequestOptions): Promise<CliOutput> {
  const vendorKeyFile = opts.vendorKey ?? join(vendorDir(opts.dataDir), VENDOR_KEY_FILE);
  const dir = opts.dir ?? requestDir(opts.dataDir);
  try {
    const r = pushRequest({ vendorCertFile: opts.vendorCert, vendorKeyFile, dir, now: opts.now });
    const out = [
      r.createdKey ? `wrote ${show(r.keyFile)} (push private key, mode 0600)` : `reused the existing push key ${show(r.keyFile)}`,
      `wrote ${show(r.csrFile)}`,
      `wrote ${show(r.requestFile)}: the file Apple's push certificates portal accepts`,
      `  signed by: ${r.vendorSubject} (expires ${r.vendorNotAfter.toISOString().slice(0, 10)})`,
      `  chain:     ${r.chain.join(' | ')}`,
      '',
      'next steps:',
      `  1. at https://identity.apple.com (Apple Push Certificates Portal), create a certificate (or renew the current one: the same topic keeps every enrolled device) and upload ${show(r.requestFile)}`,
      '  2. download the push certificate (.pem) and import it:',
      `       orchard push-cert import <downloaded .pem> ${show(r.keyFile)}`,
    ];
    const err: string[] = [];
    const missing = [r.hasIntermediate ? '' : 'intermediate (Apple Worldwide Developer Relations CA)', r.hasRoot ? '' : 'root (Apple Root CA)'].filter(Boolean);
    if (missing.length) {
      err.push(
        `warning: the chain in ${show(opts.vendorCert)} lacks Apple's ${missing.join(' and ')}: the portal may refuse the request; append them (PEM, from apple.com/certificateauthority) after the vendor certificate and run this again`,
      );
    }
    return { exitCode: 0, stdout: `${out.join('\n')}\n`, stderr: err.map((l) => `${l}\n`).join('') };
  } catch (err) {
    return failure(err, 'request');
  }
}
