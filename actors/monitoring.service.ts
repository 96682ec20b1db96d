/**
 * `monitoring` actor (DESIGN.md "monitoring data"): takes the StreamDataset every encoder pushes each
 * heartbeat and the StreamRecord it sends on stop; answers which streams are alive and what an event
 * recorded. A stream not pushed for `config.heartbeatTimeoutS` is gone (attendee access then answers
 * 404 for it, so players fail over at once: FIELD-NOTES "hls.js").
 *
 * Embedded mode keeps the tables in process. Cluster mode (`config.redisUrl`) keeps them in Redis,
 * shared by the monitoring actors of every node (runtime/redis-stream-table.ts): a monitoring node
 * that starts late or restarts answers at once, and the stream history outlives it.
 */
import type { Context, ServiceSchema } from 'moleculer';
import type { JitcastConfig } from '../cluster.config.ts';
import { isValidEventId, isValidStreamId } from '../codecs/ids.ts';
import { EVENTS, type StreamDataset, type StreamRecord } from '../runtime/contracts.ts';
import { ValidationFailedError } from '../runtime/errors.ts';
import { MemoryStreamTable, type StreamTable } from '../core/stream-table.ts';
import { createRedis, type RedisConnection } from '../runtime/redis.ts';
import { RedisStreamTable } from '../runtime/redis-stream-table.ts';

/** What the monitoring actor can be handed instead of its defaults (specs hand it fakes). */
export interface MonitoringDeps {
  /** Default: a RedisStreamTable when `config.redisUrl` is set, else a MemoryStreamTable. */
  table?: StreamTable;
  now?: () => number;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function ctxOf(d: { eventId: string; streamId: string; nodeId: string }): string {
  return `event:${d.eventId} stream:${d.streamId} node:${d.nodeId}`;
}

function looksLikeStream(d: unknown): d is { eventId: string; streamId: string; nodeId: string } {
  const s = d as Partial<StreamDataset> | undefined;
  return !!s && isValidEventId(s.eventId) && isValidStreamId(s.streamId) && s.streamId.startsWith(s.eventId + '-') && typeof s.nodeId === 'string';
}

/** The monitoring service: active-stream table and stream history. */
export function createMonitoringService(config: JitcastConfig, deps: MonitoringDeps = {}): ServiceSchema {
  const timeoutMs = config.heartbeatTimeoutS * 1000;
  const now = deps.now ?? Date.now;
  let table: StreamTable = deps.table ?? new MemoryStreamTable(timeoutMs);
  let redis: RedisConnection | undefined;
  let sweep: NodeJS.Timeout | undefined;

  return {
    name: 'monitoring',
    events: {
      [EVENTS.streamDataset]: {
        async handler(ctx: Context<StreamDataset>) {
          const d = ctx.params;
          if (!looksLikeStream(d)) {
            this.logger.warn(`stream dataset ignored: malformed [stream:${String((d as Partial<StreamDataset>)?.streamId)}]`);
            return;
          }
          const outcome = await table.push(d, now());
          if (outcome === 'up') this.logger.info(`stream up [${ctxOf(d)} port:${d.port} dc:${d.dataCenter}]`);
        },
      },
      [EVENTS.streamStopped]: {
        async handler(ctx: Context<StreamRecord>) {
          const r = ctx.params;
          if (!looksLikeStream(r)) {
            this.logger.warn(`stream stop ignored: malformed [stream:${String((r as Partial<StreamRecord>)?.streamId)}]`);
            return;
          }
          await table.stop(r);
          this.logger.info(`stream down [${ctxOf(r)} reason:stopped durationS:${r.durationS ?? '?'} stored:${r.stored === true}]`);
        },
      },
    },
    actions: {
      activeStreams: {
        handler(ctx: Context<{ eventId?: string }>): Promise<StreamDataset[]> {
          const eventId = ctx.params?.eventId;
          if (eventId !== undefined && !isValidEventId(eventId)) throw new ValidationFailedError(`invalid event ID ${JSON.stringify(eventId)}`, { eventId: 'must be 8 digits with a valid check digit' });
          return table.active(now(), eventId);
        },
      },
      history: {
        handler(ctx: Context<{ eventId: string }>): Promise<StreamRecord[]> {
          const eventId = ctx.params?.eventId;
          if (!isValidEventId(eventId)) throw new ValidationFailedError(`invalid event ID ${JSON.stringify(eventId)}`, { eventId: 'must be 8 digits with a valid check digit' });
          return table.history(eventId);
        },
      },
      isAlive: {
        handler(ctx: Context<{ streamId: string }>): Promise<boolean> {
          const streamId = ctx.params?.streamId;
          if (!isValidStreamId(streamId)) throw new ValidationFailedError(`invalid stream ID ${JSON.stringify(streamId)}`, { streamId: 'must be a stream ID' });
          return table.isAlive(streamId, now());
        },
      },
    },
    created() {
      if (deps.table || !config.redisUrl) return;
      const logger = this.logger;
      redis = createRedis({ url: config.redisUrl, namespace: config.namespace, name: 'monitoring', logger });
      const shared = new RedisStreamTable(redis, timeoutMs, logger);
      table = shared;
      // Datasets come back with the next pushes; the history this node kept meanwhile is written back.
      redis.onReady(() => {
        shared
          .resync()
          .then((n) => n > 0 && logger.info(`stream history resynced to redis [records:${n}]`))
          .catch((err) => logger.warn(`stream history resync failed [${message(err)}]`));
      });
    },
    started() {
      redis?.connect();
      // Queries filter by age on their own; the sweep only frees memory and logs the drop.
      sweep = setInterval(() => {
        table
          .expire(now())
          .then((gone) => {
            for (const d of gone) this.logger.warn(`stream down [${ctxOf(d)} reason:heartbeat-timeout]`);
          })
          .catch((err) => this.logger.warn(`stream sweep failed [${message(err)}]`));
      }, config.heartbeatS * 1000);
      sweep.unref();
    },
    async stopped() {
      if (sweep) clearInterval(sweep);
      sweep = undefined;
      await redis?.close();
      redis = undefined;
    },
  };
}
