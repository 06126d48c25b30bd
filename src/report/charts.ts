/**
 * Pictures for the status page, drawn on the server as inline SVG (no JavaScript, no external
 * resources, so the page's CSP and its no-script rule hold): the applied revision's convergence
 * over time (verified, pending and failed devices against the time since it was applied) and each
 * staged rollout's steps. Every text is escaped; every number is finite and rounded.
 */
import { escapeHtml } from '../http/status-page.js';
import type { RolloutView } from '../reconcile/rollout.js';
import type { ConvergenceView } from './progress.js';

const COLORS = { verified: '#1a7f37', pending: '#9a6700', failed: '#cf222e', todo: '#d0d7de', axis: '#57606a' } as const;
const SERIES = ['verified', 'pending', 'failed'] as const;

const r1 = (n: number) => (Number.isFinite(n) ? Math.round(n * 10) / 10 : 0);

/** "45 s", "12 min", "3.5 h", "2 d": the axis's time labels. */
export function duration(ms: number): string {
  const s = ms / 1000;
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min`;
  if (s < 36 * 3600) return `${r1(s / 3600)} h`;
  return `${r1(s / 86400)} d`;
}

/** Verified, pending and failed devices against the time since the revision was applied. */
export function convergenceChart(v: ConvergenceView, size = { width: 640, height: 220 }): string {
  const { width, height } = size;
  const pad = { left: 44, right: 12, top: 12, bottom: 36 };
  const w = width - pad.left - pad.right;
  const h = height - pad.top - pad.bottom;
  const pts = v.points;
  const tMax = Math.max(1, ...pts.map((p) => p.t));
  const yMax = Math.max(1, ...pts.map((p) => p.verified + p.pending + p.failed));
  const x = (t: number) => r1(pad.left + (t / tMax) * w);
  const y = (n: number) => r1(pad.top + h - (n / yMax) * h);
  const lines = SERIES.map((k) => {
    // A single sample is a dot's worth of line.
    const coords = pts.length === 1 ? [pts[0]!, { ...pts[0]!, t: tMax }] : pts;
    const d = coords.map((p) => `${x(p.t)},${y(p[k])}`).join(' ');
    return `<polyline class="c-${k}" data-series="${k}" fill="none" stroke="${COLORS[k]}" stroke-width="2" points="${d}"/>`;
  });
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const tx = x(f * tMax);
    return `<line x1="${tx}" y1="${pad.top + h}" x2="${tx}" y2="${pad.top + h + 4}" stroke="${COLORS.axis}"/><text x="${tx}" y="${pad.top + h + 16}" text-anchor="middle">${escapeHtml(duration(f * tMax))}</text>`;
  });
  const yTicks = [0, 0.5, 1].map((f) => {
    const n = Math.round(f * yMax);
    return `<text x="${pad.left - 6}" y="${r1(y(n) + 4)}" text-anchor="end">${n}</text><line x1="${pad.left}" y1="${y(n)}" x2="${pad.left + w}" y2="${y(n)}" stroke="${COLORS.todo}" stroke-dasharray="2 3"/>`;
  });
  const last = pts.at(-1);
  const label = last
    ? `Convergence of revision ${v.revision.slice(0, 12)}: ${last.verified} verified, ${last.pending} pending, ${last.failed} failed after ${duration(last.t)}`
    : `Convergence of revision ${v.revision.slice(0, 12)}: no sample yet`;
  const legend = SERIES.map(
    (k, i) =>
      `<rect x="${pad.left + i * 110}" y="${height - 12}" width="10" height="10" fill="${COLORS[k]}"/><text x="${pad.left + 14 + i * 110}" y="${height - 3}">${k}</text>`,
  );
  return [
    `<svg class="chart convergence" xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeHtml(label)}" font-size="11" font-family="system-ui, sans-serif" fill="${COLORS.axis}">`,
    `<title>${escapeHtml(label)}</title>`,
    ...yTicks,
    `<line x1="${pad.left}" y1="${pad.top + h}" x2="${pad.left + w}" y2="${pad.top + h}" stroke="${COLORS.axis}"/>`,
    ...ticks,
    ...lines,
    ...legend,
    `<text x="${pad.left + w}" y="${height - 3}" text-anchor="end">time since apply</text>`,
    '</svg>',
  ].join('');
}

/** One staged rollout: its steps as a bar from 0 to 100%, done, current (by phase) and to come. */
export function rolloutChart(v: RolloutView, size = { width: 640, height: 64 }): string {
  const { width, height } = size;
  const pad = { left: 8, right: 8 };
  const w = width - pad.left - pad.right;
  const x = (pct: number) => r1(pad.left + (Math.min(100, Math.max(0, pct)) / 100) * w);
  const current = v.phase === 'halted' ? COLORS.failed : v.phase === 'rolling' ? COLORS.pending : COLORS.verified;
  const segments = v.steps.map((pct, i) => {
    const from = i === 0 ? 0 : v.steps[i - 1]!;
    const fill = i < v.step ? COLORS.verified : i === v.step ? current : COLORS.todo;
    const state = i < v.step ? 'done' : i === v.step ? v.phase : 'next';
    return (
      `<rect data-step="${i + 1}" data-state="${state}" x="${x(from)}" y="8" width="${r1(x(pct) - x(from))}" height="22" fill="${fill}" stroke="#fff" stroke-width="1.5"/>` +
      `<text x="${x(pct)}" y="44" text-anchor="end">${r1(pct)}%</text>`
    );
  });
  const c = v.counts;
  const why = v.halted ? ` — halted: ${v.halted.reason}` : '';
  const label = `Rollout of ${v.blueprint}: step ${v.step + 1} of ${v.steps.length} (${r1(v.percent)}%), ${v.phase}; ${c.verified} verified, ${c.pending} pending, ${c.failed} failed of ${c.devices}${why}`;
  return [
    `<svg class="chart rollout" xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeHtml(label)}" font-size="11" font-family="system-ui, sans-serif" fill="${COLORS.axis}">`,
    `<title>${escapeHtml(label)}</title>`,
    ...segments,
    `<text x="${pad.left}" y="${height - 4}">${escapeHtml(`step ${v.step + 1} of ${v.steps.length}: ${v.phase}, ${c.verified}/${c.devices} verified, ${c.failed} failed`)}</text>`,
    '</svg>',
  ].join('');
}
