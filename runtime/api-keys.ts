/**
 * API keys per customer account (issue 5 item 6): the registry every gateway checks keys against,
 * where it is kept, and its mirror in the reporting database.
 *
 * The check needs neither the DB nor Redis (issue 5 item 1: reservations go on while PostgreSQL is
 * down): each gateway holds the whole registry in memory, keyId → {account, label, sha256(key),
 * createdAt, revokedAt}, and compares in constant time. A record never changes but to be revoked,
 * and a revocation is never undone, so merging two copies is a union where a revocation wins: any
 * order of loads and broadcasts ends in the same registry.
 *
 * Where the registry is kept:
 * - embedded (no `redisUrl`): `<dataDir>/api-keys.json`, written atomically (temp file, fsync, rename).
 * - cluster: the Redis hash `jitcast:<namespace>:api-keys` (keyId → record JSON). The gateway that
 *   makes a change writes it there first, then broadcasts it (`EVENTS.apiKeyChanged`) so every
 *   gateway's copy changes at once (a revoked key is refused everywhere within a broadcast's time);
 *   each gateway also reloads the hash every few seconds (a missed broadcast) and after Redis comes
 *   back (rewriting what Redis lost), and keeps its copy in `<dataDir>/api-keys.json` so it can start
 *   while Redis is away.
 * The reporting DB's `accounts` and `api_keys` tables (migration 2) follow asynchronously, with
 * retries; they never hold the key or its hash.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import {
  ACCOUNT_RULE, OPERATOR_ACCOUNT, formatApiKey, hashApiKey, isValidAccount, isValidKeyId, keyIdOf, labelProblem, operatorKeyId,
} from '../codecs/api-key.ts';
import { CoalescingWriter } from './coalescing-writer.ts';
import type { Db } from './db.ts';
import { ForbiddenError, NotFoundError, StateConflictError, StorageUnavailableError, ValidationFailedError, type FieldErrors, errorMessage } from './errors.ts';
import { luaScript, type RedisConnection } from './redis.ts';

/** One account key as the registry keeps it. */
export interface ApiKeyRecord {
  keyId: string;
  account: string;
  label?: string;
  /** sha256 of the whole key, hex. */
  hash: string;
  createdAt: string;
  /** Set once revoked; never cleared. */
  revokedAt?: string;
}

/** What `keys list` shows of a key: never the key, never its hash. */
export interface ApiKeySummary {
  keyId: string;
  account: string;
  label?: string;
  createdAt?: string;
  revokedAt?: string;
  revoked: boolean;
  /** `api`: made with `keys create`; `config`: an operator key from JITCAST_API_KEYS (or the generated one). */
  source: 'api' | 'config';
}

/** `keys create` answer: the key itself, shown this once. */
export interface CreatedApiKey extends ApiKeySummary {
  key: string;
}

/** Who a verified key speaks for. */
export interface Principal {
  /** keyId, or `op-…` for a key from config. */
  keyId: string;
  account: string;
}

/** The few logger methods this module writes to (a Moleculer logger fits). */
export interface KeysLogger {
  debug(...args: unknown[]): void;
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}

const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;


/** The record in `v`, checked field by field, or undefined when anything is off (a file or Redis value is untrusted). */
export function parseRecord(v: unknown): ApiKeyRecord | undefined {
  if (!v || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const r = v as Record<string, unknown>;
  if (!isValidKeyId(r.keyId) || !isValidAccount(r.account)) return undefined;
  if (typeof r.hash !== 'string' || !/^[0-9a-f]{64}$/.test(r.hash)) return undefined;
  if (typeof r.createdAt !== 'string' || !ISO_RE.test(r.createdAt)) return undefined;
  if (r.revokedAt !== undefined && (typeof r.revokedAt !== 'string' || !ISO_RE.test(r.revokedAt))) return undefined;
  if (r.label !== undefined && labelProblem(r.label) !== undefined) return undefined;
  return {
    keyId: r.keyId,
    account: r.account,
    ...(r.label !== undefined ? { label: r.label as string } : {}),
    hash: r.hash,
    createdAt: r.createdAt,
    ...(r.revokedAt !== undefined ? { revokedAt: r.revokedAt as string } : {}),
  };
}

/**
 * Two copies of one key's record → the one to keep: `a` itself when `b` adds nothing, else `a`
 * revoked at the earlier of the two times. A revocation never goes away.
 */
export function mergeRecord(a: ApiKeyRecord | undefined, b: ApiKeyRecord): ApiKeyRecord {
  if (!a) return b;
  if (!b.revokedAt || (a.revokedAt && a.revokedAt <= b.revokedAt)) return a;
  return { ...a, revokedAt: b.revokedAt };
}

function summaryOf(r: ApiKeyRecord): ApiKeySummary {
  return {
    keyId: r.keyId,
    account: r.account,
    ...(r.label !== undefined ? { label: r.label } : {}),
    createdAt: r.createdAt,
    ...(r.revokedAt ? { revokedAt: r.revokedAt } : {}),
    revoked: r.revokedAt !== undefined,
    source: 'api',
  };
}

/** Compared against when a presented key names no known keyId, so an unknown ID costs what a known one does. */
const NO_HASH = Buffer.alloc(32);

/** The in-memory registry a gateway checks keys against. Pure: no I/O. */
export class ApiKeyRegistry {
  readonly #operator: Array<{ id: string; hash: Buffer }>;
  readonly #keys = new Map<string, { record: ApiKeyRecord; hash: Buffer }>();

  /** `operatorKeys`: keys from config; they speak for the operator and cannot be revoked here. */
  constructor(operatorKeys: readonly string[]) {
    this.#operator = operatorKeys.map((k) => ({ id: operatorKeyId(k), hash: hashApiKey(k) }));
  }

  /**
   * Who the key speaks for, or undefined. Every operator hash and one account hash (the keyId's, or
   * a stand-in) are compared whatever the key, each in constant time over 32 bytes.
   */
  authenticate(key: string | undefined): Principal | undefined {
    if (typeof key !== 'string' || key.length === 0 || key.length > 512) return undefined;
    const h = hashApiKey(key);
    let operator: string | undefined;
    for (const k of this.#operator) if (timingSafeEqual(h, k.hash)) operator = k.id;
    const keyId = keyIdOf(key);
    const entry = keyId ? this.#keys.get(keyId) : undefined;
    const same = timingSafeEqual(h, entry?.hash ?? NO_HASH);
    if (operator) return { keyId: operator, account: OPERATOR_ACCOUNT };
    if (!entry || !same || entry.record.revokedAt) return undefined;
    return { keyId: entry.record.keyId, account: entry.record.account };
  }

  /** Takes a record in (union, revocation wins); true when the registry changed. */
  merge(record: ApiKeyRecord): boolean {
    const had = this.#keys.get(record.keyId)?.record;
    const next = mergeRecord(had, record);
    if (next === had) return false;
    this.#keys.set(next.keyId, { record: next, hash: Buffer.from(next.hash, 'hex') });
    return true;
  }

  /** Records merged in; the number that changed the registry. */
  mergeAll(records: Iterable<ApiKeyRecord>): number {
    let n = 0;
    for (const r of records) if (this.merge(r)) n++;
    return n;
  }

  get(keyId: string): ApiKeyRecord | undefined {
    return this.#keys.get(keyId)?.record;
  }

  /** Every account key, oldest first. */
  records(): ApiKeyRecord[] {
    return [...this.#keys.values()].map((e) => e.record).sort((a, b) => (a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : a.keyId < b.keyId ? -1 : 1));
  }

  /** Summaries for `keys list`: config keys first (operator only), then account keys, oldest first. */
  summaries(account?: string): ApiKeySummary[] {
    const config: ApiKeySummary[] = account === undefined || account === OPERATOR_ACCOUNT
      ? this.#operator.map((k) => ({ keyId: k.id, account: OPERATOR_ACCOUNT, revoked: false, source: 'config' as const }))
      : [];
    return [...config, ...this.records().filter((r) => account === undefined || r.account === account).map(summaryOf)];
  }

  /** Whether `keyId` names a key from config. */
  isConfigKey(keyId: string): boolean {
    return this.#operator.some((k) => k.id === keyId);
  }

  /** A new key for `account` (not yet merged in): the key string, shown once, and its record. */
  mint(account: string, label: string | undefined, createdAt: string): { key: string; record: ApiKeyRecord } {
    let keyId: string;
    do keyId = randomBytes(6).toString('hex');
    while (this.#keys.has(keyId));
    const key = formatApiKey(keyId, randomBytes(32));
    return { key, record: { keyId, account, ...(label !== undefined && label !== '' ? { label } : {}), hash: hashApiKey(key).toString('hex'), createdAt } };
  }
}

// ---- where the registry is kept ----------------------------------------------------------------

/** Where the registry is kept: a JSON file (embedded) or Redis (cluster). */
export interface ApiKeyStore {
  /** Every record held. */
  load(): Promise<ApiKeyRecord[]>;
  /** Writes one record, merged with what is held (a revocation is never undone). Durable when it resolves. */
  put(record: ApiKeyRecord): Promise<void>;
}

/** File layout of `api-keys.json`. */
interface KeysFile {
  version: 1;
  keys: ApiKeyRecord[];
}

/** The registry as `<dataDir>/api-keys.json`, replaced atomically on every write (0600: it holds hashes). */
export class FileKeyStore implements ApiKeyStore {
  readonly path: string;
  readonly #records = new Map<string, ApiKeyRecord>();
  #loaded = false;
  #writes: Promise<unknown> = Promise.resolve();

  constructor(path: string) {
    this.path = path;
  }

  /**
   * The records in the file (none when there is no file). Throws when the file is not a registry:
   * a gateway must not start believing no key exists, then write an empty registry over the real one.
   */
  async load(): Promise<ApiKeyRecord[]> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      this.#loaded = true;
      return [...this.#records.values()];
    }
    let doc: Partial<KeysFile>;
    try {
      doc = JSON.parse(text) as Partial<KeysFile>;
    } catch (err) {
      throw new Error(`API key registry ${this.path} is not JSON: ${errorMessage(err)}`);
    }
    if (!doc || doc.version !== 1 || !Array.isArray(doc.keys)) throw new Error(`API key registry ${this.path} is not a version 1 registry`);
    for (const raw of doc.keys) {
      const r = parseRecord(raw);
      if (!r) throw new Error(`API key registry ${this.path} holds an invalid record ${JSON.stringify((raw as { keyId?: unknown })?.keyId ?? null)}`);
      this.#records.set(r.keyId, mergeRecord(this.#records.get(r.keyId), r));
    }
    this.#loaded = true;
    return [...this.#records.values()];
  }

  put(record: ApiKeyRecord): Promise<void> {
    return this.putAll([record]);
  }

  /** Merges `records` in and writes the file once. */
  putAll(records: Iterable<ApiKeyRecord>): Promise<void> {
    const run = async () => {
      if (!this.#loaded) await this.load();
      for (const r of records) this.#records.set(r.keyId, mergeRecord(this.#records.get(r.keyId), r));
      await this.#write();
    };
    const next = this.#writes.then(run, run);
    this.#writes = next.catch(() => undefined);
    return next;
  }

  async #write(): Promise<void> {
    const doc: KeysFile = { version: 1, keys: [...this.#records.values()].sort((a, b) => (a.createdAt < b.createdAt ? -1 : 1)) };
    await mkdir(dirname(this.path), { recursive: true });
    const tmp = `${this.path}.${process.pid}.tmp`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(JSON.stringify(doc, null, 2) + '\n');
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await rename(tmp, this.path);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
    // The rename is durable once the directory is.
    const dir = await open(dirname(this.path), 'r').catch(() => undefined);
    if (dir) await dir.sync().catch(() => undefined).finally(() => dir.close());
  }
}

/** KEYS: hash.  ARGV: keyId, record JSON, revoked 1|0.  → 1 written, 0 kept (the held record is revoked, or both are live). */
const PUT = luaScript(
  `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local ok, held = pcall(cjson.decode, cur)
  if ok and type(held) == 'table' and (held.revokedAt or ARGV[3] == '0') then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
`,
  1,
);

/** The registry in Redis (cluster mode): hash `jitcast:<namespace>:api-keys`, keyId → record JSON. */
export class RedisKeyStore implements ApiKeyStore {
  readonly #redis: RedisConnection;
  readonly #logger?: KeysLogger;

  constructor(redis: RedisConnection, logger?: KeysLogger) {
    this.#redis = redis;
    this.#logger = logger;
  }

  get ready(): boolean {
    return this.#redis.ready;
  }

  async load(): Promise<ApiKeyRecord[]> {
    const all = await this.#redis.client.hgetall(this.#redis.key('api-keys'));
    const out: ApiKeyRecord[] = [];
    for (const [keyId, json] of Object.entries(all)) {
      let r: ApiKeyRecord | undefined;
      try {
        r = parseRecord(JSON.parse(json));
      } catch {
        r = undefined;
      }
      if (r && r.keyId === keyId) out.push(r);
      else this.#logger?.warn(`invalid API key record in redis skipped [key:${keyId}]`);
    }
    return out;
  }

  async put(record: ApiKeyRecord): Promise<void> {
    await this.#redis.run(PUT, [this.#redis.key('api-keys')], [record.keyId, JSON.stringify(record), record.revokedAt ? '1' : '0']);
  }
}

// ---- the reporting DB mirror -----------------------------------------------------------------------

/** Upsert of an account; its creation time is its first key's. */
export const UPSERT_ACCOUNT_SQL = `
  INSERT INTO accounts (account, created_at) VALUES ($1, $2)
  ON CONFLICT (account) DO UPDATE SET created_at = LEAST(accounts.created_at, EXCLUDED.created_at)`;

/** Upsert of a key's row: only a revocation changes it, and it is never undone. No key, no hash. */
export const UPSERT_API_KEY_SQL = `
  INSERT INTO api_keys (key_id, account, label, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5)
  ON CONFLICT (key_id) DO UPDATE SET revoked_at = COALESCE(api_keys.revoked_at, EXCLUDED.revoked_at)`;

/** Tuning of the mirror's retries. */
export interface MirrorOptions {
  /** First retry delay after a failed write, in ms. Default 200. */
  minBackoffMs?: number;
  /** Longest retry delay, in ms. Default 30000. */
  maxBackoffMs?: number;
}

/**
 * Writes key records into the reporting DB's `accounts` and `api_keys` tables, asynchronously:
 * never delays a caller, retries with back-off until a write lands, coalesces a key's pending
 * records (the upserts are idempotent, so a record written twice does no harm).
 */
export class ApiKeyMirror {
  readonly #writer: CoalescingWriter<ApiKeyRecord>;

  constructor(openDb: () => Promise<Db>, logger?: KeysLogger, options: MirrorOptions = {}) {
    this.#writer = new CoalescingWriter<ApiKeyRecord>({
      write: async (db, _keyId, r) => {
        await db.query(UPSERT_ACCOUNT_SQL, [r.account, r.createdAt]);
        await db.query(UPSERT_API_KEY_SQL, [r.keyId, r.account, r.label ?? null, r.createdAt, r.revokedAt ?? null]);
      },
      openDb,
      logger,
      what: 'API key mirror',
      queueName: 'API key mirror',
      closedUnwritten: 'API key mirror closed with unwritten keys',
      describe: (keyId, r) => `key:${keyId} account:${r.account}`,
      minBackoffMs: options.minBackoffMs,
      maxBackoffMs: options.maxBackoffMs,
    });
  }

  /** Queues records; returns at once. */
  enqueue(...records: ApiKeyRecord[]): void {
    for (const r of records) this.#writer.set(r.keyId, mergeRecord(this.#writer.get(r.keyId), r));
  }

  /** Records not yet written. */
  depth(): number {
    return this.#writer.depth();
  }

  /** Resolves once nothing is pending; rejects after `timeoutMs`. */
  drain(timeoutMs = 30_000): Promise<void> {
    return this.#writer.drain(timeoutMs);
  }

  /** A short last chance for pending writes, then stops (idempotent). */
  close(graceMs = 2_000): Promise<void> {
    return this.#writer.close(graceMs);
  }
}

// ---- what a gateway runs -------------------------------------------------------------------------

/** `keys create` input. */
export interface CreateKeyParams {
  account?: unknown;
  label?: unknown;
}

/** Throws 403 unless the caller is the operator (an operator key, or a call from inside the cluster). */
export function requireOperator(account: unknown, what: string): void {
  if (account !== undefined && account !== OPERATOR_ACCOUNT) throw new ForbiddenError(`${what} needs an operator key`);
}

/** What `ApiKeys` is built from. */
export interface ApiKeysOptions {
  /** Operator keys from config. */
  operatorKeys: readonly string[];
  /** `<dataDir>/api-keys.json`: the registry (embedded) or a gateway's copy of it (cluster). */
  file: string;
  /** Cluster mode: the Redis connection the registry lives under (not yet connected). */
  redis?: RedisConnection;
  /** Opens the reporting DB for the mirror; none: no mirror. */
  openDb?: () => Promise<Db>;
  /** Tells every other gateway about a change (a broker broadcast). */
  publish?: (record: ApiKeyRecord) => Promise<unknown>;
  logger: KeysLogger;
  /** Cluster mode: how often the Redis hash is read again, in ms. Default 5000. */
  reloadEveryMs?: number;
  now?: () => Date;
  mirror?: MirrorOptions;
}

/**
 * A gateway's API keys: checks (`authenticate`, memory only), management (`create`, `list`,
 * `revoke`: store first, then memory, then the broadcast and the DB mirror) and keeping its copy
 * in line with the others (`heard`, periodic reloads, resync when Redis returns).
 */
export class ApiKeys {
  readonly registry: ApiKeyRegistry;
  readonly #file: FileKeyStore;
  readonly #redis?: RedisConnection;
  readonly #redisStore?: RedisKeyStore;
  readonly #mirror?: ApiKeyMirror;
  readonly #opts: ApiKeysOptions;
  readonly #logger: KeysLogger;
  #reloadTimer: NodeJS.Timeout | undefined;
  #unready: (() => void) | undefined;
  #stopped = false;
  /** The last write of the local copy (stop() waits for it). */
  #copying: Promise<void> = Promise.resolve();

  constructor(opts: ApiKeysOptions) {
    this.#opts = opts;
    this.#logger = opts.logger;
    this.registry = new ApiKeyRegistry(opts.operatorKeys);
    this.#file = new FileKeyStore(opts.file);
    this.#redis = opts.redis;
    if (opts.redis) this.#redisStore = new RedisKeyStore(opts.redis, opts.logger);
    if (opts.openDb) this.#mirror = new ApiKeyMirror(opts.openDb, opts.logger, opts.mirror);
  }

  /** Where changes are written first. */
  get #store(): ApiKeyStore {
    return this.#redisStore ?? this.#file;
  }

  #now(): string {
    return (this.#opts.now?.() ?? new Date()).toISOString();
  }

  /**
   * Loads the registry before the gateway answers. Embedded: the file (a broken file fails the start).
   * Cluster: the gateway's copy first, then Redis once it answers (waiting up to `redisWaitMs`; a
   * gateway whose Redis is away starts from its copy and reloads when Redis returns).
   */
  async start(redisWaitMs = 2_000): Promise<void> {
    if (!this.#redis) {
      const n = this.registry.mergeAll(await this.#file.load());
      this.#logger.info(`API keys loaded [keys:${n} file:${this.#file.path}]`);
      this.#mirror?.enqueue(...this.registry.records());
      return;
    }
    try {
      this.registry.mergeAll(await this.#file.load());
    } catch (err) {
      this.#logger.warn(`local copy of the API keys unreadable, waiting for redis [${errorMessage(err)}]`);
    }
    this.#unready = this.#redis.onReady(() => void this.#resync('redis-ready'));
    this.#redis.connect();
    const until = Date.now() + redisWaitMs;
    while (!this.#redis.ready && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    if (this.#redis.ready) await this.#resync('start');
    else this.#logger.warn(`API keys from the local copy, redis not reachable yet [keys:${this.registry.records().length}]`);
    const every = this.#opts.reloadEveryMs ?? 5_000;
    this.#reloadTimer = setInterval(() => void this.reload().catch((err) => this.#logger.debug(`API key reload failed ${errorMessage(err)}`)), every);
    this.#reloadTimer.unref();
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#reloadTimer) clearInterval(this.#reloadTimer);
    this.#unready?.();
    await this.#copying;
    await this.#mirror?.close();
    await this.#redis?.close();
  }

  /** Who the key in an Authorization header value speaks for, from memory only. */
  authenticate(key: string | undefined): Principal | undefined {
    return this.registry.authenticate(key);
  }

  /** Reads Redis again and takes in what this gateway missed (cluster mode). */
  async reload(): Promise<number> {
    if (!this.#redisStore?.ready || this.#stopped) return 0;
    const changed = this.registry.mergeAll(await this.#redisStore.load());
    if (changed > 0) {
      this.#logger.info(`API keys reloaded from redis [changed:${changed}]`);
      this.#saveCopy();
    }
    return changed;
  }

  /** Redis (re)connected: write back what it lacks (it may have lost everything), then read it. */
  async #resync(why: string): Promise<void> {
    if (!this.#redisStore || this.#stopped) return;
    try {
      for (const r of this.registry.records()) await this.#redisStore.put(r);
      const changed = this.registry.mergeAll(await this.#redisStore.load());
      this.#logger.info(`API keys synced with redis [by:${why} keys:${this.registry.records().length} changed:${changed}]`);
      this.#saveCopy();
      this.#mirror?.enqueue(...this.registry.records());
    } catch (err) {
      this.#logger.warn(`API key sync with redis failed [by:${why}] ${errorMessage(err)}`);
    }
  }

  /** Keeps this gateway's copy of the registry (cluster mode); a failure only costs a start without Redis. */
  #saveCopy(): void {
    if (!this.#redis) return;
    this.#copying = this.#file.putAll(this.registry.records()).catch((err) => this.#logger.warn(`local copy of the API keys not written [file:${this.#file.path}] ${errorMessage(err)}`));
  }

  /** A change another gateway broadcast. */
  heard(raw: unknown): void {
    const r = parseRecord(raw);
    if (!r) {
      this.#logger.warn('invalid API key broadcast ignored');
      return;
    }
    if (this.registry.merge(r)) {
      this.#logger.info(`API key ${r.revokedAt ? 'revoked' : 'added'} by another gateway [key:${r.keyId} account:${r.account}]`);
      this.#saveCopy();
    }
  }

  async #commit(record: ApiKeyRecord, what: string): Promise<void> {
    try {
      await this.#store.put(record);
    } catch (err) {
      this.#logger.error(`API key ${what} not stored [key:${record.keyId} account:${record.account}] ${errorMessage(err)}`);
      throw new StorageUnavailableError(`the API key registry is unavailable, ${what} not done: try again`, { keyId: record.keyId });
    }
    this.registry.merge(record);
    this.#saveCopy();
    this.#mirror?.enqueue(record);
    if (this.#opts.publish) {
      await Promise.resolve(this.#opts.publish(record)).catch((err) => this.#logger.warn(`API key broadcast failed, other gateways reload within seconds [key:${record.keyId}] ${errorMessage(err)}`));
    }
  }

  /** `keys create`: validates, mints, stores; the answer holds the key, never shown again. */
  async create(params: CreateKeyParams): Promise<CreatedApiKey> {
    const p = (params ?? {}) as Record<string, unknown>;
    const fields: FieldErrors = {};
    for (const k of Object.keys(p)) if (k !== 'account' && k !== 'label') fields[k] = 'is not a known field (allowed: account, label)';
    if (p.account === undefined) fields.account = 'is required';
    else if (!isValidAccount(p.account)) fields.account = ACCOUNT_RULE;
    if (p.label !== undefined) {
      const problem = labelProblem(p.label);
      if (problem) fields.label = problem;
    }
    if (Object.keys(fields).length > 0) throw new ValidationFailedError(`invalid key: ${Object.keys(fields).join(', ')}`, fields);
    const label = typeof p.label === 'string' ? p.label.trim() : undefined;
    const { key, record } = this.registry.mint(p.account as string, label, this.#now());
    await this.#commit(record, 'create');
    this.#logger.info(`API key created [key:${record.keyId} account:${record.account}]`);
    return { key, ...summaryOf(record) };
  }

  /** `keys list`, optionally of one account. */
  list(account?: unknown): ApiKeySummary[] {
    if (account !== undefined && !isValidAccount(account)) throw new ValidationFailedError('invalid account', { account: ACCOUNT_RULE });
    return this.registry.summaries(account as string | undefined);
  }

  /** `keys revoke`: refused by every gateway once it returns (and on the others within a broadcast). Idempotent. */
  async revoke(keyId: unknown): Promise<ApiKeySummary> {
    if (typeof keyId === 'string' && this.registry.isConfigKey(keyId)) {
      throw new StateConflictError(`key ${keyId} comes from JITCAST_API_KEYS: remove it there and restart`);
    }
    if (!isValidKeyId(keyId)) throw new ValidationFailedError(`invalid key ID ${JSON.stringify(keyId ?? null)}`, { keyId: 'must be 12 hex digits (see jitcast keys list)' });
    let held = this.registry.get(keyId);
    // Made a moment ago on another gateway, broadcast not yet here: Redis has it.
    if (!held) await this.reload().catch(() => undefined);
    held = this.registry.get(keyId);
    if (!held) throw new NotFoundError(`no API key ${keyId}`);
    if (held.revokedAt) return summaryOf(held);
    const record = { ...held, revokedAt: this.#now() };
    await this.#commit(record, 'revoke');
    this.#logger.info(`API key revoked [key:${keyId} account:${record.account}]`);
    return summaryOf(this.registry.get(keyId)!);
  }

  /** Pending DB mirror writes (for specs and status). */
  mirrorDepth(): number {
    return this.#mirror?.depth() ?? 0;
  }

  /** Waits for the DB mirror to catch up (specs). */
  async drainMirror(timeoutMs?: number): Promise<void> {
    await this.#mirror?.drain(timeoutMs);
  }
}

/** `<dataDir>/api-keys.json` */
export function keysFileOf(dataDir: string): string {
  return join(dataDir, 'api-keys.json');
}

/**
 * The DB mirror of a node whose reporting DB is PGlite (no `dbUrl`): PGlite takes one writer, the
 * event actor's reporting sink, so key records go through that sink's database. The event actor
 * feeds it: the registry file at start (a change whose write was lost with a restart lands then)
 * and every `EVENTS.apiKeyChanged` broadcast.
 */
export class SinkKeyMirror {
  readonly #mirror: ApiKeyMirror;
  readonly #file: string;
  readonly #logger: KeysLogger;

  /** `withDb`: the reporting sink's (runtime/reporting.ts ReportingSink.withDb). */
  constructor(withDb: <T>(fn: (db: Db) => Promise<T>) => Promise<T>, file: string, logger: KeysLogger, options?: MirrorOptions) {
    this.#file = file;
    this.#logger = logger;
    const db: Db = { query: (sql, params) => withDb((d) => d.query(sql, params)), close: async () => {} };
    this.#mirror = new ApiKeyMirror(async () => db, logger, options);
  }

  /** Queues every key of the registry file; resolves once queued (not written: start-up never waits on the DB). Never rejects. */
  start(): Promise<void> {
    return new FileKeyStore(this.#file).load().then(
      (records) => this.#mirror.enqueue(...records),
      (err) => this.#logger.warn(`API keys not mirrored to the reporting DB [file:${this.#file}] ${errorMessage(err)}`),
    );
  }

  /** A key change broadcast by a gateway. */
  heard(raw: unknown): void {
    const r = parseRecord(raw);
    if (r) this.#mirror.enqueue(r);
  }

  drain(timeoutMs?: number): Promise<void> {
    return this.#mirror.drain(timeoutMs);
  }

  close(): Promise<void> {
    return this.#mirror.close();
  }
}
