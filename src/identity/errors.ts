/**
 * Why a request's device identity was rejected.
 * `malformed`: the client sent something unparseable (HTTP 400).
 * `identity`: well-formed, but the signature/certificate is not acceptable (HTTP 403).
 */
import { OrchardError, type ErrorCode } from '../errors.js';

export type IdentityErrorKind = 'malformed' | 'identity';

export class IdentityError extends OrchardError {
  constructor(
    readonly kind: IdentityErrorKind,
    reason: string,
    options?: ErrorOptions,
  ) {
    super(reason, options);
    this.name = 'IdentityError';
  }

  get code(): ErrorCode {
    return this.kind === 'malformed' ? 'malformed' : 'forbidden';
  }

  /** HTTP status a handler should answer with. */
  get status(): 400 | 403 {
    return this.kind === 'malformed' ? 400 : 403;
  }
}

type ErrorClass = abstract new (...args: never[]) => Error;

/**
 * The guard at the boundary of a parser of untrusted input: the parser's own typed errors pass
 * through; any other exception (asn1js throws on e.g. an invalid GeneralizedTime, node:crypto on
 * keys it cannot use) means the input could not be read, and becomes `wrap(cause)`. The caller's
 * message names only the exception's class: a library's message might quote the input.
 */
export function guarded<T>(parse: () => T, typed: readonly ErrorClass[], wrap: (cause: unknown) => Error): T {
  try {
    return parse();
  } catch (err) {
    if (typed.some((t) => err instanceof t)) throw err;
    throw wrap(err);
  }
}

/** `(RangeError)`: the class of an unexpected exception, for a refusal's message. */
export function causeName(cause: unknown): string {
  return cause instanceof Error ? `(${cause.name})` : '(non-error thrown)';
}

/** guarded() for the identity parsers: anything but an IdentityError becomes `malformed`. */
export function malformedOnThrow<T>(what: string, parse: () => T): T {
  return guarded(parse, [IdentityError], (cause) => new IdentityError('malformed', `${what} could not be parsed ${causeName(cause)}`, { cause }));
}
