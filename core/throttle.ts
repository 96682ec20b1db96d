/**
 * PIN-guessing throttle: failures per key (event ID) in a sliding window. Once a key has
 * `limit` failures inside `windowMs`, every attempt on it is refused until the oldest failure
 * leaves the window, even with the right PIN. Pure: `now` comes from the caller.
 */
export class FailureThrottle {
  readonly #failures = new Map<string, number[]>();

  constructor(readonly limit: number, readonly windowMs: number) {}

  /** True while the key is locked. */
  locked(key: string, now: number): boolean {
    return this.#recent(key, now).length >= this.limit;
  }

  /** Records a failure. */
  fail(key: string, now: number): void {
    const list = this.#recent(key, now);
    list.push(now);
    this.#failures.set(key, list);
  }

  /** Keys currently tracked (for memory bounds in specs and status). */
  get size(): number {
    return this.#failures.size;
  }

  /** Forgets keys whose failures all left the window. */
  sweep(now: number): void {
    for (const key of [...this.#failures.keys()]) this.#recent(key, now);
  }

  #recent(key: string, now: number): number[] {
    const list = (this.#failures.get(key) ?? []).filter((t) => now - t < this.windowMs);
    if (list.length === 0) this.#failures.delete(key);
    else this.#failures.set(key, list);
    return list;
  }
}
