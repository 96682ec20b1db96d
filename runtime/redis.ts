/**
 * Redis connections for cluster mode (DESIGN.md "Modes": queues, monitoring table and live state in
 * Redis). Every key lives under `jitcast:<namespace>:` so clusters that share one Redis (and specs)
 * stay apart. Who writes what (each file documents its keys):
 *   stream:*, streams:active*, history:*               monitoring tables  runtime/redis-stream-table.ts
 *   event:*, events:open, events:all, lock:event:*     event state        runtime/redis-event-store.ts
 *
 * Redis is never on the critical path of a call: commands fail at once while the connection is down
 * (no offline queue) and after `commandTimeoutMs` when Redis hangs, so actors fall back to what they
 * hold in memory. The connection retries forever with back-off and says clearly when Redis goes away
 * and when it returns; `onReady` listeners resync what was written to memory meanwhile.
 */
import { createHash } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import { errorMessage } from './errors.ts';

/** The part of a Moleculer logger a connection writes to. */
export interface RedisLogger {
  info(msg: string): void;
  warn(msg: string): void;
  debug(msg: string): void;
}

/** How to open one connection. */
export interface RedisConnectionOptions {
  /** `redis://host:port[/db]`. */
  url: string;
  /** Cluster namespace: keys are prefixed `jitcast:<namespace>:`. */
  namespace: string;
  /** Who uses the connection (`monitoring`, `event`), for logs and CLIENT LIST. */
  name: string;
  logger: RedisLogger;
  /** Per-command timeout in ms. Default 500: no call waits longer than that on Redis. */
  commandTimeoutMs?: number;
  /** Longest pause between reconnect attempts in ms. Default 2000. */
  maxBackoffMs?: number;
}

/** A Lua script run by EVALSHA, falling back to EVAL once Redis has forgotten it (after a restart). */
export interface LuaScript {
  readonly lua: string;
  readonly sha: string;
  readonly keys: number;
}

/** Prepares a Lua script taking `keys` KEYS. */
export function luaScript(lua: string, keys: number): LuaScript {
  return { lua, keys, sha: createHash('sha1').update(lua).digest('hex') };
}

/** `redis://:secret@host` → `redis://***@host`, for logs. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}


/** One ioredis client with jitcast's key prefix, fail-fast options and outage logging. */
export class RedisConnection {
  readonly client: Redis;
  /** `jitcast:<namespace>:` */
  readonly prefix: string;
  readonly name: string;
  private readonly logger: RedisLogger;
  private readonly where: string;
  private readonly readyListeners = new Set<() => void>();
  private started = false;
  private closed = false;
  private everReady = false;
  /** Set while Redis is unreachable after having been reachable (or never reached yet). */
  private downSince: number | undefined = Date.now();
  private lastError = '';

  constructor(opts: RedisConnectionOptions) {
    this.name = opts.name;
    this.logger = opts.logger;
    this.prefix = `jitcast:${opts.namespace}:`;
    this.where = `redis:${redactUrl(opts.url)} conn:${opts.name}`;
    const maxBackoff = opts.maxBackoffMs ?? 2000;
    this.client = new Redis(opts.url, {
      lazyConnect: true,
      connectionName: `jitcast:${opts.namespace}:${opts.name}`,
      // Fail fast: a command issued while Redis is away is refused at once instead of queued, and
      // one in flight when the connection drops fails instead of being replayed later out of order.
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      commandTimeout: opts.commandTimeoutMs ?? 500,
      connectTimeout: 2000,
      // Reconnect forever: 100 ms, 200 ms, 400 ms … capped.
      retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times - 1, 10), maxBackoff),
    });
    // Without an 'error' listener ioredis prints every failed reconnect as an unhandled error.
    this.client.on('error', (err: Error) => {
      const msg = errorMessage(err);
      if (msg === this.lastError) return;
      this.lastError = msg;
      if (this.downSince === undefined) this.logger.debug(`redis error [${this.where}] ${msg}`);
      else this.logger.debug(`redis still unreachable [${this.where}] ${msg}`);
    });
    this.client.on('close', () => this.markDown());
    this.client.on('ready', () => this.markUp());
  }

  /** A key under this cluster's prefix: `key('event', '12345674')` → `jitcast:<ns>:event:12345674`. */
  key(...parts: string[]): string {
    return this.prefix + parts.join(':');
  }

  /** Whether commands can be sent now. */
  get ready(): boolean {
    return this.client.status === 'ready';
  }

  /** Starts connecting (lazily, once); never rejects: an unreachable Redis is retried in the background. */
  connect(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.client.connect().catch((err: unknown) => {
      // retryStrategy keeps trying; the first failure is worth one clear line.
      if (!this.everReady) this.logger.warn(`redis unreachable at start, working from memory and retrying [${this.where}] ${errorMessage(err)}`);
    });
  }

  /** Calls `fn` on every (re)connect, including the first; returns an unsubscribe function. */
  onReady(fn: () => void): () => void {
    this.readyListeners.add(fn);
    return () => this.readyListeners.delete(fn);
  }

  /** Runs a Lua script (EVALSHA, then EVAL when Redis no longer has it). */
  async run<T = unknown>(script: LuaScript, keys: string[], args: Array<string | number>): Promise<T> {
    if (keys.length !== script.keys) throw new Error(`script takes ${script.keys} keys, got ${keys.length}`);
    try {
      return (await this.client.evalsha(script.sha, script.keys, ...keys, ...args)) as T;
    } catch (err) {
      if (!errorMessage(err).includes('NOSCRIPT')) throw err;
      return (await this.client.eval(script.lua, script.keys, ...keys, ...args)) as T;
    }
  }

  /** Closes the connection (idempotent); pending commands fail. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.readyListeners.clear();
    if (this.client.status === 'ready') {
      try {
        await this.client.quit();
        return;
      } catch {
        // fall through to a hard disconnect
      }
    }
    this.client.disconnect(false);
  }

  private markDown(): void {
    if (this.closed || this.downSince !== undefined) return;
    this.downSince = Date.now();
    this.logger.warn(`redis connection lost, working from memory until it returns [${this.where}]`);
  }

  private markUp(): void {
    const since = this.downSince;
    this.downSince = undefined;
    this.lastError = '';
    if (!this.everReady) {
      this.everReady = true;
      this.logger.info(`redis connected [${this.where} prefix:${this.prefix}]`);
    } else if (since !== undefined) {
      this.logger.info(`redis back after ${((Date.now() - since) / 1000).toFixed(1)}s, resyncing [${this.where}]`);
    }
    for (const fn of [...this.readyListeners]) {
      try {
        fn();
      } catch (err) {
        this.logger.warn(`redis ready listener failed [${this.where}] ${errorMessage(err)}`);
      }
    }
  }
}

/** A connection for one actor; nothing is opened until `connect()` (the actor's start). */
export function createRedis(opts: RedisConnectionOptions): RedisConnection {
  return new RedisConnection(opts);
}

/** ioredis options of a BullMQ connection (runtime/archive-queue.ts, runtime/db-queue.ts): named, quick to give up, retrying. */
export function queueConnectionOptions(namespace: string, name: string, extra: RedisOptions): RedisOptions {
  return {
    connectionName: `jitcast:${namespace}:${name}`,
    connectTimeout: 2000,
    retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times - 1, 10), 2000),
    ...extra,
  };
}
