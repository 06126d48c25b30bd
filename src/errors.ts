/**
 * Orchard's one error model. Every refusal and every failure a caller must tell apart is one of
 * these classes; the HTTP layer maps them to statuses in one place (`src/http/errors.ts`), the CLI
 * to exit codes. Each keeps the error it wraps as `cause` (for the log); the message is what a
 * client may read, so it never quotes a secret or a library's text about the input.
 *
 * Library errors (LevelDB, ajv, plist, asn1js, node:crypto) are wrapped where they enter Orchard:
 * a store failure is `Unavailable`, unreadable input is `Malformed`.
 */

/** The stable, machine-readable kind of an error (logs, tests, the admin API's callers). */
export type ErrorCode =
  'malformed' | 'unauthenticated' | 'forbidden' | 'not_found' | 'timeout' | 'conflict' | 'gone' | 'too_large' | 'unsupported_media_type' | 'unavailable';

export abstract class OrchardError extends Error {
  abstract readonly code: ErrorCode;

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The input cannot be read or breaks a rule: bad plist, JSON, DER, schema, a config value. */
export class Malformed extends OrchardError {
  readonly code: ErrorCode = 'malformed';
}

/** No credentials at all (an admin API call without a token). Never sent to a device as 401. */
export class Unauthenticated extends OrchardError {
  readonly code: ErrorCode = 'unauthenticated';
}

/** Well-formed, but this caller may not do it: wrong token, certificate, challenge. */
export class Forbidden extends OrchardError {
  readonly code: ErrorCode = 'forbidden';
}

export class NotFound extends OrchardError {
  readonly code: ErrorCode = 'not_found';
}

/** The client did not send in time (headers, body). */
export class Timeout extends OrchardError {
  readonly code: ErrorCode = 'timeout';
}

/** It clashes with what exists: a commandUUID already used, an ambiguous name. */
export class Conflict extends OrchardError {
  readonly code: ErrorCode = 'conflict';
}

/** Deliberately not served any more (a user channel's bootstrap: see PROTOCOL.md). */
export class Gone extends OrchardError {
  readonly code: ErrorCode = 'gone';
}

export class TooLarge extends OrchardError {
  readonly code: ErrorCode = 'too_large';
}

/** A content type of another kind of request. */
export class UnsupportedMediaType extends OrchardError {
  readonly code: ErrorCode = 'unsupported_media_type';
}

/** A part Orchard needs is missing or failing (the store, APNs, the validator): try again later. */
export class Unavailable extends OrchardError {
  readonly code: ErrorCode = 'unavailable';
}

/** The HTTP status of each code: the one table the error middleware and the CLI read. */
export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = {
  malformed: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  timeout: 408,
  conflict: 409,
  gone: 410,
  too_large: 413,
  unsupported_media_type: 415,
  unavailable: 503,
};

const CODE_OF_STATUS = new Map<number, ErrorCode>(Object.entries(HTTP_STATUS).map(([code, status]) => [status, code as ErrorCode]));

/** The code an HTTP status stands for (for the classes built from a status); `fallback` for any other status. */
export function codeOfStatus(status: number, fallback?: ErrorCode): ErrorCode {
  const code = CODE_OF_STATUS.get(status) ?? fallback;
  if (!code) throw new TypeError(`no error code for HTTP status ${status}`);
  return code;
}

/**
 * Wraps an exception from a library at the boundary where it enters Orchard: Orchard's own errors
 * pass through, anything else becomes `wrap(cause)` (the cause kept for the log, not the message).
 */
export function wrapForeign<T>(run: () => T, wrap: (cause: unknown) => OrchardError): T {
  try {
    return run();
  } catch (err) {
    if (err instanceof OrchardError) throw err;
    throw wrap(err);
  }
}

/** wrapForeign() for promises (a store call, a network call). */
export async function wrapForeignAsync<T>(run: () => Promise<T>, wrap: (cause: unknown) => OrchardError): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof OrchardError) throw err;
    throw wrap(err);
  }
}
