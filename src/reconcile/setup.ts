/**
 * Setup Assistant (Automated Device Enrollment with `await_device_configured`): a device that
 * says `AwaitingConfiguration` in its TokenUpdate stays in Setup Assistant until the server sends
 * DeviceConfigured. Orchard installs the blueprints' Setup Assistant items (`setup: true`) first,
 * sends DeviceConfigured once the device accepted them all, and only then the other items. A
 * setup item the device refuses keeps it waiting (retried with backoff), and its status says
 * which item and the device's error. Declarations of `setup: true` blueprints come first the same way
 * (src/ddm/reconcile.ts). Pure, apart from reading the DeviceConfigured answer.
 */
import type { DeviceRecord, EnrollmentRecord } from '../model/device.js';
import type { StatusProblem } from '../store/status.js';
import type { CommandView } from '../model/command.js';
import { describeChain } from './decide.js';
import type { DesiredState } from './desired.js';
import type { DeviceArtifacts } from './types.js';
import type { Store } from '../store/types.js';

/** The identifier status problems about the release use. */
export const DEVICE_CONFIGURED = 'DeviceConfigured';

/**
 * Whether the device waits for DeviceConfigured in its current enrollment. Starts tracking it in
 * `state.setup` (an enrollment anew, after Authenticate, starts over).
 */
export function trackSetup(
  enrollment: Pick<EnrollmentRecord, 'active' | 'awaitingConfiguration'> | undefined,
  device: Pick<DeviceRecord, 'enrolledAt'>,
  state: DeviceArtifacts,
): boolean {
  const enrolledAt = device.enrolledAt;
  if (!enrolledAt || !enrollment?.active) return false;
  if (state.setup && state.setup.enrolledAt !== enrolledAt) state.setup = undefined;
  if (state.setup?.releasedAt) return false;
  if (enrollment.awaitingConfiguration !== true) return false;
  state.setup ??= { enrolledAt };
  return true;
}

/**
 * Whether the device waits for DeviceConfigured, from what the store has now, for the parts that
 * decide before the reconciler writes its state (the declarations): its stored state with a
 * DeviceConfigured answer already in folded in, as the reconciler is about to. Reads only.
 */
export async function awaitsConfiguration(
  store: Pick<Store, 'getArtifacts' | 'getEnrollment' | 'getCommand'>,
  device: Pick<DeviceRecord, 'id' | 'enrolledAt'>,
  now: Date,
): Promise<boolean> {
  const enrollment = await store.getEnrollment(device.id);
  if (enrollment?.awaitingConfiguration !== true) return false;
  const stored = await store.getArtifacts(device.id);
  // A shallow copy: the functions below replace `setup`, never change it in place.
  const state: DeviceArtifacts = { deviceId: device.id, artifacts: {}, ...stored };
  if (state.setup?.deviceConfigured) absorbDeviceConfigured(state, await store.getCommand(device.id, state.setup.deviceConfigured), now);
  return trackSetup(enrollment, device, state);
}

/** Whether the device still waits, as `state` records it (for the status row). */
export function waitingInSetup(device: Pick<DeviceRecord, 'enrolledAt'>, state: DeviceArtifacts | undefined): boolean {
  const s = state?.setup;
  return !!s && s.enrolledAt === device.enrolledAt && !s.releasedAt;
}

/** Fold the device's answer to DeviceConfigured into `state`; returns whether it changed. */
export function absorbDeviceConfigured(state: DeviceArtifacts, cmd: CommandView | undefined, now: Date): boolean {
  const s = state.setup;
  if (!s?.deviceConfigured) return false;
  if (cmd && cmd.status !== 'Acknowledged' && cmd.status !== 'Error' && cmd.status !== 'CommandFormatError') return false;
  if (!cmd)
    state.setup = { enrolledAt: s.enrolledAt }; // dropped unanswered: send it again
  else if (cmd.status === 'Acknowledged') state.setup = { enrolledAt: s.enrolledAt, releasedAt: cmd.result?.at ?? now.toISOString() };
  else state.setup = { enrolledAt: s.enrolledAt, error: `DeviceConfigured: ${describeChain(cmd.result?.errorChain, cmd.status)}` };
  return true;
}

/** Why a device still waits in Setup Assistant: one line naming the items and the device's errors. */
export function setupProblem(desired: DesiredState | undefined, state: DeviceArtifacts): StatusProblem {
  const s = state.setup!;
  if (s.error) return { identifier: DEVICE_CONFIGURED, phase: 'failed', message: `waiting in Setup Assistant: ${s.error}` };
  if (s.deviceConfigured) return { identifier: DEVICE_CONFIGURED, phase: 'pending', message: 'waiting in Setup Assistant: DeviceConfigured sent' };
  const why: string[] = [];
  for (const [id, want] of desired?.profiles ?? []) {
    if (!want.setup) continue;
    const st = state.artifacts[id];
    if (!want.rendered) why.push(`${id} cannot be rendered: ${want.error ?? 'unknown error'}`);
    else if (st?.phase === 'failed') why.push(`${id} failed: ${st.lastError?.message ?? 'device refused it'}`);
    else if (st?.phase !== 'acknowledged' && st?.phase !== 'verified') why.push(`${id} not installed yet`);
  }
  for (const d of desired?.setupDeclarations ?? []) why.push(`declaration ${d.identifier} ${d.why}`);
  const failed = why.some((w) => !/(not installed yet|not reported by the device yet|not active on the device)$/.test(w));
  return {
    identifier: DEVICE_CONFIGURED,
    phase: failed ? 'failed' : 'pending',
    message: `waiting in Setup Assistant for its setup items: ${why.join('; ') || 'none yet'}`,
  };
}
