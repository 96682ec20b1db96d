/**
 * A voice server's pre-assigned RTP port range (DESIGN.md "Defaults": blocks of 50 from 10000).
 * Choosing a port needs no DB or Redis: the range is this server's own. A released port rests for
 * the port reuse timeout (≥ the auth-code timeout), so an auth code minted for one event can never
 * open a later event's stream on the same port. Pure: `now` comes from the caller.
 */

/** Ports are even-numbered RTP ports (RFC 3550 §11: RTP on even, RTCP on the odd one above). */
export class PortPool {
  readonly #free: number[] = [];
  readonly #resting = new Map<number, number>(); // port → usable again at (ms)
  readonly #busy = new Set<number>();

  constructor(readonly min: number, readonly max: number, readonly reuseAfterMs: number) {
    for (let p = min + (min % 2); p <= max; p += 2) this.#free.push(p);
  }

  /** Total ports in the range. */
  get capacity(): number {
    return this.#free.length + this.#resting.size + this.#busy.size;
  }

  /** Ports that can be handed out right now. */
  available(now: number): number {
    this.#wake(now);
    return this.#free.length;
  }

  /** Ports in use. */
  get busy(): number {
    return this.#busy.size;
  }

  /** Ports released but still resting. */
  get resting(): number {
    return this.#resting.size;
  }

  /** Takes a free port, or undefined when none is available. */
  acquire(now: number): number | undefined {
    this.#wake(now);
    const port = this.#free.shift();
    if (port !== undefined) this.#busy.add(port);
    return port;
  }

  /** Gives a port back; it rests for the reuse timeout before it is handed out again. */
  release(port: number, now: number): void {
    if (!this.#busy.delete(port)) return;
    this.#resting.set(port, now + this.reuseAfterMs);
  }

  /**
   * Gives back a port that carried only monitoring's synthetic call: it never joined an event, so
   * no auth code was ever minted for it; it needs no rest and is free at once.
   */
  releaseUnused(port: number): void {
    if (!this.#busy.delete(port)) return;
    this.#free.push(port); // to the back: least recently used first
  }

  /** Marks a port that could not be bound (taken by another process) as resting. */
  quarantine(port: number, now: number): void {
    this.#busy.delete(port);
    this.#resting.set(port, now + this.reuseAfterMs);
  }

  #wake(now: number): void {
    for (const [port, at] of this.#resting) {
      if (at <= now) {
        this.#resting.delete(port);
        this.#free.push(port); // to the back: least recently used first
      }
    }
  }
}
