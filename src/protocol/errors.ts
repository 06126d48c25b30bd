import { codeOfStatus, OrchardError, type ErrorCode } from '../errors.js';

/**
 * A request the protocol layer refuses, built from its status (the error model's classes,
 * `Malformed` and the others in src/errors.ts, say the same by name). `status` is always 4xx and
 * never 401 (see PROTOCOL.md §1).
 */
export class ProtocolError extends OrchardError {
  readonly code: ErrorCode;

  constructor(
    readonly status: 400 | 403 | 404 | 408 | 410 | 413 | 415,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.code = codeOfStatus(status);
  }
}
