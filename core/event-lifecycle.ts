/**
 * Event lifecycle (DESIGN.md "event"): a pure state machine, `step(state, input) → { state, effects }`.
 *
 *   reserved ──join──▶ live ──end / idle-timeout──▶ ended ──streams-settled──▶ archiving ──▶ archived
 *      │                                                                          │  ▲
 *      └──cancel──▶ cancelled                                          archive-failed  retry-archive
 *                                                                                 ▼  │
 *                                                                            archive-error
 *
 * No timers and no I/O here: the actor runs the effects (timers, storage, broadcasts, calls). Time
 * comes in with each input (`at`, ISO 8601) so the machine stays deterministic.
 *
 * In cluster mode an event moves between nodes (sharded by event ID): the node that takes it over
 * feeds `resume` with the state another node stored (StoredEvent), and every holder feeds
 * `callers-gone` when a voice server's node leaves the cluster, since its channels vanished with it.
 */
import type { ArchiveFragment, EventInfo, EventStatus } from '../runtime/contracts.ts';

/** Why the event ended (`event.end` reason, also broadcast with EVENTS.eventEnded): the end code keyed on the phone, the API (an operator or integrator, the dashboard), the host page, or the idle timer. */
export type EndReason = 'end-code' | 'api' | 'host' | 'timeout';

/** A caller in the conference, keyed by its channel ID. */
export interface CallerRef {
  nodeId: string;
  port: number;
}

/** Fields `update` may change. */
export interface EventPatch {
  title?: string;
  startsAt?: string;
  archiveDays?: number;
  hasPassword?: boolean;
}

/** The state of one event: its event-info plus what only lives in memory (callers, idle timer). */
export interface LifecycleState {
  readonly info: EventInfo;
  /** Callers by channel ID, over all voice servers. */
  readonly callers: Readonly<Record<string, CallerRef>>;
  /** Whether the "last caller gone" timer is running. */
  readonly idleTimer: boolean;
}

/** What can happen to an event. */
export type LifecycleInput =
  | { type: 'join'; at: string; channelId: string; nodeId: string; port: number }
  | { type: 'leave'; at: string; channelId: string }
  | { type: 'end'; at: string; reason: EndReason }
  | { type: 'cancel'; at: string }
  | { type: 'idle-timeout'; at: string }
  | { type: 'streams-settled'; at: string }
  | { type: 'archive-built'; at: string; archive: ArchiveFragment[] }
  | { type: 'archive-failed'; at: string; error: string }
  | { type: 'retry-archive'; at: string }
  /** Content storage removed the archive's files: its retention (archiveDays) is over. */
  | { type: 'retention-ended'; at: string }
  | { type: 'update'; at: string; patch: EventPatch }
  /** Voice servers on these nodes left the cluster: their callers are gone without a `leave`. */
  | { type: 'callers-gone'; at: string; nodeIds: string[] }
  /** This node took the event over from the shared store; callers on `goneNodeIds` are dropped. */
  | { type: 'resume'; at: string; goneNodeIds: string[] };

/** Commands for the actor, run in order. */
export type LifecycleEffect =
  /**
   * The step changed event-info: the actor stores it (content storage) before the new state is shown,
   * then queues the reporting DB row.
   */
  | { type: 'persist' }
  | { type: 'broadcast-status'; status: EventStatus }
  | { type: 'broadcast-ended'; reason: EndReason }
  /** Start the "event over" timer (config.archiveTimeoutS); its expiry comes back as `idle-timeout`. */
  | { type: 'start-idle-timer' }
  | { type: 'cancel-idle-timer' }
  /** Wait until every stream of the event has stopped and been stored, then feed `streams-settled`. */
  | { type: 'await-streams' }
  /** Ask the archive coordinator to build the archive; it answers with `archive-built` / `archive-failed`. */
  | { type: 'request-archive' };

/**
 * An event's live state as kept in the shared store (cluster mode: Redis), enough for another node
 * to carry on where the last one stopped: lifecycle state with callers, timer deadlines, archive
 * progress. event-info.xml stays the durable source of truth for `info`.
 */
export interface StoredEvent {
  /** Bumped on every change; the store refuses a write older than what it holds. */
  rev: number;
  /** The node that wrote it. */
  owner: string;
  state: LifecycleState;
  /** When the "event over" timer fires (epoch ms), while `state.idleTimer`. */
  idleDeadlineMs?: number;
  /** When the wait for the streams to settle gives up (epoch ms), while ended. */
  settleDeadlineMs?: number;
  /** When the archive was requested (ISO), while archiving. */
  archiveRequestedAt?: string;
  /** ISO time of the write. */
  savedAt: string;
}

/** Statuses in which a node has something to do for the event (a timer, a wait, an archive). */
export const OPEN_STATUSES: ReadonlySet<EventStatus> = new Set<EventStatus>(['live', 'ended', 'archiving']);

/** A refused input: the state is unchanged and the message names the current state. */
export interface LifecycleRefusal {
  input: LifecycleInput['type'];
  status: EventStatus;
  message: string;
}

/** Outcome of one step; `refusal` is set when the input does not fit the current state. */
export interface StepResult {
  state: LifecycleState;
  effects: LifecycleEffect[];
  refusal?: LifecycleRefusal;
}

/** Statuses in which callers are refused (the call is over or never happens). */
export const JOIN_REFUSED: ReadonlySet<EventStatus> = new Set<EventStatus>(['cancelled', 'ended', 'archiving', 'archived', 'archive-error']);

/** Statuses in which `update` is accepted. */
const UPDATABLE: ReadonlySet<EventStatus> = new Set<EventStatus>(['reserved', 'live']);

/** A fresh lifecycle state for an event-info as stored (nobody connected, no timer). */
export function initialState(info: EventInfo): LifecycleState {
  return { info, callers: {}, idleTimer: false };
}

/** Number of callers currently in the conference. */
export function callerCount(state: LifecycleState): number {
  return Object.keys(state.callers).length;
}

/**
 * What to do for an event found in storage at start-up (memory was lost): a live event with nobody
 * known to be connected gets the idle timer (a voice server that still holds callers re-joins them
 * and cancels it); an ended one waits for its streams; an archiving one has its archive requested.
 */
export function recover(info: EventInfo): StepResult {
  const state = initialState(info);
  switch (info.status) {
    case 'live':
      return { state: { ...state, idleTimer: true }, effects: [{ type: 'start-idle-timer' }] };
    case 'ended':
      return { state, effects: [{ type: 'await-streams' }] };
    case 'archiving':
      return { state, effects: [{ type: 'request-archive' }] };
    default:
      return { state, effects: [] };
  }
}

function refuse(state: LifecycleState, input: LifecycleInput, why: string): StepResult {
  const status = state.info.status;
  return {
    state,
    effects: [],
    refusal: { input: input.type, status, message: `${why} [event:${state.info.eventId} status:${status}]` },
  };
}

function withInfo(state: LifecycleState, at: string, change: Partial<EventInfo>): LifecycleState {
  return { ...state, info: { ...state.info, ...change, updatedAt: at } };
}

function without<T>(record: Readonly<Record<string, T>>, key: string): Record<string, T> {
  const copy = { ...record };
  delete copy[key];
  return copy;
}

function withoutNodes(record: Readonly<Record<string, CallerRef>>, nodeIds: ReadonlySet<string>): Record<string, CallerRef> {
  const copy: Record<string, CallerRef> = {};
  for (const [channelId, c] of Object.entries(record)) if (!nodeIds.has(c.nodeId)) copy[channelId] = c;
  return copy;
}

function toEnded(state: LifecycleState, at: string, reason: EndReason): StepResult {
  const effects: LifecycleEffect[] = [];
  if (state.idleTimer) effects.push({ type: 'cancel-idle-timer' });
  // Callers are dropped here: every voice server hangs up on EVENTS.eventEnded, and their late
  // `leave` calls find nothing to remove.
  const next: LifecycleState = { ...withInfo(state, at, { status: 'ended', endedAt: at }), callers: {}, idleTimer: false };
  effects.push(
    { type: 'persist' },
    { type: 'broadcast-ended', reason },
    { type: 'broadcast-status', status: 'ended' },
    { type: 'await-streams' },
  );
  return { state: next, effects };
}

/** Applies one input to one event's state. Never throws; a misfit input comes back as `refusal`. */
export function step(state: LifecycleState, input: LifecycleInput): StepResult {
  const status = state.info.status;
  switch (input.type) {
    case 'join': {
      if (status !== 'reserved' && status !== 'live') return refuse(state, input, `event is ${status}, callers cannot join`);
      const callers = { ...state.callers, [input.channelId]: { nodeId: input.nodeId, port: input.port } };
      const effects: LifecycleEffect[] = [];
      if (state.idleTimer) effects.push({ type: 'cancel-idle-timer' });
      if (status === 'reserved') {
        const next = { ...withInfo(state, input.at, { status: 'live', liveAt: state.info.liveAt ?? input.at }), callers, idleTimer: false };
        effects.push({ type: 'persist' }, { type: 'broadcast-status', status: 'live' });
        return { state: next, effects };
      }
      return { state: { ...state, callers, idleTimer: false }, effects };
    }
    case 'leave': {
      // A leave for an unknown channel (already ended, or a duplicate hang-up) changes nothing.
      if (!(input.channelId in state.callers)) return { state, effects: [] };
      const callers = without(state.callers, input.channelId);
      if (status === 'live' && Object.keys(callers).length === 0 && !state.idleTimer) {
        return { state: { ...state, callers, idleTimer: true }, effects: [{ type: 'start-idle-timer' }] };
      }
      return { state: { ...state, callers }, effects: [] };
    }
    case 'end':
      if (status !== 'live') return refuse(state, input, `only a live event can be ended`);
      return toEnded(state, input.at, input.reason);
    case 'idle-timeout':
      // A timer that fired after a re-join or an explicit end is stale: nothing to do.
      if (status !== 'live' || callerCount(state) > 0) return { state, effects: [] };
      return toEnded({ ...state, idleTimer: false }, input.at, 'timeout');
    case 'cancel':
      if (status !== 'reserved') return refuse(state, input, `only a reserved event can be cancelled`);
      return { state: withInfo(state, input.at, { status: 'cancelled' }), effects: [{ type: 'persist' }, { type: 'broadcast-status', status: 'cancelled' }] };
    case 'streams-settled':
      if (status !== 'ended') return refuse(state, input, `streams can only settle on an ended event`);
      return {
        state: withInfo(state, input.at, { status: 'archiving' }),
        effects: [{ type: 'persist' }, { type: 'broadcast-status', status: 'archiving' }, { type: 'request-archive' }],
      };
    case 'archive-built': {
      // Archive work is idempotent per event ID (DESIGN.md "Archive leader election"): the first archive stays.
      if (status === 'archived') return { state, effects: [] };
      if (status !== 'archiving' && status !== 'archive-error') return refuse(state, input, `no archive is being built`);
      const next = withInfo(state, input.at, { status: 'archived', archive: input.archive.map((f) => ({ ...f })) });
      delete (next.info as Partial<EventInfo>).archiveError;
      return { state: next, effects: [{ type: 'persist' }, { type: 'broadcast-status', status: 'archived' }] };
    }
    case 'archive-failed':
      if (status !== 'archiving') return refuse(state, input, `no archive is being built`);
      return {
        state: withInfo(state, input.at, { status: 'archive-error', archiveError: input.error }),
        effects: [{ type: 'persist' }, { type: 'broadcast-status', status: 'archive-error' }],
      };
    case 'retry-archive':
      if (status !== 'archive-error') return refuse(state, input, `only an archive-error event can retry its archive`);
      return {
        state: withInfo(state, input.at, { status: 'archiving' }),
        effects: [{ type: 'persist' }, { type: 'broadcast-status', status: 'archiving' }, { type: 'request-archive' }],
      };
    case 'retention-ended': {
      // The event stays archived, without an archive (as content storage's event-info.xml has it).
      if (status !== 'archived') return refuse(state, input, `only an archived event's retention can end`);
      if (state.info.archive === undefined) return { state, effects: [] };
      const next = withInfo(state, input.at, {});
      delete (next.info as Partial<EventInfo>).archive;
      return { state: next, effects: [{ type: 'persist' }] };
    }
    case 'callers-gone': {
      const gone = new Set(input.nodeIds);
      if (!Object.values(state.callers).some((c) => gone.has(c.nodeId))) return { state, effects: [] };
      const callers = withoutNodes(state.callers, gone);
      if (status === 'live' && Object.keys(callers).length === 0 && !state.idleTimer) {
        return { state: { ...state, callers, idleTimer: true }, effects: [{ type: 'start-idle-timer' }] };
      }
      return { state: { ...state, callers }, effects: [] };
    }
    case 'resume': {
      // Like recover(), but from a state another node stored: callers on live nodes stay, and the
      // actor re-arms the timers from the stored deadlines.
      const gone = new Set(input.goneNodeIds);
      const next = Object.values(state.callers).some((c) => gone.has(c.nodeId)) ? { ...state, callers: withoutNodes(state.callers, gone) } : state;
      switch (status) {
        case 'live':
          if (callerCount(next) > 0) return { state: next.idleTimer ? { ...next, idleTimer: false } : next, effects: [] };
          return { state: next.idleTimer ? next : { ...next, idleTimer: true }, effects: [{ type: 'start-idle-timer' }] };
        case 'ended':
          return { state: next, effects: [{ type: 'await-streams' }] };
        case 'archiving':
          return { state: next, effects: [{ type: 'request-archive' }] };
        default:
          return { state: next, effects: [] };
      }
    }
    case 'update': {
      if (!UPDATABLE.has(status)) return refuse(state, input, `only a reserved or live event can be changed`);
      const change: Partial<EventInfo> = {};
      if (input.patch.title !== undefined) change.title = input.patch.title;
      if (input.patch.startsAt !== undefined) change.startsAt = input.patch.startsAt;
      if (input.patch.archiveDays !== undefined) change.archiveDays = input.patch.archiveDays;
      if (input.patch.hasPassword !== undefined) change.hasPassword = input.patch.hasPassword;
      return { state: withInfo(state, input.at, change), effects: [{ type: 'persist' }] };
    }
  }
}
