/**
 * Validation of a revision in a child process of its own, so that no revision can take the
 * server down: the child's heap is capped (`--max-old-space-size`), it is killed when the caller
 * aborts (the source's time limit, or shutdown), and whatever it does (run out of memory, block
 * on a FIFO, crash) ends with the child, never with the server.
 *
 * A process rather than a worker thread: a worker's `resourceLimits` are overridden by the
 * server's own `--max-old-space-size` (nodejs/node#43991), some allocation patterns abort the
 * whole process anyway (nodejs/node#47224), and a worker cannot be freed from a file read stuck
 * in the shared libuv thread pool (a FIFO), while a killed process takes all of that with it.
 */
import { fork } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LoadOptions } from './load.js';
import type { LoadResult } from './model.js';
import { TooLarge, Unavailable } from '../errors.js';

/** Loads and validates the directory; must stop (and reject) once `signal` aborts. */
export type Loader = (dir: string, signal: AbortSignal) => Promise<LoadResult>;

/** The revision made validation exceed a limit or crash: the revision is rejected. */
export class ValidationLimitError extends TooLarge {
  constructor(
    readonly limit: 'memory' | 'time' | 'crash',
    message: string,
  ) {
    super(message);
    this.name = 'ValidationLimitError';
  }
}

/** The validator could not run at all: not the revision's fault, so it is tried again later. */
export class ValidatorUnavailableError extends Unavailable {
  constructor(message: string) {
    super(message);
    this.name = 'ValidatorUnavailableError';
  }
}

export interface IsolatedLoaderOptions {
  /** Heap of the validating process (old generation), in MB. */
  memoryMb: number;
  /** Passed to loadFleet in the child (JSON: plain numbers only). */
  load?: LoadOptions;
}

/** Exit code the child uses when its resident memory (heap plus buffers) passes its cap. */
export const EXIT_RSS = 86;

/** Messages from load-worker.ts. */
export type WorkerMessage = { result: LoadResult } | { error: string };

export function isolatedLoader(opts: IsolatedLoaderOptions): Loader {
  const memoryMb = Math.max(16, Math.floor(opts.memoryMb));
  return (dir, signal) =>
    new Promise<LoadResult>((resolvePromise, reject) => {
      if (signal.aborted) return reject(signal.reason);
      const entry = workerEntry();
      if (!existsSync(entry)) return reject(new ValidatorUnavailableError(`validator ${entry} is missing: run \`npm run build\``));
      let settled = false;
      const settle = (fn: () => void) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        fn();
      };
      const child = fork(entry, [dir, JSON.stringify(opts.load ?? {})], {
        execArgv: [`--max-old-space-size=${memoryMb}`],
        env: childEnv(memoryMb),
        serialization: 'advanced', // Maps, Sets and Buffers of the Fleet arrive as such
        stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      });
      const onAbort = () => {
        child.kill('SIGKILL');
        settle(() => reject(signal.reason));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      // Only the tail: enough to recognise V8's out-of-memory report.
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => {
        stderr = (stderr + d.toString()).slice(-4096);
      });
      child.on('message', (m: WorkerMessage) => {
        if ('result' in m) settle(() => resolvePromise(m.result));
        else settle(() => reject(new Error(m.error)));
      });
      child.on('error', (err) => {
        child.kill('SIGKILL');
        settle(() => reject(new ValidatorUnavailableError(`could not run the validator: ${err.message}`)));
      });
      child.on('close', (code, sig) => {
        settle(() => {
          if (code === EXIT_RSS || /heap out of memory|Reached heap limit|Allocation failed/i.test(stderr)) {
            reject(new ValidationLimitError('memory', `validation exceeded the memory limit (${memoryMb} MB)`));
          } else {
            reject(new ValidationLimitError('crash', `validation crashed (${sig ? `signal ${sig}` : `exit code ${code}`}) without a result`));
          }
        });
      });
    });
}

/** load-worker.js next to this module; under vitest (TypeScript from src) the compiled one in dist/. */
function workerEntry(): string {
  const here = fileURLToPath(import.meta.url);
  const dir = dirname(here);
  return here.endsWith('.ts') ? resolve(dir, '../../dist/src/gitops/load-worker.js') : join(dir, 'load-worker.js');
}

/**
 * The server's environment minus what validation has no business seeing (tokens, secret values)
 * or that would lift its heap cap (a --max-old-space-size in NODE_OPTIONS).
 */
function childEnv(memoryMb: number): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('ORCHARD_')) env[k] = v;
  if (env.NODE_OPTIONS) env.NODE_OPTIONS = env.NODE_OPTIONS.replace(/--max[-_]old[-_]space[-_]size(=|\s+)\S+/g, '').trim();
  // Buffers live outside the heap cap; the child stops itself past twice its heap.
  env.ORCHARD_VALIDATOR_RSS_MB = String(memoryMb * 2 + 64);
  return env;
}
