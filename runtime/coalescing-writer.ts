/**
 * The in-process write queue behind the reporting DB writers (runtime/reporting.ts event states,
 * runtime/usage-db.ts usage rows, runtime/api-keys.ts key records): entries keyed by ID, written
 * one at a time in the order their key was first queued; a newer value for a queued key replaces
 * it in place; a failed write is retried with exponential back-off until it lands. The caller is
 * never delayed or failed by a slow or unreachable database.
 *
 * Also here, for runtime/db-queue.ts as well: `backoffMs`, `LazyDb` (open once, reopen after a
 * failure) and `IdleWaiters` (drain() promises).
 */
import type { Db, DbLogger } from './db.ts';
import { errorMessage } from './errors.ts';

/** Exponential back-off from `minMs`, doubling per attempt, capped at `maxMs`. */
export function backoffMs(attempt: number, minMs: number, maxMs: number): number {
  return Math.min(maxMs, minMs * 2 ** Math.min(Math.max(attempt - 1, 0), 30));
}


/** A database opened on first use (once, even when asked concurrently) and dropped to be reopened after a failure. */
export class LazyDb {
  readonly #open: () => Promise<Db>;
  readonly #onCloseError: (err: Error) => void;
  #db: Db | undefined;
  #opening: Promise<Db> | undefined;
  #ended: string | undefined;

  /** `onCloseError`: logs a close that failed (a close never rejects). */
  constructor(open: () => Promise<Db>, onCloseError: (err: Error) => void) {
    this.#open = open;
    this.#onCloseError = onCloseError;
  }

  /** The open database, if any. */
  get current(): Db | undefined {
    return this.#db;
  }

  /** The open database, opening it if need be; rejects when it cannot be opened or after end(). */
  get(): Promise<Db> {
    if (this.#db) return Promise.resolve(this.#db);
    if (this.#ended !== undefined) return Promise.reject(new Error(this.#ended));
    this.#opening ??= this.#open().then(
      (db) => {
        this.#opening = undefined;
        // An open that was under way when the owner closed (PGlite's first start takes seconds) is not kept.
        if (this.#ended !== undefined) {
          void db.close().catch(() => undefined);
          throw new Error(this.#ended);
        }
        this.#db = db;
        return db;
      },
      (err: unknown) => {
        this.#opening = undefined;
        throw err;
      },
    );
    return this.#opening;
  }

  /** Closes the database; the next get() opens a new one (a pool or PGlite instance may be broken for good). */
  async close(): Promise<void> {
    const db = this.#db;
    this.#db = undefined;
    if (db) await db.close().catch((err: Error) => this.#onCloseError(err));
  }

  /** Closes the database for good: get() rejects with `reason` from now on. Idempotent. */
  async end(reason: string): Promise<void> {
    this.#ended ??= reason;
    await this.close();
  }
}

/** Callers of a drain() waiting for a queue to go idle. */
export class IdleWaiters {
  #waiters: Array<() => void> = [];

  /** Resolves at the next release(); rejects with `timeoutError()` after `timeoutMs` (and stops waiting). */
  wait(timeoutMs: number, timeoutError: () => Error): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== done);
        reject(timeoutError());
      }, timeoutMs);
      this.#waiters.push(done);
    });
  }

  /** Resolves every waiter. */
  release(): void {
    for (const w of this.#waiters.splice(0)) w();
  }
}

/** What a CoalescingWriter writes with and how it names itself. */
export interface CoalescingWriterOptions<V> {
  /** Writes one entry; a rejection is retried with back-off (after the database is reopened). */
  write: (db: Db, key: string, value: V) => Promise<unknown>;
  /** Opens the database, on the first write or warmUp() and again after a failed write. */
  openDb: () => Promise<Db>;
  logger?: DbLogger;
  /** Start of every log line: `<what> write failed, retrying`, `<what> writes recovered`, `<what> db close failed`. */
  what: string;
  /** The drain() timeout error: `<queueName> not drained within …`. */
  queueName: string;
  /** The warning of a close() that leaves entries unwritten, before ` [depth:N]`. */
  closedUnwritten: string;
  /** The context of an entry in a failure line, e.g. `event:12345678`. */
  describe: (key: string, value: V) => string;
  /** First retry delay after a failed write, in ms. Default 200. */
  minBackoffMs?: number;
  /** Longest retry delay, in ms. Default 30000. */
  maxBackoffMs?: number;
}

/** An asynchronous, ordered, coalescing, retrying keyed writer (see the module comment). */
export class CoalescingWriter<V> {
  readonly #opts: CoalescingWriterOptions<V>;
  readonly #minBackoffMs: number;
  readonly #maxBackoffMs: number;
  readonly #db: LazyDb;
  // Insertion order of a Map is the order of first set(); replacing a value keeps its place. Each
  // value is boxed so a set() during its write is seen even when it stores the same object again.
  readonly #pending = new Map<string, { value: V }>();
  readonly #idle = new IdleWaiters();
  #running = false;
  #closed = false;
  #failures = 0;
  #lastError = '';
  #timer: NodeJS.Timeout | undefined;
  #wakeRetry: (() => void) | undefined;

  constructor(opts: CoalescingWriterOptions<V>) {
    this.#opts = opts;
    this.#minBackoffMs = opts.minBackoffMs ?? 200;
    this.#maxBackoffMs = opts.maxBackoffMs ?? 30_000;
    this.#db = new LazyDb(opts.openDb, (err) => opts.logger?.warn(`${opts.what} db close failed ${err.message}`));
  }

  /** True once close() has begun stopping the writer. */
  get closed(): boolean {
    return this.#closed;
  }

  /** The queued value of `key`, if one is waiting. */
  get(key: string): V | undefined {
    return this.#pending.get(key)?.value;
  }

  has(key: string): boolean {
    return this.#pending.has(key);
  }

  /** Queues `value` (replacing a queued value of `key` in its place); returns at once. Ignored after close(). */
  set(key: string, value: V): void {
    if (this.#closed) return;
    this.#pending.set(key, { value });
    this.#kick();
  }

  /** Entries not yet written. */
  depth(): number {
    return this.#pending.size;
  }

  /** Resolves once nothing is queued and no write runs; rejects after `timeoutMs`. */
  drain(timeoutMs = 30_000): Promise<void> {
    if (this.#pending.size === 0 && !this.#running) return Promise.resolve();
    return this.#idle.wait(timeoutMs, () => new Error(`${this.#opts.queueName} not drained within ${timeoutMs} ms [depth:${this.#pending.size}]`));
  }

  /**
   * Gives queued entries up to `graceMs` to land, then stops and closes the database. A write
   * still running then is waited for up to `graceMs` more, not longer: a write stuck opening the
   * DB must not hold up shutdown. Idempotent; pending drain() calls resolve.
   */
  async close(graceMs: number): Promise<void> {
    if (this.#closed) return;
    await this.drain(graceMs).catch(() => undefined);
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#wakeRetry?.();
    const until = Date.now() + graceMs;
    while (this.#running && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    if (this.#pending.size > 0) this.#opts.logger?.warn(`${this.#opts.closedUnwritten} [depth:${this.#pending.size}]`);
    await this.#db.end(`${this.#opts.what} writer closed`);
    this.#idle.release();
  }

  /** The writer's database, opened if need be (warm-up, reads, reconciliation). */
  db(): Promise<Db> {
    return this.#db.get();
  }

  /** The database if it is open now. */
  get currentDb(): Db | undefined {
    return this.#db.current;
  }

  /** Closes the database; the next write or db() opens it again. */
  closeDb(): Promise<void> {
    return this.#db.close();
  }

  #kick(): void {
    if (this.#running || this.#closed) return;
    this.#running = true;
    void this.#run().finally(() => {
      this.#running = false;
      if (this.#pending.size > 0 && !this.#closed) this.#kick();
      else if (this.#pending.size === 0) this.#idle.release();
    });
  }

  async #run(): Promise<void> {
    const { logger, what } = this.#opts;
    while (!this.#closed && this.#pending.size > 0) {
      const [key, entry] = this.#pending.entries().next().value as [string, { value: V }];
      try {
        await this.#opts.write(await this.#db.get(), key, entry.value);
        // A newer value queued during the write keeps its place and is written next.
        if (this.#pending.get(key) === entry) this.#pending.delete(key);
        if (this.#failures > 0) logger?.info(`${what} writes recovered [after:${this.#failures} failures depth:${this.#pending.size}]`);
        this.#failures = 0;
      } catch (err) {
        this.#failures++;
        const delay = backoffMs(this.#failures, this.#minBackoffMs, this.#maxBackoffMs);
        // An outage is one warning, then one every ten tries or when the error changes; the tries between are debug.
        const text = errorMessage(err);
        const level = this.#failures === 1 || this.#failures % 10 === 0 || text !== this.#lastError ? 'warn' : 'debug';
        logger?.[level](`${what} write failed, retrying [${this.#opts.describe(key, entry.value)} attempt:${this.#failures} retryInMs:${delay} depth:${this.#pending.size}] ${text}`);
        this.#lastError = text;
        // Reopen on the next attempt: a pool or PGlite instance may be broken for good.
        await this.#db.close();
        await new Promise<void>((resolve) => {
          this.#wakeRetry = resolve;
          this.#timer = setTimeout(resolve, delay);
        });
        this.#timer = undefined;
        this.#wakeRetry = undefined;
      }
    }
  }
}
