/**
 * The one typed configuration of a jitcast node.
 * Sources, later ones winning: defaults → command-line flags → `JITCAST_*` environment → validate().
 * (Flags and environment both name the same keys: `--http-port` / `JITCAST_HTTP_PORT`.)
 */
import { randomBytes } from 'node:crypto';
import { accessSync, constants, mkdirSync, readFileSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import { ConfigError } from './runtime/errors.ts';

/** Every role a node can run; `all` expands to these. */
export const ALL_ROLES = [
  'gateway',
  'reservation',
  'voice-server',
  'encoder-port',
  'sip-router',
  'monitoring',
  'event',
  'attendee-access',
  'content-storage',
  'archive-coordinator',
] as const;
export type Role = (typeof ALL_ROLES)[number];

/** An inclusive UDP port range. */
export interface PortRange {
  min: number;
  max: number;
}

export interface JitcastConfig {
  /** Node ID. Default `<hostname>-<pid>`. */
  nodeId: string;
  /** Data center this node sits in. Default `dc1`. */
  dataCenter: string;
  /** Roles this node runs. Default every role. */
  roles: Role[];
  /** Keeps clusters that share one NATS apart. Default `jitcast`. */
  namespace: string;
  /** NATS URL; unset means embedded mode (in-process broker). Default unset. */
  natsUrl?: string;
  /** Redis URL for queues and live state in cluster mode. Default unset (in-process). */
  redisUrl?: string;
  /** PostgreSQL URL; unset means PGlite in the data directory. Default unset. */
  dbUrl?: string;
  /**
   * Longest pause between two tries of a reporting-DB write while the database is down, in seconds
   * (the pause doubles from 0.2 s up to this). Default 30.
   */
  dbRetryMaxS: number;
  /** Address the HTTP gateway binds. Default `127.0.0.1`. */
  httpHost: string;
  /** HTTP port of the gateway. Default 8080. */
  httpPort: number;
  /**
   * PEM certificate (chain) file of the gateway: with `tlsKey` the gateway serves HTTPS instead of
   * HTTP on `httpPort`. Both or neither. Default unset (plain HTTP).
   */
  tlsCert?: string;
  /** PEM private key file matching `tlsCert`. Default unset. */
  tlsKey?: string;
  /** Base URL put into attendee and host links. Default `http://<httpHost>:<httpPort>` (`https://` with TLS). */
  publicUrl: string;
  /** Address SIP and RTP bind and advertise in SDP/Contact. Default `127.0.0.1`. */
  sipHost: string;
  /** SIP UDP port of the dial-in address. Default 5060. */
  sipPort: number;
  /** This voice server's pre-assigned RTP port range. Default 10000-10049 (blocks of 50). */
  rtpPorts: PortRange;
  /** UDP ports the encoder ports take RTP on. Default 20000-20199. */
  encoderPorts: PortRange;
  /** Data directory: PGlite database, content storage, live HLS output, secret. Default `./data`. */
  dataDir: string;
  /** Storage centers this node serves (directories under `<dataDir>/storage/`). Default `[<dataCenter>]`. */
  storageCenters: string[];
  /** Accepted API keys. Default: one generated and kept in `<dataDir>/api-key` (embedded mode). */
  apiKeys: string[];
  /** Cluster secret for PINs, attendee tokens and auth codes. Default: generated once into `<dataDir>/secret`. */
  secret: string;
  /** Broker heartbeat in seconds. Default 1. */
  heartbeatS: number;
  /** A node silent this long is dead, in seconds. Default 3. */
  heartbeatTimeoutS: number;
  /** After the last caller leaves, the event ends this many seconds later. Default 60. */
  archiveTimeoutS: number;
  /**
   * Archive leader election: a coordinator not heard from for longer than this is dropped and the
   * next by IP address (then node ID) leads, in seconds. Default 20, the seed's figure: long enough
   * that a busy node missing a few 1 s heartbeats does not flip the leader.
   */
  archiveSilenceLimitS: number;
  /** Lifetime of a stream auth code in seconds. Default 120. */
  authCodeTimeoutS: number;
  /** A freed port is not handed out again for this long, in seconds (≥ authCodeTimeoutS). Default 120. */
  portReuseTimeoutS: number;
  /**
   * Port availability suspend: when fewer than this many RTP ports are free, the voice server
   * suspends itself for new calls (the front door routes them elsewhere). 0 turns it off. Default 2.
   */
  portSuspendBelow: number;
  /** A suspended voice server resumes once at least this many ports are free (> portSuspendBelow). Default 4. */
  portResumeAt: number;
  /**
   * Monitoring tests every voice server (a synthetic SIP call) and every encoder (RTP in, a
   * segment out) this often, in seconds; a failure evicts the asset from its pool until it passes
   * again. 0 turns the tests off. Default 30.
   */
  healthTestIntervalS: number;
  /** Seconds between content storage's retention sweeps (archives past their archiveDays are removed from every center). `0` turns the sweep off. Default 3600. */
  retentionSweepS: number;
  /** A caller that sends no RTP this long is released, in seconds. Default 30. */
  rtpSilenceTimeoutS: number;
  /** Seconds the IVR waits for the next digit before it re-prompts. Default 10. */
  digitTimeoutS: number;
  /** HLS segment duration in seconds. Default 2. */
  segmentS: number;
  /** ffmpeg binary. Default the npm `@ffmpeg-installer/ffmpeg` static build. */
  ffmpegPath: string;
  /** Digit sequence that ends the event from the phone. Default `*399#`. */
  endCode: string;
  /**
   * Listener worker processes of the gateway (runtime/listener-workers.ts): children that accept on
   * the gateway's own socket and answer held live segments, so listeners use more than one core.
   * Only on a node with both the gateway and attendee-access roles. 0 turns them off. Default 0.
   */
  listenerWorkers: number;
  /** Largest accepted HTTP body in bytes. Default 65536. */
  maxBodyBytes: number;
  /** Failed PIN attempts per event ID in the throttle window before the ID is locked. Default 10. */
  pinFailLimit: number;
  /** Throttle window for PIN failures, in seconds. Default 300. */
  pinFailWindowS: number;
  /** Log level. Default `info`. */
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
}

/** Flags as parsed from the command line, by config key. */
export type ConfigOverrides = Partial<Record<keyof JitcastConfig, string>>;

const KEYS: (keyof JitcastConfig)[] = [
  'nodeId', 'dataCenter', 'roles', 'namespace', 'natsUrl', 'redisUrl', 'dbUrl', 'dbRetryMaxS', 'httpHost', 'httpPort', 'tlsCert', 'tlsKey',
  'publicUrl', 'sipHost', 'sipPort', 'rtpPorts', 'encoderPorts', 'dataDir', 'storageCenters', 'apiKeys',
  'secret', 'heartbeatS', 'heartbeatTimeoutS', 'archiveTimeoutS', 'archiveSilenceLimitS', 'authCodeTimeoutS', 'portReuseTimeoutS',
  'portSuspendBelow', 'portResumeAt', 'healthTestIntervalS', 'retentionSweepS', 'rtpSilenceTimeoutS', 'digitTimeoutS', 'segmentS', 'ffmpegPath', 'endCode', 'maxBodyBytes', 'pinFailLimit',
  'pinFailWindowS', 'listenerWorkers', 'logLevel',
];

/** `httpPort` → `JITCAST_HTTP_PORT`. */
export function envName(key: string): string {
  return 'JITCAST_' + key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

/** `httpPort` → `http-port`. */
export function flagName(key: string): string {
  return key.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();
}

/** Maps a flag name (`http-port`) back to its config key, or undefined. */
export function keyOfFlag(flag: string): keyof JitcastConfig | undefined {
  return KEYS.find((k) => flagName(k) === flag);
}

export function defaultFfmpegPath(): string {
  try {
    // The static build costs ~2.5x less CPU per encoder than Debian's (FIELD-NOTES) and comes with `npm install`.
    return createRequire(import.meta.url)('@ffmpeg-installer/ffmpeg').path as string;
  } catch {
    return 'ffmpeg';
  }
}

/** Defaults, before flags and environment. */
export function defaults(): Omit<JitcastConfig, 'secret' | 'apiKeys' | 'publicUrl'> & Partial<JitcastConfig> {
  return {
    nodeId: `${hostname()}-${process.pid}`,
    dataCenter: 'dc1',
    roles: [...ALL_ROLES],
    namespace: 'jitcast',
    httpHost: '127.0.0.1',
    httpPort: 8080,
    sipHost: '127.0.0.1',
    sipPort: 5060,
    rtpPorts: { min: 10000, max: 10049 },
    encoderPorts: { min: 20000, max: 20199 },
    dataDir: './data',
    storageCenters: [],
    heartbeatS: 1,
    heartbeatTimeoutS: 3,
    archiveTimeoutS: 60,
    archiveSilenceLimitS: 20,
    authCodeTimeoutS: 120,
    portReuseTimeoutS: 120,
    portSuspendBelow: 2,
    portResumeAt: 4,
    healthTestIntervalS: 30,
    retentionSweepS: 3600,
    dbRetryMaxS: 30,
    rtpSilenceTimeoutS: 30,
    digitTimeoutS: 10,
    segmentS: 2,
    ffmpegPath: defaultFfmpegPath(),
    endCode: '*399#',
    maxBodyBytes: 65536,
    pinFailLimit: 10,
    pinFailWindowS: 300,
    listenerWorkers: 0,
    logLevel: 'info',
  };
}

function parseRange(key: string, v: string): PortRange {
  const m = /^(\d+)-(\d+)$/.exec(v.trim());
  if (!m) throw new ConfigError(`'${key}' must be a port range like 10000-10049, got '${v}'`);
  return { min: Number(m[1]), max: Number(m[2]) };
}

function parseValue(key: keyof JitcastConfig, v: string): unknown {
  switch (key) {
    case 'roles': {
      const list = v.split(',').map((s) => s.trim()).filter(Boolean);
      return list.includes('all') ? [...ALL_ROLES] : list;
    }
    case 'apiKeys':
    case 'storageCenters':
      return v.split(',').map((s) => s.trim()).filter(Boolean);
    case 'rtpPorts':
    case 'encoderPorts':
      return parseRange(key, v);
    case 'httpPort': case 'sipPort': case 'heartbeatS': case 'heartbeatTimeoutS': case 'archiveTimeoutS': case 'archiveSilenceLimitS':
    case 'authCodeTimeoutS': case 'portReuseTimeoutS': case 'rtpSilenceTimeoutS': case 'digitTimeoutS':
    case 'segmentS': case 'maxBodyBytes': case 'pinFailLimit': case 'pinFailWindowS': case 'portSuspendBelow': case 'portResumeAt': case 'healthTestIntervalS': case 'retentionSweepS': case 'dbRetryMaxS': case 'listenerWorkers': {
      const n = Number(v);
      if (v.trim() === '' || !Number.isFinite(n)) throw new ConfigError(`'${key}' must be a number, got '${v}'`);
      return n;
    }
    default:
      return v;
  }
}

function readOrCreate(file: string, make: () => string): string {
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const value = make();
  writeFileSync(file, value + '\n', { mode: 0o600 });
  return value;
}

/** Checks every field; each message names its key. */
export function validate(c: JitcastConfig): JitcastConfig {
  const port = (k: keyof JitcastConfig, n: number) => {
    if (!Number.isInteger(n) || n < 0 || n > 65535) throw new ConfigError(`'${k}' must be a port 0-65535, got ${n}`);
  };
  port('httpPort', c.httpPort);
  port('sipPort', c.sipPort);
  for (const k of ['rtpPorts', 'encoderPorts'] as const) {
    const r = c[k];
    if (r.min < 1024 || r.max > 65535 || r.min > r.max) throw new ConfigError(`'${k}' must be a range within 1024-65535 with min ≤ max`);
  }
  if (!Number.isInteger(c.listenerWorkers) || c.listenerWorkers < 0 || c.listenerWorkers > 16) throw new ConfigError(`'listenerWorkers' must be a whole number 0-16, got ${c.listenerWorkers}`);
  if (c.roles.length === 0) throw new ConfigError(`'roles' must name at least one role`);
  for (const r of c.roles) {
    if (!(ALL_ROLES as readonly string[]).includes(r)) throw new ConfigError(`'roles' has unknown role '${r}' (known: ${ALL_ROLES.join(', ')}, all)`);
  }
  for (const k of ['heartbeatS', 'heartbeatTimeoutS', 'archiveTimeoutS', 'authCodeTimeoutS', 'rtpSilenceTimeoutS', 'digitTimeoutS', 'segmentS', 'maxBodyBytes', 'pinFailLimit', 'pinFailWindowS'] as const) {
    if (!(c[k] > 0)) throw new ConfigError(`'${k}' must be greater than zero`);
  }
  if (c.portReuseTimeoutS < c.authCodeTimeoutS) {
    throw new ConfigError(`'portReuseTimeoutS' (${c.portReuseTimeoutS}) must be at least 'authCodeTimeoutS' (${c.authCodeTimeoutS}), or an old auth code could open a later event's stream`);
  }
  if (!Number.isInteger(c.portSuspendBelow) || c.portSuspendBelow < 0) throw new ConfigError(`'portSuspendBelow' must be a whole number ≥ 0, got ${c.portSuspendBelow}`);
  if (!Number.isInteger(c.portResumeAt) || c.portResumeAt <= c.portSuspendBelow) {
    throw new ConfigError(`'portResumeAt' (${c.portResumeAt}) must be a whole number greater than 'portSuspendBelow' (${c.portSuspendBelow})`);
  }
  if (!(c.dbRetryMaxS >= 0.2)) throw new ConfigError(`'dbRetryMaxS' must be at least 0.2 seconds, got ${c.dbRetryMaxS}`);
  if (!(c.retentionSweepS >= 0)) throw new ConfigError(`'retentionSweepS' must be 0 (off) or a number of seconds, got ${c.retentionSweepS}`);
  if (!(c.healthTestIntervalS >= 0)) throw new ConfigError(`'healthTestIntervalS' must be 0 (off) or a number of seconds, got ${c.healthTestIntervalS}`);
  if (c.heartbeatTimeoutS <= c.heartbeatS) throw new ConfigError(`'heartbeatTimeoutS' must be greater than 'heartbeatS'`);
  // Coordinators announce once per heartbeat: a limit within one heartbeat would drop live peers between two announces.
  if (!(c.archiveSilenceLimitS > c.heartbeatS)) throw new ConfigError(`'archiveSilenceLimitS' (${c.archiveSilenceLimitS}) must be greater than 'heartbeatS' (${c.heartbeatS})`);
  if (c.secret.length < 32) throw new ConfigError(`'secret' must be at least 32 characters`);
  if (c.apiKeys.length === 0) throw new ConfigError(`'apiKeys' must hold at least one key`);
  if (c.apiKeys.some((k) => k.length < 16)) throw new ConfigError(`'apiKeys' entries must be at least 16 characters`);
  if (!/^[0-9*#]{2,16}$/.test(c.endCode)) throw new ConfigError(`'endCode' must be 2-16 of 0-9 * #`);
  if (!/^[A-Za-z0-9_-]{1,32}$/.test(c.dataCenter)) throw new ConfigError(`'dataCenter' must be 1-32 of A-Z a-z 0-9 _ -`);
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(c.nodeId)) throw new ConfigError(`'nodeId' must be 1-64 of A-Z a-z 0-9 _ . -`);
  for (const s of c.storageCenters) {
    if (!/^[A-Za-z0-9_-]{1,32}$/.test(s)) throw new ConfigError(`'storageCenters' entry '${s}' must be 1-32 of A-Z a-z 0-9 _ -`);
  }
  if (Boolean(c.tlsCert) !== Boolean(c.tlsKey)) {
    throw new ConfigError(`'tlsCert' and 'tlsKey' must be given together (got only '${c.tlsCert ? 'tlsCert' : 'tlsKey'}')`);
  }
  for (const k of ['tlsCert', 'tlsKey'] as const) {
    const file = c[k];
    if (!file) continue;
    try {
      accessSync(file, constants.R_OK);
      if (!statSync(file).isFile()) throw new Error('not a file');
    } catch (err) {
      throw new ConfigError(`'${k}' must name a readable PEM file, got '${file}' (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  }
  if (c.tlsCert && c.tlsKey) {
    // A key that is not PEM or does not match the certificate fails here, named, not at the first handshake.
    try {
      createSecureContext({ cert: readFileSync(c.tlsCert), key: readFileSync(c.tlsKey) });
    } catch (err) {
      throw new ConfigError(`'tlsCert' / 'tlsKey' do not make a usable TLS identity: ${(err as Error).message}`);
    }
  }
  if (!/^https?:\/\/[^\s/]+$/.test(c.publicUrl)) throw new ConfigError(`'publicUrl' must look like http(s)://host[:port] with no path, got '${c.publicUrl}'`);
  return c;
}

/**
 * Builds the node's configuration: defaults → flags → `JITCAST_*` env → generated secret/API key → validate().
 * Creates the data directory.
 */
export function loadConfig(flags: ConfigOverrides = {}, env: NodeJS.ProcessEnv = process.env): JitcastConfig {
  const c: Record<string, unknown> = { ...defaults() };
  for (const key of KEYS) {
    const fromFlag = flags[key];
    if (fromFlag !== undefined) c[key] = parseValue(key, fromFlag);
  }
  for (const key of KEYS) {
    const fromEnv = env[envName(key)];
    if (fromEnv !== undefined && fromEnv !== '') c[key] = parseValue(key, fromEnv);
  }
  const cfg = c as unknown as JitcastConfig;
  cfg.dataDir = resolve(cfg.dataDir);
  mkdirSync(cfg.dataDir, { recursive: true });
  if (!cfg.secret) cfg.secret = readOrCreate(join(cfg.dataDir, 'secret'), () => randomBytes(32).toString('base64url'));
  if (!cfg.apiKeys || cfg.apiKeys.length === 0) cfg.apiKeys = [readOrCreate(join(cfg.dataDir, 'api-key'), () => 'jk_' + randomBytes(18).toString('base64url'))];
  if (!cfg.publicUrl) cfg.publicUrl = `${cfg.tlsCert && cfg.tlsKey ? 'https' : 'http'}://${cfg.httpHost}:${cfg.httpPort}`;
  if (!cfg.storageCenters || cfg.storageCenters.length === 0) cfg.storageCenters = [cfg.dataCenter];
  return validate(cfg);
}
