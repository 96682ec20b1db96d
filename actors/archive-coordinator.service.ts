/**
 * `archive-coordinator` actor (DESIGN.md "archive"): builds the virtual archive of an ended event from
 * its stored streams and reports it to the event actor (`event.archived` / `event.archiveFailed`).
 * Idempotent per event ID: an event-info that already holds an archive is answered as is, and
 * concurrent builds of one event share one run.
 *
 * Leader (issue 4): the coordinators elect one (runtime/archive-leadership.ts over core/election.ts:
 * announces each heartbeat, silence limit `archiveSilenceLimitS`, first by IP address then node ID);
 * `archive-coordinator.leader` answers this node's view. In cluster mode the event actor queues one
 * BullMQ job per event (runtime/archive-queue.ts) and only the leader's worker takes them, running
 * `build` on its own node and reporting through `event.archived` / `event.archiveFailed`; in embedded
 * mode `build` is called directly, as before.
 */
import type { Context, ServiceBroker, ServiceSchema } from 'moleculer';
import type { JitcastConfig } from '../cluster.config.ts';
import { parseMediaPlaylist } from '../codecs/hls.ts';
import { isValidEventId, STREAM_ID_RE } from '../codecs/ids.ts';
import { planArchive, type Gap, type PlanStream } from '../core/archive-plan.ts';
import type { ArchiveFragment, StreamRecord } from '../runtime/contracts.ts';
import { NotFoundError, ValidationFailedError, errorMessage } from '../runtime/errors.ts';
import { storageOf } from '../runtime/storage-client.ts';
import { testHoldMs, type ArchiveJobData } from '../runtime/archive-queue.ts';
import { ArchiveLeadership, type LeaderStatus } from '../runtime/archive-leadership.ts';
import { EVENTS, type ArchiveAnnounce } from '../runtime/contracts.ts';
import type { Job } from 'bullmq';

/** Longest wait for one build run by the leader's worker (the event actor's direct call waits as long). */
const JOB_BUILD_TIMEOUT_MS = 60_000;

/** What the coordinator can be handed instead of its defaults (specs). */
export interface ArchiveCoordinatorDeps {
  /** The address announced in the leader election. Default: runtime/archive-leadership.ts `electionAddress`. */
  address?: string;
}

/** `archive-coordinator.build` reply. */
export interface BuildResult {
  archive: ArchiveFragment[];
}


/** A history record for a stream found only in storage (monitoring restarted): its start is in its ID. */
function recordFromStorage(eventId: string, streamId: string): StreamRecord {
  const m = STREAM_ID_RE.exec(streamId);
  const startedMs = m ? parseInt(m[4]!, 36) : 0;
  return {
    streamId,
    eventId,
    nodeId: m?.[2] ?? '',
    dataCenter: '',
    port: m ? Number(m[3]) : 0,
    startedAt: new Date(Number.isFinite(startedMs) ? startedMs : 0).toISOString(),
    stored: true,
  };
}

function parseGaps(text: string): Gap[] {
  const raw: unknown = JSON.parse(text);
  if (!Array.isArray(raw)) return [];
  return raw.filter((g): g is Gap => g && typeof g.start === 'number' && typeof g.end === 'number' && g.end >= g.start);
}

/** The archive coordinator service. */
export function createArchiveCoordinatorService(config: JitcastConfig, deps: ArchiveCoordinatorDeps = {}): ServiceSchema {
  const inFlight = new Map<string, Promise<BuildResult>>();
  let leadership: ArchiveLeadership | undefined;

  async function collect(broker: ServiceBroker, eventId: string): Promise<PlanStream[]> {
    let history: StreamRecord[] = [];
    try {
      history = await broker.call<StreamRecord[], { eventId: string }>('monitoring.history', { eventId });
    } catch {
      // Without monitoring (restarted, unreachable) storage alone still lists what was recorded.
    }
    const stored = await storageOf(broker).listStreams(eventId);
    const byId = new Map<string, StreamRecord>(history.map((r) => [r.streamId, r]));
    for (const s of stored) if (!byId.has(s.streamId)) byId.set(s.streamId, recordFromStorage(eventId, s.streamId));
    const storedFiles = new Map(stored.map((s) => [s.streamId, new Set(s.files)]));

    const streams: PlanStream[] = [];
    for (const record of byId.values()) {
      const files = storedFiles.get(record.streamId);
      const plan: PlanStream = { record };
      if (files?.has('index.m3u8')) {
        const text = (await storageOf(broker).readStreamFile(eventId, record.streamId, 'index.m3u8')).toString('utf8');
        plan.playlist = parseMediaPlaylist(text);
      }
      if (files?.has('gaps.json')) {
        try {
          plan.gaps = parseGaps((await storageOf(broker).readStreamFile(eventId, record.streamId, 'gaps.json')).toString('utf8'));
        } catch {
          // Gaps only refine the choice between redundant streams; a bad file must not block the archive.
        }
      }
      streams.push(plan);
    }
    return streams;
  }

  /** The leader's worker runs one queued job: the same `build` on this node, then closes the event. */
  async function runJob(broker: ServiceBroker, logger: ServiceBroker['logger'], job: Job<ArchiveJobData>): Promise<void> {
    const eventId = job.data.eventId;
    logger.info(`archive job taken [event:${eventId} job:${job.id} by:${job.data.requestedBy} stalls:${job.stalledCounter ?? 0}]`);
    const hold = testHoldMs();
    if (hold) await new Promise((r) => setTimeout(r, hold));
    try {
      const res = await broker.call<BuildResult, { eventId: string }>('archive-coordinator.build', { eventId }, { nodeID: broker.nodeID, timeout: JOB_BUILD_TIMEOUT_MS, retries: 0 });
      // build reports event.archived itself, except for an archive it found already built (answered
      // as is): close the event here too; for an archived event it is a no-op (core/event-lifecycle.ts).
      await broker.call('event.archived', { eventId, archive: res.archive }, { retries: 0 });
    } catch (err) {
      // As the event actor did with a failed direct call: the event shows archive-error. Refused
      // (state conflict) when build already reported the failure itself.
      await broker.call('event.archiveFailed', { eventId, error: errorMessage(err) }, { retries: 0 }).catch((e: unknown) => logger.debug(`archive failure not recorded [event:${eventId}] ${errorMessage(e)}`));
    }
  }

  return {
    name: 'archive-coordinator',
    events: {
      [EVENTS.archiveAnnounce](ctx: Context<ArchiveAnnounce>) {
        leadership?.heard(ctx.params);
      },
      '$node.disconnected'(ctx: Context<{ node: { id: string }; unexpected: boolean }>) {
        if (ctx.params?.node?.id) leadership?.nodeLeft(ctx.params.node.id, !!ctx.params.unexpected);
      },
    },
    created() {
      const broker = this.broker;
      const logger = this.logger;
      leadership = new ArchiveLeadership({
        config,
        broker,
        logger,
        ...(deps.address ? { address: deps.address } : {}),
        process: (job) => runJob(broker, logger, job),
        onJobFailed: (eventId, reason) => {
          broker.call('event.archiveFailed', { eventId, error: `archive job failed: ${reason}` }, { retries: 0 }).catch((e: unknown) => logger.debug(`archive failure not recorded [event:${eventId}] ${errorMessage(e)}`));
        },
      });
    },
    started() {
      leadership?.start();
    },
    async stopped() {
      await leadership?.stop();
    },
    actions: {
      leader: {
        handler(): LeaderStatus | undefined {
          return leadership?.status();
        },
      },
      build: {
        async handler(ctx: Context<{ eventId: string }>): Promise<BuildResult> {
          const eventId = ctx.params?.eventId;
          if (!isValidEventId(eventId)) throw new ValidationFailedError(`invalid event ID ${JSON.stringify(eventId)}`, { eventId: 'must be 8 digits with a valid check digit' });
          const running = inFlight.get(eventId);
          if (running) return running;
          const logger = this.logger;
          const reportFailure = async (error: string): Promise<void> => {
            try {
              await ctx.call('event.archiveFailed', { eventId, error });
            } catch (err) {
              // The event may already have moved on (another coordinator won); the refusal says so.
              logger.warn(`archive failure not recorded [event:${eventId}] ${errorMessage(err)}`);
            }
          };
          const work = (async (): Promise<BuildResult> => {
            const info = await storageOf(this.broker).getEventInfo(eventId);
            if (info.archive && info.archive.length > 0) return { archive: info.archive };
            let streams: PlanStream[];
            try {
              streams = await collect(this.broker, eventId);
            } catch (err) {
              const error = `stream files missing: ${errorMessage(err)}`;
              await reportFailure(error);
              throw new NotFoundError(`${error} [event:${eventId}]`);
            }
            const plan = planArchive(streams);
            if (!plan.ok) {
              logger.warn(`archive not built [event:${eventId} streams:${streams.length} code:${plan.code}] ${plan.reason}`);
              await reportFailure(plan.reason);
              throw new NotFoundError(`${plan.reason} [event:${eventId}]`);
            }
            await ctx.call('event.archived', { eventId, archive: plan.archive });
            logger.info(`archive built [event:${eventId} streams:${streams.length} fragments:${plan.archive.length} seconds:${plan.archive.reduce((s, f) => s + f.end - f.start, 0).toFixed(3)}]`);
            return { archive: plan.archive };
          })();
          inFlight.set(eventId, work);
          try {
            return await work;
          } finally {
            inFlight.delete(eventId);
          }
        },
      },
    },
  };
}
