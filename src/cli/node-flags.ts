/**
 * The V8 flags `orchard serve` runs with (issue 18, BENCHMARKS.md): a young generation of 2 x 4 MB
 * instead of V8's 2 x 16 MB (a request's garbage dies young either way), and an old generation
 * collected when it grows 30% over what the last full GC kept, from 32 MB on (V8's default lets 50
 * concurrent requests' promoted garbage pile up to 100+ MB before the first one), and one V8
 * worker thread instead of four (each thread's stack and malloc arena cost RSS: 5-10 MB less at
 * 1,000 devices, no more CPU per request on 2 cores; the server's JS runs on one thread anyway).
 *
 * V8 takes heap sizes only at start, so they cannot be set from inside the process: the `orchard`
 * executable carries them in its `#!/usr/bin/env -S node ...` line, `npm start` and the protocol
 * benchmark pass them, and a server started by `node main.js serve` without them says how to add
 * them. One list for all of these; test/cli/node-flags.test.ts holds them to it.
 */
export const SERVE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4', '--initial-old-space-size=32', '--heap-growing-percent=30', '--v8-pool-size=1'];

/** The flags missing from a process's own (`process.execArgv`) and `NODE_OPTIONS`, compared by name. */
export function missingServeFlags(execArgv: readonly string[], nodeOptions = ''): string[] {
  const given = new Set([...execArgv, ...nodeOptions.split(/\s+/)].map((f) => f.split('=')[0]!.replace(/_/g, '-')));
  return SERVE_NODE_FLAGS.filter((f) => !given.has(f.split('=')[0]!));
}
