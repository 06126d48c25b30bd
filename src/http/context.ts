import type { TrustResult } from '../identity/trust.js';

/** What the device middleware chain learns about a request, for later middleware and the log line. */
export interface DeviceState {
  body?: Buffer;
  identity?: TrustResult;
  /** Fields for the one log line per request. */
  log: { device?: string; enrollment?: string; outcome?: string; reason?: string; code?: string; command?: string };
}
