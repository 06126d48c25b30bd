import type { EnrollmentRecord } from '../store/types.js';
import type { ApnsStatus, PushResult } from './apns.js';
import type { Logger } from 'pino';

/** Wakes devices so they connect and fetch queued commands. The APNs implementation lives beside this. */
export interface Pusher {
  push(enrollments: EnrollmentRecord[]): Promise<void>;
}

/**
 * Used while no push certificate is configured: commands still queue and are delivered the next
 * time the device connects on its own. Says so once, loudly, instead of failing silently.
 */
export class UnconfiguredPusher implements Pusher {
  private warned = false;
  constructor(private readonly log: Logger) {}
  async push(enrollments: EnrollmentRecord[]): Promise<void> {
    if (!this.warned && enrollments.length > 0) {
      this.warned = true;
      this.log.warn('APNs push is not configured: queued commands wait until devices check in on their own');
    }
  }
}

/** Pushing now, with APNs' answer per target, and the push status (the APNs client does both). */
export interface OnDemandPush {
  pushNow(enrollments: EnrollmentRecord[]): Promise<PushResult[]>;
  status(): ApnsStatus;
}

/** Whether a pusher can also push on demand (a test's stand-in may only push). */
export function isOnDemand(p: Pusher | undefined): p is Pusher & OnDemandPush {
  return typeof (p as Partial<OnDemandPush> | undefined)?.pushNow === 'function' && typeof (p as Partial<OnDemandPush>).status === 'function';
}
