/** Fixtures for the event-plane specs: event infos, fake encoder output, a broker with the four actors. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ServiceBroker } from 'moleculer';
import type { JitcastConfig } from '../../cluster.config.ts';
import { createArchiveCoordinatorService } from '../../actors/archive-coordinator.service.ts';
import { createContentStorageService } from '../../actors/content-storage.service.ts';
import { createEventService, type EventServiceDeps } from '../../actors/event.service.ts';
import { createMonitoringService } from '../../actors/monitoring.service.ts';
import { createBroker } from '../../runtime/broker.ts';
import type { EventInfo, StreamDataset, StreamRecord } from '../../runtime/contracts.ts';
import type { ReportingSink } from '../../runtime/reporting.ts';

/** A valid event ID (Luhn). */
export const EVENT_ID = '12345674';
/** A valid stream ID of EVENT_ID. */
export const STREAM_ID = '12345674-spec-node-10002-lq0abc';

/** A reserved event's info. */
export function sampleInfo(overrides: Partial<EventInfo> = {}): EventInfo {
  return {
    eventId: EVENT_ID,
    title: 'Quarterly call',
    format: 'hls',
    createdAt: '2026-11-25T10:00:00.000Z',
    updatedAt: '2026-11-25T10:00:00.000Z',
    archiveDays: 30,
    hasPassword: false,
    attendeeUrl: 'http://127.0.0.1:8080/e/attendee-token',
    hostUrl: 'http://127.0.0.1:8080/e/host-token',
    status: 'reserved',
    ...overrides,
  };
}

/** An ffmpeg-style HLS media playlist over the given segment durations. */
export function playlist(durations: number[], ended = true): string {
  const lines = ['#EXTM3U', '#EXT-X-VERSION:3', `#EXT-X-TARGETDURATION:${Math.ceil(Math.max(...durations, 1))}`, '#EXT-X-MEDIA-SEQUENCE:0'];
  durations.forEach((d, i) => lines.push(`#EXTINF:${d.toFixed(6)},`, `seg${String(i).padStart(5, '0')}.ts`));
  if (ended) lines.push('#EXT-X-ENDLIST');
  return lines.join('\n') + '\n';
}

/** Writes a fake encoder output directory `<dataDir>/live/<streamId>/` and returns it. */
export function writeLiveDir(config: JitcastConfig, streamId: string, durations: number[], opts: { ended?: boolean; gaps?: unknown } = {}): string {
  const dir = join(config.dataDir, 'live', streamId);
  mkdirSync(dir, { recursive: true });
  durations.forEach((_, i) => writeFileSync(join(dir, `seg${String(i).padStart(5, '0')}.ts`), Buffer.alloc(188 * (i + 1), 0x47)));
  writeFileSync(join(dir, 'index.m3u8'), playlist(durations, opts.ended ?? true));
  if (opts.gaps !== undefined) writeFileSync(join(dir, 'gaps.json'), JSON.stringify(opts.gaps));
  return dir;
}

/** A StreamDataset as an encoder pushes it. */
export function dataset(streamId: string, overrides: Partial<StreamDataset> = {}): StreamDataset {
  return {
    streamId,
    eventId: streamId.slice(0, 8),
    format: 'hls',
    port: 10002,
    nodeId: 'spec-node',
    dataCenter: 'dc1',
    url: `/live/${streamId}/index.m3u8`,
    startedAt: '2026-11-25T10:05:00.000Z',
    lastSeenAt: '2026-11-25T10:05:00.000Z',
    ...overrides,
  };
}

/** The StreamRecord an encoder broadcasts on stop. */
export function stopRecord(streamId: string, overrides: Partial<StreamRecord> = {}): StreamRecord {
  return {
    streamId,
    eventId: streamId.slice(0, 8),
    nodeId: 'spec-node',
    dataCenter: 'dc1',
    port: 10002,
    startedAt: '2026-11-25T10:05:00.000Z',
    endedAt: '2026-11-25T10:06:00.000Z',
    durationS: 6,
    stored: true,
    ...overrides,
  };
}

/** A ReportingSink that records what it is given. */
export class FakeReporting implements ReportingSink {
  readonly enqueued: EventInfo[] = [];
  closed = false;
  enqueueEvent(info: EventInfo): void {
    this.enqueued.push(structuredClone(info));
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

/** A started broker running content-storage, monitoring, event and archive-coordinator. */
export async function startPlane(config: JitcastConfig, deps: EventServiceDeps = {}): Promise<{ broker: ServiceBroker; reporting: FakeReporting }> {
  const reporting = new FakeReporting();
  const broker = createBroker(config);
  broker.createService(createContentStorageService(config));
  broker.createService(createMonitoringService(config));
  broker.createService(createEventService(config, { reporting: () => reporting, ...deps }));
  broker.createService(createArchiveCoordinatorService(config));
  await broker.start();
  return { broker, reporting };
}

/**
 * Resolves once `check` returns a value other than undefined/false, polled every `everyMs`; an
 * exception in `check` is retried; rejects after `limitMs` with `what` and the last exception.
 */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, limitMs = 10_000, everyMs = 25): Promise<T> {
  const deadline = Date.now() + limitMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v as T;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
