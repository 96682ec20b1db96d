/**
 * `event` actor (DESIGN.md "event"): owns each event's lifecycle. The pure machine in
 * core/event-lifecycle.ts decides; this actor runs the effects: event-info.xml (the source of truth)
 * via content storage, the reporting DB queue, broadcasts, the idle timer, the wait for streams to
 * settle and the archive request.
 *
 * Embedded mode keeps state in memory and rebuilds it at start-up from content storage, so a restart
 * loses nothing but who is connected (voice servers that still hold callers re-join them).
 */
import type { Context, Service, ServiceBroker, ServiceSchema } from 'moleculer';
import type { JitcastConfig } from '../cluster.config.ts';
import { isValidEventId, isValidStreamId } from '../codecs/ids.ts';
import {
  callerCount,
  initialState,
  recover,
  step,
  type EndReason,
  type EventPatch,
  type LifecycleEffect,
  type LifecycleInput,
  type LifecycleState,
  type StepResult,
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
import { openDb } from '../runtime/db.ts';
import { NotFoundError, StateConflictError, ValidationFailedError } from '../runtime/errors.ts';
import { ReportingWriter, type ReportingSink } from '../runtime/reporting.ts';

/** What the event actor can be handed instead of its defaults (specs hand it fakes). */
export interface EventServiceDeps {
  /** Builds the reporting writer in `created()`. Default: ReportingWriter over `openDb(config)`. */
  reporting?: (logger: Service['logger']) => ReportingSink;
  /** Clock. Default `new Date()`. */
  now?: () => Date;
  /** Longest wait for an ended event's streams to stop and be stored, in ms. Default 30000. */
  settleCapMs?: number;
}

/** `event.update` parameters. */
export interface UpdateParams {
  eventId: string;
  patch: EventPatch;
}

/** `event.end` parameters. */
export interface EndParams {
  eventId: string;
  reason: EndReason;
}

interface Settle {
  cap: NodeJS.Timeout;
  retry?: NodeJS.Timeout;
  checking: boolean;
  again: boolean;
  /** Stops seen here directly: the broadcast may reach this actor before monitoring has recorded it. */
  stopped: Map<string, StreamRecord>;
}

interface Slot {
  state: LifecycleState;
  idle?: NodeJS.Timeout;
  /** Writes of event-info, in order; each writes the state current when it runs, so the last one wins. */
  writes: Promise<void>;
  settle?: Settle;
  archiving: boolean;
}

const STATUSES: readonly EventStatus[] = ['reserved', 'live', 'ended', 'archiving', 'archived', 'archive-error', 'cancelled'];
const END_REASONS: readonly EndReason[] = ['end-code', 'api', 'timeout'];
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

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The event service: lifecycle of every event, rebuilt from content storage at start-up. */
export function createEventService(config: JitcastConfig, deps: EventServiceDeps = {}): ServiceSchema {
  const now = deps.now ?? (() => new Date());
  const settleCapMs = deps.settleCapMs ?? 30_000;
  const slots = new Map<string, Slot>();
  let broker: ServiceBroker;
  let logger: Service['logger'];
  let reporting: ReportingSink | undefined;
  let stopping = false;

  const at = () => now().toISOString();

  function slotOf(eventId: string): Slot {
    const slot = slots.get(eventId);
    if (!slot) throw new NotFoundError(`no event ${eventId}`);
    return slot;
  }

  function view(slot: Slot, streams: StreamDataset[]): EventView {
    return {
      ...slot.state.info,
      streams: streams.map((s) => ({ streamId: s.streamId, nodeId: s.nodeId, dataCenter: s.dataCenter, port: s.port, format: s.format, url: s.url, startedAt: s.startedAt })),
      callers: callerCount(slot.state),
    };
  }

  async function activeStreams(eventId?: string): Promise<StreamDataset[]> {
    try {
      return await broker.call<StreamDataset[], { eventId?: string }>('monitoring.activeStreams', eventId ? { eventId } : {});
    } catch (err) {
      // The view still answers without monitoring; it just shows no streams.
      logger.debug(`active streams unavailable [event:${eventId ?? '*'}] ${message(err)}`);
      return [];
    }
  }

  function persist(slot: Slot): Promise<void> {
    const eventId = slot.state.info.eventId;
    slot.writes = slot.writes.then(async () => {
      const info = slot.state.info;
      try {
        await broker.call('content-storage.putEventInfo', { info });
      } catch (err) {
        // Memory stays ahead; the next change writes the then-current state again.
        logger.error(`event-info write failed [event:${eventId} status:${info.status}] ${message(err)}`);
      }
    });
    try {
      reporting?.enqueueEvent(slot.state.info);
    } catch (err) {
      logger.warn(`reporting enqueue failed [event:${eventId}] ${message(err)}`);
    }
    return slot.writes;
  }

  async function broadcast(name: string, data: unknown): Promise<void> {
    try {
      await broker.broadcast(name, data);
    } catch (err) {
      logger.warn(`broadcast failed [${name}] ${message(err)}`);
    }
  }

  function clearIdle(slot: Slot): void {
    if (slot.idle) clearTimeout(slot.idle);
    slot.idle = undefined;
  }

  function startIdle(slot: Slot): void {
    clearIdle(slot);
    const eventId = slot.state.info.eventId;
    logger.info(`last caller gone, event ends in ${config.archiveTimeoutS}s unless someone joins [event:${eventId}]`);
    slot.idle = setTimeout(() => {
      slot.idle = undefined;
      apply(slot, { type: 'idle-timeout', at: at() }).catch((err) => logger.error(`idle timeout failed [event:${eventId}] ${message(err)}`));
    }, config.archiveTimeoutS * 1000);
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
        if (open.length === 0) {
          s.checking = false;
          await finishSettle(slot, history.length === 0 ? 'no-streams' : 'all-stored');
          return;
        }
        logger.debug(`waiting for streams [event:${eventId} open:${open.map((r) => r.streamId).join(',')}]`);
      } while (s.again && slot.settle === s);
    } catch (err) {
      // Monitoring not reachable (yet): look again shortly; the cap still bounds the wait.
      logger.debug(`stream history unavailable [event:${eventId}] ${message(err)}`);
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
    const cap = setTimeout(() => {
      logger.warn(`streams did not all settle within ${settleCapMs}ms, archiving what is stored [event:${eventId}]`);
      finishSettle(slot, 'cap').catch((err) => logger.error(`settle failed [event:${eventId}] ${message(err)}`));
    }, settleCapMs);
    slot.settle = { cap, checking: false, again: false, stopped: new Map() };
    void checkSettled(slot);
  }

  async function requestArchive(slot: Slot): Promise<void> {
    if (slot.archiving || stopping) return;
    slot.archiving = true;
    const eventId = slot.state.info.eventId;
    try {
      await broker.waitForServices('archive-coordinator', BUILD_TIMEOUT_MS, 100);
      logger.info(`archive requested [event:${eventId}]`);
      const res = await broker.call<{ archive: ArchiveFragment[] }, { eventId: string }>('archive-coordinator.build', { eventId }, { timeout: BUILD_TIMEOUT_MS });
      // The coordinator reports through event.archived; an idempotent answer may skip that, so close it here.
      if (slot.state.info.status === 'archiving' && Array.isArray(res?.archive)) await apply(slot, { type: 'archive-built', at: at(), archive: res.archive });
    } catch (err) {
      if (slot.state.info.status === 'archiving' && !stopping) {
        logger.error(`archive build failed [event:${eventId}] ${message(err)}`);
        await apply(slot, { type: 'archive-failed', at: at(), error: message(err) });
      }
    } finally {
      slot.archiving = false;
    }
  }

  async function run(slot: Slot, effects: LifecycleEffect[]): Promise<void> {
    const eventId = slot.state.info.eventId;
    for (const e of effects) {
      switch (e.type) {
        case 'persist':
          await persist(slot);
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

  /** Steps the machine and, unless refused, runs the effects. State changes before any await, so calls never interleave inside a step. */
  async function apply(slot: Slot, input: LifecycleInput): Promise<StepResult> {
    if (stopping) return { state: slot.state, effects: [] };
    const before = slot.state.info.status;
    const result = step(slot.state, input);
    if (result.refusal) return result;
    slot.state = result.state;
    const after = slot.state.info.status;
    if (after !== before) logger.info(`event ${after} [event:${slot.state.info.eventId} from:${before} by:${input.type} callers:${callerCount(slot.state)}]`);
    await run(slot, result.effects);
    return result;
  }

  async function applyOrConflict(eventId: string, input: LifecycleInput): Promise<EventInfo> {
    const slot = slotOf(eventId);
    const r = await apply(slot, input);
    if (r.refusal) throw new StateConflictError(r.refusal.message, { status: r.refusal.status });
    return { ...slot.state.info };
  }

  return {
    name: 'event',
    events: {
      [EVENTS.streamStopped]: {
        handler(ctx: Context<StreamRecord>) {
          const r = ctx.params;
          const slot = r && typeof r.eventId === 'string' ? slots.get(r.eventId) : undefined;
          if (!slot?.settle || typeof r.streamId !== 'string') return;
          slot.settle.stopped.set(r.streamId, { ...r });
          void checkSettled(slot);
        },
      },
    },
    actions: {
      register: {
        async handler(ctx: Context<{ info: EventInfo }>): Promise<EventInfo> {
          const info = validateInfo(ctx.params?.info);
          const known = slots.get(info.eventId);
          // Start-up may already have loaded it from storage (the reservation writes first): same event, no conflict.
          if (known) return { ...known.state.info };
          const slot: Slot = { state: initialState(info), writes: Promise.resolve(), archiving: false };
          slots.set(info.eventId, slot);
          await persist(slot);
          this.logger.info(`event registered [event:${info.eventId} status:${info.status}]`);
          return { ...slot.state.info };
        },
      },

      get: {
        async handler(ctx: Context<{ eventId: string }>): Promise<EventView> {
          const slot = slotOf(requireEventId(ctx.params?.eventId));
          return view(slot, await activeStreams(slot.state.info.eventId));
        },
      },

      list: {
        async handler(): Promise<EventView[]> {
          const streams = slots.size > 0 ? await activeStreams() : [];
          return [...slots.values()]
            .sort((a, b) => (a.state.info.createdAt < b.state.info.createdAt ? -1 : a.state.info.createdAt > b.state.info.createdAt ? 1 : a.state.info.eventId < b.state.info.eventId ? -1 : 1))
            .map((slot) => view(slot, streams.filter((s) => s.eventId === slot.state.info.eventId)));
        },
      },

      update: {
        async handler(ctx: Context<UpdateParams>): Promise<EventInfo> {
          const eventId = requireEventId(ctx.params?.eventId);
          const patch = validatePatch(ctx.params?.patch);
          return applyOrConflict(eventId, { type: 'update', at: at(), patch });
        },
      },

      cancel: {
        async handler(ctx: Context<{ eventId: string }>): Promise<EventInfo> {
          return applyOrConflict(requireEventId(ctx.params?.eventId), { type: 'cancel', at: at() });
        },
      },

      end: {
        async handler(ctx: Context<EndParams>): Promise<EventInfo> {
          const eventId = requireEventId(ctx.params?.eventId);
          const reason = ctx.params?.reason;
          if (!END_REASONS.includes(reason)) throw new ValidationFailedError(`invalid end reason ${JSON.stringify(reason)}`, { reason: `must be one of ${END_REASONS.join(', ')}` });
          return applyOrConflict(eventId, { type: 'end', at: at(), reason });
        },
      },

      join: {
        async handler(ctx: Context<JoinParams>): Promise<JoinResult> {
          const p = ctx.params;
          const eventId = requireEventId(p?.eventId);
          if (typeof p.channelId !== 'string' || p.channelId === '') throw new ValidationFailedError('channelId is required', { channelId: 'required' });
          if (typeof p.nodeId !== 'string' || p.nodeId === '') throw new ValidationFailedError('nodeId is required', { nodeId: 'required' });
          if (!Number.isInteger(p.port)) throw new ValidationFailedError('port must be a whole number', { port: 'must be a whole number' });
          const slot = slots.get(eventId);
          if (!slot) return { ok: false, status: 'unknown', reason: `no event ${eventId}` };
          const r = await apply(slot, { type: 'join', at: at(), channelId: p.channelId, nodeId: p.nodeId, port: p.port });
          if (r.refusal) {
            this.logger.info(`caller refused [event:${eventId} channel:${p.channelId} status:${r.refusal.status}]`);
            return { ok: false, status: r.refusal.status, reason: r.refusal.message };
          }
          this.logger.info(`caller joined [event:${eventId} channel:${p.channelId} node:${p.nodeId} port:${p.port} callers:${callerCount(slot.state)}]`);
          return { ok: true, status: slot.state.info.status };
        },
      },

      leave: {
        async handler(ctx: Context<LeaveParams>): Promise<{ ok: boolean }> {
          const eventId = requireEventId(ctx.params?.eventId);
          const channelId = ctx.params?.channelId;
          if (typeof channelId !== 'string' || channelId === '') throw new ValidationFailedError('channelId is required', { channelId: 'required' });
          const slot = slotOf(eventId);
          const had = channelId in slot.state.callers;
          await apply(slot, { type: 'leave', at: at(), channelId });
          if (had) this.logger.info(`caller left [event:${eventId} channel:${channelId} callers:${callerCount(slot.state)}]`);
          return { ok: had };
        },
      },

      archived: {
        async handler(ctx: Context<{ eventId: string; archive: ArchiveFragment[] }>): Promise<EventInfo> {
          const eventId = requireEventId(ctx.params?.eventId);
          const archive = validateArchive(ctx.params?.archive);
          return applyOrConflict(eventId, { type: 'archive-built', at: at(), archive });
        },
      },

      archiveFailed: {
        async handler(ctx: Context<{ eventId: string; error: string }>): Promise<EventInfo> {
          const eventId = requireEventId(ctx.params?.eventId);
          const error = typeof ctx.params?.error === 'string' && ctx.params.error !== '' ? ctx.params.error : 'archive build failed';
          return applyOrConflict(eventId, { type: 'archive-failed', at: at(), error });
        },
      },

      retryArchive: {
        async handler(ctx: Context<{ eventId: string }>): Promise<EventInfo> {
          return applyOrConflict(requireEventId(ctx.params?.eventId), { type: 'retry-archive', at: at() });
        },
      },
    },

    created() {
      broker = this.broker;
      logger = this.logger;
      stopping = false;
      reporting = deps.reporting ? deps.reporting(this.logger) : new ReportingWriter(() => openDb(config, this.logger), this.logger);
    },

    async started() {
      // Embedded PGlite blocks the process while it starts: do it before the node is up, never mid-call.
      if (!config.dbUrl && reporting instanceof ReportingWriter) await reporting.warmUp();
      await this.broker.waitForServices('content-storage', 30_000, 50);
      const ids = await this.broker.call<string[]>('content-storage.listEventIds');
      const recovered: Array<[Slot, LifecycleEffect[]]> = [];
      for (const eventId of ids) {
        if (slots.has(eventId)) continue;
        try {
          const info = await this.broker.call<EventInfo, { eventId: string }>('content-storage.getEventInfo', { eventId });
          const r = recover(info);
          const slot: Slot = { state: r.state, writes: Promise.resolve(), archiving: false };
          slots.set(eventId, slot);
          recovered.push([slot, r.effects]);
        } catch (err) {
          this.logger.error(`event not recovered [event:${eventId}] ${message(err)}`);
        }
      }
      this.logger.info(`events recovered from storage [events:${slots.size} resumed:${recovered.filter(([, e]) => e.length > 0).length}]`);
      // Timers and archive requests run in the background: start-up must not wait on other actors.
      for (const [slot, effects] of recovered) void run(slot, effects);
    },

    async stopped() {
      stopping = true;
      for (const slot of slots.values()) {
        clearIdle(slot);
        clearSettle(slot);
      }
      await Promise.all([...slots.values()].map((s) => s.writes));
      await reporting?.close();
      reporting = undefined;
    },
  };
}
