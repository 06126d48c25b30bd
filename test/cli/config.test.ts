import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseDuration, parseListen } from '../../src/config.js';

const dir = mkdtempSync(join(tmpdir(), 'orchard-config-'));
function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

describe('server config', () => {
  it('reads the file, resolves its paths relative to it, and lets flags win', () => {
    const cfg = file('a.yaml', 'listen: 0.0.0.0:9000\ndataDir: ./state\ntrustCa: [ca1.pem, /abs/ca2.pem]\nretention: 2d\n');
    const c = loadConfig({ config: cfg });
    expect(c.listen).toEqual({ host: '0.0.0.0', port: 9000 });
    expect(c.dataDir).toBe(join(dir, 'state'));
    expect(c.trustCa).toEqual([join(dir, 'ca1.pem'), '/abs/ca2.pem']);
    expect(c.retentionMs).toBe(2 * 86400e3);
    const f = loadConfig({ config: cfg, listen: '127.0.0.1:7000', trustCa: ['x.pem'] });
    expect(f.listen.port).toBe(7000);
    expect(f.trustCa).toEqual([join(process.cwd(), 'x.pem')]);
  });

  it('names the file and line of an unknown setting or broken YAML', () => {
    const typo = file('b.yaml', 'listen: 127.0.0.1:1\n\ndatadir: x\n');
    expect(() => loadConfig({ config: typo })).toThrow(/b\.yaml:3: unknown setting "datadir"/);
    const broken = file('c.yaml', 'listen: [\n');
    expect(() => loadConfig({ config: broken })).toThrow(ConfigError);
    expect(() => loadConfig({ config: join(dir, 'missing.yaml') })).toThrow(/cannot read config/);
  });

  it('parses listen addresses and durations, refusing nonsense', () => {
    expect(parseListen('[::1]:8443')).toEqual({ host: '::1', port: 8443 });
    expect(parseListen(':8080')).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(() => parseListen('localhost')).toThrow(ConfigError);
    expect(() => parseListen('a:99999')).toThrow(ConfigError);
    expect(parseDuration('90m', 'x')).toBe(90 * 60e3);
    expect(() => parseDuration('soon', 'retention')).toThrow(/retention/);
    expect(() => loadConfig({ tlsCert: 'a.pem' })).toThrow(/go together/);
  });
});
