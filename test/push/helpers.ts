/** A real push certificate from a test CA, a pino logger that keeps its lines, polling, and an APNs client's parts for the stand-in. */
import { createPublicKey, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { createCA, issueCertificate, type CertifiedKey } from '../../src/identity/ca.js';
import type { ApnsConfig } from '../../src/push/apns.js';
import { UID_OID } from '../../src/push/push-cert.js';
import type { ApnsStandIn } from '../../src/sim/apns.js';
import type { EnrollmentRecord } from '../../src/store/types.js';

export interface TestPushCert {
  ca: CertifiedKey;
  topic: string;
  certPem: string;
  keyPem: string;
}

/** Shaped like Apple's: UID=topic, CN=APSP:<uuid>, C=US, client auth. */
export function makePushCert(opts: { ca?: CertifiedKey; topic?: string; notBefore?: Date; notAfter?: Date; withUid?: boolean } = {}): TestPushCert {
  const ca = opts.ca ?? createCA({ commonName: 'Test Apple Application Integration CA' });
  const uuid = randomUUID();
  const topic = opts.topic ?? `com.apple.mgmt.External.${uuid}`;
  const key = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const subject = [...(opts.withUid === false ? [] : [{ name: UID_OID, value: topic }]), { name: 'CN', value: `APSP:${uuid}` }, { name: 'C', value: 'US' }];
  const { certPem } = issueCertificate(ca, {
    publicKey: createPublicKey(key),
    subject,
    notBefore: opts.notBefore,
    notAfter: opts.notAfter,
    extKeyUsage: ['clientAuth'],
  });
  return { ca, topic, certPem, keyPem: key.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export function captureLog(): { log: Logger; lines: LogLine[]; text: () => string } {
  const lines: LogLine[] = [];
  const raw: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) {
        if (!line) continue;
        raw.push(line);
        lines.push(JSON.parse(line) as LogLine);
      }
      cb();
    },
  });
  return { log: pino({ level: 'debug' }, sink), lines, text: () => raw.join('\n') };
}

/** Poll until `check` returns truthy, or fail after `timeoutMs`. */
export async function until<T>(check: () => T | Promise<T>, what: string, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** An APNs client's config for `target` with `cert`, with windows and retries short enough for tests. */
export function standInConfig(target: ApnsStandIn, cert: TestPushCert): ApnsConfig {
  return {
    url: target.url,
    ca: target.tls.caPem,
    certPem: cert.certPem,
    keyPem: cert.keyPem,
    coalesceMs: 30,
    retryBaseMs: 20,
    retryMaxMs: 200,
    requestTimeoutMs: 2000,
  };
}

/** An active device enrollment with a fresh push token under `topic`. */
export function pushEnrollment(
  topic: string,
  over: Partial<EnrollmentRecord> = {},
  push: Partial<NonNullable<EnrollmentRecord['push']>> = {},
): EnrollmentRecord {
  const id = over.id ?? randomUUID().toUpperCase();
  return {
    id,
    deviceId: id,
    type: 'device',
    active: true,
    push: { token: randomBytes(32).toString('hex'), pushMagic: randomUUID().toUpperCase(), topic, ...push },
    createdAt: new Date().toISOString(),
    updatedAt: new Date().toISOString(),
    ...over,
  };
}
