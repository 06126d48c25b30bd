/**
 * The MDM server's ABM material under `<dataDir>/abm/`: the key pair whose public certificate is
 * uploaded to ABM (`keypair.key`, mode 0600, and `keypair.pem`), and the server tokens ABM returns,
 * decrypted with that key (`tokens/<name>.json`, mode 0600: they hold OAuth secrets). Several
 * tokens may coexist (one per ABM MDM server entry).
 *
 * `orchard abm` writes these files (it runs beside a server that holds the store open); the
 * server keeps what they hold in the store (`AbmMaterial`), sealed with the material key, so a
 * replica given only the database URL and its secrets serves ABM. The files are kept. With
 * `--store URL`, `orchard abm` works on the store's material itself (a replica with only the
 * database can run it).
 */
import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { buildCertificate, encodeName, randomSerial } from '../asn1/certificate.js';
import { decryptSmime } from '../asn1/enveloped-data.js';
import { pemToDer, toPem } from '../asn1/pem.js';
import { Conflict, Malformed, NotFound } from '../errors.js';
import type { MaterialStore } from '../store/material.js';
import { allPages } from '../store/paging.js';
import { SealedPairs, type Sealer } from '../store/sealing.js';
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

/** A new key pair (RSA-2048, as ABM accepts) and its self-signed certificate, as PEM. */
function newKeypairPem(now: Date): { keyPem: string; certPem: string } {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
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
  return { keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), certPem: toPem(certDer) };
}

/** Creates the key pair unless one exists; `force` replaces it (tokens made for the old one stop decrypting). */
export function createKeypair(dataDir: string, opts: { force?: boolean; now?: Date } = {}): AbmKeypair & { created: boolean } {
  const d = dirs(dataDir);
  if (existsSync(d.keyFile) && !opts.force) return { ...readKeypair(dataDir), created: false };
  mkdirSync(d.dir, { recursive: true, mode: 0o700 });
  const pem = newKeypairPem(opts.now ?? new Date());
  writeAtomic(d.keyFile, pem.keyPem, 0o600);
  writeAtomic(d.certFile, pem.certPem, 0o644);
  return { ...keypairOf(pem), certFile: d.certFile, keyFile: d.keyFile, created: true };
}

function keypairOf(pem: { keyPem: string; certPem: string }): Pick<AbmKeypair, 'key' | 'certDer'> {
  return { key: createPrivateKey(pem.keyPem), certDer: pemToDer(Buffer.from(pem.certPem)) };
}

export function readKeypair(dataDir: string): AbmKeypair {
  const d = dirs(dataDir);
  if (!existsSync(d.keyFile)) throw new NotFound('no ABM key pair: run `orchard abm keypair` and upload its certificate to ABM first');
  return { key: createPrivateKey(readFileSync(d.keyFile)), certDer: pemToDer(readFileSync(d.certFile)), certFile: d.certFile, keyFile: d.keyFile };
}

/** Decrypts a downloaded `.p7m` with the key pair and stores it as `name`. */
export function importToken(dataDir: string, p7m: Buffer, name: string, opts: { now?: Date; replace?: boolean } = {}): StoredToken {
  checkName(name);
  const token = decryptToken(p7m, readKeypair(dataDir));
  const d = dirs(dataDir);
  const file = join(d.tokens, `${name}.json`);
  if (existsSync(file) && !opts.replace) checkSameServer(readToken(file, name), token);
  mkdirSync(d.tokens, { recursive: true, mode: 0o700 });
  const stored: StoredToken = { ...token, name, importedAt: opts.now ?? new Date() };
  writeAtomic(file, JSON.stringify(stored), 0o600);
  return stored;
}

function checkName(name: string): void {
  if (!NAME.test(name)) throw new Malformed(`token name must be letters, digits, '.', '_' or '-' (1-64): ${JSON.stringify(name.slice(0, 64))}`);
}

function decryptToken(p7m: Buffer, kp: Pick<AbmKeypair, 'key' | 'certDer'>): ServerToken {
  return parseServerToken(decryptSmime(p7m, { certDer: kp.certDer, key: kp.key }).toString('utf8'));
}

/** A token replaces one of its name only for the same ABM server (same consumer key), unless told to. */
function checkSameServer(old: StoredToken, token: ServerToken): void {
  if (old.consumerKey !== token.consumerKey) throw new Conflict(`a token named "${old.name}" exists for another ABM server: pick another name, or --replace`);
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
  return tokenOf(readFileSync(file, 'utf8'), name);
}

/** A token as JSON (a file's text, a sealed value's plaintext): dates are ISO strings there. */
function tokenOf(json: string, name: string): StoredToken {
  const raw = JSON.parse(json) as Omit<StoredToken, 'accessTokenExpiry' | 'importedAt'> & {
    accessTokenExpiry: string;
    importedAt: string;
  };
  return { ...raw, name, accessTokenExpiry: new Date(raw.accessTokenExpiry), importedAt: new Date(raw.importedAt) };
}

const KEYPAIR_BLOB = 'abm-keypair';
const tokenSealName = (name: string): string => `abm-token/${name}`;

/**
 * The ABM key pair (a sealed pair, blob `abm-keypair`, like the CA's) and the server tokens (kind
 * `abm-token`, key the token's name, each sealed under `abm-token/<name>`) in the store.
 */
export class AbmMaterial {
  private readonly pairs: SealedPairs;
  /** Files already read by this process, by path: their mtime then (a file is read again only once it changed). */
  private readonly seen = new Map<string, number>();

  constructor(
    private readonly store: Pick<MaterialStore, 'getMaterial' | 'putMaterial' | 'listMaterial'>,
    private readonly sealer: Sealer,
  ) {
    this.pairs = new SealedPairs(store, sealer);
  }

  async keypair(): Promise<Pick<AbmKeypair, 'key' | 'certDer'> | undefined> {
    const pair = await this.pairs.get(KEYPAIR_BLOB);
    return pair && keypairOf(pair);
  }

  /**
   * `orchard abm keypair --store`: the store's key pair, made (and stored) when it has none or
   * with `force`. Returns its certificate (PEM), the one to upload to ABM.
   */
  async createKeypair(opts: { force?: boolean; now?: Date } = {}): Promise<{ certPem: string; created: boolean }> {
    const old = opts.force ? undefined : await this.pairs.get(KEYPAIR_BLOB);
    if (old) return { certPem: old.certPem, created: false };
    const pem = newKeypairPem(opts.now ?? new Date());
    await this.pairs.put(KEYPAIR_BLOB, pem);
    return { certPem: pem.certPem, created: true };
  }

  /** `orchard abm token import --store`: decrypts a `.p7m` with the store's key pair and stores it as `name`. */
  async importToken(p7m: Buffer, name: string, opts: { now?: Date; replace?: boolean } = {}): Promise<StoredToken> {
    checkName(name);
    const kp = await this.keypair();
    if (!kp) throw new NotFound('no ABM key pair in the store: run `orchard abm keypair --store URL` and upload its certificate to ABM first');
    const token = decryptToken(p7m, kp);
    const old = opts.replace ? undefined : await this.getToken(name);
    if (old) checkSameServer(old, token);
    const stored: StoredToken = { ...token, name, importedAt: opts.now ?? new Date() };
    await this.putToken(stored);
    return stored;
  }

  async getToken(name: string): Promise<StoredToken | undefined> {
    const v = await this.store.getMaterial('abm-token', name);
    return v && tokenOf(this.sealer.open(tokenSealName(name), v).toString('utf8'), name);
  }

  async putToken(t: StoredToken): Promise<void> {
    checkName(t.name);
    await this.store.putMaterial('abm-token', t.name, this.sealer.seal(tokenSealName(t.name), Buffer.from(JSON.stringify(t), 'utf8')));
  }

  /** Every token in the store, by name. */
  async tokens(): Promise<StoredToken[]> {
    const items = await allPages((p) => this.store.listMaterial('abm-token', p));
    return items.map((i) => tokenOf(this.sealer.open(tokenSealName(i.key), i.value).toString('utf8'), i.key));
  }

  /**
   * Keeps what `orchard abm` wrote under `dataDir/abm` in the store: the key pair when the store
   * has another (or none), a token when the store has none of its name or an older import. Each
   * file is read once, and again only once it changed. Returns what was stored.
   */
  async adoptFiles(dataDir: string): Promise<{ keypair: boolean; tokens: string[] }> {
    const d = dirs(dataDir);
    const out = { keypair: false, tokens: [] as string[] };
    if (this.changed(d.keyFile) || this.changed(d.certFile)) {
      const pair = { certPem: readFileSync(d.certFile, 'utf8'), keyPem: readFileSync(d.keyFile, 'utf8') };
      if ((await this.pairs.get(KEYPAIR_BLOB))?.certPem !== pair.certPem) {
        await this.pairs.put(KEYPAIR_BLOB, pair);
        out.keypair = true;
      }
      this.markSeen(d.keyFile, d.certFile);
    }
    const files = existsSync(d.tokens) ? readdirSync(d.tokens).filter((f) => f.endsWith('.json') && NAME.test(f.slice(0, -5))) : [];
    for (const f of files.sort()) {
      const file = join(d.tokens, f);
      if (!this.changed(file)) continue;
      const t = readToken(file, f.slice(0, -5));
      const stored = await this.getToken(t.name);
      if (!stored || stored.importedAt.getTime() < t.importedAt.getTime()) {
        await this.putToken(t);
        out.tokens.push(t.name);
      }
      this.markSeen(file);
    }
    return out;
  }

  private changed(file: string): boolean {
    const mtime = mtimeOf(file);
    return mtime !== undefined && this.seen.get(file) !== mtime;
  }

  private markSeen(...files: string[]): void {
    for (const f of files) {
      const mtime = mtimeOf(f);
      if (mtime !== undefined) this.seen.set(f, mtime);
    }
  }
}

function mtimeOf(file: string): number | undefined {
  try {
    return statSync(file).mtimeMs;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
