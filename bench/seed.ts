/** Fleets for the benchmarks: enrolled devices written straight into a store, 500 at a time. */
import type { DeviceFacts, Store } from '../src/store/types.js';

/** Enrolls `devices` devices `DEV-<n>` (serial `S<n>`, a Mac) and runs `then` for each. */
export async function seedEnrolled(
  store: Store,
  devices: number,
  at: Date,
  then: (id: string, n: number, facts: DeviceFacts) => Promise<void>,
  extra: (n: number) => Partial<DeviceFacts> = () => ({}),
): Promise<void> {
  for (let i = 0; i < devices; i += 500) {
    await Promise.all(
      Array.from({ length: Math.min(500, devices - i) }, async (_, k) => {
        const n = i + k;
        const id = `DEV-${n}`;
        const facts: DeviceFacts = { UDID: id, Topic: 't', SerialNumber: `S${n}`, Model: 'Mac14,2', ProductName: 'Mac14,2', OSVersion: '15.1', ...extra(n) };
        await store.authenticate(id, facts, { certHash: `c${n}`, issuerHash: 'i', subject: '', notAfter: '' }, at);
        await store.tokenUpdate({ id, deviceId: id, type: 'device', active: true, createdAt: at.toISOString(), updatedAt: at.toISOString() });
        await then(id, n, facts);
      }),
    );
  }
}
