/**
 * The simulator as a device bought through Apple Business Manager: Setup Assistant asks Apple's
 * activation service for the serial's cloud configuration (the enrollment profile ABM assigned),
 * POSTs the CMS-signed device information to the profile's URL, enrolls through the SCEP payload
 * of the profile it gets, and, with `await_device_configured`, says AwaitingConfiguration in its
 * TokenUpdate until the server sends DeviceConfigured (SimulatedDevice answers it).
 */
import { CLOUD_CONFIG_PATH } from './dep.js';
import { SimulatedDevice, type SimOptions } from './device.js';
import { enrollFromProfile, ScepEnrollError, type ScepEnrollment } from './scep-enroll.js';
import { buildPlist, parsePlistDict } from '../protocol/plist.js';

/** The cloud configuration keys the simulator acts on (`profiles show -type enrollment`). */
export interface CloudConfiguration {
  ConfigurationURL?: string;
  AwaitDeviceConfigured?: boolean;
  IsSupervised?: boolean;
  IsMandatory?: boolean;
  OrganizationName?: string;
}

/** Asks the activation service (`activationUrl`: the stand-in's base URL) for `serial`'s cloud configuration. */
export async function fetchCloudConfiguration(activationUrl: string, serial: string): Promise<CloudConfiguration> {
  const res = await fetch(new URL(CLOUD_CONFIG_PATH, activationUrl), {
    method: 'POST',
    body: new Uint8Array(buildPlist({ action: 'RequestProfileConfiguration', sn: serial })),
    headers: { 'content-type': 'application/x-plist' },
  });
  const body = Buffer.from(await res.arrayBuffer());
  if (res.status !== 200) throw new ScepEnrollError(`cloud configuration of ${serial}: HTTP ${res.status}: ${body.toString('utf8').trim().slice(0, 200)}`);
  const d = parsePlistDict(body);
  const str = (k: string) => (typeof d[k] === 'string' ? (d[k] as string) : undefined);
  const flag = (k: string) => (typeof d[k] === 'boolean' ? (d[k] as boolean) : undefined);
  return {
    ConfigurationURL: str('ConfigurationURL'),
    AwaitDeviceConfigured: flag('AwaitDeviceConfigured'),
    IsSupervised: flag('IsSupervised'),
    IsMandatory: flag('IsMandatory'),
    OrganizationName: str('OrganizationName'),
  };
}

export interface SetupAssistantOptions extends Partial<Pick<SimOptions, 'model' | 'productName' | 'osVersion' | 'buildVersion' | 'deviceName'>> {
  activationUrl: string;
  serial: string;
  udid: string;
  /** PEM CA the profile signature must chain to; default the CA the profile carries. */
  trustedCa?: string;
}

export interface SetupAssistantEnrollment {
  device: SimulatedDevice;
  config: CloudConfiguration;
  enrollment: ScepEnrollment;
}

/** Enrolls as Setup Assistant does (Authenticate, TokenUpdate); throws when ABM assigned the serial no profile or the server refuses it. */
export async function enrollFromSetupAssistant(opts: SetupAssistantOptions): Promise<SetupAssistantEnrollment> {
  const config = await fetchCloudConfiguration(opts.activationUrl, opts.serial);
  if (!config.ConfigurationURL) throw new ScepEnrollError(`serial ${opts.serial} has no enrollment profile assigned in ABM (no ConfigurationURL)`);
  const enrollment = await enrollFromProfile({
    profileUrl: config.ConfigurationURL,
    trustedCa: opts.trustedCa,
    setupAssistant: { serial: opts.serial, udid: opts.udid, product: opts.productName ?? opts.model, version: opts.buildVersion },
  });
  const device = new SimulatedDevice({
    ...enrollment.device,
    udid: opts.udid,
    serialNumber: opts.serial,
    model: opts.model,
    productName: opts.productName,
    osVersion: opts.osVersion,
    buildVersion: opts.buildVersion,
    deviceName: opts.deviceName,
    supervised: config.IsSupervised,
    awaitingConfiguration: config.AwaitDeviceConfigured === true,
  });
  await device.enroll();
  return { device, config, enrollment };
}
