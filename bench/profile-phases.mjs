#!/usr/bin/env node
// Self time of a server's V8 CPU profile, split by the benchmark's phases: the protocol-openssl
// benchmark writes windows-<pid>.json (process.hrtime µs = CLOCK_MONOTONIC, the clock V8 stamps
// profile samples with) next to the server's .cpuprofile. Per phase: ms of busy main-thread
// time per request, shares by area (the concerns named in issue 18) and by module, top functions.
// Usage: node bench/profile-phases.mjs PROFILE.cpuprofile WINDOWS.json [requests per phase as
// "name=count,..." is read from the windows file] [top]
import { readFileSync } from 'node:fs';

const [file, winFile, topArg] = process.argv.slice(2);
const prof = JSON.parse(readFileSync(file, 'utf8'));
const windows = JSON.parse(readFileSync(winFile, 'utf8'));
const top = Number(topArg ?? 12);
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const viaLogger = (id) => {
  for (let p = parent.get(id), k = 0; p !== undefined && k < 12; p = parent.get(p), k++) {
    const u = byId.get(p).callFrame.url;
    if (/sonic-boom|\/pino\//.test(u)) return true;
    if (u && !u.startsWith('node:')) return false;
  }
  return false;
};
// A native frame (no url: socket writes, Buffer builtins) counts for the JS module that called it.
const callerUrl = (id) => {
  for (let p = parent.get(id); p !== undefined; p = parent.get(p)) {
    const u = byId.get(p).callFrame.url;
    if (u) return u;
  }
  return '';
};

const module = (url) => {
  if (!url) return '(native)';
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return m[1];
  if (url.startsWith('node:')) return url.replace(/^node:internal\//, 'node:');
  const s = /\/((?:src|bench)\/.+?)(?:\.js|\.ts)?$/.exec(url);
  return s ? s[1] : url;
};

/** The concerns the issue asks about, from module and function name. */
const area = (fn, mod) => {
  if (fn === '(garbage collector)') return 'GC';
  if (fn === '(program)') return 'V8/native, unattributed';
  if (/^asn1js|pvtsutils|pvutils/.test(mod)) return 'CMS parsing (asn1js)';
  if (mod === 'src/identity/cms') {
    if (/attribute|signedAttributes/i.test(fn)) return 'signed attributes (src/identity/cms)';
    return 'CMS walk (src/identity/cms)';
  }
  if (/crypto|x509/i.test(mod) || /^(verify|createHash|digest|update|publicKey|X509Certificate)$/.test(fn)) return 'node:crypto (hash, verify, x509)';
  if (mod.startsWith('src/identity')) return 'trust/identity (src/identity)';
  if (/xmldom|plist|saxes|fast-xml/.test(mod) || mod.startsWith('src/protocol')) return 'plist parsing (src/protocol, xml)';
  if (/pino|sonic-boom|thread-stream|fast-redact|quick-format/.test(mod) || /request-log/.test(mod)) return 'logging (pino, request log)';
  if (/level|leveldown|abstract-|classic-level|module-error|queue-microtask|maybe-combine/.test(mod) || mod.startsWith('src/store')) return 'LevelDB / store';
  if (
    /^koa|@koa|koa-|path-to-regexp|http-errors|statuses|depd|on-finished|raw-body|co-body|type-is|mime|accepts|negotiator|content-type|cookies|vary|delegates|only|encodeurl|escape-html|destroy|ee-first|fresh|inflation|iconv|toidentifier|setprototypeof|http-assert|deep-equal/.test(
      mod,
    )
  )
    return 'Koa / router / body';
  if (
    /^node:(_http|http|net|stream|streams|events|timers|async_hooks|buffer|url|dns|tcp|process|util)/.test(mod) ||
    /^node:(internal\/)?(http|net|stream)/.test(mod)
  )
    return 'node http/net/streams';
  if (mod.startsWith('src/mdm')) return 'MDM service (src/mdm)';
  if (mod.startsWith('src/http')) return 'HTTP middleware (src/http)';
  if (mod.startsWith('src/')) return 'other src/';
  if (mod === '(native)') return 'native (builtins)';
  return 'other: ' + mod;
};

// Sample timestamps: startTime + cumulative timeDeltas (µs).
const times = new Array(prof.samples.length);
let t = prof.startTime;
for (let i = 0; i < prof.samples.length; i++) {
  t += prof.timeDeltas[i] ?? 0;
  times[i] = t;
}
console.log(
  `profile ${(prof.startTime / 1e6).toFixed(1)}..${(prof.endTime / 1e6).toFixed(1)} s (monotonic); windows ${(windows[0]?.startUs / 1e6).toFixed(1)}..${(windows.at(-1)?.endUs / 1e6).toFixed(1)} s`,
);

for (const w of windows) {
  const self = new Map();
  let busy = 0;
  let idle = 0;
  for (let i = 0; i < prof.samples.length; i++) {
    if (times[i] < w.startUs || times[i] > w.endUs) continue;
    const dt = (times[i + 1] ?? prof.endTime) - times[i];
    const n = byId.get(prof.samples[i]);
    if (n.callFrame.functionName === '(idle)') {
      idle += dt;
      continue;
    }
    busy += dt;
    self.set(n.id, (self.get(n.id) ?? 0) + dt);
  }
  const byArea = new Map();
  const byMod = new Map();
  const byFn = new Map();
  for (const [id, dt] of self) {
    const n = byId.get(id);
    const fn = n.callFrame.functionName || '(anon)';
    const native = !n.callFrame.url && !fn.startsWith('(');
    const mod = native ? module(callerUrl(id)) : module(n.callFrame.url);
    let a = area(fn, mod);
    // node:fs writes under pino's sonic-boom are the request log; name them so.
    if (/^node:|^\(native\)/.test(mod) && viaLogger(id)) a = 'logging (pino, request log)';
    a += native ? ' [native part]' : '';
    byArea.set(a, (byArea.get(a) ?? 0) + dt);
    byMod.set(mod, (byMod.get(mod) ?? 0) + dt);
    const key = `${fn} (${native ? 'native, called from ' : ''}${mod}${n.callFrame.lineNumber >= 0 && n.callFrame.url ? `:${n.callFrame.lineNumber + 1}` : ''})`;
    byFn.set(key, (byFn.get(key) ?? 0) + dt);
  }
  const req = w.requests ?? NaN;
  console.log(
    `\n### ${w.name}\n\nbusy main thread ${(busy / 1000).toFixed(0)} ms, idle ${(idle / 1000).toFixed(0)} ms${Number.isFinite(req) ? `, ${(busy / 1000 / req).toFixed(3)} ms busy per request` : ''}\n`,
  );
  const table = (title, m, k) => {
    console.log(`| ${title} | share |\n|---|---|`);
    for (const [name, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, k)) console.log(`| ${name} | ${((100 * v) / busy).toFixed(1)}% |`);
    console.log('');
  };
  // Areas with their native parts folded in, then the split.
  const folded = new Map();
  for (const [k, v] of byArea) folded.set(k.replace(' [native part]', ''), (folded.get(k.replace(' [native part]', '')) ?? 0) + v);
  table('area (native calls folded into their caller)', folded, 20);
  table('area, native part separate', byArea, 20);
  table('module', byMod, top);
  table('function (self time)', byFn, top);
}
