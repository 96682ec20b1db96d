/**
 * The one place that reads and writes content storage for other actors (issue 4: "the archive plays
 * while any one storage center is down").
 *
 * Every call goes to one storage node at a time, named (`nodeID`): this node's own first (no network),
 * then the others. A node that answers NotFound may just not have the file yet (replication is
 * asynchronous), and a node that does not answer may have died without the registry knowing yet
 * (a SIGKILLed node stays listed for up to the heartbeat timeout): either way the next node is
 * asked. A node that timed out is tried last for SUSPECT_MS, so a dead node costs one timeout, not
 * one per request. Reads are hedged: a node silent for HEDGE_AFTER_MS keeps its request while the
 * next one is asked too, so a node that just died costs a listener 0.3 s, not the read timeout.
 * Listings are the union over every node, since a file any node holds is readable.
 */
import type { ServiceBroker } from 'moleculer';
import type { EventInfo } from './contracts.ts';
import { JitcastError, NotFoundError, StorageUnavailableError } from './errors.ts';
import type { StoredStream } from './storage.ts';

/** Timeout of one read at one storage node, ms: short, since another node can answer instead. */
export const READ_TIMEOUT_MS = 2500;
/** Timeout of one write at one storage node, ms. */
export const WRITE_TIMEOUT_MS = 10_000;
/** A node that timed out is asked last for this long. */
export const SUSPECT_MS = 10_000;
/**
 * A read a node has not answered within this is also asked of the next node (a hedged read): a
 * storage node that died a moment ago stays listed until the heartbeat timeout, and waiting out
 * READ_TIMEOUT_MS for it held an archive listener's segment ~2.5 s. The first answer wins.
 */
export const HEDGE_AFTER_MS = 300;

/** What the client needs of the broker (a ServiceBroker fits; specs pass fakes). */
export interface StorageBroker {
  nodeID: string;
  call(action: string, params: unknown, opts?: { nodeID?: string; timeout?: number }): Promise<unknown>;
  registry: { getServiceList(opts: { onlyAvailable?: boolean; withActions?: boolean }): unknown };
}

/** Reads and writes content storage across storage nodes, falling back from one to the next. */
export class StorageClient {
  readonly #broker: StorageBroker;
  readonly #suspects = new Map<string, number>();
  readonly #now: () => number;

  constructor(broker: StorageBroker, now: () => number = Date.now) {
    this.#broker = broker;
    this.#now = now;
  }

  /** Storage nodes in the order to ask them: this node, then the others (timed-out ones last). */
  nodes(): string[] {
    const list = this.#broker.registry.getServiceList({ onlyAvailable: true, withActions: false }) as Array<{ name: string; nodeID: string }>;
    const ids = [...new Set(list.filter((s) => s.name === 'content-storage').map((s) => s.nodeID))];
    const t = this.#now();
    const suspect = (id: string) => (this.#suspects.get(id) ?? 0) > t;
    const rank = (id: string) => (suspect(id) ? 2 : id === this.#broker.nodeID ? 0 : 1);
    // Among peers, a random order spreads reads over storage centers.
    return ids.map((id) => ({ id, r: rank(id), k: Math.random() })).sort((a, b) => a.r - b.r || a.k - b.k).map((x) => x.id);
  }

  /** event-info of an event; NotFoundError only when no storage node has it. */
  getEventInfo(eventId: string): Promise<EventInfo> {
    return this.#hedged<EventInfo>('content-storage.getEventInfo', { eventId });
  }

  /**
   * One stored stream file as a Buffer; NotFoundError only when no storage node has it. A playlist
   * is asked of every node: right after a call ends one node may still hold the unfinished playlist
   * uploaded as the call went, so the final one (#EXT-X-ENDLIST) wins, else the longest.
   */
  async readStreamFile(eventId: string, streamId: string, file: string): Promise<Buffer> {
    if (file.endsWith('.m3u8')) return this.#bestPlaylist({ eventId, streamId, file });
    return toBuffer(await this.#hedged<unknown>('content-storage.readStreamFile', { eventId, streamId, file }));
  }

  /** The final playlist as soon as one node answers with it; else, once all answered, the longest. */
  #bestPlaylist(params: { eventId: string; streamId: string; file: string }): Promise<Buffer> {
    const nodes = this.nodes();
    if (nodes.length === 0) return Promise.reject(new StorageUnavailableError('no content-storage node is reachable [action:content-storage.readStreamFile]'));
    return new Promise<Buffer>((resolve, reject) => {
      let pending = nodes.length;
      let best: Buffer | undefined;
      let refusal: unknown;
      let done = false;
      const settle = () => {
        if (done || --pending > 0) return;
        done = true;
        if (best) resolve(best);
        else reject(refusal ?? new StorageUnavailableError(`no content-storage node answered [action:content-storage.readStreamFile nodes:${nodes.join(',')}]`));
      };
      for (const nodeID of nodes) {
        this.#broker.call('content-storage.readStreamFile', params, { nodeID, timeout: READ_TIMEOUT_MS }).then(
          (v) => {
            const buf = toBuffer(v);
            if (!done && buf.toString('utf8').trimEnd().endsWith('#EXT-X-ENDLIST')) {
              done = true;
              resolve(buf);
              return;
            }
            if (!best || buf.length > best.length) best = buf;
            settle();
          },
          (err: unknown) => {
            if (isTimeout(err)) this.#suspects.set(nodeID, this.#now() + SUSPECT_MS);
            if (isNotFound(err)) refusal ??= err;
            else if (err instanceof JitcastError && !isUnreachable(err)) refusal = err;
            settle();
          },
        );
      }
    });
  }

  /** Stored streams of an event: the union over every storage node that answers. */
  async listStreams(eventId: string): Promise<StoredStream[]> {
    const byId = new Map<string, Set<string>>();
    for (const r of await this.#all<StoredStream[]>('content-storage.listStreams', { eventId })) {
      for (const s of r) {
        const files = byId.get(s.streamId) ?? new Set<string>();
        s.files.forEach((f) => files.add(f));
        byId.set(s.streamId, files);
      }
    }
    return [...byId.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([streamId, files]) => ({ streamId, files: [...files].sort() }));
  }

  /** Event IDs any storage node holds. */
  async listEventIds(): Promise<string[]> {
    const all = new Set<string>();
    for (const r of await this.#all<string[]>('content-storage.listEventIds', {})) r.forEach((id) => all.add(id));
    return [...all].sort();
  }

  /**
   * Stores a new event's event-info on one storage node, which claims the ID there first (409
   * StateConflictError when it is taken: draw another) and replicates it to the others; the next node
   * if one fails.
   */
  async createEventInfo(info: EventInfo): Promise<void> {
    await this.#write('content-storage.createEventInfo', { info });
  }

  /** Stores event-info on one storage node, which replicates it to the others; the next node if one fails. */
  async putEventInfo(info: EventInfo): Promise<void> {
    await this.#write('content-storage.putEventInfo', { info });
  }

  /**
   * A write, to one node at a time in turn. Any refusal (validation, state, NotFound) is the answer;
   * an unreachable node (timeout, node gone) moves on, and a timeout marks it suspect.
   */
  async #write(action: string, params: unknown): Promise<void> {
    const nodes = this.nodes();
    if (nodes.length === 0) throw new StorageUnavailableError(`no content-storage node is reachable [action:${action}]`);
    let lastErr: unknown;
    for (const nodeID of nodes) {
      try {
        await this.#broker.call(action, params, { nodeID, timeout: WRITE_TIMEOUT_MS });
        return;
      } catch (err) {
        if (isNotFound(err) || (err instanceof JitcastError && !isUnreachable(err))) throw err;
        if (isTimeout(err)) this.#suspects.set(nodeID, this.#now() + SUSPECT_MS);
        lastErr = err;
      }
    }
    throw new StorageUnavailableError(`no content-storage node answered [action:${action} nodes:${nodes.join(',')}] ${(lastErr as Error)?.message ?? ''}`);
  }

  /**
   * A read from the nodes in turn (a refusal other than NotFound is the answer; NotFound and an
   * unreachable node move on, a timeout marks the node suspect), hedged: a node that has not
   * answered after `hedgeMs` keeps its request while the next node is asked too, and the first
   * answer wins. Reads only: they have no effect to repeat.
   */
  #hedged<T>(action: string, params: unknown, hedgeMs = HEDGE_AFTER_MS): Promise<T> {
    const nodes = this.nodes();
    if (nodes.length === 0) return Promise.reject(new StorageUnavailableError(`no content-storage node is reachable [action:${action}]`));
    return new Promise<T>((resolve, reject) => {
      let next = 0;
      let running = 0;
      let done = false;
      let notFound: unknown;
      let lastErr: unknown;
      let timer: NodeJS.Timeout | undefined;
      const finish = (settle: () => void) => {
        done = true;
        clearTimeout(timer);
        settle();
      };
      const ask = () => {
        clearTimeout(timer);
        if (done || next >= nodes.length) return;
        const nodeID = nodes[next++]!;
        running++;
        timer = setTimeout(ask, hedgeMs);
        this.#broker.call(action, params, { nodeID, timeout: READ_TIMEOUT_MS }).then(
          (v) => {
            if (!done) finish(() => resolve(v as T));
          },
          (err: unknown) => {
            running--;
            if (isTimeout(err)) this.#suspects.set(nodeID, this.#now() + SUSPECT_MS);
            if (done) return;
            if (isNotFound(err)) notFound ??= err;
            else if (err instanceof JitcastError && !isUnreachable(err)) return finish(() => reject(err));
            else lastErr = err;
            if (next < nodes.length) ask();
            else if (running === 0) {
              finish(() => reject(notFound ?? new StorageUnavailableError(`no content-storage node answered [action:${action} nodes:${nodes.join(',')}] ${(lastErr as Error)?.message ?? ''}`)));
            }
          },
        );
      };
      ask();
    });
  }

  /** Asks every node at once; the answers of those that answered (StorageUnavailableError if none did). */
  async #all<T>(action: string, params: unknown): Promise<T[]> {
    const nodes = this.nodes();
    const results = await Promise.allSettled(nodes.map((nodeID) => this.#broker.call(action, params, { nodeID, timeout: READ_TIMEOUT_MS }) as Promise<T>));
    const ok = results.filter((r): r is PromiseFulfilledResult<Awaited<T>> => r.status === 'fulfilled').map((r) => r.value as T);
    results.forEach((r, i) => {
      if (r.status === 'rejected' && isTimeout(r.reason)) this.#suspects.set(nodes[i]!, this.#now() + SUSPECT_MS);
    });
    if (ok.length === 0) {
      const refusal = results.find((r) => r.status === 'rejected' && r.reason instanceof JitcastError && !isUnreachable(r.reason)) as PromiseRejectedResult | undefined;
      if (refusal) throw refusal.reason;
      throw new StorageUnavailableError(`no content-storage node answered [action:${action} nodes:${nodes.join(',') || '-'}]`);
    }
    return ok;
  }
}

function isNotFound(err: unknown): boolean {
  return err instanceof NotFoundError || (err as { code?: number; type?: string })?.type === 'NOT_FOUND';
}

function isTimeout(err: unknown): boolean {
  const t = (err as { type?: string; name?: string })?.type ?? '';
  return t === 'REQUEST_TIMEOUT' || (err as Error)?.name === 'RequestTimeoutError';
}

/** Errors that say the node could not be reached, not that it refused. */
function isUnreachable(err: unknown): boolean {
  const t = (err as { type?: string })?.type ?? '';
  return isTimeout(err) || t === 'SERVICE_NOT_AVAILABLE' || t === 'SERVICE_NOT_FOUND' || t === 'STORAGE_UNAVAILABLE' || t === 'REQUEST_REJECTED';
}

/** A Buffer from a reply that may have crossed a JSON transporter (`{type: 'Buffer', data}`). */
export function toBuffer(value: unknown): Buffer {
  if (Buffer.isBuffer(value)) return value;
  const v = value as { type?: string; data?: number[] } | undefined;
  if (v?.type === 'Buffer' && Array.isArray(v.data)) return Buffer.from(v.data);
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  throw new TypeError('expected file contents');
}

const clients = new WeakMap<object, StorageClient>();

/** The storage client of a broker (one per broker, so what it learnt about dead nodes is shared). */
export function storageOf(broker: ServiceBroker | StorageBroker): StorageClient {
  let c = clients.get(broker);
  if (!c) {
    c = new StorageClient(broker as StorageBroker);
    clients.set(broker, c);
  }
  return c;
}
