/**
 * `usage` actor (issue 5 item 4): usage reports per event — listeners (peak concurrent, total
 * distinct), listening minutes, call minutes, streams and fragments — kept live and stored in the
 * reporting DB (table `event_usage`, migration 3).
 *
 * It runs beside `monitoring` (runtime/node.ts starts it with that role: usage is monitoring data).
 * Every node's attendee access broadcasts what it served each second (EVENTS.usageListeners, a
 * core/usage.ts UsageDelta) and every voice server broadcasts each call's start and end
 * (EVENTS.callStarted / callEnded); so every usage actor holds the whole cluster's counts in memory
 * (core/usage.ts UsageLedger), and `usage.report` on any of them answers alike.
 *
 * Stored: the lowest node running `usage` writes each event's row every `refreshMs` while it has
 * activity, and again when the event ends and when it is archived (EVENTS.eventStatus). The row is
 * an upsert that keeps the larger of each counter (runtime/usage-db.ts), so an actor that restarted
 * with fewer live counts never lowers it, and the report merges the live counts with the row the same
 * way. With the DB down the report answers from the live counters and says so (`dbError`).
 */
import type { Context, ServiceBroker, ServiceSchema } from 'moleculer';
import type { JitcastConfig } from '../cluster.config.ts';
import { isValidEventId } from '../codecs/ids.ts';
import { FINAL_STATUSES, UsageLedger, buildReport, streamSeconds, type CallReport, type StreamUsage, type UsageDelta, type UsageReport } from '../core/usage.ts';
import { EVENTS, type EventView, type StreamRecord } from '../runtime/contracts.ts';
import { openDb } from '../runtime/db.ts';
import { ValidationFailedError, errorMessage } from '../runtime/errors.ts';
import { UsageWriter, countsOfRow, type UsageRow } from '../runtime/usage-db.ts';

/** How often a live event's row is refreshed in the DB. Default 30 s. */
export const USAGE_REFRESH_MS = 30_000;
/** An event quiet this long (no listener, no call) is forgotten from memory; its row stays. */
const FORGET_AFTER_MS = 6 * 3600_000;
/** After an event ends, calls not reported ended by then (their voice server went quiet) are closed. */
const END_GRACE_MS = 5_000;

/** The narrow side of the DB writer the actor needs (specs hand it fakes). */
export interface UsageStore {
  enqueue(row: UsageRow): void;
  read(eventId: string): Promise<UsageRow | undefined>;
  depth(): number;
  close(): Promise<void>;
  /** Opens the DB ahead of the first write. */
  warmUp?(): Promise<void>;
}

/** What the usage actor can be handed instead of its defaults. */
export interface UsageServiceDeps {
  /** Default: a UsageWriter over `openDb(config)`. */
  store?: (logger: ServiceBroker['logger']) => UsageStore;
  /** Clock, ms. Default Date.now. */
  now?: () => number;
  /** Default USAGE_REFRESH_MS. */
  refreshMs?: number;
  /** Presence window of a listener, ms. Default core/usage.ts PRESENCE_MS. */
  presenceMs?: number;
}

/** `usage.stats`: the cluster's usage right now, for /metrics. */
export interface UsageStats {
  listeners: number;
  callsActive: number;
  callsTotal: number;
  /** Usage rows waiting for the DB on this node. */
  dbQueueDepth: number;
}


/** Creates the `usage` actor. */
export function createUsageService(config: JitcastConfig, deps: UsageServiceDeps = {}): ServiceSchema {
  const now = deps.now ?? Date.now;
  const refreshMs = deps.refreshMs ?? USAGE_REFRESH_MS;
  const ledger = new UsageLedger({ presenceMs: deps.presenceMs });
  let store: UsageStore | undefined;
  let sampler: NodeJS.Timeout | undefined;
  let refresher: NodeJS.Timeout | undefined;
  const endTimers = new Set<NodeJS.Timeout>();
  /** When each event's row was last queued (ms), and the event's last activity then. */
  const persisted = new Map<string, { at: number; activity: number }>();
  /** Final statuses seen, so a late refresh still writes the event's final status. */
  const statuses = new Map<string, string>();

  /** Streams (from monitoring's history) and the event (status, fragments); either may be missing. */
  async function facts(broker: ServiceBroker, eventId: string, view?: EventView): Promise<{ view?: EventView; streams: StreamRecord[] }> {
    const running = new Set((broker.registry.getServiceList({ onlyAvailable: true, withActions: false }) as Array<{ name: string }>).map((s) => s.name));
    const [v, streams] = await Promise.all([
      view ?? (running.has('event') ? broker.call<EventView, { eventId: string }>('event.get', { eventId }, { timeout: 2000 }).catch(() => undefined) : undefined),
      running.has('monitoring') ? broker.call<StreamRecord[], { eventId: string }>('monitoring.history', { eventId }, { timeout: 2000 }).catch(() => [] as StreamRecord[]) : [],
    ]);
    return { ...(v ? { view: v } : {}), streams: Array.isArray(streams) ? streams : [] };
  }

  return {
    name: 'usage',

    events: {
      [EVENTS.usageListeners]: {
        handler(ctx: Context<UsageDelta>) {
          ledger.apply(ctx.params, now());
        },
      },
      [EVENTS.callStarted]: {
        handler(ctx: Context<CallReport>) {
          ledger.callStarted(ctx.params, now());
        },
      },
      [EVENTS.callEnded]: {
        handler(ctx: Context<CallReport>) {
          ledger.callEnded(ctx.params, now());
        },
      },
      [EVENTS.eventEnded]: {
        handler(ctx: Context<{ eventId?: string }>) {
          const eventId = ctx.params?.eventId;
          if (!isValidEventId(eventId)) return;
          // The voice servers hang up and report each call's end; any they never report ends here.
          const t = setTimeout(() => {
            endTimers.delete(t);
            const at = now() - END_GRACE_MS;
            const n = ledger.closeCalls((c) => c.eventId === eventId, at);
            if (n > 0) this.logger.info(`calls closed with their event, no end was reported [event:${eventId} calls:${n}]`);
          }, END_GRACE_MS);
          t.unref();
          endTimers.add(t);
        },
      },
      [EVENTS.eventStatus]: {
        handler(ctx: Context<{ eventId?: string; status?: string }>) {
          const { eventId, status } = ctx.params ?? {};
          if (!isValidEventId(eventId) || typeof status !== 'string') return;
          if (status === 'ended' || FINAL_STATUSES.includes(status)) {
            statuses.set(eventId, status);
            void this.persist(eventId, status);
          }
        },
      },
      '$node.disconnected': {
        handler(ctx: Context<{ node: { id: string } }>) {
          const id = ctx.params?.node?.id;
          const n = ledger.closeCalls((c) => c.nodeId === id, now());
          if (n > 0) this.logger.info(`calls closed, their voice server left the cluster [node:${id} calls:${n}]`);
        },
      },
    },

    actions: {
      /** One event's usage report; the event must be visible to the caller (`reservation.get`). */
      report: {
        async handler(ctx: Context<{ eventId?: unknown }>): Promise<UsageReport> {
          const eventId = ctx.params?.eventId;
          if (!isValidEventId(eventId)) {
            throw new ValidationFailedError(`invalid event ID ${JSON.stringify(eventId ?? null)}`, { eventId: 'must be 8 digits ending in a valid check digit' });
          }
          // Through reservation.get with the caller's meta: a 404 for an unknown event, and whatever
          // access rule the API applies to the event applies to its report too.
          const view = await ctx.call<EventView, { eventId: string }>('reservation.get', { eventId });
          const [{ streams }, stored] = await Promise.all([
            facts(this.broker, eventId, view),
            (store ? store.read(eventId) : Promise.reject(new Error('usage store not open'))).then(
              (row) => ({ row, error: undefined as string | undefined }),
              (err: unknown) => ({ row: undefined, error: errorMessage(err) }),
            ),
          ]);
          if (stored.error) this.logger.warn(`usage report from live counters only: reporting DB unreadable [event:${eventId}] ${stored.error}`);
          const t = now();
          return buildReport({
            eventId,
            live: ledger.counts(eventId, t),
            stored: stored.row ? countsOfRow(stored.row) : undefined,
            status: view?.status,
            title: view?.title,
            streams: streams as StreamUsage[],
            liveStreams: Array.isArray(view?.streams) ? view.streams.length : 0,
            fragments: Math.max(Array.isArray(view?.archive) ? view.archive.length : 0, stored.row?.fragments ?? 0),
            ...(stored.error ? { dbError: stored.error } : {}),
            nowMs: t,
          });
        },
      },

      /** The cluster's usage right now (for /metrics). */
      stats: {
        handler(): UsageStats {
          const t = now();
          return { listeners: ledger.currentListeners(t), callsActive: ledger.activeCalls, callsTotal: ledger.callsTotal, dbQueueDepth: store?.depth() ?? 0 };
        },
      },
    },

    methods: {
      /** Whether this node writes the rows: the lowest node ID running `usage`. */
      isWriter(): boolean {
        const list = this.broker.registry.getServiceList({ onlyAvailable: true, withActions: false }) as Array<{ name: string; nodeID: string }>;
        const ids = list.filter((s) => s.name === 'usage').map((s) => s.nodeID).sort();
        return ids.length === 0 || ids[0] === this.broker.nodeID;
      },

      /** Queues the event's row (writer node only); never throws. */
      async persist(eventId: string, status?: string): Promise<void> {
        if (!store || !this.isWriter()) return;
        try {
          const { view, streams } = await facts(this.broker, eventId);
          const t = now();
          const counts = ledger.counts(eventId, t);
          const st = view?.status ?? status ?? statuses.get(eventId);
          const row: UsageRow = {
            eventId,
            peakListeners: counts?.peakListeners ?? 0,
            ...(counts?.peakAt ? { peakAt: counts.peakAt } : {}),
            totalListeners: counts?.totalListeners ?? 0,
            listeningSeconds: counts?.listeningSeconds ?? 0,
            segmentRequests: counts?.segmentRequests ?? 0,
            playlistRequests: counts?.playlistRequests ?? 0,
            callSeconds: counts?.callSeconds ?? 0,
            calls: counts?.calls ?? 0,
            streams: streams.length,
            streamSeconds: Math.round(streams.reduce((s, r) => s + streamSeconds(r, t), 0) * 1000) / 1000,
            fragments: Array.isArray(view?.archive) ? view.archive.length : 0,
            ...(st ? { status: st } : {}),
            final: st !== undefined && FINAL_STATUSES.includes(st),
            updatedAt: new Date(t).toISOString(),
          };
          persisted.set(eventId, { at: t, activity: ledger.lastActivity(eventId) ?? t });
          store.enqueue(row);
        } catch (err) {
          this.logger.warn(`usage row not queued [event:${eventId}] ${errorMessage(err)}`);
        }
      },

      /** Refreshes the rows of events with activity (or a call connected) since their last write. */
      refresh() {
        const t = now();
        for (const eventId of ledger.eventIds()) {
          const last = persisted.get(eventId);
          const activity = ledger.lastActivity(eventId) ?? 0;
          const calling = (ledger.counts(eventId, t)?.activeCalls ?? 0) > 0;
          if (!last || activity > last.activity || calling) void this.persist(eventId);
        }
        for (const id of ledger.forgetIdle(t - FORGET_AFTER_MS)) {
          persisted.delete(id);
          statuses.delete(id);
        }
      },
    },

    created() {
      store = deps.store ? deps.store(this.logger) : new UsageWriter(() => openDb(config, this.logger), this.logger);
    },

    started() {
      // Embedded PGlite: opened now (shared with the event actor's writer), not in the middle of a live event.
      if (!config.dbUrl) void store?.warmUp?.();
      sampler = setInterval(() => ledger.sample(now()), 1000);
      sampler.unref();
      refresher = setInterval(() => this.refresh(), refreshMs);
      refresher.unref();
    },

    async stopped() {
      clearInterval(sampler);
      clearInterval(refresher);
      for (const t of endTimers) clearTimeout(t);
      endTimers.clear();
      // What the last refresh missed, while the DB may still take it.
      if (this.isWriter()) for (const eventId of ledger.eventIds()) await this.persist(eventId);
      await store?.close();
      store = undefined;
    },
  };
}
