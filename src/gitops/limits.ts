/**
 * How much of a fleet repository the loader will look at. Anyone who can push to the fleet
 * repository can put anything in it; these bound the memory and time one revision may cost, so
 * that a hostile or accidental commit is an invalid revision with a clear error, never a server
 * that runs out of memory. The defaults are generous for real fleets; callers may override any.
 */

const MiB = 1024 * 1024;

export interface LoaderLimits {
  /** Largest YAML file. */
  yamlFileBytes: number;
  /** Largest file named by a Profile's `spec.file`. */
  profileFileBytes: number;
  /** All YAML and profile files together. */
  repoBytes: number;
  /** Directory entries looked at (files, directories, links), outside `.git` and dot-directories. */
  entries: number;
  /** YAML documents in the repository (empty ones included). */
  documents: number;
  /** YAML nodes (scalars, mappings, sequences) in the repository, an alias counting as what it expands to. */
  nodes: number;
  /** Characters of YAML scalars in the repository, an alias counting as what it expands to. */
  scalarChars: number;
  /** Nesting of mappings and sequences (YAML, and plists in profile files). */
  depth: number;
  /** A profile whose rendered size is larger gets a warning: devices handle multi-MB profiles badly. */
  profileWarnBytes: number;
  /** A profile whose rendered size is larger is an error. */
  profileMaxBytes: number;
  /** Profiles sharing one PayloadIdentifier (variants for disjoint devices); each pair is compared. */
  profilesPerIdentifier: number;
  /** Diagnostics reported; further ones are counted in one last diagnostic. */
  diagnostics: number;
}

export const DEFAULT_LIMITS: Readonly<LoaderLimits> = Object.freeze({
  yamlFileBytes: 2 * MiB,
  profileFileBytes: 4 * MiB,
  repoBytes: 32 * MiB,
  entries: 20_000,
  documents: 10_000,
  nodes: 300_000,
  scalarChars: 64 * MiB,
  depth: 64,
  profileWarnBytes: 1 * MiB,
  profileMaxBytes: 4 * MiB,
  profilesPerIdentifier: 100,
  diagnostics: 1000,
});

/** The defaults with the caller's overrides; a bad override is the caller's bug, so it throws. */
export function resolveLimits(overrides: Partial<LoaderLimits> = {}): LoaderLimits {
  const out = { ...DEFAULT_LIMITS, ...overrides };
  for (const [k, v] of Object.entries(out)) {
    if (!Number.isSafeInteger(v) || v < 0) throw new TypeError(`loader limit ${k} must be a non-negative integer (got ${String(v)})`);
  }
  return out;
}

/** 2097152 -> "2 MiB", 1536 -> "1.5 KiB": for messages. */
export function formatBytes(n: number): string {
  if (n >= MiB) return `${+(n / MiB).toFixed(1)} MiB`;
  if (n >= 1024) return `${+(n / 1024).toFixed(1)} KiB`;
  return `${n} bytes`;
}
