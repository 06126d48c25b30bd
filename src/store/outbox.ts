/**
 * The webhook outbox (src/store/roles/outbox.ts) in memory (tests) and on LevelDB, in a database
 * of its own (DATA_DIR/outbox): `o\0<url>\0<seq, 16 digits>` -> event. On LevelDB the one process
 * is the leader; the rows outlive a crash or a restart. PostgreSQL: src/store/postgres-roles.ts.
 */
import { Level } from 'level';
import type { OutboxEvent, OutboxRow, OutboxStore } from './roles/outbox.js';

/** Values are copied in and out, as a real backend would. */
export class MemoryOutboxStore implements OutboxStore {
  private readonly rows = new Map<string, { seq: number; json: string }[]>();
  private seq = 0;
  async queueEvent(urls: readonly string[], event: OutboxEvent): Promise<void> {
    const json = JSON.stringify(event);
    for (const url of urls) {
      const list = this.rows.get(url) ?? [];
      list.push({ seq: ++this.seq, json });
      this.rows.set(url, list);
    }
  }
  async pendingEvents(url: string, limit: number): Promise<OutboxRow[]> {
    return (this.rows.get(url) ?? []).slice(0, limit).map((r) => ({ seq: r.seq, event: JSON.parse(r.json) as OutboxEvent }));
  }
  async removeEvent(url: string, seq: number): Promise<void> {
    const list = this.rows.get(url);
    if (list)
      this.rows.set(
        url,
        list.filter((r) => r.seq !== seq),
      );
  }
  async countEvents(): Promise<number> {
    let n = 0;
    for (const list of this.rows.values()) n += list.length;
    return n;
  }
  async close(): Promise<void> {}
}

const SEQ_DIGITS = 16;
const rowKey = (url: string, seq: number): string => `o\0${url}\0${String(seq).padStart(SEQ_DIGITS, '0')}`;

export class LevelOutboxStore implements OutboxStore {
  private constructor(
    private readonly db: Level<string, OutboxEvent>,
    private seq: number,
  ) {}

  static async open(dir: string): Promise<LevelOutboxStore> {
    const db = new Level<string, OutboxEvent>(dir, { valueEncoding: 'json' });
    await db.open();
    // The sequence goes on from the highest kept (URLs differ, so every row is looked at once, at open).
    let seq = 0;
    for await (const k of db.keys({ gt: 'o\0', lt: 'o\x01' })) seq = Math.max(seq, Number(k.slice(-SEQ_DIGITS)));
    return new LevelOutboxStore(db, seq);
  }
  async queueEvent(urls: readonly string[], event: OutboxEvent): Promise<void> {
    const seq = ++this.seq;
    await this.db.batch(urls.map((url) => ({ type: 'put' as const, key: rowKey(url, seq), value: event })));
  }
  async pendingEvents(url: string, limit: number): Promise<OutboxRow[]> {
    const out: OutboxRow[] = [];
    const prefix = `o\0${url}\0`;
    for await (const [k, event] of this.db.iterator({ gt: prefix, lt: `o\0${url}\x01`, limit })) out.push({ seq: Number(k.slice(prefix.length)), event });
    return out;
  }
  async removeEvent(url: string, seq: number): Promise<void> {
    await this.db.del(rowKey(url, seq));
  }
  async countEvents(): Promise<number> {
    let n = 0;
    for await (const _ of this.db.keys({ gt: 'o\0', lt: 'o\x01' })) n++;
    return n;
  }
  async close(): Promise<void> {
    await this.db.close();
  }
}
