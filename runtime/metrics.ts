/**
 * `/metrics` on the gateway (issue 5 item 5) in the Prometheus text exposition format (prom-client).
 *
 * Node-local, as Prometheus expects of each scraped instance:
 *   jitcast_http_request_duration_seconds{route,method,code}  histogram of this gateway's requests
 *   jitcast_db_queue_depth{queue}                              reporting writes not yet in the DB
 *                                                             (`events`: this process's in-process
 *                                                             writer; `usage`: the usage actor's rows)
 *   jitcast_pool_evictions_total{pool}                         evictions this gateway heard of since it started
 *   jitcast_listener_worker_requests_total{pid}                live files this gateway's listener workers answered from memory
 * Cluster-wide, the same on every gateway (aggregate with max(), not sum()), gathered when scraped
 * from the actors (each ask bounded by SOURCE_TIMEOUT_MS; a source that does not answer leaves its
 * series out and sets jitcast_scrape_source_up{source} to 0):
 *   jitcast_calls_active, jitcast_calls_total, jitcast_listeners     usage actor (usage.stats)
 *   jitcast_streams_live                                              monitoring.activeStreams
 *   jitcast_pool_members{pool,state}                                  monitoring.health (healthy / evicted)
 *   jitcast_voice_ports{node,state}                                   each voice server (free, busy)
 *   jitcast_archive_jobs{state}, jitcast_db_queue_jobs{state}         BullMQ job counts (cluster mode)
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import type { ServiceBroker } from 'moleculer';
import type { AssetHealth } from './contracts.ts';
import { ARCHIVE_QUEUE, archiveQueuePrefix } from './archive-queue.ts';
import { collectClusterStatus } from './cluster-status.ts';

/** Longest wait for one source of a scrape, ms. */
export const SOURCE_TIMEOUT_MS = 1500;
/** BullMQ queue of the reporting DB writes (runtime/db-queue.ts DB_QUEUE; named here to keep that module out of the gateway). */
const DB_QUEUE_NAME = 'reporting-db';

/** Latency buckets, seconds: segment answers are expected well under 100 ms. */
const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Where the metrics come from besides the broker. */
export interface MetricsOptions {
  /** Cluster mode: Redis holding the BullMQ queues (archive, reporting DB). */
  redisUrl?: string;
  namespace: string;
  /** Reporting writes pending in this process, by queue name (e.g. `events` from runtime/reporting.ts). */
  localQueueDepth?: () => Record<string, number>;
}

function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms)))]).finally(() => clearTimeout(t));
}

/** The gateway's metrics: a registry of its own (several brokers may share a process in specs). */
export class GatewayMetrics {
  readonly registry = new Registry();
  readonly #latency: Histogram<'route' | 'method' | 'code'>;
  readonly #evictions: Counter<'pool'>;
  /** Mirrors the usage actor's count (a counter: it only resets when that actor restarts). */
  readonly #callsTotal: Counter;
  readonly #workerServed: Counter;
  readonly #g: Record<string, Gauge<string>>;
  readonly #opts: MetricsOptions;
  #redis: Redis | undefined;
  #queues: Queue[] | undefined;
  #closed = false;

  constructor(opts: MetricsOptions) {
    this.#opts = opts;
    const r = [this.registry];
    this.#latency = new Histogram({ name: 'jitcast_http_request_duration_seconds', help: 'Time to answer an HTTP request on this gateway, by route (the action or alias), method and status code.', labelNames: ['route', 'method', 'code'], buckets: BUCKETS, registers: r });
    this.#evictions = new Counter({ name: 'jitcast_pool_evictions_total', help: 'Assets evicted from their pool by a failed health test, as heard by this gateway since it started.', labelNames: ['pool'], registers: r });
    this.#callsTotal = new Counter({ name: 'jitcast_calls_total', help: 'Calls that joined an event since the usage actor started (cluster-wide; resets when it restarts).', registers: r });
    this.#workerServed = new Counter({ name: 'jitcast_listener_worker_requests_total', help: "Live segments and playlists a listener worker of this gateway answered from its own memory (config listenerWorkers), by worker process.", labelNames: ['pid'], registers: r });
    const gauge = (name: string, help: string, labelNames: string[] = []) => new Gauge({ name, help, labelNames, registers: r });
    this.#g = {
      callsActive: gauge('jitcast_calls_active', 'Calls connected to an event now (cluster-wide).'),
      listeners: gauge('jitcast_listeners', 'Listeners present now: polled a live stream within the presence window (cluster-wide).'),
      streams: gauge('jitcast_streams_live', 'Live streams monitoring sees alive (cluster-wide).'),
      pool: gauge('jitcast_pool_members', 'Assets in each pool by health: healthy ones take work, evicted ones do not (cluster-wide).', ['pool', 'state']),
      ports: gauge('jitcast_voice_ports', 'RTP ports of each voice server by state (cluster-wide).', ['node', 'state']),
      archive: gauge('jitcast_archive_jobs', 'Archive jobs in the BullMQ queue by state (cluster mode).', ['state']),
      dbJobs: gauge('jitcast_db_queue_jobs', 'Reporting DB jobs in the BullMQ queue by state (cluster mode; a job carries the event states of one flush, up to 500).', ['state']),
      dbDepth: gauge('jitcast_db_queue_depth', 'Reporting DB writes waiting in memory, by queue (events: this process; usage: the usage actor that answered).', ['queue']),
      up: gauge('jitcast_scrape_source_up', 'Whether each source answered this scrape (1) or not (0).', ['source']),
    };
  }

  /** Requests a listener worker answered itself, as its once-a-second report says. */
  workerServed(pid: number, n: number): void {
    if (n > 0) this.#workerServed.inc({ pid: String(pid) }, n);
  }

  /** One answered request; `route` is the action or alias (bounded), never the raw URL. */
  observe(route: string, method: string, code: number, seconds: number): void {
    this.#latency.observe({ route, method, code: String(code) }, seconds);
  }

  /** A health verdict broadcast: counts evictions. */
  noteAssetHealth(h: AssetHealth | undefined): void {
    if (h?.change === 'evicted' && (h.asset === 'voice-server' || h.asset === 'encoder-port')) this.#evictions.inc({ pool: h.asset });
  }

  /** Gathers the cluster-wide figures, then renders every metric. */
  async render(broker: ServiceBroker): Promise<string> {
    const up = (source: string, ok: boolean) => this.#g.up!.set({ source }, ok ? 1 : 0);
    const has = (service: string) => (broker.registry.getServiceList({ onlyAvailable: true, withActions: false }) as Array<{ name: string }>).some((s) => s.name === service);
    const tasks: Array<Promise<void>> = [];
    if (has('usage')) {
      tasks.push(
        within(broker.call<{ listeners: number; callsActive: number; callsTotal: number; dbQueueDepth: number }, object>('usage.stats', {}, { timeout: SOURCE_TIMEOUT_MS }), SOURCE_TIMEOUT_MS).then(
          (s) => {
            this.#g.callsActive!.set(s.callsActive);
            this.#callsTotal.reset();
            this.#callsTotal.inc(s.callsTotal);
            this.#g.listeners!.set(s.listeners);
            this.#g.dbDepth!.set({ queue: 'usage' }, s.dbQueueDepth);
            up('usage', true);
          },
          () => up('usage', false),
        ),
      );
    }
    tasks.push(
      within(collectClusterStatus(broker), SOURCE_TIMEOUT_MS * 2).then(
        (s) => {
          this.#g.streams!.set(Array.isArray(s.streams) ? s.streams.length : 0);
          this.#g.pool!.reset();
          for (const pool of ['voice-server', 'encoder-port']) {
            const assets = (s.pools?.assets ?? []).filter((a: { asset?: string }) => a.asset === pool);
            this.#g.pool!.set({ pool, state: 'healthy' }, assets.filter((a: { healthy?: boolean }) => a.healthy).length);
            this.#g.pool!.set({ pool, state: 'evicted' }, assets.filter((a: { healthy?: boolean }) => !a.healthy).length);
          }
          this.#g.ports!.reset();
          for (const v of s.voiceServers) {
            if (typeof v?.nodeId !== 'string' || !v.ports) continue;
            this.#g.ports!.set({ node: v.nodeId, state: 'free' }, Number(v.ports.available) || 0);
            this.#g.ports!.set({ node: v.nodeId, state: 'busy' }, Number(v.ports.busy) || 0);
          }
          up('cluster', s.errors.length === 0);
        },
        () => up('cluster', false),
      ),
    );
    if (this.#opts.redisUrl) {
      tasks.push(
        within(this.#jobCounts(), SOURCE_TIMEOUT_MS).then(
          ([archive, db]) => {
            for (const [state, n] of Object.entries(archive!)) this.#g.archive!.set({ state }, n);
            for (const [state, n] of Object.entries(db!)) this.#g.dbJobs!.set({ state }, n);
            up('queues', true);
          },
          () => up('queues', false),
        ),
      );
    }
    await Promise.all(tasks);
    for (const [queue, n] of Object.entries(this.#opts.localQueueDepth?.() ?? {})) this.#g.dbDepth!.set({ queue }, n);
    return this.registry.metrics();
  }

  /** The Content-Type of the exposition. */
  get contentType(): string {
    return this.registry.contentType;
  }

  async #jobCounts(): Promise<Array<Record<string, number>>> {
    if (this.#closed) throw new Error('metrics closed');
    if (!this.#queues) {
      const { namespace } = this.#opts;
      // Fail fast while Redis is away: a scrape never waits on a reconnect.
      this.#redis = new Redis(this.#opts.redisUrl!, { connectionName: `jitcast:${namespace}:metrics`, maxRetriesPerRequest: 1, enableOfflineQueue: true, connectTimeout: 2000, retryStrategy: (n) => Math.min(100 * 2 ** n, 2000) });
      this.#redis.on('error', () => undefined);
      const prefix = archiveQueuePrefix(namespace);
      this.#queues = [new Queue(ARCHIVE_QUEUE, { connection: this.#redis, prefix }), new Queue(DB_QUEUE_NAME, { connection: this.#redis, prefix })];
      for (const q of this.#queues) q.on('error', () => undefined);
    }
    return Promise.all(this.#queues.map((q) => q.getJobCounts('waiting', 'active', 'delayed', 'failed')));
  }

  /** Closes the Redis connection of the queue counts (idempotent). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all((this.#queues ?? []).map((q) => q.close().catch(() => undefined)));
    this.#redis?.disconnect(false);
  }
}
