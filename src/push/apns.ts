/**
 * The APNs client (PROTOCOL.md §4): wakes devices so they connect and fetch their commands.
 *
 * One long-lived HTTP/2 session for the certificate's topic carries many concurrent streams
 * (bounded by `concurrency` and by the gateway's SETTINGS_MAX_CONCURRENT_STREAMS). The session is
 * kept alive with PINGs and replaced after GOAWAY, an error or a failed ping; it is opened lazily,
 * so a gateway that restarts is simply reconnected to by the next push.
 *
 * Pushes are coalesced: the first enqueue for an enrollment opens a `coalesceMs` window and every
 * later one inside it joins the same push (a push carries no command, it only wakes the device).
 * A token APNs called Unregistered (410) or BadDeviceToken (400) is not pushed again until a
 * TokenUpdate brings a different one. 429 and 5xx are retried with exponential backoff and
 * jitter; 403 is a certificate problem, reported loudly and in `status()`.
 *
 * Never logged: full push tokens, PushMagic, the key.
 */
import { randomInt } from 'node:crypto';
import { connect, constants, type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import type { Logger } from 'pino';
import type { EnrollmentRecord, PushInfo } from '../store/types.js';
import type { Pusher } from './push.js';
import { expiryState, parsePushCertificate, type ExpiryState, type PushCertInfo, type PushCredentials } from './push-cert.js';
import { Unavailable } from '../errors.js';
import { SuppressedTokens, type SuppressionStore } from './suppression.js';

export const APNS_PRODUCTION_URL = 'https://api.push.apple.com';
export const APNS_SANDBOX_URL = 'https://api.sandbox.push.apple.com';

export interface ApnsConfig {
  /** Gateway origin; wins over `environment` (tests, `--apns-url`). */
  url?: string;
  /** Default 'production'. */
  environment?: 'production' | 'sandbox';
  /** The push certificate and its key (PEM). */
  certPem: string;
  keyPem: string;
  /** Must equal the certificate's UID when given; default the UID. */
  topic?: string;
  /** Extra CA(s) to trust for the gateway's certificate (a local stand-in); default the system's. */
  ca?: string | string[];
  /** Most streams in flight at once. Default 500. */
  concurrency?: number;
  /** Coalescing window per enrollment. Default 500 ms. */
  coalesceMs?: number;
  /** `apns-expiration` = now + this; 0 means "deliver now or never". Default 1 day. */
  expirationSeconds?: number;
  /** Per request, including waiting for the answer. Default 15 s. */
  requestTimeoutMs?: number;
  /** TLS + HTTP/2 handshake. Default 10 s. */
  connectTimeoutMs?: number;
  /** PING period while connected. Default 60 s. */
  pingIntervalMs?: number;
  /** Retries after the first attempt for 429, 5xx and connection errors. Default 6. */
  maxRetries?: number;
  /** First backoff step; doubles each retry. Default 500 ms. */
  retryBaseMs?: number;
  /** Longest backoff. Default 30 s. */
  retryMaxMs?: number;
  /** Where refused tokens are kept beyond this process (the store); default memory only. */
  suppression?: SuppressionStore;
}

/** Every outcome, counted since start. */
export interface PushCounters {
  /** Enrollments handed to push() or pushNow(). */
  requested: number;
  /** Requests that joined a push already waiting or in flight. */
  coalesced: number;
  /** 200. */
  sent: number;
  /** 410 Unregistered. */
  unregistered: number;
  /** 400 BadDeviceToken / DeviceTokenNotForTopic. */
  badDeviceToken: number;
  /** Other 4xx: a request APNs found malformed. */
  badRequest: number;
  /** 403: a certificate problem (also TLS handshakes refused by the gateway). */
  certificateRejected: number;
  /** 429 answers (each is retried). */
  tooManyRequests: number;
  /** 5xx answers (each is retried). */
  serverErrors: number;
  /** Connection errors, resets and timeouts (each is retried). */
  networkErrors: number;
  timeouts: number;
  retries: number;
  /** Given up after the last retry. */
  failed: number;
  /** Not pushed: the enrollment has no (valid) token. */
  noToken: number;
  /** Not pushed: the token was answered 410/400 and no new one came since. */
  suppressed: number;
  /** Not pushed: the enrollment's topic is not this certificate's. */
  wrongTopic: number;
  /** Not pushed: the enrollment is inactive (checked out). */
  inactive: number;
  connects: number;
  goaways: number;
}

export type PushResultKind =
  'pushed' | 'no-token' | 'suppressed' | 'wrong-topic' | 'inactive' | 'unregistered' | 'bad-token' | 'rejected' | 'certificate-problem' | 'failed' | 'closed';

/** What happened to one enrollment's push. */
export interface PushResult {
  target: string;
  result: PushResultKind;
  /** APNs' HTTP status, when it answered. */
  status?: number;
  /** APNs' `reason`, or the connection error. */
  reason?: string;
  apnsId?: string;
}

export interface ApnsStatus {
  url: string;
  topic: string;
  certificate: Omit<PushCertInfo, 'topic'> & ExpiryState;
  /** Set by a 403 or a refused TLS handshake; cleared by the next accepted push. */
  certificateProblem?: { at: string; status?: number; reason: string; count: number };
  connected: boolean;
  inFlight: number;
  /** Enrollments waiting for their coalescing window to end (or a free stream). */
  waiting: number;
  suppressedTokens: number;
  counters: PushCounters;
  lastError?: { at: string; message: string };
}

interface Answer {
  status: number;
  reason?: string;
  apnsId?: string;
  retryAfterMs?: number;
}

interface Pending {
  id: string;
  push: PushInfo;
  due: number;
  /** Taken out of the queue early (pushNow, close). */
  cancelled?: boolean;
}

const DAY_MS = 86_400_000;
const TOKEN = /^(?:[0-9a-f]{2}){8,}$/;
// TLS alerts by which a gateway refuses the client certificate (missing, expired, revoked, unknown CA).
// Node gives no code for alerts read after the handshake, only OpenSSL's message.
const CERT_ALERT = /alert (bad certificate|certificate|unknown ca|access denied|unsupported certificate|handshake failure|decrypt error)/i;

/** The APNs client for the imported push certificate (openStoredPushCredentials), or undefined when none has been. */
export function apnsFromCredentials(creds: PushCredentials | undefined, cfg: Omit<ApnsConfig, 'certPem' | 'keyPem'>, log: Logger): ApnsPusher | undefined {
  if (!creds) return undefined;
  return new ApnsPusher({ ...cfg, certPem: creds.certPem, keyPem: creds.keyPem! }, log);
}

/** A token for logs: enough to tell two apart, not enough to push. */
export function tokenHint(token: string): string {
  return `${token.slice(0, 8)}…`;
}

function emptyCounters(): PushCounters {
  return {
    requested: 0,
    coalesced: 0,
    sent: 0,
    unregistered: 0,
    badDeviceToken: 0,
    badRequest: 0,
    certificateRejected: 0,
    tooManyRequests: 0,
    serverErrors: 0,
    networkErrors: 0,
    timeouts: 0,
    retries: 0,
    failed: 0,
    noToken: 0,
    suppressed: 0,
    wrongTopic: 0,
    inactive: 0,
    connects: 0,
    goaways: 0,
  };
}

class ClosedError extends Unavailable {}

/** FIFO of waiters without Array#shift's O(n). */
class Queue<T> {
  private items: T[] = [];
  private head = 0;
  get length(): number {
    return this.items.length - this.head;
  }
  push(v: T): void {
    this.items.push(v);
  }
  peek(): T | undefined {
    return this.head < this.items.length ? this.items[this.head] : undefined;
  }
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const v = this.items[this.head++];
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return v;
  }
  drain(): T[] {
    const out = this.items.slice(this.head);
    this.items = [];
    this.head = 0;
    return out;
  }
}

/** The one HTTP/2 session to the gateway, opened on demand and replaced when it goes away. */
class ApnsConnection {
  private session?: ClientHttp2Session;
  private connecting?: Promise<ClientHttp2Session>;
  private readonly all = new Set<ClientHttp2Session>();
  private closed = false;
  /** The error that ended the last session, for streams that died with it. */
  lastSessionError?: Error;
  /** Sessions that have answered a push: one that ends before any hints at a refused certificate. */
  readonly answered = new WeakSet<ClientHttp2Session>();

  constructor(
    private readonly url: string,
    private readonly tls: { cert: string; key: string; ca?: string | string[] },
    private readonly cfg: { connectTimeoutMs: number; pingIntervalMs: number; pingTimeoutMs: number },
    private readonly counters: PushCounters,
    private readonly log: Logger,
    /** Called when the gateway's stream limit may have changed. */
    private readonly onSettings: () => void,
  ) {}

  get connected(): boolean {
    return !!this.session && !this.session.closed && !this.session.destroyed;
  }

  /** The gateway's current stream limit (unknown before SETTINGS: no limit of its own). */
  remoteMaxStreams(): number {
    return this.connected ? (this.session!.remoteSettings.maxConcurrentStreams ?? Infinity) : Infinity;
  }

  get(): Promise<ClientHttp2Session> {
    if (this.closed) return Promise.reject(new ClosedError('APNs client closed'));
    if (this.session && !this.session.closed && !this.session.destroyed) return Promise.resolve(this.session);
    this.connecting ??= this.open().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private open(): Promise<ClientHttp2Session> {
    return new Promise((resolve, reject) => {
      const s = connect(this.url, {
        cert: this.tls.cert,
        key: this.tls.key,
        ...(this.tls.ca ? { ca: this.tls.ca } : {}),
        settings: { enablePush: false },
        // Assumed until the gateway's SETTINGS arrive.
        peerMaxConcurrentStreams: 100,
      });
      this.all.add(s);
      let ping: NodeJS.Timeout | undefined;
      const timer = setTimeout(() => s.destroy(new Error(`APNs connect timeout after ${this.cfg.connectTimeoutMs} ms`)), this.cfg.connectTimeoutMs);
      const forget = () => {
        if (this.session === s) this.session = undefined;
      };
      s.once('connect', () => {
        clearTimeout(timer);
        this.counters.connects++;
        this.session = s;
        this.log.info({ url: this.url }, 'APNs connected');
        ping = setInterval(() => this.ping(s), this.cfg.pingIntervalMs);
        ping.unref();
        resolve(s);
      });
      s.on('remoteSettings', () => this.onSettings());
      let goaway = false;
      s.on('goaway', (code: number) => {
        // In-flight streams below the last stream id still complete; new ones go to a new session.
        if (goaway) return;
        goaway = true;
        this.counters.goaways++;
        this.log.info({ code }, 'APNs sent GOAWAY: reconnecting on the next push');
        forget();
      });
      s.on('error', (err: Error) => {
        this.lastSessionError = err;
        this.log.warn({ err: { message: err.message, code: (err as NodeJS.ErrnoException).code } }, 'APNs session error');
        forget();
        clearTimeout(timer);
        reject(err);
      });
      s.on('close', () => {
        clearTimeout(timer);
        clearInterval(ping);
        forget();
        this.all.delete(s);
        reject(this.lastSessionError ?? new Error('APNs session closed before connecting'));
      });
    });
  }

  private ping(s: ClientHttp2Session): void {
    if (s.closed || s.destroyed) return;
    // A gateway that stops answering PINGs is gone even if the socket looks open.
    const dead = setTimeout(() => s.destroy(new Error('APNs ping timeout')), this.cfg.pingTimeoutMs);
    dead.unref();
    try {
      s.ping((err) => {
        clearTimeout(dead);
        if (err && !s.destroyed) s.destroy(err);
      });
    } catch {
      clearTimeout(dead);
    }
  }

  async close(graceMs: number): Promise<void> {
    this.closed = true;
    const sessions = [...this.all];
    await Promise.all(
      sessions.map(
        (s) =>
          new Promise<void>((resolve) => {
            if (s.destroyed) return resolve();
            const t = setTimeout(() => s.destroy(), graceMs);
            s.close(() => {
              clearTimeout(t);
              resolve();
            });
          }),
      ),
    );
  }
}

export class ApnsPusher implements Pusher {
  readonly url: string;
  readonly topic: string;
  private readonly cert: PushCertInfo;
  private readonly counters = emptyCounters();
  private readonly conn: ApnsConnection;
  private readonly concurrency: number;
  private readonly coalesceMs: number;
  private readonly expirationSeconds: number;
  private readonly requestTimeoutMs: number;
  private readonly maxRetries: number;
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;
  /** Waiting for their window, by enrollment id ... */
  private readonly pending = new Map<string, Pending>();
  /** ... and in arrival order, so `due` only grows along it and the next one is at the head. */
  private readonly queue = new Queue<Pending>();
  private readonly inFlight = new Map<string, Promise<PushResult>>();
  /** enrollment id -> the token APNs refused. */
  private readonly suppressedTokens: SuppressedTokens;
  /** Enrollments already warned about (no token, wrong topic): later ones go to debug. */
  private readonly warned = new Set<string>();
  private readonly slotWaiters = new Queue<() => void>();
  private readonly sleepers = new Set<{ timer: NodeJS.Timeout; reject: (err: Error) => void }>();
  private readonly idleWaiters: (() => void)[] = [];
  private active = 0;
  private flushTimer?: NodeJS.Timeout;
  private expiryTimer: NodeJS.Timeout;
  private closed = false;
  private certificateProblem?: { at: string; status?: number; reason: string; count: number };
  private lastCertLog = 0;
  private lastError?: { at: string; message: string };

  constructor(
    cfg: ApnsConfig,
    private readonly log: Logger,
  ) {
    const { certPem: _pem, ...info } = parsePushCertificate(cfg.certPem);
    this.cert = info;
    if (cfg.topic && cfg.topic !== this.cert.topic) {
      throw new Error(`APNs topic ${cfg.topic} is not the push certificate's (${this.cert.topic})`);
    }
    this.topic = this.cert.topic;
    this.url = (cfg.url ?? (cfg.environment === 'sandbox' ? APNS_SANDBOX_URL : APNS_PRODUCTION_URL)).replace(/\/+$/, '');
    this.concurrency = cfg.concurrency ?? 500;
    this.coalesceMs = cfg.coalesceMs ?? 500;
    this.expirationSeconds = cfg.expirationSeconds ?? 86_400;
    this.requestTimeoutMs = cfg.requestTimeoutMs ?? 15_000;
    this.maxRetries = cfg.maxRetries ?? 6;
    this.retryBaseMs = cfg.retryBaseMs ?? 500;
    this.retryMaxMs = cfg.retryMaxMs ?? 30_000;
    this.log = log.child({ component: 'apns' });
    this.suppressedTokens = new SuppressedTokens(cfg.suppression, this.log);
    this.conn = new ApnsConnection(
      this.url,
      { cert: cfg.certPem, key: cfg.keyPem, ca: cfg.ca },
      { connectTimeoutMs: cfg.connectTimeoutMs ?? 10_000, pingIntervalMs: cfg.pingIntervalMs ?? 60_000, pingTimeoutMs: this.requestTimeoutMs },
      this.counters,
      this.log,
      () => this.drain(),
    );
    this.log.info({ url: this.url, topic: this.topic, notAfter: this.cert.notAfter.toISOString() }, 'APNs push configured');
    this.checkExpiry();
    this.expiryTimer = setInterval(() => this.checkExpiry(), DAY_MS);
    this.expiryTimer.unref();
  }

  /** Queue a coalesced push for each enrollment; returns at once (Pusher). */
  async push(enrollments: EnrollmentRecord[]): Promise<void> {
    const now = Date.now();
    for (const e of enrollments) {
      const skip = this.admit(e);
      if (skip) continue;
      const push = e.push!;
      const waiting = this.pending.get(e.id);
      if (waiting) {
        waiting.push = push; // the latest TokenUpdate wins
        this.counters.coalesced++;
      } else if (this.inFlight.has(e.id)) {
        this.counters.coalesced++;
      } else {
        const p: Pending = { id: e.id, push, due: now + this.coalesceMs };
        this.pending.set(e.id, p);
        this.queue.push(p);
      }
    }
    this.schedule();
  }

  /** Push now, skipping the window, and wait for APNs' answers (admin "push on demand"). */
  async pushNow(enrollments: EnrollmentRecord[]): Promise<PushResult[]> {
    return Promise.all(
      enrollments.map((e): Promise<PushResult> => {
        const skip = this.admit(e);
        if (skip) return Promise.resolve({ target: e.id, result: skip });
        const running = this.inFlight.get(e.id);
        if (running) {
          this.counters.coalesced++;
          return running;
        }
        const waiting = this.pending.get(e.id);
        if (waiting) {
          waiting.cancelled = true;
          this.pending.delete(e.id);
        }
        return this.start(e.id, e.push!, false);
      }),
    );
  }

  /**
   * A TokenUpdate arrived: a different token than the one APNs refused lifts the suppression.
   * (push() also lifts it when it sees a new token in the record; this frees memory early.)
   */
  tokenUpdated(enrollmentId: string, token: string): void {
    const refused = this.suppressedTokens.get(enrollmentId);
    if (refused !== undefined && refused !== token.toLowerCase()) {
      this.suppressedTokens.lift(enrollmentId);
      this.log.info({ enrollment: enrollmentId }, 'new push token: pushing again');
    }
  }

  /** Whether pushes to this enrollment's current token are stopped. */
  isSuppressed(enrollmentId: string, token: string): boolean {
    return this.suppressedTokens.get(enrollmentId) === token.toLowerCase();
  }

  status(now: Date = new Date()): ApnsStatus {
    const c = this.cert;
    return {
      url: this.url,
      topic: this.topic,
      certificate: {
        subject: c.subject,
        issuer: c.issuer,
        serialNumber: c.serialNumber,
        notBefore: c.notBefore,
        notAfter: c.notAfter,
        fingerprint256: c.fingerprint256,
        ...expiryState(c.notAfter, now),
      },
      ...(this.certificateProblem ? { certificateProblem: { ...this.certificateProblem } } : {}),
      connected: this.conn.connected,
      inFlight: this.inFlight.size,
      waiting: this.pending.size,
      suppressedTokens: this.suppressedTokens.size,
      counters: { ...this.counters },
      ...(this.lastError ? { lastError: { ...this.lastError } } : {}),
    };
  }

  /** Resolves once nothing waits or is in flight (tests, benchmarks, shutdown). */
  whenIdle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stop: drops waiting pushes, cancels retries, closes the session (in-flight streams get `graceMs`). */
  async close(graceMs = 2000): Promise<void> {
    this.closed = true;
    clearTimeout(this.flushTimer);
    clearInterval(this.expiryTimer);
    this.suppressedTokens.stop();
    this.pending.clear();
    this.queue.drain();
    for (const s of this.sleepers) {
      clearTimeout(s.timer);
      s.reject(new ClosedError('APNs client closed'));
    }
    this.sleepers.clear();
    // Waiters wake holding a slot, see `closed` and give it back.
    for (const w of this.slotWaiters.drain()) {
      this.active++;
      w();
    }
    await this.conn.close(graceMs);
    await Promise.allSettled([...this.inFlight.values()]);
    this.notifyIdle();
  }

  // --- admission -------------------------------------------------------------------------

  /** Why this enrollment is not pushed, or undefined to push it. Counts and reports skips. */
  private admit(e: EnrollmentRecord): PushResultKind | undefined {
    this.counters.requested++;
    if (this.closed) return 'closed';
    if (!e.active) {
      this.counters.inactive++;
      return 'inactive';
    }
    const p = e.push;
    if (!p || !p.pushMagic || !TOKEN.test(p.token)) {
      this.counters.noToken++;
      this.report(e.id, 'no push token (no TokenUpdate yet, or an invalid one): not pushed');
      return 'no-token';
    }
    if (p.topic !== this.topic) {
      this.counters.wrongTopic++;
      this.report(e.id, `enrolled under topic ${p.topic}, not the push certificate's ${this.topic}: not pushed`);
      return 'wrong-topic';
    }
    const refused = this.suppressedTokens.get(e.id);
    if (refused !== undefined) {
      if (refused === p.token) {
        this.counters.suppressed++;
        return 'suppressed';
      }
      this.suppressedTokens.lift(e.id); // a TokenUpdate brought a new token
    }
    return undefined;
  }

  private report(enrollmentId: string, msg: string): void {
    if (this.warned.has(enrollmentId)) {
      this.log.debug({ enrollment: enrollmentId }, msg);
    } else {
      if (this.warned.size < 100_000) this.warned.add(enrollmentId);
      this.log.warn({ enrollment: enrollmentId }, msg);
    }
  }

  // --- scheduling --------------------------------------------------------------------------

  private schedule(): void {
    if (this.flushTimer || this.closed) return;
    const first = this.head();
    if (!first) return;
    if (!this.hasFreeSlot()) return; // a finishing stream calls drain()
    this.flushTimer = setTimeout(
      () => {
        this.flushTimer = undefined;
        this.pump();
      },
      Math.max(0, first.due - Date.now()),
    );
  }

  /** Start every pending push whose window is over, while streams are free. */
  private pump(): void {
    const now = Date.now();
    for (let p = this.head(); p && p.due <= now && this.hasFreeSlot(); p = this.head()) {
      this.queue.shift();
      this.pending.delete(p.id);
      // APNs may have refused this token while it waited (an on-demand push).
      if (this.suppressedTokens.get(p.id) === p.push.token) {
        this.counters.suppressed++;
        continue;
      }
      this.active++; // taken here so the loop sees it
      void this.start(p.id, p.push, true);
    }
    this.schedule();
    this.notifyIdle();
  }

  /** The oldest entry still waiting. */
  private head(): Pending | undefined {
    let p = this.queue.peek();
    while (p?.cancelled) {
      this.queue.shift();
      p = this.queue.peek();
    }
    return p;
  }

  private limit(): number {
    return Math.max(1, Math.min(this.concurrency, this.conn.remoteMaxStreams()));
  }

  private hasFreeSlot(): boolean {
    return this.active < this.limit() && this.slotWaiters.length === 0;
  }

  private acquire(): Promise<void> | undefined {
    if (this.closed) return Promise.reject(new ClosedError('APNs client closed'));
    if (this.hasFreeSlot()) {
      this.active++;
      return undefined;
    }
    return new Promise((resolve) => this.slotWaiters.push(resolve));
  }

  private release(): void {
    this.active--;
    this.drain();
  }

  /** Free streams go first to retries and on-demand pushes, then to the coalesced queue. */
  private drain(): void {
    while (this.slotWaiters.length > 0 && this.active < this.limit()) {
      this.active++;
      this.slotWaiters.shift()!();
    }
    if (this.slotWaiters.length === 0 && this.active < this.limit() && !this.flushTimer) this.pump();
  }

  private start(id: string, push: PushInfo, haveSlot: boolean): Promise<PushResult> {
    const p = this.deliver(id, push, haveSlot).finally(() => {
      this.inFlight.delete(id);
      this.notifyIdle();
    });
    this.inFlight.set(id, p);
    return p;
  }

  private isIdle(): boolean {
    return this.pending.size === 0 && this.inFlight.size === 0;
  }

  private notifyIdle(): void {
    if (!this.isIdle()) return;
    for (const w of this.idleWaiters.splice(0)) w();
  }

  // --- delivery ----------------------------------------------------------------------------

  private async deliver(id: string, push: PushInfo, haveSlot: boolean): Promise<PushResult> {
    for (let attempt = 0; ; attempt++) {
      let answer: Answer | Error;
      try {
        if (!haveSlot) await this.acquire();
      } catch {
        return { target: id, result: 'closed' };
      }
      haveSlot = false;
      if (this.closed) {
        this.release();
        return { target: id, result: 'closed' };
      }
      try {
        answer = await this.send(push);
      } finally {
        this.release();
      }
      const final = this.classify(id, push, answer);
      if (final) return final;
      if (this.closed) return { target: id, result: 'closed' };
      if (attempt >= this.maxRetries) {
        this.counters.failed++;
        const reason = answer instanceof Error ? answer.message : `${answer.status} ${answer.reason ?? ''}`.trim();
        this.log.warn({ enrollment: id, attempts: attempt + 1, reason }, 'APNs push failed: giving up');
        return { target: id, result: 'failed', reason, ...(answer instanceof Error ? {} : { status: answer.status }) };
      }
      this.counters.retries++;
      try {
        await this.sleep(this.backoff(attempt, answer instanceof Error ? undefined : answer.retryAfterMs));
      } catch {
        return { target: id, result: 'closed' };
      }
    }
  }

  /** Exponential backoff with jitter (half fixed, half random), at least any Retry-After. */
  private backoff(attempt: number, retryAfterMs?: number): number {
    const cap = Math.min(this.retryMaxMs, this.retryBaseMs * 2 ** attempt);
    const half = Math.floor(cap / 2);
    return Math.max(retryAfterMs ?? 0, half + (cap - half > 0 ? randomInt(0, cap - half + 1) : 0));
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new ClosedError('APNs client closed'));
      const entry = {
        timer: setTimeout(() => {
          this.sleepers.delete(entry);
          resolve();
        }, ms),
        reject,
      };
      this.sleepers.add(entry);
    });
  }

  /** A final result, or undefined to retry. Counts every answer. */
  private classify(id: string, push: PushInfo, a: Answer | Error): PushResult | undefined {
    if (a instanceof Error) {
      const code = (a as NodeJS.ErrnoException).code ?? '';
      if (a instanceof ClosedError) return { target: id, result: 'closed' };
      if (CERT_ALERT.test(a.message)) {
        const alert = /(?:tlsv1\d?|sslv3) alert [a-z ]+/i.exec(a.message)?.[0] ?? a.message;
        this.counters.certificateRejected++;
        this.certificateRefused(undefined, `TLS handshake refused: ${alert}`);
        return { target: id, result: 'certificate-problem', reason: alert };
      }
      this.counters.networkErrors++;
      if (code === 'ETIMEDOUT') this.counters.timeouts++;
      this.lastError = { at: new Date().toISOString(), message: a.message };
      return undefined;
    }
    const base = { target: id, status: a.status, ...(a.reason ? { reason: a.reason } : {}), ...(a.apnsId ? { apnsId: a.apnsId } : {}) };
    if (a.status === 200) {
      this.counters.sent++;
      if (this.certificateProblem) {
        this.log.info('APNs accepts the push certificate again');
        this.certificateProblem = undefined;
      }
      this.log.debug({ enrollment: id, apnsId: a.apnsId }, 'pushed');
      return { ...base, result: 'pushed' };
    }
    if (a.status === 410) {
      this.counters.unregistered++;
      this.suppress(id, push.token);
      this.log.info({ enrollment: id, token: tokenHint(push.token) }, 'APNs: token unregistered (410): not pushing it until a new TokenUpdate');
      return { ...base, result: 'unregistered' };
    }
    if (a.status === 400 && (a.reason === 'BadDeviceToken' || a.reason === 'DeviceTokenNotForTopic')) {
      this.counters.badDeviceToken++;
      this.suppress(id, push.token);
      this.log.warn(
        { enrollment: id, token: tokenHint(push.token), reason: a.reason },
        'APNs refused the device token (400): not pushing it until a new TokenUpdate',
      );
      return { ...base, result: 'bad-token' };
    }
    if (a.status === 403) {
      this.counters.certificateRejected++;
      this.certificateRefused(403, a.reason ?? 'Forbidden');
      return { ...base, result: 'certificate-problem' };
    }
    if (a.status === 429) {
      this.counters.tooManyRequests++;
      return undefined;
    }
    if (a.status >= 500) {
      this.counters.serverErrors++;
      this.lastError = { at: new Date().toISOString(), message: `${a.status} ${a.reason ?? ''}`.trim() };
      return undefined;
    }
    // Any other 4xx means our request is wrong: repeating it cannot help.
    this.counters.badRequest++;
    this.lastError = { at: new Date().toISOString(), message: `${a.status} ${a.reason ?? ''}`.trim() };
    this.log.error({ enrollment: id, status: a.status, reason: a.reason }, 'APNs rejected the push request');
    return { ...base, result: 'rejected' };
  }

  private suppress(id: string, token: string): void {
    this.suppressedTokens.suppress(id, token);
  }

  /** Resolves once the suppressions kept in the store were read (a restart, another replica's refusals). */
  suppressionsLoaded(): Promise<void> {
    return this.suppressedTokens.loaded();
  }

  /** Loud, but at most one log line a minute while the problem lasts. */
  private certificateRefused(status: number | undefined, reason: string): void {
    const at = new Date();
    const count = (this.certificateProblem?.count ?? 0) + 1;
    this.certificateProblem = { at: at.toISOString(), ...(status ? { status } : {}), reason, count };
    this.lastError = { at: at.toISOString(), message: `certificate: ${reason}` };
    if (at.getTime() - this.lastCertLog >= 60_000) {
      this.lastCertLog = at.getTime();
      this.log.error(
        { status, reason, topic: this.topic, notAfter: this.cert.notAfter.toISOString(), refusals: count },
        'APNs REFUSES THE PUSH CERTIFICATE: no device can be woken until it is fixed (renew or re-import it: orchard push-cert import)',
      );
    }
  }

  private checkExpiry(): void {
    const s = expiryState(this.cert.notAfter);
    if (s.expired) this.log.error({ topic: this.topic, notAfter: this.cert.notAfter.toISOString(), daysLeft: s.daysLeft }, s.warning!);
    else if (s.warning) this.log.warn({ topic: this.topic, notAfter: this.cert.notAfter.toISOString(), daysLeft: s.daysLeft }, s.warning);
  }

  /** One POST; resolves with APNs' answer or the error that prevented one (never rejects). */
  private async send(push: PushInfo): Promise<Answer | Error> {
    let session: ClientHttp2Session;
    try {
      session = await this.conn.get();
    } catch (err) {
      return err as Error;
    }
    const body = `{"mdm":${JSON.stringify(push.pushMagic)}}`;
    const headers: OutgoingHttpHeaders = {
      ':method': 'POST',
      ':path': `/3/device/${push.token}`,
      'apns-topic': this.topic,
      'apns-push-type': 'mdm',
      'apns-priority': '10',
      'apns-expiration': String(this.expirationSeconds > 0 ? Math.floor(Date.now() / 1000) + this.expirationSeconds : 0),
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
    };
    return new Promise((resolve) => {
      let done = false;
      const finish = (a: Answer | Error) => {
        if (done) return;
        done = true;
        resolve(a);
      };
      let stream;
      try {
        stream = session.request(headers, { endStream: false });
      } catch (err) {
        // The session closed between get() and request() (GOAWAY): retried on a new one.
        finish(err as Error);
        return;
      }
      let status = 0;
      let resHeaders: IncomingHttpHeaders = {};
      const chunks: Buffer[] = [];
      stream.setTimeout(this.requestTimeoutMs, () => {
        const err: NodeJS.ErrnoException = new Error(`APNs request timeout after ${this.requestTimeoutMs} ms`);
        err.code = 'ETIMEDOUT';
        finish(err);
        stream.close(constants.NGHTTP2_CANCEL);
      });
      stream.on('response', (h) => {
        resHeaders = h;
        status = Number(h[':status']);
      });
      stream.on('data', (c: Buffer) => {
        if (chunks.length < 16) chunks.push(c);
      });
      const answered = () => {
        if (done) return;
        if (!status) {
          // The connection ended under the stream (node reports no error for a plain close).
          const first = !this.conn.answered.has(session);
          finish(new Error(`APNs closed the connection without answering${first ? ' (right after connecting: is the push certificate refused?)' : ''}`));
          return;
        }
        if (!this.conn.answered.has(session)) this.conn.answered.add(session);
        finish(this.answer(status, resHeaders, chunks));
      };
      stream.on('end', answered);
      stream.on('error', (err: Error) => {
        // A stream cancelled because its session died carries the session's error.
        const cause = (err as { cause?: unknown }).cause;
        finish(cause instanceof Error ? cause : this.conn.lastSessionError && session.destroyed ? this.conn.lastSessionError : err);
      });
      stream.on('close', () => {
        if (status) answered();
        else
          finish(
            this.conn.lastSessionError && session.destroyed
              ? this.conn.lastSessionError
              : new Error(`APNs stream closed without an answer (code ${stream.rstCode})`),
          );
      });
      stream.end(body);
    });
  }

  private answer(status: number, h: IncomingHttpHeaders, chunks: Buffer[]): Answer {
    const apnsId = typeof h['apns-id'] === 'string' ? h['apns-id'] : undefined;
    let reason: string | undefined;
    if (chunks.length > 0) {
      try {
        const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { reason?: unknown };
        if (typeof parsed.reason === 'string') reason = parsed.reason;
      } catch {
        // A body that is not APNs' JSON (a proxy's error page): the status says enough.
      }
    }
    const ra = h['retry-after'];
    const retryAfterMs = typeof ra === 'string' && /^\d+$/.test(ra) ? Number(ra) * 1000 : undefined;
    return { status, ...(reason ? { reason } : {}), ...(apnsId ? { apnsId } : {}), ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
  }
}
