#!/usr/bin/env node
// Summarise a V8 .cpuprofile: self time by package/file and by function, to say where server
// time goes. Usage: node bench/profile-summary.mjs FILE.cpuprofile [top]
import { readFileSync } from 'node:fs';

const [file, topArg] = process.argv.slice(2);
const prof = JSON.parse(readFileSync(file, 'utf8'));
const top = Number(topArg ?? 25);
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const self = new Map();
const dt = prof.timeDeltas;
for (let i = 0; i < prof.samples.length; i++) self.set(prof.samples[i], (self.get(prof.samples[i]) ?? 0) + (dt[i] ?? 0));
const total = [...self.values()].reduce((a, b) => a + b, 0);
const area = (url) => {
  if (!url) return '(native/gc/idle)';
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return m[1];
  if (url.startsWith('node:')) return url;
  const s = /\/(src\/[^/]+)/.exec(url);
  return s ? s[1] : url;
};
const byArea = new Map();
const byFn = new Map();
for (const [id, t] of self) {
  const n = byId.get(id);
  const a = n.callFrame.functionName === '(idle)' ? '(idle)' : area(n.callFrame.url);
  byArea.set(a, (byArea.get(a) ?? 0) + t);
  const f = `${n.callFrame.functionName || '(anon)'} ${area(n.callFrame.url)}`;
  byFn.set(f, (byFn.get(f) ?? 0) + t);
}
const busy = total - (byArea.get('(idle)') ?? 0);
const print = (title, m) => {
  console.log(`\n${title} (share of busy time)`);
  for (const [k, v] of [...m]
    .filter(([k]) => !k.startsWith('(idle)'))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top))
    console.log(`${((100 * v) / busy).toFixed(1).padStart(5)}%  ${k}`);
};
print('by area', byArea);
print('by function', byFn);
