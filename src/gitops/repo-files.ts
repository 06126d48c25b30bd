/**
 * Reading files of a fleet repository that anyone with push access may have filled: only regular
 * files whose real path is inside the repository, never more than a limit, and never anything
 * that can block (a FIFO) or never end (a device). A committed symbolic link may point anywhere,
 * so paths are resolved with realpath and checked against the repository's own real path, and
 * the file is opened with O_NOFOLLOW | O_NONBLOCK and checked again on the open descriptor (same
 * inode, regular file) so that swapping it between the check and the open gains nothing.
 */
import { constants, type Dirent, type Stats } from 'node:fs';
import { lstat, open, opendir, realpath, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { formatBytes } from './limits.js';

export type ReadOutcome = { ok: true; bytes: Buffer } | { ok: false; reason: string };

const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0);

/** Repository-relative, forward slashes. */
export const relPath = (root: string, p: string) => relative(root, p).split(sep).join('/');

export function isInside(realRoot: string, real: string): boolean {
  return real === realRoot || real.startsWith(realRoot.endsWith(sep) ? realRoot : realRoot + sep);
}

function kindOf(st: Stats | Dirent): string {
  if (st.isSymbolicLink()) return 'a symbolic link';
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return 'not a regular file';
}

/**
 * The real path of `abs` if it is inside the repository, else why not. Nothing is opened: a
 * FIFO or device is only looked at, never read.
 */
export async function resolveInside(realRoot: string, abs: string): Promise<{ ok: true; real: string } | { ok: false; reason: string }> {
  let real: string;
  try {
    real = await realpath(abs);
  } catch (err) {
    return { ok: false, reason: (err as NodeJS.ErrnoException).code ?? 'cannot be resolved' };
  }
  // The target's name is not repeated: it may be a path outside the repository.
  if (!isInside(realRoot, real)) return { ok: false, reason: 'it resolves (through a symbolic link) to a path outside the repository' };
  return { ok: true, real };
}

/**
 * Read a regular file of at most `maxBytes`. `path` must be a real path (no symbolic link in
 * it); a link put in its place after the check makes the open fail rather than follow it.
 */
export async function readRegularFile(path: string, maxBytes: number): Promise<ReadOutcome> {
  let before: Stats;
  try {
    before = await lstat(path);
  } catch (err) {
    return { ok: false, reason: (err as NodeJS.ErrnoException).code ?? 'cannot be read' };
  }
  if (!before.isFile()) return { ok: false, reason: `it is ${kindOf(before)}, not a regular file` };
  if (before.size > maxBytes) return { ok: false, reason: `it is ${formatBytes(before.size)}, more than the limit of ${formatBytes(maxBytes)}` };
  let fh;
  try {
    fh = await open(path, OPEN_FLAGS);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { ok: false, reason: code === 'ELOOP' ? 'it became a symbolic link while loading' : (code ?? 'cannot be read') };
  }
  try {
    const st = await fh.stat();
    if (!st.isFile() || st.ino !== before.ino || st.dev !== before.dev) return { ok: false, reason: 'it was replaced while loading' };
    // O_NOFOLLOW guards only the last component; a directory above swapped for a link since the
    // caller's realpath shows here (the inode check above covers a swap between lstat and open).
    if ((await realpath(path)) !== path) return { ok: false, reason: 'it was replaced while loading' };
    // Read at most one byte more than fstat's size (and than allowed): a file that grows after
    // fstat cannot make the read go on.
    const buf = Buffer.allocUnsafe(Math.min(st.size, maxBytes) + 1);
    let n = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n === buf.length) {
        return { ok: false, reason: n > maxBytes ? `it is more than the limit of ${formatBytes(maxBytes)}` : 'it changed while loading' };
      }
    }
    return { ok: true, bytes: Buffer.from(buf.subarray(0, n)) };
  } catch (err) {
    return { ok: false, reason: (err as NodeJS.ErrnoException).code ?? 'cannot be read' };
  } finally {
    await fh.close().catch(() => undefined);
  }
}

export interface WalkResult {
  /** Absolute real paths of the YAML files, sorted. */
  files: string[];
  /** Entries left out, with why: the loader says so rather than skip them silently. */
  skipped: { path: string; reason: string }[];
  /** Set when the directory held more entries than allowed. */
  tooMany?: { dir: string };
}

const IGNORED_DIRS = new Set(['.git', 'node_modules']);
const YAML = /\.ya?ml$/i;

/**
 * The YAML files under `realRoot` (not in dot-directories or node_modules). Symbolic links are
 * not followed, neither to files nor to directories: a YAML file is loaded only as the regular
 * file it is, in the place it is, and a link to one is reported.
 */
export async function walkYaml(realRoot: string, maxEntries: number): Promise<WalkResult> {
  const out: WalkResult = { files: [], skipped: [] };
  let seen = 0;
  const walk = async (dir: string): Promise<boolean> => {
    const d = await opendir(dir);
    const subdirs: string[] = [];
    for await (const e of d) {
      if (++seen > maxEntries) {
        out.tooMany = { dir };
        return false; // leaving the loop closes the directory
      }
      const full = join(dir, e.name);
      if (e.isDirectory()) {
        if (!IGNORED_DIRS.has(e.name) && !e.name.startsWith('.')) subdirs.push(full);
      } else if (e.isFile()) {
        if (YAML.test(e.name)) out.files.push(full);
      } else if (e.isSymbolicLink()) {
        if (YAML.test(e.name)) {
          out.skipped.push({ path: full, reason: 'is a symbolic link: not loaded (YAML files are read only as regular files)' });
        } else if (!e.name.startsWith('.')) {
          // stat only looks at the target; it opens nothing.
          const target = await stat(full).catch(() => undefined);
          if (target?.isDirectory()) out.skipped.push({ path: full, reason: 'is a symbolic link to a directory: not followed' });
        }
      } else if (YAML.test(e.name)) {
        out.skipped.push({ path: full, reason: `is ${kindOf(e)}, not a regular file: not loaded` });
      }
    }
    for (const s of subdirs.sort()) if (!(await walk(s))) return false;
    return true;
  };
  await walk(realRoot);
  out.files.sort();
  return out;
}
