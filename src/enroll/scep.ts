/**
 * SCEP messages (RFC 8894): a SignedData whose signed attributes carry the SCEP fields and whose
 * content, when there is one, is an EnvelopedData. Both directions are here: the server reads
 * requests and writes CertRep; the simulator (and tests) write requests and read CertRep.
 */
import { randomBytes, X509Certificate } from 'node:crypto';
import { Asn1Error, octetsOf, readable, textOf } from '../asn1/decode.js';
import { octets, printable, utf8 } from '../asn1/der.js';
import { openEnvelope, sealEnvelope, type ContentCipher } from '../asn1/enveloped-data.js';
import {
  attribute,
  attributeValue,
  buildSignedData,
  checkSignature,
  parseSignedData,
  readCertsOnly,
  type DigestName,
  type ParsedSignedData,
  type Signer,
} from '../asn1/signed-data.js';
import { Forbidden } from '../errors.js';

export const SCEP_OIDS = {
  messageType: '2.16.840.1.113733.1.9.2',
  pkiStatus: '2.16.840.1.113733.1.9.3',
  failInfo: '2.16.840.1.113733.1.9.4',
  senderNonce: '2.16.840.1.113733.1.9.5',
  recipientNonce: '2.16.840.1.113733.1.9.6',
  transactionID: '2.16.840.1.113733.1.9.7',
  failInfoText: '1.3.6.1.5.5.7.24.1',
} as const;

export type MessageType = 'CertRep' | 'RenewalReq' | 'PKCSReq' | 'CertPoll' | 'GetCert' | 'GetCRL';
export type PkiStatus = 'SUCCESS' | 'FAILURE' | 'PENDING';
export type FailInfo = 'badAlg' | 'badMessageCheck' | 'badRequest' | 'badTime' | 'badCertId';

const MESSAGE_TYPES: Record<MessageType, string> = { CertRep: '3', RenewalReq: '17', PKCSReq: '19', CertPoll: '20', GetCert: '21', GetCRL: '22' };
const PKI_STATUS: Record<PkiStatus, string> = { SUCCESS: '0', FAILURE: '2', PENDING: '3' };
const FAIL_INFO: Record<FailInfo, string> = { badAlg: '0', badMessageCheck: '1', badRequest: '2', badTime: '3', badCertId: '4' };

function reverse<K extends string>(m: Record<K, string>): Map<string, K> {
  return new Map(Object.entries(m).map(([k, v]) => [v as string, k as K]));
}
const TYPE_BY_CODE = reverse(MESSAGE_TYPES);
const STATUS_BY_CODE = reverse(PKI_STATUS);
const FAIL_BY_CODE = reverse(FAIL_INFO);

/** GetCACaps: what this server supports (RFC 8894 3.5.2). */
export const CA_CAPS = ['POSTPKIOperation', 'SHA-256', 'SHA-512', 'SHA-1', 'AES', 'DES3', 'SCEPStandard', 'Renewal'];

/** A SCEP exchange failed in a way the client is told with a CertRep FAILURE. */
export class ScepError extends Forbidden {
  constructor(
    readonly failInfo: FailInfo,
    message: string,
  ) {
    super(message);
    this.name = 'ScepError';
  }
}

export interface PkiMessage {
  signed: ParsedSignedData;
  /** A known type, or the raw code of an unknown one. */
  messageType: MessageType | string;
  transactionId: string;
  /** The transactionID value exactly as encoded (echoed in replies). */
  transactionIdDer: Buffer;
  senderNonce?: Buffer;
  recipientNonce?: Buffer;
  pkiStatus?: PkiStatus;
  failInfo?: FailInfo;
  failInfoText?: string;
  digest: DigestName;
  /** The EnvelopedData (ContentInfo DER), absent in failure and pending replies. */
  envelope?: Buffer;
}

function text(b: Buffer | undefined, what: string): string | undefined {
  return b ? textOf(b, what) : undefined;
}

/**
 * Read a SCEP message's structure and attributes. The signature is not judged here
 * (checkSignature(msg.signed)), so a failure reply can still echo the transaction.
 * Throws only Asn1Error: when the message is not a SCEP message at all.
 */
export function parsePkiMessage(der: Buffer): PkiMessage {
  return readable('SCEP message', () => parseUnguarded(der));
}

function parseUnguarded(der: Buffer): PkiMessage {
  const signed = parseSignedData(der, 'SCEP message');
  const typeCode = text(attributeValue(signed, SCEP_OIDS.messageType), 'messageType');
  const tx = attributeValue(signed, SCEP_OIDS.transactionID);
  if (typeCode === undefined) throw new Asn1Error('SCEP message has no messageType');
  if (!tx) throw new Asn1Error('SCEP message has no transactionID');
  const nonce = (type: string) => {
    const v = attributeValue(signed, type);
    return v ? octetsOf(v, 'nonce') : undefined;
  };
  const statusCode = text(attributeValue(signed, SCEP_OIDS.pkiStatus), 'pkiStatus');
  const failCode = text(attributeValue(signed, SCEP_OIDS.failInfo), 'failInfo');
  return {
    signed,
    messageType: TYPE_BY_CODE.get(typeCode) ?? typeCode,
    transactionId: textOf(tx, 'transactionID'),
    transactionIdDer: Buffer.from(tx),
    senderNonce: nonce(SCEP_OIDS.senderNonce),
    recipientNonce: nonce(SCEP_OIDS.recipientNonce),
    pkiStatus: statusCode === undefined ? undefined : STATUS_BY_CODE.get(statusCode),
    failInfo: failCode === undefined ? undefined : FAIL_BY_CODE.get(failCode),
    failInfoText: text(attributeValue(signed, SCEP_OIDS.failInfoText), 'failInfoText'),
    digest: signed.digest,
    envelope: signed.content,
  };
}

export interface BuildPkiOptions {
  messageType: MessageType;
  /** A string, or an encoded value to echo byte for byte. */
  transactionId: string | Buffer;
  senderNonce: Buffer;
  recipientNonce?: Buffer;
  pkiStatus?: PkiStatus;
  failInfo?: FailInfo;
  failInfoText?: string;
  /** EnvelopedData DER. */
  envelope?: Buffer;
  signer: Signer;
  digest?: DigestName;
  certificates?: Buffer[];
}

export function buildPkiMessage(o: BuildPkiOptions): Buffer {
  const attrs = [
    attribute(SCEP_OIDS.messageType, printable(MESSAGE_TYPES[o.messageType])),
    attribute(SCEP_OIDS.transactionID, typeof o.transactionId === 'string' ? printable(o.transactionId) : o.transactionId),
    attribute(SCEP_OIDS.senderNonce, octets(o.senderNonce)),
  ];
  if (o.recipientNonce) attrs.push(attribute(SCEP_OIDS.recipientNonce, octets(o.recipientNonce)));
  if (o.pkiStatus) attrs.push(attribute(SCEP_OIDS.pkiStatus, printable(PKI_STATUS[o.pkiStatus])));
  if (o.failInfo) attrs.push(attribute(SCEP_OIDS.failInfo, printable(FAIL_INFO[o.failInfo])));
  if (o.failInfoText) attrs.push(attribute(SCEP_OIDS.failInfoText, utf8(o.failInfoText)));
  return buildSignedData({ content: o.envelope, signer: o.signer, digest: o.digest, attributes: attrs, certificates: o.certificates });
}

// ---- client side (simulator, tests, benchmarks) ----

export interface ScepRequest {
  der: Buffer;
  transactionId: string;
  senderNonce: Buffer;
}

export interface BuildRequestOptions {
  messageType: 'PKCSReq' | 'RenewalReq';
  csr: Buffer;
  /** PKCSReq: a self-signed certificate for the CSR's key; RenewalReq: the current identity. */
  signer: Signer;
  /** The CA (or RA) certificate the request is encrypted to. */
  recipient: Buffer;
  cipher?: ContentCipher;
  digest?: DigestName;
  transactionId?: string;
}

export function buildRequest(o: BuildRequestOptions): ScepRequest {
  const transactionId = o.transactionId ?? randomBytes(16).toString('hex').toUpperCase();
  const senderNonce = randomBytes(16);
  const der = buildPkiMessage({
    messageType: o.messageType,
    transactionId,
    senderNonce,
    envelope: sealEnvelope(o.csr, o.recipient, o.cipher ?? 'aes-128-cbc'),
    signer: o.signer,
    digest: o.digest ?? 'sha256',
  });
  return { der, transactionId, senderNonce };
}

export interface CertRepResult {
  status: PkiStatus;
  failInfo?: FailInfo;
  failInfoText?: string;
  /** Issued certificate(s), DER, on SUCCESS. */
  certificates: Buffer[];
}

/**
 * Read a CertRep as a careful client: signed by the CA, same transaction, our nonce echoed, then
 * decrypt the issued certificate with the key the request was signed with.
 */
export function readCertRep(der: Buffer, request: ScepRequest, ca: Buffer, requester: Signer): CertRepResult {
  const msg = parsePkiMessage(der);
  const { signerCert } = checkSignature(msg.signed);
  const caCert = new X509Certificate(ca);
  const signer = new X509Certificate(signerCert);
  if (!signer.raw.equals(caCert.raw) && !(signer.checkIssued(caCert) && signer.verify(caCert.publicKey))) {
    throw new Error('CertRep is not signed by the CA');
  }
  if (msg.messageType !== 'CertRep') throw new Error(`expected CertRep, got messageType ${msg.messageType}`);
  if (msg.transactionId !== request.transactionId) throw new Error('CertRep is for another transaction');
  if (!msg.recipientNonce?.equals(request.senderNonce)) throw new Error('CertRep does not echo our nonce');
  if (!msg.pkiStatus) throw new Error('CertRep has no pkiStatus');
  if (msg.pkiStatus !== 'SUCCESS') {
    return { status: msg.pkiStatus, failInfo: msg.failInfo, failInfoText: msg.failInfoText, certificates: [] };
  }
  if (!msg.envelope) throw new Error('CertRep SUCCESS without content');
  const { content } = openEnvelope(msg.envelope, requester);
  return { status: 'SUCCESS', certificates: readCertsOnly(content) };
}
