/**
 * The store's errors are the project's (`src/errors.ts`): an id outside the domain or a bad page
 * is `Malformed`, a duplicate or a lost compare-and-set is `Conflict`, a missing record an update
 * needs is `NotFound`, a backend that cannot answer is `Unavailable` (`withStoreErrors` wraps
 * the driver's own errors so). Only the compare-and-set has a class of its own: callers retry it.
 */
import { Conflict } from '../errors.js';

/** The reconcile state changed since it was read: read it again and decide again. */
export class VersionConflictError extends Conflict {
  constructor(
    readonly deviceId: string,
    readonly expected: number,
    readonly actual: number,
  ) {
    super(`reconcile state of ${JSON.stringify(deviceId.slice(0, 80))} is at version ${actual}, not ${expected}: read it again`);
  }
}

/**
 * Run `fn` again while it loses a compare-and-set: each attempt reads the state afresh. Gives up
 * after `attempts` and throws the last conflict (another writer keeps winning: a bug or a storm).
 */
export async function retryOnConflict<T>(fn: () => Promise<T>, attempts = 5): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof VersionConflictError) || i >= attempts) throw err;
    }
  }
}
