/**
 * `npm run fuzz`: the long fuzz run of every parser of untrusted input (the vitest suites in
 * test/fuzz run 10,000 inputs each). Options: --runs N per parser (default 1,000,000), --seed N
 * (default random; printed, so a run can be repeated), --only cms,certHeader,trust,scep,scepSigned,envelope,pkcs10.
 * scepSigned (mutated CSRs in properly signed requests: three RSA operations each) runs a tenth
 * of --runs. Prints a Markdown table of outcomes; exits 1 when a parser threw anything but its
 * typed error.
 */
import { parseArgs } from 'node:util';
import { fuzz, type FuzzTarget, type Tally } from '../test/fuzz/harness.js';
import { makeTargets, TARGET_NAMES, type TargetName } from '../test/fuzz/targets.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '1000000' },
    seed: { type: 'string' },
    only: { type: 'string' },
  },
});
const runs = Number(values.runs);
const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 0x7fffffff);
const only = values.only ? (values.only.split(',') as TargetName[]) : TARGET_NAMES;
for (const n of only) if (!TARGET_NAMES.includes(n)) throw new Error(`unknown parser ${n}; one of ${TARGET_NAMES.join(', ')}`);
if (!Number.isInteger(runs) || runs <= 0 || !Number.isInteger(seed)) throw new Error('--runs and --seed take integers');

const SLOW: Partial<Record<TargetName, number>> = { scepSigned: 10 };

// Progress in chunks (each its own fast-check seed: seed + chunk number), so a long run shows life.
const CHUNK = 100_000;

console.log(
  `# Fuzz run\n\nNode ${process.version}, ${new Date().toISOString()}, \`npm run fuzz -- --runs ${runs} --seed ${seed}${values.only ? ` --only ${values.only}` : ''}\`\n`,
);
const targets = await makeTargets(only);
// Each row as soon as its parser is done, so a long run that is stopped keeps what it found.
console.log('| parser | inputs | ok | typed error | other exception | inputs/s |\n|---|---|---|---|---|---|');
const notes: string[] = [];
let failed = false;
try {
  for (const name of only) {
    const target = targets[name] as FuzzTarget<unknown>;
    const want = Math.ceil(runs / (SLOW[name] ?? 1));
    const total: Tally = { runs: 0, ok: 0, typed: 0, other: 0, examples: [] };
    const start = process.hrtime.bigint();
    for (let chunk = 0; total.runs < want; chunk++) {
      const t = fuzz(target, { runs: Math.min(CHUNK, want - total.runs), seed: seed + chunk });
      total.runs += t.runs;
      total.ok += t.ok;
      total.typed += t.typed;
      total.other += t.other;
      total.examples.push(...t.examples.slice(0, 5 - total.examples.length));
      process.stderr.write(`${name}: ${total.runs}/${want}, ${total.other} other\n`);
    }
    const s = Number(process.hrtime.bigint() - start) / 1e9;
    console.log(`| ${target.name} | ${total.runs} | ${total.ok} | ${total.typed} | ${total.other} | ${Math.round(total.runs / s)} |`);
    if (total.other > 0) {
      failed = true;
      notes.push(
        `${target.name} threw something other than ${target.typed.map((c) => c.name).join('/') || 'nothing'}:\n${total.examples.map((e) => `- ${e}`).join('\n')}`,
      );
    }
  }
} finally {
  targets.cleanup();
}
console.log(notes.length ? `\n${notes.join('\n\n')}` : '');
if (failed) process.exitCode = 1;
