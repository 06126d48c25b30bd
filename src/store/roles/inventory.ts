import type { Page, PageRequest } from '../paging.js';
import type { DeviceRecord, EnrollmentRecord } from '../records.js';

/** Devices and their channels as the store knows them (read side). */
export interface InventoryStore {
  getDevice(deviceId: string): Promise<DeviceRecord | undefined>;
  /** Device id currently bound to this certificate hash, if any. */
  deviceForCert(certHash: string): Promise<string | undefined>;
  /** Devices in id order, one page at a time. */
  listDevices(page?: PageRequest): Promise<Page<DeviceRecord>>;
  /** Just the ids, in the same order, without loading the records (fleet-wide runs at 100,000 devices). */
  listDeviceIds(page?: PageRequest): Promise<Page<string>>;
  getEnrollment(enrollmentId: string): Promise<EnrollmentRecord | undefined>;
  /** The device channel and its user channels: a handful per device, so not paged. */
  listEnrollments(deviceId: string): Promise<EnrollmentRecord[]>;
}
