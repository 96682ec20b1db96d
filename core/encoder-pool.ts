/**
 * The encoder pool a voice server binds a conference's stream from (issue 3 items 2 and 6): every
 * encoder-port actor broadcasts an EncoderStatus each heartbeat; monitoring's health tests evict
 * an encoder that fails and re-admit it once it passes.
 *
 * Choice, in order:
 * 1. Only encoders heard within the heartbeat timeout, with a free port, not refused since their
 *    last status, and not already tried for this stream.
 * 2. Healthy ones first. When none is healthy the least bad is still tried (and the caller logs
 *    it): a stream from an encoder that failed its last test beats no stream at all.
 * 3. This node's own encoder (no RTP leaves the machine), then the same data center, then any.
 * 4. The most free ports, then the node ID, so a choice is reproducible.
 * Free ports are counted net of the streams sent since the status was made.
 * Pure: `now` comes from the caller.
 */
import type { EncoderStatus } from '../runtime/contracts.ts';

/** What the pool picked. */
export interface EncoderChoice {
  nodeId: string;
  dataCenter: string;
  /** False when no healthy encoder could take the stream and this one failed its last test. */
  healthy: boolean;
  local: boolean;
  crossDataCenter: boolean;
  freePorts: number;
}

interface Entry {
  status: EncoderStatus;
  heardAt: number;
  sentAt: number[];
  refused: boolean;
}

/** Options of EncoderPool. */
export interface EncoderPoolOptions {
  /** An encoder not heard for this long (ms) is gone. */
  timeoutMs: number;
  /** A stream sent this recently (ms) still counts against the encoder after its next status. Default 100. */
  pendingGraceMs?: number;
}

/** The encoders a voice server knows, with their health. */
export class EncoderPool {
  readonly #entries = new Map<string, Entry>();
  /** Verdicts by node ID; kept even before the first status (an encoder evicted before we heard it). */
  readonly #health = new Map<string, boolean>();
  readonly #timeoutMs: number;
  readonly #graceMs: number;

  constructor(opts: EncoderPoolOptions) {
    this.#timeoutMs = opts.timeoutMs;
    this.#graceMs = opts.pendingGraceMs ?? 100;
  }

  /** A status arrived; a late one (lower seq and older) is dropped. Returns whether it was taken. */
  update(status: EncoderStatus, now: number): boolean {
    const old = this.#entries.get(status.nodeId);
    if (old && status.seq <= old.status.seq && status.updatedAt <= old.status.updatedAt) return false;
    this.#entries.set(status.nodeId, { status, heardAt: now, sentAt: (old?.sentAt ?? []).filter((t) => now - t < this.#graceMs), refused: false });
    return true;
  }

  /** A verdict of monitoring's health test. */
  setHealth(nodeId: string, healthy: boolean): void {
    this.#health.set(nodeId, healthy);
  }

  healthy(nodeId: string): boolean {
    return this.#health.get(nodeId) ?? true;
  }

  /** The encoder left the cluster. */
  remove(nodeId: string): void {
    this.#entries.delete(nodeId);
  }

  /** The encoder refused a stream or did not answer: skipped until its next status. */
  refuse(nodeId: string): void {
    const e = this.#entries.get(nodeId);
    if (e) e.refused = true;
  }

  /** Free ports net of streams sent since the status. */
  #free(e: Entry): number {
    return e.status.free - e.sentAt.length;
  }

  /** Picks the encoder for a new stream and counts the stream against it; undefined when none can take it. */
  pick(o: { nodeId: string; dataCenter: string; now: number; exclude?: ReadonlySet<string> }): EncoderChoice | undefined {
    let best: { e: Entry; rank: number[] } | undefined;
    for (const e of this.#entries.values()) {
      const s = e.status;
      if (o.exclude?.has(s.nodeId) || e.refused || o.now - e.heardAt > this.#timeoutMs || this.#free(e) <= 0) continue;
      // Lower is better, compared element by element.
      const rank = [this.healthy(s.nodeId) ? 0 : 1, s.nodeId === o.nodeId ? 0 : s.dataCenter === o.dataCenter ? 1 : 2, -this.#free(e)];
      if (!best || less(rank, best.rank) || (equal(rank, best.rank) && s.nodeId < best.e.status.nodeId)) best = { e, rank };
    }
    if (!best) return undefined;
    const s = best.e.status;
    best.e.sentAt.push(o.now);
    return {
      nodeId: s.nodeId,
      dataCenter: s.dataCenter,
      healthy: this.healthy(s.nodeId),
      local: s.nodeId === o.nodeId,
      crossDataCenter: s.dataCenter !== o.dataCenter,
      freePorts: this.#free(best.e),
    };
  }

  /** Number of encoders heard within the timeout. */
  size(now: number): number {
    let n = 0;
    for (const e of this.#entries.values()) if (now - e.heardAt <= this.#timeoutMs) n++;
    return n;
  }
}

function less(a: number[], b: number[]): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! < b[i]!;
  return false;
}

function equal(a: number[], b: number[]): boolean {
  return !less(a, b) && !less(b, a);
}
