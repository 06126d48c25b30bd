/** Fleets for the benchmarks: enrolled devices written straight into a store, 500 at a time. */
import type { PgStore } from '../src/store/postgres.js';
import { rowState, statusFacts, type DeviceStatus } from '../src/store/status.js';
import type { DeviceFacts, DeviceRecord, ReportedState, Store } from '../src/store/types.js';

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

/**
 * PostgreSQL, in bulk: the rows `seedEnrolled` leaves with `then` acknowledging one ProfileList
 * (`reported`), written 1,000 devices a statement instead of four transactions a device (100,000
 * devices through the store are ~300,000 transactions). The records are built as the store builds
 * them (statusFacts, rowState); the reconciler's adoption of the first revision, which follows,
 * checks the result (it must queue nothing).
 */
export async function seedEnrolledPg(
  store: PgStore,
  devices: number,
  at: Date,
  reported: (id: string, n: number, facts: DeviceFacts) => ReportedState,
): Promise<void> {
  const pool = store.sharedPool();
  const iso = at.toISOString();
  for (let i = 0; i < devices; i += 1000) {
    const rows = Array.from({ length: Math.min(1000, devices - i) }, (_, k) => {
      const n = i + k;
      const id = `DEV-${n}`;
      const facts: DeviceFacts = { UDID: id, Topic: 't', SerialNumber: `S${n}`, Model: 'Mac14,2', ProductName: 'Mac14,2', OSVersion: '15.1' };
      const device: DeviceRecord = {
        id,
        facts,
        identity: { certHash: `c${n}`, issuerHash: 'i', subject: '', notAfter: '' },
        authenticatedAt: iso,
        reported: reported(id, n, facts),
        enrolledAt: iso,
      };
      const enrollment = { id, deviceId: id, type: 'device', active: true, createdAt: iso, updatedAt: iso };
      const status: DeviceStatus = { id, facts: statusFacts(device) };
      return { n, id, device, enrollment, status };
    });
    await pool.query(
      `WITH d AS (INSERT INTO devices (id, record) SELECT * FROM unnest($1::text[], $2::text[])),
            c AS (INSERT INTO certs (cert_hash, device_id) SELECT * FROM unnest($3::text[], $1::text[])),
            e AS (INSERT INTO enrollments (id, device_id, record) SELECT t.id, t.id, t.r FROM unnest($1::text[], $4::text[]) AS t(id, r)),
            s AS (INSERT INTO status_rows (device_id, state, enrolled, blueprints, matched, phases, seen, row)
                  SELECT t.id, $6, true, '{}', '{}', '{}', $7, t.r FROM unnest($1::text[], $5::text[]) AS t(id, r)),
            p AS (INSERT INTO payloads (uuid, payload) SELECT 'seed-' || t.n, 'x' FROM unnest($8::int[]) AS t(n))
       INSERT INTO commands (enrollment_id, uuid, seq, request_type, priority, status, enqueued_at, updated_at, result_at, result_ts, raw)
       SELECT t.id, 'seed-' || t.n, nextval('command_seq'), 'ProfileList', 50, 'Acknowledged', $7, $7, $7, $7, 'r'
       FROM unnest($1::text[], $8::int[]) AS t(id, n)`,
      [
        rows.map((r) => r.id),
        rows.map((r) => JSON.stringify(r.device)),
        rows.map((r) => r.device.identity.certHash),
        rows.map((r) => JSON.stringify(r.enrollment)),
        rows.map((r) => JSON.stringify(r.status)),
        rowState(rows[0]!.status),
        iso,
        rows.map((r) => r.n),
      ],
    );
  }
}
