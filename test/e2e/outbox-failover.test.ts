/**
 * The webhook outbox across two `orchard serve` processes on one PostgreSQL database (issue 13):
 * events caused on the follower (its devices' enrollments, written in the enrollment's
 * transaction) are delivered by the leader to a real receiver on loopback. Then the receiver
 * holds its answers, so a delivery is pending when the leader is SIGKILLed with more events
 * queued; the other replica takes the lease over and delivers the rest. Counted at the receiver:
 * every event arrives, in the order it was caused, signed; the one the dead leader had in flight
 * arrives twice with the same X-Orchard-Delivery (the receiver dedupes on it), no other twice.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createCA, createDeviceIdentity } from '../../src/identity/ca.js';
import { SimulatedDevice } from '../../src/sim/device.js';
import { PgStore } from '../../src/store/postgres.js';
import { waitFor } from '../gitops/helpers.js';
import { missingPostgres, usePostgres } from '../helpers/postgres.js';
import { spawnServer, waitExit, type ServerProcess } from '../helpers/process.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhooks.js';

const SECRET = 'the outbox e2e event secret';
const cluster = usePostgres();
const dir = mkdtempSync(join(tmpdir(), 'orchard-e2e-outbox-'));
const servers: ServerProcess[] = [];
let receiver: WebhookReceiver | undefined;
afterAll(async () => {
  for (const s of servers) if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
  await Promise.all(servers.map((s) => waitExit(s.child)));
  await receiver?.close();
  rmSync(dir, { recursive: true, force: true });
});

const leaderLease = (s: ServerProcess) => s.output().includes('leader lease taken');

if (!cluster.available) missingPostgres('the webhook outbox across two replicas', cluster.reason);
(cluster.available ? describe : () => undefined)('the webhook outbox across two replicas on one PostgreSQL', () => {
  it(
    'the leader delivers what the follower caused; SIGKILLed with deliveries pending, the other delivers the rest: every event, in order',
    { timeout: 90_000 },
    async () => {
      const url = await cluster.cluster().database();
      const hooks = await startWebhookReceiver(SECRET);
      receiver = hooks;
      const ca = createCA({ commonName: 'Outbox e2e CA' });
      writeFileSync(join(dir, 'ca.pem'), ca.certPem);
      const env = { ORCHARD_API_TOKEN: 'outbox-admin', ORCHARD_MATERIAL_KEY: 'the outbox e2e material key', ORCHARD_EVENT_SECRET: SECRET };
      const args = (data: string) => [
        ...['--store', url, '--data-dir', join(dir, data), '--trust-ca', join(dir, 'ca.pem')],
        ...['--event-webhook', hooks.url, '--leader-lease', '2s'],
      ];
      // The first one alone takes the leader lease; the second follows.
      const a = await spawnServer(args('a'), env);
      servers.push(a);
      await waitFor('the first replica leading', () => leaderLease(a), 20_000);
      const b = await spawnServer(args('b'), env);
      servers.push(b);

      const key = createDeviceIdentity(ca, 'outbox-key').key;
      const device = (i: number, server: ServerProcess) =>
        new SimulatedDevice({ serverUrl: server.url, identity: createDeviceIdentity(ca, `outbox-${i}`, { key }), udid: `OUTBOX-${i}` });
      /** The devices in the order they enrolled: one at a time, so their events were committed in this order. */
      const enrolled: string[] = [];
      const enroll = async (i: number, server: ServerProcess) => {
        await device(i, server).enroll();
        enrolled.push(`OUTBOX-${i}`);
      };
      const delivered = () => hooks.deliveries.map((d) => d.event.data.device as string);

      // Caused on the follower, delivered by the leader.
      for (let i = 0; i < 4; i++) await enroll(i, b);
      await waitFor('the follower-caused events at the receiver', () => hooks.deliveries.length >= 4, 20_000);
      expect(delivered()).toEqual(enrolled);
      expect(leaderLease(b)).toBe(false);

      // The receiver holds its answers: the leader's next delivery stays pending, the events after it queued.
      hooks.hold();
      for (let i = 4; i < 12; i++) await enroll(i, i % 2 ? a : b);
      await waitFor('a delivery pending at the receiver', () => hooks.deliveries.length >= 5, 20_000);
      const pending = hooks.deliveries[4]!;
      expect(pending.event.data.device).toBe('OUTBOX-4');
      a.child.kill('SIGKILL');
      await waitExit(a.child);
      hooks.release();

      await waitFor('the other replica leading and every event delivered', () => new Set(hooks.deliveries.map((d) => d.id)).size >= enrolled.length, 30_000);
      expect(leaderLease(b)).toBe(true);
      // Counted by delivery id: every event once, the one in flight at the kill twice (same id, same event).
      const byId = new Map<string, number>();
      for (const d of hooks.deliveries) byId.set(d.id, (byId.get(d.id) ?? 0) + 1);
      expect(byId.size).toBe(12);
      expect([...byId].filter(([, n]) => n > 1)).toEqual([[pending.id, 2]]);
      expect(hooks.deliveries.filter((d) => d.id === pending.id).map((d) => d.event)).toEqual([pending.event, pending.event]);
      // In order for the URL, once deduped; all enrollments, all signed.
      const firsts = hooks.deliveries.filter((d, n) => hooks.deliveries.findIndex((e) => e.id === d.id) === n);
      expect(firsts.map((d) => d.event.data.device)).toEqual(enrolled);
      expect(firsts.every((d) => d.event.type === 'device.enrolled' && d.id === d.event.id)).toBe(true);
      expect(hooks.deliveries.every((d) => d.signed)).toBe(true);

      // Nothing left behind in the outbox.
      const store = await PgStore.open(url);
      try {
        await waitFor('the outbox emptied', async () => (await store.countEvents()) === 0, 10_000);
      } finally {
        await store.close();
      }
    },
  );
});
