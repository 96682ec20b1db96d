/**
 * The gateway's listener workers (config `listenerWorkers`, default 0): child processes that accept
 * connections on the gateway's own listening socket and answer held live segments themselves
 * (runtime/listener-worker.ts). The kernel hands each new connection to whichever process accepts
 * first, so listener traffic spreads over more cores while the port, the API and every page stay
 * the gateway's: a worker passes all else to the gateway over a Unix socket in the data directory.
 *
 * This side forks the workers (`bin/listener-worker.js`), hands each the listening socket, answers
 * their file questions through `answerFile` (the attendee access actor's hot path), passes their
 * usage counts and latencies on through `onStats`, and restarts a worker that dies (after 1 s,
 * doubling to 30 s while it keeps dying). `stop()` ends them.
 */
import { fork, type ChildProcess } from 'node:child_process';
import type { Server } from 'node:net';
import { fileURLToPath } from 'node:url';

/** First message to a worker, with the listening socket as its handle. */
export interface WorkerInit {
  type: 'init';
  secret: string;
  hotMs: number;
  /** The gateway's Unix socket for everything the worker does not answer. */
  socketPath: string;
  tlsCert?: string;
  tlsKey?: string;
}

/** A worker asking for a live file. */
export interface WorkerFileQuestion {
  type: 'file';
  id: number;
  streamId: string;
  file: string;
  a: string;
  l?: string;
}

/** The answer: the file as the gateway's hot path answers it, or `ok: false` (the worker then proxies the request). */
export interface WorkerFileAnswer {
  type: 'file';
  id: number;
  ok: boolean;
  body?: Buffer | Uint8Array | string;
  contentType?: string;
  cacheControl?: string;
  /** The bytes never change (a segment a playlist lists): the worker may keep them. */
  keep?: boolean;
  /** The segment's duration, for usage. */
  durationS?: number;
  /** A playlist's template: `parts.join(query)` is the playlist for a listener's query (`a=…[&l=…]` after `a=`). */
  parts?: string[];
}

/** Once a second: what a worker answered itself. */
export interface WorkerStats {
  type: 'stats';
  pid: number;
  /** Segments served, by event, listener and duration. */
  segments: Array<{ eventId: string; listenerId: string | null; durationS: number; n: number }>;
  /** Playlists served, by event and listener. */
  playlists: Array<{ eventId: string; listenerId: string | null; n: number }>;
  /** Requests answered from the worker's own memory (no question to the node). */
  selfServed: number;
  /** Seconds per request the worker answered (from memory or with the node's answer; not those it passed on). */
  latencies: Float64Array;
}

export type WorkerMessage = WorkerInit | WorkerFileQuestion | WorkerFileAnswer | WorkerStats | { type: 'ready'; pid: number };

/** What the parent does with a worker's questions and reports. */
export interface ListenerWorkersOptions {
  count: number;
  server: Server;
  init: Omit<WorkerInit, 'type'>;
  answerFile(q: WorkerFileQuestion): Promise<Omit<WorkerFileAnswer, 'type' | 'id'>>;
  onStats(s: WorkerStats): void;
  logger: { info(msg: string): void; warn(msg: string): void };
}

const ENTRY = fileURLToPath(new URL('../bin/listener-worker.js', import.meta.url));

/** The running workers of one gateway. */
export class ListenerWorkers {
  readonly #o: ListenerWorkersOptions;
  readonly #children = new Set<ChildProcess>();
  readonly #timers = new Set<NodeJS.Timeout>();
  #stopping = false;

  constructor(o: ListenerWorkersOptions) {
    this.#o = o;
  }

  /** Starts every worker; resolves once each accepts connections. */
  async start(): Promise<void> {
    await Promise.all(Array.from({ length: this.#o.count }, (_, i) => this.#spawn(i, 0)));
  }

  /** Worker processes running now. */
  get pids(): number[] {
    return [...this.#children].map((c) => c.pid!).filter(Boolean);
  }

  #spawn(index: number, failures: number): Promise<void> {
    const child = fork(ENTRY, [], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.#children.add(child);
    child.on('message', (m: WorkerMessage) => this.#onMessage(child, m));
    child.on('exit', (code, signal) => {
      this.#children.delete(child);
      if (this.#stopping) return;
      const delay = Math.min(30_000, 1000 * 2 ** failures);
      this.#o.logger.warn(`listener worker died, restarting in ${delay} ms [worker:${index} pid:${child.pid} code:${code ?? '-'} signal:${signal ?? '-'}]`);
      const t = setTimeout(() => {
        this.#timers.delete(t);
        if (!this.#stopping) void this.#spawn(index, failures + 1).catch(() => undefined);
      }, delay);
      this.#timers.add(t);
    });
    return new Promise<void>((resolve, reject) => {
      const onReady = (m: WorkerMessage) => {
        if (m?.type !== 'ready') return;
        child.off('message', onReady);
        this.#o.logger.info(`listener worker up [worker:${index} pid:${m.pid}]`);
        resolve();
      };
      child.on('message', onReady);
      child.once('exit', () => reject(new Error(`listener worker ${index} exited before it was ready`)));
      child.send({ type: 'init', ...this.#o.init } satisfies WorkerInit, this.#o.server);
    });
  }

  #onMessage(child: ChildProcess, m: WorkerMessage): void {
    if (m?.type === 'file') {
      const q = m as WorkerFileQuestion;
      this.#o.answerFile(q).then(
        (a) => child.connected && child.send({ type: 'file', id: q.id, ...a } satisfies WorkerFileAnswer),
        () => child.connected && child.send({ type: 'file', id: q.id, ok: false } satisfies WorkerFileAnswer),
      );
    } else if (m?.type === 'stats') {
      this.#o.onStats(m);
    }
  }

  /** Ends every worker (SIGTERM; they also exit when this process goes). Idempotent. */
  async stop(): Promise<void> {
    this.#stopping = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    await Promise.all(
      [...this.#children].map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            c.once('exit', () => resolve());
            c.kill('SIGTERM');
          }),
      ),
    );
  }
}
