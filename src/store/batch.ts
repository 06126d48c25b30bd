/**
 * Point reads asked for in the same turn of the event loop, answered by one query (DataLoader's
 * idea). A reconciler with 32 devices in flight asks for 32 devices' records at nearly the same
 * moment, and on PostgreSQL a round trip to another process costs more than the rows it returns.
 * The batch is sent on `setImmediate`: callers resumed by the same I/O (a previous batch's answer)
 * all get into the next one. Rows are handed out raw: each caller parses its own copy, so two
 * callers of one key never share a mutable object.
 */
export class ReadBatch<R> {
  private pending = new Map<string, { resolve: (row: R | undefined) => void; reject: (err: unknown) => void }[]>();
  private scheduled = false;

  /** `fetch` answers a set of keys with the rows found, by key (a key without a row is absent). */
  constructor(
    private readonly fetch: (keys: string[]) => Promise<Map<string, R>>,
    private readonly max = 500,
  ) {}

  load(key: string): Promise<R | undefined> {
    return new Promise((resolve, reject) => {
      const waiting = this.pending.get(key);
      if (waiting) waiting.push({ resolve, reject });
      else this.pending.set(key, [{ resolve, reject }]);
      if (this.scheduled) return;
      this.scheduled = true;
      setImmediate(() => this.send());
    });
  }

  private send(): void {
    this.scheduled = false;
    const all = [...this.pending];
    this.pending = new Map();
    for (let i = 0; i < all.length; i += this.max) {
      const part = all.slice(i, i + this.max);
      this.fetch(part.map(([k]) => k)).then(
        (rows) => {
          for (const [k, waiting] of part) for (const w of waiting) w.resolve(rows.get(k));
        },
        (err: unknown) => {
          for (const [, waiting] of part) for (const w of waiting) w.reject(err);
        },
      );
    }
  }
}
