/**
 * Secrets kept in the store (the CA's and the profile signer's keys, the push certificate's key)
 * are sealed first: AES-256-GCM with a key derived (HKDF-SHA256) from the material key, which
 * never enters the store. A server finds the material key in `ORCHARD_MATERIAL_KEY`, else in the
 * file `materialKeyFile` names, else in `DATA_DIR/material.key` (created, mode 0600, on first
 * start). Every replica on one store needs the same material key.
 *
 * A sealed value: version byte 1, 12-byte nonce, 16-byte tag, ciphertext. The value's name is
 * the additional data, so a sealed CA key cannot be passed off as another value.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Malformed, Unavailable } from '../errors.js';
import type { MaterialStore } from './material.js';

export const MATERIAL_KEY_ENV = 'ORCHARD_MATERIAL_KEY';
export const MATERIAL_KEY_FILE = 'material.key';

const VERSION = 1;
const MIN_SECRET_BYTES = 16;

/** The material key is wrong for what the store holds, or is missing. */
export class SealError extends Unavailable {}

export class Sealer {
  private readonly key: Buffer;

  /** @param secret the material key as given (at least 16 bytes; 32 random bytes is what `material.key` holds) */
  constructor(secret: Buffer) {
    if (secret.length < MIN_SECRET_BYTES) throw new Malformed(`the material key must be at least ${MIN_SECRET_BYTES} bytes`);
    this.key = Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), 'orchard material v1', 32));
  }

  seal(name: string, plain: Buffer): Buffer {
    const nonce = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.key, nonce);
    c.setAAD(Buffer.from(name, 'utf8'));
    const body = Buffer.concat([c.update(plain), c.final()]);
    return Buffer.concat([Buffer.from([VERSION]), nonce, c.getAuthTag(), body]);
  }

  open(name: string, sealed: Buffer): Buffer {
    if (sealed.length < 29 || sealed[0] !== VERSION) throw new SealError(`the ${name} in the store is not a sealed value of this version`);
    try {
      const d = createDecipheriv('aes-256-gcm', this.key, sealed.subarray(1, 13));
      d.setAAD(Buffer.from(name, 'utf8'));
      d.setAuthTag(sealed.subarray(13, 29));
      return Buffer.concat([d.update(sealed.subarray(29)), d.final()]);
    } catch (err) {
      throw new SealError(
        `the ${name} in the store was sealed with another material key: give this server the same ${MATERIAL_KEY_ENV} (or materialKeyFile) as the others`,
        { cause: err },
      );
    }
  }
}

export interface MaterialKeySource {
  /** The key itself (from ORCHARD_MATERIAL_KEY): wins over the files. */
  secret?: string;
  /** cfg.materialKeyFile. */
  file?: string;
  /** Where `material.key` is created when neither names a key. */
  dataDir: string;
}

/** The material key: the environment's, the named file's, or `DATA_DIR/material.key` (created when missing). */
export function loadSealer(src: MaterialKeySource): { sealer: Sealer; from: string; warnings: string[] } {
  if (src.secret) return { sealer: new Sealer(Buffer.from(src.secret, 'utf8')), from: MATERIAL_KEY_ENV, warnings: [] };
  const file = src.file ?? join(src.dataDir, MATERIAL_KEY_FILE);
  let secret: Buffer;
  try {
    secret = readFileSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || src.file) throw new SealError(`the material key file ${file} cannot be read`, { cause: err });
    try {
      writeFileSync(file, randomBytes(32).toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new SealError(`the material key file ${file} cannot be created`, { cause: e });
    }
    secret = readFileSync(file);
  }
  const warnings = statSync(file).mode & 0o077 ? [`${file} is readable by other users; chmod 600 it`] : [];
  return { sealer: new Sealer(Buffer.from(secret.toString('utf8').trim(), 'utf8')), from: file, warnings };
}

/** A certificate and its key (PEM), as the store holds them: the JSON pair sealed under the blob's name. */
export interface SealedPair {
  certPem: string;
  keyPem: string;
}

export class SealedPairs {
  constructor(
    private readonly store: Pick<MaterialStore, 'getMaterial' | 'putMaterial'>,
    private readonly sealer: Sealer,
  ) {}

  async get(name: string): Promise<SealedPair | undefined> {
    const v = await this.store.getMaterial('blob', name);
    if (!v) return undefined;
    return JSON.parse(this.sealer.open(name, v).toString('utf8')) as SealedPair;
  }

  put(name: string, pair: SealedPair, opts: { ifAbsent?: boolean } = {}): Promise<boolean> {
    const plain = Buffer.from(JSON.stringify({ certPem: pair.certPem, keyPem: pair.keyPem }), 'utf8');
    return this.store.putMaterial('blob', name, this.sealer.seal(name, plain), opts);
  }
}
