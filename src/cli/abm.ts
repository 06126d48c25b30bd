/**
 * `orchard abm ...`: the key pair to upload to Apple Business Manager, and its server tokens. On
 * the data directory's files (`DATA_DIR/abm`, which a server adopts into its store), or with
 * `--store URL` on the store's material itself, sealed with the servers' material key.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DepClient, DEP_URL } from '../abm/client.js';
import { AbmMaterial, createKeypair, importToken, listTokens, type StoredToken } from '../abm/material.js';
import { daysLeft, EXPIRY_WARNING_DAYS } from '../abm/token.js';
import { ConfigError } from '../config.js';
import { OrchardError } from '../errors.js';
import { openStore } from '../store/open.js';
import { loadSealer, MATERIAL_KEY_ENV, MATERIAL_KEY_FILE } from '../store/sealing.js';
import type { CliOutput } from './push-cert.js';

/** Where `orchard abm` works: the data directory's files, or (with `store`) the store's material. */
export interface AbmTarget {
  dataDir: string;
  /** `--store postgres://...` */
  store?: string;
  /** cfg.materialKeyFile */
  materialKeyFile?: string;
  /** ORCHARD_MATERIAL_KEY */
  materialKey?: string;
}

/**
 * Runs `use` on the store's ABM material, sealed with the material key the servers take (the
 * environment's, the config's file, or DATA_DIR/material.key). A missing key is an error, not a
 * new key: material sealed with a key no server has would be useless.
 */
async function withStoreMaterial<T>(t: AbmTarget & { store: string }, use: (m: AbmMaterial) => Promise<T>): Promise<T> {
  const file = t.materialKeyFile ?? join(t.dataDir, MATERIAL_KEY_FILE);
  if (!t.materialKey && !existsSync(file))
    throw new ConfigError(`--store needs the servers' material key: set ${MATERIAL_KEY_ENV}, or --material-key-file FILE (no ${file})`);
  const { sealer } = loadSealer({ secret: t.materialKey, file, dataDir: t.dataDir });
  const store = await openStore({ store: t.store, dataDir: t.dataDir });
  try {
    return await use(new AbmMaterial(store, sealer));
  } finally {
    await store.close();
  }
}

function failure(err: unknown, what: string): CliOutput {
  // Orchard's errors never quote secrets; anything else is shown by kind only.
  const msg =
    err instanceof OrchardError ? err.message : err instanceof Error && 'code' in err ? `${String((err as { code: unknown }).code)}` : 'unexpected error';
  return { exitCode: err instanceof OrchardError && err.code === 'not_found' ? 1 : 2, stdout: '', stderr: `orchard abm ${what}: ${msg}\n` };
}

function expiryLine(t: StoredToken, now: Date): { line: string; warning?: string } {
  const days = daysLeft(t, now);
  const line = `  expires:  ${t.accessTokenExpiry.toISOString()} (${days < 0 ? 'EXPIRED' : `${days} days`})`;
  if (days < 0) return { line, warning: `token "${t.name}" expired: download a new one in ABM (Preferences > your MDM server > Download Token) and import it` };
  if (days <= EXPIRY_WARNING_DAYS) return { line, warning: `token "${t.name}" expires in ${days} days: renew it in ABM and import it` };
  return { line };
}

export async function abmKeypair(opts: AbmTarget & { force?: boolean }): Promise<CliOutput> {
  const { store } = opts;
  if (store) {
    try {
      const kp = await withStoreMaterial({ ...opts, store }, (m) => m.createKeypair({ force: opts.force }));
      // The certificate on stdout (to redirect into the file to upload); what happened on stderr.
      const note = kp.created ? 'made a new key pair in the store' : 'kept the key pair in the store (--force makes a new one)';
      return {
        exitCode: 0,
        stdout: kp.certPem,
        stderr: `${note}; upload this certificate to ABM (Preferences > Your MDM Servers > Add, "Upload Public Key"), then: orchard abm token import FILE.p7m --store URL\n`,
      };
    } catch (err) {
      return failure(err, 'keypair');
    }
  }
  try {
    const kp = createKeypair(opts.dataDir, { force: opts.force });
    const lines = kp.created
      ? [`wrote ${kp.keyFile} (private key, mode 0600: keep it; tokens ABM makes for this certificate need it)`]
      : [`kept the existing key pair (${kp.keyFile}; --force makes a new one)`];
    lines.push(`upload ${kp.certFile} to ABM (Preferences > Your MDM Servers > Add, "Upload Public Key"), then: orchard abm token import FILE.p7m`);
    return { exitCode: 0, stdout: `${lines.join('\n')}\n`, stderr: '' };
  } catch (err) {
    return failure(err, 'keypair');
  }
}

export async function abmTokenImport(
  file: string,
  opts: AbmTarget & { name?: string; replace?: boolean; depUrl?: string; offline?: boolean; now?: Date },
): Promise<CliOutput> {
  const now = opts.now ?? new Date();
  const name = opts.name ?? 'default';
  const { store } = opts;
  let t: StoredToken;
  try {
    const p7m = readFileSync(file);
    t = store
      ? await withStoreMaterial({ ...opts, store }, (m) => m.importToken(p7m, name, { now, replace: opts.replace }))
      : importToken(opts.dataDir, p7m, name, { now, replace: opts.replace });
  } catch (err) {
    return failure(err, 'token import');
  }
  const out = [`imported ABM server token "${t.name}"`];
  const exp = expiryLine(t, now);
  out.push(exp.line);
  const err: string[] = exp.warning ? [`warning: ${exp.warning}`] : [];
  if (!opts.offline) {
    try {
      const account = await new DepClient({ credentials: t, baseUrl: opts.depUrl ?? DEP_URL, timeoutMs: 15_000 }).account();
      out.push(`  organisation: ${account.org_name}`, `  server name:  ${account.server_name}`);
    } catch (e) {
      err.push(`warning: the token could not be checked with ABM: ${e instanceof OrchardError ? e.message : 'unexpected error'}`);
    }
  }
  return { exitCode: 0, stdout: `${out.join('\n')}\n`, stderr: err.length ? `${err.join('\n')}\n` : '' };
}

export async function abmTokenList(opts: AbmTarget & { now?: Date }): Promise<CliOutput> {
  const now = opts.now ?? new Date();
  const { store } = opts;
  let tokens: StoredToken[];
  try {
    tokens = store ? await withStoreMaterial({ ...opts, store }, (m) => m.tokens()) : listTokens(opts.dataDir);
  } catch (err) {
    return failure(err, 'token list');
  }
  if (tokens.length === 0)
    return { exitCode: 1, stdout: '', stderr: 'orchard abm token list: no ABM server token imported (orchard abm token import FILE.p7m)\n' };
  const out: string[] = [];
  const err: string[] = [];
  for (const t of tokens) {
    const e = expiryLine(t, now);
    out.push(`${t.name}`, e.line, `  imported: ${t.importedAt.toISOString()}`);
    if (e.warning) err.push(`warning: ${e.warning}`);
  }
  return { exitCode: 0, stdout: `${out.join('\n')}\n`, stderr: err.length ? `${err.join('\n')}\n` : '' };
}
