import type { DeviceFacts, EnrollmentRecord, IdentityBinding, IdentityChange } from '../records.js';
import type { OutboxEntry } from './outbox.js';

/** What check-in messages change: identity binding, channels, push details, secrets. */
export interface CheckinStore {
  /**
   * Atomically: upsert the device (facts, identity binding, authenticatedAt; keep `reported`),
   * mark every enrollment of the device inactive, drop their pending commands (finished history
   * stays until compaction), and index the certificate hash -> device id. With `change` (another
   * certificate takes over), also append it to `identityChanges` and, unless it is a renewal,
   * delete the secrets the old identity held: the bootstrap token and every UnlockToken.
   * Device ids never contain ':' (that is how a user channel's id `UDID:UserID` is built): refused
   * with `Malformed`. `event` (the change's webhook event) is queued in the same batch.
   */
  authenticate(deviceId: string, facts: DeviceFacts, identity: IdentityBinding, at: Date, change?: IdentityChange, event?: OutboxEntry): Promise<void>;
  /**
   * Upsert the enrollment as active. Returns whether it was inactive (or new) before. A user
   * channel so activated writes a work row for its device (src/store/roles/work.ts) in the same
   * batch or transaction: its declarations are reconciled even if the process dies right after.
   * `onActivation` (the enrollment's webhook event) is queued in the same batch, only if it activated.
   */
  tokenUpdate(rec: EnrollmentRecord, onActivation?: OutboxEntry): Promise<{ activated: boolean }>;
  /**
   * Mark the enrollment inactive and drop its pending commands; for the device channel also every
   * user channel, and set checkedOutAt. `event` is queued in the same batch.
   */
  checkOut(enrollmentId: string, at: Date, event?: OutboxEntry): Promise<void>;
  /**
   * Move the device's identity binding to a renewed certificate, keeping everything else (queue,
   * enrollments, reported state, secrets): identity renewal is not re-enrollment. `change` is
   * appended to `identityChanges`, and `event` queued, in the same batch. An unknown device is `NotFound`.
   */
  rebindIdentity(deviceId: string, identity: IdentityBinding, change?: IdentityChange, event?: OutboxEntry): Promise<void>;
  /** Record last contact; may be buffered by the implementation (not crash-critical). */
  touch(enrollmentId: string, at: Date): Promise<void>;
  /** Secret. `null` clears it. */
  setBootstrapToken(deviceId: string, token: Buffer | null): Promise<void>;
  getBootstrapToken(deviceId: string): Promise<Buffer | undefined>;
}
