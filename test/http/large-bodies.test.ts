/**
 * largeBodiesInTurn on a real Koa server on loopback, behind the real readBody: large device
 * bodies are handled one at a time (the next starts only once the previous one finished, failed
 * ones included), while small bodies pass beside a large one that is still being handled.
 */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import Koa from 'koa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceState } from '../../src/http/context.js';
import { largeBodiesInTurn, readBody } from '../../src/http/device.js';

const LARGE = 4096;

describe('largeBodiesInTurn', () => {
  let server: Server;
  let url: string;
  const events: string[] = [];
  /** Bodies read in full (before the turn). */
  const read = new Set<string>();
  const nameOf = (b: Buffer) => b.subarray(0, 8).toString().trim();
  /** Handlers of bodies named here wait until the test releases them. */
  const held = new Map<string, () => void>();
  const started = new Map<string, () => void>();
  const startedP = new Map<string, Promise<void>>();
  const hold = (name: string) => {
    startedP.set(name, new Promise<void>((r) => started.set(name, r)));
    return new Promise<void>((r) => held.set(name, r));
  };
  const holds = new Map<string, Promise<void>>();

  beforeAll(async () => {
    const app = new Koa<DeviceState>();
    app.use(async (ctx, next) => {
      try {
        await next();
      } catch (err) {
        ctx.status = 500;
        ctx.body = (err as Error).message;
      }
    });
    app.use(readBody({ limit: 1 << 20, timeoutMs: 5000 }));
    app.use((ctx, next) => {
      read.add(nameOf(ctx.state.body!));
      return next();
    });
    app.use(largeBodiesInTurn(LARGE));
    app.use(async (ctx) => {
      const name = nameOf(ctx.state.body!);
      events.push(`start ${name}`);
      started.get(name)?.();
      await holds.get(name);
      events.push(`end ${name}`);
      if (name.startsWith('fail')) throw new Error(`${name} failed`);
      ctx.body = name;
    });
    server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const body = (name: string, size: number) => Buffer.concat([Buffer.from(name.padEnd(8)), Buffer.alloc(size - 8, 'x')]);
  const send = (name: string, size: number) => fetch(url, { method: 'PUT', body: body(name, size) }).then(async (r) => `${r.status} ${await r.text()}`);

  it('runs the second large body only after the first finished; a small one passes while the first is held', async () => {
    events.length = 0;
    holds.set('bigA', hold('bigA'));
    const a = send('bigA', LARGE * 2);
    await startedP.get('bigA');
    const b = send('bigB', LARGE * 2);
    // bigB is read and waits for its turn; a small body is answered meanwhile.
    while (!read.has('bigB')) await new Promise((r) => setTimeout(r, 5));
    expect(await send('small1', 100)).toBe('200 small1');
    expect(events).toEqual(['start bigA', 'start small1', 'end small1']);
    held.get('bigA')!();
    expect(await a).toBe('200 bigA');
    expect(await b).toBe('200 bigB');
    expect(events).toEqual(['start bigA', 'start small1', 'end small1', 'end bigA', 'start bigB', 'end bigB']);
  });

  it('a large body that fails releases the turn to the next', async () => {
    events.length = 0;
    holds.set('failC', hold('failC'));
    const c = send('failC', LARGE);
    await startedP.get('failC');
    const d = send('bigD', LARGE);
    held.get('failC')!();
    expect(await c).toBe('500 failC failed');
    expect(await d).toBe('200 bigD');
    expect(events).toEqual(['start failC', 'end failC', 'start bigD', 'end bigD']);
  });
});
