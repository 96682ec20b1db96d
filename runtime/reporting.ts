/**
 * The reporting write queue: event states go to the reporting database asynchronously, in process,
 * in order. A slow or unreachable database never delays or fails the caller; a failed write is
 * retried with exponential back-off until it lands; pending states of one event coalesce to the
 * latest; `version` in the upsert keeps an older state from overwriting a newer one.
 *
 * This writer serves embedded mode (PGlite) and a single node on PostgreSQL without Redis. A cluster
 * (PostgreSQL and Redis) queues the same upserts as BullMQ jobs instead (runtime/db-queue.ts), so a
 * node that dies keeps nothing of them in memory. Both take versions from one `VersionClock`.
 */
import type { EventInfo } from './contracts.ts';
import type { Db, DbLogger } from './db.ts';

/** Tuning of the writer's retries. */
export interface ReportingOptions {
  /** First retry delay after a failed write, in ms. Default 200. */
  minBackoffMs?: number;
  /** Longest retry delay, in ms. Default 30000. */
  maxBackoffMs?: number;
}

/** The narrow side of the writer that actors depend on (specs hand them fakes). */
export interface ReportingSink {
  /** Queues the state; `version` overrides the one the clock would give (reconciliation). Never throws. */
  enqueueEvent(info: EventInfo, version?: number): void;
  close(): Promise<void>;
  /** Runs `fn` on the sink's open database (start-up reconciliation reads and writes through it). */
  withDb?<T>(fn: (db: Db) => Promise<T>): Promise<T>;
  /** Event states accepted but not yet written (in memory, or queued in Redis). */
  depth?(): number;
}

/**
 * Versions of event states: the microseconds of `updatedAt`, so states written by different nodes
 * order by when they changed (every change sets `updatedAt`), and reconciliation derives the same
 * number from a stored event-info. Two states of one event in the same millisecond on one node
 * still order: the second gets the last version plus one.
 */
export class VersionClock {
  // Last version handed out per event, so two states in the same millisecond still order.
  readonly #last = new Map<string, number>();

  /** The version of `info`, above any this clock gave the event before. */
  next(info: EventInfo, keep?: (eventId: string) => boolean): number {
    const version = Math.max(versionOf(info), (this.#last.get(info.eventId) ?? 0) + 1);
    this.#last.set(info.eventId, version);
    if (this.#last.size > 10_000) {
      // Only collisions within the same millisecond need the memory; forget anything a minute old.
      const horizon = (Date.now() - 60_000) * 1000;
      for (const [id, v] of this.#last) if (v < horizon && !keep?.(id)) this.#last.delete(id);
    }
    return version;
  }

  /** Raises the clock's floor for an event to `version` (a version given from outside). */
  saw(eventId: string, version: number): void {
    if (version > (this.#last.get(eventId) ?? 0)) this.#last.set(eventId, version);
  }
}

/** The base version of a state: `updatedAt` in microseconds (now when it does not parse). */
export function versionOf(info: EventInfo): number {
  const stamp = Date.parse(info.updatedAt);
  return (Number.isFinite(stamp) ? stamp : Date.now()) * 1000;
}

interface Pending {
  info: EventInfo;
  version: number;
}

/** Upsert of one event state; the WHERE keeps a newer row from being overwritten by an older state. */
export const UPSERT_EVENT_SQL = `
  INSERT INTO events (event_id, title, format, status, starts_at, created_at, updated_at, archive_days,
                      has_password, live_at, ended_at, archive, archive_error, version, account)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13, $14, $15)
  ON CONFLICT (event_id) DO UPDATE SET
    title = EXCLUDED.title, format = EXCLUDED.format, status = EXCLUDED.status, starts_at = EXCLUDED.starts_at,
    created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, archive_days = EXCLUDED.archive_days,
    has_password = EXCLUDED.has_password, live_at = EXCLUDED.live_at, ended_at = EXCLUDED.ended_at,
    archive = EXCLUDED.archive, archive_error = EXCLUDED.archive_error, version = EXCLUDED.version,
    account = EXCLUDED.account
  WHERE events.version < EXCLUDED.version`;

/** The parameters of UPSERT_EVENT_SQL for one state. */
export function upsertParams(info: EventInfo, version: number): unknown[] {
  return [
    info.eventId, info.title, info.format, info.status, info.startsAt ?? null, info.createdAt, info.updatedAt,
    info.archiveDays, info.hasPassword, info.liveAt ?? null, info.endedAt ?? null,
    info.archive ? JSON.stringify(info.archive) : null, info.archiveError ?? null, version,
    // Migration 2 (accounts); event-info written before accounts is the operator's.
    info.account ?? 'operator',
  ];
}

/** Asynchronous, ordered, retrying writer of event states into the reporting database. */
/** Writers open in this process, for the DB queue depth metric (runtime/metrics.ts). */
const openWriters = new Set<ReportingWriter>();

/** Event states waiting in this process's in-process writers (embedded mode; a cluster's wait in BullMQ). */
export function pendingCount(): number {
  let n = 0;
  for (const w of openWriters) n += w.depth();
  return n;
}

export class ReportingWriter implements ReportingSink {
  readonly #openDb: () => Promise<Db>;
  readonly #logger?: DbLogger;
  readonly #minBackoffMs: number;
  readonly #maxBackoffMs: number;
  // Insertion order of a Map is the order of first enqueue; replacing a value keeps its place.
  readonly #pending = new Map<string, Pending>();
  readonly #clock = new VersionClock();
  #db: Db | undefined;
  #opening: Promise<Db> | undefined;
  #running = false;
  #closed = false;
  #failures = 0;
  #lastError = '';
  #timer: NodeJS.Timeout | undefined;
  #wakeRetry: (() => void) | undefined;
  #idleWaiters: Array<() => void> = [];

  constructor(openDb: () => Promise<Db>, logger?: DbLogger, options: ReportingOptions = {}) {
    openWriters.add(this);
    this.#openDb = openDb;
    this.#logger = logger;
    this.#minBackoffMs = options.minBackoffMs ?? 200;
    this.#maxBackoffMs = options.maxBackoffMs ?? 30_000;
  }

  /** Queues the event's current state; returns at once and never throws. */
  enqueueEvent(info: EventInfo, version?: number): void {
    try {
      if (this.#closed) {
        this.#logger?.warn(`reporting write after close dropped [event:${info?.eventId}]`);
        return;
      }
      if (version !== undefined) this.#clock.saw(info.eventId, version);
      else version = this.#clock.next(info, (id) => this.#pending.has(id));
      this.#pending.set(info.eventId, { info: structuredClone(info), version });
      this.#kick();
    } catch (err) {
      this.#logger?.error(`reporting enqueue failed [event:${(info as EventInfo | undefined)?.eventId}] ${(err as Error).message}`);
    }
  }

  /** Event states not yet written. */
  depth(): number {
    return this.#pending.size;
  }

  /** Resolves once every queued state is written; rejects after `timeoutMs`. */
  drain(timeoutMs = 30_000): Promise<void> {
    if (this.#pending.size === 0 && !this.#running) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#idleWaiters = this.#idleWaiters.filter((w) => w !== done);
        reject(new Error(`reporting queue not drained within ${timeoutMs} ms [depth:${this.#pending.size}]`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      this.#idleWaiters.push(done);
    });
  }

  /** Gives pending writes a short last chance, then stops and closes the database. Idempotent. */
  async close(graceMs = 5_000): Promise<void> {
    if (this.#closed) return;
    await this.drain(graceMs).catch(() => undefined);
    this.#closed = true;
    openWriters.delete(this);
    if (this.#timer) clearTimeout(this.#timer);
    this.#wakeRetry?.();
    if (this.#pending.size > 0) this.#logger?.warn(`reporting writer closed with unwritten states [depth:${this.#pending.size}]`);
    while (this.#running) await new Promise((r) => setTimeout(r, 10));
    await this.#closeDb();
    for (const w of this.#idleWaiters.splice(0)) w();
  }

  #kick(): void {
    if (this.#running || this.#closed) return;
    this.#running = true;
    void this.#run().finally(() => {
      this.#running = false;
      if (this.#pending.size > 0 && !this.#closed) this.#kick();
      else if (this.#pending.size === 0) for (const w of this.#idleWaiters.splice(0)) w();
    });
  }

  async #run(): Promise<void> {
    while (!this.#closed && this.#pending.size > 0) {
      const [eventId, entry] = this.#pending.entries().next().value as [string, Pending];
      try {
        const db = await this.#ensureDb();
        await db.query(UPSERT_EVENT_SQL, upsertParams(entry.info, entry.version));
        // A newer state enqueued during the write keeps its place and is written next.
        if (this.#pending.get(eventId) === entry) this.#pending.delete(eventId);
        if (this.#failures > 0) this.#logger?.info(`reporting writes recovered [after:${this.#failures} failures depth:${this.#pending.size}]`);
        this.#failures = 0;
      } catch (err) {
        this.#failures++;
        const delay = Math.min(this.#maxBackoffMs, this.#minBackoffMs * 2 ** Math.min(this.#failures - 1, 20));
        // An outage is one line, then one every ten tries (or when the error changes), not a line per try.
        const text = (err as Error).message;
        if (this.#failures === 1 || this.#failures % 10 === 0 || text !== this.#lastError) {
          this.#logger?.warn(`reporting write failed, retrying [event:${eventId} attempt:${this.#failures} retryInMs:${delay} depth:${this.#pending.size}] ${text}`);
        }
        this.#lastError = text;
        // Reopen on the next attempt: a pool or PGlite instance may be broken for good.
        await this.#closeDb();
        await new Promise<void>((resolve) => {
          this.#wakeRetry = resolve;
          this.#timer = setTimeout(resolve, delay);
        });
        this.#timer = undefined;
        this.#wakeRetry = undefined;
      }
    }
  }

  /**
   * Opens the database now instead of on the first write. PGlite compiles its WASM and runs
   * initdb synchronously (seconds on a fresh data directory), which would stall every call and
   * timer of the process if it happened on the first reservation; a node opens it at start-up.
   * Never throws: a failure is logged and the first write tries again.
   */
  async warmUp(): Promise<void> {
    try {
      await this.#ensureDb();
    } catch (err) {
      this.#logger?.warn(`reporting DB not reachable at start-up; writes queue until it is [${(err as Error).message}]`);
    }
  }

  /** Runs `fn` on the writer's database (opened if need be); rejects when it cannot be opened or `fn` fails. */
  async withDb<T>(fn: (db: Db) => Promise<T>): Promise<T> {
    if (this.#closed) throw new Error('reporting writer closed');
    const db = await this.#ensureDb();
    try {
      return await fn(db);
    } catch (err) {
      // A statement the database refused leaves it open; a database that no longer answers is reopened next time.
      const answers = await db.query('SELECT 1').then(() => true, () => false);
      if (!answers && this.#db === db) await this.#closeDb();
      throw err;
    }
  }

  /** The open database, opening it once even when asked concurrently. */
  #ensureDb(): Promise<Db> {
    if (this.#db) return Promise.resolve(this.#db);
    this.#opening ??= this.#openDb().then(
      (db) => {
        this.#db = db;
        this.#opening = undefined;
        return db;
      },
      (err: unknown) => {
        this.#opening = undefined;
        throw err;
      },
    );
    return this.#opening;
  }

  async #closeDb(): Promise<void> {
    const db = this.#db;
    this.#db = undefined;
    if (db) await db.close().catch((err: Error) => this.#logger?.warn(`reporting db close failed ${err.message}`));
  }
}
