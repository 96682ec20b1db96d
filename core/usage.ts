/**
 * Usage counting (issue 5 item 4), pure: time comes in as milliseconds, nothing awaits.
 *
 * Listeners are counted from attendee access, not guessed. Each player session gets a listener ID
 * minted into the stream URLs of the master playlist it loaded (`…/index.m3u8?a=<code>&l=<id>`);
 * hls.js (and native players) keep the query on every media-playlist and segment request, and the
 * player page's auth-code refresh keeps it too (it only swaps `a`). A listener is present while
 * it asked for its stream within `presenceMs`; listening time is the media time of the segments
 * served (EXTINF seconds).
 *
 * Two halves:
 * - ListenerMeter sits on attendee access's hot path: a Set add and a few additions per request.
 *   Every flush it hands over a UsageDelta (listener IDs seen since the last flush and the sums)
 *   that the node broadcasts, so nothing else is paid per request.
 * - UsageLedger is what each `usage` actor keeps: every node's deltas (peak and distinct listeners
 *   across nodes, since one listener balanced over two gateways is one ID), and the calls the voice
 *   servers report (call seconds from each call's own start and end on the voice server's clock).
 */

/** A listener ID as minted by attendee access (base64url, 12 characters) or a player's own. */
export const LISTENER_ID_RE = /^[A-Za-z0-9_-]{8,32}$/;

/** Default presence window: a listener polls every segment (2 s); three misses in a row and more is gone. */
export const PRESENCE_MS = 10_000;

/** Listener IDs one event may hold per flush (meter) and in total (ledger); past this they count as requests only. */
export const MAX_LISTENERS_PER_EVENT = 250_000;

/** What one node's attendee access saw of one event since its last flush. */
export interface EventListenerDelta {
  eventId: string;
  /** Listener IDs that asked for a playlist or a segment. */
  seen: string[];
  /** Segment requests answered. */
  segments: number;
  /** Media-playlist requests answered. */
  playlists: number;
  /** Media seconds of the segments answered. */
  seconds: number;
}

/** One flush of a node's ListenerMeter (broadcast as EVENTS.usageListeners). */
export interface UsageDelta {
  nodeId: string;
  /** When the node flushed (its clock, ms): for logs; the receiver counts presence on its own clock. */
  atMs: number;
  events: EventListenerDelta[];
}

interface MeterEntry {
  seen: Set<string>;
  segments: number;
  playlists: number;
  seconds: number;
}

/** Node-local counters on the request path; `take()` empties them into a delta. */
export class ListenerMeter {
  readonly #events = new Map<string, MeterEntry>();
  readonly #maxIds: number;

  constructor(maxIdsPerEvent = MAX_LISTENERS_PER_EVENT) {
    this.#maxIds = maxIdsPerEvent;
  }

  /** A media playlist answered to `listenerId` (undefined: a request without a listener ID). */
  playlist(eventId: string, listenerId: string | undefined): void {
    const e = this.#entry(eventId, listenerId);
    e.playlists++;
  }

  /** A segment of `seconds` media time answered. */
  segment(eventId: string, listenerId: string | undefined, seconds: number): void {
    const e = this.#entry(eventId, listenerId);
    e.segments++;
    if (Number.isFinite(seconds) && seconds > 0) e.seconds += seconds;
  }

  /** Whether anything was counted since the last take. */
  get empty(): boolean {
    return this.#events.size === 0;
  }

  /** Everything counted since the last take, as a delta (undefined when nothing was), and starts over. */
  take(nodeId: string, atMs: number): UsageDelta | undefined {
    if (this.#events.size === 0) return undefined;
    const events: EventListenerDelta[] = [];
    for (const [eventId, e] of this.#events) {
      events.push({ eventId, seen: [...e.seen], segments: e.segments, playlists: e.playlists, seconds: roundMs(e.seconds) });
    }
    this.#events.clear();
    return { nodeId, atMs, events };
  }

  #entry(eventId: string, listenerId: string | undefined): MeterEntry {
    let e = this.#events.get(eventId);
    if (!e) {
      e = { seen: new Set(), segments: 0, playlists: 0, seconds: 0 };
      this.#events.set(eventId, e);
    }
    if (listenerId !== undefined && e.seen.size < this.#maxIds) e.seen.add(listenerId);
    return e;
  }
}

/** A call as the voice server reports it (EVENTS.callStarted / EVENTS.callEnded). */
export interface CallReport {
  eventId: string;
  /** The voice server's channel ID: unique per call. */
  channelId: string;
  nodeId: string;
  /** When the caller joined the event (voice server's clock, ms). */
  startedAtMs: number;
  /** When the call ended (same clock), on callEnded. */
  endedAtMs?: number;
}

/** Live usage of one event, as a ledger (or a stored row) knows it. Counters only grow. */
export interface UsageCounts {
  eventId: string;
  peakListeners: number;
  /** When the peak was first reached (ISO). */
  peakAt?: string;
  /** Distinct listener IDs seen. */
  totalListeners: number;
  listeningSeconds: number;
  segmentRequests: number;
  playlistRequests: number;
  /** Seconds of calls: ended calls plus the time so far of calls still connected. */
  callSeconds: number;
  /** Calls that joined the event. */
  calls: number;
  /** Listeners present now (0 in a stored row). */
  currentListeners: number;
  /** Calls connected now (0 in a stored row). */
  activeCalls: number;
}

interface LedgerEvent {
  present: Map<string, number>;
  distinct: Set<string>;
  /** Distinct listeners past MAX_LISTENERS_PER_EVENT: counted, not remembered (may double count). */
  overflow: number;
  peak: number;
  peakAtMs?: number;
  seconds: number;
  segments: number;
  playlists: number;
  endedCallSeconds: number;
  /** Channel IDs of calls counted (started or ended), so a repeated report counts once. */
  calls: Set<string>;
  ended: Set<string>;
  lastActivityMs: number;
}

/** Options of UsageLedger. */
export interface UsageLedgerOptions {
  /** A listener is present while it asked within this, ms. Default PRESENCE_MS. */
  presenceMs?: number;
  /** Distinct listener IDs remembered per event. Default MAX_LISTENERS_PER_EVENT. */
  maxListenersPerEvent?: number;
}

/** The cluster's usage as one `usage` actor hears it: listener deltas from every node, calls from every voice server. */
export class UsageLedger {
  readonly #events = new Map<string, LedgerEvent>();
  /** Calls connected now, by channel ID. */
  readonly #open = new Map<string, CallReport>();
  readonly #presenceMs: number;
  readonly #maxIds: number;
  /** Calls ever counted by this ledger (for the calls_total metric). */
  callsTotal = 0;

  constructor(opts: UsageLedgerOptions = {}) {
    this.#presenceMs = opts.presenceMs ?? PRESENCE_MS;
    this.#maxIds = opts.maxListenersPerEvent ?? MAX_LISTENERS_PER_EVENT;
  }

  /** Applies one node's delta received at `nowMs` (this ledger's clock). Malformed parts are skipped. */
  apply(delta: UsageDelta, nowMs: number): void {
    for (const d of delta?.events ?? []) {
      if (typeof d?.eventId !== 'string') continue;
      const e = this.#event(d.eventId, nowMs);
      for (const id of Array.isArray(d.seen) ? d.seen : []) {
        if (typeof id !== 'string' || !LISTENER_ID_RE.test(id)) continue;
        e.present.set(id, nowMs);
        if (!e.distinct.has(id)) {
          if (e.distinct.size < this.#maxIds) e.distinct.add(id);
          else e.overflow++;
        }
      }
      e.segments += count(d.segments);
      e.playlists += count(d.playlists);
      e.seconds += count(d.seconds);
      this.#samplePeak(e, nowMs);
    }
  }

  /** Drops listeners not heard from within the presence window and keeps each event's peak. */
  sample(nowMs: number): void {
    for (const e of this.#events.values()) this.#samplePeak(e, nowMs);
  }

  /** A caller joined an event; repeated reports of one call count once. */
  callStarted(c: CallReport, nowMs: number): void {
    if (!validCall(c)) return;
    const e = this.#event(c.eventId, nowMs);
    if (e.ended.has(c.channelId)) return;
    if (!e.calls.has(c.channelId)) {
      e.calls.add(c.channelId);
      this.callsTotal++;
    }
    this.#open.set(c.channelId, { eventId: c.eventId, channelId: c.channelId, nodeId: c.nodeId, startedAtMs: c.startedAtMs });
  }

  /** A call ended; its seconds are added once (a call only heard ending still counts). */
  callEnded(c: CallReport, nowMs: number): void {
    if (!validCall(c) || typeof c.endedAtMs !== 'number' || !Number.isFinite(c.endedAtMs)) return;
    const e = this.#event(c.eventId, nowMs);
    this.#open.delete(c.channelId);
    if (e.ended.has(c.channelId)) return;
    e.ended.add(c.channelId);
    if (!e.calls.has(c.channelId)) {
      e.calls.add(c.channelId);
      this.callsTotal++;
    }
    e.endedCallSeconds += Math.max(0, c.endedAtMs - c.startedAtMs) / 1000;
  }

  /**
   * Ends the open calls that match (their voice server is gone, or the event ended) at `atMs`:
   * no end will be reported for them. Returns how many.
   */
  closeCalls(match: (c: CallReport) => boolean, atMs: number): number {
    let n = 0;
    for (const c of [...this.#open.values()]) {
      if (!match(c)) continue;
      this.callEnded({ ...c, endedAtMs: Math.max(atMs, c.startedAtMs) }, atMs);
      n++;
    }
    return n;
  }

  /** Calls connected now, over all events. */
  get activeCalls(): number {
    return this.#open.size;
  }

  /** Listeners present now, over all events. */
  currentListeners(nowMs: number): number {
    let n = 0;
    for (const e of this.#events.values()) n += presentCount(e, nowMs, this.#presenceMs);
    return n;
  }

  /** The event's counts now, or undefined when nothing was heard of it. */
  counts(eventId: string, nowMs: number): UsageCounts | undefined {
    const e = this.#events.get(eventId);
    if (!e) return undefined;
    let openSeconds = 0;
    let active = 0;
    for (const c of this.#open.values()) {
      if (c.eventId !== eventId) continue;
      active++;
      openSeconds += Math.max(0, nowMs - c.startedAtMs) / 1000;
    }
    const current = presentCount(e, nowMs, this.#presenceMs);
    const peak = Math.max(e.peak, current);
    return {
      eventId,
      peakListeners: peak,
      ...(peak > 0 ? { peakAt: new Date(e.peak >= current ? (e.peakAtMs ?? nowMs) : nowMs).toISOString() } : {}),
      totalListeners: e.distinct.size + e.overflow,
      listeningSeconds: roundMs(e.seconds),
      segmentRequests: e.segments,
      playlistRequests: e.playlists,
      callSeconds: roundMs(e.endedCallSeconds + openSeconds),
      calls: e.calls.size,
      currentListeners: current,
      activeCalls: active,
    };
  }

  /** Events heard of. */
  eventIds(): string[] {
    return [...this.#events.keys()];
  }

  /** When anything was last heard of the event (ms), if it was. */
  lastActivity(eventId: string): number | undefined {
    return this.#events.get(eventId)?.lastActivityMs;
  }

  /** Forgets events with no open call and no activity since `beforeMs`; returns their IDs. */
  forgetIdle(beforeMs: number): string[] {
    const busy = new Set([...this.#open.values()].map((c) => c.eventId));
    const gone: string[] = [];
    for (const [id, e] of this.#events) {
      if (busy.has(id) || e.lastActivityMs >= beforeMs) continue;
      this.#events.delete(id);
      gone.push(id);
    }
    return gone;
  }

  #event(eventId: string, nowMs: number): LedgerEvent {
    let e = this.#events.get(eventId);
    if (!e) {
      e = { present: new Map(), distinct: new Set(), overflow: 0, peak: 0, seconds: 0, segments: 0, playlists: 0, endedCallSeconds: 0, calls: new Set(), ended: new Set(), lastActivityMs: nowMs };
      this.#events.set(eventId, e);
    }
    e.lastActivityMs = Math.max(e.lastActivityMs, nowMs);
    return e;
  }

  #samplePeak(e: LedgerEvent, nowMs: number): void {
    for (const [id, at] of e.present) if (nowMs - at > this.#presenceMs) e.present.delete(id);
    if (e.present.size > e.peak) {
      e.peak = e.present.size;
      e.peakAtMs = nowMs;
    }
  }
}

function presentCount(e: LedgerEvent, nowMs: number, presenceMs: number): number {
  let n = 0;
  for (const at of e.present.values()) if (nowMs - at <= presenceMs) n++;
  return n;
}

function validCall(c: CallReport | undefined): c is CallReport {
  return !!c && typeof c.eventId === 'string' && typeof c.channelId === 'string' && c.channelId.length > 0 && typeof c.nodeId === 'string' && typeof c.startedAtMs === 'number' && Number.isFinite(c.startedAtMs);
}

function count(x: unknown): number {
  return typeof x === 'number' && Number.isFinite(x) && x > 0 ? x : 0;
}

function roundMs(s: number): number {
  return Math.round(s * 1000) / 1000;
}

/**
 * Two views of one event's counters (live ledger, stored row) merged: counters only grow, so each
 * is the larger of the two; the peak time follows the larger peak. Either may be missing.
 */
export function mergeCounts(a: UsageCounts | undefined, b: UsageCounts | undefined): UsageCounts | undefined {
  if (!a) return b && { ...b };
  if (!b) return { ...a };
  const peakFrom = b.peakListeners > a.peakListeners ? b : a;
  return {
    eventId: a.eventId,
    peakListeners: peakFrom.peakListeners,
    ...(peakFrom.peakAt ? { peakAt: peakFrom.peakAt } : {}),
    totalListeners: Math.max(a.totalListeners, b.totalListeners),
    listeningSeconds: Math.max(a.listeningSeconds, b.listeningSeconds),
    segmentRequests: Math.max(a.segmentRequests, b.segmentRequests),
    playlistRequests: Math.max(a.playlistRequests, b.playlistRequests),
    callSeconds: Math.max(a.callSeconds, b.callSeconds),
    calls: Math.max(a.calls, b.calls),
    currentListeners: Math.max(a.currentListeners, b.currentListeners),
    activeCalls: Math.max(a.activeCalls, b.activeCalls),
  };
}

/** A stream as the report needs it: monitoring's history record. */
export interface StreamUsage {
  startedAt: string;
  endedAt?: string;
  lastSeenAt?: string;
  durationS?: number;
}

/** Seconds a stream ran: what the encoder wrote, else from its start to its end (or last push), else up to now. */
export function streamSeconds(s: StreamUsage, nowMs: number): number {
  if (typeof s.durationS === 'number' && Number.isFinite(s.durationS) && s.durationS >= 0) return s.durationS;
  const start = Date.parse(s.startedAt);
  const end = Date.parse(s.endedAt ?? s.lastSeenAt ?? '') || nowMs;
  return Number.isFinite(start) ? Math.max(0, (end - start) / 1000) : 0;
}

/** `GET /api/events/:eventId/report`. */
export interface UsageReport {
  eventId: string;
  status?: string;
  title?: string;
  listeners: { peak: number; peakAt?: string; total: number; current: number };
  listeningMinutes: number;
  callMinutes: number;
  calls: { total: number; active: number };
  streams: { total: number; live: number; minutes: number };
  fragments: number;
  requests: { segments: number; playlists: number };
  /** True once the event is archived, failed to archive or was cancelled: nothing will change. */
  final: boolean;
  /** Where the figures came from: `live` (the usage actor's counters), `db` (the stored row). */
  sources: Array<'live' | 'db'>;
  /** Set when the reporting DB could not be read: the figures are the live counters alone. */
  dbError?: string;
  generatedAt: string;
}

/** What the report is built from. */
export interface ReportInputs {
  eventId: string;
  live?: UsageCounts;
  stored?: UsageCounts;
  status?: string;
  title?: string;
  streams: StreamUsage[];
  liveStreams: number;
  fragments: number;
  dbError?: string;
  nowMs: number;
}

/** Statuses after which an event's usage no longer changes. */
export const FINAL_STATUSES: readonly string[] = ['archived', 'archive-error', 'cancelled'];

/** Builds the report from the live counters, the stored row and what monitoring and the event know. */
export function buildReport(i: ReportInputs): UsageReport {
  const c = mergeCounts(i.live, i.stored);
  const minutes = (s: number) => Math.round((s / 60) * 100) / 100;
  const streamS = i.streams.reduce((sum, s) => sum + streamSeconds(s, i.nowMs), 0);
  return {
    eventId: i.eventId,
    ...(i.status ? { status: i.status } : {}),
    ...(i.title ? { title: i.title } : {}),
    listeners: { peak: c?.peakListeners ?? 0, ...(c?.peakAt ? { peakAt: c.peakAt } : {}), total: c?.totalListeners ?? 0, current: i.live?.currentListeners ?? 0 },
    listeningMinutes: minutes(c?.listeningSeconds ?? 0),
    callMinutes: minutes(c?.callSeconds ?? 0),
    calls: { total: c?.calls ?? 0, active: i.live?.activeCalls ?? 0 },
    streams: { total: i.streams.length, live: i.liveStreams, minutes: minutes(streamS) },
    fragments: i.fragments,
    requests: { segments: c?.segmentRequests ?? 0, playlists: c?.playlistRequests ?? 0 },
    final: i.status !== undefined && FINAL_STATUSES.includes(i.status),
    sources: [...(i.live ? (['live'] as const) : []), ...(i.stored ? (['db'] as const) : [])],
    ...(i.dbError ? { dbError: i.dbError } : {}),
    generatedAt: new Date(i.nowMs).toISOString(),
  };
}
