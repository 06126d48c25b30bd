/** `orchard simulate`: enroll simulated devices against a running server and keep them checking in. */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCA, createDeviceIdentity, loadCertifiedKey, type CertifiedKey } from '../identity/ca.js';
import { SimulatedDevice } from '../sim/device.js';

export interface SimulateFlags {
  server: string;
  caDir: string;
  count: string;
  interval: string;
  once?: boolean;
  prefix: string;
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

export async function simulate(flags: SimulateFlags): Promise<void> {
  const ca = loadOrCreateCA(flags.caDir);
  const count = Number(flags.count);
  const intervalMs = Number(flags.interval) * 1000;
  const key = createDeviceIdentity(ca, 'simulator-key').key;
  const devices = Array.from({ length: count }, (_, i) => {
    const serial = `${flags.prefix}${String(i).padStart(6, '0')}`;
    return new SimulatedDevice({ serverUrl: flags.server, identity: createDeviceIdentity(ca, serial, { key }), serialNumber: serial, udid: `SIM-${serial}` });
  });
  for (const d of devices) {
    await d.enroll();
    process.stdout.write(`enrolled ${d.udid} (${d.serialNumber})\n`);
  }
  for (;;) {
    for (const d of devices) {
      const handled = await d.connect();
      for (const h of handled) process.stdout.write(`${d.udid} ${h.requestType} ${h.commandUUID} -> ${h.status}\n`);
    }
    if (flags.once) return;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
