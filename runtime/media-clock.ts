/**
 * A drift-free 20 ms media clock. Node timers wander by milliseconds, so the clock counts the
 * frames due since it started (from `performance.now()`) and runs the callback once per due
 * frame; a late timer catches up instead of slowing the media down.
 */
import { performance } from 'node:perf_hooks';

/** Frame period in ms (20 ms G.711 packets, RFC 3551 §4.5). */
export const FRAME_MS = 20;

/** Calls `onFrame` once per 20 ms on average, catching up after late timers (at most `maxCatchUp` at once). */
export class MediaClock {
  #timer: NodeJS.Timeout | undefined;
  #start = 0;
  #frames = 0;
  #late = 0;

  constructor(private readonly onFrame: () => void, private readonly maxCatchUp = 10) {}

  /** Starts ticking (idempotent). */
  start(): void {
    if (this.#timer) return;
    this.#start = performance.now();
    this.#frames = 0;
    this.#timer = setInterval(() => this.#tick(), FRAME_MS / 2);
  }

  /** Stops ticking (idempotent). */
  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Frames skipped because the process was too busy to catch up. */
  get lateFrames(): number {
    return this.#late;
  }

  #tick(): void {
    const due = Math.floor((performance.now() - this.#start) / FRAME_MS);
    let n = due - this.#frames;
    if (n > this.maxCatchUp) {
      this.#late += n - this.maxCatchUp;
      this.#frames += n - this.maxCatchUp;
      n = this.maxCatchUp;
    }
    for (let i = 0; i < n; i++) {
      this.#frames++;
      this.onFrame();
    }
  }
}

/**
 * One interval timer waking many subscribers, for work that keeps its own drift-free timeline
 * (each HlsEncoder counts its frames from its own start): a thousand encoders cost one timer
 * callback per period instead of a thousand. The timer runs only while someone subscribes.
 */
export class SharedTicker {
  readonly #subs = new Set<(now: number) => void>();
  #timer: NodeJS.Timeout | undefined;

  /** @param periodMs How often subscribers are woken, in ms. */
  constructor(readonly periodMs: number) {}

  /** Wakes `fn` with `performance.now()` every period until the returned function is called. */
  subscribe(fn: (now: number) => void): () => void {
    this.#subs.add(fn);
    this.#timer ??= setInterval(() => this.#tick(), this.periodMs);
    return () => {
      if (!this.#subs.delete(fn) || this.#subs.size > 0) return;
      clearInterval(this.#timer);
      this.#timer = undefined;
    };
  }

  /** Current subscribers. */
  get size(): number {
    return this.#subs.size;
  }

  #tick(): void {
    const now = performance.now();
    let failure: { err: unknown } | undefined;
    for (const fn of this.#subs) {
      // One failing subscriber must not stop the others' timelines; the error still surfaces.
      try {
        fn(now);
      } catch (err) {
        failure ??= { err };
      }
    }
    if (failure) throw failure.err;
  }
}
