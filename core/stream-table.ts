/**
 * Monitoring tables (DESIGN.md "monitoring data"): the active-stream table, keyed by stream ID and
 * kept alive by encoder pushes, and each event's stream history. The interface is async so the
 * cluster's Redis table (runtime/redis-stream-table.ts) fits it; MemoryStreamTable is the embedded
 * one and stays pure: time comes in as `nowMs`, nothing inside awaits.
 */
import type { StreamDataset, StreamRecord } from '../runtime/contracts.ts';

/** What a push did to the active table. */
export type PushOutcome = 'up' | 'seen' | 'ignored';

/** The tables monitoring keeps; one implementation per backend (in-process, Redis). */
export interface StreamTable {
  /** An encoder's heartbeat push; `up` when the stream was not active before. */
  push(dataset: StreamDataset, nowMs: number): Promise<PushOutcome>;
  /** A stream stopped: it leaves the active table and its history record is completed. */
  stop(record: StreamRecord): Promise<StreamDataset | undefined>;
  /** Streams pushed within the timeout, optionally of one event, by start time. */
  active(nowMs: number, eventId?: string): Promise<StreamDataset[]>;
  /** Drops streams not pushed within the timeout and returns them. */
  expire(nowMs: number): Promise<StreamDataset[]>;
  /** An event's stream records, ordered by startedAt. */
  history(eventId: string): Promise<StreamRecord[]>;
  /** Whether the stream was pushed within the timeout. */
  isAlive(streamId: string, nowMs: number): Promise<boolean>;
}

interface ActiveEntry {
  dataset: StreamDataset;
  /** Receive time on this node: expiry never trusts another node's clock. */
  seenMs: number;
}

/** Orders datasets and records by start, then stream ID. */
export function byStart<T extends { startedAt: string; streamId: string }>(a: T, b: T): number {
  return a.startedAt < b.startedAt ? -1 : a.startedAt > b.startedAt ? 1 : a.streamId < b.streamId ? -1 : a.streamId > b.streamId ? 1 : 0;
}

/** The history record a stream's first dataset opens. */
export function recordOf(dataset: StreamDataset): StreamRecord {
  return {
    streamId: dataset.streamId,
    eventId: dataset.eventId,
    nodeId: dataset.nodeId,
    dataCenter: dataset.dataCenter,
    port: dataset.port,
    startedAt: dataset.startedAt,
    lastSeenAt: dataset.lastSeenAt,
  };
}

/** In-process StreamTable; a stream not pushed for `timeoutMs` counts as gone. */
export class MemoryStreamTable implements StreamTable {
  private readonly activeById = new Map<string, ActiveEntry>();
  private readonly historyByEvent = new Map<string, Map<string, StreamRecord>>();

  constructor(private readonly timeoutMs: number) {}

  async push(dataset: StreamDataset, nowMs: number): Promise<PushOutcome> {
    return this.pushNow(dataset, nowMs);
  }

  /** push() without the promise, for tables that mirror this one. */
  pushNow(dataset: StreamDataset, nowMs: number): PushOutcome {
    const records = this.recordsOf(dataset.eventId);
    const known = records.get(dataset.streamId);
    // A heartbeat that crossed the stop on the wire must not bring a stopped stream back.
    if (known?.endedAt) return 'ignored';
    if (!known) records.set(dataset.streamId, recordOf(dataset));
    else if (dataset.lastSeenAt && (!known.lastSeenAt || known.lastSeenAt < dataset.lastSeenAt)) known.lastSeenAt = dataset.lastSeenAt;
    const prev = this.activeById.get(dataset.streamId);
    const wasAlive = prev !== undefined && nowMs - prev.seenMs <= this.timeoutMs;
    this.activeById.set(dataset.streamId, { dataset: { ...dataset }, seenMs: nowMs });
    return wasAlive ? 'seen' : 'up';
  }

  async stop(record: StreamRecord): Promise<StreamDataset | undefined> {
    return this.stopNow(record);
  }

  /** stop() without the promise. */
  stopNow(record: StreamRecord): StreamDataset | undefined {
    const records = this.recordsOf(record.eventId);
    const known = records.get(record.streamId);
    // The first dataset's startedAt stays: it is when listeners first had the stream.
    records.set(record.streamId, {
      ...(known?.lastSeenAt ? { lastSeenAt: known.lastSeenAt } : {}),
      ...record,
      ...(known ? { startedAt: known.startedAt } : {}),
    });
    const entry = this.activeById.get(record.streamId);
    this.activeById.delete(record.streamId);
    return entry?.dataset;
  }

  async active(nowMs: number, eventId?: string): Promise<StreamDataset[]> {
    return this.activeNow(nowMs, eventId);
  }

  /** active() without the promise. */
  activeNow(nowMs: number, eventId?: string): StreamDataset[] {
    const out: StreamDataset[] = [];
    for (const e of this.activeById.values()) {
      if (nowMs - e.seenMs > this.timeoutMs) continue;
      if (eventId !== undefined && e.dataset.eventId !== eventId) continue;
      out.push({ ...e.dataset });
    }
    return out.sort(byStart);
  }

  async expire(nowMs: number): Promise<StreamDataset[]> {
    return this.expireNow(nowMs);
  }

  /** expire() without the promise. */
  expireNow(nowMs: number): StreamDataset[] {
    const gone: StreamDataset[] = [];
    for (const [id, e] of this.activeById) {
      if (nowMs - e.seenMs > this.timeoutMs) {
        this.activeById.delete(id);
        gone.push(e.dataset);
      }
    }
    return gone;
  }

  async history(eventId: string): Promise<StreamRecord[]> {
    return this.historyNow(eventId);
  }

  /** history() without the promise. */
  historyNow(eventId: string): StreamRecord[] {
    return [...(this.historyByEvent.get(eventId)?.values() ?? [])].map((r) => ({ ...r })).sort(byStart);
  }

  async isAlive(streamId: string, nowMs: number): Promise<boolean> {
    return this.isAliveNow(streamId, nowMs);
  }

  /** isAlive() without the promise. */
  isAliveNow(streamId: string, nowMs: number): boolean {
    const e = this.activeById.get(streamId);
    return e !== undefined && nowMs - e.seenMs <= this.timeoutMs;
  }

  /** Every history record held, for a resync into another table. */
  records(): StreamRecord[] {
    const out: StreamRecord[] = [];
    for (const records of this.historyByEvent.values()) for (const r of records.values()) out.push({ ...r });
    return out;
  }

  /**
   * Forgets the history of events with no active stream whose every record ended (or was last seen)
   * before `cutoffIso`; returns their IDs. A mirror of a shared table uses it to stay bounded.
   */
  forgetBefore(cutoffIso: string): string[] {
    const activeEvents = new Set([...this.activeById.values()].map((e) => e.dataset.eventId));
    const forgotten: string[] = [];
    for (const [eventId, records] of this.historyByEvent) {
      if (activeEvents.has(eventId)) continue;
      const old = [...records.values()].every((r) => (r.endedAt ?? r.lastSeenAt ?? r.startedAt) < cutoffIso);
      if (old) {
        this.historyByEvent.delete(eventId);
        forgotten.push(eventId);
      }
    }
    return forgotten;
  }

  private recordsOf(eventId: string): Map<string, StreamRecord> {
    let records = this.historyByEvent.get(eventId);
    if (!records) {
      records = new Map<string, StreamRecord>();
      this.historyByEvent.set(eventId, records);
    }
    return records;
  }
}
