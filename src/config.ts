/**
 * Server configuration: defaults, then a YAML file (`--config`), then command-line flags.
 * Relative paths in the file are relative to the file; on the command line, to the cwd.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { Malformed } from './errors.js';
import { parseCommitStatusTarget, type CommitStatusConfig } from './report/commit-status.js';

export interface ServerConfig {
  listen: { host: string; port: number };
  dataDir: string;
  /** Where the store lives: a `postgres://` URL (see src/store/open.ts); absent: LevelDB in dataDir. */
  store?: string;
  repo?: string;
  branch: string;
  publicUrl?: string;
  trustCa: string[];
  certHeader?: string;
  tlsCert?: string;
  tlsKey?: string;
  maxBodyBytes: number;
  /** All request headers must arrive within this long of the request's first byte (else 408, closed). */
  headersTimeoutMs: number;
  /** Once the headers are in, the body must arrive within this long (else 408, closed). */
  requestTimeoutMs: number;
  /** An idle keep-alive connection is closed after this long. */
  keepAliveTimeoutMs: number;
  /** Connections beyond this many are closed as they are accepted. */
  maxConnections: number;
  /** An exact repeat of a state-changing check-in within this long is answered 200 and not applied (0: off). */
  replayWindowMs: number;
  /** How many check-in messages the replay window remembers at most (oldest forgotten first). */
  replayCacheSize: number;
  /** How long finished commands are kept before compaction. */
  retentionMs: number;
  /** How often the fleet repository is fetched (0: only on webhook / file changes). */
  pollIntervalMs: number;
  /** How often every device is asked for ProfileList + DeviceInformation (0: never). */
  driftIntervalMs: number;
  /** Heap (MB) of the process that validates each revision of the fleet repository (default 512). */
  validationMemoryMb?: number;
  /** Time limit of that validation (default 2 min). */
  validationTimeoutMs?: number;
  /** Folder of ProfileManifests-format manifests that custom preference domains are checked against. */
  manifests?: string;
  /** URLs that receive signed JSON events (enrolled, checked out, command failed, revision applied). */
  eventWebhooks: string[];
  /** APNs endpoint: an explicit URL (tests, proxies) or Apple's production/sandbox. */
  apnsUrl?: string;
  apnsEnv?: 'production' | 'sandbox';
  /** Directory of secret values (`${secret:NAME}` reads file NAME); default <dataDir>/secrets. */
  secretsDir?: string;
  /** File holding the material key that seals secrets in the store (else ORCHARD_MATERIAL_KEY, else <dataDir>/material.key). */
  materialKeyFile?: string;
  logLevel: string;
  /** When another certificate may take over an enrolled device (see README, Security model). */
  reenroll: ReenrollPolicy;
  /** How often the leader syncs each imported ABM server token's devices (0: never). */
  abmSyncIntervalMs: number;
  /** How long the leader's lease lasts unrenewed: how long a dead leader keeps the replicas waiting (renewed at a third of it). */
  leaderLeaseMs: number;
  /** Apple's device enrollment service, or a stand-in (tests). */
  abmUrl?: string;
  /** Post each applied revision's rollout state to the git host (token: ORCHARD_COMMIT_STATUS_TOKEN or tokenFile). */
  commitStatus?: CommitStatusConfig & { tokenFile?: string };
}

export const REENROLL_POLICIES = ['allow', 'same-serial-challenge', 'after-checkout'] as const;
export type ReenrollPolicy = (typeof REENROLL_POLICIES)[number];

export const DEFAULTS: ServerConfig = {
  listen: { host: '127.0.0.1', port: 8080 },
  dataDir: './data',
  branch: 'main',
  trustCa: [],
  maxBodyBytes: 8 * 1024 * 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  // Longer than a device's pause between the requests of one command session.
  keepAliveTimeoutMs: 65_000,
  maxConnections: 10_000,
  replayWindowMs: 24 * 3600_000,
  replayCacheSize: 100_000,
  retentionMs: 7 * 24 * 3600 * 1000,
  pollIntervalMs: 60_000,
  driftIntervalMs: 4 * 3600_000,
  abmSyncIntervalMs: 15 * 60_000,
  leaderLeaseMs: 15_000,
  eventWebhooks: [],
  logLevel: 'info',
  reenroll: 'same-serial-challenge',
};

export class ConfigError extends Malformed {}

/** Keys accepted in the YAML file, mapped to the flag they mirror. */
const FILE_KEYS = [
  'listen',
  'dataDir',
  'store',
  'repo',
  'branch',
  'publicUrl',
  'trustCa',
  'certHeader',
  'tlsCert',
  'tlsKey',
  'maxBodyBytes',
  'headersTimeout',
  'requestTimeout',
  'keepAliveTimeout',
  'maxConnections',
  'replayWindow',
  'replayCacheSize',
  'retention',
  'pollInterval',
  'driftInterval',
  'abmSyncInterval',
  'leaderLease',
  'abmUrl',
  'validationMemory',
  'validationTimeout',
  'manifests',
  'secretsDir',
  'materialKeyFile',
  'apnsUrl',
  'apnsEnv',
  'eventWebhooks',
  'logLevel',
  'reenroll',
  'commitStatus',
  'commitStatusUrl',
  'commitStatusTokenFile',
] as const;

export function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value) ?? /^()()(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new ConfigError(`listen: "${value}" is not HOST:PORT`);
  return { host: m[1] || m[2] || '127.0.0.1', port };
}

/** "7d", "12h", "30m", "45s" or milliseconds. */
export function parseDuration(value: string | number, what: string): number {
  if (typeof value === 'number') return value;
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/.exec(value.trim());
  if (!m) throw new ConfigError(`${what}: "${value}" is not a duration like 7d, 12h, 30m`);
  const unit = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 }[(m[2] ?? 'ms') as 'ms'];
  return Number(m[1]) * unit;
}

export interface FlagValues {
  config?: string;
  listen?: string;
  dataDir?: string;
  store?: string;
  repo?: string;
  branch?: string;
  publicUrl?: string;
  trustCa?: string[];
  certHeader?: string;
  tlsCert?: string;
  tlsKey?: string;
  maxBodyBytes?: string;
  headersTimeout?: string;
  requestTimeout?: string;
  keepAliveTimeout?: string;
  maxConnections?: string;
  replayWindow?: string;
  replayCacheSize?: string;
  retention?: string;
  pollInterval?: string;
  driftInterval?: string;
  abmSyncInterval?: string;
  leaderLease?: string;
  abmUrl?: string;
  validationMemory?: string;
  validationTimeout?: string;
  manifests?: string;
  secretsDir?: string;
  materialKeyFile?: string;
  apnsUrl?: string;
  apnsEnv?: string;
  eventWebhook?: string[];
  logLevel?: string;
  reenroll?: string;
  commitStatus?: string;
  commitStatusUrl?: string;
  commitStatusTokenFile?: string;
}

export function loadConfig(flags: FlagValues): ServerConfig {
  const cfg: ServerConfig = { ...DEFAULTS, trustCa: [], eventWebhooks: [] };
  if (flags.config) applyFile(cfg, flags.config);
  if (flags.listen) cfg.listen = parseListen(flags.listen);
  if (flags.dataDir) cfg.dataDir = resolve(flags.dataDir);
  if (flags.store) cfg.store = storeUrl(flags.store, 'store');
  if (flags.repo) cfg.repo = /^[a-z+]+:\/\/|^git@/.test(flags.repo) ? flags.repo : resolve(flags.repo);
  if (flags.branch) cfg.branch = flags.branch;
  if (flags.publicUrl) cfg.publicUrl = flags.publicUrl;
  if (flags.trustCa?.length) cfg.trustCa = flags.trustCa.map((p) => resolve(p));
  if (flags.certHeader) cfg.certHeader = flags.certHeader;
  if (flags.tlsCert) cfg.tlsCert = resolve(flags.tlsCert);
  if (flags.tlsKey) cfg.tlsKey = resolve(flags.tlsKey);
  if (flags.maxBodyBytes) cfg.maxBodyBytes = positiveInt(flags.maxBodyBytes, 'max-body-bytes');
  if (flags.headersTimeout) cfg.headersTimeoutMs = positiveDuration(flags.headersTimeout, 'headers-timeout');
  if (flags.requestTimeout) cfg.requestTimeoutMs = positiveDuration(flags.requestTimeout, 'request-timeout');
  if (flags.keepAliveTimeout) cfg.keepAliveTimeoutMs = positiveDuration(flags.keepAliveTimeout, 'keep-alive-timeout');
  if (flags.maxConnections) cfg.maxConnections = positiveInt(flags.maxConnections, 'max-connections');
  if (flags.replayWindow) cfg.replayWindowMs = parseDuration(flags.replayWindow, 'replay-window');
  if (flags.replayCacheSize) cfg.replayCacheSize = positiveInt(flags.replayCacheSize, 'replay-cache-size');
  if (flags.retention) cfg.retentionMs = parseDuration(flags.retention, 'retention');
  if (flags.pollInterval) cfg.pollIntervalMs = parseDuration(flags.pollInterval, 'poll-interval');
  if (flags.driftInterval) cfg.driftIntervalMs = parseDuration(flags.driftInterval, 'drift-interval');
  if (flags.abmSyncInterval) cfg.abmSyncIntervalMs = parseDuration(flags.abmSyncInterval, 'abm-sync-interval');
  if (flags.leaderLease) cfg.leaderLeaseMs = positiveDuration(flags.leaderLease, 'leader-lease');
  if (flags.abmUrl) cfg.abmUrl = flags.abmUrl;
  if (flags.validationMemory) cfg.validationMemoryMb = positiveInt(flags.validationMemory, 'validation-memory');
  if (flags.validationTimeout) cfg.validationTimeoutMs = positiveDuration(flags.validationTimeout, 'validation-timeout');
  if (flags.manifests) cfg.manifests = resolve(flags.manifests);
  if (flags.secretsDir) cfg.secretsDir = resolve(flags.secretsDir);
  if (flags.materialKeyFile) cfg.materialKeyFile = resolve(flags.materialKeyFile);
  if (flags.apnsUrl) cfg.apnsUrl = flags.apnsUrl;
  if (flags.eventWebhook?.length) cfg.eventWebhooks = flags.eventWebhook;
  if (flags.apnsEnv) cfg.apnsEnv = apnsEnv(flags.apnsEnv);
  if (flags.logLevel) cfg.logLevel = flags.logLevel;
  if (flags.reenroll) cfg.reenroll = reenrollPolicy(flags.reenroll);
  if (flags.commitStatus) cfg.commitStatus = { ...cfg.commitStatus, ...commitStatusTarget(flags.commitStatus) };
  if (flags.commitStatusUrl) cfg.commitStatus = { ...needTarget(cfg, 'commit-status-url'), url: flags.commitStatusUrl };
  if (flags.commitStatusTokenFile) cfg.commitStatus = { ...needTarget(cfg, 'commit-status-token-file'), tokenFile: resolve(flags.commitStatusTokenFile) };
  cfg.dataDir = resolve(cfg.dataDir); // the default ./data is relative to the working directory
  if ((cfg.tlsCert && !cfg.tlsKey) || (!cfg.tlsCert && cfg.tlsKey)) throw new ConfigError('tls-cert and tls-key go together');
  return cfg;
}

function applyFile(cfg: ServerConfig, file: string): void {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config ${file}: ${(err as Error).message}`);
  }
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    throw new ConfigError(`${file}:${e.linePos?.[0]?.line ?? '?'}:${e.linePos?.[0]?.col ?? '?'}: ${e.message.split('\n')[0]}`);
  }
  const raw = (doc.toJS() ?? {}) as Record<string, unknown>;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(`${file}: expected a mapping of settings`);
  const base = dirname(resolve(file));
  const where = (key: string) => {
    const node = doc.get(key, true) as { range?: [number, number] } | undefined;
    const offset = node?.range?.[0] ?? 0;
    return `${file}:${text.slice(0, offset).split('\n').length}`;
  };
  for (const key of Object.keys(raw)) {
    if (!(FILE_KEYS as readonly string[]).includes(key)) throw new ConfigError(`${where(key)}: unknown setting "${key}" (known: ${FILE_KEYS.join(', ')})`);
  }
  const str = (key: string): string | undefined => {
    const v = raw[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string' && typeof v !== 'number') throw new ConfigError(`${where(key)}: ${key} must be a string`);
    return String(v);
  };
  try {
    const listen = str('listen');
    if (listen) cfg.listen = parseListen(listen);
    const path = (key: string) => {
      const v = str(key);
      return v === undefined ? undefined : resolve(base, v);
    };
    cfg.dataDir = path('dataDir') ?? cfg.dataDir;
    const store = str('store');
    if (store) cfg.store = storeUrl(store, 'store');
    const repo = str('repo');
    if (repo) cfg.repo = /^[a-z+]+:\/\/|^git@/.test(repo) ? repo : resolve(base, repo);
    cfg.branch = str('branch') ?? cfg.branch;
    cfg.publicUrl = str('publicUrl') ?? cfg.publicUrl;
    const trust = raw.trustCa;
    if (trust !== undefined) {
      const list = Array.isArray(trust) ? trust : [trust];
      cfg.trustCa = list.map((p) => resolve(base, String(p)));
    }
    cfg.certHeader = str('certHeader') ?? cfg.certHeader;
    cfg.tlsCert = path('tlsCert') ?? cfg.tlsCert;
    cfg.tlsKey = path('tlsKey') ?? cfg.tlsKey;
    const mb = str('maxBodyBytes');
    if (mb) cfg.maxBodyBytes = positiveInt(mb, 'maxBodyBytes');
    const ht = str('headersTimeout');
    if (ht) cfg.headersTimeoutMs = positiveDuration(ht, 'headersTimeout');
    const rt = str('requestTimeout');
    if (rt) cfg.requestTimeoutMs = positiveDuration(rt, 'requestTimeout');
    const kt = str('keepAliveTimeout');
    if (kt) cfg.keepAliveTimeoutMs = positiveDuration(kt, 'keepAliveTimeout');
    const mc = str('maxConnections');
    if (mc) cfg.maxConnections = positiveInt(mc, 'maxConnections');
    const rw = str('replayWindow');
    if (rw) cfg.replayWindowMs = parseDuration(rw, 'replayWindow');
    const rc = str('replayCacheSize');
    if (rc) cfg.replayCacheSize = positiveInt(rc, 'replayCacheSize');
    const ret = str('retention');
    if (ret) cfg.retentionMs = parseDuration(ret, 'retention');
    const poll = str('pollInterval');
    if (poll) cfg.pollIntervalMs = parseDuration(poll, 'pollInterval');
    const drift = str('driftInterval');
    if (drift) cfg.driftIntervalMs = parseDuration(drift, 'driftInterval');
    const abm = str('abmSyncInterval');
    if (abm) cfg.abmSyncIntervalMs = parseDuration(abm, 'abmSyncInterval');
    const lease = str('leaderLease');
    if (lease) cfg.leaderLeaseMs = positiveDuration(lease, 'leaderLease');
    cfg.abmUrl = str('abmUrl') ?? cfg.abmUrl;
    const vm = str('validationMemory');
    if (vm) cfg.validationMemoryMb = positiveInt(vm, 'validationMemory');
    const vt = str('validationTimeout');
    if (vt) cfg.validationTimeoutMs = positiveDuration(vt, 'validationTimeout');
    cfg.manifests = path('manifests') ?? cfg.manifests;
    cfg.secretsDir = path('secretsDir') ?? cfg.secretsDir;
    cfg.materialKeyFile = path('materialKeyFile') ?? cfg.materialKeyFile;
    cfg.apnsUrl = str('apnsUrl') ?? cfg.apnsUrl;
    const hooks = raw.eventWebhooks;
    if (hooks !== undefined) cfg.eventWebhooks = (Array.isArray(hooks) ? hooks : [hooks]).map(String);
    const env = str('apnsEnv');
    if (env) cfg.apnsEnv = apnsEnv(env);
    cfg.logLevel = str('logLevel') ?? cfg.logLevel;
    const reenroll = str('reenroll');
    if (reenroll) cfg.reenroll = reenrollPolicy(reenroll);
    const cs = str('commitStatus');
    if (cs) cfg.commitStatus = { ...cfg.commitStatus, ...commitStatusTarget(cs) };
    const csUrl = str('commitStatusUrl');
    if (csUrl) cfg.commitStatus = { ...needTarget(cfg, 'commitStatusUrl'), url: csUrl };
    const csToken = path('commitStatusTokenFile');
    if (csToken) cfg.commitStatus = { ...needTarget(cfg, 'commitStatusTokenFile'), tokenFile: csToken };
  } catch (err) {
    if (err instanceof ConfigError && !err.message.startsWith(file)) throw new ConfigError(`${file}: ${err.message}`);
    throw err;
  }
}

function commitStatusTarget(v: string): Pick<CommitStatusConfig, 'provider' | 'repo'> {
  try {
    return parseCommitStatusTarget(v);
  } catch (err) {
    if (err instanceof Malformed) throw new ConfigError(`commit-status: ${err.message}`, { cause: err });
    throw err;
  }
}

function needTarget(cfg: ServerConfig, what: string): NonNullable<ServerConfig['commitStatus']> {
  if (!cfg.commitStatus) throw new ConfigError(`${what} needs commit-status (github:OWNER/REPO or gitlab:PROJECT)`);
  return cfg.commitStatus;
}

/** A store URL this server can open (the URL may hold a password: never quoted back). */
function storeUrl(v: string, what: string): string {
  if (!/^postgres(ql)?:\/\//.test(v)) throw new ConfigError(`${what}: expected a postgres:// or postgresql:// URL (LevelDB in --data-dir is the default)`);
  return v;
}

function apnsEnv(v: string): 'production' | 'sandbox' {
  if (v !== 'production' && v !== 'sandbox') throw new ConfigError(`apns-env: "${v}" is not production or sandbox`);
  return v;
}

function positiveDuration(v: string, what: string): number {
  const ms = parseDuration(v, what);
  if (!(ms > 0)) throw new ConfigError(`${what}: "${v}" must be longer than 0`);
  return ms;
}

function reenrollPolicy(v: string): ReenrollPolicy {
  if (!(REENROLL_POLICIES as readonly string[]).includes(v)) throw new ConfigError(`reenroll: "${v}" is not one of ${REENROLL_POLICIES.join(', ')}`);
  return v as ReenrollPolicy;
}

function positiveInt(v: string, what: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new ConfigError(`${what}: "${v}" is not a positive integer`);
  return n;
}
