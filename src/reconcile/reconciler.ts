/**
 * The reconciler: turns the applied revision into commands for exactly the devices it selects,
 * verifies the result from what devices report, and repairs drift. Level-triggered: every run
 * recomputes from the store (the source of truth), so events only say *when* to look; a crash
 * between an answer and its processing is caught up on the next run.
 *
 * Per-device work is durable (src/store/roles/work.ts): a device's answer and a user channel's
 * enrollment leave a work row in the store in their own batch or transaction, a NotNow and a failed
 * install's retry time write one, and a claim loop on every replica claims due rows under a lease, reconciles and removes
 * them. A replica that dies leaves its claimed rows to the others once the lease runs out; the
 * compare-and-set on the reconcile state makes a row reconciled twice queue nothing twice.
 * A new revision writes no rows: its durable marker is the applied revision the leader keeps in the
 * store (src/cluster/replica.ts), which the next leader applies again on election (a fleet-wide
 * run over every device), so a leader killed mid-run loses nothing, without a row per device
 * written (and removed) per revision at 100,000 devices.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Fleet } from '../gitops/model.js';
import type { ValidatedRevision } from '../gitops/source.js';
import { revisionLabel } from '../gitops/revision.js';
import type { MdmService } from '../mdm/service.js';
import { buildCommand } from '../protocol/commands.js';
import type { Pusher } from '../push/push.js';
import { retryOnConflict } from '../store/errors.js';
import type { WorkClaim } from '../store/roles/work.js';
import type { DeviceRecord, EnrollmentRecord, FinalStatus, NewCommand, ReconcileChange, Store, VersionedArtifacts } from '../store/types.js';
import { applyResult, decide, DEFAULT_RETRY, type Decision, type ReportedProfile, type RetryPolicy } from './decide.js';
import { desiredForAsync, type DesiredState, type RenderCache } from './desired.js';
import { statusProfiles } from '../report/status.js';
import type { StatusProfiles } from '../store/status.js';
import type { RenderedProfile, SecretLookup } from './render.js';
import type { ArtifactStatus, DeviceArtifacts } from './types.js';
import { KeyedMutex } from '../util/keyed-mutex.js';
import { absorbDeviceConfigured, trackSetup } from './setup.js';

export interface ReconcilerOptions {
  store: Store;
  service: MdmService;
  pusher: Pusher;
  log: Logger;
  secrets: SecretLookup;
  /** Periodic drift check: queue ProfileList + DeviceInformation to every device (0: off). */
  driftIntervalMs: number;
  /** Whether this replica runs the fleet-wide work (the drift check); default: always. */
  isLeader?: () => boolean;
  retry?: RetryPolicy;
  /** Ask newly enrolled devices for ProfileList + DeviceInformation (when a fleet is followed). */
  inventoryOnEnroll?: boolean;
  /** Devices reconciled at once in a fleet-wide run. */
  concurrency?: number;
  /**
   * Bytes of install payloads a fleet-wide run builds and holds at once (devices wait for room),
   * and at most as much again kept for reuse by other devices. Default 64 MiB.
   */
  payloadBudgetBytes?: number;
  now?: () => Date;
  /**
   * Claim lease on a work row (src/store/roles/work.ts): a replica that dies mid-reconcile leaves
   * its rows to the others this long after its claim. Default 15 s (the leader lease's default).
   */
  workLeaseMs?: number;
  /** How often due work rows are looked for besides the wake-ups of this process's own causes. Default 1 s. */
  workPollMs?: number;
  /** Declarative Device Management (src/ddm): each channel's declaration set, reconciled with the profiles. */
  ddm?: {
    reconcile(device: DeviceRecord, fleet: Fleet, revision: string): Promise<{ notified: string[] }>;
    /** The device with the facts it reported over DDM (OS version, model, ...) where they are newer than DeviceInformation. */
    device?(device: DeviceRecord): Promise<DeviceRecord>;
    /** The DDM half of the device's status row: declaration counts, phases and problems (undefined: no declarations). */
    row?(deviceId: string): Promise<(Pick<StatusProfiles, 'phases' | 'problems'> & { ddm: NonNullable<StatusProfiles['ddm']> }) | undefined>;
  };
}

const INVENTORY_QUERIES = [
  'UDID',
  'SerialNumber',
  'DeviceName',
  'Model',
  'ModelName',
  'ProductName',
  'OSVersion',
  'BuildVersion',
  'IsSupervised',
  'IMEI',
  'MEID',
];
const FINAL = new Set(['Acknowledged', 'Error', 'CommandFormatError']);

export interface ReconcileOutcome {
  deviceId: string;
  queued: number;
  cancelled: number;
}

/** Work rows claimed at once by one claim loop. */
const CLAIM_BATCH = 64;

export class Reconciler {
  private fleet?: Fleet;
  private revision?: string;
  private renders: RenderCache = new Map();
  /**
   * Commands shared by the devices of one fleet-wide run: the same rendered profile goes to many
   * devices under one CommandUUID (as MDM fan-out does), so its payload is built and stored once.
   * Least recently used first out, within the payload budget; a big per-device profile is not
   * kept (no other device wants it), so it does not stay in memory for the rest of the run.
   */
  private shared = new Map<string, NewCommand>();
  private sharedBytes = 0;
  /** Shared commands being built: a second device waits for the first one's instead of building its own. */
  private readonly building = new Map<string, Promise<NewCommand>>();
  private readonly budget: ByteBudget;
  /** Rendering and payload building, one at a time (one thread), in slices with yields between. */
  private readonly cpu = new Mutex();
  private sliceStart = performance.now();
  /** Per device, one reconcile at a time: two concurrent runs would decide on the same state. */
  private readonly perDevice = new KeyedMutex();
  /** Who claims work rows here (one per process and store). */
  private readonly holder = randomUUID();
  /** Devices whose work row this process holds a claim on right now. */
  private readonly claimed = new Set<string>();
  /** The state a claimed device's reconcile last read or committed: work() schedules its retry from it. */
  private readonly seenWhileClaimed = new Map<string, DeviceArtifacts>();
  private draining?: Promise<void>;
  /** A cause arrived while draining: drain again when done. */
  private again = false;
  private workTimer?: NodeJS.Timeout;
  private driftTimer?: NodeJS.Timeout;
  private readonly now: () => Date;
  private readonly retry: RetryPolicy;
  private stopped = false;

  constructor(private readonly opts: ReconcilerOptions) {
    this.now = opts.now ?? (() => new Date());
    this.retry = opts.retry ?? DEFAULT_RETRY;
    this.budget = new ByteBudget(opts.payloadBudgetBytes ?? 64 * 1024 * 1024);
    opts.service.on('enrolled', (e) => void this.onEnrolled(e));
    // The store wrote the answer's work row with the answer (device channel only: it carries
    // ProfileList and profile installs); the claim loop takes it from there.
    // A NotNow is not recorded as a result, so it has no row: it writes one.
    opts.service.on('result', (eid, rep) => {
      if (eid.includes(':')) return;
      if (rep.Status === 'NotNow') void this.addWork(eid);
      else this.wake();
    });
  }

  /** The revision in force (what devices are reconciled against), once one was applied. */
  currentFleet(): Fleet | undefined {
    return this.fleet;
  }

  start(): void {
    // Rows left by a replica that died, retries come due, causes written by a process that stopped before claiming.
    this.workTimer = setInterval(() => this.wake(), this.opts.workPollMs ?? 1000);
    this.workTimer.unref();
    this.wake();
    if (this.opts.driftIntervalMs > 0) {
      this.driftTimer = setInterval(() => {
        // Fleet-wide: one replica's job (src/cluster/leadership.ts).
        if (this.opts.isLeader && !this.opts.isLeader()) return;
        void this.driftCheck().catch((err: unknown) => this.opts.log.error({ err }, 'drift check failed'));
      }, this.opts.driftIntervalMs);
      this.driftTimer.unref();
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.driftTimer);
    clearInterval(this.workTimer);
    await this.draining;
    await this.perDevice.idle();
  }

  /**
   * Serve `rev` to each device as it answers, without a fleet-wide run: a replica that is not the
   * leader follows the revision the leader applied (src/cluster/replica.ts).
   */
  follow(rev: ValidatedRevision): void {
    this.fleet = rev.fleet;
    this.revision = revisionLabel(rev.info);
    this.renders = new Map();
    this.shared = new Map();
    this.sharedBytes = 0;
  }

  /** A new revision is in force: reconcile every enrolled device against it. */
  async apply(rev: ValidatedRevision): Promise<ReconcileOutcome[]> {
    this.follow(rev);
    this.opts.log.info({ revision: this.revision }, 'reconciling fleet');
    const started = performance.now();
    const outcomes = (await this.forEachDevice((id) => this.reconcileDevice(id))).filter((o): o is ReconcileOutcome => !!o);
    const queued = outcomes.reduce((n, o) => n + o.queued, 0);
    this.opts.log.info({ revision: this.revision, devices: outcomes.length, queued, ms: Math.round(performance.now() - started) }, 'fleet reconciled');
    return outcomes;
  }

  /** Queue ProfileList + DeviceInformation to every enrolled device that has none in flight; returns how many were queued. */
  async driftCheck(): Promise<number> {
    const results = await this.forEachDevice((id) => this.perDevice.run(id, () => retryOnConflict(() => this.queueInventory(id))));
    return results.filter(Boolean).length;
  }

  private async forEachDevice<T>(fn: (id: string) => Promise<T>): Promise<T[]> {
    // Every device, a page of ids at a time; the callee checks the enrollment is active (one read instead of two).
    const out: T[] = [];
    let cursor: string | undefined;
    do {
      const page = await this.opts.store.listDeviceIds(cursor === undefined ? {} : { cursor });
      const ids = page.items;
      let i = 0;
      await Promise.all(
        Array.from({ length: Math.min(this.opts.concurrency ?? 16, ids.length) }, async () => {
          while (i < ids.length && !this.stopped) {
            const id = ids[i++]!;
            out.push(await fn(id));
            // Device requests are served between any two devices, however busy the run.
            await yieldToLoop();
          }
        }),
      );
      cursor = page.next;
    } while (cursor !== undefined && !this.stopped);
    return out;
  }

  private async onEnrolled(e: EnrollmentRecord): Promise<void> {
    // A user channel's activation wrote its work row with it (CheckinStore.tokenUpdate).
    if (e.type === 'user') return this.wake();
    if (this.opts.inventoryOnEnroll === false) return;
    try {
      await this.perDevice.run(e.deviceId, () => retryOnConflict(() => this.queueInventory(e.deviceId)));
    } catch (err) {
      this.opts.log.error({ err, device: e.deviceId }, 'could not queue inventory after enrollment');
    }
  }

  /** A durable cause to reconcile `deviceId` (from `dueAt`), then the claim loop is woken. */
  private async addWork(deviceId: string, dueAt?: Date): Promise<void> {
    try {
      await this.opts.store.addWork(deviceId, dueAt);
    } catch (err) {
      this.opts.log.error({ err, device: deviceId }, 'could not write reconcile work');
      return;
    }
    // A row due later (a retry) is left to the poll: it claims it at most `workPollMs` (1 s) after
    // it comes due, against retry delays of a minute and more, and a timer here would wake only
    // this process while the row may be claimed on any replica.
    if (!dueAt || dueAt.getTime() <= this.now().getTime()) this.wake();
  }

  /**
   * Claim and reconcile due work rows until none is left (a call while draining drains again
   * after): called when this process wrote a cause's row, so it need not wait for the poll.
   */
  wake(): void {
    if (this.stopped) return;
    if (this.draining) {
      this.again = true;
      return;
    }
    this.draining = this.drain()
      .catch((err: unknown) => this.opts.log.error({ err }, 'claiming reconcile work failed'))
      .finally(() => {
        this.draining = undefined;
        if (this.again) {
          this.again = false;
          this.wake();
        }
      });
  }

  private async drain(): Promise<void> {
    const { store } = this.opts;
    const leaseMs = this.opts.workLeaseMs ?? 15_000;
    for (;;) {
      this.again = false;
      if (this.stopped) return;
      const claims = await store.claimWork({ holder: this.holder, limit: CLAIM_BATCH, leaseMs, now: this.now() });
      if (claims.length === 0) return;
      let i = 0;
      await Promise.all(
        Array.from({ length: Math.min(this.opts.concurrency ?? 16, claims.length) }, async () => {
          while (i < claims.length && !this.stopped) await this.work(claims[i++]!);
        }),
      );
    }
  }

  /**
   * Reconcile a claimed row's device, then remove the row (kept if a cause came meanwhile). A
   * failure leaves the row claimed: it comes back after the lease, here or on another replica.
   */
  private async work(claim: WorkClaim): Promise<void> {
    const id = claim.deviceId;
    this.claimed.add(id);
    try {
      await this.reconcileDevice(id);
      await this.opts.store.finishWork(claim);
      // A failed artifact comes back at its retry time: a row due then. The state is the one the
      // reconcile last read or committed (no second read).
      const seen = this.seenWhileClaimed.get(id);
      const due = this.retryDue(seen ?? (await this.loadState(id)));
      if (due !== undefined) await this.addWork(id, new Date(due));
    } catch (err) {
      this.opts.log.error({ err, device: id }, 'reconcile failed; its work row is retried after the claim lease');
    } finally {
      this.claimed.delete(id);
      this.seenWhileClaimed.delete(id);
    }
  }

  private async queueInventory(deviceId: string): Promise<boolean> {
    if (!(await this.opts.store.getEnrollment(deviceId))?.active) return false;
    const state = await this.loadState(deviceId);
    const absorbed = await this.absorb(deviceId, state);
    if (state.inventory?.profileList || state.inventory?.deviceInformation) return false; // one in flight already
    const change: ReconcileChange = { enqueue: [], cancel: [] };
    const pl = command({ RequestType: 'ProfileList', ManagedOnly: true }, 60);
    const di = command({ RequestType: 'DeviceInformation', Queries: INVENTORY_QUERIES }, 60);
    change.enqueue.push({ targets: [deviceId], cmd: pl }, { targets: [deviceId], cmd: di });
    state.inventory = { ...state.inventory, profileList: pl.uuid, deviceInformation: di.uuid, queuedAt: this.now().toISOString() };
    // The read model changes with the answers absorbed, and a new device has no summary yet.
    const device = await this.opts.store.getDevice(deviceId);
    if (device && (absorbed || !(await this.opts.store.getStatus(deviceId))?.profiles)) change.status = await this.statusOf(device, state);
    await this.opts.store.commitReconcile(deviceId, state, change, this.now(), state.version);
    await this.push(deviceId);
    return true;
  }

  /** Reconcile one device now. Safe to call any time, any number of times. */
  reconcileDevice(deviceId: string): Promise<ReconcileOutcome | undefined> {
    return this.perDevice.run(deviceId, () => retryOnConflict(() => this.reconcileNow(deviceId)));
  }

  private async reconcileNow(deviceId: string): Promise<ReconcileOutcome | undefined> {
    const { store } = this.opts;
    const stored = await store.getDevice(deviceId);
    const device = stored && this.opts.ddm?.device ? await this.opts.ddm.device(stored) : stored;
    // enrolledAt is set by the device channel's first TokenUpdate and cleared by Authenticate and
    // CheckOut: the device record alone says whether the device channel is active.
    if (!device) return undefined;
    if (!device.enrolledAt) {
      // Not enrolled: nothing to queue, but which blueprints select it still shows in the reports.
      await this.keepStatus(device, await this.loadState(deviceId));
      return undefined;
    }
    const state = await this.loadState(deviceId);
    const inventoryBefore = JSON.stringify(state.inventory ?? null);
    const phases = new Map(Object.entries(state.artifacts).map(([id, a]) => [id, a.phase]));
    const absorbed = await this.absorb(deviceId, state);
    // An install the device accepted just now needs a ProfileList served after it. The one queued
    // beside an earlier command may have been answered before the install was queued (the reconcile
    // after a DeviceConfigured raced the device's next poll): without a new one it stayed
    // `acknowledged`, never verified, until the next drift check.
    const accepted = Object.entries(state.artifacts).some(([id, a]) => a.phase === 'acknowledged' && phases.get(id) !== 'acknowledged');
    if (!this.fleet || !this.revision) {
      if (absorbed)
        await store.commitReconcile(deviceId, state, { enqueue: [], cancel: [], status: await this.statusOf(device, state) }, this.now(), state.version);
      else await this.keepStatus(device, state);
      return undefined;
    }
    // Setup Assistant: a device awaiting DeviceConfigured gets its setup items first (setup.ts).
    const setupBefore = JSON.stringify(state.setup ?? null);
    if (state.setup?.deviceConfigured) absorbDeviceConfigured(state, await store.getCommand(deviceId, state.setup.deviceConfigured), this.now());
    const awaitingConfiguration = trackSetup(await store.getEnrollment(deviceId), device, state);
    const fleet = this.fleet;
    // Declarations first, so the status row written with the profiles' commit shows the new sets.
    const notified = this.opts.ddm ? (await this.opts.ddm.reconcile(device, fleet, this.revision)).notified.length : 0;
    const desired = await this.cpu.run(() => desiredForAsync(fleet, device, this.opts.secrets, this.renders, this.pace));
    const decision = decide({
      desired,
      reported: reportedProfiles(device),
      state,
      revision: this.revision,
      now: this.now(),
      retry: this.retry,
      awaitingConfiguration,
    });
    const dirty = absorbed || inventoryBefore !== JSON.stringify(state.inventory ?? null) || setupBefore !== JSON.stringify(state.setup ?? null);
    const outcome = await this.commit({ device, desired, decision, dirty, version: state.version, accepted });
    outcome.queued += notified;
    return outcome;
  }

  /** The reconciler's half of the device's status row (read model) for `state`. */
  private async statusOf(device: DeviceRecord, state: DeviceArtifacts, desired?: DesiredState): Promise<StatusProfiles> {
    const fleet = this.fleet;
    if (fleet && !desired) desired = await this.cpu.run(() => desiredForAsync(fleet, device, this.opts.secrets, this.renders, this.pace));
    return this.withDeclarations(statusProfiles(device, state, fleet, desired), device.id);
  }

  /** The row with the device's declarations (DDM) added: their counts, phases and problems count in its state. */
  private async withDeclarations(out: StatusProfiles, deviceId: string): Promise<StatusProfiles> {
    const ddm = await this.opts.ddm?.row?.(deviceId);
    if (ddm) {
      out.ddm = ddm.ddm;
      Object.assign(out.phases, ddm.phases);
      out.problems.push(...ddm.problems);
      // A declaration is desired state like a profile: failed or pending, the device is not in sync.
      const d = ddm.ddm.declarations;
      if (d.failed > 0 && out.state !== 'failed') out.state = 'failed';
      else if (d.pending > 0 && out.state === 'in-sync') out.state = 'pending';
    }
    return out;
  }

  /** Writes the device's status row when nothing else is committed but the summary changed (a new revision). */
  private async keepStatus(device: DeviceRecord, state: DeviceArtifacts, desired?: DesiredState, computed?: StatusProfiles): Promise<void> {
    const row = await this.opts.store.getStatus(device.id);
    if (!row) return;
    const next = computed ?? (await this.statusOf(device, state, desired));
    if (JSON.stringify(row.profiles) !== JSON.stringify(next)) await this.opts.store.putStatus(device.id, next);
  }

  private async commit(d: Decided): Promise<ReconcileOutcome> {
    const { decision } = d;
    // Room for this device's install payloads (the command holds the profile's base64) until
    // they are written: a big per-device profile is built for a few devices at a time.
    const weight = decision.actions.reduce(
      (n, a) => n + (a.type === 'install' && !this.shared.has(`install\0${a.rendered.uuid}`) ? a.rendered.size * 1.4 : 0),
      0,
    );
    const release = weight > 0 ? await this.budget.acquire(weight) : () => undefined;
    try {
      return await this.commitHeld(d);
    } finally {
      release();
    }
  }

  private async commitHeld({ device, desired, decision, dirty, version, accepted }: Decided): Promise<ReconcileOutcome> {
    const deviceId = device.id;
    const change: ReconcileChange = { enqueue: [], cancel: [] };
    const state = decision.state;
    for (const a of decision.actions) {
      if (a.type === 'cancel') {
        change.cancel.push({ enrollmentId: deviceId, uuid: a.commandUUID });
      } else if (a.type === 'configured') {
        const cmd = command({ RequestType: 'DeviceConfigured' }, 50);
        state.setup = { ...state.setup!, deviceConfigured: cmd.uuid };
        change.enqueue.push({ targets: [deviceId], cmd });
      } else {
        const cmd =
          a.type === 'install'
            ? await this.sharedCommand(
                deviceId,
                `install\0${a.rendered.uuid}`,
                () => this.cpu.run(async () => installCommand(a.rendered)),
                !a.rendered.perDevice,
              )
            : await this.sharedCommand(
                deviceId,
                `remove\0${a.identifier}`,
                () => command({ RequestType: 'RemoveProfile', Identifier: a.identifier }, 50),
                true,
              );
        state.artifacts[a.identifier]!.commandUUID = cmd.uuid;
        change.enqueue.push({ targets: [deviceId], cmd });
      }
    }
    // Installs and removals are verified by a ProfileList served after them (lower priority).
    const needVerify = change.enqueue.length > 0 || accepted || (decision.needInventory && !state.inventory?.profileList);
    if (needVerify && !state.inventory?.verify) {
      const pl = await this.sharedCommand(deviceId, 'verify', () => command({ RequestType: 'ProfileList', ManagedOnly: true }, 40), true);
      change.enqueue.push({ targets: [deviceId], cmd: pl });
      state.inventory = { ...state.inventory, verify: pl.uuid, queuedAt: this.now().toISOString() };
    }
    const status = await this.withDeclarations(statusProfiles(device, state, this.fleet, desired), deviceId);
    if (change.enqueue.length === 0 && change.cancel.length === 0 && !dirty && !decision.changed) {
      await this.keepStatus(device, state, desired, status);
      return { deviceId, queued: 0, cancelled: 0 };
    }
    change.status = status;
    const { cancelled } = await this.opts.store.commitReconcile(deviceId, state, change, this.now(), version);
    await this.scheduleRetry(deviceId, state);
    if (change.enqueue.length > 0) {
      await this.push(deviceId);
      this.opts.log.info(
        { device: deviceId, revision: state.revision, actions: decision.actions.map((a) => `${a.type} ${a.identifier}`) },
        'device reconciled',
      );
    }
    return { deviceId, queued: change.enqueue.length, cancelled: cancelled.length };
  }

  /** The run's shared command for `key`, unless this device already had it (a retry needs a new one). */
  private async sharedCommand(deviceId: string, key: string, make: () => NewCommand | Promise<NewCommand>, reusable: boolean): Promise<NewCommand> {
    await this.building.get(key)?.catch(() => undefined);
    const cmd = this.shared.get(key);
    if (cmd && !(await this.opts.store.getCommand(deviceId, cmd.uuid))) {
      // Most recently used last: eviction takes the first.
      this.shared.delete(key);
      this.shared.set(key, cmd);
      return cmd;
    }
    const building = Promise.resolve(make());
    if (cmd) return building;
    this.building.set(key, building);
    try {
      const made = await building;
      this.keepShared(key, made, reusable);
      return made;
    } finally {
      if (this.building.get(key) === building) this.building.delete(key);
    }
  }

  /** `reusable`: other devices may want the very same command (it does not depend on device facts). */
  private keepShared(key: string, cmd: NewCommand, reusable: boolean): void {
    const limit = this.budget.limit;
    if (cmd.payload.length > limit || (!reusable && cmd.payload.length > 64 * 1024)) return;
    this.sharedBytes += cmd.payload.length - (this.shared.get(key)?.payload.length ?? 0);
    this.shared.delete(key);
    this.shared.set(key, cmd);
    for (const [k, c] of this.shared) {
      if (this.sharedBytes <= limit && this.shared.size <= 10_000) break;
      this.shared.delete(k);
      this.sharedBytes -= c.payload.length;
    }
  }

  /** Payload bytes a fleet-wide run holds right now: shared commands and payloads being built. */
  heldPayloadBytes(): number {
    return this.sharedBytes + this.budget.inUse;
  }

  /** Awaited between slices of rendering: lets the event loop in every few milliseconds. */
  private readonly pace = async (): Promise<void> => {
    if (performance.now() - this.sliceStart < SLICE_MS) return;
    await yieldToLoop();
    this.sliceStart = performance.now();
  };

  /**
   * Failed installs come back at their retry time even if nothing else happens to the device: a
   * work row due then. A device reconciled from its claimed row gets it once the row is done (work()).
   */
  private async scheduleRetry(deviceId: string, state: DeviceArtifacts): Promise<void> {
    if (this.claimed.has(deviceId)) this.seenWhileClaimed.set(deviceId, state);
    const due = this.retryDue(state);
    if (due !== undefined && !this.claimed.has(deviceId) && !this.stopped) await this.addWork(deviceId, new Date(due));
  }

  /** When the earliest failed artifact of `state` is to be retried (ms), if any is. */
  private retryDue(state: DeviceArtifacts): number | undefined {
    const due = Object.values(state.artifacts)
      .filter((a) => a.phase === 'failed' && a.retryAt && a.attempts < this.retry.maxAttempts)
      .map((a) => Date.parse(a.retryAt!));
    return due.length > 0 ? Math.min(...due) : undefined;
  }

  private async loadState(deviceId: string): Promise<VersionedArtifacts> {
    const state = (await this.opts.store.getArtifacts(deviceId)) ?? { deviceId, artifacts: {}, version: 0 };
    if (this.claimed.has(deviceId)) this.seenWhileClaimed.set(deviceId, state);
    return state;
  }

  /**
   * Fold the answers to commands in flight into the state, from the store: results that arrived
   * while nobody listened (a crash, a restart) are not lost. Returns whether anything changed.
   */
  private async absorb(deviceId: string, state: DeviceArtifacts): Promise<boolean> {
    let changed = false;
    for (const [id, st] of Object.entries(state.artifacts)) {
      if (!st.commandUUID) continue;
      const cmd = await this.opts.store.getCommand(deviceId, st.commandUUID);
      if (cmd && !FINAL.has(cmd.status)) continue;
      changed = true;
      if (!cmd) {
        // Gone without an answer (dropped at re-enrollment, or compacted): decide again.
        state.artifacts[id] = { ...st, commandUUID: undefined } satisfies ArtifactStatus;
        continue;
      }
      const next = applyResult(st, cmd.status as FinalStatus, new Date(cmd.result?.at ?? this.now()), cmd.result?.errorChain, this.retry);
      if (next) state.artifacts[id] = next;
      else delete state.artifacts[id];
    }
    if (state.inventory) {
      for (const key of ['profileList', 'deviceInformation', 'verify'] as const) {
        const uuid = state.inventory[key];
        if (!uuid) continue;
        const cmd = await this.opts.store.getCommand(deviceId, uuid);
        if (cmd && !FINAL.has(cmd.status)) continue;
        state.inventory = { ...state.inventory, [key]: undefined };
        changed = true;
      }
      if (!state.inventory.profileList && !state.inventory.deviceInformation && !state.inventory.verify) state.inventory = undefined;
    }
    return changed;
  }

  private async push(deviceId: string): Promise<void> {
    const e = await this.opts.store.getEnrollment(deviceId);
    if (e) await this.opts.pusher.push([e]).catch((err: unknown) => this.opts.log.warn({ err, device: deviceId }, 'push failed'));
  }
}

/** A device's decision and what its commit needs to know about how it was reached. */
interface Decided {
  device: DeviceRecord;
  desired: DesiredState;
  decision: Decision;
  /** The state changed before the decision (answers absorbed), so it must be written. */
  dirty: boolean;
  /** Of the state the decision was made on (compare-and-set). */
  version: number;
  /** An install was acknowledged since the last reconcile: it needs a ProfileList served after it. */
  accepted: boolean;
}

/** Synchronous work between two chances for the event loop to serve requests. */
const SLICE_MS = 4;

const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** One at a time, in call order. */
class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn, fn);
    this.tail = run.catch(() => undefined);
    return run;
  }
}

/** A counting semaphore over bytes; a request bigger than the whole budget waits for all of it. */
class ByteBudget {
  inUse = 0;
  private readonly waiting: { n: number; go: () => void }[] = [];
  constructor(readonly limit: number) {}

  async acquire(bytes: number): Promise<() => void> {
    const n = Math.min(Math.ceil(bytes), this.limit);
    if (this.inUse + n > this.limit || this.waiting.length > 0) await new Promise<void>((go) => this.waiting.push({ n, go }));
    else this.inUse += n;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inUse -= n;
      while (this.waiting.length > 0 && this.inUse + this.waiting[0]!.n <= this.limit) {
        const w = this.waiting.shift()!;
        this.inUse += w.n;
        w.go();
      }
    };
  }
}

/**
 * An InstallProfile command, spliced from a template the plist builder made once (so the format
 * stays the builder's) and the profile's base64 parts (mostly encoded once per revision), instead
 * of the builder's byte-by-byte base64 of every device's payload.
 */
let installTemplate: { head: Buffer; mid: Buffer; tail: Buffer } | undefined;
export function installCommand(rendered: RenderedProfile, uuid: string = randomUUID().toUpperCase()): NewCommand {
  if (!installTemplate) {
    const uuidMark = 'ORCHARD-COMMAND-UUID-MARK';
    const dataMark = Buffer.from('orchard payload marker').toString('base64');
    const xml = buildCommand({ RequestType: 'InstallProfile', Payload: new Uint8Array(Buffer.from(dataMark, 'base64')) }, uuidMark).payload.toString('utf8');
    const u = xml.indexOf(uuidMark);
    const d = xml.indexOf(dataMark);
    if (u < 0 || d < u) throw new Error('unexpected InstallProfile plist layout');
    installTemplate = {
      head: Buffer.from(xml.slice(0, u)),
      mid: Buffer.from(xml.slice(u + uuidMark.length, d)),
      tail: Buffer.from(xml.slice(d + dataMark.length)),
    };
  }
  const { head, mid, tail } = installTemplate;
  const payload = Buffer.concat([head, Buffer.from(uuid, 'latin1'), mid, ...rendered.base64(), tail]);
  return { uuid, requestType: 'InstallProfile', payload, priority: 50 };
}

function command(cmd: Record<string, unknown>, priority: number): NewCommand {
  const built = buildCommand(cmd as never, randomUUID().toUpperCase());
  return { ...built, priority };
}

function reportedProfiles(d: DeviceRecord): { at: string; profiles: ReportedProfile[] } | undefined {
  const pl = d.reported.ProfileList;
  if (!pl) return undefined;
  const profiles = (pl.value as Record<string, unknown>[])
    .filter((p) => typeof p.PayloadIdentifier === 'string' && typeof p.PayloadUUID === 'string')
    .map((p) => ({ PayloadIdentifier: p.PayloadIdentifier as string, PayloadUUID: p.PayloadUUID as string }));
  return { at: pl.at, profiles };
}
