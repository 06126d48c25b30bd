/** Run `orchard serve` as a real child process (for crash tests and benchmarks). */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const CLI = join(import.meta.dirname, '../../dist/src/cli/main.js');

export interface ServerProcess {
  child: ChildProcess;
  url: string;
  output: () => string;
}

/** `asExecutable` runs the CLI through its `#!` line, as the installed `orchard` command does, instead of `node CLI`. */
export async function spawnServer(args: string[], env: Record<string, string> = {}, { asExecutable = false } = {}): Promise<ServerProcess> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` (npm test does) first`);
  const serveArgs = ['serve', '--listen', '127.0.0.1:0', ...args];
  const child = spawn(asExecutable ? CLI : process.execPath, asExecutable ? serveArgs : [CLI, ...serveArgs], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stderr!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  // Keep only the tail: a busy server logs a line per request.
  child.stdout!.on('data', () => {
    if (out.length > 1e6) out = out.slice(-1e5);
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${out}`)), 20_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      // The listening line, not any other line that carries a url (APNs, source).
      const m = /"url":"(http[^"]+)"[^\n]*"msg":"orchard listening"/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}:\n${out}`));
    });
  });
  return { child, url, output: () => out };
}

export function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}
