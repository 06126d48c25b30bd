/**
 * Secret values for `${secret:NAME}`: a file NAME in the server's secrets directory, or the
 * environment variable ORCHARD_SECRET_<NAME> (upper case, other characters as `_`). Never in
 * git, never logged. Values are re-read at most every few seconds so a rotated file is seen.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export function envName(name: string): string {
  return `ORCHARD_SECRET_${name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

export class SecretStore {
  private readonly cache = new Map<string, { value: string | undefined; at: number }>();

  constructor(
    private readonly dir: string | undefined,
    private readonly env: NodeJS.ProcessEnv = process.env,
    private readonly ttlMs = 5000,
  ) {}

  lookup = (name: string): string | undefined => {
    if (!/^[A-Za-z0-9_.-]+$/.test(name)) return undefined;
    const hit = this.cache.get(name);
    if (hit && Date.now() - hit.at < this.ttlMs) return hit.value;
    let value: string | undefined;
    if (this.dir) {
      try {
        // One trailing newline is an editor's, not the secret's.
        value = readFileSync(join(this.dir, name), 'utf8').replace(/\r?\n$/, '');
      } catch {
        value = undefined;
      }
    }
    value ??= this.env[envName(name)];
    this.cache.set(name, { value, at: Date.now() });
    return value;
  };
}
