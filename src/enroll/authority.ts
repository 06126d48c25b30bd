/**
 * The SCEP certificate authority: turns a PKIOperation request into a CertRep. HTTP-free, so the
 * routes, tests and the benchmark share it.
 *
 * PKCSReq needs a valid challenge password in the CSR. RenewalReq needs none: it must be signed
 * by a still-valid certificate this CA issued, and `renewals` (the device store) must confirm that
 * certificate is the bound, current identity of an enrolled device; the renewal then speaks for
 * that device only. Each certificate renews once: its binding moves to the renewal at issuance.
 * The reply is encrypted to the request's signer certificate, with the request's cipher (AES, or
 * 3DES for clients that used 3DES or single DES).
 */
import { X509Certificate, createHash, randomBytes, type KeyObject } from 'node:crypto';
import type { NameAttribute } from '../asn1/certificate.js';
import { CsrError, parseCsr } from '../asn1/csr.js';
import { Asn1Error } from '../asn1/decode.js';
import { EnvelopeError, openEnvelope, sealEnvelope, type ContentCipher } from '../asn1/enveloped-data.js';
import { SignatureError, certsOnly, checkSignature, type DigestName } from '../asn1/signed-data.js';
import { issueCertificate, type CertifiedKey } from '../identity/ca.js';
import { buildPkiMessage, parsePkiMessage, ScepError, type FailInfo, type MessageType, type PkiMessage } from './scep.js';
import type { ChallengeBinding, ChallengeKind, Redeemed } from './challenges.js';
import { sha256Hex } from './renewals.js';
import { Malformed } from '../errors.js';

type MaybeAsync<T> = T | Promise<T>;

export interface ChallengeVerifier {
  consume(challenge: string | undefined): MaybeAsync<ChallengeKind | undefined>;
  /** When present, used instead of `consume`: also names the device a one-time challenge is for. */
  redeem?(challenge: string | undefined): MaybeAsync<Redeemed | undefined>;
}

/**
 * Where the issued certificate of each recent transaction is kept, so that a retry or a CertPoll
 * reaches it on any replica (src/enroll/scep-transactions.ts keeps them in the store).
 */
export interface ScepTransactions {
  get(transactionId: string): Promise<CachedIssue | undefined>;
  put(transactionId: string, entry: CachedIssue, expiresAt: Date): Promise<void>;
}

/** Whether the certificate that signed a RenewalReq may renew, and for which device. */
export type RenewalDecision = { deviceId: string } | { refused: string };
export type RenewalCheck = (signerCertHash: string) => RenewalDecision | Promise<RenewalDecision>;

export interface AuthorityOptions {
  ca: CertifiedKey;
  challenges: ChallengeVerifier;
  /** Recent transactions beyond this process (`pkiOperationAsync` only). */
  transactions?: ScepTransactions;
  /** Decides RenewalReqs; without it every RenewalReq is refused. */
  renewals?: RenewalCheck;
  /** Validity of issued identity certificates (capped at the CA's). Default 365. */
  certDays?: number;
  now?: () => Date;
}

export interface IssuedCertificate {
  certDer: Buffer;
  /** Hex, as X509Certificate prints it. */
  serial: string;
  subject: string;
  notAfter: string;
  messageType: 'PKCSReq' | 'RenewalReq';
  challenge?: ChallengeKind;
  /** PKCSReq with a one-time challenge created for one device. */
  boundTo?: ChallengeBinding;
  /** RenewalReq: the certificate that signed the request, and the device it is bound to. */
  renewedFrom?: Buffer;
  renewalFor?: string;
}

export interface PkiResult {
  /** The CertRep, DER. */
  body: Buffer;
  /** For the request log (never contains a challenge). */
  outcome: string;
  issued?: IssuedCertificate;
  failInfo?: FailInfo;
}

/** Not a SCEP message at all: there is nothing to answer with a CertRep (HTTP 400). */
export class ScepMalformed extends Malformed {}

interface PendingRenewal {
  kind: 'renewal';
  msg: PkiMessage;
  signer: { certDer: Buffer; key: KeyObject };
  signerHash: string;
  replyCipher: ContentCipher;
  csr: ReturnType<typeof parseCsr>;
  keyHash: string;
}

/** A PKCSReq whose challenge is still to be redeemed. */
interface PendingEnrollment {
  kind: 'enrollment';
  msg: PkiMessage;
  signer: { certDer: Buffer; key: KeyObject };
  replyCipher: ContentCipher;
  csr: ReturnType<typeof parseCsr>;
  keyHash: string;
}

type Pending = PendingRenewal | PendingEnrollment;

export interface CachedIssue {
  keyHash: string;
  issued: IssuedCertificate;
  at: number;
}

// A retried request (same transaction, same key) gets the same certificate instead of a second one
// and without needing its one-time challenge again (RFC 8894 3.3.1: the transactionID identifies
// the exchange).
const TX_CACHE_MAX = 10_000;
const TX_CACHE_MS = 15 * 60_000;

const DAY_MS = 86_400_000;

export class ScepAuthority {
  private readonly caX509: X509Certificate;
  private readonly caNotAfter: number;
  private readonly now: () => Date;
  private readonly txCache = new Map<string, CachedIssue>();

  constructor(private readonly opts: AuthorityOptions) {
    this.caX509 = new X509Certificate(opts.ca.certDer);
    this.caNotAfter = Date.parse(this.caX509.validTo);
    this.now = opts.now ?? (() => new Date());
  }

  get caCertDer(): Buffer {
    return this.opts.ca.certDer;
  }

  /**
   * Handle a PKIOperation message. Throws ScepMalformed when it is not a SCEP message. The
   * challenge and RenewalReq checks must answer synchronously here, and transactions are this
   * process's only; with store-backed ones, `pkiOperationAsync`.
   */
  pkiOperation(der: Buffer): PkiResult {
    const msg = this.parse(der);
    const step = this.guard(msg, () => this.handle(msg));
    if (!('pending' in step)) return step;
    const decision = this.decide(step.pending);
    if (decision instanceof Promise) throw new Error('this challenge or RenewalReq check is asynchronous: use pkiOperationAsync');
    return this.guard(msg, () => this.finish(step.pending, decision));
  }

  /** `pkiOperation`, waiting for asynchronous checks, with the transactions of every replica. */
  async pkiOperationAsync(der: Buffer): Promise<PkiResult> {
    const msg = this.parse(der);
    const tx = this.opts.transactions;
    if (tx && !this.txCache.has(msg.transactionId)) {
      const known = await tx.get(msg.transactionId);
      if (known) this.remember(msg.transactionId, known);
    }
    const step = this.guard(msg, () => this.handle(msg));
    if (!('pending' in step)) return step;
    const decision = await this.decide(step.pending);
    const result = this.guard(msg, () => this.finish(step.pending, decision));
    if (tx && result.issued) {
      const at = this.now().getTime();
      await tx.put(msg.transactionId, { keyHash: step.pending.keyHash, issued: result.issued, at }, new Date(at + TX_CACHE_MS));
    }
    return result;
  }

  private parse(der: Buffer): PkiMessage {
    let msg: PkiMessage;
    try {
      msg = parsePkiMessage(der);
    } catch (err) {
      throw new ScepMalformed(`not a SCEP message: ${(err as Error).message}`);
    }
    if (!msg.senderNonce) throw new ScepMalformed('SCEP request has no senderNonce');
    return msg;
  }

  /** The answer a pending request waits for: the renewal check, or the redeemed challenge. */
  private decide(p: Pending): MaybeAsync<RenewalDecision | Redeemed | undefined> {
    if (p.kind === 'renewal') return this.opts.renewals?.(p.signerHash);
    const c = this.opts.challenges;
    if (c.redeem) return c.redeem(p.csr.challengePassword);
    const kind = c.consume(p.csr.challengePassword);
    const wrap = (k: ChallengeKind | undefined): Redeemed | undefined => (k ? { kind: k } : undefined);
    return kind instanceof Promise ? kind.then(wrap) : wrap(kind);
  }

  private finish(p: Pending, decision: RenewalDecision | Redeemed | undefined): PkiResult {
    return p.kind === 'renewal' ? this.renew(p, decision as RenewalDecision | undefined) : this.enroll(p, decision as Redeemed | undefined);
  }

  private guard<T>(msg: PkiMessage, fn: () => T): T | PkiResult {
    try {
      return fn();
    } catch (err) {
      if (err instanceof ScepError) return this.failure(msg, err.failInfo, err.message);
      throw err;
    }
  }

  /** Issue the renewal once the device store has said whether the signer may renew. */
  private renew(p: PendingRenewal, decision: RenewalDecision | undefined): PkiResult {
    if (!decision) throw new ScepError('badRequest', 'RenewalReq is not accepted by this CA');
    if ('refused' in decision) throw new ScepError('badRequest', `RenewalReq refused: ${decision.refused}`);
    const issued = this.issue(p.csr.publicKey, p.csr.subject, 'RenewalReq', undefined, p.signer.certDer);
    issued.renewalFor = decision.deviceId;
    this.remember(p.msg.transactionId, { keyHash: p.keyHash, issued, at: this.now().getTime() });
    return this.success(p.msg, p.signer, p.replyCipher, issued, 'RenewalReq');
  }

  private handle(msg: PkiMessage): PkiResult | { pending: Pending } {
    let signerCert: Buffer;
    let signerKey: KeyObject;
    try {
      ({ signerCert, publicKey: signerKey } = checkSignature(msg.signed));
    } catch (err) {
      if (err instanceof SignatureError || err instanceof Asn1Error) throw new ScepError('badMessageCheck', err.message);
      throw err;
    }
    // The issued certificate goes back encrypted to the signer's key by RSA key transport: refuse
    // another key type before a challenge is used up or anything is issued.
    if (signerKey.asymmetricKeyType !== 'rsa') {
      throw new ScepError(
        'badAlg',
        `the request is signed with a ${signerKey.asymmetricKeyType ?? 'non-RSA'} key; the reply needs an RSA key to be encrypted to`,
      );
    }
    const type = msg.messageType;
    if (type !== 'PKCSReq' && type !== 'RenewalReq' && type !== 'CertPoll') {
      throw new ScepError('badRequest', `messageType ${type} is not supported`);
    }
    if (type === 'RenewalReq') this.checkRenewalSigner(signerCert);

    if (!msg.envelope) throw new ScepError('badRequest', `${type} has no content`);
    let content: Buffer;
    let cipher: ContentCipher;
    try {
      ({ content, cipher } = openEnvelope(msg.envelope, this.opts.ca));
    } catch (err) {
      if (!(err instanceof EnvelopeError)) throw err;
      const fail: Record<EnvelopeError['problem'], FailInfo> = {
        unsupported: 'badAlg',
        recipient: 'badRequest',
        decrypt: 'badMessageCheck',
        malformed: 'badRequest',
      };
      throw new ScepError(fail[err.problem], err.message);
    }
    const replyCipher: ContentCipher = cipher === 'des-cbc' ? 'des-ede3-cbc' : cipher;

    if (type === 'CertPoll') {
      // We never answer PENDING; a poll can only be for a reply that got lost.
      const hit = this.txCache.get(msg.transactionId);
      if (!hit || this.now().getTime() - hit.at > TX_CACHE_MS) throw new ScepError('badCertId', 'no certificate for this transaction');
      return this.success(msg, { certDer: signerCert, key: signerKey }, replyCipher, hit.issued, 'CertPoll');
    }

    let csr;
    try {
      csr = parseCsr(content);
    } catch (err) {
      if (err instanceof CsrError) throw new ScepError('badRequest', err.message);
      throw err;
    }
    const keyHash = createHash('sha256').update(csr.spki).digest('hex');
    const cached = this.txCache.get(msg.transactionId);
    if (cached && cached.keyHash === keyHash && cached.issued.messageType === type && this.now().getTime() - cached.at <= TX_CACHE_MS) {
      return this.success(msg, { certDer: signerCert, key: signerKey }, replyCipher, cached.issued, `${type} (retry)`);
    }

    if (type === 'RenewalReq') {
      return {
        pending: { kind: 'renewal', msg, signer: { certDer: signerCert, key: signerKey }, signerHash: sha256Hex(signerCert), replyCipher, csr, keyHash },
      };
    }
    return { pending: { kind: 'enrollment', msg, signer: { certDer: signerCert, key: signerKey }, replyCipher, csr, keyHash } };
  }

  /** Issue for a PKCSReq once its challenge is redeemed (or not). */
  private enroll({ msg, signer, replyCipher, csr, keyHash }: PendingEnrollment, redeemed: Redeemed | undefined): PkiResult {
    const type = 'PKCSReq';
    if (!redeemed) {
      throw new ScepError(
        'badRequest',
        csr.challengePassword === undefined ? 'no challenge password in the CSR' : 'challenge password not valid (wrong, expired or used)',
      );
    }
    const issued = this.issue(csr.publicKey, csr.subject, type, redeemed.kind, undefined);
    if (redeemed.serial !== undefined || redeemed.udid !== undefined) {
      issued.boundTo = {
        ...(redeemed.serial !== undefined ? { serial: redeemed.serial } : {}),
        ...(redeemed.udid !== undefined ? { udid: redeemed.udid } : {}),
      };
    }
    this.remember(msg.transactionId, { keyHash, issued, at: this.now().getTime() });
    return this.success(msg, signer, replyCipher, issued, type);
  }

  /** A renewal must be signed by a still-valid certificate this CA issued. */
  private checkRenewalSigner(signerCert: Buffer): void {
    let x: X509Certificate;
    try {
      x = new X509Certificate(signerCert);
    } catch {
      throw new ScepError('badMessageCheck', 'RenewalReq signer certificate is not valid X.509');
    }
    if (!x.checkIssued(this.caX509) || !x.verify(this.caX509.publicKey)) {
      throw new ScepError('badMessageCheck', 'RenewalReq is not signed by a certificate this CA issued');
    }
    if (x.ca) throw new ScepError('badMessageCheck', 'RenewalReq is signed by a CA certificate');
    const now = this.now().getTime();
    if (now > Date.parse(x.validTo)) throw new ScepError('badTime', `RenewalReq signer certificate expired ${x.validTo}`);
    if (now < Date.parse(x.validFrom)) throw new ScepError('badTime', `RenewalReq signer certificate not valid before ${x.validFrom}`);
  }

  private issue(
    publicKey: KeyObject,
    subject: NameAttribute[],
    messageType: 'PKCSReq' | 'RenewalReq',
    challenge: ChallengeKind | undefined,
    renewedFrom: Buffer | undefined,
  ): IssuedCertificate {
    const now = this.now().getTime();
    const notBefore = new Date(now - 5 * 60_000);
    const notAfter = new Date(Math.min(now + (this.opts.certDays ?? 365) * DAY_MS, this.caNotAfter));
    let cert;
    try {
      cert = issueCertificate(this.opts.ca, { publicKey, subject, notBefore, notAfter, extKeyUsage: ['clientAuth'] });
    } catch (err) {
      throw new ScepError('badRequest', `cannot issue for this request: ${(err as Error).message}`);
    }
    const x = new X509Certificate(cert.certDer);
    return {
      certDer: cert.certDer,
      serial: x.serialNumber,
      subject: (x.subject ?? '').split('\n').filter(Boolean).join(', '),
      notAfter: x.validTo,
      messageType,
      challenge,
      renewedFrom,
    };
  }

  private remember(tx: string, entry: CachedIssue): void {
    if (this.txCache.size >= TX_CACHE_MAX) {
      const oldest = this.txCache.keys().next().value;
      if (oldest !== undefined) this.txCache.delete(oldest);
    }
    this.txCache.delete(tx);
    this.txCache.set(tx, entry);
  }

  private replyDigest(msg: PkiMessage): DigestName {
    // Answer in the client's digest: an old client that signs SHA-1 may verify nothing else.
    return msg.digest;
  }

  /** The issued certificate, encrypted to the request's signer (certificate and its public key). */
  private success(msg: PkiMessage, recipient: { certDer: Buffer; key: KeyObject }, cipher: ContentCipher, issued: IssuedCertificate, what: string): PkiResult {
    const envelope = sealEnvelope(certsOnly([issued.certDer]), recipient.certDer, cipher, recipient.key);
    const body = buildPkiMessage({
      messageType: 'CertRep' satisfies MessageType,
      transactionId: msg.transactionIdDer,
      senderNonce: randomBytes(16),
      recipientNonce: msg.senderNonce,
      pkiStatus: 'SUCCESS',
      envelope,
      signer: this.opts.ca,
      digest: this.replyDigest(msg),
      certificates: [this.opts.ca.certDer],
    });
    return { body, issued, outcome: `${what} SUCCESS serial ${issued.serial}${issued.renewedFrom ? ' (renewal)' : ''}` };
  }

  private failure(msg: PkiMessage, failInfo: FailInfo, reason: string): PkiResult {
    const body = buildPkiMessage({
      messageType: 'CertRep',
      transactionId: msg.transactionIdDer,
      senderNonce: randomBytes(16),
      recipientNonce: msg.senderNonce,
      pkiStatus: 'FAILURE',
      failInfo,
      failInfoText: reason,
      signer: this.opts.ca,
      digest: this.replyDigest(msg),
      certificates: [this.opts.ca.certDer],
    });
    return { body, failInfo, outcome: `${msg.messageType} FAILURE ${failInfo}: ${reason}` };
  }
}
