/**
 * `orchard push-cert import CERT [KEY]` and `orchard push-cert show [CERT]`.
 *
 * Exit codes: 0 done (warnings allowed), 1 refused or expired (topic change without --force, an
 * expired certificate, a key that does not match, not a push certificate, nothing imported),
 * 2 input that cannot be read (missing file, not PEM/DER/PKCS#12, wrong password).
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import {
  PushCertError,
  expiryState,
  importPushCertificate,
  loadPushCredentials,
  parsePushCertificate,
  readStoredPushCredentials,
  type PushCertInfo,
} from '../push/push-cert.js';

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
    return { exitCode: err.code === 'unreadable' ? 2 : 1, stdout: '', stderr: `orchard push-cert ${what}: ${err.message}\n` };
  }
  return { exitCode: 2, stdout: '', stderr: `orchard push-cert ${what}: ${(err as Error).message}\n` };
}

/** Check a push certificate and store it under `<dataDir>/push/`. */
export async function pushCertImport(certPath: string, keyPath: string | undefined, opts: PushCertImportOptions): Promise<CliOutput> {
  const now = opts.now ?? new Date();
  try {
    const r = importPushCertificate(opts.dataDir, certPath, keyPath, { force: opts.force, password: opts.password, now });
    const out = ['imported the push certificate', ...describe(r.cert, now), `  stored:   ${show(r.certFile)}, ${show(r.keyFile)} (mode 0600)`];
    const err: string[] = [];
    if (r.previousTopic === undefined) out.push('first push certificate: devices enroll under this topic');
    else if (!r.topicChanged) out.push('renewal: same topic as before, enrolled devices keep working');
    else err.push(`warning: the topic changed from ${r.previousTopic} to ${r.cert.topic} (--force): devices enrolled under the old topic can no longer be pushed and must enroll again`);
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
    if (!(err instanceof PushCertError) || err.code !== 'unreadable') throw err;
    return loadPushCredentials(data, undefined, { password });
  }
}

function show(p: string): string {
  const r = relative(process.cwd(), p);
  return r.startsWith('..') ? p : r;
}
