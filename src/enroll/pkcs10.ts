/**
 * PKCS#10 certificate requests (RFC 2986) and the self-signed certificate a SCEP requester signs
 * its PKCSReq with: parsed and verified for the SCEP server, built for the simulator and tests.
 */
import { createPublicKey, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import type { NameAttribute } from '../identity/ca.js';
import { causeName, guarded } from '../identity/errors.js';
import {
  Asn1Error,
  algorithm,
  bitString,
  contentOf,
  ctx,
  int,
  isCtx,
  isUniversal,
  kids,
  NULL,
  oid,
  oidOf,
  parse,
  raw,
  seq,
  set,
  textOf,
  time,
  tlv,
  utf8,
  printable,
} from '../identity/der.js';
import { Malformed } from '../errors.js';

export const id_challengePassword = '1.2.840.113549.1.9.7';

const NAME_OIDS: Record<string, string> = {
  CN: '2.5.4.3',
  SERIALNUMBER: '2.5.4.5',
  C: '2.5.4.6',
  L: '2.5.4.7',
  ST: '2.5.4.8',
  O: '2.5.4.10',
  OU: '2.5.4.11',
  E: '1.2.840.113549.1.9.1',
  EMAILADDRESS: '1.2.840.113549.1.9.1',
  UID: '0.9.2342.19200300.100.1.1',
  DC: '0.9.2342.19200300.100.1.25',
};

const SIG: Record<string, { hash: string; keyType: 'rsa' | 'ec' }> = {
  '1.2.840.113549.1.1.4': { hash: 'md5', keyType: 'rsa' },
  '1.2.840.113549.1.1.5': { hash: 'sha1', keyType: 'rsa' },
  '1.2.840.113549.1.1.11': { hash: 'sha256', keyType: 'rsa' },
  '1.2.840.113549.1.1.12': { hash: 'sha384', keyType: 'rsa' },
  '1.2.840.113549.1.1.13': { hash: 'sha512', keyType: 'rsa' },
  '1.2.840.10045.4.1': { hash: 'sha1', keyType: 'ec' },
  '1.2.840.10045.4.3.2': { hash: 'sha256', keyType: 'ec' },
  '1.2.840.10045.4.3.3': { hash: 'sha384', keyType: 'ec' },
  '1.2.840.10045.4.3.4': { hash: 'sha512', keyType: 'ec' },
};

const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

export class CsrError extends Malformed {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'CsrError';
  }
}

/** A subject entry as [short name or dotted OID, value], e.g. ['CN', 'device']. */
export type SubjectEntry = [string, string];

export function attributeOid(name: string): string {
  if (/^\d+(\.\d+)+$/.test(name)) return name;
  const o = NAME_OIDS[name.toUpperCase()];
  if (!o) throw new Error(`unknown subject attribute ${name}`);
  return o;
}

/** X.501 Name, one attribute per RDN. */
export function encodeName(entries: SubjectEntry[]): Buffer {
  return seq(
    ...entries.map(([name, value]) => {
      const type = attributeOid(name);
      let v: Buffer;
      if (type === NAME_OIDS.E || type === NAME_OIDS.DC)
        v = tlv(0x16, Buffer.from(value, 'latin1')); // IA5String
      else v = PRINTABLE.test(value) ? printable(value) : utf8(value);
      return set(seq(oid(type), v));
    }),
  );
}

function signatureAlgorithm(key: KeyObject): { alg: Buffer; hash: string } {
  if (key.asymmetricKeyType === 'rsa') return { alg: algorithm('1.2.840.113549.1.1.11', NULL), hash: 'sha256' };
  if (key.asymmetricKeyType === 'ec') return { alg: algorithm('1.2.840.10045.4.3.2'), hash: 'sha256' };
  throw new Error(`unsupported key type ${key.asymmetricKeyType}`);
}

function spki(key: KeyObject): Buffer {
  return createPublicKey(key).export({ type: 'spki', format: 'der' });
}

export interface BuildCsrOptions {
  /** The requester's private key. */
  key: KeyObject;
  subject: SubjectEntry[];
  challengePassword?: string;
}

export function buildCsr(opts: BuildCsrOptions): Buffer {
  const attrs: Buffer[] = [];
  if (opts.challengePassword !== undefined) {
    const pw = PRINTABLE.test(opts.challengePassword) ? printable(opts.challengePassword) : utf8(opts.challengePassword);
    attrs.push(seq(oid(id_challengePassword), set(pw)));
  }
  const info = seq(int(0), encodeName(opts.subject), spki(opts.key), ctx(0, ...attrs));
  const { alg, hash } = signatureAlgorithm(opts.key);
  return seq(info, alg, bitString(sign(hash, info, opts.key)));
}

/** A self-signed certificate for `key` (what a SCEP requester signs its first request with). */
export function selfSignedCertificate(key: KeyObject, subject: SubjectEntry[], days = 1): Buffer {
  const { alg, hash } = signatureAlgorithm(key);
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x3f) | 0x40;
  const name = encodeName(subject);
  const now = Date.now();
  const tbs = seq(ctx(0, int(2)), int(serial), alg, name, seq(time(new Date(now - 300_000)), time(new Date(now + days * 86_400_000))), name, spki(key));
  return seq(tbs, alg, bitString(sign(hash, tbs, key)));
}

export interface Csr {
  der: Buffer;
  /** One entry per attribute, dotted OIDs (multi-valued RDNs flattened). */
  subject: NameAttribute[];
  publicKey: KeyObject;
  /** DER SubjectPublicKeyInfo. */
  spki: Buffer;
  challengePassword?: string;
}

/**
 * Parse a CSR and verify its self-signature (proof that the requester holds the key). Throws only
 * CsrError: a structure error names what is wrong, any other exception is "could not be parsed".
 */
export function parseCsr(der: Buffer): Csr {
  return guarded(
    () => parseUnguarded(der),
    [CsrError],
    (cause) => new CsrError(cause instanceof Asn1Error ? `CSR: ${cause.message}` : `CSR could not be parsed ${causeName(cause)}`, { cause }),
  );
}

function parseUnguarded(der: Buffer): Csr {
  const parts = kids(parse(der, 'CSR'), 'CertificationRequest');
  const info = kids(parts[0], 'certificationRequestInfo');
  const subject: NameAttribute[] = [];
  let challengePassword: string | undefined;
  for (const rdn of kids(info[1], 'subject')) {
    for (const atv of kids(rdn, 'RDN')) {
      const [type, value] = kids(atv, 'AttributeTypeAndValue');
      subject.push({ name: oidOf(type, 'attribute type'), value: textOf(value, 'attribute value') });
    }
  }
  if (!info[2]) throw new Asn1Error('CSR has no subjectPublicKeyInfo');
  const spkiDer = Buffer.from(raw(info[2]));
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: spkiDer, format: 'der', type: 'spki' });
  } catch (cause) {
    throw new CsrError('CSR public key cannot be read', { cause });
  }
  if (isCtx(info[3], 0)) {
    for (const attr of kids(info[3], 'attributes')) {
      const [type, values] = kids(attr, 'attribute');
      if (oidOf(type, 'attribute type') !== id_challengePassword) continue;
      const v = kids(values, 'challengePassword values');
      if (v.length !== 1) throw new Asn1Error('challengePassword must have one value');
      challengePassword = textOf(v[0], 'challengePassword');
    }
  }
  const sigOid = oidOf(kids(parts[1], 'signatureAlgorithm')[0], 'signatureAlgorithm');
  // asn1js strips the BIT STRING's unused-bits octet from its content.
  if (!isUniversal(parts[2], 3)) throw new Asn1Error('CSR signature is not a BIT STRING');
  const signature = contentOf(parts[2], 'signature');
  const alg = SIG[sigOid];
  if (!alg) throw new CsrError(`CSR signature algorithm ${sigOid} is not supported`);
  if (alg.hash === 'md5') throw new CsrError('CSR is signed with MD5');
  if (publicKey.asymmetricKeyType !== alg.keyType) throw new CsrError('CSR key type does not match its signature algorithm');
  let ok: boolean;
  try {
    ok = verify(alg.hash, raw(parts[0]!), publicKey, signature);
  } catch {
    ok = false;
  }
  if (!ok) throw new CsrError('CSR signature does not verify');
  return { der, subject, publicKey, spki: spkiDer, challengePassword };
}
