/** The openssl CLI as the independent peer for identity tests: certificates and CMS made without our code. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function openssl(args: string[], cwd?: string): Buffer {
  return execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
}

export function tempDir(): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-identity-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function pemFileToDer(path: string): Buffer {
  const m = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/.exec(readFileSync(path, 'utf8'));
  if (!m) throw new Error(`no certificate in ${path}`);
  return Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
}

export interface OpensslCa {
  cert: string;
  key: string;
}

/** Self-signed RSA CA made by `openssl req -x509`. */
export function opensslCa(dir: string, name: string): OpensslCa {
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}.key`);
  openssl([
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    key,
    '-out',
    cert,
    '-days',
    '30',
    '-subj',
    `/O=Orchard Tests/CN=${name}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  return { cert, key };
}

/**
 * A device certificate signed by `ca` with `openssl x509 -req`.
 * `v1`: no extensions (an X.509 v1 certificate); otherwise v3 with SKI/AKI and clientAuth.
 */
export function opensslDevice(dir: string, ca: OpensslCa, cn: string, opts: { ec?: boolean; v1?: boolean } = {}): { cert: string; key: string } {
  const base = join(dir, cn);
  const newkey = opts.ec ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'] : ['-newkey', 'rsa:2048'];
  openssl(['req', ...newkey, '-nodes', '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/CN=${cn}`]);
  const args = [
    'x509',
    '-req',
    '-in',
    `${base}.csr`,
    '-CA',
    ca.cert,
    '-CAkey',
    ca.key,
    '-set_serial',
    String(Date.now()),
    '-days',
    '30',
    '-out',
    `${base}.pem`,
  ];
  if (!opts.v1) {
    writeFileSync(
      `${base}.ext`,
      'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n' +
        'extendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n',
    );
    args.push('-extfile', `${base}.ext`);
  }
  openssl(args);
  return { cert: `${base}.pem`, key: `${base}.key` };
}

/** `openssl cms -sign` over `body`; returns the DER SignedData. */
export function opensslCmsSign(dir: string, body: Buffer, signer: { cert: string; key: string }, extra: string[]): Buffer {
  const inFile = join(dir, 'cms-body');
  const outFile = join(dir, 'cms-out.der');
  writeFileSync(inFile, body);
  openssl(['cms', '-sign', '-binary', '-in', inFile, '-signer', signer.cert, '-inkey', signer.key, '-outform', 'DER', '-out', outFile, ...extra]);
  return readFileSync(outFile);
}

/** `openssl cms -verify` of a detached DER SignedData against `body`, trusting `caFile`; true when it verifies. */
export function opensslCmsVerify(dir: string, der: Buffer, body: Buffer, caFile: string): boolean {
  const sigFile = join(dir, 'verify-sig.der');
  const bodyFile = join(dir, 'verify-body');
  writeFileSync(sigFile, der);
  writeFileSync(bodyFile, body);
  try {
    openssl([
      'cms',
      '-verify',
      '-binary',
      '-inform',
      'DER',
      '-in',
      sigFile,
      '-content',
      bodyFile,
      '-CAfile',
      caFile,
      '-purpose',
      'any',
      '-out',
      join(dir, 'verify-out'),
    ]);
    return true;
  } catch {
    return false;
  }
}

/**
 * Offset of the content octets of the SignerInfo signature (the last OCTET STRING when there
 * are no unsigned attributes), located by `openssl asn1parse`, so tests can flip a byte in it.
 */
export function signatureValueOffset(dir: string, der: Buffer): number {
  const file = join(dir, 'asn1parse.der');
  writeFileSync(file, der);
  const out = openssl(['asn1parse', '-inform', 'DER', '-in', file]).toString();
  const re = new RegExp(String.raw`^\s*(\d+):d=\d+\s+hl=(\d+)\s+l=\s*\d+ prim:\s+OCTET STRING`, 'gm');
  const hits = [...out.matchAll(re)];
  const last = hits[hits.length - 1];
  if (!last) throw new Error('no signature OCTET STRING found');
  return Number(last[1]) + Number(last[2]);
}
