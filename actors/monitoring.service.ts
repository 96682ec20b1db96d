/**
 * `monitoring` actor (DESIGN.md "monitoring data"): takes the StreamDataset every encoder pushes each
 * heartbeat and the StreamRecord it sends on stop; answers which streams are alive and what an event
 * recorded. A stream not pushed for `config.heartbeatTimeoutS` is gone (attendee access then answers
 * 404 for it, so players fail over at once: FIELD-NOTES "hls.js").
 *
 * Embedded mode keeps the tables in process. Cluster mode (`config.redisUrl`) keeps them in Redis,
 * shared by the monitoring actors of every node (runtime/redis-stream-table.ts): a monitoring node
 * that starts late or restarts answers at once, and the stream history outlives it.
 *
 * Asset health (issue 3 item 6): one monitoring actor in the cluster (core/health.ts
 * `isHealthTester`) tests every voice server it hears of with a synthetic SIP call
 * (runtime/sip/probe.ts) and every encoder with `encoder-port.selfTest` (RTP in, a segment out),
 * every `config.healthTestIntervalS`. Each verdict is broadcast as `EVENTS.assetHealth`: the
 * front doors stop routing to a failed voice server and voice servers stop binding streams to a
 * failed encoder, until a test passes again. Every monitoring actor keeps the verdicts it hears,
 * so any of them answers `monitoring.health`.
 */
import type { Context, ServiceSchema } from 'moleculer';
import type { JitcastConfig } from '../cluster.config.ts';
import { isValidEventId, isValidStreamId } from '../codecs/ids.ts';
import { EVENTS, type AssetHealth, type EncoderSelfTestResult, type EncoderStatus, type StreamDataset, type StreamRecord, type VoiceStatus } from '../runtime/contracts.ts';
import { HealthBook, isHealthTester, type AssetKind, type HealthRecord, type TestVerdict } from '../core/health.ts';
import { syntheticCall } from '../runtime/sip/probe.ts';
import { ValidationFailedError, errorMessage } from '../runtime/errors.ts';
import { MemoryStreamTable, type StreamTable } from '../core/stream-table.ts';
import { createRedis, type RedisConnection } from '../runtime/redis.ts';
import { RedisStreamTable } from '../runtime/redis-stream-table.ts';

/** What the monitoring actor can be handed instead of its defaults (specs hand it fakes). */
export interface MonitoringDeps {
  /** Default: a RedisStreamTable when `config.redisUrl` is set, else a MemoryStreamTable. */
  table?: StreamTable;
  now?: () => number;
  /** Default: a synthetic SIP call (runtime/sip/probe.ts). */
  probeVoiceServer?: (sip: { host: string; port: number }) => Promise<{ outcome: 'pass' | 'refused' | 'fail'; reason?: string; totalMs: number }>;
}

/** One asset as `monitoring.health` shows it. */
export interface AssetHealthView extends Omit<HealthRecord, 'since' | 'lastTestAt'> {
  since: string;
  lastTestAt: string;
}

/** `monitoring.health` reply: the pools as the health tests see them. */
export interface HealthView {
  /** The monitoring node that runs the tests now. */
  tester?: string;
  intervalS: number;
  assets: AssetHealthView[];
}

/** A synthetic call must be done within this (ms): setup and 200 ms of audio take well under a second. */
const VOICE_TEST_TIMEOUT_MS = 8000;
/** Longest wait for an encoder's self-test answer (ms); the test itself gives up after max(10 s, 4 segments). */
const ENCODER_TEST_TIMEOUT_MS = 30_000;


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
  let healthTimer: NodeJS.Timeout | undefined;
  let firstRound: NodeJS.Timeout | undefined;
  const book = new HealthBook();
  /** Voice servers and encoders heard of (node ID → last status and when). */
  const voiceServers = new Map<string, { status: VoiceStatus; heardAt: number }>();
  const encoders = new Map<string, { status: EncoderStatus; heardAt: number }>();
  /** Assets under test now (`asset:node`), so a slow test is never run twice at once. */
  const testing = new Set<string>();
  const probe = deps.probeVoiceServer ?? ((sip: { host: string; port: number }) => syntheticCall({ target: sip, localHost: config.sipHost, timeoutMs: VOICE_TEST_TIMEOUT_MS }));

  return {
    name: 'monitoring',
    events: {
      [EVENTS.voiceStatus]: {
        handler(ctx: Context<VoiceStatus>) {
          const s = ctx.params;
          if (typeof s?.nodeId === 'string' && typeof s.sip?.host === 'string' && typeof s.sip.port === 'number') voiceServers.set(s.nodeId, { status: s, heardAt: now() });
        },
      },
      [EVENTS.encoderStatus]: {
        handler(ctx: Context<EncoderStatus>) {
          const s = ctx.params;
          if (typeof s?.nodeId === 'string') encoders.set(s.nodeId, { status: s, heardAt: now() });
        },
      },
      [EVENTS.assetHealth]: {
        handler(ctx: Context<AssetHealth>) {
          const h = ctx.params;
          if (h?.testedBy === config.nodeId || (h?.asset !== 'voice-server' && h?.asset !== 'encoder-port') || typeof h.nodeId !== 'string') return;
          // Another node's tester: keep its verdicts so this node answers monitoring.health too.
          const { record } = book.apply({ asset: h.asset, nodeId: h.nodeId, outcome: h.outcome, at: Date.parse(h.testedAt) || now(), ms: h.ms, ...(h.reason ? { reason: h.reason } : {}) });
          if (record.healthy !== h.healthy) book.adopt({ ...record, healthy: h.healthy });
        },
      },
      '$node.disconnected': {
        handler(ctx: Context<{ node: { id: string } }>) {
          const id = ctx.params.node.id;
          voiceServers.delete(id);
          encoders.delete(id);
          if (book.forget(id) > 0) this.logger.info(`assets of a node that left are out of the pools [node:${id}]`);
        },
      },
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
      /** The pools as the health tests see them: every voice server and encoder with its last verdict. */
      health: {
        handler(): HealthView {
          return {
            tester: this.healthTester(),
            intervalS: config.healthTestIntervalS,
            assets: book.list().map((r) => ({ ...r, since: new Date(r.since).toISOString(), lastTestAt: new Date(r.lastTestAt).toISOString() })),
          };
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
    methods: {
      /** The node whose monitoring runs the health tests: the lowest node ID running monitoring. */
      healthTester(): string | undefined {
        const list = this.broker.registry.getServiceList({ onlyAvailable: true, withActions: false }) as Array<{ name: string; nodeID: string }>;
        const ids = [...new Set(list.filter((s) => s.name === 'monitoring').map((s) => s.nodeID))].sort();
        return ids[0];
      },

      /** One round: test every asset heard within the heartbeat timeout that is not under test already. */
      healthRound() {
        const list = this.broker.registry.getServiceList({ onlyAvailable: true, withActions: false }) as Array<{ name: string; nodeID: string }>;
        if (!isHealthTester(config.nodeId, list.filter((s) => s.name === 'monitoring').map((s) => s.nodeID))) return;
        const t = now();
        for (const [id, v] of voiceServers) {
          if (t - v.heardAt > timeoutMs) voiceServers.delete(id);
          else void this.testAsset('voice-server', id);
        }
        for (const [id, e] of encoders) {
          if (t - e.heardAt > timeoutMs) encoders.delete(id);
          else void this.testAsset('encoder-port', id);
        }
      },

      /** Tests one asset, records the verdict, logs a pool change and broadcasts the verdict. */
      async testAsset(asset: AssetKind, nodeId: string) {
        const key = `${asset}:${nodeId}`;
        if (testing.has(key)) return;
        testing.add(key);
        const started = now();
        let verdict: Omit<TestVerdict, 'at' | 'ms'> & { ms?: number };
        try {
          if (asset === 'voice-server') {
            const v = voiceServers.get(nodeId);
            if (!v) return;
            const { available, suspendBelow } = v.status.ports;
            if (v.status.state !== 'in-service') {
              verdict = { asset, nodeId, outcome: 'skipped', reason: `not tested while ${v.status.state}` };
            } else if (available - 1 < Math.max(1, suspendBelow)) {
              // The synthetic call takes a port: it must never be what suspends a server or takes its last port.
              verdict = { asset, nodeId, outcome: 'skipped', reason: `not tested with ${available} free ports (suspends below ${suspendBelow})` };
            } else {
              const r = await probe(v.status.sip);
              verdict = { asset, nodeId, outcome: r.outcome === 'refused' ? 'skipped' : r.outcome, ms: r.totalMs, ...(r.reason ? { reason: r.reason } : {}) };
            }
          } else {
            const r = await this.broker.call<EncoderSelfTestResult, object>('encoder-port.selfTest', {}, { nodeID: nodeId, timeout: ENCODER_TEST_TIMEOUT_MS });
            verdict = { asset, nodeId, outcome: r.skipped ? 'skipped' : r.ok ? 'pass' : 'fail', ms: r.ms, ...(r.reason ? { reason: r.reason } : {}) };
          }
        } catch (err) {
          verdict = { asset, nodeId, outcome: 'fail', reason: `test did not complete: ${errorMessage(err)}` };
        } finally {
          testing.delete(key);
        }
        const at = now();
        const { record, change } = book.apply({ ...verdict, at, ms: verdict.ms ?? at - started });
        const ctx = `[asset:${asset} node:${nodeId} ms:${record.lastMs}]${record.reason ? ` ${record.reason}` : ''}`;
        if (change === 'evicted') this.logger.warn(`health test failed: evicted from the pool ${ctx}`);
        else if (change === 'readmitted') this.logger.info(`health test passed: back in the pool ${ctx}`);
        else if (record.lastOutcome === 'fail') this.logger.warn(`health test failed again: stays out of the pool ${ctx}`);
        else this.logger.debug(`health test ${record.lastOutcome} ${ctx}`);
        const msg: AssetHealth = {
          asset,
          nodeId,
          healthy: record.healthy,
          outcome: record.lastOutcome,
          ms: record.lastMs,
          testedAt: new Date(at).toISOString(),
          testedBy: config.nodeId,
          ...(change ? { change } : {}),
          ...(record.reason ? { reason: record.reason } : {}),
        };
        await this.broker.broadcast(EVENTS.assetHealth, msg).catch((err: Error) => this.logger.warn(`health verdict not broadcast [asset:${asset} node:${nodeId}] ${err.message}`));
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
          .catch((err) => logger.warn(`stream history resync failed [${errorMessage(err)}]`));
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
          .catch((err) => this.logger.warn(`stream sweep failed [${errorMessage(err)}]`));
      }, config.heartbeatS * 1000);
      sweep.unref();
      if (config.healthTestIntervalS > 0) {
        const everyMs = config.healthTestIntervalS * 1000;
        // The first round soon after start, so a new cluster's pools are tested within seconds.
        if (everyMs > 3000) {
          firstRound = setTimeout(() => this.healthRound(), 3000);
          firstRound.unref();
        }
        healthTimer = setInterval(() => this.healthRound(), everyMs);
        healthTimer.unref();
      }
    },
    async stopped() {
      clearTimeout(firstRound);
      clearInterval(healthTimer);
      if (sweep) clearInterval(sweep);
      sweep = undefined;
      await redis?.close();
      redis = undefined;
    },
  };
}
