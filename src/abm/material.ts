/**
 * The MDM server's ABM material under `<dataDir>/abm/`: the key pair whose public certificate is
 * uploaded to ABM (`keypair.key`, mode 0600, and `keypair.pem`), and the server tokens ABM returns,
 * decrypted with that key (`tokens/<name>.json`, mode 0600: they hold OAuth secrets). Several
 * tokens may coexist (one per ABM MDM server entry).
 */
import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildCertificate, encodeName, randomSerial } from '../asn1/certificate.js';
import { decryptSmime } from '../asn1/enveloped-data.js';
import { pemToDer, toPem } from '../asn1/pem.js';
import { Conflict, Malformed, NotFound } from '../errors.js';
import { writeAtomic } from '../util/files.js';
import { parseServerToken, type ServerToken } from './token.js';

export interface AbmKeypair {
  key: KeyObject;
  certDer: Buffer;
  certFile: string;
  keyFile: string;
}

export interface StoredToken extends ServerToken {
  name: string;
  importedAt: Date;
}

const NAME = /^[A-Za-z0-9._-]{1,64}$/;

function dirs(dataDir: string) {
  const dir = join(dataDir, 'abm');
  return { dir, keyFile: join(dir, 'keypair.key'), certFile: join(dir, 'keypair.pem'), tokens: join(dir, 'tokens') };
}

/** Creates the key pair (RSA-2048, as ABM accepts) unless one exists; `force` replaces it (tokens made for the old one stop decrypting). */
export function createKeypair(dataDir: string, opts: { force?: boolean; now?: Date } = {}): AbmKeypair & { created: boolean } {
  const d = dirs(dataDir);
  if (existsSync(d.keyFile) && !opts.force) return { ...readKeypair(dataDir), created: false };
  mkdirSync(d.dir, { recursive: true, mode: 0o700 });
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const now = opts.now ?? new Date();
  const subject = [{ name: 'CN', value: 'Orchard ABM server' }];
  const certDer = buildCertificate({
    serial: randomSerial(),
    issuer: encodeName(subject),
    subject,
    publicKey: privateKey,
    notBefore: new Date(now.getTime() - 3600_000),
    notAfter: new Date(now.getTime() + 5 * 365 * 86_400_000),
    ca: false,
    signingKey: privateKey,
  });
  writeAtomic(d.keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 0o600);
  writeAtomic(d.certFile, toPem(certDer), 0o644);
  return { key: privateKey, certDer, certFile: d.certFile, keyFile: d.keyFile, created: true };
}

export function readKeypair(dataDir: string): AbmKeypair {
  const d = dirs(dataDir);
  if (!existsSync(d.keyFile)) throw new NotFound('no ABM key pair: run `orchard abm keypair` and upload its certificate to ABM first');
  return { key: createPrivateKey(readFileSync(d.keyFile)), certDer: pemToDer(readFileSync(d.certFile)), certFile: d.certFile, keyFile: d.keyFile };
}

/** Decrypts a downloaded `.p7m` with the key pair and stores it as `name`. */
export function importToken(dataDir: string, p7m: Buffer, name: string, opts: { now?: Date; replace?: boolean } = {}): StoredToken {
  if (!NAME.test(name)) throw new Malformed(`token name must be letters, digits, '.', '_' or '-' (1-64): ${JSON.stringify(name.slice(0, 64))}`);
  const kp = readKeypair(dataDir);
  const token = parseServerToken(decryptSmime(p7m, { certDer: kp.certDer, key: kp.key }).toString('utf8'));
  const d = dirs(dataDir);
  const file = join(d.tokens, `${name}.json`);
  if (existsSync(file) && !opts.replace) {
    const old = readToken(file, name);
    if (old.consumerKey !== token.consumerKey) throw new Conflict(`a token named "${name}" exists for another ABM server: pick another name, or --replace`);
  }
  mkdirSync(d.tokens, { recursive: true, mode: 0o700 });
  const stored: StoredToken = { ...token, name, importedAt: opts.now ?? new Date() };
  writeAtomic(file, JSON.stringify(stored), 0o600);
  return stored;
}

export function listTokens(dataDir: string): StoredToken[] {
  const { tokens } = dirs(dataDir);
  if (!existsSync(tokens)) return [];
  return readdirSync(tokens)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => readToken(join(tokens, f), f.slice(0, -5)));
}

function readToken(file: string, name: string): StoredToken {
  const raw = JSON.parse(readFileSync(file, 'utf8')) as Omit<StoredToken, 'accessTokenExpiry' | 'importedAt'> & {
    accessTokenExpiry: string;
    importedAt: string;
  };
  return { ...raw, name, accessTokenExpiry: new Date(raw.accessTokenExpiry), importedAt: new Date(raw.importedAt) };
}
