// Invariants for indexed access (`noUncheckedIndexedAccess` is on): where the code has already
// established that an element exists, say so with at()/must() instead of a bare `!`, so a broken
// invariant fails at the spot with a message instead of as a TypeError somewhere later.

/** The value, which the caller's logic guarantees is present; throws (a bug, not bad input) if not. */
export function must<T>(value: T | undefined | null, what: string): T {
  if (value === undefined || value === null) throw new Error(`invariant: ${what} is missing`);
  return value;
}

/** xs[i], which the caller has bounds-checked. */
export function at<T>(xs: ArrayLike<T>, i: number): T {
  if (!(i >= 0 && i < xs.length)) throw new Error(`invariant: index ${i} outside 0..${xs.length - 1}`);
  return xs[i] as T;
}
