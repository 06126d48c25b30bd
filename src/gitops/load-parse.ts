/**
 * Loader pass 1, parse: the repository's YAML files, walked and read within the limits, each
 * parsed into its documents. Nothing is interpreted yet.
 */
import { createHash, type Hash } from 'node:crypto';
import { realpath } from 'node:fs/promises';
import { formatBytes, type LoaderLimits } from './limits.js';
import { atFile, type Collector, type LoadState, type ParsedDoc } from './load-context.js';
import { readRegularFile, relPath as rel, walkYaml } from './repo-files.js';
import { newUsage, parseYamlFile } from './yaml-file.js';
import { locate } from './yaml-pos.js';

export interface ParsedRepository {
  realRoot: string;
  docs: ParsedDoc[];
  /** Over every file loaded; profile files are added by the link pass. */
  hash: Hash;
  /** Bytes of YAML and profile files so far, against limits.repoBytes. */
  budget: { bytes: number };
}

/** The repository's documents, or undefined when a limit stops the whole load. */
export async function parsePass(root: string, limits: LoaderLimits, c: Collector, state: LoadState): Promise<ParsedRepository | undefined> {
  const walked = await walkRepository(root, limits, c);
  if (!walked) return undefined;
  const { realRoot, files } = walked;
  const repo: ParsedRepository = { realRoot, docs: [], hash: createHash('sha256'), budget: { bytes: 0 } };
  const yamlUsage = newUsage();
  for (const path of files) {
    const file = rel(realRoot, path);
    state.file = file;
    const read = await readRegularFile(path, limits.yamlFileBytes);
    if (!read.ok) {
      const rule = /limit/.test(read.reason) ? 'limit-file-size' : 'repository';
      c.add('error', rule, atFile(file), `cannot load ${file}: ${read.reason}${rule === 'limit-file-size' ? ' for a YAML file (limit yamlFileBytes)' : ''}`);
      continue;
    }
    if ((repo.budget.bytes += read.bytes.length) > limits.repoBytes) {
      c.add('error', 'limit-repo-bytes', atFile(file), `the YAML and profile files add up to more than ${formatBytes(limits.repoBytes)} (limit repoBytes)`);
      return undefined;
    }
    const text = read.bytes.toString('utf8');
    repo.hash.update(file).update('\0').update(text).update('\0');
    const parsed = parseYamlFile(file, text, limits, yamlUsage);
    for (const d of parsed.diagnostics) c.add(d.severity, d.rule, d, d.message);
    if (parsed.exhausted) return undefined;
    for (const { doc, value } of parsed.docs) {
      if (value === null || value === undefined) continue; // an empty document (e.g. a trailing ---)
      if (typeof value !== 'object' || Array.isArray(value)) {
        c.add('error', 'schema', { file, ...locate(doc, parsed.lc, []) }, 'a document must be a mapping with apiVersion, kind, metadata and spec');
        continue;
      }
      repo.docs.push({ file, doc, lc: parsed.lc, value: value as Record<string, unknown> });
    }
  }
  return repo;
}

/** The YAML files under `root` (symbolic links skipped with a warning), or undefined when unreadable or too many. */
async function walkRepository(root: string, limits: LoaderLimits, c: Collector): Promise<{ realRoot: string; files: string[] } | undefined> {
  let realRoot: string;
  let walked;
  try {
    realRoot = await realpath(root);
    walked = await walkYaml(realRoot, limits.entries);
  } catch (err) {
    c.add('error', 'repository', atFile('.'), `cannot read repository: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    return undefined;
  }
  for (const s of walked.skipped) c.add('warning', 'symlink', atFile(rel(realRoot, s.path)), `${rel(realRoot, s.path)} ${s.reason}`);
  if (walked.tooMany) {
    c.add(
      'error',
      'limit-entries',
      atFile(rel(realRoot, walked.tooMany.dir) || '.'),
      `more than ${limits.entries} files and directories in the repository (limit entries)`,
    );
    return undefined;
  }
  return { realRoot, files: walked.files };
}
