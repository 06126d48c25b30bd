/**
 * A plan as people read it: text for a terminal, markdown for a pull-request comment. Changes are
 * grouped by blueprint, profile, kind and key-level diff, so the devices that see the same change
 * share one entry (device variables make one profile differ per device). The markdown stays under
 * GitHub's comment limit whatever the fleet size: long plans are summarized with counts and the
 * first entries.
 */
import type { Plan, PlannedChange } from '../reconcile/plan.js';
import { abmChanges, type AbmAssignment, type AbmPlan } from './abm.js';
import { isNoChange, type ArtifactDiff, type KeyChange } from './diff.js';

export interface FormatOptions {
  /** Devices named per entry before "and N more". */
  maxDevices?: number;
  /** Diff lines per entry before "and N more". */
  maxLines?: number;
  /** Entries shown in full (markdown) before the rest is only counted. */
  maxEntries?: number;
  /** The base revision, named in the markdown heading. */
  base?: string;
}

/** GitHub refuses comments over 65,536 characters; leave room for a bot's own framing. */
export const MARKDOWN_LIMIT = 60_000;

const KINDS: PlannedChange['kind'][] = ['install', 'update', 'remove', 'unmanage'];

export interface PlanEntry {
  blueprints: string;
  profile: string;
  /** A DDM declaration rather than a profile. */
  artifact?: 'declaration';
  identifier: string;
  kind: PlannedChange['kind'];
  /** Serial numbers (device ids when unknown). */
  devices: string[];
  diff?: ArtifactDiff;
}

export function entries(plan: Plan): PlanEntry[] {
  const map = new Map<string, PlanEntry>();
  for (const c of plan.changes) {
    const blueprints = c.blueprints.join(', ');
    const key = `${blueprints}\0${c.artifact ?? ''}\0${c.profile}\0${c.kind}\0${c.diff ?? ''}`;
    let e = map.get(key);
    if (!e) {
      const diff = c.diff !== undefined ? plan.diffs[c.diff] : undefined;
      map.set(
        key,
        (e = {
          blueprints,
          profile: c.profile,
          identifier: c.identifier,
          kind: c.kind,
          devices: [],
          ...(c.artifact ? { artifact: c.artifact } : {}),
          ...(diff ? { diff } : {}),
        }),
      );
    }
    e.devices.push(c.serial ?? c.device);
  }
  const rank = (k: PlannedChange['kind']) => KINDS.indexOf(k);
  return [...map.values()].sort(
    (a, b) =>
      a.blueprints.localeCompare(b.blueprints) || a.profile.localeCompare(b.profile) || rank(a.kind) - rank(b.kind) || b.devices.length - a.devices.length,
  );
}

function devicesList(list: string[], max: number): string {
  const sorted = [...list].sort();
  return sorted.length > max ? `${sorted.slice(0, max).join(', ')} and ${sorted.length - max} more` : sorted.join(', ');
}

export function summary(plan: Plan): string {
  if (plan.changes.length === 0) return `No changes for ${plan.devices} device${plan.devices === 1 ? '' : 's'}.`;
  const counts = new Map<string, number>();
  for (const c of plan.changes) counts.set(c.kind, (counts.get(c.kind) ?? 0) + 1);
  const devices = new Set(plan.changes.map((c) => c.device)).size;
  const parts = KINDS.filter((k) => counts.has(k)).map((k) => `${counts.get(k)} ${k}${counts.get(k) === 1 ? '' : 's'}`);
  return `${parts.join(', ')} on ${devices} of ${plan.devices} devices.`;
}

const MAX_LINE = 300;
const clip = (s: string) => (s.length > MAX_LINE ? `${s.slice(0, MAX_LINE - 1)}…` : s);

function keyLine(k: KeyChange, indent: string): string[] {
  if (k.op === 'add') return [clip(`+${indent}${k.path}: ${k.new}`)];
  if (k.op === 'remove') return [clip(`-${indent}${k.path}: ${k.old}`)];
  return [clip(`-${indent}${k.path}: ${k.old}`), clip(`+${indent}${k.path}: ${k.new}`)];
}

/** The diff as lines in unified-diff style (`-` old, `+` new), for a `diff` code block or a terminal. */
export function diffLines(d: ArtifactDiff | undefined, kind: PlannedChange['kind']): string[] {
  if (!d) return kind === 'update' ? ['  (the installed version is not in this repository: plan with --base to see what changes)'] : [];
  if (isNoChange(d)) return ['  (no key changes: the file was rewritten with the same content)'];
  const out: string[] = [];
  for (const k of d.keys) out.push(...keyLine(k, ' '));
  for (const p of d.payloads) {
    const sign = p.op === 'add' ? '+' : p.op === 'remove' ? '-' : ' ';
    out.push(clip(`${sign} payload ${p.identifier} (${p.type})${p.op === 'add' ? ' added' : p.op === 'remove' ? ' removed' : ''}`));
    for (const k of p.keys) out.push(...keyLine(k, '     '));
  }
  return out;
}

/** Whether `diffLines` has anything to say about the entry. */
const hasLines = (e: PlanEntry) => e.diff !== undefined || e.kind === 'update';

function limited(lines: string[], max: number): string[] {
  return lines.length > max ? [...lines.slice(0, max), `  … and ${lines.length - max} more lines`] : lines;
}

export function textPlan(plan: Plan, opts: FormatOptions = {}): string {
  const maxDevices = opts.maxDevices ?? 10;
  const maxLines = opts.maxLines ?? 50;
  const out: string[] = [];
  let last = '';
  for (const e of entries(plan)) {
    const head = `blueprint ${e.blueprints} / ${e.artifact ?? 'profile'} ${e.profile} (${e.identifier})`;
    if (head !== last) out.push((last = head));
    out.push(`  ${e.kind.padEnd(8)} ${String(e.devices.length).padStart(5)}  ${devicesList(e.devices, maxDevices)}`);
    for (const l of limited(diffLines(e.diff, e.kind), maxLines)) out.push(`      ${l}`);
  }
  if (plan.abm) out.push(...abmText(plan.abm, maxDevices, maxLines));
  for (const e of plan.errors) out.push(`error: device ${e.serial ?? e.device}: ${e.message}`);
  out.push(summary(plan));
  return `${out.join('\n')}\n`;
}

function assignmentLabel(a: AbmAssignment): string {
  if (a.kind === 'unassign') return a.from ? `from ${a.from}` : 'its profile';
  return a.from && a.from !== a.profile ? `${a.profile} (was ${a.from})` : a.from ? `${a.profile} (new definition)` : `${a.profile}`;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** One line saying what the ABM part does. */
export function abmSummary(p: AbmPlan): string {
  const serials = p.assignments.reduce((n, a) => n + a.serials.length, 0);
  const changes = abmChanges(p)
    ? `${plural(p.profiles.length, 'enrollment profile change')}, ${plural(serials, 'serial')} (re)assigned or unassigned`
    : 'no change in ABM';
  return `ABM: ${plural(p.devices, 'device')}, ${p.notEnrolled} not enrolled yet; ${changes}.`;
}

function abmText(p: AbmPlan, maxDevices: number, maxLines: number): string[] {
  const out: string[] = [];
  for (const b of p.blueprints)
    out.push(`blueprint ${b.name}: ${plural(b.serials.length, 'ABM device')} not enrolled yet  ${devicesList(b.serials, maxDevices)}`);
  for (const c of p.profiles) {
    out.push(`enrollment profile ${c.name}: ${c.change === 'redefine' ? 'redefine (its content changed)' : c.change}`);
    if (c.diff) for (const l of limited(diffLines(c.diff, 'update'), maxLines)) out.push(`      ${l}`);
  }
  for (const a of p.assignments)
    out.push(`  ${a.kind.padEnd(8)} ${String(a.serials.length).padStart(5)}  ${assignmentLabel(a)}: ${devicesList(a.serials, maxDevices)}`);
  out.push(abmSummary(p));
  return out;
}

const html = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
/** Table cells: a pipe would end the cell. */
const cell = (s: string) => html(s).replace(/\|/g, '\\|');

/** A fence longer than any backtick run inside, so no value can close the block. */
function fenced(lang: string, lines: string[]): string {
  const longest = Math.max(0, ...lines.map((l) => Math.max(0, ...[...l.matchAll(/`+/g)].map((m) => m[0].length))));
  const fence = '`'.repeat(Math.max(3, longest + 1));
  return `${fence}${lang}\n${lines.join('\n')}\n${fence}`;
}

function abmMarkdown(p: AbmPlan, maxDevices: number, maxLines: number): string[] {
  const out = ['#### Apple Business Manager', '', `**${html(abmSummary(p))}**`, ''];
  if (p.blueprints.length) {
    out.push('| blueprint | ABM devices not enrolled yet | which |', '|---|---:|---|');
    for (const b of p.blueprints) out.push(`| ${cell(b.name)} | ${b.serials.length} | ${cell(devicesList(b.serials, maxDevices))} |`);
    out.push('');
  }
  if (p.assignments.length) {
    out.push('| enrollment profile | change | serials | which |', '|---|---|---:|---|');
    for (const a of p.assignments)
      out.push(`| \`${cell(assignmentLabel(a))}\` | ${a.kind} | ${a.serials.length} | ${cell(devicesList(a.serials, maxDevices))} |`);
    out.push('');
  }
  for (const c of p.profiles) {
    out.push(`<details><summary><b>${c.change}</b> enrollment profile <code>${html(c.name)}</code></summary>`, '');
    if (c.diff) out.push(fenced('diff', limited(diffLines(c.diff, 'update'), maxLines)));
    out.push('</details>', '');
  }
  return out;
}

export function markdownPlan(plan: Plan, opts: FormatOptions = {}): string {
  const maxDevices = opts.maxDevices ?? 10;
  const maxLines = opts.maxLines ?? 40;
  const maxEntries = opts.maxEntries ?? 30;
  const all = entries(plan);
  const head = [`### Orchard plan${opts.base ? ` (changes since \`${opts.base.replace(/`/g, '')}\`)` : ''}`, '', `**${summary(plan)}**`, ''];
  const table: string[] = [];
  if (all.length) {
    table.push('| blueprint | profile | change | devices | which |', '|---|---|---|---:|---|');
    for (const e of all.slice(0, maxEntries)) {
      table.push(
        `| ${cell(e.blueprints)} | ${e.artifact ? 'declaration ' : ''}\`${cell(e.profile)}\` | ${e.kind} | ${e.devices.length} | ${cell(devicesList(e.devices, maxDevices))} |`,
      );
    }
    if (all.length > maxEntries) table.push(`| … | ${all.length - maxEntries} more entries | | | |`);
    table.push('');
  }
  const errors: string[] = [];
  if (plan.errors.length) {
    errors.push(`#### Errors (the apply would fail for ${plan.errors.length === 1 ? 'this device' : 'these devices'})`, '');
    for (const e of plan.errors.slice(0, 20)) errors.push(`- \`${(e.serial ?? e.device).replace(/`/g, '')}\`: ${html(e.message)}`);
    if (plan.errors.length > 20) errors.push(`- … and ${plan.errors.length - 20} more`);
    errors.push('');
  }
  const abm = plan.abm ? abmMarkdown(plan.abm, maxDevices, maxLines) : [];
  const out = [...head, ...table, ...abm, ...errors];
  let size = out.reduce((n, l) => n + l.length + 1, 0);
  const tail = (n: number) => `_${n} more ${n === 1 ? 'entry' : 'entries'} not shown here: \`orchard plan --format json\` has them all._\n`;
  let shown = 0;
  for (const e of all) {
    if (shown >= maxEntries || !hasLines(e)) continue;
    const lines = diffLines(e.diff, e.kind);
    const section = [
      `<details><summary><b>${e.kind}</b> ${e.artifact ? 'declaration ' : ''}<code>${html(e.profile)}</code> (${html(e.identifier)}) on ${e.devices.length} device${e.devices.length === 1 ? '' : 's'}: ${html(devicesList(e.devices, maxDevices))}</summary>`,
      '',
      fenced('diff', limited(lines, maxLines)),
      '</details>',
      '',
    ].join('\n');
    if (size + section.length + 200 > MARKDOWN_LIMIT) break;
    out.push(section);
    size += section.length + 1;
    shown++;
  }
  const withDiff = all.filter(hasLines).length;
  if (shown < withDiff) out.push(tail(withDiff - shown));
  return `${out.join('\n')}\n`;
}
