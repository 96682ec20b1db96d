/**
 * A least-recently-used cache bounded by the bytes its values hold, not by their count: one cached
 * HLS segment may weigh 100 times another entry, and memory is what must stay bounded. Entries may
 * carry an expiry (a live playlist is only fresh for a moment; a segment never changes). Pure: the
 * caller passes `now`; Map insertion order is the recency order.
 */
export class ByteLru<K, V> {
  readonly #entries = new Map<K, { value: V; bytes: number; expiresAt: number }>();
  #bytes = 0;

  /** `maxBytes`: the most the values may weigh together; must be a positive number. */
  constructor(readonly maxBytes: number) {
    if (!(maxBytes > 0)) throw new RangeError(`ByteLru maxBytes must be positive, got ${maxBytes}`);
  }

  /** The value, if cached and not expired at `now`; marks it most recently used. An expired entry is dropped. */
  get(key: K, now: number): V | undefined {
    const e = this.#entries.get(key);
    if (!e) return undefined;
    this.#entries.delete(key);
    if (e.expiresAt <= now) {
      this.#bytes -= e.bytes;
      return undefined;
    }
    this.#entries.set(key, e);
    return e.value;
  }

  /**
   * Stores a value weighing `bytes`, until `expiresAt` (default never), evicting the least recently
   * used entries until everything fits. A value heavier than `maxBytes` is not stored (false).
   */
  set(key: K, value: V, bytes: number, expiresAt = Infinity): boolean {
    if (!(bytes >= 0)) throw new RangeError(`ByteLru entry size must be >= 0, got ${bytes}`);
    this.delete(key);
    if (bytes > this.maxBytes) return false;
    this.#entries.set(key, { value, bytes, expiresAt });
    this.#bytes += bytes;
    for (const [k, e] of this.#entries) {
      if (this.#bytes <= this.maxBytes) break;
      this.#entries.delete(k);
      this.#bytes -= e.bytes;
    }
    return true;
  }

  /** Drops an entry; true if there was one. */
  delete(key: K): boolean {
    const e = this.#entries.get(key);
    if (!e) return false;
    this.#entries.delete(key);
    this.#bytes -= e.bytes;
    return true;
  }

  /** Entries held (expired ones count until they are read or pushed out). */
  get size(): number {
    return this.#entries.size;
  }

  /** Bytes held. */
  get bytes(): number {
    return this.#bytes;
  }
}
