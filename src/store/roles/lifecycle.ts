/** What `/readyz` reports about the store. */
export interface StoreHealth {
  backend: 'leveldb' | 'postgres' | 'memory';
  /** Reachable and its schema is the one this server knows. */
  ready: boolean;
  /** Why not ready (no secrets, no connection strings). */
  reason?: string;
}

export interface StoreLifecycle {
  health(): Promise<StoreHealth>;
  /** Finish buffered writes and release the backend. Idempotent. */
  close(): Promise<void>;
}
