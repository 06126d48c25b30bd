/** Enrollment test helpers: a real server with the enrollment routes, and the real scepclient. */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ServerConfig } from '../../src/config.js';
import type { Enrollment, EnrollmentOptions } from '../../src/enroll/enrollment.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

export const TOPIC = 'com.apple.mgmt.External.8f5b0c7e-3a41-4f8e-9c2d-6b1a2e3f4d5c';
export const VECTORS = join(import.meta.dirname, '../fixtures/vectors');

export interface EnrollServer extends TestServer {
  enroll: Enrollment;
  caPem: string;
}

export async function startEnrollServer(routeOpts: EnrollmentOptions = {}, overrides: Partial<ServerConfig> = {}): Promise<EnrollServer> {
  const server = await startTestServer(overrides, { enrollment: { topic: TOPIC, ...routeOpts } });
  const enroll = server.enrollment;
  if (!enroll) throw new Error('enrollment was not opened');
  return { ...server, enroll, caPem: enroll.caStore.ca.certPem };
}

export function tempDir(prefix = 'orchard-enroll-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Fails loudly when Debian's scep package is missing: these tests must not pass by skipping. */
export function requireScepclient(): void {
  try {
    execFileSync('scepclient', ['-version'], { stdio: 'pipe' });
  } catch (err) {
    throw new Error(`scepclient (Debian package "scep", listed in .ci/apt-packages) is required by these tests: ${(err as Error).message}`, { cause: err });
  }
}

export interface ScepclientRun {
  code: number | null;
  output: string;
  dir: string;
}

/**
 * Run micromdm's scepclient with its key in `dir` (key.pem, and client.pem after success). With
 * client.pem already present it sends a RenewalReq signed by it.
 */
export function scepclient(serverUrl: string, dir: string, args: string[] = []): Promise<ScepclientRun> {
  mkdirSync(dir, { recursive: true });
  return new Promise((resolve, reject) => {
    const child = spawn('scepclient', ['-server-url', `${serverUrl}/scep`, '-private-key', join(dir, 'key.pem'), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => {
      output += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      output += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output, dir });
    });
  });
}

/** Run openssl; never throws, so a test can look at the exit code and both outputs. */
export function openssl(args: string[], input?: Buffer): { code: number; stdout: Buffer; stderr: string } {
  const r = spawnSync('openssl', args, { input, stdio: ['pipe', 'pipe', 'pipe'] });
  if (r.error) throw r.error;
  return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr.toString() };
}

export function readPem(path: string): string {
  return readFileSync(path, 'utf8');
}
