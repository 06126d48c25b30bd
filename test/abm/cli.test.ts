import { afterEach, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { serverTokenText } from '../../src/abm/token.js';
import { CLI } from '../helpers/process.js';
import { openssl } from '../helpers/openssl.js';
import { DepStandin } from '../../src/sim/dep.js';

const run = promisify(execFile);
const dirs: string[] = [];
const standins: DepStandin[] = [];
afterEach(async () => {
  await Promise.all(standins.splice(0).map((s) => s.stop()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function orchard(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [CLI, ...args]);
    return { code: 0, ...r };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('orchard abm (as a process)', () => {
  it('keypair, then token import of a token openssl encrypted to it: organisation, server name and expiry shown, secrets not', async () => {
    const d = mkdtempSync(join(tmpdir(), 'orchard-abm-cli-'));
    dirs.push(d);
    const creds = { consumerKey: 'CK_cli', consumerSecret: 'CS_never_printed', accessToken: 'AT_cli', accessSecret: 'AS_never_printed' };
    const s = await new DepStandin({ credentials: creds, serverName: 'Orchard Staging', orgName: 'Acme Schools' }).start();
    standins.push(s);

    const kp = await orchard(['abm', 'keypair', '--data-dir', d]);
    expect(kp.code).toBe(0);
    expect(kp.stdout).toMatch(/upload .*keypair\.pem to ABM/);

    const soon = new Date(Date.now() + 10 * 86_400_000);
    writeFileSync(join(d, 'token.txt'), serverTokenText({ ...creds, accessTokenExpiry: soon }));
    writeFileSync(join(d, 'token.p7m'), openssl(['smime', '-encrypt', '-aes256', '-in', join(d, 'token.txt'), join(d, 'abm', 'keypair.pem')]));
    const imp = await orchard(['abm', 'token', 'import', join(d, 'token.p7m'), '--name', 'acme', '--data-dir', d, '--dep-url', s.url]);
    expect(imp.code).toBe(0);
    expect(imp.stdout).toMatch(/imported ABM server token "acme"/);
    expect(imp.stdout).toMatch(/organisation: Acme Schools/);
    expect(imp.stdout).toMatch(/server name: {2}Orchard Staging/);
    expect(imp.stderr).toMatch(/expires in \d+ days/);
    expect(imp.stdout + imp.stderr).not.toMatch(/never_printed/);

    const list = await orchard(['abm', 'token', 'list', '--data-dir', d]);
    expect(list.stdout).toMatch(/^acme$/m);
    expect(list.stderr).toMatch(/warning: token "acme" expires in/);

    const bad = await orchard(['abm', 'token', 'import', join(d, 'token.txt'), '--data-dir', d, '--offline']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/orchard abm token import: /);
    expect(bad.stderr).not.toMatch(/never_printed/);
  });
});
