/**
 * Usage rows in the reporting database (migration 3, table `event_usage`): an ordered, coalescing,
 * retrying writer (like runtime/reporting.ts: a slow or stopped database never delays the caller,
 * a failed write is retried with back-off until it lands) and a bounded read for the report.
 * Counters only grow, so the upsert keeps the larger of stored and new values: writes from several
 * nodes, or a node that restarted with fewer live counts, never lower a stored figure.
 */
import type { UsageCounts } from '../core/usage.ts';
import { CoalescingWriter } from './coalescing-writer.ts';
import type { Db, DbLogger } from './db.ts';

/** One event's row: the counters plus what monitoring and the event know. */
export interface UsageRow extends Omit<UsageCounts, 'currentListeners' | 'activeCalls'> {
  streams: number;
  streamSeconds: number;
  fragments: number;
  status?: string;
  final: boolean;
  updatedAt: string;
}

export const UPSERT_USAGE_SQL = `
  INSERT INTO event_usage (event_id, peak_listeners, peak_at, total_listeners, listening_seconds, segment_requests,
                           playlist_requests, call_seconds, calls, streams, stream_seconds, fragments, status, final, updated_at)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
  ON CONFLICT (event_id) DO UPDATE SET
    peak_at = CASE WHEN EXCLUDED.peak_listeners > event_usage.peak_listeners THEN EXCLUDED.peak_at ELSE event_usage.peak_at END,
    peak_listeners = GREATEST(event_usage.peak_listeners, EXCLUDED.peak_listeners),
    total_listeners = GREATEST(event_usage.total_listeners, EXCLUDED.total_listeners),
    listening_seconds = GREATEST(event_usage.listening_seconds, EXCLUDED.listening_seconds),
    segment_requests = GREATEST(event_usage.segment_requests, EXCLUDED.segment_requests),
    playlist_requests = GREATEST(event_usage.playlist_requests, EXCLUDED.playlist_requests),
    call_seconds = GREATEST(event_usage.call_seconds, EXCLUDED.call_seconds),
    calls = GREATEST(event_usage.calls, EXCLUDED.calls),
    streams = GREATEST(event_usage.streams, EXCLUDED.streams),
    stream_seconds = GREATEST(event_usage.stream_seconds, EXCLUDED.stream_seconds),
    fragments = GREATEST(event_usage.fragments, EXCLUDED.fragments),
    status = CASE WHEN event_usage.final AND NOT EXCLUDED.final THEN event_usage.status ELSE EXCLUDED.status END,
    final = event_usage.final OR EXCLUDED.final,
    updated_at = GREATEST(event_usage.updated_at, EXCLUDED.updated_at)`;

/** Parameters of UPSERT_USAGE_SQL. */
export function usageParams(r: UsageRow): unknown[] {
  return [
    r.eventId, r.peakListeners, r.peakAt ?? null, r.totalListeners, r.listeningSeconds, r.segmentRequests, r.playlistRequests,
    r.callSeconds, r.calls, r.streams, r.streamSeconds, r.fragments, r.status ?? null, r.final, r.updatedAt,
  ];
}

const iso = (v: unknown): string | undefined => (v instanceof Date ? v.toISOString() : typeof v === 'string' ? new Date(v).toISOString() : undefined);

/** A row as pg or PGlite returns it, back into a UsageRow. */
export function rowToUsage(r: Record<string, unknown>): UsageRow {
  const peakAt = iso(r.peak_at);
  return {
    eventId: String(r.event_id),
    peakListeners: Number(r.peak_listeners),
    ...(peakAt ? { peakAt } : {}),
    totalListeners: Number(r.total_listeners),
    listeningSeconds: Number(r.listening_seconds),
    segmentRequests: Number(r.segment_requests),
    playlistRequests: Number(r.playlist_requests),
    callSeconds: Number(r.call_seconds),
    calls: Number(r.calls),
    streams: Number(r.streams),
    streamSeconds: Number(r.stream_seconds),
    fragments: Number(r.fragments),
    ...(typeof r.status === 'string' ? { status: r.status } : {}),
    final: r.final === true,
    updatedAt: iso(r.updated_at) ?? new Date(0).toISOString(),
  };
}

/** The counters of a stored row, for mergeCounts (nobody is present in a stored row). */
export function countsOfRow(r: UsageRow): UsageCounts {
  return {
    eventId: r.eventId,
    peakListeners: r.peakListeners,
    ...(r.peakAt ? { peakAt: r.peakAt } : {}),
    totalListeners: r.totalListeners,
    listeningSeconds: r.listeningSeconds,
    segmentRequests: r.segmentRequests,
    playlistRequests: r.playlistRequests,
    callSeconds: r.callSeconds,
    calls: r.calls,
    currentListeners: 0,
    activeCalls: 0,
  };
}

/** Options of UsageWriter. */
export interface UsageWriterOptions {
  /** First retry delay, ms. Default 200. */
  minBackoffMs?: number;
  /** Longest retry delay, ms. Default 30000. */
  maxBackoffMs?: number;
  /** Longest wait of a read, ms: past it the report answers from live counters. Default 2000. */
  readTimeoutMs?: number;
}

/** Asynchronous, coalescing, retrying writer (and bounded reader) of usage rows. */
export class UsageWriter {
  readonly #logger?: DbLogger;
  readonly #readTimeoutMs: number;
  readonly #writer: CoalescingWriter<UsageRow>;

  constructor(open: () => Promise<Db>, logger?: DbLogger, opts: UsageWriterOptions = {}) {
    this.#logger = logger;
    this.#readTimeoutMs = opts.readTimeoutMs ?? 2000;
    this.#writer = new CoalescingWriter<UsageRow>({
      write: (db, _eventId, row) => db.query(UPSERT_USAGE_SQL, usageParams(row)),
      openDb: open,
      logger,
      what: 'usage',
      queueName: 'usage writes',
      closedUnwritten: 'usage writer closed with unwritten rows',
      describe: (eventId) => `event:${eventId}`,
      minBackoffMs: opts.minBackoffMs,
      maxBackoffMs: opts.maxBackoffMs,
    });
  }

  /** Queues the row (replacing a queued row of the same event); returns at once. */
  enqueue(row: UsageRow): void {
    this.#writer.set(row.eventId, { ...row });
  }

  /** Opens the DB now rather than on the first write (PGlite's first start is seconds of CPU); never throws. */
  async warmUp(): Promise<void> {
    try {
      await this.#writer.db();
    } catch (err) {
      this.#logger?.warn(`reporting DB not reachable at start-up; usage rows queue until it is [${(err as Error).message}]`);
    }
  }

  /** Rows queued and not yet written. */
  depth(): number {
    return this.#writer.depth();
  }

  /** The stored row, undefined when there is none; rejects when the DB does not answer within the read timeout. */
  async read(eventId: string): Promise<UsageRow | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`reporting DB did not answer within ${this.#readTimeoutMs} ms`)), this.#readTimeoutMs);
    });
    try {
      const rows = await Promise.race([this.#writer.db().then((db) => db.query<Record<string, unknown>>('SELECT * FROM event_usage WHERE event_id = $1', [eventId])), timeout]);
      return rows[0] ? rowToUsage(rows[0]) : undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Resolves once nothing is queued; rejects after `timeoutMs`. */
  drain(timeoutMs = 30_000): Promise<void> {
    return this.#writer.drain(timeoutMs);
  }

  /** A short last chance for queued rows, then stops and releases the DB. Idempotent. */
  close(graceMs = 1000): Promise<void> {
    return this.#writer.close(graceMs);
  }
}
