/**
 * DDM sync benchmark: N simulated devices against a real `orchard serve` child process that
 * follows a fleet directory with declarations. Phases: the command round that tells each device
 * (Idle -> DeclarativeManagement, Acknowledged -> empty), the sync (tokens, declaration-items,
 * every declaration, status), and the steady state (tokens unchanged, status). Devices speak
 * through the client-certificate header (as behind a TLS proxy), so the figures are the server's
 * DDM cost without CMS verification (see the protocol benchmark for that).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCA, createDeviceIdentity } from '../src/identity/ca.js';
import { SimulatedDevice } from '../src/sim/device.js';
import { phase, procRssMb, startBenchServer, type PhaseResult } from './protocol.js';

export interface DdmBenchOptions {
  devices: number;
  concurrency: number;
  /** Declarations written in the repository (Orchard adds an activation and the status subscriptions). */
  declarations: number;
}

export interface DdmBenchResult {
  devices: number;
  concurrency: number;
  declarationsPerDevice: number;
  phases: PhaseResult[];
  serverRssMb: number;
}

const HEADER = 'x-client-cert';

const passcode = (i: number, min: number) =>
  `apiVersion: orchard/v1\nkind: Declaration\nmetadata: {name: passcode-${i}}\nspec:\n  Type: com.apple.configuration.passcode.settings\n  Identifier: com.example.passcode.${i}\n  Payload:\n    MinimumLength: ${min}\n    RequireAlphanumericPasscode: true\n    MaximumFailedAttempts: 10\n`;

function fleet(dir: string, n: number): void {
  mkdirSync(join(dir, 'declarations'), { recursive: true });
  const names: string[] = [];
  for (let i = 0; i < n; i++) {
    names.push(`passcode-${i}`);
    writeFileSync(join(dir, 'declarations', `passcode-${i}.yaml`), passcode(i, 6 + i));
  }
  writeFileSync(
    join(dir, 'blueprint.yaml'),
    `apiVersion: orchard/v1\nkind: Blueprint\nmetadata: {name: macs}\nspec:\n  selector: {platforms: [macOS]}\n  declarations: [${names.join(', ')}]\n`,
  );
}

export async function benchDdm(opts: DdmBenchOptions): Promise<DdmBenchResult> {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-bench-ddm-'));
  const ca = createCA({ commonName: 'Bench CA' });
  writeFileSync(join(dir, 'ca.pem'), ca.certPem);
  fleet(join(dir, 'fleet'), opts.declarations);
  const server = await startBenchServer(dir, join(dir, 'ca.pem'), [
    '--repo',
    join(dir, 'fleet'),
    '--cert-header',
    HEADER,
    '--drift-interval',
    '0',
    '--poll-interval',
    '0',
  ]);
  try {
    const pid = server.pid;
    const agent = new Agent({ keepAlive: true, maxSockets: opts.concurrency });
    const key = createDeviceIdentity(ca, 'bench-key').key;
    const devices = Array.from({ length: opts.devices }, (_, i) => {
      const d = new SimulatedDevice({
        serverUrl: server.url,
        identity: createDeviceIdentity(ca, `ddm-${i}`, { key }),
        agent,
        serialNumber: `DDM${String(i).padStart(7, '0')}`,
        signing: { mode: 'header', header: HEADER, format: 'rfc9440' },
      });
      d.ddmAutoSync = false;
      return d;
    });
    const phases: PhaseResult[] = [];
    const run = (name: string, job: (d: SimulatedDevice) => Promise<number>) =>
      phase(
        name,
        pid,
        opts.concurrency,
        devices.map((d) => () => job(d)),
      );
    await run('enroll (Authenticate + TokenUpdate)', async (d) => {
      await d.enroll();
      return 2;
    });
    // Enrollment queues ProfileList + DeviceInformation; the answer to DeviceInformation
    // reconciles the device, which queues its DeclarativeManagement command.
    const untilTold = async (d: SimulatedDevice): Promise<number> => {
      let requests = 0;
      for (let i = 0; i < 300; i++) {
        const handled = await d.connect();
        requests += handled.length + 1;
        if (handled.some((c) => c.requestType === 'DeclarativeManagement')) return requests;
        await new Promise((r) => setTimeout(r, 200)); // its reconcile is still running
      }
      throw new Error(`${d.udid}: no DeclarativeManagement command`);
    };
    await run('inventory and the first DeclarativeManagement', untilTold);
    const perDevice = opts.declarations + 2;
    phases.push(
      await run(`first DDM sync (tokens, items, ${perDevice} declarations, status)`, async (d) => {
        const r = await d.ddm.sync();
        if (r.fetched.length !== perDevice) throw new Error(`${d.udid}: fetched ${r.fetched.length} declarations, expected ${perDevice}`);
        return 3 + r.fetched.length;
      }),
    );
    // Next to it, a plain command round: one ProfileList for every device (one API call).
    const res = await fetch(`${server.url}/api/v1/commands`, {
      method: 'POST',
      headers: { authorization: 'Bearer bench-token', 'content-type': 'application/json' },
      body: JSON.stringify({ targets: devices.map((d) => d.udid), command: { RequestType: 'ProfileList' } }),
    });
    if (res.status !== 201) throw new Error(`enqueue failed: ${res.status} ${await res.text()}`);
    phases.push(
      await run('command round (Idle -> ProfileList, Acknowledged -> empty)', async (d) => {
        const handled = await d.connect();
        if (handled.length !== 1) throw new Error(`${d.udid}: expected one command, got ${handled.length}`);
        return 2;
      }),
    );
    phases.push(
      await run('DDM sync, nothing changed (tokens, status)', async (d) => {
        const r = await d.ddm.sync();
        if (r.changed) throw new Error(`${d.udid}: tokens changed`);
        return 2;
      }),
    );
    const rss = procRssMb(pid);
    agent.destroy();
    return { devices: opts.devices, concurrency: opts.concurrency, declarationsPerDevice: perDevice, phases, serverRssMb: rss };
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
