/**
 * A local stand-in for Apple's push gateway, for tests and benchmarks: HTTP/2 over TLS that
 * requires a client certificate chaining to the given CA, checks requests the way APNs does
 * (path, method, headers, topic against the certificate's UID) and answers with APNs' status
 * codes, `apns-id` header and `{"reason": ...}` bodies. Answers for particular tokens can be
 * scripted (410, 429, 5xx, delays, silence).
 */
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import {
  constants,
  createSecureServer,
  type Http2SecureServer,
  type Http2Session,
  type IncomingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { createCA, issueCertificate, type CertifiedKey } from '../identity/ca.js';

export interface StandInAnswer {
  status: number;
  reason?: string;
  /** For 410: when the token stopped being valid (ms since epoch). */
  timestamp?: number;
  /** Wait this long before answering. */
  delayMs?: number;
  /** Never answer (the client's request timeout must fire). */
  silent?: boolean;
  headers?: Record<string, string>;
}

export interface ReceivedPush {
  token: string;
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** UID of the client certificate the push came with. */
  clientTopic?: string;
  at: number;
}

export interface StandInOptions {
  /** CA(s) a client certificate must chain to. */
  clientCa: string | string[];
  host?: string;
  /** 0 (default): any free port. */
  port?: number;
  /** The server's TLS identity; default a fresh one for `localhost` and 127.0.0.1. */
  tls?: StandInTls;
  /** Advertised SETTINGS_MAX_CONCURRENT_STREAMS (APNs uses about 1,000). */
  maxConcurrentStreams?: number;
  /** Keep every push in `received` (default true; benchmarks turn it off). */
  record?: boolean;
  /** Close sessions idle this long, as APNs does with idle connections (default never). */
  idleTimeoutMs?: number;
  /**
   * A client certificate that does not chain to `clientCa`: 'tls' (default) ends the connection
   * in the handshake; 'forbidden' accepts it and answers every push 403 BadCertificate.
   */
  unauthorized?: 'tls' | 'forbidden';
  /** Decide the answer for a push the stand-in found valid; undefined means 200. */
  answer?: (push: ReceivedPush) => StandInAnswer | undefined;
}

export interface StandInTls {
  /** What a client must trust. */
  caPem: string;
  certPem: string;
  keyPem: string;
}

/** A CA and a server certificate for localhost / 127.0.0.1 / ::1 (subjectAltName). */
export function createStandInTls(): StandInTls {
  const ca: CertifiedKey = createCA({ commonName: 'APNs stand-in CA' });
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const cert = issueCertificate(ca, {
    publicKey: privateKey,
    commonName: 'localhost',
    days: 30,
    extKeyUsage: ['serverAuth'],
    altNames: { dns: ['localhost'], ip: ['127.0.0.1', '::1'] },
  });
  return {
    caPem: ca.certPem,
    certPem: cert.certPem,
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

const PATH = /^\/3\/device\/([^/?]+)$/;
const HEX_TOKEN = /^[0-9a-fA-F]{64,200}$/;
const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const PUSH_TYPES = new Set(['alert', 'background', 'location', 'voip', 'complication', 'fileprovider', 'mdm', 'liveactivity', 'pushtotalk']);
const MAX_PAYLOAD = 4096;

export class ApnsStandIn {
  readonly received: ReceivedPush[] = [];
  /** Pushes answered, whatever the answer. */
  answered = 0;
  /** 200 answers. */
  accepted = 0;
  inFlight = 0;
  maxInFlight = 0;
  /** TLS sessions accepted so far (a reconnect adds one). */
  sessionsOpened = 0;
  pingsReceived = 0;
  /** Tokens APNs considers gone: answered 410 Unregistered. */
  readonly unregistered = new Map<string, number>();
  /** Answers to give, in order, to the next pushes for a token; then the default applies. */
  readonly script = new Map<string, StandInAnswer[]>();
  private readonly sessions = new Set<ServerHttp2Session>();
  private readonly silentStreams = new Set<ServerHttp2Stream>();
  private readonly clients = new WeakMap<Http2Session, { authorized: boolean; topic?: string }>();

  private constructor(
    private readonly server: Http2SecureServer,
    readonly opts: StandInOptions,
    readonly tls: StandInTls,
    readonly port: number,
    readonly host: string,
  ) {}

  /** Where to point the APNs client (use `tls.caPem` as its CA). */
  get url(): string {
    return `https://localhost:${this.port}`;
  }

  static async start(opts: StandInOptions): Promise<ApnsStandIn> {
    const tls = opts.tls ?? createStandInTls();
    const server = createSecureServer({
      cert: tls.certPem,
      key: tls.keyPem,
      ca: opts.clientCa,
      requestCert: true,
      rejectUnauthorized: opts.unauthorized !== 'forbidden',
      allowHTTP1: false,
      settings: { maxConcurrentStreams: opts.maxConcurrentStreams ?? 1000 },
    });
    const host = opts.host ?? '127.0.0.1';
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port ?? 0, host, () => resolve());
    });
    const standIn = new ApnsStandIn(server, opts, tls, (server.address() as AddressInfo).port, host);
    server.on('session', (s) => standIn.onSession(s));
    server.on('stream', (stream, headers) => standIn.onStream(stream, headers));
    return standIn;
  }

  /** Make later pushes to `token` answer 410 Unregistered. */
  unregister(token: string, at = Date.now()): void {
    this.unregistered.set(token.toLowerCase(), at);
  }

  /** Queue answers for the next pushes to `token`. */
  answerNext(token: string, ...answers: StandInAnswer[]): void {
    const t = token.toLowerCase();
    this.script.set(t, [...(this.script.get(t) ?? []), ...answers]);
  }

  pushesFor(token: string): ReceivedPush[] {
    const t = token.toLowerCase();
    return this.received.filter((p) => p.token === t);
  }

  /** Send GOAWAY on every open session (as APNs does before maintenance) and close them. */
  goawayAll(): void {
    for (const s of this.sessions) {
      s.goaway(constants.NGHTTP2_NO_ERROR);
      s.close();
    }
  }

  /** Stop listening and drop every connection at once (a crash, not a drain). */
  async close(): Promise<void> {
    for (const s of this.silentStreams) s.close(constants.NGHTTP2_CANCEL);
    for (const s of this.sessions) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** The same stand-in (port, certificate, options) started again after `close()`. */
  restart(): Promise<ApnsStandIn> {
    return ApnsStandIn.start({ ...this.opts, tls: this.tls, port: this.port, host: this.host });
  }

  /** Who is on the other end, read once per session (getPeerCertificate is costly). */
  private clientOf(s: Http2Session): { authorized: boolean; topic?: string } {
    let c = this.clients.get(s);
    if (!c) {
      const socket = s.socket as TLSSocket;
      const uid = socket.authorized ? socket.getPeerCertificate()?.subject?.UID : undefined;
      c = { authorized: socket.authorized, topic: Array.isArray(uid) ? uid[0] : uid };
      this.clients.set(s, c);
    }
    return c;
  }

  private onSession(s: ServerHttp2Session): void {
    this.sessionsOpened++;
    this.sessions.add(s);
    s.on('close', () => this.sessions.delete(s));
    s.on('error', () => undefined); // a client that goes away mid-stream is not our concern
    s.on('ping', () => {
      this.pingsReceived++;
    });
    if (this.opts.idleTimeoutMs)
      s.setTimeout(this.opts.idleTimeoutMs, () => {
        s.goaway(constants.NGHTTP2_NO_ERROR);
        s.close();
      });
  }

  private onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    stream.on('error', () => undefined);
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_PAYLOAD + 1) chunks.push(c);
    });
    stream.on('end', () => {
      this.inFlight++;
      if (this.inFlight > this.maxInFlight) this.maxInFlight = this.inFlight;
      const client = stream.session ? this.clientOf(stream.session) : { authorized: false };
      const push: ReceivedPush = {
        token: '',
        method: String(headers[':method']),
        path: String(headers[':path']),
        headers,
        body: Buffer.concat(chunks).toString('utf8'),
        clientTopic: client.topic,
        at: Date.now(),
      };
      const apnsId = typeof headers['apns-id'] === 'string' ? headers['apns-id'] : randomUUID().toUpperCase();
      const answer = (client.authorized ? undefined : { status: 403, reason: 'BadCertificate' }) ?? this.check(push, headers, size) ?? this.decide(push);
      if (answer.status === 200) this.accepted++;
      if (answer.silent) {
        this.silentStreams.add(stream);
        stream.on('close', () => {
          this.silentStreams.delete(stream);
          this.inFlight--;
        });
        return;
      }
      const send = () => {
        this.inFlight--;
        this.answered++;
        if (stream.destroyed || stream.closed) return;
        const out: Record<string, string | number> = { ':status': answer.status, 'apns-id': apnsId, ...answer.headers };
        if (answer.status === 200) {
          stream.respond(out, { endStream: true });
          return;
        }
        const body = JSON.stringify(answer.timestamp !== undefined ? { reason: answer.reason, timestamp: answer.timestamp } : { reason: answer.reason });
        stream.respond({ ...out, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
        stream.end(body);
      };
      if (answer.delayMs) setTimeout(send, answer.delayMs);
      else send();
    });
  }

  /** APNs' own request checks, in roughly its order. */
  private check(push: ReceivedPush, headers: IncomingHttpHeaders, size: number): StandInAnswer | undefined {
    const m = PATH.exec(push.path);
    if (!m) return { status: 404, reason: 'BadPath' };
    if (push.method !== 'POST') return { status: 405, reason: 'MethodNotAllowed' };
    push.token = m[1]!.toLowerCase();
    if (this.opts.record !== false) this.received.push(push);
    if (!HEX_TOKEN.test(m[1]!)) return { status: 400, reason: 'BadDeviceToken' };
    const topic = headers['apns-topic'];
    if (!topic) return { status: 400, reason: 'MissingTopic' };
    if (topic !== push.clientTopic) return { status: 400, reason: 'TopicDisallowed' };
    const type = headers['apns-push-type'];
    if (type !== undefined && !PUSH_TYPES.has(String(type))) return { status: 400, reason: 'InvalidPushType' };
    const prio = headers['apns-priority'];
    if (prio !== undefined && !['1', '5', '10'].includes(String(prio))) return { status: 400, reason: 'BadPriority' };
    const exp = headers['apns-expiration'];
    if (exp !== undefined && !/^\d+$/.test(String(exp))) return { status: 400, reason: 'BadExpirationDate' };
    const id = headers['apns-id'];
    if (id !== undefined && !UUID.test(String(id))) return { status: 400, reason: 'BadMessageId' };
    if (size === 0) return { status: 400, reason: 'PayloadEmpty' };
    if (size > MAX_PAYLOAD) return { status: 413, reason: 'PayloadTooLarge' };
    return undefined;
  }

  private decide(push: ReceivedPush): StandInAnswer {
    const queued = this.script.get(push.token);
    if (queued?.length) {
      const a = queued.shift()!;
      if (queued.length === 0) this.script.delete(push.token);
      return a;
    }
    const gone = this.unregistered.get(push.token);
    if (gone !== undefined) return { status: 410, reason: 'Unregistered', timestamp: gone };
    return this.opts.answer?.(push) ?? { status: 200 };
  }
}
