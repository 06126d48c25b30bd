/**
 * Validation benchmark: a generated fleet of 1,000 profiles (five payload types, variables,
 * secrets) and 100 blueprints, validated by `orchard validate` as CI runs it (a fresh process)
 * and by loadFleet in-process (warm).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadFleet } from '../src/gitops/load.js';

const PAYLOADS = [
  (i: number) => `    - type: com.apple.mobiledevice.passwordpolicy\n      keys: {minLength: ${6 + (i % 8)}, requireAlphanumeric: true, maxInactivity: 5}\n`,
  (i: number) =>
    `    - type: com.apple.wifi.managed\n      keys:\n        SSID_STR: net-${i}-\${device.SerialNumber}\n        EncryptionType: WPA2\n        Password: \${secret:psk-${i % 10}}\n        AutoJoin: true\n`,
  () => `    - type: com.apple.applicationaccess\n      keys: {allowAirDrop: false, allowCamera: true}\n`,
  () => `    - type: com.apple.SoftwareUpdate\n      keys: {AutomaticCheckEnabled: true, AutomaticDownload: true}\n`,
  () => `    - type: com.apple.security.firewall\n      keys: {EnableFirewall: true, EnableStealthMode: true}\n`,
];

export function generateFleet(dir: string, profiles: number, blueprints: number): void {
  mkdirSync(join(dir, 'profiles'), { recursive: true });
  mkdirSync(join(dir, 'blueprints'), { recursive: true });
  for (let i = 0; i < profiles; i++) {
    const payloads = [PAYLOADS[i % 5]!(i), PAYLOADS[(i + 2) % 5]!(i), PAYLOADS[(i + 4) % 5]!(i)].join('');
    writeFileSync(
      join(dir, 'profiles', `p${i}.yaml`),
      `apiVersion: orchard/v1\nkind: Profile\nmetadata:\n  name: p${i}\nspec:\n  identifier: com.example.bench.p${i}\n  displayName: Profile ${i}\n  payloads:\n${payloads}`,
    );
  }
  writeFileSync(
    join(dir, 'secrets.yaml'),
    Array.from({ length: 10 }, (_, i) => `apiVersion: orchard/v1\nkind: Secret\nmetadata: {name: psk-${i}}\nspec: {}\n`).join('---\n'),
  );
  const per = Math.ceil(profiles / blueprints);
  for (let b = 0; b < blueprints; b++) {
    const names = Array.from({ length: per }, (_, k) => `p${b * per + k}`).filter((_, k) => b * per + k < profiles);
    writeFileSync(
      join(dir, 'blueprints', `b${b}.yaml`),
      `apiVersion: orchard/v1\nkind: Blueprint\nmetadata:\n  name: b${b}\nspec:\n  selector:\n    platforms: [macOS]\n    tags: [team-${b}]\n    osVersion: ">=14.0 <16"\n  profiles: [${names.join(', ')}]\n`,
    );
  }
  writeFileSync(
    join(dir, 'groups.yaml'),
    `apiVersion: orchard/v1\nkind: DeviceGroup\nmetadata: {name: all}\nspec:\n  devices:\n${Array.from({ length: 1000 }, (_, i) => `    - {serial: C02BENCH${String(i).padStart(4, '0')}, tags: [team-${i % blueprints}]}`).join('\n')}\n`,
  );
}

export async function benchValidate(): Promise<{ cliMs: number; warmMs: number; profiles: number; blueprints: number; errors: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-bench-fleet-'));
  try {
    generateFleet(dir, 1000, 100);
    const cli = join(import.meta.dirname, '../src/cli/main.js');
    const t0 = performance.now();
    execFileSync(process.execPath, [cli, 'validate', dir], { stdio: 'pipe' });
    const cliMs = performance.now() - t0;
    await loadFleet(dir);
    const t1 = performance.now();
    const r = await loadFleet(dir);
    const warmMs = performance.now() - t1;
    return {
      cliMs,
      warmMs,
      profiles: r.fleet?.profiles.size ?? 0,
      blueprints: r.fleet?.blueprints.size ?? 0,
      errors: r.diagnostics.filter((d) => d.severity === 'error').length,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
