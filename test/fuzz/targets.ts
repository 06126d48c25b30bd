/**
 * The parsers of untrusted input as fuzz targets, each with seeds made by independent peers:
 * real device captures, `openssl` (cms -sign, cms -encrypt, req, x509) and micromdm's
 * `scepclient`. Setup runs those tools once; the targets are then pure functions of the input.
 */
import { spawn } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import * as fc from 'fast-check';
import { ScepAuthority, ScepMalformed } from '../../src/enroll/authority.js';
import { EnvelopeError, openEnvelope, sealEnvelope } from '../../src/asn1/enveloped-data.js';
import { CsrError, parseCsr, selfSignedCertificate } from '../../src/asn1/csr.js';
import { buildRequest } from '../../src/enroll/scep.js';
import { toPem } from '../../src/asn1/pem.js';
import { loadCertifiedKey, type CertifiedKey } from '../../src/identity/ca.js';
import { parseClientCertHeader } from '../../src/identity/cert-header.js';
import { verifyDetachedSignature } from '../../src/identity/cms.js';
import { IdentityError } from '../../src/identity/errors.js';
import { TrustStore } from '../../src/identity/trust.js';
import { openssl, opensslCa, opensslCmsSign, opensslDevice, pemFileToDer, tempDir, type OpensslCa } from '../identity/openssl.js';
import { mutations, textMutations, VECTORS, type FuzzTarget, type Mutated } from './harness.js';

const CHALLENGE = 'fuzz-challenge';

/** An openssl CA signed by `parent`: what a fleet with an intermediate CA looks like. */
function opensslIntermediate(dir: string, parent: OpensslCa, name: string): OpensslCa {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.pem`);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n');
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr, '-subj', `/O=Orchard Tests/CN=${name}`]);
  openssl(['x509', '-req', '-in', csr, '-CA', parent.cert, '-CAkey', parent.key, '-set_serial', '7', '-days', '30', '-out', cert, '-extfile', ext]);
  return { cert, key };
}

/** An openssl CSR (DER) with a challenge password; `ec` for a P-256 key. */
function opensslCsr(dir: string, name: string, ec: boolean): { der: Buffer; key: string } {
  const conf = join(dir, `${name}.cnf`);
  const key = join(dir, `${name}.key`);
  writeFileSync(
    conf,
    `[req]\ndistinguished_name=dn\nattributes=attrs\nprompt=no\n[dn]\nC=US\nO=Orchard Tests\nOU=Fuzz\nCN=${name}\n[attrs]\nchallengePassword=${CHALLENGE}\n`,
  );
  const newkey = ec ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'] : ['-newkey', 'rsa:2048'];
  return { der: openssl(['req', '-new', ...newkey, '-nodes', '-keyout', key, '-config', conf, '-outform', 'DER']), key };
}

/**
 * The PKCSReq that Debian's scepclient sends to a server whose CA is `ca`: a stand-in server
 * answers GetCACaps and GetCACert, keeps the PKIOperation body and refuses it.
 */
async function scepclientRequest(dir: string, ca: CertifiedKey): Promise<Buffer> {
  let captured: Buffer | undefined;
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const op = url.searchParams.get('operation');
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (op === 'GetCACaps') res.end('POSTPKIOperation\nSHA-256\nAES\nSCEPStandard\n');
      else if (op === 'GetCACert') res.writeHead(200, { 'content-type': 'application/x-x509-ca-cert' }).end(ca.certDer);
      else {
        captured = op === 'PKIOperation' && req.method === 'GET' ? Buffer.from(url.searchParams.get('message') ?? '', 'base64') : Buffer.concat(chunks);
        res.writeHead(400).end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  try {
    await new Promise<void>((resolve, reject) => {
      const child = spawn(
        'scepclient',
        [
          '-server-url',
          `http://127.0.0.1:${port}/scep`,
          '-private-key',
          join(dir, 'scepclient.key'),
          '-challenge',
          CHALLENGE,
          '-cn',
          'scepclient fuzz seed',
          '-keySize',
          '2048',
        ],
        { stdio: 'ignore' },
      );
      child.on('error', reject);
      child.on('close', () => resolve());
    });
  } finally {
    server.close();
  }
  if (!captured || captured.length === 0) throw new Error('scepclient sent no PKIOperation');
  return captured;
}

const fromSeeds = <T>(seeds: Buffer[], render: (m: Mutated) => T): fc.Arbitrary<T> => mutations(seeds).map(render);

export interface Targets {
  scepSigned: FuzzTarget<Buffer>;
  cms: FuzzTarget<{ header: string; body: Buffer }>;
  certHeader: FuzzTarget<string>;
  trust: FuzzTarget<{ leaf: Buffer; chain: Buffer[] }>;
  scep: FuzzTarget<Buffer>;
  envelope: FuzzTarget<Buffer>;
  pkcs10: FuzzTarget<Buffer>;
  cleanup(): void;
}

export type TargetName = Exclude<keyof Targets, 'cleanup'>;
export const TARGET_NAMES: TargetName[] = ['cms', 'certHeader', 'trust', 'scep', 'scepSigned', 'envelope', 'pkcs10'];

/** Make the seeds (openssl, scepclient) for the targets named, and the targets. */
export async function makeTargets(only: readonly TargetName[] = TARGET_NAMES): Promise<Partial<Targets> & { cleanup(): void }> {
  const tmp = tempDir();
  const out: Partial<Targets> & { cleanup(): void } = { cleanup: tmp.cleanup };
  const want = (n: TargetName) => only.includes(n);
  const root = opensslCa(tmp.dir, 'Fuzz Root CA');
  const rsa = opensslDevice(tmp.dir, root, 'fuzz-rsa');

  if (want('cms')) {
    // A real device header (BER indefinite lengths, SHA-1, no signed attributes), and openssl's
    // both ways: SHA-1 without attributes like a device, SHA-256 with; RSA and ECDSA.
    const ec = opensslDevice(tmp.dir, root, 'fuzz-ec', { ec: true });
    const body2 = readFileSync(join(VECTORS(), 'mdm-signature/body2.plist'));
    const body = Buffer.from('<?xml version="1.0"?><plist version="1.0"><dict><key>MessageType</key><string>Authenticate</string></dict></plist>');
    const seeds = [
      Buffer.from(readFileSync(join(VECTORS(), 'mdm-signature/header2.b64'), 'utf8').trim(), 'base64'),
      opensslCmsSign(tmp.dir, body, rsa, ['-noattr', '-md', 'sha1']),
      opensslCmsSign(tmp.dir, body, rsa, ['-md', 'sha256']),
      opensslCmsSign(tmp.dir, body, ec, ['-md', 'sha256']),
    ];
    const bodies = [body2, body, body, body];
    const headers = seeds.map((s) => s.toString('base64'));
    out.cms = {
      name: 'Mdm-Signature (verifyDetachedSignature)',
      input: fc.oneof(
        { weight: 18, arbitrary: fromSeeds(seeds, (m) => ({ header: m.bytes.toString('base64'), body: bodies[m.seed] ?? body })) },
        { weight: 1, arbitrary: textMutations(fc.constantFrom(...headers)).map((header) => ({ header, body: body2 })) },
        { weight: 1, arbitrary: fc.string({ maxLength: 12 }).map((header) => ({ header, body })) },
      ),
      seeds: headers.map((header, i) => ({ header, body: bodies[i]! })),
      run: ({ header, body: b }) => verifyDetachedSignature(header, b),
      typed: [IdentityError],
    };
  }

  if (want('certHeader')) {
    const ec = opensslDevice(tmp.dir, root, 'fuzz-hdr-ec', { ec: true });
    const seeds = [pemFileToDer(rsa.cert), pemFileToDer(ec.cert), pemFileToDer(join(VECTORS(), 'apple-certs/appleca_signed.pem'))];
    // How proxies send it: RFC 9440, nginx's $ssl_client_escaped_cert, PEM folded to one line, bare.
    const forms = [
      (der: Buffer) => `:${der.toString('base64')}:`,
      (der: Buffer) => encodeURIComponent(toPem(der)),
      (der: Buffer) => toPem(der).replace(/\n/g, ' '),
      (der: Buffer) => der.toString('base64'),
    ];
    const rendered = fc.tuple(mutations(seeds), fc.nat({ max: forms.length - 1 })).map(([m, f]) => forms[f]!(m.bytes));
    const exact = seeds.flatMap((s) => forms.map((f) => f(s)));
    out.certHeader = {
      name: 'client certificate header (parseClientCertHeader)',
      input: fc.oneof({ weight: 17, arbitrary: rendered }, { weight: 3, arbitrary: textMutations(fc.constantFrom(...exact)) }),
      seeds: exact,
      run: (v) => parseClientCertHeader(v),
      typed: [IdentityError],
    };
  }

  if (want('trust')) {
    const inter = opensslIntermediate(tmp.dir, root, 'Fuzz Intermediate CA');
    const leaf = opensslDevice(tmp.dir, inter, 'fuzz-chained');
    const rootPem = readFileSync(root.cert, 'utf8');
    const leafDer = pemFileToDer(leaf.cert);
    const interDer = pemFileToDer(inter.cert);
    const apple = pemFileToDer(join(VECTORS(), 'apple-certs/appleca_signed.pem'));
    // The mutated certificate plays the leaf or the intermediate of a chain to a trusted root.
    out.trust = {
      name: 'certificate chain (TrustStore.check)',
      input: fc
        .tuple(mutations([leafDer, interDer, apple]), fc.boolean())
        .map(([m, asLeaf]) => (asLeaf ? { leaf: m.bytes, chain: [interDer] } : { leaf: leafDer, chain: [m.bytes, apple] })),
      seeds: [
        { leaf: leafDer, chain: [interDer] },
        { leaf: leafDer, chain: [interDer, apple] },
      ],
      // A new store each time: a cached chain would skip parsing the mutated intermediate.
      run: ({ leaf: l, chain }) => new TrustStore([rootPem]).check(l, chain),
      typed: [IdentityError],
    };
  }

  if (want('scep') || want('scepSigned') || want('envelope') || want('pkcs10')) {
    const caFiles = opensslCa(tmp.dir, 'Fuzz SCEP CA');
    const ca = loadCertifiedKey(readFileSync(caFiles.cert, 'utf8'), readFileSync(caFiles.key, 'utf8'));
    const rsaCsr = opensslCsr(tmp.dir, 'fuzz-csr-rsa', false);
    const ecCsr = opensslCsr(tmp.dir, 'fuzz-csr-ec', true);
    const csrKey = createPrivateKey(readFileSync(rsaCsr.key));
    const signer = { certDer: selfSignedCertificate(csrKey, [['CN', 'fuzz-csr-rsa']]), key: csrKey };

    if (want('pkcs10')) {
      out.pkcs10 = {
        name: 'PKCS#10 (parseCsr)',
        input: mutations([rsaCsr.der, ecCsr.der]).map((m) => m.bytes),
        seeds: [rsaCsr.der, ecCsr.der],
        run: (der) => parseCsr(der),
        typed: [CsrError],
      };
    }

    if (want('envelope')) {
      const plainFile = join(tmp.dir, 'csr.der');
      writeFileSync(plainFile, rsaCsr.der);
      const seeds = [
        sealEnvelope(rsaCsr.der, ca.certDer, 'aes-128-cbc'),
        openssl(['cms', '-encrypt', '-binary', '-in', plainFile, '-outform', 'DER', '-aes256', caFiles.cert]),
        openssl(['cms', '-encrypt', '-binary', '-in', plainFile, '-outform', 'DER', '-des3', caFiles.cert]),
      ];
      out.envelope = {
        name: 'EnvelopedData (openEnvelope)',
        input: mutations(seeds).map((m) => m.bytes),
        seeds,
        run: (der) => openEnvelope(der, ca),
        typed: [EnvelopeError],
      };
    }

    if (want('scepSigned')) {
      // Mutated CSRs in requests that are encrypted and signed properly: what gets past the
      // signature and the envelope, to CSR parsing and issuance (slow: three RSA operations each).
      const authority = new ScepAuthority({ ca, challenges: { consume: (c) => (c === CHALLENGE ? 'static' : undefined) } });
      const request = (csr: Buffer) => buildRequest({ messageType: 'PKCSReq', csr, signer, recipient: ca.certDer }).der;
      out.scepSigned = {
        name: 'SCEP PKCSReq with a mutated CSR, signed (ScepAuthority.pkiOperation)',
        input: mutations([rsaCsr.der, ecCsr.der]).map((m) => m.bytes),
        seeds: [rsaCsr.der, ecCsr.der],
        run: (csr) => {
          const r = authority.pkiOperation(request(csr));
          if (!/^PKCSReq (\(retry\) )?(SUCCESS|FAILURE badRequest)/.test(r.outcome)) throw new Error(`unexpected outcome ${r.outcome}`);
          return r;
        },
        typed: [],
      };
    }

    if (want('scep')) {
      // A static challenge, so that every request that survives its mutations is issued for.
      const authority = new ScepAuthority({ ca, challenges: { consume: (c) => (c === CHALLENGE ? 'static' : undefined) } });
      const seeds = [
        readFileSync(join(VECTORS(), 'scep/PKCSReq.der')),
        await scepclientRequest(tmp.dir, ca),
        buildRequest({ messageType: 'PKCSReq', csr: rsaCsr.der, signer, recipient: ca.certDer, cipher: 'des-ede3-cbc', digest: 'sha1' }).der,
        buildRequest({ messageType: 'PKCSReq', csr: ecCsr.der, signer, recipient: ca.certDer }).der,
      ];
      out.scep = {
        name: 'SCEP PKIOperation (ScepAuthority.pkiOperation)',
        input: mutations(seeds).map((m) => m.bytes),
        seeds,
        run: (der) => authority.pkiOperation(der),
        typed: [ScepMalformed],
      };
    }
  }
  return out;
}
