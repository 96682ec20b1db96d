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
