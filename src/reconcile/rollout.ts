/**
 * Staged rollouts with health gates: `rollout: {steps: [5, 25, 100], wait: 1h, maxFailures: 2%}`.
 *
 * A blueprint with steps reaches the devices whose stable bucket (`rolloutBucket`, the same hash
 * as `percent`) is below its current step, so a device never leaves a step. The controller
 * applies the revision to the reconciler with each staged blueprint's `percent` set to its current
 * step. It moves a rollout to the next step when every device of the current step is verified,
 * the failures stay within `maxFailures` and `wait` has passed since the step began. Over the gate
 * it halts: the step stays where it is (its devices keep what they got, the others wait), the
 * reason is shown, an event `rollout.halted` goes out, and the commit status turns failure, until
 * a revision that changes the blueprint (or its profiles or declarations) starts it over, or an
 * admin resumes it (the failures so far are then accepted). The state is in the store
 * (src/store/rollouts.ts): a restart carries on at the same step.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { Conflict, NotFound } from '../errors.js';
import type { BlueprintDoc, Fleet, Rollout } from '../gitops/model.js';
import type { ValidatedRevision } from '../gitops/source.js';
import { revisionLabel } from '../gitops/revision.js';
import type { RolloutState, RolloutStore } from '../store/rollouts.js';
import { rowState, type DeviceStatus } from '../store/status.js';
import type { Store } from '../store/types.js';

export interface StepCounts {
  /** Enrolled devices the current step reaches. */
  devices: number;
  verified: number;
  pending: number;
  failed: number;
}

export type RolloutPhase = 'rolling' | 'waiting' | 'halted' | 'complete';

export interface RolloutView {
  blueprint: string;
  steps: number[];
  /** 0-based. */
  step: number;
  percent: number;
  phase: RolloutPhase;
  counts: StepCounts;
  waitMs: number;
  maxFailures: string;
  revision: string;
  startedAt: string;
  stepStartedAt: string;
  completedAt?: string;
  halted?: { at: string; reason: string };
  acceptedFailures: number;
}

export type StepDecision = { kind: 'halt'; reason: string } | { kind: 'advance' } | { kind: 'complete' } | { kind: 'stay' };

const describeGate = (g: Rollout['maxFailures']) => (!g ? '0' : 'count' in g ? String(g.count) : `${g.percent}%`);

/** Failures the step may have and still go on. */
export function allowedFailures(gate: Rollout['maxFailures'], devices: number): number {
  if (!gate) return 0;
  return 'count' in gate ? gate.count : Math.floor((devices * gate.percent) / 100);
}

/** What the gate says about the current step. Pure: the controller acts on it. */
export function decideStep(rollout: Rollout, state: RolloutState, counts: StepCounts, now: Date): StepDecision {
  const steps = rollout.steps ?? [rollout.percent];
  if (state.halted) return { kind: 'stay' };
  const allowed = allowedFailures(rollout.maxFailures, counts.devices);
  const failing = counts.failed - state.acceptedFailures;
  if (failing > allowed) {
    const pct = steps[state.step]!;
    return {
      kind: 'halt',
      reason: `${counts.failed} of ${counts.devices} devices failed at step ${state.step + 1} of ${steps.length} (${pct}%); maxFailures ${describeGate(rollout.maxFailures)}`,
    };
  }
  if (counts.pending > 0) return { kind: 'stay' };
  if (state.step >= steps.length - 1) return state.completedAt ? { kind: 'stay' } : { kind: 'complete' };
  if (now.getTime() - Date.parse(state.stepStartedAt) < (rollout.waitMs ?? 0)) return state.completedAt ? { kind: 'stay' } : { kind: 'complete' };
  return { kind: 'advance' };
}

/** A stable key of what a staged blueprint rolls out: a new one starts the rollout over. */
export function contentKey(fleet: Fleet, b: BlueprintDoc): string {
  const h = createHash('sha256');
  const add = (v: unknown) => h.update(stable(v)).update('\0');
  add({ selector: b.selector, rollout: b.rollout, prune: b.prune, profiles: b.profiles, declarations: b.declarations, softwareUpdate: b.softwareUpdate });
  for (const name of b.profiles) add(fleet.profiles.get(name));
  for (const name of b.declarations) add(fleet.declarations.get(name));
  return h.digest('hex');
}

/** JSON with sorted keys, without positions (moving a document is no change), bytes as their hash. */
function stable(v: unknown): string {
  if (v === undefined) return 'null';
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return JSON.stringify(`sha256:${createHash('sha256').update(v).digest('hex')}`);
  if (v instanceof Map) return stable(Object.fromEntries(v));
  if (v instanceof Set) return stable([...v]);
  if (Array.isArray(v)) return `[${v.map(stable).join(',')}]`;
  if (v && typeof v === 'object') {
    const keys = Object.keys(v)
      .filter((k) => k !== 'origin')
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${stable((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

const staged = (b: BlueprintDoc): b is BlueprintDoc & { rollout: Rollout & { steps: number[] } } => !!b.rollout?.steps;

export interface RolloutControllerOptions {
  store: RolloutStore;
  /** The read model's rows (which devices each blueprint reaches, and how their profiles stand). */
  status: Pick<Store, 'queryStatus'>;
  /** Reconcile the fleet against this revision (the reconciler's apply). */
  apply: (rev: ValidatedRevision) => Promise<unknown>;
  log: Logger;
  /** An event for the event webhooks (`rollout.halted`, `rollout.step`, `rollout.resumed`). */
  emit?: (type: string, data: Record<string, unknown>) => void;
  /** A rollout changed (a step, a halt, a resume): the commit status looks again. */
  onChange?: () => void;
  /** How often the steps are looked at without a poke (default 10 s). */
  tickMs?: number;
  now?: () => Date;
}

const PAGE = 1000;

export class RolloutController {
  private rev?: ValidatedRevision;
  private states = new Map<string, RolloutState>();
  private counts = new Map<string, StepCounts>();
  private timer?: NodeJS.Timeout;
  /** Everything that reads or writes the states runs in this one chain. */
  private chain: Promise<void> = Promise.resolve();
  private queued = false;
  private stopped = false;
  private readonly now: () => Date;

  constructor(private readonly opts: RolloutControllerOptions) {
    this.now = opts.now ?? (() => new Date());
  }

  start(): void {
    this.timer = setInterval(() => this.poke(), this.opts.tickMs ?? 10_000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.chain;
  }

  /** A new revision is in force: keep each staged rollout whose content is unchanged, start the others over, and apply. */
  async applied(rev: ValidatedRevision): Promise<void> {
    await this.serially(async () => {
      this.rev = rev;
      const revision = revisionLabel(rev.info);
      const stored = new Map((await this.opts.store.listRollouts()).map((s) => [s.blueprint, s]));
      const next = new Map<string, RolloutState>();
      for (const b of rev.fleet.blueprints.values()) {
        if (!staged(b)) continue;
        const key = contentKey(rev.fleet, b);
        const had = stored.get(b.name);
        if (had && had.contentKey === key && had.step < b.rollout.steps.length) {
          next.set(b.name, had);
          continue;
        }
        const at = this.now().toISOString();
        const s: RolloutState = { blueprint: b.name, contentKey: key, revision, step: 0, startedAt: at, stepStartedAt: at, acceptedFailures: 0 };
        await this.opts.store.putRollout(s);
        next.set(b.name, s);
        if (had) this.opts.log.info({ blueprint: b.name, revision }, 'rollout starts over: the blueprint changed');
      }
      for (const name of stored.keys()) if (!next.has(name)) await this.opts.store.deleteRollout(name);
      this.states = next;
      this.counts.clear();
      await this.opts.apply(this.effective());
    });
    this.poke();
  }

  /** Device answers move steps along: look again soon. */
  poke(): void {
    if (this.stopped || this.queued) return;
    this.queued = true;
    void this.serially(async () => {
      this.queued = false;
      await this.evaluate();
    }).catch((err: unknown) => this.opts.log.error({ err }, 'rollout evaluation failed'));
  }

  /** Waits for the work queued so far (tests). */
  async idle(): Promise<void> {
    await this.chain;
  }

  /** `orchard rollout resume`: go on past the gate, accepting the failures so far. */
  async resume(blueprint: string): Promise<RolloutView> {
    let view: RolloutView | undefined;
    await this.serially(async () => {
      const s = this.states.get(blueprint);
      // A blueprint that exists without a staged rollout is a state conflict, not a missing resource.
      if (!s && this.rev?.fleet.blueprints.has(blueprint)) throw new Conflict(`blueprint "${blueprint}" has no staged rollout`);
      if (!s) throw new NotFound(`no blueprint "${blueprint}" in the applied revision`);
      if (!s.halted) throw new Conflict(`the rollout of "${blueprint}" is not halted`);
      const failed = this.counts.get(blueprint)?.failed ?? 0;
      const resumed: RolloutState = { ...s, halted: undefined, acceptedFailures: failed };
      delete resumed.halted;
      await this.opts.store.putRollout(resumed);
      this.states.set(blueprint, resumed);
      this.opts.log.info({ blueprint, acceptedFailures: failed }, 'rollout resumed');
      this.opts.emit?.('rollout.resumed', { blueprint, step: s.step + 1, acceptedFailures: failed });
      view = this.view(blueprint);
    });
    this.opts.onChange?.();
    this.poke();
    return view!;
  }

  views(): RolloutView[] {
    return [...this.states.keys()]
      .sort()
      .map((n) => this.view(n))
      .filter((v): v is RolloutView => !!v);
  }

  /** For the commit status: why the revision is not done although its reached devices may be. */
  note(): { halted?: string; waiting?: string } {
    const vs = this.views();
    const halted = vs.filter((v) => v.phase === 'halted').map((v) => `${v.blueprint}: ${v.halted!.reason}`);
    const waiting = vs
      .filter((v) => v.phase !== 'halted' && v.phase !== 'complete')
      .map((v) => `${v.blueprint}: step ${v.step + 1} of ${v.steps.length} (${v.percent}%)`);
    return { ...(halted.length ? { halted: halted.join('; ') } : {}), ...(waiting.length ? { waiting: waiting.join('; ') } : {}) };
  }

  private view(name: string): RolloutView | undefined {
    const s = this.states.get(name);
    const b = this.rev?.fleet.blueprints.get(name);
    if (!s || !b || !staged(b)) return undefined;
    const last = s.step >= b.rollout.steps.length - 1;
    const phase: RolloutPhase = s.halted ? 'halted' : s.completedAt ? (last ? 'complete' : 'waiting') : 'rolling';
    return {
      blueprint: name,
      steps: b.rollout.steps,
      step: s.step,
      percent: b.rollout.steps[s.step]!,
      phase,
      counts: this.counts.get(name) ?? { devices: 0, verified: 0, pending: 0, failed: 0 },
      waitMs: b.rollout.waitMs ?? 0,
      maxFailures: describeGate(b.rollout.maxFailures),
      revision: s.revision,
      startedAt: s.startedAt,
      stepStartedAt: s.stepStartedAt,
      ...(s.completedAt ? { completedAt: s.completedAt } : {}),
      ...(s.halted ? { halted: s.halted } : {}),
      acceptedFailures: s.acceptedFailures,
    };
  }

  /** The revision with each staged blueprint reaching its current step. */
  private effective(): ValidatedRevision {
    const rev = this.rev!;
    const blueprints = new Map(rev.fleet.blueprints);
    for (const [name, s] of this.states) {
      const b = blueprints.get(name);
      if (b && staged(b)) blueprints.set(name, { ...b, rollout: { ...b.rollout, percent: b.rollout.steps[s.step]! } });
    }
    return { info: rev.info, fleet: { ...rev.fleet, blueprints } };
  }

  private serially(work: () => Promise<void>): Promise<void> {
    const p = this.chain.then(work);
    this.chain = p.catch(() => undefined);
    return p;
  }

  private async evaluate(): Promise<void> {
    const rev = this.rev;
    if (!rev || this.states.size === 0) return;
    const revision = revisionLabel(rev.info);
    const rows = await this.rows();
    let changed = false;
    let advanced = false;
    for (const [name, s] of this.states) {
      const b = rev.fleet.blueprints.get(name);
      if (!b || !staged(b)) continue;
      const ids = b.profiles.map((p) => rev.fleet.profiles.get(p)?.identifier).filter((x): x is string => !!x);
      const counts = stepCounts(rows, name, revision, ids);
      this.counts.set(name, counts);
      const d = decideStep(b.rollout, s, counts, this.now());
      const at = this.now().toISOString();
      if (d.kind === 'halt') {
        const halted: RolloutState = { ...s, halted: { at, reason: d.reason } };
        await this.opts.store.putRollout(halted);
        this.states.set(name, halted);
        this.opts.log.warn({ blueprint: name, step: s.step + 1, reason: d.reason }, 'rollout halted');
        this.opts.emit?.('rollout.halted', { blueprint: name, revision, step: s.step + 1, percent: b.rollout.steps[s.step], reason: d.reason, ...counts });
        changed = true;
      } else if (d.kind === 'complete') {
        const done: RolloutState = { ...s, completedAt: at };
        await this.opts.store.putRollout(done);
        this.states.set(name, done);
        changed = true;
      } else if (d.kind === 'advance') {
        const next: RolloutState = { ...s, step: s.step + 1, stepStartedAt: at };
        delete next.completedAt;
        await this.opts.store.putRollout(next);
        this.states.set(name, next);
        this.opts.log.info({ blueprint: name, step: next.step + 1, percent: b.rollout.steps[next.step] }, 'rollout: next step');
        this.opts.emit?.('rollout.step', { blueprint: name, revision, step: next.step + 1, percent: b.rollout.steps[next.step] });
        changed = advanced = true;
      }
    }
    if (advanced) {
      await this.opts.apply(this.effective());
      this.poke();
    }
    if (changed) this.opts.onChange?.();
  }

  private async rows(): Promise<DeviceStatus[]> {
    const out: DeviceStatus[] = [];
    for (let after: string | undefined; ;) {
      const page = await this.opts.status.queryStatus({ limit: PAGE, ...(after ? { after } : {}), now: this.now(), staleDays: 7 });
      out.push(...page.devices);
      if (page.devices.length < PAGE) return out;
      after = page.devices.at(-1)!.id;
    }
  }
}

/** The current step's devices (rows that the blueprint reaches) and how its profiles stand on them. */
export function stepCounts(rows: DeviceStatus[], blueprint: string, revision: string, identifiers: string[]): StepCounts {
  const c: StepCounts = { devices: 0, verified: 0, pending: 0, failed: 0 };
  for (const r of rows) {
    const p = r.profiles;
    if (!r.facts.enrolled || !p?.blueprints.includes(blueprint)) continue;
    c.devices++;
    if (p.revision !== revision) {
      c.pending++;
      continue;
    }
    const phases = identifiers.map((id) => p.phases[id]).filter((x) => x !== undefined);
    // A blueprint of declarations only: the device's own state stands for it.
    const state = phases.length ? (phases.includes('failed') ? 'failed' : phases.every((x) => x === 'verified') ? 'verified' : 'pending') : rowState(r);
    if (state === 'failed') c.failed++;
    else if (state === 'verified' || state === 'in-sync') c.verified++;
    else c.pending++;
  }
  return c;
}
