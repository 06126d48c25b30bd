/**
 * One task at a time per key (a device, an enrollment): tasks for the same key run in the order
 * they came, tasks for different keys concurrently. A failed task does not stop the next one.
 */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<unknown>>();

  /** Runs `fn` after every earlier task for `key` has settled; its result or error is the caller's. */
  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const run = (this.tails.get(key) ?? Promise.resolve()).then(fn, fn);
    const tail = run.catch(() => undefined);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return run;
  }

  /** Settles when every task queued so far has. */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.tails.values()]);
  }
}
