/** A request the protocol layer refuses. `status` is always 4xx and never 401 (see PROTOCOL.md §1). */
export class ProtocolError extends Error {
  constructor(
    readonly status: 400 | 403 | 404 | 408 | 410 | 413 | 415,
    message: string,
  ) {
    super(message);
  }
}
