/**
 * The reporting write queue: event states go to the reporting database asynchronously, in process,
 * in order. A slow or unreachable database never delays or fails the caller; a failed write is
 * retried with exponential back-off until it lands; pending states of one event coalesce to the
 * latest; `version` in the upsert keeps an older state from overwriting a newer one.
 *
 * This writer serves embedded mode (PGlite) and a single node on PostgreSQL without Redis. A cluster
 * (PostgreSQL and Redis) queues the states as BullMQ jobs instead (runtime/db-queue.ts), so a node
 * that dies keeps nothing of them in memory; its worker writes a job's states with one multi-row
 * upsert (UPSERT_EVENTS_SQL). Both take versions from one `VersionClock`.
 */
import type { EventInfo } from './contracts.ts';
import { CoalescingWriter } from './coalescing-writer.ts';
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

/** Events a VersionClock remembers before it first prunes. */
const MIN_PRUNE_AT = 10_000;

/**
 * Versions of event states: the microseconds of `updatedAt`, so states written by different nodes
 * order by when they changed (every change sets `updatedAt`), and reconciliation derives the same
 * number from a stored event-info. Two states of one event in the same millisecond on one node
 * still order: the second gets the last version plus one.
 */
export class VersionClock {
  // Last version handed out per event, so two states in the same millisecond still order.
  readonly #last = new Map<string, number>();
  /** Size at which the next prune runs: doubles past what a prune leaves, so pruning stays O(1) amortized. */
  #pruneAt = MIN_PRUNE_AT;
  /** Prune passes so far (each scans every entry). */
  prunes = 0;

  /** Events the clock remembers. */
  get size(): number {
    return this.#last.size;
  }

  /** The version of `info`, above any this clock gave the event before. */
  next(info: EventInfo, keep?: (eventId: string) => boolean): number {
    const version = Math.max(versionOf(info), (this.#last.get(info.eventId) ?? 0) + 1);
    this.#last.set(info.eventId, version);
    if (this.#last.size > this.#pruneAt) {
      // Only collisions within the same millisecond need the memory; forget anything a minute old.
      // Under a burst every entry is younger than that: without the doubling, each call would scan them all.
      const horizon = (Date.now() - 60_000) * 1000;
      for (const [id, v] of this.#last) if (v < horizon && !keep?.(id)) this.#last.delete(id);
      this.prunes++;
      this.#pruneAt = Math.max(MIN_PRUNE_AT, 2 * this.#last.size);
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

/** Columns every event upsert writes, in the order of `upsertParams`. */
const EVENT_COLUMNS = `event_id, title, format, status, starts_at, created_at, updated_at, archive_days,
                      has_password, live_at, ended_at, archive, archive_error, version, account`;

/** What an upsert does to an existing row; the WHERE keeps a newer row from being overwritten by an older state. */
const ON_EVENT_CONFLICT = `
  ON CONFLICT (event_id) DO UPDATE SET
    title = EXCLUDED.title, format = EXCLUDED.format, status = EXCLUDED.status, starts_at = EXCLUDED.starts_at,
    created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, archive_days = EXCLUDED.archive_days,
    has_password = EXCLUDED.has_password, live_at = EXCLUDED.live_at, ended_at = EXCLUDED.ended_at,
    archive = EXCLUDED.archive, archive_error = EXCLUDED.archive_error, version = EXCLUDED.version,
    account = EXCLUDED.account
  WHERE events.version < EXCLUDED.version`;

/** Upsert of one event state; the WHERE keeps a newer row from being overwritten by an older state. */
export const UPSERT_EVENT_SQL = `
  INSERT INTO events (${EVENT_COLUMNS})
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13, $14, $15)${ON_EVENT_CONFLICT}`;

/**
 * Upsert of many event states in one statement (one round trip, one commit): parameter $n is the
 * array of column n of UPSERT_EVENT_SQL, one element per row, and unnest() zips them back into rows.
 * Same version guard. PostgreSQL refuses a statement whose ON CONFLICT DO UPDATE meets one key twice
 * ("cannot affect row a second time"), so the rows must name distinct events: `upsertManyParams` keeps
 * the latest state of each.
 */
export const UPSERT_EVENTS_SQL = `
  INSERT INTO events (${EVENT_COLUMNS})
  SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[],
                       $7::timestamptz[], $8::integer[], $9::boolean[], $10::timestamptz[], $11::timestamptz[],
                       $12::jsonb[], $13::text[], $14::bigint[], $15::text[])${ON_EVENT_CONFLICT}`;

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

/** An event state and the version it is written at. */
export interface VersionedState {
  info: EventInfo;
  version: number;
}

/**
 * The latest state of each event among `states` (a later one wins a tie), ordered by event ID. The
 * order matters beyond tidiness: two multi-row upserts that lock the same rows in the same order wait
 * for each other instead of deadlocking.
 */
export function latestPerEvent<T extends VersionedState>(states: readonly T[]): T[] {
  const latest = new Map<string, T>();
  for (const s of states) {
    const known = latest.get(s.info.eventId);
    if (!known || known.version <= s.version) latest.set(s.info.eventId, s);
  }
  return [...latest.values()].sort((a, b) => (a.info.eventId < b.info.eventId ? -1 : a.info.eventId > b.info.eventId ? 1 : 0));
}

/** The parameters of UPSERT_EVENTS_SQL: the latest state of each event, as one array per column. */
export function upsertManyParams(states: readonly VersionedState[]): unknown[][] {
  const columns: unknown[][] = Array.from({ length: 15 }, () => []);
  for (const { info, version } of latestPerEvent(states)) {
    const row = upsertParams(info, version);
    for (let c = 0; c < columns.length; c++) columns[c]!.push(row[c]);
  }
  return columns;
}

/** Writers open in this process, for the DB queue depth metric (runtime/metrics.ts). */
const openWriters = new Set<ReportingWriter>();

/** Event states waiting in this process's in-process writers (embedded mode; a cluster's wait in BullMQ). */
export function pendingCount(): number {
  let n = 0;
  for (const w of openWriters) n += w.depth();
  return n;
}

/** Asynchronous, ordered, retrying writer of event states into the reporting database. */
export class ReportingWriter implements ReportingSink {
  readonly #logger?: DbLogger;
  readonly #writer: CoalescingWriter<VersionedState>;
  readonly #clock = new VersionClock();

  constructor(openDb: () => Promise<Db>, logger?: DbLogger, options: ReportingOptions = {}) {
    openWriters.add(this);
    this.#logger = logger;
    this.#writer = new CoalescingWriter<VersionedState>({
      write: (db, _eventId, entry) => db.query(UPSERT_EVENT_SQL, upsertParams(entry.info, entry.version)),
      openDb,
      logger,
      what: 'reporting',
      queueName: 'reporting queue',
      closedUnwritten: 'reporting writer closed with unwritten states',
      describe: (eventId) => `event:${eventId}`,
      minBackoffMs: options.minBackoffMs,
      maxBackoffMs: options.maxBackoffMs,
    });
  }

  /** Queues the event's current state; returns at once and never throws. */
  enqueueEvent(info: EventInfo, version?: number): void {
    try {
      if (this.#writer.closed) {
        this.#logger?.warn(`reporting write after close dropped [event:${info?.eventId}]`);
        return;
      }
      if (version !== undefined) this.#clock.saw(info.eventId, version);
      else version = this.#clock.next(info, (id) => this.#writer.has(id));
      this.#writer.set(info.eventId, { info: structuredClone(info), version });
    } catch (err) {
      this.#logger?.error(`reporting enqueue failed [event:${(info as EventInfo | undefined)?.eventId}] ${(err as Error).message}`);
    }
  }

  /** Event states not yet written. */
  depth(): number {
    return this.#writer.depth();
  }

  /** Resolves once every queued state is written; rejects after `timeoutMs`. */
  drain(timeoutMs = 30_000): Promise<void> {
    return this.#writer.drain(timeoutMs);
  }

  /** Gives pending writes a short last chance, then stops and closes the database. Idempotent. */
  async close(graceMs = 5_000): Promise<void> {
    await this.#writer.close(graceMs);
    openWriters.delete(this);
  }

  /**
   * Opens the database now instead of on the first write. PGlite compiles its WASM and runs
   * initdb synchronously (seconds on a fresh data directory), which would stall every call and
   * timer of the process if it happened on the first reservation; a node opens it at start-up.
   * Never throws: a failure is logged and the first write tries again.
   */
  async warmUp(): Promise<void> {
    try {
      await this.#writer.db();
    } catch (err) {
      this.#logger?.warn(`reporting DB not reachable at start-up; writes queue until it is [${(err as Error).message}]`);
    }
  }

  /** Runs `fn` on the writer's database (opened if need be); rejects when it cannot be opened or `fn` fails. */
  async withDb<T>(fn: (db: Db) => Promise<T>): Promise<T> {
    if (this.#writer.closed) throw new Error('reporting writer closed');
    const db = await this.#writer.db();
    try {
      return await fn(db);
    } catch (err) {
      // A statement the database refused leaves it open; a database that no longer answers is reopened next time.
      const answers = await db.query('SELECT 1').then(() => true, () => false);
      if (!answers && this.#writer.currentDb === db) await this.#writer.closeDb();
      throw err;
    }
  }
}
