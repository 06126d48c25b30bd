/**
 * Staged rollouts: the loader's `rollout` (steps, wait, maxFailures, and what it refuses), the
 * gate's decisions (src/reconcile/rollout.ts decideStep), and the steps as the reconciler sees
 * them: the same stable hash as `percent`, so a device never leaves a step.
 */
import { rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { loadFleet } from '../../src/gitops/load.js';
import type { Rollout } from '../../src/gitops/model.js';
import { inRollout } from '../../src/reconcile/desired.js';
import { allowedFailures, contentKey, decideStep, stepCounts } from '../../src/reconcile/rollout.js';
import type { RolloutState } from '../../src/store/rollouts.js';
import type { DeviceStatus } from '../../src/store/status.js';
import { blueprint, makeRepo, passcodePayload, profile } from '../gitops/repo.js';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

async function load(rollout: string) {
  const dir = makeRepo({
    'profiles/p.yaml': profile('p', 'com.example.p', passcodePayload),
    'blueprints/macs.yaml': blueprint('macs', '    platforms: [macOS]', ['p']) + `  rollout: ${rollout}\n`,
  });
  dirs.push(dir);
  return loadFleet(dir);
}

describe('the loader', () => {
  it('reads steps, wait and maxFailures; percent is the first step', async () => {
    const r = await load('{steps: [5, 25, 100], wait: 1h, maxFailures: 2%}');
    expect(r.fleet!.blueprints.get('macs')!.rollout).toEqual({ percent: 5, steps: [5, 25, 100], waitMs: 3600_000, maxFailures: { percent: 2 } });
    const count = await load('{steps: [50, 100], maxFailures: 3}');
    expect(count.fleet!.blueprints.get('macs')!.rollout).toEqual({ percent: 50, steps: [50, 100], waitMs: 0, maxFailures: { count: 3 } });
    expect((await load('{percent: 10}')).fleet!.blueprints.get('macs')!.rollout).toEqual({ percent: 10 });
  });

  it('refuses what cannot roll out, saying where', async () => {
    const cases: [string, RegExp][] = [
      ['{steps: [25, 5]}', /rollout\.steps|steps must increase \(found 25, 5\)/],
      ['{steps: [5], wait: soon}', /wait: "soon" is not a duration/],
      ['{steps: [5], maxFailures: lots}', /maxFailures: "lots" is not a share like 2% or a count like 3/],
      ['{percent: 5, steps: [5]}', /rollout needs either percent or steps/],
      ['{percent: 5, wait: 1h}', /wait and maxFailures go with steps/],
      ['{steps: [0, 100]}', /steps/],
    ];
    for (const [rollout, message] of cases) {
      const r = await load(rollout);
      expect(r.ok, rollout).toBe(false);
      const e = r.diagnostics.find((d) => d.severity === 'error')!;
      expect(e.message, rollout).toMatch(message);
      expect(e.file).toBe('blueprints/macs.yaml');
      expect(e.line).toBe(9);
    }
  });
});

const state = (x: Partial<RolloutState> = {}): RolloutState => ({
  blueprint: 'macs',
  contentKey: 'k',
  revision: 'r',
  step: 0,
  startedAt: '2026-01-01T00:00:00.000Z',
  stepStartedAt: '2026-01-01T00:00:00.000Z',
  acceptedFailures: 0,
  ...x,
});
const rollout: Rollout = { percent: 5, steps: [5, 25, 100], waitMs: 3600_000, maxFailures: { percent: 10 } };
const at = (minutes: number) => new Date(Date.parse('2026-01-01T00:00:00.000Z') + minutes * 60_000);

describe('decideStep', () => {
  it('goes on only when the step is verified within the gate and the wait has passed', () => {
    const verified = { devices: 20, verified: 20, pending: 0, failed: 0 };
    expect(decideStep(rollout, state(), { ...verified, verified: 19, pending: 1 }, at(120))).toEqual({ kind: 'stay' });
    expect(decideStep(rollout, state(), verified, at(30))).toEqual({ kind: 'complete' });
    expect(decideStep(rollout, state({ completedAt: at(30).toISOString() }), verified, at(59))).toEqual({ kind: 'stay' });
    expect(decideStep(rollout, state(), verified, at(60))).toEqual({ kind: 'advance' });
    // Within the gate (10% of 20 = 2): goes on.
    expect(decideStep(rollout, state(), { devices: 20, verified: 18, pending: 0, failed: 2 }, at(60))).toEqual({ kind: 'advance' });
    // The last step: complete, then nothing more.
    expect(decideStep(rollout, state({ step: 2 }), verified, at(600))).toEqual({ kind: 'complete' });
    expect(decideStep(rollout, state({ step: 2, completedAt: at(1).toISOString() }), verified, at(600))).toEqual({ kind: 'stay' });
  });

  it('halts over the gate, as soon as the failures pass it (pending devices or not), and stays halted', () => {
    const over = { devices: 20, verified: 10, pending: 7, failed: 3 };
    expect(decideStep(rollout, state(), over, at(1))).toEqual({
      kind: 'halt',
      reason: '3 of 20 devices failed at step 1 of 3 (5%); maxFailures 10%',
    });
    expect(decideStep(rollout, state({ halted: { at: at(1).toISOString(), reason: 'x' } }), { ...over, failed: 0, pending: 0, verified: 20 }, at(90))).toEqual({
      kind: 'stay',
    });
    // Resumed with 3 failures accepted: only new failures count.
    expect(decideStep(rollout, state({ acceptedFailures: 3 }), { devices: 20, verified: 17, pending: 0, failed: 3 }, at(90))).toEqual({ kind: 'advance' });
  });

  it('gates: a share rounds down, a count is a count, none means no failure', () => {
    expect(allowedFailures({ percent: 2 }, 49)).toBe(0);
    expect(allowedFailures({ percent: 2 }, 50)).toBe(1);
    expect(allowedFailures({ count: 3 }, 1)).toBe(3);
    expect(allowedFailures(undefined, 1000)).toBe(0);
  });
});

describe('steps and devices', () => {
  it('a device in a step stays in every later step (the same stable hash as percent)', () => {
    const b = { name: 'macs', rollout: { percent: 0 } } as Parameters<typeof inRollout>[0];
    for (let i = 0; i < 500; i++) {
      const serial = `C02X${i}`;
      let inside = false;
      for (const pct of [1, 5, 25, 60, 100]) {
        const now = inRollout({ ...b, rollout: { percent: pct } }, serial);
        if (inside) expect(now).toBe(true);
        inside = now;
      }
      expect(inside).toBe(true);
    }
  });

  it('the step counts: the rows the blueprint reaches, by the phases of its profiles under this revision', () => {
    const row = (id: string, blueprints: string[], phase: 'verified' | 'pending' | 'failed', revision = 'r', enrolled = true): DeviceStatus => ({
      id,
      facts: { enrolled, authenticatedAt: '2026-01-01T00:00:00.000Z' },
      profiles: {
        state: 'in-sync',
        blueprints,
        matched: blueprints,
        revision,
        profiles: { total: 1, verified: 0, pending: 0, failed: 0 },
        phases: { 'com.example.p': phase },
        problems: [],
      },
    });
    const rows = [
      row('a', ['macs'], 'verified'),
      row('b', ['macs'], 'failed'),
      row('c', ['macs'], 'verified', 'old'),
      row('d', [], 'verified'),
      row('e', ['macs'], 'pending'),
      row('f', ['macs'], 'verified', 'r', false),
    ];
    expect(stepCounts(rows, 'macs', 'r', ['com.example.p'])).toEqual({ devices: 4, verified: 1, failed: 1, pending: 2 });
  });

  it('the content key ignores where documents are and changes with what they roll out', async () => {
    const a = (await load('{steps: [5, 100]}')).fleet!;
    const b = (await load('{steps: [5, 100]}')).fleet!;
    const c = (await load('{steps: [5, 50, 100]}')).fleet!;
    expect(contentKey(a, a.blueprints.get('macs')!)).toBe(contentKey(b, b.blueprints.get('macs')!));
    expect(contentKey(a, a.blueprints.get('macs')!)).not.toBe(contentKey(c, c.blueprints.get('macs')!));
  });
});
