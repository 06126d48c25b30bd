/**
 * Where the fleet source keeps what must survive it, so that another process (a restart, a second
 * replica on the same store) continues from it:
 *   the source state (which revision is applied, which was rejected and why, the "validating" mark
 *   that stops a crash loop): `DATA_DIR/source/state.json` by default, or the store;
 *   the applied revision itself, compiled (its Fleet) with a SHA-256 digest of the bytes, in the
 *   store: a replica that does not run the source serves the revision without a clone.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { deserialize, serialize } from 'node:v8';
import type { MaterialStore } from '../store/material.js';
import type { OutboxEntry } from '../store/roles/outbox.js';
import type { ValidatedRevision } from './source.js';

export interface SourceStateBackend {
  /** For log lines: where the state lives. */
  readonly where: string;
  /** The saved text; undefined when nothing was saved yet. */
  read(): Promise<string | undefined>;
  /** `event` (a webhook event the new state causes) is written with it; only where `writesEvents`. */
  write(text: string, event?: OutboxEntry): Promise<void>;
  /** Whether `write` keeps an event with the state (the store: one batch or transaction); a file cannot. */
  readonly writesEvents: boolean;
}

export function fileSourceState(file: string): SourceStateBackend {
  return {
    where: file,
    writesEvents: false,
    async read() {
      try {
        return await readFile(file, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw err;
      }
    },
    async write(text) {
      // Written whole, then renamed: a reader never sees half a state.
      const tmp = `${file}.tmp-${process.pid}`;
      await mkdir(dirname(file), { recursive: true });
      await writeFile(tmp, text);
      await rename(tmp, file);
    },
  };
}

const STATE_KEY = 'source-state';
const APPLIED_KEY = 'applied-revision';
/** The digest alone: what a replica that follows the leader polls (cheap), before it reads the revision. */
const APPLIED_DIGEST_KEY = 'applied-revision-digest';

/** The state in the store. `legacyFile`: a state.json of an install from before, read once when the store has none. */
export function storeSourceState(store: Pick<MaterialStore, 'getMaterial' | 'putMaterial'>, legacyFile?: string): SourceStateBackend {
  const legacy = legacyFile ? fileSourceState(legacyFile) : undefined;
  return {
    where: 'the store',
    writesEvents: true,
    async read() {
      const v = await store.getMaterial('blob', STATE_KEY);
      if (v) return v.toString('utf8');
      return legacy?.read();
    },
    async write(text, event) {
      await store.putMaterial('blob', STATE_KEY, Buffer.from(text, 'utf8'), event ? { event } : {});
    },
  };
}

/** Keeps the applied revision (info and compiled fleet) in the store, after a digest of its bytes. */
export async function saveAppliedRevision(store: Pick<MaterialStore, 'putMaterial'>, rev: ValidatedRevision): Promise<string> {
  const body = serialize({ info: rev.info, fleet: rev.fleet });
  const digest = createHash('sha256').update(body).digest();
  await store.putMaterial('blob', APPLIED_KEY, Buffer.concat([digest, body]));
  // After the revision: a reader that sees the new digest finds the revision it names (or a newer one).
  await store.putMaterial('blob', APPLIED_DIGEST_KEY, digest);
  return digest.toString('hex');
}

/** The digest of the applied revision in the store (hex), without reading the revision. */
export async function appliedRevisionDigest(store: Pick<MaterialStore, 'getMaterial'>): Promise<string | undefined> {
  return (await store.getMaterial('blob', APPLIED_DIGEST_KEY))?.toString('hex');
}

/**
 * The applied revision the store holds, with its digest; undefined when there is none. Bytes that
 * do not match their digest (a torn or altered value) are refused rather than deserialized.
 */
export async function loadAppliedRevision(store: Pick<MaterialStore, 'getMaterial'>): Promise<{ revision: ValidatedRevision; digest: string } | undefined> {
  const v = await store.getMaterial('blob', APPLIED_KEY);
  if (!v) return undefined;
  const digest = v.subarray(0, 32);
  const body = v.subarray(32);
  if (v.length < 33 || !createHash('sha256').update(body).digest().equals(digest))
    throw new Error('the applied revision in the store does not match its digest');
  return { revision: deserialize(body) as ValidatedRevision, digest: digest.toString('hex') };
}
