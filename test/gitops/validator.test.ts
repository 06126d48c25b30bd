/** The isolated loader: loadFleet in a heap-capped child process (the compiled dist/ entry). */
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadFleet } from '../../src/gitops/load.js';
import { isolatedLoader, ValidationLimitError } from '../../src/gitops/validator.js';
import { tempDir, waitFor } from './helpers.js';

const EXAMPLE = join(import.meta.dirname, '../../config-examples/fleet');
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A repository with one DeviceGroup of `n` devices. */
function deviceGroup(n: number): string {
  const dir = tempDir('orchard-validator-');
  dirs.push(dir);
  let text = 'apiVersion: orchard/v1\nkind: DeviceGroup\nmetadata: {name: everyone}\nspec:\n  devices:\n';
  for (let i = 0; i < n; i++) text += `    - {serial: C${String(i).padStart(11, '0')}, tags: [t]}\n`;
  writeFileSync(join(dir, 'groups.yaml'), text);
  return dir;
}

/** Validator processes still running for `dir`. */
function validatorsFor(dir: string): number {
  try {
    return execFileSync('pgrep', ['-f', `load-worker.js ${dir}`], { encoding: 'utf8' })
      .trim()
      .split('\n').length;
  } catch {
    return 0; // pgrep exits 1 when nothing matches
  }
}

describe('isolatedLoader', () => {
  it('gives the same result as loadFleet in this process, Maps, Sets and file bytes included', async () => {
    const load = isolatedLoader({ memoryMb: 256 });
    const [child, here] = await Promise.all([load(EXAMPLE, new AbortController().signal), loadFleet(EXAMPLE)]);
    expect(here.ok).toBe(true);
    expect(child).toEqual(here);
    const dock = [...child.fleet!.profiles.values()].find((p) => p.fileBytes);
    expect(Buffer.isBuffer(dock?.fileBytes)).toBe(true);
    expect(child.fleet!.tagsBySerial.values().next().value).toBeInstanceOf(Set);
  });

  it('passes the loader options to the child', async () => {
    const r = await isolatedLoader({ memoryMb: 256, load: { limits: { yamlFileBytes: 100 } } })(EXAMPLE, new AbortController().signal);
    expect(r.ok).toBe(false);
    expect(r.diagnostics[0]).toMatchObject({ rule: 'limit-file-size' });
  });

  it('a revision that needs more heap than allowed is a memory-limit error, and this process carries on', async () => {
    const dir = deviceGroup(25_000);
    const err = await isolatedLoader({ memoryMb: 48 })(dir, new AbortController().signal).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationLimitError);
    expect(err).toMatchObject({ limit: 'memory', message: 'validation exceeded the memory limit (48 MB)' });
    // The same directory with room enough is fine: the limit, not the loader, refused it.
    expect((await isolatedLoader({ memoryMb: 512 })(dir, new AbortController().signal)).ok).toBe(true);
  });

  it('an abort kills the validating process and rejects with the abort reason', async () => {
    const dir = deviceGroup(25_000);
    const ac = new AbortController();
    const running = isolatedLoader({ memoryMb: 512 })(dir, ac.signal);
    await waitFor('the validator to start', () => validatorsFor(dir) > 0);
    const reason = new Error('time is up');
    ac.abort(reason);
    await expect(running).rejects.toBe(reason);
    await waitFor('the validator to be gone', () => validatorsFor(dir) === 0);
  });
});
