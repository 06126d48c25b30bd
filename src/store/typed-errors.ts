/**
 * A store decorator: a backend's own failure (LevelDB's LEVEL_* errors, a lost PostgreSQL
 * connection, a full disk) becomes `Unavailable`, which the HTTP layer answers 503 instead of a
 * 500. The store's refusals in the error model (Conflict for a commandUUID in use, NotFound,
 * Malformed) pass through unchanged, and so does the message of each; the backend's own error is
 * kept as `cause` for the log and never shown to a client.
 */
import { OrchardError, Unavailable } from '../errors.js';

/** Wraps every method of `store` (the Store interface or any of its role interfaces). */
export function withStoreErrors<S extends object>(store: S): S {
  const wrapped = new Map<PropertyKey, { method: unknown; fn: unknown }>();
  return new Proxy(store, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      const known = wrapped.get(prop);
      if (known?.method === value) return known.fn;
      const method = value as (...args: unknown[]) => unknown;
      const name = String(prop);
      const fn = (...args: unknown[]) => {
        let out: unknown;
        try {
          out = method.apply(target, args);
        } catch (err) {
          throw storeFailure(name, err);
        }
        return out instanceof Promise ? out.catch((err: unknown) => Promise.reject(storeFailure(name, err))) : out;
      };
      wrapped.set(prop, { method: value, fn });
      return fn;
    },
  });
}

function storeFailure(method: string, err: unknown): unknown {
  if (err instanceof OrchardError) return err;
  return new Unavailable(`the store is unavailable (${method} failed)`, { cause: err });
}
