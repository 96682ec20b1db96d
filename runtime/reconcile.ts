/**
 * Start-up reconciliation of the reporting database with content storage (issue 5 "Asynchronous
 * database"): event-info.xml is the source of truth and is stored before any DB write is queued, so
 * a write that never landed (a node killed while states waited in its memory, a queue lost with its
 * Redis) leaves an event that storage has and the DB lacks or holds in an older state. One pass
 * lists every event in storage, reads the DB rows of a batch at a time and upserts each event whose
 * row is missing, older, or different in what reporting shows.
 *
 * `runReconciliation` runs the pass in the background, once per start, retrying with back-off while
 * the database (or storage) does not answer; start-up never waits for it. In a cluster a Redis lock
 * lets one node run it at a time, and a "done" stamp lets the others skip it: a pass that started
 * after this node started covers everything this node could have missed.
 */
import { Redis } from 'ioredis';
import type { EventInfo } from './contracts.ts';
import type { Db, DbLogger } from './db.ts';
import { backoffMs } from './db-queue.ts';
import { redactUrl } from './redis.ts';
import { UPSERT_EVENT_SQL, upsertParams, versionOf } from './reporting.ts';
import { mapLimit } from './map-limit.ts';

/** Where the pass reads events (content storage). */
export interface ReconcileSource {
  listEventIds(): Promise<string[]>;
  getEventInfo(eventId: string): Promise<EventInfo>;
}

/** What one pass found and did. */
export interface ReconcileCounts {
  /** Events in storage. */
  stored: number;
  /** Rows written because the DB had none. */
  missing: number;
  /** Rows written because the DB held an older or different state. */
  stale: number;
  /** Rows already matching storage. */
  unchanged: number;
  /** Events whose event-info could not be read (logged, skipped). */
  unreadable: number;
}

/** A row of `events` as the pass compares it. */
export interface EventRow {
  event_id: string;
  version: string | number;
  title: string;
  format: string;
  status: string;
  starts_at: Date | string | null;
  updated_at: Date | string;
  archive_days: number;
  has_password: boolean;
  live_at: Date | string | null;
  ended_at: Date | string | null;
  archive: unknown;
  archive_error: string | null;
  /** Migration 2 (accounts). */
  account?: string | null;
}

const ROW_SQL = `SELECT event_id, version, title, format, status, starts_at, updated_at, archive_days, has_password,
  live_at, ended_at, archive, archive_error, account FROM events WHERE event_id = ANY($1::text[])`;

/** Events read and compared at a time. */
const BATCH = 200;
/** event-info reads in flight at once. */
const READS_IN_FLIGHT = 16;

function ms(v: Date | string | null | undefined): number | null {
  if (v === null || v === undefined) return null;
  const t = v instanceof Date ? v.getTime() : Date.parse(v);
  return Number.isFinite(t) ? t : null;
}

function json(v: unknown): string {
  if (v === null || v === undefined) return '';
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/**
 * The version to write so the row shows `info`, or undefined when the row already does. A row older
 * than storage is rewritten at the stored state's version; a row at the same or a later version that
 * shows something else (two changes in one millisecond, the second write lost) one above the row's,
 * unless the row's `updated_at` is later than storage's (then the DB saw a newer state: leave it).
 */
export function versionToWrite(info: EventInfo, row: EventRow | undefined): number | undefined {
  const v = versionOf(info);
  if (!row) return v;
  const rowVersion = Number(row.version);
  if (rowVersion < v) return v;
  const rowUpdated = ms(row.updated_at) ?? 0;
  if (rowUpdated > Date.parse(info.updatedAt)) return undefined;
  const same =
    row.status === info.status &&
    row.title === info.title &&
    row.format === info.format &&
    Number(row.archive_days) === info.archiveDays &&
    Boolean(row.has_password) === info.hasPassword &&
    ms(row.starts_at) === ms(info.startsAt) &&
    ms(row.live_at) === ms(info.liveAt) &&
    ms(row.ended_at) === ms(info.endedAt) &&
    (row.archive_error ?? null) === (info.archiveError ?? null) &&
    json(row.archive) === json(info.archive) &&
    (row.account ?? 'operator') === (info.account ?? 'operator') &&
    rowUpdated === Date.parse(info.updatedAt);
  return same ? undefined : rowVersion + 1;
}

/**
 * One pass: every event in storage compared with its row, the missing and stale ones upserted.
 * Rejects when storage cannot be listed or the database fails (the caller retries).
 */
export async function reconcileOnce(source: ReconcileSource, db: Pick<Db, 'query'>, logger?: DbLogger, signal?: AbortSignal): Promise<ReconcileCounts> {
  const counts: ReconcileCounts = { stored: 0, missing: 0, stale: 0, unchanged: 0, unreadable: 0 };
  const ids = await source.listEventIds();
  counts.stored = ids.length;
  for (let i = 0; i < ids.length; i += BATCH) {
    if (signal?.aborted) throw new Error('reconciliation stopped');
    const batch = ids.slice(i, i + BATCH);
    const infos = await mapLimit(batch, READS_IN_FLIGHT, async (eventId) => {
      try {
        return await source.getEventInfo(eventId);
      } catch (err) {
        counts.unreadable++;
        logger?.warn(`reconciliation could not read event-info [event:${eventId}] ${(err as Error).message}`);
        return undefined;
      }
    });
    const rows = new Map((await db.query<EventRow>(ROW_SQL, [batch])).map((r) => [r.event_id, r]));
    for (const info of infos) {
      if (!info) continue;
      const row = rows.get(info.eventId);
      const version = versionToWrite(info, row);
      if (version === undefined) {
        counts.unchanged++;
        continue;
      }
      await db.query(UPSERT_EVENT_SQL, upsertParams(info, version));
      if (row) counts.stale++;
      else counts.missing++;
      logger?.debug(`reconciled [event:${info.eventId} status:${info.status} version:${version} ${row ? 'stale' : 'missing'}]`);
    }
  }
  return counts;
}

/** Decides which node of a cluster runs the pass. */
export interface ReconcileGuard {
  /** 'done': a pass that started at or after `sinceMs` finished; 'run': this node holds the lock; 'wait': another node runs it. */
  claim(sinceMs: number): Promise<'run' | 'done' | 'wait'>;
  /** Keeps the lock while the pass runs. */
  renew(): Promise<void>;
  /** Records the pass started at `startedMs` as done and gives up the lock. */
  finish(startedMs: number): Promise<void>;
  /** Gives up the lock (a failed pass). */
  release(): Promise<void>;
  close(): Promise<void>;
}

/** Lock and done stamp in Redis under `jitcast:<namespace>:db-reconcile:*`. */
export class RedisReconcileGuard implements ReconcileGuard {
  static readonly LOCK_MS = 30_000;
  readonly #client: Redis;
  readonly #lockKey: string;
  readonly #doneKey: string;
  readonly #holder: string;

  constructor(url: string, namespace: string, nodeId: string, logger?: DbLogger) {
    this.#client = new Redis(url, {
      connectionName: `jitcast:${namespace}:db-reconcile`,
      connectTimeout: 2000,
      maxRetriesPerRequest: 1,
      retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times - 1, 10), 2000),
    });
    let last = '';
    this.#client.on('error', (err: Error) => {
      if (err.message !== last) logger?.debug(`reconciliation redis error [redis:${redactUrl(url)}] ${(last = err.message)}`);
    });
    this.#lockKey = `jitcast:${namespace}:db-reconcile:lock`;
    this.#doneKey = `jitcast:${namespace}:db-reconcile:done`;
    this.#holder = `${nodeId}:${process.pid}:${Date.now()}`;
  }

  async claim(sinceMs: number): Promise<'run' | 'done' | 'wait'> {
    const done = Number(await this.#client.get(this.#doneKey));
    if (Number.isFinite(done) && done >= sinceMs) return 'done';
    const ok = await this.#client.set(this.#lockKey, this.#holder, 'PX', RedisReconcileGuard.LOCK_MS, 'NX');
    return ok === 'OK' ? 'run' : 'wait';
  }

  async renew(): Promise<void> {
    await this.#client.eval(
      `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`,
      1, this.#lockKey, this.#holder, RedisReconcileGuard.LOCK_MS,
    );
  }

  async finish(startedMs: number): Promise<void> {
    // Only ever forward: a slow pass must not hide a later one.
    await this.#client.eval(
      `local d = tonumber(redis.call('GET', KEYS[1]) or '0') if tonumber(ARGV[1]) > d then redis.call('SET', KEYS[1], ARGV[1]) end return 1`,
      1, this.#doneKey, String(startedMs),
    );
    await this.release();
  }

  async release(): Promise<void> {
    await this.#client.eval(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`, 1, this.#lockKey, this.#holder);
  }

  async close(): Promise<void> {
    this.#client.disconnect(false);
  }
}

/** Options of `runReconciliation`. */
export interface ReconciliationOptions {
  source: ReconcileSource;
  /** Runs `fn` on the reporting database (the sink's `withDb`). */
  withDb: <T>(fn: (db: Db) => Promise<T>) => Promise<T>;
  logger?: DbLogger;
  /** Cluster: which node runs the pass. Default none (this node runs it). */
  guard?: ReconcileGuard;
  /** First retry delay, in ms. Default 500. */
  minBackoffMs?: number;
  /** Longest retry delay, in ms. Default 30000. */
  maxBackoffMs?: number;
  /** When this node started (ms); a pass started since then by another node counts. Default now. */
  startedMs?: number;
}

/** A reconciliation running in the background. */
export interface Reconciliation {
  /** Resolves with the counts of this node's pass, or undefined when another node's pass covered it or it was stopped. */
  readonly done: Promise<ReconcileCounts | undefined>;
  /** Stops retrying (a pass in progress stops at its next batch). */
  stop(): Promise<void>;
}

/** Starts the pass in the background: never rejects, retries until it has run (or another node ran it) or `stop()`. */
export function runReconciliation(opts: ReconciliationOptions): Reconciliation {
  const ac = new AbortController();
  const startedMs = opts.startedMs ?? Date.now();
  let wake: () => void = () => undefined;
  const sleep = (ms: number) =>
    new Promise<void>((r) => {
      const t = setTimeout(r, ms);
      wake = () => {
        clearTimeout(t);
        r();
      };
    });
  const done = (async (): Promise<ReconcileCounts | undefined> => {
    let attempt = 0;
    while (!ac.signal.aborted) {
      let renew: NodeJS.Timeout | undefined;
      let holding = false;
      try {
        if (opts.guard) {
          const claim = await opts.guard.claim(startedMs);
          if (claim === 'done') {
            opts.logger?.info(`reconciliation done by another node since this one started: skipped`);
            return undefined;
          }
          if (claim === 'wait') {
            await sleep(1000);
            continue;
          }
          holding = true;
          renew = setInterval(() => void opts.guard!.renew().catch(() => undefined), RedisReconcileGuard.LOCK_MS / 3);
        }
        const passStarted = Date.now();
        const counts = await opts.withDb((db) => reconcileOnce(opts.source, db, opts.logger, ac.signal));
        if (holding) await opts.guard!.finish(passStarted).catch(() => undefined);
        holding = false;
        const written = counts.missing + counts.stale;
        opts.logger?.info(
          `reconciled ${written} events [stored:${counts.stored} missing:${counts.missing} stale:${counts.stale} unchanged:${counts.unchanged} unreadable:${counts.unreadable} ms:${Date.now() - passStarted}]`,
        );
        return counts;
      } catch (err) {
        if (ac.signal.aborted) break;
        const delay = backoffMs(++attempt, opts.minBackoffMs ?? 500, opts.maxBackoffMs ?? 30_000);
        opts.logger?.warn(`reconciliation failed, retrying [attempt:${attempt} retryInMs:${delay}] ${(err as Error).message}`);
        await sleep(delay);
      } finally {
        if (renew) clearInterval(renew);
        if (holding) await opts.guard!.release().catch(() => undefined);
      }
    }
    return undefined;
  })();
  return {
    done,
    async stop() {
      ac.abort();
      wake();
      // A pass waiting out a database outage inside `withDb` ends when the sink closes; do not wait for that.
      let t: NodeJS.Timeout | undefined;
      await Promise.race([done, new Promise<void>((r) => (t = setTimeout(r, 2_000)))]);
      clearTimeout(t);
      await opts.guard?.close();
    },
  };
}
