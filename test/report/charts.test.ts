/**
 * The status page's pictures (src/report/charts.ts): what the SVG says (series, steps, labels,
 * escaping), and how a real headless Chromium (Debian's `chromium`, driven by playwright-core, as
 * in status-page.test.ts) draws it, with JavaScript disabled: a screenshot, and its pixels where
 * the lines and the halted step must be.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RolloutView } from '../../src/reconcile/rollout.js';
import { convergenceChart, duration, rolloutChart } from '../../src/report/charts.js';
import type { ConvergenceView } from '../../src/report/progress.js';

const CHROMIUM = '/usr/bin/chromium';

const convergence: ConvergenceView = {
  revision: 'a1b2c3d4e5f6a7b8c9d0a1b2c3d4e5f6a7b8c9d0',
  since: '2026-01-01T00:00:00.000Z',
  points: [
    { t: 0, verified: 0, pending: 100, failed: 0 },
    { t: 60_000, verified: 40, pending: 58, failed: 2 },
    { t: 120_000, verified: 80, pending: 15, failed: 5 },
    { t: 600_000, verified: 95, pending: 0, failed: 5 },
  ],
};

const rollout = (x: Partial<RolloutView> = {}): RolloutView => ({
  blueprint: 'macs',
  steps: [5, 25, 100],
  step: 1,
  percent: 25,
  phase: 'halted',
  counts: { devices: 25, verified: 20, pending: 0, failed: 5 },
  waitMs: 3600_000,
  maxFailures: '2%',
  revision: 'r',
  startedAt: '2026-01-01T00:00:00.000Z',
  stepStartedAt: '2026-01-01T01:00:00.000Z',
  halted: { at: '2026-01-01T01:10:00.000Z', reason: '5 of 25 devices failed at step 2 of 3 (25%); maxFailures 2%' },
  acceptedFailures: 0,
  ...x,
});

describe('the SVG', () => {
  it('convergence: one line per state, time labels since apply, a label that says where it stands', () => {
    const svg = convergenceChart(convergence);
    expect(svg).toMatch(/^<svg class="chart convergence" xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    for (const k of ['verified', 'pending', 'failed']) expect(svg).toContain(`data-series="${k}"`);
    expect(svg).toContain('aria-label="Convergence of revision a1b2c3d4e5f6: 95 verified, 0 pending, 5 failed after 10 min"');
    expect(svg).toContain('>10 min</text>');
    expect(svg).not.toMatch(/NaN|Infinity|<script/);
    // One sample: still a line, no division by zero.
    expect(convergenceChart({ ...convergence, points: [convergence.points[0]!] })).not.toMatch(/NaN|Infinity/);
    expect(convergenceChart({ ...convergence, points: [] })).toContain('no sample yet');
  });

  it('rollout: a segment per step, done / current (by phase) / next, the halt reason in the label', () => {
    const svg = rolloutChart(rollout());
    expect([...svg.matchAll(/data-state="(\w+)"/g)].map((m) => m[1])).toEqual(['done', 'halted', 'next']);
    expect(svg).toContain('halted: 5 of 25 devices failed at step 2 of 3 (25%)');
    expect(rolloutChart(rollout({ step: 2, percent: 100, phase: 'complete', halted: undefined }))).not.toContain('halted');
  });

  it('escapes every text', () => {
    const evil = '<script>alert(1)</script>"&';
    const svg = rolloutChart(rollout({ blueprint: evil, halted: { at: '', reason: evil } })) + convergenceChart({ ...convergence, revision: evil });
    expect(svg).not.toContain('<script>');
    expect(svg).toContain('&lt;script&gt;alert(1)&lt;/script&gt;&quot;&amp;');
  });

  it('durations read like people say them', () => {
    expect([duration(0), duration(45_000), duration(600_000), duration(5 * 3600_000), duration(3 * 86400_000)]).toEqual([
      '0 s',
      '45 s',
      '10 min',
      '5 h',
      '3 d',
    ]);
  });
});

describe('in a real headless Chromium, without JavaScript', () => {
  let browser: Browser;
  beforeAll(async () => {
    // Installed by .ci/run from .ci/apt-packages; missing it is a failure, not a skip.
    expect(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium`).toBe(true);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
  }, 60_000);
  afterAll(() => browser?.close());

  it('draws the lines and the halted step where they belong (screenshot pixels)', async () => {
    const context = await browser.newContext({ viewport: { width: 700, height: 400 }, javaScriptEnabled: false });
    const page = await context.newPage();
    await page.setContent(
      `<!doctype html><html><body style="margin:0;background:#fff">${convergenceChart(convergence)}<br>${rolloutChart(rollout())}</body></html>`,
    );
    const shot = await page.screenshot({ fullPage: true });
    expect(shot.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))).toBe(true);
    const lines = page.locator('svg.convergence polyline');
    expect(await lines.count()).toBe(3);
    for (const l of await lines.all()) expect((await l.boundingBox())!.width).toBeGreaterThan(500);
    const halted = (await page.locator('svg.rollout rect[data-state="halted"]').boundingBox())!;
    const done = (await page.locator('svg.rollout rect[data-state="done"]').boundingBox())!;
    expect(halted.width).toBeGreaterThan(done.width * 3);

    // Read the screenshot's pixels back in a second page (JavaScript there only to decode the PNG).
    const reader = await (await browser.newContext()).newPage();
    const pixel = (x: number, y: number) =>
      reader.evaluate(
        async ({ png, x, y }) => {
          const img = new Image();
          img.src = `data:image/png;base64,${png}`;
          await img.decode();
          const c = document.createElement('canvas');
          c.width = img.width;
          c.height = img.height;
          const g = c.getContext('2d')!;
          g.drawImage(img, 0, 0);
          return [...g.getImageData(x, y, 1, 1).data.slice(0, 3)];
        },
        { png: shot.toString('base64'), x, y },
      );
    // The middle of the halted step is the failure red (#cf222e); a later step is grey.
    const red = await pixel(Math.round(halted.x + halted.width / 2), Math.round(halted.y + halted.height / 2));
    expect(red[0]).toBeGreaterThan(180);
    expect(red[1]).toBeLessThan(80);
    const next = (await page.locator('svg.rollout rect[data-state="next"]').boundingBox())!;
    const grey = await pixel(Math.round(next.x + next.width / 2), Math.round(next.y + next.height / 2));
    expect(Math.max(...grey) - Math.min(...grey)).toBeLessThan(30);
    // The verified line ends at the top right (95 of 100 devices): green pixels there.
    const end = (await page.locator('svg.convergence polyline[data-series="verified"]').boundingBox())!;
    const column: number[][] = [];
    for (let y = Math.round(end.y); y < end.y + 12; y++) column.push(await pixel(Math.round(end.x + end.width - 12), y));
    expect(column.some(([r, g, b]) => g! > 100 && g! > r! + 40 && g! > b! + 40)).toBe(true);
    await context.close();
  }, 60_000);
});
