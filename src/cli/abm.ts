/** `orchard abm ...`: the key pair to upload to Apple Business Manager, and its server tokens. */
import { readFileSync } from 'node:fs';
import { DepClient, DEP_URL } from '../abm/client.js';
import { createKeypair, importToken, listTokens, type StoredToken } from '../abm/material.js';
import { daysLeft, EXPIRY_WARNING_DAYS } from '../abm/token.js';
import { OrchardError } from '../errors.js';
import type { CliOutput } from './push-cert.js';

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

export function abmKeypair(opts: { dataDir: string; force?: boolean }): CliOutput {
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
  opts: { dataDir: string; name?: string; replace?: boolean; depUrl?: string; offline?: boolean; now?: Date },
): Promise<CliOutput> {
  const now = opts.now ?? new Date();
  let t: StoredToken;
  try {
    t = importToken(opts.dataDir, readFileSync(file), opts.name ?? 'default', { now, replace: opts.replace });
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

export function abmTokenList(opts: { dataDir: string; now?: Date }): CliOutput {
  const now = opts.now ?? new Date();
  const tokens = listTokens(opts.dataDir);
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
