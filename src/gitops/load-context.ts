/**
 * What the loader's passes (load-parse, load-schema, load-build, load-link, load-check) share:
 * the parsed documents, the diagnostics collector, and name suggestions.
 */
import type { Document, LineCounter } from 'yaml';
import type { PayloadIssue } from './apple/payloads.js';
import type { Diagnostic, Origin } from './model.js';
import { locate, type JsonPath } from './yaml-pos.js';

/** One YAML document of the repository, as parsed. */
export interface ParsedDoc {
  file: string;
  doc: Document;
  lc: LineCounter;
  value: Record<string, unknown>;
}

/** The file being processed, for the last-resort diagnostic of an internal error. */
export interface LoadState {
  file: string;
}

export const atFile = (file: string): Origin => ({ file, line: 1, col: 1 });

export class Collector {
  readonly diagnostics: Diagnostic[] = [];
  private errorCount = 0;
  private dropped = { errors: 0, warnings: 0 };
  /** Suggestions cost an edit distance against every name: a budget keeps hostile input cheap. */
  suggestions = 500;
  constructor(private readonly max: number) {}
  add(severity: Diagnostic['severity'], rule: string, at: Origin, message: string): void {
    if (severity === 'error') this.errorCount++;
    if (this.diagnostics.length >= this.max) {
      this.dropped[severity === 'error' ? 'errors' : 'warnings']++;
      return;
    }
    this.diagnostics.push({ severity, rule, file: at.file, line: at.line, col: at.col, message });
  }
  at(d: ParsedDoc, path: JsonPath, key = false): Origin {
    return { file: d.file, ...locate(d.doc, d.lc, path, { key }) };
  }
  get errors(): number {
    return this.errorCount;
  }
  /** The diagnostics, sorted, and one more saying how many were left out. */
  finish(): Diagnostic[] {
    const out = this.diagnostics.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.col - b.col);
    const { errors, warnings } = this.dropped;
    if (errors + warnings > 0) {
      out.push({
        severity: errors > 0 ? 'error' : 'warning',
        rule: 'limit-diagnostics',
        file: '.',
        line: 1,
        col: 1,
        message: `${errors} more errors and ${warnings} more warnings not shown (limit diagnostics: ${this.max})`,
      });
    }
    return out;
  }
}

/** Payload findings to diagnostics: each custom preference domain's "not checked" only once per repository. */
export class PayloadReporter {
  private readonly unchecked = new Set<string>();
  constructor(private readonly c: Collector) {}
  add(issue: PayloadIssue, at: Origin, message = issue.message): void {
    if (issue.rule === 'custom-preferences') {
      // The message names the domain (a payload's type, or a domain inside managed preferences).
      if (this.unchecked.has(issue.message)) return;
      this.unchecked.add(issue.message);
    }
    this.c.add(issue.severity, issue.rule, at, message);
  }
}

/** ` (did you mean "x"?)` for the closest of `options`, or '' (within the collector's budget). */
export function suggest(name: string, options: string[], c: Collector): string {
  if (c.suggestions-- <= 0 || name.length > 200) return '';
  let best: string | undefined;
  let bestD = Infinity;
  for (const o of options) {
    const d = editDistance(name.toLowerCase(), o.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = o;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(name.length / 3)) ? ` (did you mean "${best}"?)` : '';
}

function editDistance(a: string, b: string): number {
  const dp = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = i - 1; // dp[0] before this row
    dp[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = dp[j] ?? 0;
      dp[j] = Math.min(up + 1, (dp[j - 1] ?? 0) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = up;
    }
  }
  return dp[b.length] ?? 0;
}
