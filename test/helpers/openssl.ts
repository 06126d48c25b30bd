/** The openssl CLI as an independent peer: certificates and CMS signatures made without our code. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function openssl(args: string[], input?: Buffer): Buffer {
  return execFileSync('openssl', args, { input, stdio: ['pipe', 'pipe', 'pipe'] });
}

export interface OpensslPki {
  dir: string;
  caCert: string;
  caKey: string;
  /** Issue a device certificate signed by this CA; returns the cert and key paths. */
  issue(cn: string, days?: number): { cert: string; key: string };
}

export function opensslPki(name = 'OpenSSL Test CA'): OpensslPki {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-openssl-'));
  const caKey = join(dir, 'ca.key');
  const caCert = join(dir, 'ca.pem');
  openssl([
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    caKey,
    '-out',
    caCert,
    '-days',
    '30',
    '-subj',
    `/O=Orchard Tests/CN=${name}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  let n = 0;
  return {
    dir,
    caCert,
    caKey,
    issue(cn: string, days = 30) {
      const base = join(dir, `dev${++n}`);
      openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/CN=${cn}`]);
      writeFileSync(`${base}.ext`, 'keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n');
      openssl([
        'x509',
        '-req',
        '-in',
        `${base}.csr`,
        '-CA',
        caCert,
        '-CAkey',
        caKey,
        '-CAcreateserial',
        '-days',
        String(days),
        '-out',
        `${base}.pem`,
        '-extfile',
        `${base}.ext`,
      ]);
      return { cert: `${base}.pem`, key: `${base}.key` };
    },
  };
}

/** `openssl cms -sign` a body, detached, DER; returns the Mdm-Signature header value. */
export function opensslSign(body: Buffer, cert: string, key: string, mode: 'sha1-noattr' | 'sha256-attr'): string {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-sig-'));
  const inFile = join(dir, 'body');
  writeFileSync(inFile, body);
  const args = ['cms', '-sign', '-binary', '-in', inFile, '-signer', cert, '-inkey', key, '-outform', 'DER'];
  if (mode === 'sha1-noattr') args.push('-noattr', '-md', 'sha1');
  else args.push('-md', 'sha256');
  return openssl(args).toString('base64');
}

export function pemToDer(path: string): Buffer {
  const pem = readFileSync(path, 'utf8');
  return Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
}
