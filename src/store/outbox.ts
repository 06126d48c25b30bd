/**
 * The webhook outbox (src/store/roles/outbox.ts) of the in-memory and the LevelDB store. Each
 * store writes an event in the same step (memory) or batch (LevelDB) as the change that causes
 * it; these hold the rows and build the writes. PostgreSQL: src/store/postgres.ts.
 *
 * LevelDB keys, in the main store's database: `o\0<url>\0<seq, 16 digits>` -> event. One process
 * holds the database, so it is the leader; the rows outlive a crash or a restart.
 */
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { Level } from 'level';
import type { OutboxEntry, OutboxEvent, OutboxRow, OutboxStore } from './roles/outbox.js';

/** The rows of a `MemoryStore` (kept in its `MemoryData`). Values are copied in and out, as a real backend would. */
export class MemoryOutbox {
  private readonly rows = new Map<string, { seq: number; json: string }[]>();
  private seq = 0;

  /** Synchronous: the store calls it in the same step as the change, before changing anything (an event that cannot be encoded throws). */
  add(entry: OutboxEntry | undefined): void {
    if (!entry) return;
    const json = JSON.stringify(entry.event);
    const seq = ++this.seq;
    for (const url of entry.urls) {
      const list = this.rows.get(url) ?? [];
      list.push({ seq, json });
      this.rows.set(url, list);
    }
  }
  pending(url: string, limit: number): OutboxRow[] {
    return (this.rows.get(url) ?? []).slice(0, limit).map((r) => ({ seq: r.seq, event: JSON.parse(r.json) as OutboxEvent }));
  }
  remove(url: string, seq: number): void {
    const list = this.rows.get(url);
    if (list)
      this.rows.set(
        url,
        list.filter((r) => r.seq !== seq),
      );
  }
  count(): number {
    let n = 0;
    for (const list of this.rows.values()) n += list.length;
    return n;
  }
}

const SEQ_DIGITS = 16;
const PREFIX = 'o\0';
const rowKey = (url: string, seq: number): string => `${PREFIX}${url}\0${String(seq).padStart(SEQ_DIGITS, '0')}`;
const ALL = { gt: PREFIX, lt: 'o\x01' };

type Db = Level<string, unknown>;
type Put = { type: 'put'; key: string; value: Buffer; valueEncoding: 'buffer' };

/** The rows of a `LevelStore`, in its database: `ops` are added to the batch of the change. */
export class LevelOutbox {
  private constructor(
    private readonly db: Db,
    private seq: number,
  ) {}

  static async open(db: Db): Promise<LevelOutbox> {
    // The sequence goes on from the highest kept (URLs differ, so every row is looked at once, at open).
    let seq = 0;
    for await (const k of db.keys(ALL)) seq = Math.max(seq, Number(k.slice(-SEQ_DIGITS)));
    return new LevelOutbox(db, seq);
  }

  /**
   * The puts of an event, for the batch of its change. Call in the synchronous step that writes
   * that batch: batches are written in call order, so the rows are kept in seq order. The event is
   * encoded here (read back as JSON), so one that cannot be throws before the batch is written.
   */
  ops(entry: OutboxEntry | undefined): Put[] {
    if (!entry || entry.urls.length === 0) return [];
    const value = Buffer.from(JSON.stringify(entry.event));
    const seq = ++this.seq;
    return entry.urls.map((url) => ({ type: 'put' as const, key: rowKey(url, seq), value, valueEncoding: 'buffer' as const }));
  }
  async pending(url: string, limit: number): Promise<OutboxRow[]> {
    const out: OutboxRow[] = [];
    const prefix = `${PREFIX}${url}\0`;
    for await (const [k, event] of this.db.iterator({ gt: prefix, lt: `${PREFIX}${url}\x01`, limit }))
      out.push({ seq: Number(k.slice(prefix.length)), event: event as OutboxEvent });
    return out;
  }
  async remove(url: string, seq: number): Promise<void> {
    await this.db.del(rowKey(url, seq));
  }
  async count(): Promise<number> {
    let n = 0;
    for await (const _ of this.db.keys(ALL)) n++;
    return n;
  }
}

/**
 * Before the outbox was a role of the main store, LevelDB kept it in a database of its own
 * (`dir`, DATA_DIR/outbox, same keys). Its rows are queued in `store` in their order (oldest
 * first, each event once for the URLs it was left for) and the directory removed; none: nothing.
 */
export async function adoptOutboxDir(dir: string, store: Pick<OutboxStore, 'queueEvent'>): Promise<number> {
  if (!existsSync(dir)) return 0;
  const old = new Level<string, OutboxEvent>(dir, { valueEncoding: 'json' });
  await old.open();
  const bySeq = new Map<number, { urls: string[]; event: OutboxEvent }>();
  try {
    for await (const [k, event] of old.iterator(ALL)) {
      const url = k.slice(PREFIX.length, -SEQ_DIGITS - 1);
      const seq = Number(k.slice(-SEQ_DIGITS));
      const e = bySeq.get(seq) ?? { urls: [], event };
      e.urls.push(url);
      bySeq.set(seq, e);
    }
  } finally {
    await old.close();
  }
  for (const seq of [...bySeq.keys()].sort((a, b) => a - b)) {
    const e = bySeq.get(seq)!;
    await store.queueEvent(e.urls, e.event);
  }
  await rm(dir, { recursive: true, force: true });
  return bySeq.size;
}
