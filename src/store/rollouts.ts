/**
 * The rollout store role: per blueprint with a staged rollout, which step it is on, since when,
 * and whether it halted at its health gate, so a restart carries on where the rollout stood.
 * Every backend implements it and passes test/store/rollout-suite.ts.
 */
import { Level } from 'level';

export interface RolloutState {
  blueprint: string;
  /** What the steps roll out: a hash of the blueprint and its profiles and declarations as of `revision`. */
  contentKey: string;
  /** The revision (commit, or content hash) the rollout started with. */
  revision: string;
  /** Index into the blueprint's steps. */
  step: number;
  startedAt: string;
  stepStartedAt: string;
  /** Over the gate: stopped until a new revision or a resume. */
  halted?: { at: string; reason: string };
  /** Failures an admin accepted with `orchard rollout resume`: the gate counts only failures beyond them. */
  acceptedFailures: number;
  /** The step is complete: its devices verified within the gate (the wait may still run). */
  completedAt?: string;
}

export interface RolloutStore {
  listRollouts(): Promise<RolloutState[]>;
  getRollout(blueprint: string): Promise<RolloutState | undefined>;
  putRollout(state: RolloutState): Promise<void>;
  deleteRollout(blueprint: string): Promise<void>;
  close(): Promise<void>;
}

/** For tests and benchmarks; values are copied in and out, as a real backend would. */
export class MemoryRolloutStore implements RolloutStore {
  private readonly data = new Map<string, string>();
  async listRollouts(): Promise<RolloutState[]> {
    return [...this.data.keys()].sort().map((k) => JSON.parse(this.data.get(k)!) as RolloutState);
  }
  async getRollout(blueprint: string): Promise<RolloutState | undefined> {
    const v = this.data.get(blueprint);
    return v === undefined ? undefined : (JSON.parse(v) as RolloutState);
  }
  async putRollout(state: RolloutState): Promise<void> {
    this.data.set(state.blueprint, JSON.stringify(state));
  }
  async deleteRollout(blueprint: string): Promise<void> {
    this.data.delete(blueprint);
  }
  async close(): Promise<void> {}
}

/** LevelDB, in a database of its own (DATA_DIR/rollouts): blueprint name -> JSON. */
export class LevelRolloutStore implements RolloutStore {
  private constructor(private readonly db: Level<string, RolloutState>) {}

  static async open(dir: string): Promise<LevelRolloutStore> {
    const db = new Level<string, RolloutState>(dir, { valueEncoding: 'json' });
    await db.open();
    return new LevelRolloutStore(db);
  }
  async listRollouts(): Promise<RolloutState[]> {
    const out: RolloutState[] = [];
    for await (const v of this.db.values()) out.push(v);
    return out;
  }
  async getRollout(blueprint: string): Promise<RolloutState | undefined> {
    return this.db.getSync(blueprint);
  }
  async putRollout(state: RolloutState): Promise<void> {
    await this.db.put(state.blueprint, state);
  }
  async deleteRollout(blueprint: string): Promise<void> {
    await this.db.del(blueprint);
  }
  async close(): Promise<void> {
    await this.db.close();
  }
}
