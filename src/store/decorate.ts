/**
 * A decorator over a store (or any object of methods): the `overrides` answer their methods, every
 * other method is the inner one's, called on it. `withMetrics(store)` and the like are built on it,
 * instead of patching a store's methods in place.
 */
export function decorate<S extends object>(inner: S, overrides: Partial<S>): S {
  const bound = new Map<PropertyKey, { value: unknown; fn: unknown }>();
  return new Proxy(inner, {
    get(target, prop) {
      if (Object.hasOwn(overrides, prop)) return (overrides as Record<PropertyKey, unknown>)[prop];
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      const known = bound.get(prop);
      if (known?.value === value) return known.fn;
      const fn = (value as (...args: unknown[]) => unknown).bind(target);
      bound.set(prop, { value, fn });
      return fn;
    },
  });
}
