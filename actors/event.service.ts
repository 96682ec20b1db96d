/**
 * `event` actor (DESIGN.md "event"): owns each event's lifecycle. The pure machine in
 * core/event-lifecycle.ts decides; this actor runs the effects: event-info.xml (the source of truth)
 * via content storage, the reporting DB queue, broadcasts, the idle timer, the wait for streams to
 * settle and the archive request.
 *
 * Store, then show: a step that changes event-info is written to content storage (and, in cluster mode,
 * to Redis) before the new state is taken into memory, so `get`, `list`, status.json and the status
 * broadcasts never show a state the readers of event-info.xml (archive.m3u8, the archive coordinator,
 * a restart) do not have yet. Steps of one event run one at a time (`commit`).
 *
 * Embedded mode keeps state in memory and rebuilds it at start-up from content storage, so a restart
 * loses nothing but who is connected (voice servers that still hold callers re-join them).
 *
 * Cluster mode (`config.redisUrl`): the actor runs on several nodes and each event lives on one of
 * them, placed by event ID with Moleculer's Shard strategy (consistent hashing over the nodes running
 * `event`). A call that lands elsewhere (a caller on a node that runs `event` itself is served
 * locally by Moleculer's preferLocal) is forwarded to the event's node. Every change is written to
 * Redis (runtime/redis-event-store.ts), after event-info.xml and before it is shown or its effects
 * run, compare-and-set on a revision, so when the holder dies the next node on the ring loads the
 * state (falling back to content storage), re-arms the timers from the stored deadlines and carries
 * on. A Redis lock decides who fires a timer or starts the archive. Callers on a node that left the
 * cluster are dropped. With Redis away the actor works from memory and rewrites its events when Redis
 * returns.
 */
import type { Context, Service, ServiceBroker, ServiceSchema } from 'moleculer';
import type { JitcastConfig } from '../cluster.config.ts';
import { isValidEventId, isValidStreamId } from '../codecs/ids.ts';
import { ACCOUNT_RULE, isValidAccount, mayAccess } from '../codecs/api-key.ts';
import {
  OPEN_STATUSES,
  callerCount,
  initialState,
  type CallerRef,
  recover,
  step,
  type EndReason,
  type EventPatch,
  type LifecycleEffect,
  type LifecycleInput,
  type LifecycleState,
  type StepResult,
  type StoredEvent,
} from '../core/event-lifecycle.ts';
import {
  EVENTS,
  type ArchiveFragment,
  type EventInfo,
  type EventStatus,
  type EventView,
  type JoinParams,
  type JoinResult,
  type LeaveParams,
  type StreamDataset,
  type StreamRecord,
} from '../runtime/contracts.ts';
import { openDb, openPostgres } from '../runtime/db.ts';
import { storageOf } from '../runtime/storage-client.ts';
import { NotFoundError, StateConflictError, StorageUnavailableError, ValidationFailedError, errorMessage } from '../runtime/errors.ts';
import { enqueueArchive } from '../runtime/archive-queue.ts';
import { createRedis } from '../runtime/redis.ts';
import { RedisEventStore, type LockResult, type SaveResult } from '../runtime/redis-event-store.ts';
import { ReportingWriter, type ReportingSink } from '../runtime/reporting.ts';
import { QueuedReporting } from '../runtime/db-queue.ts';
import { RedisReconcileGuard, runReconciliation, type Reconciliation } from '../runtime/reconcile.ts';
import { SinkKeyMirror, keysFileOf } from '../runtime/api-keys.ts';

/** The shared store of events' live state the actor needs (cluster mode); RedisEventStore is the real one. */
export interface EventStateStore {
  /** Whether the store answers now. */
  readonly ready: boolean;
  connect(): void;
  /** Calls `fn` on every (re)connect. */
  onReady(fn: () => void): void;
  close(): Promise<void>;
  save(s: StoredEvent, mode: 'change' | 'sync'): Promise<SaveResult>;
  load(eventId: string): Promise<StoredEvent | undefined>;
  loadMany(eventIds: string[]): Promise<Map<string, StoredEvent>>;
  openIds(): Promise<string[]>;
  allIds(): Promise<string[]>;
  lock(name: string, ttlMs: number): Promise<LockResult>;
  steal(name: string, deadHolder: string, ttlMs: number): Promise<boolean>;
  unlock(name: string): Promise<void>;
}

/** What the event actor can be handed instead of its defaults (specs hand it fakes). */
export interface EventServiceDeps {
  /**
   * Builds the reporting writer in `created()`. Default: in a cluster with PostgreSQL (`dbUrl` and
   * `redisUrl`) a BullMQ queue in Redis with this node's worker (runtime/db-queue.ts), else the
   * in-process ReportingWriter over `openDb(config)`.
   */
  reporting?: (logger: Service['logger']) => ReportingSink;
  /** Clock. Default `new Date()`. */
  now?: () => Date;
  /** Longest wait for an ended event's streams to stop and be stored, in ms. Default 30000. */
  settleCapMs?: number;
  /**
   * Shared live state. Default: a RedisEventStore when `config.redisUrl` is set (cluster mode), none
   * otherwise (embedded: memory only). `null` forces none.
   */
  store?: (logger: Service['logger'], nodeId: string) => EventStateStore | null;
}

/** `event.update` parameters. */
export interface UpdateParams {
  eventId: string;
  patch: EventPatch;
  /** The API caller's account: another account's event answers 404 (codecs/api-key.ts mayAccess). */
  account?: string;
}

/** `event.end` parameters. */
export interface EndParams {
  eventId: string;
  reason: EndReason;
  /** As in UpdateParams. */
  account?: string;
}

/** `event.held` reply: one event this node holds in memory. */
export interface HeldEvent {
  eventId: string;
  status: EventStatus;
  callers: number;
  /** Revision of the state (cluster mode; 0 in embedded mode). */
  rev: number;
  /** When the idle timer fires (ISO), if it runs. */
  idleDeadline?: string;
}

interface Settle {
  cap: NodeJS.Timeout;
  retry?: NodeJS.Timeout;
  checking: boolean;
  again: boolean;
  /** Stops seen here directly: the broadcast may reach this actor before monitoring has recorded it. */
  stopped: Map<string, StreamRecord>;
}

/** Timer deadlines and archive progress of a slot, as stored with its state. */
interface Marks {
  idleDeadlineMs?: number;
  settleDeadlineMs?: number;
  archiveRequestedAt?: string;
}

interface Slot extends Marks {
  state: LifecycleState;
  /** Revision of `state` in the shared store (cluster mode). */
  rev: number;
  idle?: NodeJS.Timeout;
  /** Steps with their writes (event-info.xml, Redis), one at a time, in call order. */
  commits: Promise<unknown>;
  settle?: Settle;
  archiving: boolean;
  /** A timer or archive start waiting for another node's lock to lapse. */
  retry?: NodeJS.Timeout;
  /**
   * Callers dropped because their node left the cluster, by channel ID, with the node's process
   * instance: if that same process comes back (a network partition, not a restart) they are restored.
   */
  dropped?: Map<string, { caller: CallerRef; instanceID: string | null }>;
}

const STATUSES: readonly EventStatus[] = ['reserved', 'live', 'ended', 'archiving', 'archived', 'archive-error', 'cancelled'];
const END_REASONS: readonly EndReason[] = ['end-code', 'api', 'host', 'timeout'];
const BUILD_TIMEOUT_MS = 60_000;
const SETTLE_RETRY_MS = 1_000;

function requireEventId(eventId: unknown): string {
  if (!isValidEventId(eventId)) throw new ValidationFailedError(`invalid event ID ${JSON.stringify(eventId)}`, { eventId: 'must be 8 digits with a valid check digit' });
  return eventId;
}

function validateInfo(info: unknown): EventInfo {
  const i = info as Partial<EventInfo> | undefined;
  const fields: Record<string, string> = {};
  if (!i || typeof i !== 'object') throw new ValidationFailedError('info is required', { info: 'required' });
  if (!isValidEventId(i.eventId)) fields.eventId = 'must be 8 digits with a valid check digit';
  if (typeof i.title !== 'string' || i.title.trim() === '') fields.title = 'required';
  if (!STATUSES.includes(i.status as EventStatus)) fields.status = `must be one of ${STATUSES.join(', ')}`;
  if (typeof i.createdAt !== 'string' || Number.isNaN(Date.parse(i.createdAt))) fields.createdAt = 'must be an ISO 8601 time';
  if (typeof i.archiveDays !== 'number' || !Number.isInteger(i.archiveDays) || i.archiveDays < 1) fields.archiveDays = 'must be a whole number of days ≥ 1';
  if (i.account !== undefined && !isValidAccount(i.account)) fields.account = ACCOUNT_RULE;
  if (Object.keys(fields).length > 0) throw new ValidationFailedError(`invalid event info: ${Object.keys(fields).join(', ')}`, fields);
  return { ...(i as EventInfo) };
}

function validatePatch(patch: unknown): EventPatch {
  if (!patch || typeof patch !== 'object') throw new ValidationFailedError('patch is required', { patch: 'required' });
  const p = patch as Record<string, unknown>;
  const fields: Record<string, string> = {};
  const out: EventPatch = {};
  for (const key of Object.keys(p)) {
    if (!['title', 'startsAt', 'archiveDays', 'hasPassword'].includes(key)) fields[key] = 'cannot be changed';
  }
  if (p.title !== undefined) {
    if (typeof p.title !== 'string' || p.title.trim() === '' || p.title.length > 200) fields.title = 'must be 1-200 characters';
    else out.title = p.title;
  }
  if (p.startsAt !== undefined) {
    if (typeof p.startsAt !== 'string' || Number.isNaN(Date.parse(p.startsAt))) fields.startsAt = 'must be an ISO 8601 time';
    else out.startsAt = p.startsAt;
  }
  if (p.archiveDays !== undefined) {
    if (typeof p.archiveDays !== 'number' || !Number.isInteger(p.archiveDays) || p.archiveDays < 1 || p.archiveDays > 3650) fields.archiveDays = 'must be a whole number 1-3650';
    else out.archiveDays = p.archiveDays;
  }
  if (p.hasPassword !== undefined) {
    if (typeof p.hasPassword !== 'boolean') fields.hasPassword = 'must be true or false';
    else out.hasPassword = p.hasPassword;
  }
  if (Object.keys(fields).length > 0) throw new ValidationFailedError(`invalid patch: ${Object.keys(fields).join(', ')}`, fields);
  return out;
}

function validateArchive(archive: unknown): ArchiveFragment[] {
  if (!Array.isArray(archive)) throw new ValidationFailedError('archive must be a list of fragments', { archive: 'must be a list' });
  return archive.map((f, i) => {
    const frag = f as Partial<ArchiveFragment>;
    const ok = frag && isValidStreamId(frag.streamId) && typeof frag.start === 'number' && typeof frag.end === 'number' && Number.isFinite(frag.start) && Number.isFinite(frag.end) && frag.start >= 0 && frag.end >= frag.start;
    if (!ok) throw new ValidationFailedError(`invalid archive fragment ${i}`, { [`archive[${i}]`]: 'needs a stream ID and 0 ≤ start ≤ end' });
    return { streamId: frag.streamId!, start: frag.start!, end: frag.end! };
  });
}

/** A stream record counts as settled once its stop arrived with the upload's outcome. */
function settled(r: StreamRecord | undefined): boolean {
  return !!r && r.endedAt !== undefined && r.stored !== undefined;
}



/** Meta key naming the node a call was forwarded to, so that node serves it whatever its own ring says. */
const FORWARDED_TO = 'jitcastEventNode';
/** Lock lifetimes: the idle and settle timers act within a second; an archive build takes up to BUILD_TIMEOUT_MS. */
const TIMER_LOCK_MS = 10_000;
const ARCHIVE_LOCK_MS = BUILD_TIMEOUT_MS + 10_000;
/** How often a node looks for events it should hold (besides every topology change). */
const SWEEP_EVERY_MS = 5_000;

/** The parts of Moleculer's registry the owner lookup reads (EndpointList with a ShardStrategy). */
interface EndpointListLike {
  endpoints: Array<{ id: string; isAvailable: boolean }>;
  strategy?: { needRebuild?: boolean; rebuild?(list: unknown[]): void; getNodeIDByKey?(key: string): string | null };
}

/** The event service: lifecycle of every event; in cluster mode, of the events placed on this node. */
export function createEventService(config: JitcastConfig, deps: EventServiceDeps = {}): ServiceSchema {
  const now = deps.now ?? (() => new Date());
  const settleCapMs = deps.settleCapMs ?? 30_000;
  const slots = new Map<string, Slot>();
  const loading = new Map<string, Promise<Slot | undefined>>();
  /** event-info of archived and cancelled events only content storage still knows (for `list`). */
  const finalInfos = new Map<string, EventInfo>();
  let broker: ServiceBroker;
  let logger: Service['logger'];
  let reporting: ReportingSink | undefined;
  let reconciliation: Reconciliation | undefined;
  /** Accounts and API keys into a PGlite reporting DB (runtime/api-keys.ts SinkKeyMirror); none with PostgreSQL. */
  let keyMirror: SinkKeyMirror | undefined;
  let store: EventStateStore | undefined;
  let stopping = false;
  let startedMs = Date.now();
  let sweepTimer: NodeJS.Timeout | undefined;
  let sweepSoonTimer: NodeJS.Timeout | undefined;
  let sweeping = false;
  let sweepAgain = false;
  let storageScanned = false;
  /** Set once this node has had time to hear of the other event nodes: no takeover before that. */
  let placementKnown = false;
  let storeFailures = 0;

  const at = () => now().toISOString();
  const nowMs = () => now().getTime();

  function newSlot(state: LifecycleState, rev = 0, marks: Marks = {}): Slot {
    return { state, rev, commits: Promise.resolve(), archiving: false, ...marks };
  }

  function view(state: LifecycleState, streams: StreamDataset[]): EventView {
    return {
      ...state.info,
      streams: streams.map((s) => ({ streamId: s.streamId, nodeId: s.nodeId, dataCenter: s.dataCenter, port: s.port, format: s.format, url: s.url, startedAt: s.startedAt })),
      callers: callerCount(state),
    };
  }

  async function activeStreams(eventId?: string): Promise<StreamDataset[]> {
    try {
      return await broker.call<StreamDataset[], { eventId?: string }>('monitoring.activeStreams', eventId ? { eventId } : {});
    } catch (err) {
      // The view still answers without monitoring; it just shows no streams.
      logger.debug(`active streams unavailable [event:${eventId ?? '*'}] ${errorMessage(err)}`);
      return [];
    }
  }

  // ---- placement (cluster mode) ------------------------------------------------------------------

  /**
   * The node the Shard strategy sends this event's calls to: the same consistent-hash ring Moleculer
   * builds for `event.*` over the available nodes running the actor. Undefined when unknown.
   */
  function ownerOf(eventId: string): string | undefined {
    const list = broker.registry.getActionEndpoints('event.get') as unknown as EndpointListLike | undefined;
    if (!list) return undefined;
    const available = list.endpoints.filter((ep) => ep.isAvailable);
    if (available.length === 0) return undefined;
    if (available.length === 1) return available[0]!.id;
    const ring = list.strategy;
    if (!ring?.getNodeIDByKey || !ring.rebuild) return undefined;
    if (ring.needRebuild) ring.rebuild(available);
    return ring.getNodeIDByKey(eventId) ?? undefined;
  }

  /** Whether another available node holds this event now. */
  function ownedElsewhere(eventId: string): string | undefined {
    const owner = ownerOf(eventId);
    return owner !== undefined && owner !== broker.nodeID ? owner : undefined;
  }

  /** A node that left the cluster (or, after start-up, was never in it). */
  function isGone(nodeId: string): boolean {
    if (nodeId === broker.nodeID) return false;
    const node = broker.registry.nodes.get(nodeId) as { available?: boolean } | undefined | null;
    if (node) return node.available === false;
    return Date.now() - startedMs > config.heartbeatTimeoutS * 2000;
  }

  function goneCallerNodes(state: LifecycleState): string[] {
    return [...new Set(Object.values(state.callers).map((c) => c.nodeId))].filter(isGone);
  }

  /** Remembers the callers about to be dropped for their gone nodes, in case those processes come back. */
  function noteDropped(slot: Slot, nodeIds: string[]): void {
    const gone = new Set(nodeIds);
    for (const [channelId, caller] of Object.entries(slot.state.callers)) {
      if (!gone.has(caller.nodeId)) continue;
      const node = broker.registry.nodes.get(caller.nodeId) as { instanceID?: string | null } | undefined | null;
      (slot.dropped ??= new Map()).set(channelId, { caller, instanceID: node?.instanceID ?? null });
    }
  }

  /**
   * A node came back: when it is the same process (partitioned, not restarted), its calls went on
   * all along, so the callers dropped for it join again (cancelling an idle timer it started).
   */
  async function restoreCallers(nodeId: string, instanceID: string | null | undefined): Promise<void> {
    for (const slot of [...slots.values()]) {
      if (!slot.dropped) continue;
      const back: Array<[string, CallerRef]> = [];
      for (const [channelId, d] of slot.dropped) {
        if (d.caller.nodeId !== nodeId) continue;
        slot.dropped.delete(channelId);
        if (instanceID && d.instanceID === instanceID) back.push([channelId, d.caller]);
      }
      if (slot.dropped.size === 0) slot.dropped = undefined;
      if (back.length === 0 || slot.state.info.status !== 'live') continue;
      for (const [channelId, caller] of back) await apply(slot, { type: 'join', at: at(), channelId, nodeId: caller.nodeId, port: caller.port });
      logger.info(`callers restored, their node is back [event:${slot.state.info.eventId} node:${nodeId} channels:${back.length} callers:${callerCount(slot.state)}]`);
    }
  }

  /**
   * Serves a call here, or forwards it to the event's node. Only calls made on this node are
   * forwarded: they reach this actor because Moleculer prefers a local endpoint over the Shard
   * strategy. A call from another node was placed here by that node's ring; when the two rings
   * disagree (one node noticed a death or a newcomer a moment before the other) it is served here,
   * and the compare-and-set on the stored state keeps the two nodes from overwriting each other.
   */
  async function routed<T>(ctx: Context<any>, eventId: unknown, local: () => Promise<T>): Promise<T> {
    if (!store || !isValidEventId(eventId) || ctx.nodeID !== broker.nodeID || (ctx.meta as Record<string, unknown>)?.[FORWARDED_TO] === broker.nodeID) return local();
    const owner = ownedElsewhere(eventId);
    const action = ctx.action?.name;
    if (!owner || !action) return local();
    try {
      return await broker.call<T, unknown>(action, ctx.params, {
        nodeID: owner,
        meta: { [FORWARDED_TO]: owner },
        ...(ctx.options?.timeout ? { timeout: ctx.options.timeout } : {}),
      });
    } catch (err) {
      // The event's node died while the call was on its way: the ring now places the event here.
      if (isGone(owner) && !ownedElsewhere(eventId)) {
        logger.info(`event's node left while a call was forwarded, serving it here [event:${eventId} node:${owner} action:${action}]`);
        return local();
      }
      throw err;
    }
  }

  // ---- the shared store ----------------------------------------------------------------------------

  function storeFailed(what: string, eventId: string, err: unknown): void {
    if (storeFailures++ === 0) logger.warn(`event state not written to redis, memory stays ahead until it returns [event:${eventId} op:${what}] ${errorMessage(err)}`);
    else logger.debug(`event state store failed [event:${eventId} op:${what}] ${errorMessage(err)}`);
  }

  /** Just the marks (a slot carries timers and promises besides). */
  function marksOf(m: Marks): Marks {
    return { idleDeadlineMs: m.idleDeadlineMs, settleDeadlineMs: m.settleDeadlineMs, archiveRequestedAt: m.archiveRequestedAt };
  }

  function stored(state: LifecycleState, rev: number, marks: Marks): StoredEvent {
    return { rev, owner: broker.nodeID, state, ...marksOf(marks), savedAt: at() };
  }

  /** Writes a state; `unavailable` when Redis is away (memory moves on, the reconnect rewrites it). */
  async function save(state: LifecycleState, rev: number, marks: Marks, mode: 'change' | 'sync'): Promise<SaveResult | 'unavailable'> {
    if (!store?.ready) return 'unavailable';
    try {
      const r = await store.save(stored(state, rev, marks), mode);
      storeFailures = 0;
      return r;
    } catch (err) {
      storeFailed('save', state.info.eventId, err);
      return 'unavailable';
    }
  }

  /** Takes a newer stored state into the slot and re-arms its timers; false if there is none. */
  async function refresh(slot: Slot): Promise<boolean> {
    if (!store?.ready) return false;
    let s: StoredEvent | undefined;
    try {
      s = await store.load(slot.state.info.eventId);
    } catch (err) {
      storeFailed('load', slot.state.info.eventId, err);
      return false;
    }
    if (!s || s.rev <= slot.rev) return false;
    logger.info(`event state refreshed from redis [event:${slot.state.info.eventId} rev:${slot.rev}→${s.rev} by:${s.owner} status:${s.state.info.status}]`);
    slot.state = s.state;
    slot.rev = s.rev;
    slot.idleDeadlineMs = s.idleDeadlineMs;
    slot.settleDeadlineMs = s.settleDeadlineMs;
    slot.archiveRequestedAt = s.archiveRequestedAt;
    rearm(slot);
    return true;
  }

  /** Matches the slot's timers to its state (after its state came from another node). */
  function rearm(slot: Slot): void {
    const status = slot.state.info.status;
    if (status === 'live' && slot.state.idleTimer) {
      if (!slot.idle) startIdle(slot);
    } else clearIdle(slot);
    if (status === 'ended') awaitStreams(slot);
    else clearSettle(slot);
    if (status === 'archiving') void requestArchive(slot);
  }

  /**
   * In cluster mode, whether this node may act on the event's timer or archive now: it must still
   * hold the event, and get the lock (taken from a holder that left the cluster). `retry` when
   * another node holds it: try again once that lapses. With Redis away, act from memory.
   */
  async function claim(slot: Slot, what: 'idle' | 'settle' | 'archive', ttlMs: number): Promise<'go' | 'skip' | { retryInMs: number }> {
    if (!store) return 'go';
    const eventId = slot.state.info.eventId;
    if (slots.get(eventId) !== slot || stopping) return 'skip';
    const owner = ownedElsewhere(eventId);
    if (owner) {
      release(slot, `placed on ${owner}`);
      sweepSoon();
      return 'skip';
    }
    if (!store.ready) {
      logger.warn(`redis unavailable, ${what} acts from memory without a lock [event:${eventId}]`);
      return 'go';
    }
    try {
      let got = await store.lock(`${eventId}:${what}`, ttlMs);
      if (!got.ok && got.holder && isGone(got.holder) && (await store.steal(`${eventId}:${what}`, got.holder, ttlMs))) {
        logger.info(`${what} lock taken over from a node that left [event:${eventId} from:${got.holder}]`);
        got = { ok: true };
      }
      if (!got.ok) {
        logger.info(`${what} held by another node, looking again in ${got.ttlMs}ms [event:${eventId} holder:${got.holder || '?'}]`);
        return { retryInMs: Math.max(got.ttlMs, 100) };
      }
    } catch (err) {
      storeFailed(`lock ${what}`, eventId, err);
      return 'go';
    }
    await refresh(slot);
    return slots.get(eventId) === slot ? 'go' : 'skip';
  }

  function unlock(eventId: string, what: string): void {
    store?.unlock(`${eventId}:${what}`).catch((err) => logger.debug(`unlock failed [event:${eventId} lock:${what}] ${errorMessage(err)}`));
  }

  function retryLater(slot: Slot, ms: number, fn: () => void): void {
    if (slot.retry) clearTimeout(slot.retry);
    slot.retry = setTimeout(() => {
      slot.retry = undefined;
      fn();
    }, ms);
  }

  /** Drops an event this node no longer holds (the ring placed it elsewhere); its state stays in Redis. */
  function release(slot: Slot, why: string): void {
    const eventId = slot.state.info.eventId;
    if (slots.get(eventId) !== slot) return;
    slots.delete(eventId);
    clearIdle(slot);
    clearSettle(slot);
    if (slot.retry) clearTimeout(slot.retry);
    slot.retry = undefined;
    logger.info(`event handed over [event:${eventId} status:${slot.state.info.status} rev:${slot.rev} ${why}]`);
  }

  // ---- effects ---------------------------------------------------------------------------------------

  /** Writes event-info.xml; the error when content storage did not take it. */
  async function writeInfo(info: EventInfo): Promise<Error | undefined> {
    try {
      await storageOf(broker).putEventInfo(info);
      return undefined;
    } catch (err) {
      return err instanceof Error ? err : new Error(String(err));
    }
  }

  /** Queues the reporting DB row of a state once it is shown. */
  function report(info: EventInfo): void {
    try {
      reporting?.enqueueEvent(info);
    } catch (err) {
      logger.warn(`reporting enqueue failed [event:${info.eventId}] ${errorMessage(err)}`);
    }
  }

  async function broadcast(name: string, data: unknown): Promise<void> {
    try {
      await broker.broadcast(name, data);
    } catch (err) {
      logger.warn(`broadcast failed [${name}] ${errorMessage(err)}`);
    }
  }

  function clearIdle(slot: Slot): void {
    if (slot.idle) clearTimeout(slot.idle);
    slot.idle = undefined;
  }

  function startIdle(slot: Slot): void {
    clearIdle(slot);
    const eventId = slot.state.info.eventId;
    const inMs = Math.max(0, (slot.idleDeadlineMs ?? nowMs() + config.archiveTimeoutS * 1000) - nowMs());
    logger.info(`last caller gone, event ends in ${Math.round(inMs / 100) / 10}s unless someone joins [event:${eventId}]`);
    slot.idle = setTimeout(() => {
      slot.idle = undefined;
      fireIdle(slot).catch((err) => logger.error(`idle timeout failed [event:${eventId}] ${errorMessage(err)}`));
    }, inMs);
  }

  async function fireIdle(slot: Slot): Promise<void> {
    const eventId = slot.state.info.eventId;
    const go = await claim(slot, 'idle', TIMER_LOCK_MS);
    if (go === 'skip') return;
    if (go !== 'go') return retryLater(slot, go.retryInMs, () => void fireIdle(slot).catch((err) => logger.error(`idle timeout failed [event:${eventId}] ${errorMessage(err)}`)));
    try {
      // The state refreshed from Redis may carry a later deadline (someone joined and left elsewhere).
      if (store && slot.state.idleTimer && slot.idleDeadlineMs !== undefined && slot.idleDeadlineMs - nowMs() > 50) {
        startIdle(slot);
        return;
      }
      await apply(slot, { type: 'idle-timeout', at: at() });
    } finally {
      if (store) unlock(eventId, 'idle');
    }
  }

  function clearSettle(slot: Slot): void {
    const s = slot.settle;
    if (!s) return;
    clearTimeout(s.cap);
    if (s.retry) clearTimeout(s.retry);
    slot.settle = undefined;
  }

  async function finishSettle(slot: Slot, why: string): Promise<void> {
    if (!slot.settle) return;
    clearSettle(slot);
    logger.info(`streams settled [event:${slot.state.info.eventId} by:${why}]`);
    const r = await apply(slot, { type: 'streams-settled', at: at() });
    if (r.refusal) logger.warn(`streams settled but ${r.refusal.message}`);
  }

  async function settleCapReached(slot: Slot): Promise<void> {
    const eventId = slot.state.info.eventId;
    const go = await claim(slot, 'settle', TIMER_LOCK_MS);
    if (go === 'skip') return;
    if (go !== 'go') return retryLater(slot, go.retryInMs, () => void settleCapReached(slot));
    try {
      if (slot.state.info.status !== 'ended' || !slot.settle) return;
      logger.warn(`streams did not all settle within ${settleCapMs}ms, archiving what is stored [event:${eventId}]`);
      await finishSettle(slot, 'cap');
    } finally {
      if (store) unlock(eventId, 'settle');
    }
  }

  async function checkSettled(slot: Slot): Promise<void> {
    const s = slot.settle;
    if (!s || stopping) return;
    if (s.checking) {
      s.again = true;
      return;
    }
    s.checking = true;
    const eventId = slot.state.info.eventId;
    try {
      do {
        s.again = false;
        const history = await broker.call<StreamRecord[], { eventId: string }>('monitoring.history', { eventId });
        const open = history.filter((r) => !settled(r) && !settled(s.stopped.get(r.streamId)));
        // A stream whose node has left the cluster will never report its stop: its files went with the node.
        const nodes = new Set((broker.registry.getNodeList({ onlyAvailable: true, withServices: false }) as Array<{ id: string }>).map((n) => n.id));
        const lost = open.filter((r) => !nodes.has(r.nodeId));
        if (open.length === lost.length) {
          s.checking = false;
          if (lost.length > 0) logger.warn(`streams lost with their node, archiving without them [event:${eventId} streams:${lost.map((r) => `${r.streamId}@${r.nodeId}`).join(',')}]`);
          await finishSettle(slot, history.length === 0 ? 'no-streams' : lost.length > 0 ? 'all-stored-or-lost' : 'all-stored');
          return;
        }
        logger.debug(`waiting for streams [event:${eventId} open:${open.map((r) => r.streamId).join(',')}]`);
        // Look again shortly: a node carrying an open stream may die meanwhile.
        if (!s.again && slot.settle === s && !s.retry) {
          s.retry = setTimeout(() => {
            s.retry = undefined;
            void checkSettled(slot);
          }, SETTLE_RETRY_MS);
        }
      } while (s.again && slot.settle === s);
    } catch (err) {
      // Monitoring not reachable (yet): look again shortly; the cap still bounds the wait.
      logger.debug(`stream history unavailable [event:${eventId}] ${errorMessage(err)}`);
      if (slot.settle === s && !s.retry) {
        s.retry = setTimeout(() => {
          s.retry = undefined;
          void checkSettled(slot);
        }, SETTLE_RETRY_MS);
      }
    } finally {
      s.checking = false;
    }
  }

  function awaitStreams(slot: Slot): void {
    if (slot.settle) return;
    const eventId = slot.state.info.eventId;
    // A taken-over event keeps the deadline the first node set.
    const inMs = Math.max(0, (slot.settleDeadlineMs ?? nowMs() + settleCapMs) - nowMs());
    const cap = setTimeout(() => {
      settleCapReached(slot).catch((err) => logger.error(`settle failed [event:${eventId}] ${errorMessage(err)}`));
    }, inMs);
    slot.settle = { cap, checking: false, again: false, stopped: new Map() };
    void checkSettled(slot);
  }

  async function requestArchive(slot: Slot): Promise<void> {
    if (slot.archiving || stopping) return;
    slot.archiving = true;
    const eventId = slot.state.info.eventId;
    let locked = false;
    try {
      const go = await claim(slot, 'archive', ARCHIVE_LOCK_MS);
      if (go === 'skip') return;
      if (go !== 'go') {
        retryLater(slot, go.retryInMs, () => void requestArchive(slot));
        return;
      }
      locked = !!store;
      if (slot.state.info.status !== 'archiving') return;
      if (config.redisUrl) {
        // Cluster mode: a durable job whose ID is the event's (a second request is a no-op), run by
        // the elected archive leader, which reports through event.archived / archiveFailed; it
        // survives the leader's death (runtime/archive-queue.ts). Redis away: the direct call below.
        try {
          const job = await enqueueArchive({ url: config.redisUrl, namespace: config.namespace }, { eventId, requestedBy: broker.nodeID, requestedAt: at() });
          logger.info(`archive requested [event:${eventId} job:${job.jobId} state:${job.state}]`);
          return;
        } catch (err) {
          logger.warn(`archive queue unavailable, asking a coordinator directly [event:${eventId}] ${errorMessage(err)}`);
        }
      }
      await broker.waitForServices('archive-coordinator', BUILD_TIMEOUT_MS, 100);
      logger.info(`archive requested [event:${eventId}]`);
      const res = await broker.call<{ archive: ArchiveFragment[] }, { eventId: string }>('archive-coordinator.build', { eventId }, { timeout: BUILD_TIMEOUT_MS });
      // The coordinator reports through event.archived; an idempotent answer may skip that, so close it here.
      if (slot.state.info.status === 'archiving' && Array.isArray(res?.archive)) await apply(slot, { type: 'archive-built', at: at(), archive: res.archive });
    } catch (err) {
      if (slot.state.info.status === 'archiving' && !stopping) {
        logger.error(`archive build failed [event:${eventId}] ${errorMessage(err)}`);
        await apply(slot, { type: 'archive-failed', at: at(), error: errorMessage(err) });
      }
    } finally {
      slot.archiving = false;
      if (locked) unlock(eventId, 'archive');
    }
  }

  async function run(slot: Slot, effects: LifecycleEffect[]): Promise<void> {
    const eventId = slot.state.info.eventId;
    for (const e of effects) {
      switch (e.type) {
        case 'persist':
          // event-info.xml was written before the state was taken (commit); the reporting row follows.
          report(slot.state.info);
          break;
        case 'broadcast-status':
          await broadcast(EVENTS.eventStatus, { eventId, status: e.status });
          break;
        case 'broadcast-ended':
          await broadcast(EVENTS.eventEnded, { eventId, reason: e.reason });
          break;
        case 'start-idle-timer':
          startIdle(slot);
          break;
        case 'cancel-idle-timer':
          clearIdle(slot);
          break;
        case 'await-streams':
          awaitStreams(slot);
          break;
        case 'request-archive':
          void requestArchive(slot);
          break;
      }
    }
  }

  // ---- stepping ---------------------------------------------------------------------------------------

  /** Deadlines and archive progress once `result` is applied to the slot. */
  function marksAfter(slot: Slot, before: LifecycleState, result: StepResult, input: LifecycleInput): Marks {
    let { idleDeadlineMs, settleDeadlineMs, archiveRequestedAt } = slot;
    for (const e of result.effects) {
      if (e.type === 'start-idle-timer' && !(before.idleTimer && idleDeadlineMs !== undefined)) idleDeadlineMs = nowMs() + config.archiveTimeoutS * 1000;
      if (e.type === 'cancel-idle-timer') idleDeadlineMs = undefined;
      if (e.type === 'await-streams' && settleDeadlineMs === undefined) settleDeadlineMs = nowMs() + settleCapMs;
      if (e.type === 'request-archive' && input.type !== 'resume') archiveRequestedAt = input.at;
    }
    const status = result.state.info.status;
    if (!result.state.idleTimer) idleDeadlineMs = undefined;
    if (status !== 'ended') settleDeadlineMs = undefined;
    if (status !== 'archiving') archiveRequestedAt = undefined;
    return { idleDeadlineMs, settleDeadlineMs, archiveRequestedAt };
  }

  function take(slot: Slot, result: StepResult, marks: Marks, rev: number): void {
    slot.state = result.state;
    slot.rev = rev;
    slot.idleDeadlineMs = marks.idleDeadlineMs;
    slot.settleDeadlineMs = marks.settleDeadlineMs;
    slot.archiveRequestedAt = marks.archiveRequestedAt;
  }

  /**
   * Inputs refused when event-info.xml cannot be written: requests whose caller hears the refusal and
   * can ask again (an API client; the archive coordinator, whose failed report turns into an
   * archive-error flag in requestArchive). The old state stays shown. The others report what has
   * already happened (a caller joined, the call ended, the streams settled, the build failed):
   * refusing them would undo nothing and the call path must not hang on storage (DESIGN.md "Modes"),
   * so their state is shown from memory, logged, and the next write carries it. No reader of
   * event-info.xml answers differently for those states (none has an archive to play).
   */
  const STORE_OR_REFUSE: ReadonlySet<LifecycleInput['type']> = new Set<LifecycleInput['type']>(['cancel', 'update', 'archive-built', 'retry-archive']);

  /** Runs `fn` after every earlier commit of the slot, and holds the later ones until it is done. */
  function serially<T>(slot: Slot, fn: () => Promise<T>): Promise<T> {
    const next = slot.commits.then(fn, fn);
    slot.commits = next.catch(() => undefined);
    return next;
  }

  /**
   * Steps one event, one input at a time, and stores the step before anyone sees it: event-info.xml
   * first (what archive.m3u8, the archive coordinator and a restart read), then in cluster mode
   * Redis (compare-and-set on `rev`; what another node takes the event over from), and only then
   * the state in memory that `get`, `list` and status.json answer from. Effects (broadcasts, timers,
   * the archive request) run after, outside the queue: a broadcast's handlers may call this event.
   * When another node stored a newer state, steps again from that one; if this step then does not
   * stand, that state's event-info is written back over the one this step wrote.
   * Throws StorageUnavailableError, with nothing changed, when a STORE_OR_REFUSE input is not stored.
   */
  function commit(slot: Slot, input: LifecycleInput): Promise<[StepResult, EventStatus]> {
    return serially(slot, async (): Promise<[StepResult, EventStatus]> => {
      const eventId = slot.state.info.eventId;
      let wrote: EventInfo | undefined;
      try {
        for (let attempt = 0; ; attempt++) {
          const before = slot.state;
          const from = before.info.status;
          const result = step(before, input);
          if (result.refusal) return [result, from];
          const marks = marksAfter(slot, before, result, input);
          const unchanged = result.state === before && marks.idleDeadlineMs === slot.idleDeadlineMs && marks.settleDeadlineMs === slot.settleDeadlineMs && marks.archiveRequestedAt === slot.archiveRequestedAt;
          if (unchanged) return [result, from];
          const to = result.state.info.status;
          if (result.effects.some((e) => e.type === 'persist')) {
            const failed = await writeInfo(result.state.info);
            if (!failed) wrote = result.state.info;
            else if (STORE_OR_REFUSE.has(input.type)) {
              logger.error(`event-info write failed, ${input.type} not applied [event:${eventId} status:${from} to:${to}] ${failed.message}`);
              throw new StorageUnavailableError(`${input.type} not applied, event-info.xml not written [event:${eventId} status:${from}]: ${failed.message}`, { eventId, status: from });
            } else {
              logger.error(`event-info write failed, ${to} shown from memory until the next write [event:${eventId} from:${from} input:${input.type}] ${failed.message}`);
            }
          }
          if (store) {
            const saved = await save(result.state, slot.rev + 1, marks, 'change');
            if (saved !== 'unavailable' && !saved.ok && attempt < 2) {
              logger.info(`event changed on another node, stepping again [event:${eventId} rev:${slot.rev} stored:${saved.rev} input:${input.type}]`);
              if (await refresh(slot)) continue;
            }
          }
          take(slot, result, marks, store ? slot.rev + 1 : slot.rev);
          return [result, from];
        }
      } finally {
        if (wrote && wrote !== slot.state.info) {
          const info = slot.state.info;
          const failed = await writeInfo(info);
          if (failed) logger.error(`event-info not restored after a step that did not stand [event:${eventId} status:${info.status}] ${failed.message}`);
        }
      }
    });
  }

  /** Steps the machine (storing the step before it is shown) and, unless refused, runs the effects. */
  async function apply(slot: Slot, input: LifecycleInput): Promise<StepResult> {
    if (stopping) return { state: slot.state, effects: [] };
    const [result, before] = await commit(slot, input);
    if (result.refusal) return result;
    const after = slot.state.info.status;
    if (after !== before) logger.info(`event ${after} [event:${slot.state.info.eventId} from:${before} by:${input.type} callers:${callerCount(slot.state)}]`);
    await run(slot, result.effects);
    return result;
  }

  async function applyOrConflict(eventId: string, input: LifecycleInput, account?: unknown): Promise<EventInfo> {
    const slot = await slotOf(eventId, account);
    const r = await apply(slot, input);
    if (r.refusal) throw new StateConflictError(r.refusal.message, { status: r.refusal.status });
    return { ...slot.state.info };
  }

  // ---- holding events ---------------------------------------------------------------------------------

  /** The event's slot: held here, or (cluster mode) taken over from Redis or content storage. */
  function slotFor(eventId: string, by = 'call'): Promise<Slot | undefined> {
    const held = slots.get(eventId);
    if (held || !store) return Promise.resolve(held);
    let p = loading.get(eventId);
    if (!p) {
      p = takeOver(eventId, by).finally(() => loading.delete(eventId));
      loading.set(eventId, p);
    }
    return p;
  }

  /**
   * The event's slot; 404 when there is none, or when `account` (an API caller's, passed on by the
   * reservation actor) may not see it: another account's event answers as if it did not exist.
   */
  async function slotOf(eventId: string, account?: unknown): Promise<Slot> {
    if (account !== undefined && !isValidAccount(account)) throw new ValidationFailedError('invalid account', { account: ACCOUNT_RULE });
    const slot = await slotFor(eventId);
    if (!slot || !mayAccess(account, slot.state.info)) throw new NotFoundError(`no event ${eventId}`);
    return slot;
  }

  /** Loads an event this node now holds: Redis first, else event-info.xml; then resumes its timers. */
  async function takeOver(eventId: string, by: string): Promise<Slot | undefined> {
    let s: StoredEvent | undefined;
    if (store?.ready) {
      try {
        s = await store.load(eventId);
      } catch (err) {
        storeFailed('load', eventId, err);
      }
    }
    let slot: Slot;
    let from: string;
    if (s) {
      slot = newSlot(s.state, s.rev, { idleDeadlineMs: s.idleDeadlineMs, settleDeadlineMs: s.settleDeadlineMs, archiveRequestedAt: s.archiveRequestedAt });
      from = `redis rev:${s.rev} by:${s.owner}`;
    } else {
      let info: EventInfo;
      try {
        info = await storageOf(broker).getEventInfo(eventId);
      } catch (err) {
        if ((err as { code?: number }).code === 404) return undefined;
        throw err;
      }
      slot = newSlot(initialState(info));
      from = 'storage';
    }
    const raced = slots.get(eventId);
    if (raced) return raced;
    slots.set(eventId, slot);
    const gone = goneCallerNodes(slot.state);
    logger.info(`event taken over [event:${eventId} status:${slot.state.info.status} from:${from} callers:${callerCount(slot.state)} gone:${gone.join(',') || '-'} by:${by}]`);
    noteDropped(slot, gone);
    await apply(slot, { type: 'resume', at: at(), goneNodeIds: gone });
    return slot;
  }

  /**
   * Cluster housekeeping, after every topology change and every SWEEP_EVERY_MS: hands over events the
   * ring placed elsewhere, drops callers whose node left, and takes over open events placed here
   * that nobody holds (their node died). The first sweep also looks in content storage for open
   * events Redis lacks (a cold start after Redis lost everything).
   */
  async function sweep(why: string): Promise<void> {
    if (!store || stopping || !placementKnown) return;
    if (sweeping) {
      sweepAgain = true;
      return;
    }
    sweeping = true;
    try {
      do {
        sweepAgain = false;
        for (const slot of [...slots.values()]) {
          const owner = ownedElsewhere(slot.state.info.eventId);
          if (owner) release(slot, `placed on ${owner} by:${why}`);
        }
        for (const slot of [...slots.values()]) {
          const gone = goneCallerNodes(slot.state);
          if (gone.length === 0) continue;
          logger.info(`callers dropped, their node left the cluster [event:${slot.state.info.eventId} nodes:${gone.join(',')}]`);
          noteDropped(slot, gone);
          await apply(slot, { type: 'callers-gone', at: at(), nodeIds: gone });
        }
        let ids: string[] = [];
        if (store.ready) {
          try {
            ids = await store.openIds();
          } catch (err) {
            storeFailed('openIds', '*', err);
          }
        }
        for (const eventId of ids) {
          if (stopping) return;
          if (slots.has(eventId) || ownedElsewhere(eventId)) continue;
          await slotFor(eventId, `sweep:${why}`).catch((err) => logger.error(`event not taken over [event:${eventId}] ${errorMessage(err)}`));
        }
        if (!storageScanned) {
          storageScanned = true;
          await scanStorage();
        }
      } while (sweepAgain && !stopping);
    } finally {
      sweeping = false;
    }
  }

  /** Open events in content storage that Redis does not know, placed here: taken over from their event-info. */
  async function scanStorage(): Promise<void> {
    let ids: string[];
    try {
      ids = await storageOf(broker).listEventIds();
    } catch (err) {
      logger.warn(`content storage not scanned for events [${errorMessage(err)}]`);
      return;
    }
    const mine = ids.filter((id) => !slots.has(id) && !ownedElsewhere(id));
    let inRedis = new Map<string, StoredEvent>();
    if (store?.ready) {
      try {
        inRedis = await store.loadMany(mine);
      } catch (err) {
        storeFailed('loadMany', '*', err);
      }
    }
    let resumed = 0;
    for (const eventId of mine) {
      if (stopping) return;
      const s = inRedis.get(eventId);
      if (s && !OPEN_STATUSES.has(s.state.info.status)) continue;
      if (!s) {
        try {
          const info = await storageOf(broker).getEventInfo(eventId);
          if (!OPEN_STATUSES.has(info.status)) continue;
        } catch (err) {
          logger.warn(`event not recovered [event:${eventId}] ${errorMessage(err)}`);
          continue;
        }
      }
      if (slots.has(eventId)) continue;
      await slotFor(eventId, 'storage-scan').catch((err) => logger.error(`event not taken over [event:${eventId}] ${errorMessage(err)}`));
      resumed++;
    }
    logger.info(`content storage scanned for open events [events:${ids.length} placed-here:${mine.length} resumed:${resumed}]`);
  }

  function sweepSoon(): void {
    if (!store || stopping || !placementKnown || sweepSoonTimer) return;
    sweepSoonTimer = setTimeout(() => {
      sweepSoonTimer = undefined;
      sweep('topology').catch((err) => logger.error(`event sweep failed ${errorMessage(err)}`));
    }, 100);
  }

  /** Rewrites every event held here (Redis came back, maybe empty). */
  async function resync(): Promise<void> {
    let written = 0;
    for (const slot of [...slots.values()]) {
      await serially(slot, async () => {
        const r = await save(slot.state, slot.rev, marksOf(slot), 'sync');
        if (r === 'unavailable') return;
        if (r.ok) written++;
        else await refresh(slot);
      });
    }
    if (written > 0) logger.info(`event state resynced to redis [events:${written}]`);
  }

  /** Every event for `list`: held here, in Redis, or only in content storage. */
  async function allStates(): Promise<LifecycleState[]> {
    const ids = new Set<string>(slots.keys());
    let fromRedis = new Map<string, StoredEvent>();
    if (store?.ready) {
      try {
        for (const id of await store.allIds()) ids.add(id);
      } catch (err) {
        storeFailed('allIds', '*', err);
      }
    }
    try {
      for (const id of await storageOf(broker).listEventIds()) ids.add(id);
    } catch (err) {
      logger.warn(`content storage not listed [${errorMessage(err)}]`);
    }
    if (store?.ready) {
      try {
        fromRedis = await store.loadMany([...ids]);
      } catch (err) {
        storeFailed('loadMany', '*', err);
      }
    }
    const out: LifecycleState[] = [];
    const missing: string[] = [];
    for (const id of ids) {
      const held = slots.get(id);
      const s = fromRedis.get(id);
      if (held && (!s || held.rev >= s.rev)) out.push(held.state);
      else if (s) out.push(s.state);
      else missing.push(id);
    }
    const unread: string[] = [];
    for (const id of missing) {
      const info = finalInfos.get(id);
      if (info) out.push(initialState(info));
      else unread.push(id);
    }
    for (let i = 0; i < unread.length; i += 16) {
      const infos = await Promise.all(
        unread.slice(i, i + 16).map((eventId) => storageOf(broker).getEventInfo(eventId).catch(() => undefined)),
      );
      for (const info of infos) {
        if (!info) continue;
        // Archived and cancelled events never change again: read their event-info once.
        if (info.status === 'archived' || info.status === 'cancelled') finalInfos.set(info.eventId, info);
        out.push(initialState(info));
      }
    }
    return out;
  }

  function byCreation(a: LifecycleState, b: LifecycleState): number {
    const x = a.info;
    const y = b.info;
    return x.createdAt < y.createdAt ? -1 : x.createdAt > y.createdAt ? 1 : x.eventId < y.eventId ? -1 : 1;
  }

  /** Action schema of an `event.*` call placed by event ID (`shardKey` is a path into the params). */
  function placed<P>(shardKey: string, keyOf: (p: P) => unknown, handler: (ctx: Context<P>) => Promise<unknown>) {
    return {
      strategy: 'Shard',
      strategyOptions: { shardKey },
      handler(ctx: Context<P>) {
        return routed(ctx, keyOf(ctx.params), () => handler(ctx));
      },
    };
  }

  return {
    name: 'event',
    events: {
      [EVENTS.apiKeyChanged]: {
        handler(ctx: Context<unknown>) {
          keyMirror?.heard(ctx.params);
        },
      },
      [EVENTS.streamStopped]: {
        handler(ctx: Context<StreamRecord>) {
          const r = ctx.params;
          const slot = r && typeof r.eventId === 'string' ? slots.get(r.eventId) : undefined;
          if (!slot?.settle || typeof r.streamId !== 'string') return;
          slot.settle.stopped.set(r.streamId, { ...r });
          void checkSettled(slot);
        },
      },
      '$node.disconnected': {
        handler() {
          sweepSoon();
        },
      },
      '$node.connected': {
        handler(ctx: Context<{ node: { id: string; instanceID?: string | null }; reconnected: boolean }>) {
          const node = ctx.params?.node;
          if (store && ctx.params?.reconnected && node) {
            restoreCallers(node.id, node.instanceID).catch((err) => logger.error(`callers not restored [node:${node.id}] ${errorMessage(err)}`));
          }
          sweepSoon();
        },
      },
    },
    actions: {
      register: placed<{ info: EventInfo }>('info.eventId', (p) => p?.info?.eventId, async (ctx) => {
        const info = validateInfo(ctx.params?.info);
        const known = slots.get(info.eventId);
        // Start-up may already have loaded it from storage (the reservation writes first): same event, no conflict.
        if (known) return { ...known.state.info };
        if (store) {
          const inFlight = loading.get(info.eventId);
          const loaded = inFlight ? await inFlight : undefined;
          if (loaded) return { ...loaded.state.info };
        }
        const slot = newSlot(initialState(info));
        if (store) {
          const saved = await save(slot.state, 1, {}, 'change');
          if (saved !== 'unavailable' && !saved.ok) {
            // Registered before (by another node, or before this node restarted): that registration stands.
            const other = await slotFor(info.eventId);
            if (other) return { ...other.state.info };
          }
          slot.rev = 1;
          const raced = slots.get(info.eventId);
          if (raced) return { ...raced.state.info };
        }
        slots.set(info.eventId, slot);
        // Nothing to write: the reservation stored this very event-info.xml before registering
        // (durable first), and every later state is written before it is shown.
        report(slot.state.info);
        ctx.service!.logger.info(`event registered [event:${info.eventId} status:${info.status}]`);
        return { ...slot.state.info };
      }),

      get: placed<{ eventId: string; account?: string }>('eventId', (p) => p?.eventId, async (ctx): Promise<EventView> => {
        const slot = await slotOf(requireEventId(ctx.params?.eventId), ctx.params?.account);
        return view(slot.state, await activeStreams(slot.state.info.eventId));
      }),

      list: {
        async handler(): Promise<EventView[]> {
          const states = store ? await allStates() : [...slots.values()].map((s) => s.state);
          const streams = states.length > 0 ? await activeStreams() : [];
          return states.sort(byCreation).map((state) => view(state, streams.filter((s) => s.eventId === state.info.eventId)));
        },
      },

      held: {
        handler(): HeldEvent[] {
          return [...slots.values()]
            .map((s) => ({
              eventId: s.state.info.eventId,
              status: s.state.info.status,
              callers: callerCount(s.state),
              rev: s.rev,
              ...(s.idle && s.idleDeadlineMs !== undefined ? { idleDeadline: new Date(s.idleDeadlineMs).toISOString() } : {}),
            }))
            .sort((a, b) => (a.eventId < b.eventId ? -1 : 1));
        },
      },

      update: placed<UpdateParams>('eventId', (p) => p?.eventId, async (ctx) => {
        const eventId = requireEventId(ctx.params?.eventId);
        const patch = validatePatch(ctx.params?.patch);
        return applyOrConflict(eventId, { type: 'update', at: at(), patch }, ctx.params?.account);
      }),

      cancel: placed<{ eventId: string; account?: string }>('eventId', (p) => p?.eventId, async (ctx) => {
        return applyOrConflict(requireEventId(ctx.params?.eventId), { type: 'cancel', at: at() }, ctx.params?.account);
      }),

      end: placed<EndParams>('eventId', (p) => p?.eventId, async (ctx) => {
        const eventId = requireEventId(ctx.params?.eventId);
        const reason = ctx.params?.reason;
        if (!END_REASONS.includes(reason)) throw new ValidationFailedError(`invalid end reason ${JSON.stringify(reason)}`, { reason: `must be one of ${END_REASONS.join(', ')}` });
        return applyOrConflict(eventId, { type: 'end', at: at(), reason }, ctx.params?.account);
      }),

      join: placed<JoinParams>('eventId', (p) => p?.eventId, async (ctx): Promise<JoinResult> => {
        const p = ctx.params;
        const log = ctx.service!.logger;
        const eventId = requireEventId(p?.eventId);
        if (typeof p.channelId !== 'string' || p.channelId === '') throw new ValidationFailedError('channelId is required', { channelId: 'required' });
        if (typeof p.nodeId !== 'string' || p.nodeId === '') throw new ValidationFailedError('nodeId is required', { nodeId: 'required' });
        if (!Number.isInteger(p.port)) throw new ValidationFailedError('port must be a whole number', { port: 'must be a whole number' });
        const slot = await slotFor(eventId);
        if (!slot) return { ok: false, status: 'unknown', reason: `no event ${eventId}` };
        const r = await apply(slot, { type: 'join', at: at(), channelId: p.channelId, nodeId: p.nodeId, port: p.port });
        if (r.refusal) {
          log.info(`caller refused [event:${eventId} channel:${p.channelId} status:${r.refusal.status}]`);
          return { ok: false, status: r.refusal.status, reason: r.refusal.message };
        }
        log.info(`caller joined [event:${eventId} channel:${p.channelId} node:${p.nodeId} port:${p.port} callers:${callerCount(slot.state)}]`);
        return { ok: true, status: slot.state.info.status };
      }),

      leave: placed<LeaveParams>('eventId', (p) => p?.eventId, async (ctx): Promise<{ ok: boolean }> => {
        const eventId = requireEventId(ctx.params?.eventId);
        const channelId = ctx.params?.channelId;
        if (typeof channelId !== 'string' || channelId === '') throw new ValidationFailedError('channelId is required', { channelId: 'required' });
        const slot = await slotOf(eventId);
        const had = channelId in slot.state.callers;
        await apply(slot, { type: 'leave', at: at(), channelId });
        if (had) ctx.service!.logger.info(`caller left [event:${eventId} channel:${channelId} callers:${callerCount(slot.state)}]`);
        return { ok: had };
      }),

      archived: placed<{ eventId: string; archive: ArchiveFragment[] }>('eventId', (p) => p?.eventId, async (ctx) => {
        const eventId = requireEventId(ctx.params?.eventId);
        const archive = validateArchive(ctx.params?.archive);
        return applyOrConflict(eventId, { type: 'archive-built', at: at(), archive });
      }),

      archiveFailed: placed<{ eventId: string; error: string }>('eventId', (p) => p?.eventId, async (ctx) => {
        const eventId = requireEventId(ctx.params?.eventId);
        const error = typeof ctx.params?.error === 'string' && ctx.params.error !== '' ? ctx.params.error : 'archive build failed';
        return applyOrConflict(eventId, { type: 'archive-failed', at: at(), error });
      }),

      /** Content storage's retention sweep removed the event's archive: the event shows none from now on. */
      retentionEnded: placed<{ eventId: string }>('eventId', (p) => p?.eventId, async (ctx) => {
        return applyOrConflict(requireEventId(ctx.params?.eventId), { type: 'retention-ended', at: at() });
      }),

      retryArchive: placed<{ eventId: string; account?: string }>('eventId', (p) => p?.eventId, async (ctx) => {
        return applyOrConflict(requireEventId(ctx.params?.eventId), { type: 'retry-archive', at: at() }, ctx.params?.account);
      }),
    },

    created() {
      broker = this.broker;
      logger = this.logger;
      stopping = false;
      const dbRetry = { maxBackoffMs: config.dbRetryMaxS * 1000 };
      if (deps.reporting) reporting = deps.reporting(this.logger);
      else if (config.dbUrl && config.redisUrl) {
        const dbUrl = config.dbUrl;
        reporting = new QueuedReporting({ url: config.redisUrl, namespace: config.namespace, nodeId: this.broker.nodeID, openDb: () => openPostgres(dbUrl, this.logger), logger: this.logger, ...dbRetry });
      } else reporting = new ReportingWriter(() => openDb(config, this.logger), this.logger, dbRetry);
      // PGlite has one writer, this sink: the accounts and API keys mirror goes through it (with PostgreSQL the gateways write it).
      const keySink = reporting;
      if (!config.dbUrl && keySink.withDb) keyMirror = new SinkKeyMirror((fn) => keySink.withDb!(fn), keysFileOf(config.dataDir), this.logger);
      if (deps.store !== undefined) store = deps.store(this.logger, this.broker.nodeID) ?? undefined;
      else if (config.redisUrl) store = new RedisEventStore(createRedis({ url: config.redisUrl, namespace: config.namespace, name: 'event', logger: this.logger }), this.broker.nodeID);
      store?.onReady(() => {
        resync()
          .then(() => sweep('redis-ready'))
          .catch((err) => logger.warn(`event resync failed ${errorMessage(err)}`));
      });
    },

    async started() {
      startedMs = Date.now();
      store?.connect();
      // Embedded PGlite blocks the process while it starts: do it before the node is up, never mid-call.
      if (!config.dbUrl && reporting instanceof ReportingWriter) await reporting.warmUp();
      keyMirror?.start();
      await this.broker.waitForServices('content-storage', 30_000, 50);
      const sink = reporting;
      if (sink?.withDb) {
        // In the background: start-up never waits on the database. In a cluster one node at a time runs it.
        const storage = storageOf(this.broker);
        reconciliation = runReconciliation({
          source: { listEventIds: () => storage.listEventIds(), getEventInfo: (id) => storage.getEventInfo(id) },
          withDb: (fn) => sink.withDb!(fn),
          logger: this.logger,
          guard: config.dbUrl && config.redisUrl ? new RedisReconcileGuard(config.redisUrl, config.namespace, this.broker.nodeID, this.logger) : undefined,
          maxBackoffMs: config.dbRetryMaxS * 1000,
          startedMs,
        });
      }
      if (store) {
        // Events are placed over the nodes running `event`: wait a moment to hear of the others before
        // taking any over, then look again on every topology change and now and then.
        sweepTimer = setTimeout(() => {
          placementKnown = true;
          sweep('start').catch((err) => logger.error(`event sweep failed ${errorMessage(err)}`));
          sweepTimer = setInterval(() => sweep('periodic').catch((err) => logger.error(`event sweep failed ${errorMessage(err)}`)), SWEEP_EVERY_MS);
          sweepTimer.unref();
        }, config.heartbeatS * 1500);
        sweepTimer.unref();
        this.logger.info(`events placed by event ID over the event nodes, live state in redis [node:${this.broker.nodeID}]`);
        return;
      }
      const ids = await storageOf(this.broker).listEventIds();
      const recovered: Array<[Slot, LifecycleEffect[]]> = [];
      for (const eventId of ids) {
        if (slots.has(eventId)) continue;
        try {
          const info = await storageOf(this.broker).getEventInfo(eventId);
          const r = recover(info);
          const slot = newSlot(r.state);
          slots.set(eventId, slot);
          recovered.push([slot, r.effects]);
        } catch (err) {
          this.logger.error(`event not recovered [event:${eventId}] ${errorMessage(err)}`);
        }
      }
      this.logger.info(`events recovered from storage [events:${slots.size} resumed:${recovered.filter(([, e]) => e.length > 0).length}]`);
      // Timers and archive requests run in the background: start-up must not wait on other actors.
      for (const [slot, effects] of recovered) void run(slot, effects);
    },

    async stopped() {
      stopping = true;
      if (sweepTimer) {
        clearTimeout(sweepTimer);
        clearInterval(sweepTimer);
      }
      if (sweepSoonTimer) clearTimeout(sweepSoonTimer);
      sweepTimer = sweepSoonTimer = undefined;
      for (const slot of slots.values()) {
        clearIdle(slot);
        clearSettle(slot);
        if (slot.retry) clearTimeout(slot.retry);
      }
      await Promise.all([...slots.values()].map((s) => s.commits));
      await reconciliation?.stop();
      reconciliation = undefined;
      await keyMirror?.close();
      keyMirror = undefined;
      await reporting?.close();
      reporting = undefined;
      await store?.close();
      store = undefined;
    },
  };
}
