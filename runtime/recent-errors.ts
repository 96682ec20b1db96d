/**
 * Recent errors for the event manager: every node records its own warn/error/fatal log entries
 * (a Moleculer logger appender beside the console one, so it sees the broker's, transit's and every
 * actor's logger) and broadcasts them in small batches as `jitcast.recentErrors`. Each gateway keeps
 * the newest of what it hears from the whole cluster in a RecentErrorLog and `GET /api/cluster`
 * shows them as `recentErrors`.
 *
 * The appender never logs itself and sends at most one batch per flush interval, so an error raised
 * by the broadcast (NATS away) costs one more entry in the next batch, never a loop.
 */
import { Loggers, type LoggerConfig } from 'moleculer';

/** Event every node broadcasts with its new warn/error entries. */
export const RECENT_ERRORS_EVENT = 'jitcast.recentErrors';

/** One warn/error/fatal log entry of a node. */
export interface RecentError {
  /** When it was logged last (ISO). */
  at: string;
  nodeId: string;
  level: 'warn' | 'error' | 'fatal';
  /** Logger module: the service name (`voice-server`) or broker part (`transit`). */
  module: string;
  message: string;
  /** How often the same message came in a row (1 for once). */
  count: number;
}

/** Payload of RECENT_ERRORS_EVENT. */
export interface RecentErrorsBatch {
  nodeId: string;
  entries: RecentError[];
  /** Entries dropped on this node since the last batch because more came than one batch holds. */
  dropped: number;
}

const LEVELS = new Set(['warn', 'error', 'fatal']);
/** Longest message kept; log lines can carry whole stack traces. */
const MAX_MESSAGE = 400;

/** Log arguments as one line of text: strings as they are, errors by message, the rest as JSON. */
export function logLine(args: unknown[]): string {
  const parts = args.map((a) => {
    if (typeof a === 'string') return a;
    if (a instanceof Error) return a.message;
    try {
      return JSON.stringify(a);
    } catch {
      return String(a);
    }
  });
  const line = parts.join(' ').replace(/\s+/g, ' ').trim();
  return line.length > MAX_MESSAGE ? line.slice(0, MAX_MESSAGE - 1) + '…' : line;
}

/**
 * The newest entries first, at most `capacity`; an entry equal to the newest (same node, level,
 * module and message) counts up instead of taking a row, so one noisy fault cannot push out the rest.
 */
export class RecentErrorLog {
  readonly #entries: RecentError[] = [];
  readonly #capacity: number;

  constructor(capacity = 50) {
    this.#capacity = capacity;
  }

  /** Adds entries in the order they were logged. */
  add(entries: readonly RecentError[]): void {
    for (const e of entries) {
      const top = this.#entries[0];
      if (top && top.nodeId === e.nodeId && top.level === e.level && top.module === e.module && top.message === e.message) {
        top.count += e.count;
        if (e.at > top.at) top.at = e.at;
        continue;
      }
      this.#entries.unshift({ ...e });
      if (this.#entries.length > this.#capacity) this.#entries.length = this.#capacity;
    }
  }

  /** Newest first, copies. */
  list(): RecentError[] {
    return this.#entries.map((e) => ({ ...e }));
  }
}

/** Options of the appender. */
export interface RecentErrorsAppenderOptions {
  /** How often a batch is broadcast, ms. Default 1000. */
  flushMs?: number;
  /** Most entries in one batch; more are counted as dropped. Default 20. */
  maxBatch?: number;
}

/** The appender: a Moleculer logger that keeps only warn and worse and broadcasts them. */
export class RecentErrorsAppender extends Loggers.Base<{ level?: 'warn' }> {
  #pending: RecentError[] = [];
  #dropped = 0;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  readonly #flushMs: number;
  readonly #maxBatch: number;

  constructor(o: RecentErrorsAppenderOptions = {}) {
    super({ level: 'warn' });
    this.#flushMs = o.flushMs ?? 1000;
    this.#maxBatch = o.maxBatch ?? 20;
  }

  override getLogHandler(bindings: { nodeID?: string; mod?: string; svc?: string }) {
    const module = bindings?.svc ?? bindings?.mod ?? '-';
    return (type: string, args: unknown[]) => {
      if (!LEVELS.has(type) || this.#stopped) return;
      const entry: RecentError = {
        at: new Date().toISOString(),
        nodeId: bindings?.nodeID ?? '-',
        level: type as RecentError['level'],
        module,
        message: logLine(args),
        count: 1,
      };
      const last = this.#pending[this.#pending.length - 1];
      if (last && last.level === entry.level && last.module === entry.module && last.message === entry.message) {
        last.count++;
        last.at = entry.at;
      } else if (this.#pending.length >= this.#maxBatch) {
        this.#dropped++;
      } else {
        this.#pending.push(entry);
      }
      this.#schedule();
    };
  }

  #schedule(): void {
    if (this.#timer || this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#flush();
    }, this.#flushMs);
    this.#timer.unref();
  }

  #flush(): void {
    const broker = this.broker;
    if (!broker || this.#pending.length === 0) return;
    // Until the broker runs there is no one to tell: keep the batch for the next try.
    if (!broker.started) {
      this.#schedule();
      return;
    }
    const batch: RecentErrorsBatch = { nodeId: broker.nodeID, entries: this.#pending, dropped: this.#dropped };
    this.#pending = [];
    this.#dropped = 0;
    try {
      Promise.resolve(broker.broadcast(RECENT_ERRORS_EVENT, batch)).catch(() => undefined);
    } catch {
      // The transporter is away: these entries are lost; the next ones may get through.
    }
  }

  override stop() {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    return Promise.resolve();
  }
}

/** The appender as the broker's `logger` option takes it (Moleculer's type names only built-in configs). */
export function recentErrorsLogger(o: RecentErrorsAppenderOptions = {}): LoggerConfig {
  return new RecentErrorsAppender(o) as unknown as LoggerConfig;
}
