/**
 * The archive coordinator's side of the leader election (DESIGN.md "Archive leader election"): the
 * timers and I/O around the pure core/election.ts. Every heartbeat it broadcasts
 * `EVENTS.archiveAnnounce`; it merges each announce it hears (stamped with the local clock), drops a
 * coordinator that left cleanly at once and one silent past `archiveSilenceLimitS` at the next tick
 * (every 250 ms), and logs each change of leader. In cluster mode the leader, and only the leader,
 * runs the BullMQ Worker on the archive queue (runtime/archive-queue.ts): started when this node
 * becomes leader, closed when it stops being leader. A node does not act as leader before it has
 * listened for three heartbeats (or the silence limit, if shorter): until then it may not have heard
 * the others (a node still joining NATS under load took over 1.5 s) and would take itself for leader.
 * A brief second leader is harmless (archive jobs are idempotent per event) but needless.
 */
import { networkInterfaces } from 'node:os';
import type { JitcastConfig } from '../cluster.config.ts';
import { ranked, startElection, stepElection, type ElectionInput, type ElectionState } from '../core/election.ts';
import { ArchiveWorker, ARCHIVE_QUEUE, archiveQueuePrefix, type ArchiveProcessor } from './archive-queue.ts';
import { EVENTS, type ArchiveAnnounce } from './contracts.ts';

/** The part of a Moleculer logger this uses. */
export interface LeadershipLogger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
  debug(msg: string): void;
}

/** What leadership needs from the broker (specs hand it a fake). */
export interface LeadershipBroker {
  readonly nodeID: string;
  broadcast(event: string, payload: unknown): unknown;
}

/** `archive-coordinator.leader` reply. */
export interface LeaderStatus {
  /** Node ID of the leader as this coordinator sees it. */
  leader: string;
  /** This coordinator. */
  nodeId: string;
  address: string;
  /** Whether this node acts as leader now (its view says so and it has listened long enough). */
  acting: boolean;
  /** Cluster mode: whether this node runs the archive queue's worker. */
  worker: boolean;
  /** `queue` (cluster mode: BullMQ, the leader's worker) or `direct` (embedded: `archive-coordinator.build` is called). */
  mode: 'queue' | 'direct';
  silenceLimitS: number;
  /** Every coordinator heard within the limit, in election order (the leader first). */
  peers: Array<{ nodeId: string; address: string; heardAgoMs: number }>;
}

/**
 * The node's address for the election: its first non-internal IPv4 (the machine's address, as
 * Moleculer's `ipList` shows it and as the seed sorts by), else `config.sipHost` (a machine with only
 * loopback: the address the node was told it answers on). Several nodes on one machine share it;
 * their node IDs then decide.
 */
export function electionAddress(config: Pick<JitcastConfig, 'sipHost'>, interfaces = networkInterfaces()): string {
  for (const list of Object.values(interfaces)) {
    for (const i of list ?? []) if (!i.internal && (i.family === 'IPv4' || (i.family as unknown) === 4)) return i.address;
  }
  return config.sipHost && config.sipHost !== '0.0.0.0' ? config.sipHost : '127.0.0.1';
}

/** Options of `ArchiveLeadership`. */
export interface LeadershipOptions {
  config: Pick<JitcastConfig, 'archiveSilenceLimitS' | 'heartbeatS' | 'redisUrl' | 'namespace' | 'sipHost'>;
  broker: LeadershipBroker;
  logger: LeadershipLogger;
  /** Runs one archive job (cluster mode). */
  process: ArchiveProcessor;
  /** A job BullMQ failed by itself (stalled too often): report it to the event. */
  onJobFailed?: (eventId: string, reason: string) => void;
  /** The address to announce. Default `electionAddress(config)`. */
  address?: string;
  /** Clock. Default `Date.now`. */
  now?: () => number;
}

const TICK_MS = 250;

/** One coordinator's election and, while it leads, its archive worker. */
export class ArchiveLeadership {
  private state: ElectionState | undefined;
  private readonly o: LeadershipOptions;
  private readonly address: string;
  private readonly now: () => number;
  private announceTimer: NodeJS.Timeout | undefined;
  private tickTimer: NodeJS.Timeout | undefined;
  private settleTimer: NodeJS.Timeout | undefined;
  /** Set once this node has listened long enough to know its peers. */
  private settled = false;
  private stopped = false;
  private worker: ArchiveWorker | undefined;
  /** Worker starts and closes, one at a time, in order. */
  private workerChange: Promise<void> = Promise.resolve();

  constructor(o: LeadershipOptions) {
    this.o = o;
    this.address = o.address ?? electionAddress(o.config);
    this.now = o.now ?? Date.now;
  }

  private get self(): string {
    return this.o.broker.nodeID;
  }

  /** Starts announcing and listening. */
  start(): void {
    if (this.state || this.stopped) return;
    const limitMs = this.o.config.archiveSilenceLimitS * 1000;
    this.state = startElection({ nodeId: this.self, address: this.address }, limitMs, this.now());
    this.o.logger.info(`archive election started [node:${this.self} address:${this.address} limit:${this.o.config.archiveSilenceLimitS}s mode:${this.o.config.redisUrl ? 'queue' : 'direct'}]`);
    this.announce();
    this.announceTimer = setInterval(() => this.announce(), this.o.config.heartbeatS * 1000);
    this.tickTimer = setInterval(() => this.apply({ type: 'tick', at: this.now() }), TICK_MS);
    this.settleTimer = setTimeout(() => {
      this.settled = true;
      this.o.logger.info(`archive leader is ${this.state!.leader} [node:${this.self} peers:${this.peerList()}]`);
      this.syncWorker();
    }, Math.max(this.o.config.heartbeatS * 1500, Math.min(this.o.config.archiveSilenceLimitS * 1000, this.o.config.heartbeatS * 3000)));
    for (const t of [this.announceTimer, this.tickTimer, this.settleTimer]) t.unref();
  }

  /** An `EVENTS.archiveAnnounce` payload heard from the broker. */
  heard(payload: Partial<ArchiveAnnounce> | undefined): void {
    if (!payload || typeof payload.nodeId !== 'string' || typeof payload.address !== 'string') return;
    if (payload.nodeId === this.self) return;
    const step = this.apply({ type: 'heard', nodeId: payload.nodeId, address: payload.address, at: this.now() });
    // A coordinator we did not know (new, or back) hears from us now rather than at our next beat.
    if (step?.joined) this.announce();
  }

  /** A node left the cluster; a clean goodbye drops its coordinator at once, a silent death waits for the limit. */
  nodeLeft(nodeId: string, unexpected: boolean): void {
    if (!unexpected) this.apply({ type: 'gone', nodeId });
  }

  /** This coordinator's view. */
  status(): LeaderStatus {
    const s = this.state;
    const now = this.now();
    return {
      leader: s?.leader ?? this.self,
      nodeId: this.self,
      address: this.address,
      acting: this.acting(),
      worker: !!this.worker,
      mode: this.o.config.redisUrl ? 'queue' : 'direct',
      silenceLimitS: this.o.config.archiveSilenceLimitS,
      peers: s ? ranked(s).map((p) => ({ nodeId: p.nodeId, address: p.address, heardAgoMs: p.nodeId === this.self ? 0 : now - p.heardAt })) : [],
    };
  }

  /** Stops announcing and closes the worker (a running build finishes). Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of [this.announceTimer, this.tickTimer]) if (t) clearInterval(t);
    if (this.settleTimer) clearTimeout(this.settleTimer);
    this.announceTimer = this.tickTimer = this.settleTimer = undefined;
    this.syncWorker();
    await this.workerChange;
  }

  private acting(): boolean {
    return !this.stopped && this.settled && this.state?.leader === this.self;
  }

  private peerList(): string {
    return this.state ? ranked(this.state).map((p) => `${p.nodeId}@${p.address}`).join(',') : '';
  }

  private announce(): void {
    if (!this.state || this.stopped) return;
    this.apply({ type: 'announce', at: this.now() });
    const payload: ArchiveAnnounce = { nodeId: this.self, address: this.address, leader: this.state.leader, sentAt: new Date().toISOString() };
    try {
      const p = this.o.broker.broadcast(EVENTS.archiveAnnounce, payload);
      if (p && typeof (p as Promise<unknown>).catch === 'function') (p as Promise<unknown>).catch((err) => this.o.logger.debug(`archive announce not sent ${(err as Error).message}`));
    } catch (err) {
      this.o.logger.debug(`archive announce not sent ${(err as Error).message}`);
    }
  }

  private apply(input: ElectionInput) {
    if (!this.state) return undefined;
    const step = stepElection(this.state, input);
    this.state = step.state;
    if (step.dropped.length && input.type === 'tick') this.o.logger.info(`archive coordinator silent past the limit, dropped [nodes:${step.dropped.join(',')} limit:${this.o.config.archiveSilenceLimitS}s]`);
    if (step.changed) {
      this.o.logger.info(`archive leader is now ${step.changed.to} [was:${step.changed.from} peers:${this.peerList()}${step.changed.to === this.self ? ' self' : ''}]`);
      this.syncWorker();
    }
    return step;
  }

  /** Starts or closes the worker to match whether this node acts as leader (cluster mode only). */
  private syncWorker(): void {
    if (!this.o.config.redisUrl) return;
    const redisUrl = this.o.config.redisUrl;
    this.workerChange = this.workerChange
      .then(async () => {
        const want = this.acting();
        if (want && !this.worker) {
          const w = new ArchiveWorker({ url: redisUrl, namespace: this.o.config.namespace, logger: this.o.logger, process: this.o.process, onFailed: this.o.onJobFailed });
          this.worker = w;
          const queue = `${archiveQueuePrefix(this.o.config.namespace)}:${ARCHIVE_QUEUE}`;
          // Not awaited: with Redis away the worker connects when it returns, and a loss of
          // leadership meanwhile must not wait behind it.
          w.ready().then(
            () => this.worker === w && this.o.logger.info(`archive worker started, taking archive jobs as leader [node:${this.self} queue:${queue}]`),
            (err) => this.o.logger.warn(`archive worker not ready [node:${this.self} queue:${queue}] ${(err as Error).message}`),
          );
        } else if (!want && this.worker) {
          const w = this.worker;
          this.worker = undefined;
          this.o.logger.info(`archive worker closing, no longer leader [node:${this.self} leader:${this.state?.leader ?? '?'}]`);
          await w.close();
        }
      })
      .catch((err) => this.o.logger.error(`archive worker change failed [node:${this.self}] ${(err as Error).message}`));
  }
}
