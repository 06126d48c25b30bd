/**
 * Load and validate a fleet repository as a whole: YAML documents of each kind, checked against
 * their schemas (src/schema/fleet.ts), Apple's payload schema, and each other (references,
 * conflicts, variables, secrets). Every problem is a Diagnostic naming file:line:col. A revision
 * with any error is never applied.
 *
 * In passes, each in its own module: parse (YAML files into documents), schema (each document
 * against its kind's schema), build (model documents, unique names), link (references resolved,
 * profile files read, variables and secrets collected: the documents are complete after it),
 * check (rules over the linked fleet, which it only reads).
 */
import { ManifestSet } from './manifests.js';
import type { LoadResult } from './model.js';
import { resolveLimits, type LoaderLimits } from './limits.js';
import { buildPass } from './load-build.js';
import { checkPass } from './load-check.js';
import { Collector, type LoadState } from './load-context.js';
import { linkPass } from './load-link.js';
import { parsePass } from './load-parse.js';
import { schemaPass } from './load-schema.js';

export interface LoadOptions {
  /** Overrides of DEFAULT_LIMITS (limits.ts). */
  limits?: Partial<LoaderLimits>;
  /** A folder of ProfileManifests-format manifests: custom preference domains are checked against them. */
  manifests?: string;
}

/**
 * Load and validate the repository at `root`. Never throws for anything the repository holds:
 * every problem, including a limit reached or a bug of ours, is a diagnostic with file:line:col.
 */
export async function loadFleet(root: string, opts: LoadOptions = {}): Promise<LoadResult> {
  const limits = resolveLimits(opts.limits);
  const c = new Collector(limits.diagnostics);
  const state: LoadState = { file: '.' };
  try {
    return await runPasses(root, limits, c, state, opts.manifests !== undefined ? new ManifestSet(opts.manifests) : undefined);
  } catch (err) {
    // Last resort: whatever escaped is reported against the file being processed, not thrown.
    const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    c.add('error', 'loader', { file: state.file, line: 1, col: 1 }, `internal error while loading this file: ${message.slice(0, 300)}`);
    return { ok: false, diagnostics: c.finish() };
  }
}

async function runPasses(root: string, limits: LoaderLimits, c: Collector, state: LoadState, manifests: ManifestSet | undefined): Promise<LoadResult> {
  const stop = (): LoadResult => ({ ok: false, diagnostics: c.finish() });
  const repo = await parsePass(root, limits, c, state);
  if (!repo) return stop();
  const built = buildPass(schemaPass(repo.docs, c, state), c, state);
  const links = await linkPass(built, repo, c, state, limits);
  if (!links) return stop();
  checkPass(built, links, c, state, limits, manifests);
  const diagnostics = c.finish();
  built.fleet.contentHash = repo.hash.digest('hex');
  return c.errors === 0 ? { ok: true, fleet: built.fleet, diagnostics } : { ok: false, diagnostics };
}
