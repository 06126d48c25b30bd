import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AbmServiceError, DepClient } from '../../src/abm/client.js';
import { hmacSha1Signature, oauthHeader, parseOAuthHeader, percentEncode, signatureBaseString } from '../../src/abm/oauth1.js';
import { AbmSync } from '../../src/abm/sync.js';
import { daysLeft, parseServerToken, serverTokenText } from '../../src/abm/token.js';
import { LevelAbmStore, MemoryAbmStore, type AbmStore } from '../../src/store/abm.js';
import { DepStandin } from '../../src/sim/dep.js';

const creds = {
  consumerKey: 'CK_48dd68d198350f51258e885ce9a5c37ab7f98543c4a697323d75682a6c10a32501cb247e3db08105db868f73f2c972bdb6ae77112aea803b9219eb52689d42e6',
  consumerSecret: 'CS_34c7b2b531a600d99a0e4edcf4a78135fbaa1c4b',
  accessToken: 'AT_927696831c59ba510cfe4ec1a69e5267c19881257d4bca2906a99d0785b785a6f6fdeb09774954fdd5e2d0ad952e3af52c6d8d2f21c924ba0caf4a031c158b89',
  accessSecret: 'AS_c31afd7a09691d83548489336e8ff1cb11b82b6b',
};

const standins: DepStandin[] = [];
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(standins.splice(0).map((s) => s.stop()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function standin(opts: Partial<ConstructorParameters<typeof DepStandin>[0]> = {}): Promise<DepStandin> {
  const s = await new DepStandin({ credentials: creds, ...opts }).start();
  standins.push(s);
  return s;
}

describe('OAuth 1.0a signing', () => {
  it('matches the worked example of RFC 5849 section 3.4.1 (the base string and the HMAC-SHA1 signature)', () => {
    // RFC 5849 1.2 / 3.4.1.1: photos.example.net, with the token credentials of section 1.2.
    const params = {
      oauth_consumer_key: 'dpf43f3p2l4k3l03',
      oauth_token: 'nnch734d00sl2jdk',
      oauth_signature_method: 'HMAC-SHA1',
      oauth_timestamp: '1191242096',
      oauth_nonce: 'kllo9940pd9333jh',
      oauth_version: '1.0',
    };
    const base = signatureBaseString('GET', 'http://photos.example.net/photos?file=vacation.jpg&size=original', params);
    expect(base).toBe(
      'GET&http%3A%2F%2Fphotos.example.net%2Fphotos&file%3Dvacation.jpg%26oauth_consumer_key%3Ddpf43f3p2l4k3l03%26oauth_nonce%3Dkllo9940pd9333jh%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D1191242096%26oauth_token%3Dnnch734d00sl2jdk%26oauth_version%3D1.0%26size%3Doriginal',
    );
    expect(hmacSha1Signature(base, 'kd94hf93k423kf44', 'pfkkdhi9sl3r4s00')).toBe('tR3+Ty81lMeYAr/Fid0kMTYa/WM=');
  });

  it('percent-encodes as RFC 5849 3.6 wants (reserved characters, not unreserved ones)', () => {
    expect(percentEncode("a b!*'()~-._")).toBe('a%20b%21%2A%27%28%29~-._');
  });

  it('writes a header the parser reads back, with realm ADM and every protocol parameter once', () => {
    const h = oauthHeader('GET', 'https://mdmenrollment.apple.com/session', creds, { timestamp: 1700000000, nonce: 'n1' });
    expect(h.startsWith('OAuth realm="ADM", ')).toBe(true);
    const f = parseOAuthHeader(h)!;
    expect(f).toMatchObject({
      oauth_consumer_key: creds.consumerKey,
      oauth_token: creds.accessToken,
      oauth_signature_method: 'HMAC-SHA1',
      oauth_timestamp: '1700000000',
      oauth_nonce: 'n1',
      oauth_version: '1.0',
    });
    expect(parseOAuthHeader(`${h}, oauth_nonce="again"`)).toBeUndefined();
  });
});

describe('server token', () => {
  it('reads the decrypted token and refuses one without the message block, never quoting it', () => {
    const expiry = new Date('2027-06-01T12:00:00Z');
    const t = parseServerToken(serverTokenText({ ...creds, accessTokenExpiry: expiry }));
    expect(t).toEqual({ ...creds, accessTokenExpiry: expiry });
    expect(daysLeft(t, new Date('2027-05-02T12:00:00Z'))).toBe(30);
    expect(() => parseServerToken(`secret ${creds.consumerSecret}`)).toThrow(/BEGIN MESSAGE/);
    const partial = `-----BEGIN MESSAGE-----\n{"consumer_key":"${creds.consumerSecret}","access_token_expiry":"2027-01-01T00:00:00Z"}\n-----END MESSAGE-----`;
    const err = (() => {
      try {
        parseServerToken(partial);
      } catch (e) {
        return e;
      }
    })();
    expect(String(err)).toMatch(/"consumer_secret" is missing/);
    expect(String(err)).not.toContain(creds.consumerSecret);
  });
});

describe('DepClient against the stand-in', () => {
  it('signs /session as the stand-in checks it, then reads the account with the session token', async () => {
    const s = await standin({ serverName: 'Orchard Prod' });
    const client = new DepClient({ credentials: creds, baseUrl: s.url });
    expect(await client.account()).toMatchObject({ server_name: 'Orchard Prod', org_name: 'Example Org' });
    expect(s.requests.map((r) => `${r.method} ${r.path} ${r.status}`)).toEqual(['GET /session 200', 'GET /account 200']);
  });

  it('a wrong secret is "token rejected" with what to do, and no secret in the message', async () => {
    const s = await standin();
    const client = new DepClient({ credentials: { ...creds, accessSecret: 'wrong' }, baseUrl: s.url });
    const err = await client.account().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AbmServiceError);
    expect((err as AbmServiceError).reason).toBe('token_rejected');
    expect(String(err)).toMatch(/orchard abm token import/);
    expect(String(err)).not.toContain(creds.consumerSecret);
  });

  it('re-authenticates once when the session ends, and surfaces unsigned terms', async () => {
    const s = await standin();
    const client = new DepClient({ credentials: creds, baseUrl: s.url });
    await client.account();
    s.expireSessions();
    await client.account();
    expect(s.requests.map((r) => `${r.path} ${r.status}`)).toEqual(['/session 200', '/account 200', '/account 401', '/session 200', '/account 200']);
    s.termsSigned = false;
    const err = (await client.account().catch((e: unknown) => e)) as AbmServiceError;
    expect(err.reason).toBe('terms_not_signed');
    expect(err.message).toMatch(/accept/);
  });

  it('defines a profile and assigns it; a serial not assigned to this server is NOT_ACCESSIBLE', async () => {
    const s = await standin();
    s.add({ serial_number: 'C02ABC000001', model: 'MacBook Pro' });
    const client = new DepClient({ credentials: creds, baseUrl: s.url });
    const { profile_uuid } = await client.defineProfile({ profile_name: 'Staff', url: 'https://mdm.example.com/enroll', is_supervised: true });
    expect(await client.assignProfile(profile_uuid, ['C02ABC000001', 'NOTOURS00001'])).toEqual({ C02ABC000001: 'SUCCESS', NOTOURS00001: 'NOT_ACCESSIBLE' });
    expect(s.devices.get('C02ABC000001')).toMatchObject({ profile_uuid, profile_status: 'assigned' });
  });
});

describe('AbmSync', () => {
  const backends: [string, () => Promise<AbmStore>][] = [
    ['memory', async () => new MemoryAbmStore()],
    [
      'LevelDB',
      async () => {
        const d = mkdtempSync(join(tmpdir(), 'orchard-abm-'));
        dirs.push(d);
        return LevelAbmStore.open(d);
      },
    ],
  ];
  for (const [name, open] of backends) {
    it(`${name}: a paged full fetch, then sync of added/modified/deleted, then a full refetch on an expired cursor`, async () => {
      const s = await standin();
      for (let i = 0; i < 250; i++) s.add({ serial_number: `SER${String(i).padStart(5, '0')}`, model: 'iPad', os: 'iOS' });
      const store = await open();
      const sync = new AbmSync(store, 100);
      const client = new DepClient({ credentials: creds, baseUrl: s.url });

      expect(await sync.run('tok', client)).toMatchObject({ full: true, refetched: 'no_cursor', upserts: 250, deletes: 0, pages: 3 });
      expect((await store.listAbmDevices({ limit: 1000 })).items).toHaveLength(250);

      s.add({ serial_number: 'NEW000000001', model: 'Mac' });
      s.modify('SER00007', { color: 'SPACE GRAY' });
      s.remove('SER00009');
      expect(await sync.run('tok', client)).toMatchObject({ full: false, upserts: 2, deletes: 1 });
      expect(await store.getAbmDevice('SER00007')).toMatchObject({ color: 'SPACE GRAY', token: 'tok' });
      expect(await store.getAbmDevice('SER00009')).toBeUndefined();
      expect(await store.getAbmDevice('NEW000000001')).toMatchObject({ model: 'Mac' });

      // Released while the cursor was expired: the refetch drops it.
      s.remove('SER00010');
      s.expireCursors();
      expect(await sync.run('tok', client)).toMatchObject({ full: true, refetched: 'cursor_expired', upserts: 249, deletes: 1 });
      expect(await store.getAbmDevice('SER00010')).toBeUndefined();
      expect((await store.listAbmDevices({ limit: 1000 })).items).toHaveLength(249);
      // Paging in the store: every device once.
      const serials: string[] = [];
      for (let next: string | undefined, first = true; first || next; first = false) {
        const p = await store.listAbmDevices({ cursor: next, limit: 60 });
        serials.push(...p.items.map((d) => d.serial_number));
        next = p.next;
      }
      expect(new Set(serials).size).toBe(249);
      await store.close();
    });
  }

  it('refuses a device whose serial number cannot be a key, and keeps the cursor it had', async () => {
    const s = await standin();
    s.add({ serial_number: 'GOOD00000001' });
    const store = new MemoryAbmStore();
    const sync = new AbmSync(store);
    const client = new DepClient({ credentials: creds, baseUrl: s.url });
    await sync.run('tok', client);
    const before = await store.getAbmCursor('tok');
    s.add({ serial_number: 'BAD\u0000SERIAL' });
    await expect(sync.run('tok', client)).rejects.toThrow(/serial number/);
    expect(await store.getAbmCursor('tok')).toBe(before);
  });
});
