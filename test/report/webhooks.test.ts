/** Event webhooks against a real HTTP receiver that fails before it accepts. */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { EventWebhooks, signWebhook } from '../../src/report/webhooks.js';
import { LevelStore } from '../../src/store/leveldb.js';
import { MemoryStore } from '../../src/store/memory.js';
import { captureLog, FleetRepo, GOOD, waitFor } from '../gitops/helpers.js';
import { startTestServer } from '../helpers/server.js';
import { startWebhookReceiver } from '../helpers/webhooks.js';

interface Received {
  headers: Record<string, string | string[] | undefined>;
  body: string;
}
let receiver: Server | undefined;

async function receive(answers: number[]): Promise<{ url: string; got: Received[] }> {
  const got: Received[] = [];
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      got.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.statusCode = answers[got.length - 1] ?? 200;
      res.end();
    });
  });
  await new Promise<void>((r) => receiver!.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`, got };
}

afterEach(async () => {
  await new Promise((r) => (receiver ? receiver.close(r) : r(undefined)));
  receiver = undefined;
});

describe('event webhooks', () => {
  it('signs with HMAC-SHA256, retries 5xx with backoff, keeps order, never blocks emit', async () => {
    const { url, got } = await receive([500, 503, 200, 200]);
    const { log, text } = captureLog();
    const hooks = new EventWebhooks({ urls: [url], secret: 's3cret', log, baseMs: 20, maxMs: 100, outbox: await MemoryStore.open() });
    const first = hooks.emit('device.enrolled', { device: 'A' });
    const second = hooks.emit('command.failed', { device: 'A' });
    // emit returned before any delivery was even attempted.
    expect(got).toHaveLength(0);
    await waitFor('two deliveries', () => got.length >= 4 || undefined, 5000);
    await hooks.whenIdle();
    expect(got.map((g) => JSON.parse(g.body).id)).toEqual([first.id, first.id, first.id, second.id]);
    for (const g of got) {
      const expected = createHmac('sha256', 's3cret').update(g.body).digest();
      const given = Buffer.from(String(g.headers['x-orchard-signature']).replace(/^sha256=/, ''), 'hex');
      expect(given.length === expected.length && timingSafeEqual(given, expected)).toBe(true);
    }
    expect(got[3]!.headers['x-orchard-event']).toBe('command.failed');
    expect(got[0]!.headers['x-orchard-delivery']).toBe(first.id);
    expect(JSON.parse(got[0]!.body)).toMatchObject({ type: 'device.enrolled', data: { device: 'A' } });
    expect(text()).toContain('retrying');
    await hooks.close();
  });

  it('does not retry a 4xx refusal and gives up after maxAttempts', async () => {
    const { url, got } = await receive([400, 500, 500]);
    const { log, text } = captureLog();
    const hooks = new EventWebhooks({ urls: [url], secret: 'k', log, baseMs: 10, maxAttempts: 2, outbox: await MemoryStore.open() });
    hooks.emit('a', {});
    hooks.emit('b', {});
    await waitFor('attempts', () => got.length >= 3 || undefined, 5000);
    await hooks.whenIdle();
    expect(got.map((g) => JSON.parse(g.body).type)).toEqual(['a', 'b', 'b']);
    expect(text().match(/giving up/g)?.length).toBe(2);
    await hooks.close();
  });

  it('a replica that is not the leader queues its events in the shared outbox; the leader delivers them, in order, and removes them', async () => {
    const { url, got } = await receive([]);
    const { log } = captureLog();
    const outbox = await MemoryStore.open();
    let leads = false;
    const follower = new EventWebhooks({ urls: [url], secret: 'k', log, outbox, isLeader: () => false, pollMs: 20 });
    const leader = new EventWebhooks({ urls: [url], secret: 'k', log, outbox, isLeader: () => leads, pollMs: 20 });
    follower.start();
    leader.start();
    const events = ['one', 'two', 'three'].map((type) => follower.emit(type, { n: type }));
    await follower.whenIdle();
    expect(await outbox.countEvents()).toBe(3);
    await new Promise((r) => setTimeout(r, 100));
    expect(got).toHaveLength(0);
    // It becomes the leader: its next look delivers what the other queued.
    leads = true;
    await waitFor('three deliveries', () => got.length >= 3 || undefined, 5000);
    await leader.whenIdle();
    expect(got.map((g) => g.headers['x-orchard-delivery'])).toEqual(events.map((e) => e.id));
    expect(await outbox.countEvents()).toBe(0);
    await follower.close();
    await leader.close();
  });

  it('an event left undelivered on LevelDB (the receiver down, the server stopped) is delivered after a restart, with the same delivery id', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'orchard-outbox-'));
    try {
      const { url, got } = await receive([503]);
      const { log } = captureLog();
      let outbox = await LevelStore.open(dir);
      const before = new EventWebhooks({ urls: [url], secret: 'k', log, outbox, baseMs: 60_000 });
      const ev = before.emit('device.enrolled', { device: 'A' });
      await waitFor('the first attempt', () => got.length >= 1 || undefined, 5000);
      // Stopped in its backoff: the row stays.
      await before.close();
      await outbox.close();

      outbox = await LevelStore.open(dir);
      expect(await outbox.countEvents()).toBe(1);
      const after = new EventWebhooks({ urls: [url], secret: 'k', log, outbox });
      after.start();
      await waitFor('the delivery after the restart', () => got.length >= 2 || undefined, 5000);
      await after.whenIdle();
      expect(got.map((g) => g.headers['x-orchard-delivery'])).toEqual([ev.id, ev.id]);
      expect(await outbox.countEvents()).toBe(0);
      await after.close();
      await outbox.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a server with a fleet repository delivers revision.applied and device.enrolled, written with the source state and the enrollment', async () => {
    const repo = new FleetRepo();
    const commit = repo.write('profiles/wifi.yaml', GOOD).commit('wifi');
    const hooks = await startWebhookReceiver('server-secret');
    const server = await startTestServer({ repo: repo.url, pollIntervalMs: 0, eventWebhooks: [hooks.url] }, { eventSecret: 'server-secret' });
    try {
      await waitFor('revision.applied', () => hooks.deliveries.some((d) => d.event.type === 'revision.applied' && d.event.data.commit === commit), 10_000);
      const device = server.device({ udid: 'HOOK-1' });
      await device.enroll();
      await waitFor('device.enrolled', () => hooks.deliveries.some((d) => d.event.type === 'device.enrolled'), 10_000);
      const enrolled = hooks.deliveries.find((d) => d.event.type === 'device.enrolled')!;
      expect(enrolled.event.data).toEqual({ enrollment: 'HOOK-1', device: 'HOOK-1', type: 'device' });
      expect(hooks.deliveries.every((d) => d.signed && d.id === d.event.id)).toBe(true);
    } finally {
      await server.stop();
      await hooks.close();
      repo.cleanup();
    }
  });

  it('signWebhook matches the documented openssl form', () => {
    expect(signWebhook('key', 'body')).toBe(`sha256=${createHmac('sha256', 'key').update('body').digest('hex')}`);
  });
});
