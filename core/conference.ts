/**
 * The conference bridge's mixer, pure: each participant pushes 20 ms frames as they arrive; every
 * tick takes at most one frame per participant (silence when none came) and yields the full mix
 * for the cast and a mix-minus for each participant, so everyone hears everyone but themselves.
 *
 * Bridged conferences (issue 4, core/bridge.ts): another voice server carrying callers of the same
 * event joins as one *remote* member whose audio is that server's local speakers. Remote members
 * are heard in the cast and in every local caller's mix-minus, but are left out of `local`, the
 * mix this server sends to its peers: a server forwards only what its own callers said, never what
 * it received, so audio cannot loop between servers (A → B → A) however many take part.
 */

/** Samples in one 20 ms frame at 8 kHz. */
export const FRAME_SAMPLES = 160;

/** Frames a participant may queue before the oldest is dropped (~100 ms of jitter). */
const MAX_QUEUE = 5;

/** One tick's output. */
export interface MixResult {
  /** Everyone mixed: what the cast (encoder) carries. */
  cast: Int16Array;
  /** Per local participant: everyone (remote members too) but that participant. */
  minus: Map<string, Int16Array>;
  /** The local participants only: what is sent to the peer servers of a bridged conference. */
  local: Int16Array;
}

/** Options of `ConferenceMixer.add`. */
export interface MemberOptions {
  /** A peer voice server's audio (its local mix): heard here, never forwarded, gets no mix-minus. */
  remote?: boolean;
}

/** Mix-minus conference mixer for 8 kHz mono PCM. */
export class ConferenceMixer {
  readonly #queues = new Map<string, Int16Array[]>();
  readonly #remote = new Set<string>();
  #dropped = 0;

  /** Adds a participant (idempotent; a second add may change whether it is remote). */
  add(id: string, opts: MemberOptions = {}): void {
    if (!this.#queues.has(id)) this.#queues.set(id, []);
    if (opts.remote) this.#remote.add(id);
    else this.#remote.delete(id);
  }

  /** Removes a participant and its queued audio. */
  remove(id: string): void {
    this.#queues.delete(id);
    this.#remote.delete(id);
  }

  /** Whether `id` is a participant. */
  has(id: string): boolean {
    return this.#queues.has(id);
  }

  /** Participants, local and remote. */
  get size(): number {
    return this.#queues.size;
  }

  /** Remote members (peer voice servers). */
  get remoteCount(): number {
    return this.#remote.size;
  }

  /** Frames dropped because a participant sent faster than the clock. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Queues audio from a participant; any length, cut into 20 ms frames. */
  push(id: string, pcm: Int16Array): void {
    const q = this.#queues.get(id);
    if (!q) return;
    for (let off = 0; off < pcm.length; off += FRAME_SAMPLES) {
      const frame = new Int16Array(FRAME_SAMPLES);
      frame.set(pcm.subarray(off, Math.min(off + FRAME_SAMPLES, pcm.length)));
      q.push(frame);
    }
    while (q.length > MAX_QUEUE) {
      q.shift();
      this.#dropped++;
    }
  }

  /** Takes one frame from every participant and mixes. */
  tick(): MixResult {
    const frames = new Map<string, Int16Array | undefined>();
    const sum = new Int32Array(FRAME_SAMPLES);
    const localSum = new Int32Array(FRAME_SAMPLES);
    for (const [id, q] of this.#queues) {
      const f = q.shift();
      const remote = this.#remote.has(id);
      if (!remote) frames.set(id, f);
      if (!f) continue;
      for (let i = 0; i < FRAME_SAMPLES; i++) sum[i] += f[i];
      if (!remote) for (let i = 0; i < FRAME_SAMPLES; i++) localSum[i] += f[i];
    }
    const cast = clip(sum);
    const local = this.#remote.size === 0 ? cast : clip(localSum);
    const minus = new Map<string, Int16Array>();
    for (const [id, f] of frames) {
      if (!f) {
        minus.set(id, cast);
        continue;
      }
      const m = new Int32Array(FRAME_SAMPLES);
      for (let i = 0; i < FRAME_SAMPLES; i++) m[i] = sum[i] - f[i];
      minus.set(id, clip(m));
    }
    return { cast, minus, local };
  }
}

function clip(sum: Int32Array): Int16Array {
  const out = new Int16Array(sum.length);
  for (let i = 0; i < sum.length; i++) out[i] = sum[i] > 32767 ? 32767 : sum[i] < -32768 ? -32768 : sum[i];
  return out;
}
