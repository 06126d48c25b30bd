/** `orchard validate`: check a fleet repository the way the server does before applying it. */
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { loadFleet } from '../gitops/load.js';
import type { Diagnostic, LoadResult } from '../gitops/model.js';

export type ValidateFormat = 'text' | 'json' | 'github';

export interface ValidateOutput {
  exitCode: 0 | 1 | 2;
  stdout: string;
}

export interface ValidateOptions {
  /** Warnings count as errors (exit 1), for repositories that keep to Apple's schema exactly. */
  strict?: boolean;
  /** ProfileManifests-format folder for custom preference domains. */
  manifests?: string;
}

export async function runValidate(path: string, format: ValidateFormat, opts: ValidateOptions = {}): Promise<ValidateOutput> {
  const root = resolve(path);
  try {
    if (!(await stat(root)).isDirectory()) return { exitCode: 2, stdout: `orchard validate: ${path} is not a directory\n` };
  } catch {
    return { exitCode: 2, stdout: `orchard validate: ${path} does not exist\n` };
  }
  const started = performance.now();
  let result: LoadResult;
  try {
    result = await loadFleet(root, opts.manifests !== undefined ? { manifests: resolve(opts.manifests) } : {});
  } catch (err) {
    // loadFleet reports everything as diagnostics; this is the last line against a stack trace.
    const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    result = {
      ok: false,
      diagnostics: [{ severity: 'error', rule: 'loader', file: '.', line: 1, col: 1, message: `loader failed: ${message.slice(0, 300)}` }],
    };
  }
  const ms = performance.now() - started;
  if (opts.strict) {
    // The same findings, with warnings promoted: the lines say "error" and the exit code follows.
    result = { ...result, diagnostics: result.diagnostics.map((d) => (d.severity === 'warning' ? { ...d, severity: 'error' } : d)) };
  }
  const errors = result.diagnostics.filter((d) => d.severity === 'error').length;
  const infos = result.diagnostics.filter((d) => d.severity === 'info').length;
  const warnings = result.diagnostics.length - errors - infos;
  const ok = errors === 0;
  const exitCode = ok ? 0 : 1;
  const f = result.fleet;
  if (format === 'json') {
    return {
      exitCode,
      stdout: `${JSON.stringify(
        {
          valid: ok,
          errors,
          warnings,
          infos,
          diagnostics: result.diagnostics,
          ...(f
            ? {
                summary: {
                  profiles: f.profiles.size,
                  blueprints: f.blueprints.size,
                  deviceGroups: f.deviceGroups.size,
                  secrets: f.secrets.size,
                  contentHash: f.contentHash,
                },
              }
            : {}),
        },
        null,
        2,
      )}\n`,
    };
  }
  if (format === 'github') {
    // Workflow commands: GitHub turns these into annotations on the pull request's diff.
    const lines = result.diagnostics.map(
      (d) =>
        `::${d.severity === 'error' ? 'error' : d.severity === 'warning' ? 'warning' : 'notice'} file=${d.file},line=${d.line},col=${d.col},title=orchard ${d.rule}::${escapeGithub(d.message)}`,
    );
    lines.push(summary(ok, errors, warnings, infos, ms));
    return { exitCode, stdout: `${lines.join('\n')}\n` };
  }
  const lines = result.diagnostics.map(textLine);
  if (f) lines.push(`${f.profiles.size} profiles, ${f.blueprints.size} blueprints, ${f.deviceGroups.size} device groups, ${f.secrets.size} secrets`);
  lines.push(summary(ok, errors, warnings, infos, ms));
  return { exitCode, stdout: `${lines.join('\n')}\n` };
}

function textLine(d: Diagnostic): string {
  return `${d.file}:${d.line}:${d.col}: ${d.severity}: ${d.message} [${d.rule}]`;
}

function summary(ok: boolean, errors: number, warnings: number, infos: number, ms: number): string {
  const notes = infos > 0 ? `, ${infos} note${infos === 1 ? '' : 's'}` : '';
  return `${ok ? 'valid' : 'invalid'}: ${errors} error${errors === 1 ? '' : 's'}, ${warnings} warning${warnings === 1 ? '' : 's'}${notes} (${Math.round(ms)} ms)`;
}

function escapeGithub(s: string): string {
  return s.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}
