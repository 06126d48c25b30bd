/**
 * The webhook outbox: the events every replica emits, kept until the leader delivered them
 * (src/report/webhooks.ts). One row per event and URL, in the order they were queued for that
 * URL; a row goes once delivered (or given up on). A crash or a change of leader loses nothing:
 * the next leader delivers what is left, so a receiver may see a delivery twice and dedupes on
 * its id (`X-Orchard-Delivery`).
 *
 * It is a role of the main store (`Store`): an event caused by a store change (an enrollment, a
 * check-out, an identity change, a failed command) is passed to that change's method as an
 * `OutboxEntry` and written in its batch or transaction, so a crash keeps both or neither.
 * `queueEvent` is for events with no store change of their own (a revision applied).
 */

/** An event as the receivers get it: `{"id", "type", "at", "data"}`. */
export interface OutboxEvent {
  id: string;
  type: string;
  at: string;
  data: Record<string, unknown>;
}

/** A queued row: `seq` orders a URL's rows and names the row to remove. */
export interface OutboxRow {
  seq: number;
  event: OutboxEvent;
}

/** An event and the URLs it goes to, written with the store change that causes it. */
export interface OutboxEntry {
  urls: readonly string[];
  event: OutboxEvent;
}

export interface OutboxStore {
  /** Queues the event for each URL, after the rows already queued for it. */
  queueEvent(urls: readonly string[], event: OutboxEvent): Promise<void>;
  /** The URL's oldest `limit` rows, in queue order. */
  pendingEvents(url: string, limit: number): Promise<OutboxRow[]>;
  /** The row is done with (delivered or given up on); removing one already gone is no error. */
  removeEvent(url: string, seq: number): Promise<void>;
  /** Rows waiting, over all URLs. */
  countEvents(): Promise<number>;
  close(): Promise<void>;
}
