/**
 * SCEP enrollment benchmark: PKCSReq round trips against a real server on loopback (in this
 * process), each issuing a certificate: verify the request, decrypt it (RSA-2048 CA key), check
 * the CSR and challenge, issue, encrypt the reply to the requester and sign the CertRep.
 *
 * Requests are built before the clock starts (client-side crypto is the device's cost, not the
 * server's); every reply is checked afterwards (signature, nonce, decrypted certificate), so a
 * failing server cannot look fast. Also: one-time challenges (one file each), and the whole
 * simulator flow (profile fetch and verify, GetCACaps, GetCACert, key, PKCSReq, decrypt).
 * `node dist/bench/scep.js` after `npx tsc -p tsconfig.json`.
 */
import { X509Certificate, generateKeyPair, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { DEFAULTS } from '../src/config.js';
import { buildCsr, selfSignedCertificate } from '../src/asn1/csr.js';
import { buildRequest, readCertRep, type ScepRequest } from '../src/enroll/scep.js';
import { startServer } from '../src/server.js';
import { enrollFromProfile } from '../src/sim/scep-enroll.js';

export interface ScepBenchOptions {
  /** PKCSReq round trips per phase (default 600). */
  enrollments?: number;
  /** Requests in flight (default 8). */
  concurrency?: number;
  /** Full simulator enrollments (default 60). */
  fullFlows?: number;
}

export interface ScepBenchResult {
  /** PKCSReq with the static challenge, issued certificates per second. */
  enrollmentsPerSec: number;
  /** PKCSReq with one-time challenges. */
  oneTimePerSec: number;
  /** The simulator's whole enrollment from the served profile (client crypto included). */
  fullFlowPerSec: number;
  /** ScepAuthority.pkiOperationAsync called directly on one core: the server's crypto, issuing and transaction record, no HTTP. */
  authorityPerSec: number;
  p50ms: number;
  p99ms: number;
  /** CPU of this process (server and HTTP client) per static-challenge enrollment. */
  cpuMsPerEnrollment: number;
  enrollments: number;
  concurrency: number;
}

const generateKeyPairAsync = promisify(generateKeyPair);
const CHALLENGE = 'bench-static-challenge';
const SUBJECT: [string, string][] = [
  ['O', 'Orchard'],
  ['CN', 'Orchard MDM identity'],
];

function percentile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : NaN;
}

interface Prepared {
  req: ScepRequest;
  signer: { certDer: Buffer; key: KeyObject };
}

interface PhaseResult {
  perSec: number;
  latencies: number[];
  cpuMs: number;
  replies: Buffer[];
}

async function run(url: string, jobs: Prepared[], concurrency: number): Promise<PhaseResult> {
  const replies: Buffer[] = new Array(jobs.length);
  const latencies: number[] = [];
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < jobs.length; i = next++) {
        const start = performance.now();
        const res = await fetch(`${url}/scep?operation=PKIOperation`, {
          method: 'POST',
          body: new Uint8Array(jobs[i]!.req.der),
          headers: { 'content-type': 'application/x-pki-message' },
        });
        replies[i] = Buffer.from(await res.arrayBuffer());
        if (res.status !== 200) throw new Error(`PKIOperation HTTP ${res.status}: ${replies[i]!.toString().slice(0, 200)}`);
        latencies.push(performance.now() - start);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { perSec: jobs.length / seconds, latencies: latencies.sort((a, b) => a - b), cpuMs: (cpu.user + cpu.system) / 1000, replies };
}

function checkAll(jobs: Prepared[], replies: Buffer[], ca: Buffer): void {
  jobs.forEach((job, i) => {
    const rep = readCertRep(replies[i]!, job.req, ca, job.signer);
    if (rep.status !== 'SUCCESS') throw new Error(`enrollment ${i}: ${rep.status} ${rep.failInfo} ${rep.failInfoText}`);
    if (!new X509Certificate(rep.certificates[0]!).checkPrivateKey(job.signer.key)) throw new Error(`enrollment ${i}: certificate is for another key`);
  });
}

export async function benchScep(opts: ScepBenchOptions = {}): Promise<ScepBenchResult> {
  const n = opts.enrollments ?? 600;
  const concurrency = opts.concurrency ?? 8;
  const dir = mkdtempSync(join(tmpdir(), 'orchard-bench-scep-'));
  const server = await startServer(
    { ...DEFAULTS, listen: { host: '127.0.0.1', port: 0 }, dataDir: join(dir, 'data'), trustCa: [] },
    {
      // Logged at info as in production (a line per request), into the void.
      log: pino({ level: 'info' }, pino.destination('/dev/null')),
      adminToken: 'bench',
      enrollment: { staticChallenge: CHALLENGE, topic: 'com.apple.mgmt.External.bench' },
    },
  );
  const enroll = server.enrollment;
  try {
    if (!enroll) throw new Error('enrollment was not opened');
    const ca = enroll.caStore.ca.certDer;
    // Devices' keys: a pool, since RSA key generation is the client's cost, not the server's.
    const keys = await Promise.all(Array.from({ length: 16 }, async () => (await generateKeyPairAsync('rsa', { modulusLength: 2048 })).privateKey));
    const signers = keys.map((key) => ({ certDer: selfSignedCertificate(key, SUBJECT), key }));
    const staticCsrs = keys.map((key) => buildCsr({ key, subject: SUBJECT, challengePassword: CHALLENGE }));
    const prepare = (csr: (i: number) => Buffer): Prepared[] =>
      Array.from({ length: n }, (_, i) => {
        const signer = signers[i % signers.length]!;
        return { signer, req: buildRequest({ messageType: 'PKCSReq', csr: csr(i), signer, recipient: ca }) };
      });

    // Warm-up (JIT, connection pool).
    const warm = prepare((i) => staticCsrs[i % staticCsrs.length]!).slice(0, 50);
    checkAll(warm, (await run(server.url, warm, concurrency)).replies, ca);

    const staticJobs = prepare((i) => staticCsrs[i % staticCsrs.length]!);
    const s = await run(server.url, staticJobs, concurrency);
    checkAll(staticJobs, s.replies, ca);

    const challenges = enroll.challenges;
    const minted = await Promise.all(Array.from({ length: n }, () => challenges.create()));
    const oneTimeJobs = prepare((i) => buildCsr({ key: keys[i % keys.length]!, subject: SUBJECT, challengePassword: minted[i]!.challenge }));
    const o = await run(server.url, oneTimeJobs, concurrency);
    checkAll(oneTimeJobs, o.replies, ca);

    // The CA's work alone, no HTTP (fresh transactions, so nothing comes from the retry cache).
    const direct = prepare((i) => staticCsrs[i % staticCsrs.length]!).slice(0, Math.min(n, 300));
    const d0 = performance.now();
    for (const job of direct) await enroll.authority.pkiOperationAsync(job.req.der);
    const authorityPerSec = direct.length / ((performance.now() - d0) / 1000);

    const flows = opts.fullFlows ?? 60;
    let done = 0;
    const f0 = performance.now();
    await Promise.all(
      Array.from({ length: Math.min(concurrency, 4) }, async () => {
        for (let i = done++; i < flows; i = done++) {
          await enrollFromProfile({ profileUrl: `${server.url}/mdm/enroll`, trustedCa: enroll!.caStore.ca.certPem, key: keys[i % keys.length] });
        }
      }),
    );
    const fullFlowPerSec = flows / ((performance.now() - f0) / 1000);

    return {
      enrollmentsPerSec: s.perSec,
      oneTimePerSec: o.perSec,
      fullFlowPerSec,
      authorityPerSec,
      p50ms: percentile(s.latencies, 50),
      p99ms: percentile(s.latencies, 99),
      cpuMsPerEnrollment: s.cpuMs / n,
      enrollments: n,
      concurrency,
    };
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Markdown for BENCHMARKS.md. */
export function formatScep(r: ScepBenchResult): string {
  const f = (x: number, d = 1) => x.toFixed(d);
  return [
    `## SCEP enrollment: ${r.enrollments} PKCSReq per phase, ${r.concurrency} concurrent, RSA-2048, on loopback\n`,
    '| what | enrollments/s |\n|---|---|',
    `| PKCSReq, static challenge (p50 ${f(r.p50ms, 2)} ms, p99 ${f(r.p99ms, 2)} ms) | ${f(r.enrollmentsPerSec, 0)} |`,
    `| PKCSReq, one-time challenges | ${f(r.oneTimePerSec, 0)} |`,
    `| simulator, whole flow from the served profile (client crypto included) | ${f(r.fullFlowPerSec, 0)} |`,
    `| the CA alone (ScepAuthority.pkiOperationAsync, no HTTP, one core) | ${f(r.authorityPerSec, 0)} |`,
    `\nCPU of the process (server + HTTP client) per enrollment: ${f(r.cpuMsPerEnrollment, 2)} ms. Goal: 50 enrollments/s or more.\n`,
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(formatScep(await benchScep()));
}
