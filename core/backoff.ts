/**
 * Restart back-off, shared by every supervisor (runtime/supervisor.ts for ffmpeg,
 * runtime/node-supervisor.ts for the node itself): the delay doubles per attempt from
 * `initialDelayMs` up to `maxDelayMs`, and a run of `stableMs` counts as healthy, so the next
 * failure starts the back-off afresh. Pure: durations come from the caller.
 */

/** When and how fast to restart. */
export interface BackoffPolicy {
  /** Delay before the first restart, in ms. */
  initialDelayMs: number;
  /** Largest delay, in ms. */
  maxDelayMs: number;
  /** An instance that ran this long before dying resets the back-off, in ms. */
  stableMs: number;
}

/** The delay before restart attempt `attempt` (1-based): initial × 2^(attempt-1), capped at max. */
export function backoffDelayMs(attempt: number, p: Pick<BackoffPolicy, 'initialDelayMs' | 'maxDelayMs'>): number {
  return Math.min(p.initialDelayMs * 2 ** Math.max(0, attempt - 1), p.maxDelayMs);
}

/** The attempt number of the restart after an instance that ran `upMs` died, when `previous` restarts came before it in a row. */
export function nextAttempt(previous: number, upMs: number, p: Pick<BackoffPolicy, 'stableMs'>): number {
  return (upMs >= p.stableMs ? 0 : previous) + 1;
}
