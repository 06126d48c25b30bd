/** decide() on a profile no blueprint wants any more: the applied revision's `prune` decides. */
import { describe, expect, it } from 'vitest';
import { decide, prunes } from '../../src/reconcile/decide.js';
import type { ArtifactStatus, DeviceArtifacts } from '../../src/reconcile/types.js';

const now = new Date('2026-12-01T12:00:00Z');
const artifact = (over: Partial<ArtifactStatus> = {}): ArtifactStatus => ({
  kind: 'profile',
  identifier: 'com.example.p',
  profile: 'p',
  blueprints: ['b'],
  uuid: 'U1',
  templateHash: 'h',
  phase: 'verified',
  revision: 'r1',
  attempts: 1,
  prune: true,
  updatedAt: '2026-12-01T10:00:00Z',
  drift: 0,
  ...over,
});
const state = (a: ArtifactStatus): DeviceArtifacts => ({ deviceId: 'D', artifacts: { [a.identifier]: a } });
const reported = { at: '2026-12-01T11:00:00Z', profiles: [{ PayloadIdentifier: 'com.example.p', PayloadUUID: 'U1' }] };
const run = (a: ArtifactStatus, prune: Record<string, boolean>) =>
  decide({ desired: { profiles: new Map(), frozen: new Set(), prune: new Map(Object.entries(prune)) }, reported, state: state(a), revision: 'r2', now });

describe('prune of a profile no longer wanted', () => {
  it('prune: false in the applied revision keeps it, though it was recorded as prune: true', () => {
    const d = run(artifact({ prune: true }), { b: false });
    expect(d.actions).toEqual([]);
    expect(d.state.artifacts).toEqual({}); // no longer managed, left on the device
  });

  it('prune: true in the applied revision removes it, though it was recorded as prune: false', () => {
    const d = run(artifact({ prune: false }), { b: true });
    expect(d.actions).toEqual([{ type: 'remove', identifier: 'com.example.p', reason: 'unwanted' }]);
  });

  it('a blueprint deleted from the repository counts with its recorded flag', () => {
    expect(run(artifact({ prune: false }), {}).actions).toEqual([]);
    expect(run(artifact({ prune: true }), {}).actions).toEqual([{ type: 'remove', identifier: 'com.example.p', reason: 'unwanted' }]);
  });

  it('any blueprint that wanted it with prune: false keeps it', () => {
    expect(
      prunes(
        ['a', 'b'],
        true,
        new Map([
          ['a', true],
          ['b', false],
        ]),
      ),
    ).toBe(false);
    expect(
      prunes(
        ['a', 'b'],
        true,
        new Map([
          ['a', true],
          ['b', true],
        ]),
      ),
    ).toBe(true);
  });

  it('a removal still queued is withdrawn when the next revision says prune: false', () => {
    const d = run(artifact({ phase: 'removing', uuid: '', commandUUID: 'RM-1' }), { b: false });
    expect(d.actions).toEqual([{ type: 'cancel', identifier: 'com.example.p', commandUUID: 'RM-1' }]);
    expect(d.state.artifacts).toEqual({});
  });
});
