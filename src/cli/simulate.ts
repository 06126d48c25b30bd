/**
 * `orchard simulate`: simulated devices against a running server. They answer commands and,
 * after a DeclarativeManagement command, sync their declarations (tokens, declaration-items,
 * the declarations, a status report). Their state (identity, installed profiles, the
 * declarations and DDM tokens they hold) is kept in a directory, so a second run continues as the same devices
 * instead of enrolling again (which would clear their queues, as a real re-enrollment does).
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate, type KeyObject } from 'node:crypto';
import { createCA, createDeviceIdentity, loadCertifiedKey, type CertifiedKey } from '../identity/ca.js';
import type { SimDdmState } from '../sim/ddm.js';
import { SimRefusedError, SimulatedDevice, type InstalledProfile } from '../sim/device.js';
import { Unavailable } from '../errors.js';

/** A problem to tell the user in one line (no stack trace). */
export class SimulateError extends Unavailable {}

export interface SimulateFlags {
  server: string;
  stateDir: string;
  count: string;
  interval: string;
  once?: boolean;
  prefix: string;
  /** Enroll new devices from this served enrollment profile through SCEP, like a real device. */
  enrollUrl?: string;
  /** Authenticate saved devices again (after the server lost them, e.g. a new data directory). */
  reenroll?: boolean;
  /**
   * Enroll new devices as ABM devices from Setup Assistant: ask this activation service (the ABM
   * stand-in's URL) for each serial's enrollment profile, POST the device information to its URL.
   */
  abm?: string;
}

interface SavedDevice {
  udid: string;
  serialNumber: string;
  certPem: string;
  keyPem: string;
  profiles: InstalledProfile[];
  /** Declarative Device Management: what it holds and its tokens (absent in state from before DDM). */
  ddm?: SimDdmState;
  /** From the enrollment profile, when enrolled through it. */
  topic?: string;
  checkinPath?: string;
  connectPath?: string;
  /** Still waiting in Setup Assistant for DeviceConfigured. */
  awaitingConfiguration?: boolean;
}

/** Load the CA in `dir`, or create it (key file mode 0600) so the server can `--trust-ca dir/ca.pem`. */
export function loadOrCreateCA(dir: string): CertifiedKey {
  const certFile = join(dir, 'ca.pem');
  const keyFile = join(dir, 'ca.key');
  if (existsSync(certFile) && existsSync(keyFile)) return loadCertifiedKey(readFileSync(certFile, 'utf8'), readFileSync(keyFile, 'utf8'));
  mkdirSync(dir, { recursive: true });
  const ca = createCA({ commonName: 'Orchard Simulator CA' });
  writeFileSync(keyFile, ca.keyPem, { mode: 0o600 });
  writeFileSync(certFile, ca.certPem);
  return ca;
}

/** A SCEP-issued identity as the state directory keeps it. */
function certifiedKey(id: { certDer: Buffer; key: KeyObject }): CertifiedKey {
  return {
    certDer: id.certDer,
    key: id.key,
    certPem: new X509Certificate(id.certDer).toString(),
    keyPem: id.key.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

async function enroll(device: SimulatedDevice, stateDir: string): Promise<void> {
  const auth = await device.authenticate();
  if (auth.status === 403) {
    throw new SimulateError(
      `the server refused the simulator's identity (403: ${auth.body.toString().trim()}); start it with --trust-ca ${join(stateDir, 'ca.pem')}`,
    );
  }
  if (auth.status !== 200) throw new SimulateError(`Authenticate answered ${auth.status}: ${auth.body.toString().trim()}`);
  const token = await device.tokenUpdate();
  if (token.status !== 200) throw new SimulateError(`TokenUpdate answered ${token.status}: ${token.body.toString().trim()}`);
}

export async function simulate(flags: SimulateFlags): Promise<void> {
  // Enrolling through the server's own SCEP needs no local CA.
  if (flags.abm && flags.enrollUrl) throw new SimulateError('--abm and --enroll-url are two ways in: give one');
  const ca = flags.enrollUrl || flags.abm ? undefined : loadOrCreateCA(flags.stateDir);
  const devDir = join(flags.stateDir, 'devices');
  mkdirSync(devDir, { recursive: true });
  const intervalMs = Number(flags.interval) * 1000;
  const paths = new Map<string, Pick<SavedDevice, 'topic' | 'checkinPath' | 'connectPath'>>();
  const save = (d: SimulatedDevice, id: CertifiedKey) => {
    const saved: SavedDevice = {
      udid: d.udid,
      serialNumber: d.serialNumber,
      certPem: id.certPem,
      keyPem: id.keyPem,
      profiles: [...d.profiles.values()],
      ddm: d.ddm.state(),
      ...paths.get(d.udid),
      ...(d.awaitingConfiguration ? { awaitingConfiguration: true } : {}),
    };
    // Written aside and renamed: a reader (or a crash) never sees half a state file.
    const file = join(devDir, `${d.serialNumber}.json`);
    writeFileSync(`${file}.tmp`, JSON.stringify(saved, null, 1), { mode: 0o600 });
    renameSync(`${file}.tmp`, file);
  };
  const devices: { device: SimulatedDevice; identity: CertifiedKey }[] = [];
  for (let i = 0; i < Number(flags.count); i++) {
    const serial = `${flags.prefix}${String(i).padStart(6, '0')}`;
    const file = join(devDir, `${serial}.json`);
    if (existsSync(file)) {
      const s = JSON.parse(readFileSync(file, 'utf8')) as SavedDevice;
      const identity = loadCertifiedKey(s.certPem, s.keyPem);
      const device = new SimulatedDevice({
        serverUrl: flags.server,
        identity,
        serialNumber: s.serialNumber,
        udid: s.udid,
        topic: s.topic,
        checkinPath: s.checkinPath,
        connectPath: s.connectPath,
        awaitingConfiguration: s.awaitingConfiguration,
      });
      paths.set(s.udid, { topic: s.topic, checkinPath: s.checkinPath, connectPath: s.connectPath });
      for (const p of s.profiles) device.profiles.set(p.PayloadIdentifier, p);
      if (s.ddm) device.ddm.restore(s.ddm);
      if (flags.reenroll) {
        // The server forgot this device: a re-enrollment starts from an empty device, as a wiped one would.
        device.profiles.clear();
        device.ddm.restore({ channels: {}, tokens: {}, fullReportNext: true });
        await enroll(device, flags.stateDir);
        save(device, identity);
        process.stdout.write(`re-enrolled ${device.udid} (${serial})\n`);
      }
      devices.push({ device, identity });
      continue;
    }
    let identity: CertifiedKey;
    let device: SimulatedDevice;
    if (flags.abm) {
      const { enrollFromSetupAssistant } = await import('../sim/setup-assistant.js');
      const e = await enrollFromSetupAssistant({ activationUrl: flags.abm, serial, udid: `SIM-${serial}` }).catch((err: unknown) => {
        throw new SimulateError(`${serial} could not enroll from Setup Assistant: ${(err as Error).message}`);
      });
      device = e.device;
      identity = certifiedKey(e.enrollment.identity);
      paths.set(device.udid, { topic: e.enrollment.device.topic, checkinPath: e.enrollment.device.checkinPath, connectPath: e.enrollment.device.connectPath });
      save(device, identity);
      const waiting = device.awaitingConfiguration ? ', waiting in Setup Assistant for DeviceConfigured' : '';
      process.stdout.write(`enrolled ${device.udid} (${serial}) from Setup Assistant through ${e.config.ConfigurationURL}${waiting}\n`);
      devices.push({ device, identity });
      continue;
    }
    if (flags.enrollUrl) {
      const { enrollFromProfile } = await import('../sim/scep-enroll.js');
      const e = await enrollFromProfile({ profileUrl: flags.enrollUrl }).catch((err: unknown) => {
        throw new SimulateError(`enrollment through ${flags.enrollUrl} failed: ${(err as Error).message}`);
      });
      identity = certifiedKey(e.identity);
      const where = { topic: e.device.topic, checkinPath: e.device.checkinPath, connectPath: e.device.connectPath };
      paths.set(`SIM-${serial}`, where);
      device = new SimulatedDevice({ serverUrl: flags.server, identity, serialNumber: serial, udid: `SIM-${serial}`, ...where });
    } else {
      identity = createDeviceIdentity(ca!, serial);
      device = new SimulatedDevice({ serverUrl: flags.server, identity, serialNumber: serial, udid: `SIM-${serial}` });
    }
    await enroll(device, flags.stateDir);
    save(device, identity);
    process.stdout.write(`enrolled ${device.udid} (${serial})\n`);
    devices.push({ device, identity });
  }
  // The loop below syncs DDM itself, to print what each sync fetched.
  for (const { device } of devices) device.ddmAutoSync = false;
  for (;;) {
    for (const { device, identity } of devices) {
      const handled = await device.connect().catch((err: unknown) => {
        if (!(err instanceof SimRefusedError) || err.status !== 403) throw err;
        throw new SimulateError(
          `the server does not accept ${device.udid} (${device.serialNumber}) as enrolled (${err.message}); it may have lost its data: run again with --reenroll, or use a new --state-dir`,
        );
      });
      for (const h of handled) process.stdout.write(`${device.udid} ${h.requestType} ${h.commandUUID} -> ${h.status}\n`);
      if (handled.some((h) => h.requestType === 'DeclarativeManagement' && h.status === 'Acknowledged')) {
        const r = await device.ddm.sync();
        const list = (ids: string[]) => (ids.length ? ids.join(', ') : 'none');
        process.stdout.write(
          r.changed
            ? `${device.udid} DDM sync: fetched ${list(r.fetched)}; removed ${list(r.removed)}\n`
            : `${device.udid} DDM sync: no change (DeclarationsToken ${device.ddm.tokens.get('')})\n`,
        );
      }
      if (handled.some((h) => h.requestType === 'DeviceConfigured' && h.status === 'Acknowledged'))
        process.stdout.write(`${device.udid} released from Setup Assistant (DeviceConfigured) with ${device.configuredWith?.length ?? 0} profile(s)\n`);
      if (handled.length) save(device, identity);
    }
    if (flags.once) return;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
