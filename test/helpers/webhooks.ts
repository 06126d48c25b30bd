/**
 * A real HTTP receiver for Orchard's event webhooks on loopback: it keeps every delivery in the
 * order it arrived (the X-Orchard-Delivery id, the event, whether its signature matches), and can
 * hold its answers to keep deliveries pending (a held request is answered 200 on release, unless
 * its sender is gone by then).
 */
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { signWebhook, type WebhookEvent } from '../../src/report/webhooks.js';

export interface Delivery {
  id: string;
  event: WebhookEvent;
  signed: boolean;
}

export interface WebhookReceiver {
  url: string;
  deliveries: Delivery[];
  /** From now on, answers wait for `release`. */
  hold(): void;
  /** Answers what is held, and every later delivery at once. */
  release(): void;
  close(): Promise<void>;
}

export async function startWebhookReceiver(secret: string): Promise<WebhookReceiver> {
  const deliveries: Delivery[] = [];
  const held: ServerResponse[] = [];
  let holding = false;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      deliveries.push({
        id: String(req.headers['x-orchard-delivery']),
        event: JSON.parse(body) as WebhookEvent,
        signed: req.headers['x-orchard-signature'] === signWebhook(secret, body),
      });
      if (holding) held.push(res);
      else res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/events`,
    deliveries,
    hold: () => {
      holding = true;
    },
    release: () => {
      holding = false;
      for (const res of held.splice(0)) if (!res.destroyed) res.end();
    },
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}
