/**
 * Monitoring tables (DESIGN.md "monitoring data"): the active-stream table, keyed by stream ID and
 * kept alive by encoder pushes, and each event's stream history. Pure: time comes in as `nowMs`.
 * In-process for now; cluster mode will put the same interface over Redis keys with TTLs.
 */
import type { StreamDataset, StreamRecord } from '../runtime/contracts.ts';

/** What a push did to the active table. */
export type PushOutcome = 'up' | 'seen' | 'ignored';

/** The tables monitoring keeps; one implementation per backend (in-process now, Redis later). */
export interface StreamTable {
  /** An encoder's heartbeat push; `up` when the stream was not active before. */
  push(dataset: StreamDataset, nowMs: number): PushOutcome;
  /** A stream stopped: it leaves the active table and its history record is completed. */
  stop(record: StreamRecord): StreamDataset | undefined;
  /** Streams pushed within the timeout, optionally of one event, by start time. */
  active(nowMs: number, eventId?: string): StreamDataset[];
  /** Drops streams not pushed within the timeout and returns them. */
  expire(nowMs: number): StreamDataset[];
  /** An event's stream records, ordered by startedAt. */
  history(eventId: string): StreamRecord[];
  /** Whether the stream was pushed within the timeout. */
  isAlive(streamId: string, nowMs: number): boolean;
}

interface ActiveEntry {
  dataset: StreamDataset;
  /** Receive time on this node: expiry never trusts another node's clock. */
  seenMs: number;
}

function byStart<T extends { startedAt: string; streamId: string }>(a: T, b: T): number {
  return a.startedAt < b.startedAt ? -1 : a.startedAt > b.startedAt ? 1 : a.streamId < b.streamId ? -1 : a.streamId > b.streamId ? 1 : 0;
}

/** In-process StreamTable; a stream not pushed for `timeoutMs` counts as gone. */
export class MemoryStreamTable implements StreamTable {
  private readonly activeById = new Map<string, ActiveEntry>();
  private readonly historyByEvent = new Map<string, Map<string, StreamRecord>>();

  constructor(private readonly timeoutMs: number) {}

  push(dataset: StreamDataset, nowMs: number): PushOutcome {
    const records = this.historyByEvent.get(dataset.eventId) ?? new Map<string, StreamRecord>();
    this.historyByEvent.set(dataset.eventId, records);
    const known = records.get(dataset.streamId);
    // A heartbeat that crossed the stop on the wire must not bring a stopped stream back.
    if (known?.endedAt) return 'ignored';
    if (!known) {
      records.set(dataset.streamId, {
        streamId: dataset.streamId,
        eventId: dataset.eventId,
        nodeId: dataset.nodeId,
        dataCenter: dataset.dataCenter,
        port: dataset.port,
        startedAt: dataset.startedAt,
      });
    }
    const prev = this.activeById.get(dataset.streamId);
    const wasAlive = prev !== undefined && nowMs - prev.seenMs <= this.timeoutMs;
    this.activeById.set(dataset.streamId, { dataset: { ...dataset }, seenMs: nowMs });
    return wasAlive ? 'seen' : 'up';
  }

  stop(record: StreamRecord): StreamDataset | undefined {
    const records = this.historyByEvent.get(record.eventId) ?? new Map<string, StreamRecord>();
    this.historyByEvent.set(record.eventId, records);
    const known = records.get(record.streamId);
    // The first dataset's startedAt stays: it is when listeners first had the stream.
    records.set(record.streamId, { ...record, ...(known ? { startedAt: known.startedAt } : {}) });
    const entry = this.activeById.get(record.streamId);
    this.activeById.delete(record.streamId);
    return entry?.dataset;
  }

  active(nowMs: number, eventId?: string): StreamDataset[] {
    const out: StreamDataset[] = [];
    for (const e of this.activeById.values()) {
      if (nowMs - e.seenMs > this.timeoutMs) continue;
      if (eventId !== undefined && e.dataset.eventId !== eventId) continue;
      out.push({ ...e.dataset });
    }
    return out.sort(byStart);
  }

  expire(nowMs: number): StreamDataset[] {
    const gone: StreamDataset[] = [];
    for (const [id, e] of this.activeById) {
      if (nowMs - e.seenMs > this.timeoutMs) {
        this.activeById.delete(id);
        gone.push(e.dataset);
      }
    }
    return gone;
  }

  history(eventId: string): StreamRecord[] {
    return [...(this.historyByEvent.get(eventId)?.values() ?? [])].map((r) => ({ ...r })).sort(byStart);
  }

  isAlive(streamId: string, nowMs: number): boolean {
    const e = this.activeById.get(streamId);
    return e !== undefined && nowMs - e.seenMs <= this.timeoutMs;
  }
}
