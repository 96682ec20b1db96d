/**
 * Durable, idempotent archive work in cluster mode (DESIGN.md "Archive leader election", issue 4):
 * the event actor adds one BullMQ job per event and only the elected archive leader runs a Worker on
 * the queue. A job's ID is derived from the event ID alone (`event-<eventId>`: BullMQ refuses IDs
 * that parse as integers, and event IDs are 8 digits), so a second request for the same event while
 * its job waits or runs is a no-op in Redis, and a moment with two leaders (split views, a failover)
 * still runs each event's build once: BullMQ hands a job to one worker at a time.
 *
 * Keys: BullMQ prefix `jitcast:<namespace>`, queue `archive`, so everything lives under
 * `jitcast:<namespace>:archive:*` beside the other keys of runtime/redis.ts and clusters that share
 * one Redis stay apart. Connections follow runtime/redis.ts (connection name, redacted URL in logs,
 * capped reconnect back-off) but not its fail-fast options: a Worker's blocking fetch needs
 * `maxRetriesPerRequest: null` and no per-command timeout, or BullMQ cannot wait for jobs.
 *
 * Failover: a leader that dies mid-build leaves its job "active" with a lock it no longer renews.
 * BullMQ's stalled-job check (every worker runs it) moves such a job back to "wait" once the lock has
 * expired; with the defaults (30 s lock, 30 s check) a new leader would sit on it for up to a
 * minute. ARCHIVE_LOCK_MS (3 s, renewed every 1.5 s) and ARCHIVE_STALLED_CHECK_MS (1 s) bound it to
 * about the lock plus one check after the new leader's Worker starts, which under the default 20 s
 * silence limit is at once (the lock has long expired). The cost of a short lock: a worker whose
 * event loop stalls past it may see its job taken again; the build is idempotent (an event-info that
 * holds an archive is answered as is), so that costs a second read, never a second archive.
 * Jobs are removed when done, so a later `retry-archive` of the same event can add the job again.
 */
import { Queue, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { redactUrl, type RedisLogger } from './redis.ts';
import { errorMessage } from './errors.ts';
import { queueConnectionOptions } from './redis.ts';

/** Queue name (under the BullMQ prefix `jitcast:<namespace>`). */
export const ARCHIVE_QUEUE = 'archive';
/** Lock on a running job, renewed every half; a dead leader's job is free this long after its last renewal. */
export const ARCHIVE_LOCK_MS = 3000;
/** How often a worker looks for stalled jobs (active, lock expired). */
export const ARCHIVE_STALLED_CHECK_MS = 1000;
/** A job may lose its worker this many times (leaders dying under it) before BullMQ fails it. */
export const ARCHIVE_MAX_STALLED = 5;

/** What one archive job carries. */
export interface ArchiveJobData {
  eventId: string;
  /** Node ID of the event actor that asked (for logs). */
  requestedBy: string;
  requestedAt: string;
}

/** `jitcast:<namespace>`: BullMQ puts `:<queue>:…` after it. */
export function archiveQueuePrefix(namespace: string): string {
  return `jitcast:${namespace}`;
}

/** The job ID of an event's archive: one per event, whoever asks. */
export function archiveJobId(eventId: string): string {
  return `event-${eventId}`;
}

/**
 * TEST ONLY: `JITCAST_TEST_ARCHIVE_HOLD_MS` makes the leader wait this long after taking a job and
 * before building, so a multi-process spec or benchmark can kill it mid-job
 * (spec/cluster/archive-leader.spec.ts, bench/leader-failover.ts). Not a setting: unset in production,
 * and deliberately not in cluster.config.ts or the CLI flags.
 */
export function testHoldMs(env: NodeJS.ProcessEnv = process.env): number {
  const n = Number(env.JITCAST_TEST_ARCHIVE_HOLD_MS ?? 0);
  return Number.isFinite(n) && n > 0 ? n : 0;
}

/** Where the queue lives. */
export interface ArchiveQueueTarget {
  url: string;
  namespace: string;
}

/** What `enqueueArchive` did. */
export interface EnqueueResult {
  jobId: string;
  /** The job's state right after the add: `waiting` for a new job; `active` etc. when the add found it already there. */
  state: string;
}

/**
 * Adds the event's archive job, or finds it already there (same ID: a no-op). Opens a short-lived
 * connection: an archive is requested once per event, and the event actor then holds no BullMQ
 * state of its own to close. Rejects within `timeoutMs` when Redis does not answer.
 */
export async function enqueueArchive(target: ArchiveQueueTarget, data: ArchiveJobData, timeoutMs = 5000): Promise<EnqueueResult> {
  const client = new Redis(target.url, queueConnectionOptions(target.namespace, 'archive-queue', { maxRetriesPerRequest: 1, retryStrategy: () => null }));
  client.on('error', () => undefined); // the add's own rejection reports it
  const queue = new Queue<ArchiveJobData>(ARCHIVE_QUEUE, { connection: client, prefix: archiveQueuePrefix(target.namespace) });
  queue.on('error', () => undefined);
  let timer: NodeJS.Timeout | undefined;
  try {
    const work = (async () => {
      await queue.waitUntilReady();
      const jobId = archiveJobId(data.eventId);
      const job = await queue.add('build', data, { jobId, removeOnComplete: true, removeOnFail: true, attempts: 1 });
      return { jobId: job.id ?? jobId, state: String(await queue.getJobState(jobId)) };
    })();
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`archive queue did not answer in ${timeoutMs} ms [redis:${redactUrl(target.url)}]`)), timeoutMs);
    });
    return await Promise.race([work, timeout]);
  } finally {
    if (timer) clearTimeout(timer);
    await queue.close().catch(() => undefined);
    client.disconnect(false);
  }
}

/** How the leader processes one job; its rejection fails the job (BullMQ then drops it: removeOnFail). */
export type ArchiveProcessor = (job: Job<ArchiveJobData>) => Promise<void>;

/** Options of `openArchiveWorker`. */
export interface ArchiveWorkerOptions extends ArchiveQueueTarget {
  logger: RedisLogger & { error(msg: string): void };
  process: ArchiveProcessor;
  /** A job BullMQ failed outside `process` (stalled past ARCHIVE_MAX_STALLED): report it. */
  onFailed?: (eventId: string, reason: string) => void;
}

/** The leader's worker on the archive queue; `close()` is idempotent and lets a running build finish. */
export class ArchiveWorker {
  readonly worker: Worker<ArchiveJobData>;
  private readonly client: Redis;
  private closing: Promise<void> | undefined;

  constructor(opts: ArchiveWorkerOptions) {
    const where = `redis:${redactUrl(opts.url)} queue:${archiveQueuePrefix(opts.namespace)}:${ARCHIVE_QUEUE}`;
    this.client = new Redis(opts.url, queueConnectionOptions(opts.namespace, 'archive-worker', { maxRetriesPerRequest: null }));
    let lastError = '';
    this.client.on('error', (err: Error) => {
      if (errorMessage(err) !== lastError) opts.logger.warn(`archive worker redis error [${where}] ${(lastError = errorMessage(err))}`);
    });
    this.client.on('ready', () => (lastError = ''));
    this.worker = new Worker<ArchiveJobData>(ARCHIVE_QUEUE, opts.process, {
      connection: this.client,
      prefix: archiveQueuePrefix(opts.namespace),
      concurrency: 4,
      lockDuration: ARCHIVE_LOCK_MS,
      stalledInterval: ARCHIVE_STALLED_CHECK_MS,
      maxStalledCount: ARCHIVE_MAX_STALLED,
    });
    this.worker.on('error', (err) => {
      if (errorMessage(err) !== lastError) opts.logger.warn(`archive worker error [${where}] ${(lastError = errorMessage(err))}`);
    });
    this.worker.on('stalled', (jobId) => opts.logger.info(`archive job stalled, its worker died: back to wait [job:${jobId}]`));
    this.worker.on('failed', (job, err) => {
      // `process` never rejects on a build error (it reports through the event actor); what lands
      // here is BullMQ failing the job itself (stalled too often, lock lost).
      const eventId = job?.data?.eventId;
      opts.logger.warn(`archive job failed [event:${eventId ?? '?'} job:${job?.id ?? '?'}] ${errorMessage(err)}`);
      if (eventId && opts.onFailed) opts.onFailed(eventId, errorMessage(err));
    });
  }

  /** Resolves once the worker is connected and fetching jobs. */
  async ready(): Promise<void> {
    await this.worker.waitUntilReady();
  }

  /** Stops taking jobs; a running build finishes (it is idempotent anyway) unless `force`. */
  close(force = false): Promise<void> {
    this.closing ??= (async () => {
      try {
        await this.worker.close(force);
      } finally {
        this.client.disconnect(false);
      }
    })();
    return this.closing;
  }
}
