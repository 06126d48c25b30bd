/**
 * The one error model on the real server: each class of src/errors.ts thrown by a route on the
 * device side and in the admin API becomes its status and the area's shape (text on device paths,
 * JSON `{error}` under /api), a device is never answered 401, a store failure is 503, and an
 * error's cause reaches the log but never the client.
 */
import Router from '@koa/router';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Conflict,
  Forbidden,
  Gone,
  HTTP_STATUS,
  Malformed,
  NotFound,
  OrchardError,
  Timeout,
  TooLarge,
  Unauthenticated,
  Unavailable,
  UnsupportedMediaType,
  type ErrorCode,
} from '../../src/errors.js';
import { ROUTER_OPTIONS } from '../../src/http/api.js';
import { errorAnswer } from '../../src/http/errors.js';
import { withStoreErrors } from '../../src/store/typed-errors.js';
import type { RouteDeps } from '../../src/http/deps.js';
import { http, startTestServer, type TestServer } from '../helpers/server.js';

const CLASSES: Record<ErrorCode, new (message: string, options?: ErrorOptions) => OrchardError> = {
  malformed: Malformed,
  unauthenticated: Unauthenticated,
  forbidden: Forbidden,
  not_found: NotFound,
  timeout: Timeout,
  conflict: Conflict,
  gone: Gone,
  too_large: TooLarge,
  unsupported_media_type: UnsupportedMediaType,
  unavailable: Unavailable,
};
const EXPECTED: Record<ErrorCode, number> = {
  malformed: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  timeout: 408,
  conflict: 409,
  gone: 410,
  too_large: 413,
  unsupported_media_type: 415,
  unavailable: 503,
};
const CAUSE = 'cause-text-that-must-stay-in-the-log';

/** Routes that throw the class named in the path, with a cause, on a device path and an admin path. */
function throwing(deps: RouteDeps): Router[] {
  const pick = (code: string) => {
    const C = CLASSES[code as ErrorCode];
    if (!C) throw new Error(`no class ${code}`);
    return new C(`refused: ${code}`, { cause: new Error(CAUSE) });
  };
  const device = new Router(ROUTER_OPTIONS);
  device.get('/test-throw/:code', (ctx) => {
    throw pick(ctx.params.code!);
  });
  device.get('/test-bug', () => {
    throw new TypeError(`a bug: ${CAUSE}`);
  });
  const admin = new Router(ROUTER_OPTIONS);
  admin.get('/api/v1/test-throw/:code', deps.auth, (ctx) => {
    throw pick(ctx.params.code!);
  });
  admin.get('/api/v1/test-bug', deps.auth, () => {
    throw new TypeError(`a bug: ${CAUSE}`);
  });
  return [device, admin];
}

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({}, { routes: [throwing] });
});
afterAll(async () => {
  await server.stop();
});

describe('the error model', () => {
  it('has one status per code, and every class carries its code and cause', () => {
    expect(HTTP_STATUS).toEqual(EXPECTED);
    for (const [code, C] of Object.entries(CLASSES)) {
      const cause = new Error('x');
      const e = new C('m', { cause });
      expect([e.code, e.cause, e.message, e.name, e instanceof Error]).toEqual([code, cause, 'm', C.name, true]);
    }
  });

  it('maps 401 to 403 for devices only, and anything outside the model to a 500 that names nothing', () => {
    expect(errorAnswer(new Unauthenticated('no token'), 'device').status).toBe(403);
    expect(errorAnswer(new Unauthenticated('no token'), 'admin').status).toBe(401);
    expect(errorAnswer(new TypeError(CAUSE), 'admin')).toEqual({ status: 500, message: 'internal error', code: 'internal' });
  });
});

describe('one error middleware for device routes and the admin API', () => {
  const auth = () => ({ authorization: `Bearer ${server.adminToken}` });

  it.each(Object.keys(CLASSES))('%s on a device route: its status (never 401), a text answer, the cause only in the log', async (code) => {
    const r = await http(`${server.url}/test-throw/${code}`);
    const expected = code === 'unauthenticated' ? 403 : EXPECTED[code as ErrorCode];
    expect(r.status).toBe(expected);
    expect(r.text).toBe(`refused: ${code}\n`);
    expect(r.text).not.toContain(CAUSE);
    const line = server.logs.filter((l) => l.path === `/test-throw/${code}` && l.msg.startsWith('request')).at(-1);
    expect(line).toMatchObject({ status: expected, reason: `refused: ${code}`, code });
  });

  it.each(Object.keys(CLASSES))('%s on an admin API route: its status and JSON {error}, the cause only in the log', async (code) => {
    const r = await http(`${server.url}/api/v1/test-throw/${code}`, { headers: auth() });
    expect(r.status).toBe(EXPECTED[code as ErrorCode]);
    expect(r.json()).toEqual({ error: `refused: ${code}` });
    expect(r.text).not.toContain(CAUSE);
  });

  it('a 503 is logged with its cause; a bug is a 500 that quotes nothing', async () => {
    await http(`${server.url}/api/v1/test-throw/unavailable`, { headers: auth() });
    const failed = server.logs.filter((l) => l.msg === 'request failed' && l.path === '/api/v1/test-throw/unavailable').at(-1);
    expect(JSON.stringify(failed)).toContain(CAUSE);
    for (const path of ['/test-bug', '/api/v1/test-bug']) {
      const r = await http(`${server.url}${path}`, { headers: auth() });
      expect(r.status).toBe(500);
      expect(r.text).not.toContain(CAUSE);
      expect(r.text).toContain('internal error');
    }
  });

  it('the admin API keeps 401 for a missing token (JSON), the device routes refuse a missing signature 403', async () => {
    const r = await http(`${server.url}/api/v1/devices`);
    expect([r.status, r.json()]).toEqual([401, { error: 'missing bearer token' }]);
    const d = await http(`${server.url}/mdm/checkin`, { method: 'PUT', body: '<plist/>' });
    expect(d.status).toBe(403);
  });
});

describe('store failures', () => {
  it('withStoreErrors: a backend error becomes Unavailable with the cause kept; the model passes through', async () => {
    const backend = {
      async broken(): Promise<void> {
        throw new Error('LEVEL_IO_ERROR: disk gone');
      },
      async taken(): Promise<void> {
        throw new Conflict('command c already exists for A');
      },
      syncBroken(): number {
        throw new RangeError('sync');
      },
    };
    const store = withStoreErrors(backend);
    const e = await store.broken().catch((err: unknown) => err);
    expect(e).toBeInstanceOf(Unavailable);
    expect((e as Error).message).toBe('the store is unavailable (broken failed)');
    expect(((e as Error).cause as Error).message).toBe('LEVEL_IO_ERROR: disk gone');
    await expect(store.taken()).rejects.toThrow(Conflict);
    expect(() => store.syncBroken()).toThrow(Unavailable);
  });

  it('a store that fails answers 503 (not 500) on the admin API and the device routes, without quoting the backend', async () => {
    const own = await startTestServer();
    try {
      const mac = own.device();
      await mac.enroll();
      await own.store.close(); // LevelDB now refuses every call
      const api = await http(`${own.url}/api/v1/devices`, { headers: { authorization: `Bearer ${own.adminToken}` } });
      expect(api.status).toBe(503);
      expect((api.json() as { error: string }).error).toMatch(/^the store is unavailable/);
      expect(api.text).not.toMatch(/LEVEL_|not open/i);
      // (An enrolled device's Idle may be answered from the store's memory: a new one must write.)
      const auth = await own.device().authenticate();
      expect(auth.status).toBe(503);
      expect(auth.body.toString()).not.toMatch(/LEVEL_|not open/i);
      const line = own.logs.filter((l) => l.msg === 'request failed' && l.path === '/api/v1/devices').at(-1);
      expect(JSON.stringify(line)).toMatch(/LEVEL_DATABASE_NOT_OPEN|not open/i);
    } finally {
      await own.stop();
    }
  });
});
