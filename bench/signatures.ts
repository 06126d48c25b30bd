/**
 * Device identities and Mdm-Signatures made outside the project's code, for benchmarks that
 * should see what real clients send: keys and certificates from `openssl req`, signatures from
 * `openssl cms -sign`.
 *
 * The key set is cached (default `$TMPDIR/orchard-bench-pki`, or ORCHARD_BENCH_PKI) and reused
 * across runs: one CA (RSA-2048) and, per key type, `<i>.key` / `<i>.pem` for device i, each
 * device with its own key. Generating RSA-2048 keys costs ~0.1-0.4 s each on this VM, EC P-256
 * ~15 ms. Deterministic signatures (SHA-1, no signed attributes) are cached there too;
 * signatures with signed attributes are made afresh on every run, since their signing time is
 * what makes each one new.
 *
 * Signatures come from OpenSSL's CMS code either way: by default from cms-sign-batch.py, which
 * makes the libcrypto calls `openssl cms -sign` makes (byte-identical output for RSA without
 * attributes) in one process per core; ORCHARD_BENCH_SIGNER=cli runs `openssl cms -sign` once
 * per signature instead (30-50 signatures/s on the loaded VM, too slow for 10,000 devices).
 */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';

export type BenchKeyType = 'rsa2048' | 'p256';
/** `sha1-noattr`: `-noattr -md sha1`, like captured devices; `sha256-attr`: `-md sha256` with contentType, signingTime, messageDigest. */
export type BenchSigMode = 'sha1-noattr' | 'sha256-attr';

export interface BenchDeviceKey {
  index: number;
  certPath: string;
  keyPath: string;
}

export interface BenchPki {
  dir: string;
  caCertPath: string;
  keyType: BenchKeyType;
  devices: BenchDeviceKey[];
  /** Seconds spent generating keys missing from the cache in this call. */
  generatedSeconds: number;
}

const DEVICE_CNF = `[req]
distinguished_name=dn
prompt=no
[dn]
CN=device
[device]
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
`;

function run(args: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { encoding: 'buffer', maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`openssl ${args[0]} failed: ${stderr.toString().trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

/** Run `jobs` with at most `parallel` at a time, results in order. */
async function pool<T>(jobs: (() => Promise<T>)[], parallel = Math.max(2, cpus().length)): Promise<T[]> {
  const out = new Array<T>(jobs.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(parallel, jobs.length) }, async () => {
      while (next < jobs.length) {
        const i = next++;
        out[i] = await jobs[i]!();
      }
    }),
  );
  return out;
}

export function defaultPkiDir(): string {
  return process.env.ORCHARD_BENCH_PKI ?? join(tmpdir(), 'orchard-bench-pki');
}

/** The cached key set, with devices 0..count-1 generated if missing. */
export async function benchPki(keyType: BenchKeyType, count: number, dir = defaultPkiDir()): Promise<BenchPki> {
  mkdirSync(join(dir, keyType), { recursive: true });
  const caCertPath = join(dir, 'ca.pem');
  const caKeyPath = join(dir, 'ca.key');
  const cnf = join(dir, 'dev.cnf');
  if (!existsSync(cnf)) writeFileSync(cnf, DEVICE_CNF);
  if (!existsSync(caCertPath)) {
    await run([
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      caKeyPath,
      '-out',
      caCertPath,
      '-days',
      '3650',
      '-subj',
      '/O=Orchard Bench/CN=Orchard Bench Device CA',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ]);
  }
  const newKey = keyType === 'rsa2048' ? ['-newkey', 'rsa:2048'] : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
  const devices: BenchDeviceKey[] = [];
  const missing: (() => Promise<void>)[] = [];
  for (let i = 0; i < count; i++) {
    const d = { index: i, certPath: join(dir, keyType, `${i}.pem`), keyPath: join(dir, keyType, `${i}.key`) };
    devices.push(d);
    if (existsSync(d.certPath) && existsSync(d.keyPath)) continue;
    missing.push(async () => {
      await run([
        'req',
        '-x509',
        ...newKey,
        '-nodes',
        '-keyout',
        `${d.keyPath}.tmp`,
        '-out',
        `${d.certPath}.tmp`,
        '-days',
        '3650',
        '-subj',
        `/CN=bench-device-${i}`,
        '-CA',
        caCertPath,
        '-CAkey',
        caKeyPath,
        '-config',
        cnf,
        '-extensions',
        'device',
      ]);
      renameSync(`${d.keyPath}.tmp`, d.keyPath);
      renameSync(`${d.certPath}.tmp`, d.certPath);
    });
  }
  const t = performance.now();
  await pool(missing);
  return { dir, caCertPath, keyType, devices, generatedSeconds: (performance.now() - t) / 1000 };
}

export interface SignJob {
  body: Buffer;
  device: BenchDeviceKey;
  mode: BenchSigMode;
}

/**
 * `openssl cms -sign` every job (detached, DER, base64: an Mdm-Signature value), in parallel.
 * `sha1-noattr` results are cached under `cacheDir` (they are deterministic for RSA; for EC the
 * cached one is simply one valid signature, as a device resending its message would send).
 */
export async function opensslSignAll(jobs: SignJob[], cacheDir?: string): Promise<string[]> {
  const work = mkdtempSync(join(tmpdir(), 'orchard-bench-sig-'));
  const bodies = new Map<string, string>();
  const bodyFile = (body: Buffer) => {
    const h = createHash('sha256').update(body).digest('hex');
    let f = bodies.get(h);
    if (!f) {
      f = join(work, `${bodies.size}.body`);
      writeFileSync(f, body);
      bodies.set(h, f);
    }
    return { file: f, hash: h };
  };
  if (cacheDir) mkdirSync(cacheDir, { recursive: true });
  try {
    if (process.env.ORCHARD_BENCH_SIGNER !== 'cli') {
      const out = new Array<string>(jobs.length);
      const todo: { i: number; line: string; cached?: string }[] = [];
      jobs.forEach((job, i) => {
        const { file, hash } = bodyFile(job.body);
        const cached = cacheDir && job.mode === 'sha1-noattr' ? join(cacheDir, `${job.device.index}.${hash.slice(0, 24)}.b64`) : undefined;
        if (cached && existsSync(cached)) out[i] = readFileSync(cached, 'utf8');
        else todo.push({ i, line: `${job.mode}\t${job.device.certPath}\t${job.device.keyPath}\t${file}\n`, cached });
      });
      const parts = Math.max(1, Math.min(cpus().length, Math.ceil(todo.length / 200)));
      const chunks = Array.from({ length: parts }, (_, p) => todo.filter((_, k) => k % parts === p));
      await Promise.all(
        chunks.map(async (chunk) => {
          const sigs = await batchSign(chunk.map((t) => t.line).join(''));
          if (sigs.length !== chunk.length) throw new Error(`cms-sign-batch: ${sigs.length} signatures for ${chunk.length} jobs`);
          chunk.forEach((t, k) => {
            out[t.i] = sigs[k]!;
            if (t.cached) writeFileSync(t.cached, sigs[k]!);
          });
        }),
      );
      return out;
    }
    return await pool(
      jobs.map((job) => async () => {
        const { file, hash } = bodyFile(job.body);
        const cached = cacheDir && job.mode === 'sha1-noattr' ? join(cacheDir, `${job.device.index}.${hash.slice(0, 24)}.b64`) : undefined;
        if (cached && existsSync(cached)) return readFileSync(cached, 'utf8');
        const args = ['cms', '-sign', '-binary', '-in', file, '-signer', job.device.certPath, '-inkey', job.device.keyPath, '-outform', 'DER'];
        if (job.mode === 'sha1-noattr') args.push('-noattr', '-md', 'sha1');
        else args.push('-md', 'sha256');
        const sig = (await run(args)).toString('base64');
        if (cached) writeFileSync(cached, sig);
        return sig;
      }),
    );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function batchSign(input: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn('python3', [join(import.meta.dirname, '../../bench/cms-sign-batch.py')], { stdio: ['pipe', 'pipe', 'inherit'] });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`cms-sign-batch.py exited ${code}`));
      else
        resolve(
          Buffer.concat(chunks)
            .toString()
            .split('\n')
            .filter((l) => l.length > 0),
        );
    });
    child.stdin.end(input);
  });
}

/**
 * `rounds` signatures per device of the same body with signed attributes, each one new: rounds
 * are signed one after another and each takes at least a second, so one device's signatures
 * carry different signing times (whole seconds). Throws if any two came out equal.
 * Returns [round][device].
 */
export async function distinctSignatures(devices: BenchDeviceKey[], bodyOf: (d: BenchDeviceKey) => Buffer, rounds: number): Promise<string[][]> {
  const out: string[][] = [];
  for (let r = 0; r < rounds; r++) {
    const t = Date.now();
    out.push(await opensslSignAll(devices.map((device) => ({ device, body: bodyOf(device), mode: 'sha256-attr' }))));
    const wait = 1100 - (Date.now() - t);
    // Also after the last round, so a second call's signatures are new as well.
    if (wait > 0) await new Promise((res) => setTimeout(res, wait));
  }
  const all = new Set(out.flat());
  if (all.size !== rounds * devices.length) throw new Error(`openssl made ${rounds * devices.length - all.size} duplicate signatures`);
  return out;
}
