/**
 * Why a request's device identity was rejected.
 * `malformed`: the client sent something unparseable (HTTP 400).
 * `identity`: well-formed, but the signature/certificate is not acceptable (HTTP 403).
 */
export type IdentityErrorKind = 'malformed' | 'identity';

export class IdentityError extends Error {
  constructor(
    readonly kind: IdentityErrorKind,
    reason: string,
  ) {
    super(reason);
    this.name = 'IdentityError';
  }

  /** HTTP status a handler should answer with. */
  get status(): 400 | 403 {
    return this.kind === 'malformed' ? 400 : 403;
  }
}
