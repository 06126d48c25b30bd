/**
 * A token APNs answered 410 Unregistered stays suppressed beyond the process that heard it: after a
 * restart on the same LevelDB store, and on another replica on the same PostgreSQL database; a
 * TokenUpdate with a new token lifts it in the store too. Against the local APNs stand-in.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ApnsPusher, type ApnsConfig } from '../../src/push/apns.js';
import { ApnsStandIn } from '../../src/sim/apns.js';
import { LevelStore } from '../../src/store/leveldb.js';
import { PgStore } from '../../src/store/postgres.js';
import type { Store } from '../../src/store/types.js';
import { missingPostgres, usePostgres } from '../helpers/postgres.js';
import { captureLog, makePushCert, pushEnrollment, standInConfig, until, type TestPushCert } from './helpers.js';

const pg = usePostgres();
let cert: TestPushCert;
let standIn: ApnsStandIn;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  cert = makePushCert();
  standIn = await ApnsStandIn.start({ clientCa: cert.ca.certPem });
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(async () => {
  await standIn.close();
});

function pusher(store: Store, over: Partial<ApnsConfig['suppression']> = {}): ApnsPusher {
  const p = new ApnsPusher({ ...standInConfig(standIn, cert), suppression: { store, ...over } }, captureLog().log);
  cleanups.push(() => p.close(100));
  return p;
}

const stored = (store: Store, id: string) => store.getMaterial('push-suppression', id);

describe('APNs token suppression in the store', () => {
  it('survives a restart on LevelDB; a new token lifts it in the store', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'orchard-suppression-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    let store = await LevelStore.open(dir);
    const e = pushEnrollment(cert.topic);
    standIn.unregister(e.push!.token);
    const first = pusher(store);
    expect((await first.pushNow([e]))[0]).toMatchObject({ result: 'unregistered', status: 410 });
    await until(() => stored(store, e.id), 'the suppression in the store');
    await first.close(100);
    await store.close();

    store = await LevelStore.open(dir);
    cleanups.push(() => store.close());
    const second = pusher(store);
    await second.suppressionsLoaded();
    expect(second.status().suppressedTokens).toBe(1);
    expect((await second.pushNow([e]))[0]!.result).toBe('suppressed');
    expect(standIn.pushesFor(e.push!.token)).toHaveLength(1);

    const renewed = pushEnrollment(cert.topic, { id: e.id });
    second.tokenUpdated(e.id, renewed.push!.token);
    await until(async () => (await stored(store, e.id)) === undefined || undefined, 'the suppression lifted in the store');
    expect((await second.pushNow([renewed]))[0]!.result).toBe('pushed');
  });
});

if (!pg.available) missingPostgres('APNs token suppression shared on PostgreSQL', pg.reason);
(pg.available ? describe : () => undefined)('APNs token suppression shared on PostgreSQL', () => {
  it('is seen by another replica on the same PostgreSQL database', async () => {
    const url = await pg.cluster().database();
    const [a, b] = [await PgStore.open(url), await PgStore.open(url)];
    cleanups.push(
      () => a.close(),
      () => b.close(),
    );
    const e = pushEnrollment(cert.topic);
    standIn.unregister(e.push!.token);
    const onA = pusher(a);
    const onB = pusher(b, { refreshMs: 50 });
    await onB.suppressionsLoaded();
    expect((await onA.pushNow([e]))[0]!.result).toBe('unregistered');
    // B never heard the 410 itself: it reads A's from the database.
    await until(() => onB.isSuppressed(e.id, e.push!.token) || undefined, 'the other replica sees the suppression');
    expect((await onB.pushNow([e]))[0]!.result).toBe('suppressed');
    expect(standIn.pushesFor(e.push!.token)).toHaveLength(1);
  });
});
