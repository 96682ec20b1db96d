/**
 * The reporting-DB writes of a cluster as BullMQ jobs in Redis (issue 5 "Asynchronous database"):
 * the event actor's states reach PostgreSQL even when PostgreSQL is down for a while or the node that
 * produced them is killed before they land.
 *
 * Producer (`DbQueueProducer`, a ReportingSink): `enqueueEvent` returns at once; states wait in
 * memory only until the next flush (20 ms), pending states of one event coalescing to the latest,
 * then go to Redis as ONE job carrying the whole batch (up to FLUSH_BATCH states, one per event).
 * One job per flush rather than per state: per reservation, Redis ran a job's add, moveToActive and
 * moveToFinished scripts and PostgreSQL committed one statement, which made the worker side a third
 * of a node's CPU at 1,000 reservations/s (issue 5 benchmark). The job's ID is a hash of its
 * (event, version) pairs, so a flush retried unchanged after its first answer was lost is one job;
 * a retry whose batch changed meanwhile is a second job, which rewrites some states harmlessly.
 * Redis away: the states stay in memory and the flush retries with back-off. What a node held in
 * memory when it died is found again by the start-up reconciliation (runtime/reconcile.ts), since
 * event-info.xml was stored first.
 *
 * Worker (`DbQueueWorker`): runs on every node with the event role in cluster mode. Any surviving
 * node drains what another one queued, no election is needed because the upsert is idempotent and
 * guarded by `version` (an older state never overwrites a newer one, whichever worker and whatever
 * order), and each node's PostgreSQL pool stays small. A job's states are written by one multi-row
 * upsert (UPSERT_EVENTS_SQL), one round trip and one commit. Jobs of the shape before batching (one
 * state each, `ev-<eventId>-<version>`), left in Redis by an older node during an upgrade, are
 * written the same way. A write that fails because PostgreSQL is unreachable does not fail the job:
 * the job stays active (its lock renewed) while one probe per worker retries the database with
 * exponential back-off from `minBackoffMs` up to `maxBackoffMs` (config `dbRetryMaxS`, 30 s); every
 * waiting job goes on when the probe succeeds. So an outage of any length uses up no attempt. When
 * the database answers but refuses the statement, one bad row must not hold back the rest of its
 * batch forever: the worker writes the states one statement each, logs every refused one, keeps only
 * those in the job and fails the attempt, so BullMQ retries just them with the same capped back-off,
 * DB_JOB_ATTEMPTS times. A worker killed with jobs active leaves them locked for at most DB_LOCK_MS;
 * BullMQ's stalled check on any other worker (or the same node restarted) moves them back to wait.
 *
 * Keys: BullMQ prefix `jitcast:<namespace>`, queue `reporting-db`, i.e. `jitcast:<namespace>:reporting-db:*`.
 */
import { createHash } from 'node:crypto';
import { Queue, Worker, type Job, type JobsOptions } from 'bullmq';
import { Redis } from 'ioredis';
import { backoffMs, IdleWaiters, LazyDb } from './coalescing-writer.ts';
import type { EventInfo } from './contracts.ts';
import type { Db, DbLogger } from './db.ts';
import { redactUrl } from './redis.ts';
import {
  UPSERT_EVENT_SQL, UPSERT_EVENTS_SQL, VersionClock, latestPerEvent, upsertManyParams, upsertParams, type ReportingSink,
} from './reporting.ts';
import { errorMessage } from './errors.ts';
import { queueConnectionOptions } from './redis.ts';

/** Queue name (under the BullMQ prefix `jitcast:<namespace>`). */
export const DB_QUEUE = 'reporting-db';
/** Failed attempts (the database answered with an error) before BullMQ gives a job up. An outage uses none. */
export const DB_JOB_ATTEMPTS = 1_000_000;
/** Lock of an active job, renewed every half: a killed worker's jobs are free again this long after. */
export const DB_LOCK_MS = 5_000;
/** How often a worker looks for stalled jobs. */
export const DB_STALLED_CHECK_MS = 2_000;
/** Most states one flush sends to Redis, i.e. one job carries and one statement writes. */
export const FLUSH_BATCH = 500;

/** One event state in a job. */
export interface DbJobState {
  eventId: string;
  version: number;
  info: EventInfo;
}

/** What one job carries: the states of one flush, at most one per event. */
export interface DbJobData {
  states: DbJobState[];
  /** Node that queued it (for logs). */
  by: string;
}

/** A job of the shape before batching (one state per job), still in Redis during an upgrade. */
export interface LegacyDbJobData extends DbJobState {
  by: string;
}

/** A state the worker wrote, with the node that queued it. */
export type WrittenState = DbJobState & { by: string };

/** The states of a job of either shape. */
export function jobStates(data: DbJobData | LegacyDbJobData): DbJobState[] {
  if (Array.isArray((data as DbJobData).states)) return (data as DbJobData).states;
  const { eventId, version, info } = data as LegacyDbJobData;
  return [{ eventId, version, info }];
}

/** `jitcast:<namespace>`: BullMQ puts `:<queue>:…` after it. */
export function dbQueuePrefix(namespace: string): string {
  return `jitcast:${namespace}`;
}

/**
 * The job ID of a batch: a hash of its (event, version) pairs in order, so the same batch sent twice
 * (a flush retried after its first answer was lost) is one job. BullMQ refuses IDs that parse as
 * integers, hence the `b-`; jobs of the shape before batching had `ev-<eventId>-<version>`.
 */
export function dbJobId(states: readonly DbJobState[]): string {
  const h = createHash('sha1');
  for (const s of states) h.update(`${s.eventId}:${s.version},`);
  return `b-${h.digest('hex')}`;
}

export { backoffMs };

/** The options of every job (the back-off itself is the worker's `backoffStrategy`). */
export function jobOptions(states: readonly DbJobState[]): JobsOptions {
  return {
    jobId: dbJobId(states),
    attempts: DB_JOB_ATTEMPTS,
    backoff: { type: 'capped' },
    removeOnComplete: true,
    removeOnFail: 1000,
  };
}

/** Where the queue lives. */
export interface DbQueueTarget {
  url: string;
  namespace: string;
}

/** Tuning shared by producer and worker. */
export interface DbQueueTuning {
  /** First retry delay, in ms. Default 200. */
  minBackoffMs?: number;
  /** Longest retry delay, in ms. Default 30000. */
  maxBackoffMs?: number;
}

/** Options of `DbQueueProducer`. */
export interface DbQueueProducerOptions extends DbQueueTarget, DbQueueTuning {
  nodeId: string;
  logger?: DbLogger;
  /**
   * How long states gather before a flush, in ms. Default 20: at 1,000 reservations a second a flush
   * then carries about 20 states as one job, where 2 ms made a job of two or three and the jobs'
   * Redis scripts and upserts cost the node a quarter of its reservations (benchmark: 1,020/s → 1,350-1,450/s
   * with PostgreSQL up). States wait in memory only that long; a node killed meanwhile leaves them to
   * the start-up reconciliation, as ever.
   */
  flushDelayMs?: number;
  /** A flush Redis does not answer within this fails and is retried, in ms. Default 5000. */
  flushTimeoutMs?: number;
}

interface Pending {
  info: EventInfo;
  version: number;
}

/** The event actor's side of the queue: states in, BullMQ jobs out. */
export class DbQueueProducer implements ReportingSink {
  readonly #opts: DbQueueProducerOptions;
  readonly #client: Redis;
  readonly #queue: Queue<DbJobData>;
  readonly #clock = new VersionClock();
  // Insertion order is the order of first enqueue; a newer state of the same event replaces its value.
  readonly #pending = new Map<string, Pending>();
  readonly #where: string;
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> | undefined;
  #failures = 0;
  #closed = false;
  readonly #idle = new IdleWaiters();
  /** States handed to Redis since start. */
  sent = 0;

  constructor(opts: DbQueueProducerOptions) {
    this.#opts = opts;
    this.#where = `redis:${redactUrl(opts.url)} queue:${dbQueuePrefix(opts.namespace)}:${DB_QUEUE}`;
    // One retry per command: a flush fails fast when Redis is away and is retried by the producer.
    this.#client = new Redis(opts.url, queueConnectionOptions(opts.namespace, 'db-queue', { maxRetriesPerRequest: 1 }));
    let lastError = '';
    this.#client.on('error', (err: Error) => {
      if (errorMessage(err) !== lastError) opts.logger?.warn(`reporting queue redis error [${this.#where}] ${(lastError = errorMessage(err))}`);
    });
    this.#client.on('ready', () => (lastError = ''));
    this.#queue = new Queue<DbJobData>(DB_QUEUE, { connection: this.#client, prefix: dbQueuePrefix(opts.namespace) });
    this.#queue.on('error', () => undefined); // the client's listener reports it
  }

  /** Queues the state; returns at once and never throws. */
  enqueueEvent(info: EventInfo, version?: number): void {
    try {
      if (this.#closed) {
        this.#opts.logger?.warn(`reporting write after close dropped [event:${info?.eventId}]`);
        return;
      }
      if (version !== undefined) this.#clock.saw(info.eventId, version);
      else version = this.#clock.next(info, (id) => this.#pending.has(id));
      const known = this.#pending.get(info.eventId);
      if (known && known.version > version) return; // an older state arriving late: the newer one stands
      this.#pending.set(info.eventId, { info: structuredClone(info), version });
      this.#schedule(this.#opts.flushDelayMs ?? 20);
    } catch (err) {
      this.#opts.logger?.error(`reporting enqueue failed [event:${(info as EventInfo | undefined)?.eventId}] ${errorMessage(err)}`);
    }
  }

  /** States not yet handed to Redis. */
  depth(): number {
    return this.#pending.size;
  }

  /** Jobs (batches of states) in Redis not yet written (waiting, active, delayed), from every node. */
  async queued(): Promise<number> {
    const c = await this.#queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
    return Object.values(c).reduce((a, b) => a + b, 0);
  }

  /** Resolves once every state given so far is in Redis; rejects after `timeoutMs`. */
  drain(timeoutMs = 30_000): Promise<void> {
    if (this.#pending.size === 0 && !this.#flushing) return Promise.resolve();
    return this.#idle.wait(timeoutMs, () => new Error(`reporting queue not flushed to redis within ${timeoutMs} ms [depth:${this.#pending.size}]`));
  }

  /** Gives pending states a short last chance to reach Redis, then closes. Idempotent. */
  async close(graceMs = 5_000): Promise<void> {
    if (this.#closed) return;
    await this.drain(graceMs).catch(() => undefined);
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#flushing;
    if (this.#pending.size > 0) {
      // Not lost: event-info.xml holds them and the next start-up reconciliation writes them.
      this.#opts.logger?.warn(`reporting queue closed with states not in redis [depth:${this.#pending.size}]: reconciliation will write them`);
    }
    await this.#queue.close().catch(() => undefined);
    this.#client.disconnect(false);
    this.#idle.release();
  }

  #schedule(delayMs: number): void {
    if (this.#timer || this.#flushing || this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#flushing = this.#flush().finally(() => {
        this.#flushing = undefined;
        if (this.#pending.size === 0) this.#idle.release();
        else if (!this.#closed) this.#schedule(this.#failures > 0 ? backoffMs(this.#failures, this.#opts.minBackoffMs ?? 200, this.#opts.maxBackoffMs ?? 30_000) : 0);
      });
    }, delayMs);
  }

  async #flush(): Promise<void> {
    const batch: Array<[string, Pending]> = [];
    for (const entry of this.#pending) {
      batch.push(entry);
      if (batch.length >= FLUSH_BATCH) break;
    }
    if (batch.length === 0) return;
    const timeoutMs = this.#opts.flushTimeoutMs ?? 5_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      const states = batch.map(([eventId, p]): DbJobState => ({ eventId, version: p.version, info: p.info }));
      const add = this.#queue.add('upsert', { states, by: this.#opts.nodeId }, jobOptions(states));
      await Promise.race([
        add,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`redis did not answer in ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
      // A newer state enqueued during the add keeps its place and goes with the next flush.
      for (const [eventId, p] of batch) if (this.#pending.get(eventId) === p) this.#pending.delete(eventId);
      this.sent += batch.length;
      if (this.#failures > 0) this.#opts.logger?.info(`reporting queue reaches redis again [after:${this.#failures} failures depth:${this.#pending.size}]`);
      this.#failures = 0;
    } catch (err) {
      this.#failures++;
      const retryIn = backoffMs(this.#failures, this.#opts.minBackoffMs ?? 200, this.#opts.maxBackoffMs ?? 30_000);
      if (this.#failures === 1 || this.#failures % 10 === 0) {
        this.#opts.logger?.warn(`reporting states not queued, keeping them in memory [${this.#where} attempt:${this.#failures} retryInMs:${retryIn} depth:${this.#pending.size}] ${errorMessage(err)}`);
      }
    } finally {
      if (timer) clearTimeout(timer);
    }
  }
}

/** `states:<n> event:<first> version:<its>` for a log line, from a job of either shape (or none). */
function describeStates(data: DbJobData | LegacyDbJobData | undefined): string {
  const states = data ? jobStates(data) : [];
  const first = states[0];
  return `states:${states.length} event:${first?.eventId ?? '?'} version:${first?.version ?? '?'}`;
}

/** A database outage as the worker sees it. */
interface Outage {
  /** Resolves when the database answers again (or the worker closes). */
  up: Promise<void>;
  release: () => void;
  /** Cuts the probe's current sleep short. */
  wake: () => void;
  since: number;
  aborted: boolean;
}

/** Options of `DbQueueWorker`. */
export interface DbQueueWorkerOptions extends DbQueueTarget, DbQueueTuning {
  /** Opens the database (PostgreSQL); called again after a failure. */
  openDb: () => Promise<Db>;
  logger?: DbLogger;
  /** Jobs written at once. Default 8. */
  concurrency?: number;
  /** Called after each row written, once per state (specs, metrics). */
  onWritten?: (state: WrittenState) => void;
}

/** A node's worker on the reporting queue: writes each job's states to PostgreSQL in one statement, waiting out outages. */
export class DbQueueWorker {
  readonly worker: Worker<DbJobData | LegacyDbJobData>;
  readonly #opts: DbQueueWorkerOptions;
  readonly #client: Redis;
  readonly #where: string;
  readonly #db: LazyDb;
  /** Set while the database is down: every job waits on it. */
  #outage: Outage | undefined;
  #closing: Promise<void> | undefined;
  /** Rows written since start (one per state, not per job). */
  written = 0;

  constructor(opts: DbQueueWorkerOptions) {
    this.#opts = opts;
    this.#db = new LazyDb(opts.openDb, (err) => opts.logger?.debug(`reporting db close failed ${err.message}`));
    this.#where = `redis:${redactUrl(opts.url)} queue:${dbQueuePrefix(opts.namespace)}:${DB_QUEUE}`;
    // A Worker's blocking fetch needs maxRetriesPerRequest null (runtime/archive-queue.ts).
    this.#client = new Redis(opts.url, queueConnectionOptions(opts.namespace, 'db-worker', { maxRetriesPerRequest: null }));
    let lastError = '';
    this.#client.on('error', (err: Error) => {
      if (errorMessage(err) !== lastError) opts.logger?.warn(`reporting worker redis error [${this.#where}] ${(lastError = errorMessage(err))}`);
    });
    this.#client.on('ready', () => (lastError = ''));
    const min = opts.minBackoffMs ?? 200;
    const max = opts.maxBackoffMs ?? 30_000;
    this.worker = new Worker<DbJobData | LegacyDbJobData>(DB_QUEUE, (job) => this.#process(job), {
      connection: this.#client,
      prefix: dbQueuePrefix(opts.namespace),
      concurrency: opts.concurrency ?? 8,
      lockDuration: DB_LOCK_MS,
      stalledInterval: DB_STALLED_CHECK_MS,
      maxStalledCount: DB_JOB_ATTEMPTS,
      settings: { backoffStrategy: (attemptsMade: number) => backoffMs(attemptsMade, min, max) },
    });
    this.worker.on('error', (err) => {
      if (errorMessage(err) !== lastError) opts.logger?.warn(`reporting worker error [${this.#where}] ${(lastError = errorMessage(err))}`);
    });
    this.worker.on('failed', (job, err) => {
      if (this.#closing) return;
      opts.logger?.warn(`reporting write failed, retrying [job:${job?.id ?? '?'} ${describeStates(job?.data)} attempt:${job?.attemptsMade ?? '?'}] ${errorMessage(err)}`);
    });
  }

  /** Resolves once the worker is connected and fetching jobs. */
  async ready(): Promise<void> {
    await this.worker.waitUntilReady();
  }

  /** Whether the worker is waiting for the database to come back. */
  get waitingForDb(): boolean {
    return this.#outage !== undefined;
  }

  /** Runs `fn` on the worker's database, waiting out an outage first; rejects once closing. */
  async withDb<T>(fn: (db: Db) => Promise<T>): Promise<T> {
    for (;;) {
      if (this.#closing) throw new Error('reporting worker closing');
      if (this.#outage) await this.#outage.up;
      if (this.#closing) throw new Error('reporting worker closing');
      let db: Db;
      try {
        db = await this.#db.get();
      } catch (err) {
        this.#down(err);
        continue;
      }
      try {
        return await fn(db);
      } catch (err) {
        if (this.#closing) throw err;
        // The database answers a probe: the statement itself failed, an ordinary failed attempt.
        if (await this.#answers(db)) throw err;
        this.#down(err);
      }
    }
  }

  async #process(job: Job<DbJobData | LegacyDbJobData>): Promise<void> {
    const by = job.data.by;
    // The producer sends one state per event; a job built otherwise must still be one valid statement.
    const states = latestPerEvent(jobStates(job.data));
    if (states.length === 0) return;
    try {
      await this.withDb((db) => db.query(UPSERT_EVENTS_SQL, upsertManyParams(states)));
    } catch (err) {
      // withDb throws only when closing or when the database answered and refused the statement.
      if (this.#closing || states.length === 1) throw err;
      this.#opts.logger?.warn(`reporting batch refused, writing its rows one by one [job:${job.id} states:${states.length}] ${errorMessage(err)}`);
      await this.#writeOneByOne(job, states, by);
      return;
    }
    for (const s of states) this.#wrote(s, by);
  }

  /**
   * Writes a refused batch one statement per state, so only the bad rows fail. The job then keeps
   * just those (a retry does not rewrite the rest) and the attempt fails, for BullMQ to retry them.
   */
  async #writeOneByOne(job: Job<DbJobData | LegacyDbJobData>, states: DbJobState[], by: string): Promise<void> {
    const refused: Array<{ state: DbJobState; err: unknown }> = [];
    for (const s of states) {
      try {
        await this.withDb((db) => db.query(UPSERT_EVENT_SQL, upsertParams(s.info, s.version)));
        this.#wrote(s, by);
      } catch (err) {
        if (this.#closing) throw err;
        refused.push({ state: s, err });
        this.#opts.logger?.warn(`reporting row refused [event:${s.eventId} version:${s.version} job:${job.id}] ${errorMessage(err)}`);
      }
    }
    // None refused on its own: the batch failed for a passing reason (a serialization failure, say) and is written now.
    if (refused.length === 0) return;
    // Should this fail, the retry rewrites the whole batch, which the version guard makes harmless.
    await job.updateData({ states: refused.map((r) => r.state), by }).catch(() => undefined);
    throw new Error(`${refused.length} of ${states.length} rows refused [${refused.map((r) => `event:${r.state.eventId}`).join(' ')}] ${errorMessage(refused[0]!.err)}`);
  }

  #wrote(state: DbJobState, by: string): void {
    this.written++;
    this.#opts.onWritten?.({ ...state, by });
  }

  async #answers(db: Db): Promise<boolean> {
    try {
      await db.query('SELECT 1');
      return true;
    } catch {
      return false;
    }
  }

  /** Enters (or stays in) an outage: one probe loop retries with back-off until the database answers. */
  #down(err: unknown): void {
    if (this.#outage || this.#closing) return;
    let release!: () => void;
    const up = new Promise<void>((r) => (release = r));
    const outage: Outage = { up, release, wake: () => undefined, since: Date.now(), aborted: false };
    this.#outage = outage;
    this.#opts.logger?.warn(`reporting DB unreachable: queued writes wait in redis [${this.#where}] ${errorMessage(err)}`);
    void this.#probe(outage);
  }

  async #probe(outage: Outage): Promise<void> {
    const min = this.#opts.minBackoffMs ?? 200;
    const max = this.#opts.maxBackoffMs ?? 30_000;
    let attempt = 0;
    let last = '';
    while (!outage.aborted) {
      await this.#db.close();
      const delay = backoffMs(++attempt, min, max);
      await new Promise<void>((r) => {
        const t = setTimeout(r, delay);
        outage.wake = () => {
          clearTimeout(t);
          r();
        };
      });
      if (outage.aborted) break;
      try {
        const db = await this.#db.get();
        await db.query('SELECT 1');
        this.#opts.logger?.info(`reporting DB reachable again: writing queued jobs [after:${Date.now() - outage.since} ms probes:${attempt}]`);
        break;
      } catch (err) {
        // One line when the error changes and one every ten probes: an outage stays visible without flooding.
        if (errorMessage(err) !== last || attempt % 10 === 0) {
          this.#opts.logger?.warn(`reporting DB still unreachable [for:${Date.now() - outage.since} ms probe:${attempt} retryInMs:${backoffMs(attempt + 1, min, max)}] ${(last = errorMessage(err))}`);
        }
      }
    }
    if (this.#outage === outage) this.#outage = undefined;
    outage.release();
  }

  /** Stops taking jobs; jobs waiting for the database fail this attempt and are retried later (by any worker). Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      const outage = this.#outage;
      if (outage) {
        outage.aborted = true;
        outage.wake();
      }
      try {
        await this.worker.close();
      } finally {
        this.#client.disconnect(false);
        await this.#db.end('reporting worker closing');
      }
    })();
    return this.#closing;
  }
}

/** Options of `QueuedReporting`. */
export interface QueuedReportingOptions extends DbQueueTarget, DbQueueTuning {
  nodeId: string;
  openDb: () => Promise<Db>;
  logger?: DbLogger;
}

/**
 * A cluster node's reporting: the producer the event actor writes to plus this node's worker on
 * the queue. `withDb` is the worker's database (start-up reconciliation).
 */
export class QueuedReporting implements ReportingSink {
  readonly producer: DbQueueProducer;
  readonly worker: DbQueueWorker;
  #closed = false;

  constructor(opts: QueuedReportingOptions) {
    this.producer = new DbQueueProducer(opts);
    this.worker = new DbQueueWorker(opts);
  }

  enqueueEvent(info: EventInfo, version?: number): void {
    this.producer.enqueueEvent(info, version);
  }

  depth(): number {
    return this.producer.depth();
  }

  withDb<T>(fn: (db: Db) => Promise<T>): Promise<T> {
    return this.worker.withDb(fn);
  }

  /** Flushes to Redis, stops the worker (queued jobs stay in Redis for the other nodes or the next start). Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([this.producer.close(), this.worker.close()]);
  }
}
