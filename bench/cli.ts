/**
 * Whole CLI processes, as a user starts them: `orchard --help` and `orchard validate` of the
 * example fleet. Wall and CPU time per process, median over runs (start-up cost is module loading).
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const ROOT = new URL('../..', import.meta.url).pathname;
const CLI = join(ROOT, 'dist/src/cli/main.js');

export interface CliTiming {
  command: string;
  wallMs: number;
  cpuMs: number;
}

/**
 * One run inside a wrapper process, so the child's CPU (user + system, reaped: cutime + cstime in
 * the wrapper's /proc/self/stat, in clock ticks of 10 ms) is its alone.
 */
function measure(args: string[]): { wallMs: number; cpuMs: number } {
  const script =
    `const {spawnSync}=require('node:child_process');const t=process.hrtime.bigint();` +
    `const r=spawnSync(process.execPath,${JSON.stringify([CLI, ...args])},{cwd:${JSON.stringify(ROOT)},stdio:'ignore'});` +
    `const wall=Number(process.hrtime.bigint()-t)/1e6;` +
    `const f=require('node:fs').readFileSync('/proc/self/stat','utf8').split(') ')[1].split(' ');` +
    `process.stdout.write(JSON.stringify({wall,cpu:(Number(f[13])+Number(f[14]))*10,status:r.status}));`;
  const out = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
  const { wall, cpu, status } = JSON.parse(out.stdout) as { wall: number; cpu: number; status: number };
  if (status !== 0) throw new Error(`orchard ${args.join(' ')} exited ${status}`);
  return { wallMs: wall, cpuMs: cpu };
}

export function benchCli(runs = 9): CliTiming[] {
  const commands: [string, string[]][] = [
    ['orchard --help', ['--help']],
    ['orchard validate config-examples/fleet', ['validate', 'config-examples/fleet']],
  ];
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  return commands.map(([command, args]) => {
    const samples = Array.from({ length: runs }, () => measure(args));
    return { command, wallMs: median(samples.map((s) => s.wallMs)), cpuMs: median(samples.map((s) => s.cpuMs)) };
  });
}
