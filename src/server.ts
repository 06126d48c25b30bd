/** `orchard serve`: the parts from the composition root (src/root.ts) behind an HTTP(S) listener. */
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { ServerConfig } from './config.js';
import { composeOrchard, type Orchard, type RootOptions } from './root.js';

export type StartOptions = RootOptions;

export interface RunningServer extends Omit<Orchard, 'start' | 'close'> {
  url: string;
  close(): Promise<void>;
}

export async function startServer(cfg: ServerConfig, opts: StartOptions = {}): Promise<RunningServer> {
  const orchard = await composeOrchard(cfg, opts);
  const { log } = orchard;
  const server = createListener(cfg, orchard.app.callback(), log);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(cfg.listen.port, cfg.listen.host, () => resolve());
    });
  } catch (err) {
    await orchard.close();
    throw err;
  }
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `${cfg.tlsCert ? 'https' : 'http'}://${host}:${addr.port}`;
  await orchard.start();
  log.info({ url, dataDir: cfg.dataDir, repo: orchard.source?.status().repo, trustedCAs: orchard.trust.size, certHeader: cfg.certHeader }, 'orchard listening');
  const { start: _start, close, ...parts } = orchard;
  return {
    ...parts,
    url,
    close: () =>
      close(
        () =>
          // Drain: no new connections; requests in flight are answered, keep-alive connections closed
          // as they go idle (Node keeps them until their timeout otherwise), stragglers cut after 10 s.
          new Promise<void>((resolve) => {
            const idle = setInterval(() => server.closeIdleConnections(), 25);
            const cut = setTimeout(() => server.closeAllConnections(), 10_000);
            server.close(() => {
              clearInterval(idle);
              clearTimeout(cut);
              resolve();
            });
            server.closeIdleConnections();
          }),
      ),
  };
}

/** The HTTP(S) server with the configured time and connection limits. */
function createListener(cfg: ServerConfig, handler: Parameters<typeof createHttpServer>[1], log: Logger): Server {
  const limits = {
    headersTimeout: cfg.headersTimeoutMs,
    // Node counts from the request's first byte; the device endpoints' own body deadline (a 408
    // with a log line) starts after the headers, so this backstop is the sum of both.
    requestTimeout: cfg.headersTimeoutMs + cfg.requestTimeoutMs,
    // Node checks both only this often (its default of 30 s would stretch a 10 s bound to 40).
    connectionsCheckingInterval: Math.min(1000, Math.max(50, cfg.headersTimeoutMs / 10)),
    // Devices keep connections open across a command session.
    keepAliveTimeout: cfg.keepAliveTimeoutMs,
  };
  const server: Server = cfg.tlsCert
    ? createHttpsServer({ ...limits, handshakeTimeout: cfg.headersTimeoutMs, cert: readFileSync(cfg.tlsCert), key: readFileSync(cfg.tlsKey!) }, handler)
    : createHttpServer(limits, handler);
  server.maxConnections = cfg.maxConnections;
  let dropped = 0;
  server.on('drop', () => {
    // One line per burst, not per connection: a flood must not flood the log too.
    if (dropped++ === 0)
      setTimeout(() => {
        log.warn({ dropped, maxConnections: cfg.maxConnections }, 'connections refused: at --max-connections');
        dropped = 0;
      }, 10_000).unref();
  });
  return server;
}
