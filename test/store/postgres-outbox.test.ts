/**
 * The outbox row and its cause in one transaction on PostgreSQL, with the failure inside the
 * database: a trigger that refuses the outbox insert undoes the answer (the one-statement path
 * and the transaction paths), and one that refuses the answer leaves no event. A row committed
 * after a newer one was delivered is still delivered.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PgStore, queueOutbox } from '../../src/store/postgres.js';
import { recordAndNext } from '../../src/store/roles/results.js';
import type { EnrollmentRecord, OutboxEntry } from '../../src/store/types.js';
import { missingPostgres, usePostgres } from '../helpers/postgres.js';

const pg = usePostgres();
const at = (s: number) => new Date(Date.parse('2026-01-01T00:00:00.000Z') + s * 1000);
const identity = (h: string) => ({ certHash: h, issuerHash: 'i', subject: `CN=${h}`, notAfter: '2027-01-01T00:00:00.000Z' });
const URLS = ['http://hooks.test/a'];
const entry = (type: string): OutboxEntry => ({ urls: URLS, event: { id: `id-${type}`, type, at: at(0).toISOString(), data: { type } } });
const payload = (uuid: string) => Buffer.from(`<plist>${uuid}</plist>`);
/** The device channel `D1`, or its user channel `D1:<user>`. */
const channel = (id: string): EnrollmentRecord => ({
  id,
  deviceId: 'D1',
  ...(id === 'D1' ? { type: 'device' as const } : { type: 'user' as const, userId: id.slice(3) }),
  active: true,
  push: { token: 'ab', pushMagic: 'm', topic: 't' },
  createdAt: at(1).toISOString(),
  updatedAt: at(1).toISOString(),
});

if (!pg.available) missingPostgres('outbox transactions on PostgreSQL', pg.reason);
else
  describe('PostgreSQL: an outbox row commits with its cause or not at all', () => {
    let store: PgStore;
    const query = (text: string) => store.sharedPool().query(text);
    const refuse = (table: string, when = 'true') =>
      query(`CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF ${when} THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$;
             CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON ${table} FOR EACH ROW EXECUTE FUNCTION refuse();`);
    const allow = () => query('DROP FUNCTION IF EXISTS refuse() CASCADE');

    beforeEach(async () => {
      store = await PgStore.open(await pg.cluster().emptied(), { touchFlushMs: 3_600_000 });
      await store.authenticate('D1', { UDID: 'D1', SerialNumber: 'SN1', Topic: 'com.apple.mgmt.test' }, identity('h1'), at(0));
      await store.tokenUpdate(channel('D1'));
      for (const uuid of ['c1', 'c2']) await store.enqueue(['D1'], { uuid, requestType: 'InstallProfile', payload: payload(uuid) }, at(2));
    });
    afterEach(async () => {
      // The database is emptied for the next test, not its triggers.
      await allow();
      await store.close();
    });

    it('a refused outbox insert undoes the answer it rides with (one statement) and the check-in it ends (a transaction)', async () => {
      await query('DELETE FROM work');
      await refuse('outbox');
      await expect(
        store.recordResult('D1', 'c1', { status: 'Error', at: at(3).toISOString(), raw: Buffer.from('r') }, undefined, entry('failed')),
      ).rejects.toThrow(/refused by the test/);
      await expect(
        recordAndNext(store, 'D1', 'c2', { status: 'NotNow', at: at(3).toISOString(), raw: Buffer.from('r') }, undefined, entry('notnow')),
      ).rejects.toThrow(/refused by the test/);
      await expect(store.checkOut('D1', at(4), entry('checked_out'))).rejects.toThrow(/refused by the test/);
      expect((await store.getCommand('D1', 'c1'))?.status).toBe('Pending');
      expect((await store.getCommand('D1', 'c2'))?.status).toBe('Pending');
      expect((await store.getEnrollment('D1'))?.active).toBe(true);
      // The answer's work row went with it.
      expect((await query('SELECT count(*)::int AS n FROM work')).rows[0].n).toBe(0);
      // Answers with no event still go through under the same trigger: only the event's insert fails.
      expect(await store.recordResult('D1', 'c2', { status: 'Acknowledged', at: at(5).toISOString(), raw: Buffer.from('r') })).toBe('recorded');
      await allow();
      expect(await store.recordResult('D1', 'c1', { status: 'Error', at: at(6).toISOString(), raw: Buffer.from('r') }, undefined, entry('failed'))).toBe(
        'recorded',
      );
      expect((await store.pendingEvents(URLS[0]!, 10)).map((r) => r.event.type)).toEqual(['failed']);
    });

    it('a refused answer leaves no event', async () => {
      await refuse('commands', "NEW.status = 'Error'");
      await expect(
        store.recordResult('D1', 'c1', { status: 'Error', at: at(3).toISOString(), raw: Buffer.from('r') }, undefined, entry('failed')),
      ).rejects.toThrow(/refused by the test/);
      expect(await store.countEvents()).toBe(0);
      await allow();
      await refuse('enrollments');
      await expect(store.tokenUpdate(channel('D1:U1'), entry('user.enrolled'))).rejects.toThrow(/refused by the test/);
      expect(await store.countEvents()).toBe(0);
    });

    it('a row that commits after a newer one (concurrent causes) is still read once the newer is delivered: nothing is skipped', async () => {
      const older = await store.sharedPool().connect();
      try {
        await older.query('BEGIN');
        await queueOutbox(older, entry('older'));
        // The newer one commits first and is delivered (removed) while the older is still open.
        await store.queueEvent(URLS, entry('newer').event);
        const [seen] = await store.pendingEvents(URLS[0]!, 10);
        expect(seen!.event.type).toBe('newer');
        await store.removeEvent(URLS[0]!, seen!.seq);
        await older.query('COMMIT');
      } finally {
        older.release();
      }
      expect((await store.pendingEvents(URLS[0]!, 10)).map((r) => r.event.type)).toEqual(['older']);
    });
  });
