/**
 * The import graph of src/ (static and type imports, read from the sources): the shared model
 * depends on nothing else in src, and the layers that share it (protocol, store, reconciler,
 * http) import each other in one direction only: no folder of them imports a folder that imports
 * it back.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = resolve(import.meta.dirname, '../src');
const IMPORT = /^\s*(?:import|export)\s[^'"]*?from\s+'(\.{1,2}\/[^']+)'/gm;

/** Every .ts file under src/ (relative), with the files it imports. */
function importGraph(): Map<string, Set<string>> {
  const graph = new Map<string, Set<string>>();
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith('.ts')) {
        const deps = new Set<string>();
        for (const m of readFileSync(p, 'utf8').matchAll(IMPORT)) deps.add(relative(SRC, resolve(dirname(p), m[1]!.replace(/\.js$/, '.ts'))));
        graph.set(relative(SRC, p), deps);
      }
    }
  };
  walk(SRC);
  return graph;
}

/** A top-level folder, or a file at the top of src/ on its own (server.ts, root.ts, errors.ts). */
const unit = (f: string) => (f.includes('/') ? f.slice(0, f.indexOf('/')) : f);

/** Pairs of units that import each other, with one import each way. */
function mutualImports(graph: Map<string, Set<string>>): string[] {
  const edge = new Map<string, string>();
  for (const [f, deps] of graph)
    for (const d of deps) if (unit(f) !== unit(d) && !edge.has(`${unit(f)}>${unit(d)}`)) edge.set(`${unit(f)}>${unit(d)}`, `${f} -> ${d}`);
  const out: string[] = [];
  for (const [k, why] of edge) {
    const [a, b] = k.split('>') as [string, string];
    const back = edge.get(`${b}>${a}`);
    if (back && a < b) out.push(`${a} <-> ${b}: ${why}; ${back}`);
  }
  return out;
}

describe('architecture', () => {
  const graph = importGraph();

  it('reads the graph (the check below is not vacuous)', () => {
    expect(graph.get('store/records.ts')).toContain('model/device.ts');
    expect(graph.get('root.ts')).toContain('http/app.ts');
  });

  it('src/model/ imports nothing outside itself', () => {
    const outside = [...graph]
      .filter(([f]) => f.startsWith('model/'))
      .flatMap(([f, deps]) => [...deps].filter((d) => !d.startsWith('model/')).map((d) => `${f} -> ${d}`));
    expect(outside).toEqual([]);
  });

  it('no import cycle between model, protocol, store, reconcile, http, enroll, mdm and the root files', () => {
    const ours =
      /^(model|protocol|store|reconcile|http|enroll|mdm|server\.ts|root\.ts|errors\.ts|config\.ts) <-> (model|protocol|store|reconcile|http|enroll|mdm|server\.ts|root\.ts|errors\.ts|config\.ts):/;
    expect(mutualImports(graph).filter((c) => ours.test(c))).toEqual([]);
  });

  it('only the composition root builds the server parts', () => {
    const builds = /new (LevelStore|MdmService|FleetSource|Reconciler|EventWebhooks|ReplayGuard)\(|LevelStore\.open\(|openEnrollment\(|apnsFromCredentials\(/;
    const where = [...graph.keys()].filter(
      (f) => f !== 'root.ts' && !f.startsWith('cli/') && !f.startsWith('sim/') && builds.test(readFileSync(join(SRC, f), 'utf8')),
    );
    // Definitions and their own modules are fine; any other file building a part is a second root.
    const definers = new Set([
      'store/open.ts',
      'store/leveldb.ts',
      'mdm/service.ts',
      'gitops/source.ts',
      'reconcile/reconciler.ts',
      'report/webhooks.ts',
      'mdm/replay.ts',
      'enroll/enrollment.ts',
      'push/apns.ts',
    ]);
    expect(where.filter((f) => !definers.has(f))).toEqual([]);
  });
});
