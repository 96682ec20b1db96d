/**
 * One supervisor for child processes (STYLE.md §7, after mediasoup's Worker and MediaMTX's
 * externalcmd): a process that fails before it is ready REJECTS `start()` with ProcessStartError;
 * one that dies later EMITS `died`; restarts back off exponentially and are capped; `close()` is
 * idempotent, stops restarting and resolves once the child is gone.
 *
 * The supervisor is generic over what it runs (anything `Supervisable`): `ChildProcessHandle` wraps
 * a plain spawned process, `HlsEncoder` wraps ffmpeg driven through fluent-ffmpeg.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { backoffDelayMs } from '../core/backoff.ts';
import { ProcessStartError } from './errors.ts';

/** How a process ended. `stderrTail` holds its last stderr lines (at most STDERR_TAIL_LINES). */
export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderrTail: string[];
}

/** Lines of stderr kept for died/start-error reports. */
export const STDERR_TAIL_LINES = 20;

/** What a supervisor can run: it emits `died` once when it ends unasked, and `close()` ends it. */
export interface Supervisable {
  once(event: 'died', listener: (exit: ProcessExit) => void): unknown;
  close(): Promise<unknown>;
}

/** Keeps the last `max` lines of a text stream (split on \n or \r, as ffmpeg redraws with \r). */
export class LineTail {
  readonly lines: string[] = [];
  #partial = '';
  constructor(private readonly max = STDERR_TAIL_LINES) {}

  /** Adds a chunk; returns the complete lines it finished. */
  push(chunk: string): string[] {
    const parts = (this.#partial + chunk).split(/\r\n|\r|\n/);
    this.#partial = parts.pop() ?? '';
    const done = parts.filter((l) => l.trim() !== '');
    for (const l of done) this.add(l);
    return done;
  }

  /** Adds one whole line. */
  add(line: string): void {
    this.lines.push(line);
    if (this.lines.length > this.max) this.lines.splice(0, this.lines.length - this.max);
  }

  /** The kept lines plus any unterminated last line. */
  snapshot(): string[] {
    const out = [...this.lines];
    if (this.#partial.trim() !== '') out.push(this.#partial);
    return out.slice(-this.max);
  }
}

/** Options of `ChildProcessHandle.start`. */
export interface ChildProcessOptions {
  command: string;
  args?: string[];
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** The child is ready when a stdout or stderr line matches. Default unset: see `readyAfterMs`. */
  readyLine?: RegExp;
  /** Without `readyLine`, a child that is still alive after this long counts as started. Default 200. */
  readyAfterMs?: number;
  /** A child not ready after this long is killed and `start()` rejects. Default 10000. */
  readyTimeoutMs?: number;
  /** Signal `close()` sends first. Default SIGINT (ffmpeg then finishes its output cleanly). */
  stopSignal?: NodeJS.Signals;
  /** `close()` sends SIGKILL when the child is still there after this long. Default 3000. */
  killGraceMs?: number;
}

interface ChildEvents {
  died: [exit: ProcessExit];
  exit: [exit: ProcessExit];
}

/** A spawned child process with start/died semantics; `close()` ends it (stop signal, then SIGKILL). */
export class ChildProcessHandle extends EventEmitter<ChildEvents> implements Supervisable {
  readonly child: ChildProcess;
  readonly #tail = new LineTail();
  readonly #opts: ChildProcessOptions;
  #exit?: ProcessExit;
  #exited: Promise<ProcessExit>;
  #closing = false;
  #ready = false;

  private constructor(opts: ChildProcessOptions) {
    super();
    this.#opts = opts;
    this.child = spawn(opts.command, opts.args ?? [], { cwd: opts.cwd, env: opts.env, stdio: ['pipe', 'pipe', 'pipe'] });
    this.#exited = new Promise((resolve) => {
      // 'close' (not 'exit') so the last stderr lines are in the tail when we report.
      this.child.once('close', (code, signal) => {
        this.#exit = { code, signal, stderrTail: this.#tail.snapshot() };
        resolve(this.#exit);
        this.emit('exit', this.#exit);
        if (this.#ready && !this.#closing) this.emit('died', this.#exit);
      });
    });
    this.child.stdin?.on('error', () => {}); // EPIPE when the child is gone; 'close' reports it.
    this.child.stderr?.setEncoding('utf8').on('data', (d: string) => this.#tail.push(d));
  }

  /** Spawns the child and resolves once it is ready; rejects with ProcessStartError when it fails first. */
  static start(opts: ChildProcessOptions): Promise<ChildProcessHandle> {
    const h = new ChildProcessHandle(opts);
    return h.#waitReady();
  }

  /** OS process ID (undefined when the spawn failed). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  /** The last stderr lines. */
  get stderrTail(): string[] {
    return this.#tail.snapshot();
  }

  /** How it ended, once it has. */
  get exitInfo(): ProcessExit | undefined {
    return this.#exit;
  }

  #waitReady(): Promise<ChildProcessHandle> {
    const o = this.#opts;
    const desc = [o.command, ...(o.args ?? [])].join(' ').slice(0, 200);
    return new Promise((resolve, reject) => {
      let settled = false;
      const timers: NodeJS.Timeout[] = [];
      const done = (err?: Error) => {
        if (settled) return;
        settled = true;
        timers.forEach(clearTimeout);
        if (err) {
          reject(err);
        } else {
          this.#ready = true;
          resolve(this);
        }
      };
      this.child.once('error', (err) => {
        done(new ProcessStartError(`failed to start [${desc}]: ${err.message}`, { command: o.command, stderrTail: this.stderrTail }));
      });
      this.#exited.then((exit) => {
        done(new ProcessStartError(`failed to start [${desc} code:${exit.code} signal:${exit.signal}]`, { command: o.command, ...exit }));
      });
      if (o.readyLine) {
        const re = o.readyLine;
        const onData = (d: Buffer | string) => {
          if (String(d).split(/\r\n|\r|\n/).some((l) => re.test(l))) done();
        };
        this.child.stdout?.on('data', onData);
        this.child.stderr?.on('data', onData);
      } else {
        this.child.once('spawn', () => timers.push(setTimeout(() => done(), o.readyAfterMs ?? 200)));
      }
      timers.push(
        setTimeout(() => {
          if (settled) return;
          this.child.kill('SIGKILL');
          done(new ProcessStartError(`failed to start [${desc}]: not ready after ${o.readyTimeoutMs ?? 10_000} ms`, { command: o.command, stderrTail: this.stderrTail }));
        }, o.readyTimeoutMs ?? 10_000),
      );
    });
  }

  /** Ends the child (stop signal, SIGKILL after the grace period); idempotent; resolves when it is gone. */
  close(): Promise<ProcessExit> {
    if (!this.#closing) {
      this.#closing = true;
      if (!this.#exit) {
        this.child.kill(this.#opts.stopSignal ?? 'SIGINT');
        const t = setTimeout(() => this.child.kill('SIGKILL'), this.#opts.killGraceMs ?? 3000);
        this.#exited.then(() => clearTimeout(t));
      }
    }
    return this.#exited;
  }
}

/** Restart policy of a `ProcessSupervisor`. */
export interface SupervisorOptions<T extends Supervisable> {
  /** Starts one instance; `attempt` is 0 for the first start, then 1, 2, … for restarts. */
  start: (attempt: number) => Promise<T>;
  /** Restart after `died`. Default true. */
  restart?: boolean;
  /** First restart delay in ms. Default 250. */
  initialDelayMs?: number;
  /** Largest restart delay in ms (the delay doubles per attempt up to this). Default 8000. */
  maxDelayMs?: number;
  /** An instance that ran this long before dying resets the back-off, in ms. Default 30000. */
  stableMs?: number;
  /** Restart attempts in a row before giving up. Default 10. */
  maxRestarts?: number;
}

/** Events of a `ProcessSupervisor`, name → arguments. */
export interface SupervisorEvents<T> {
  /** The running instance died; a restart follows unless closed, disabled or out of attempts. */
  died: [exit: ProcessExit, instance: T];
  /** A restart succeeded; `attempt` counts restarts since the last stable run. */
  restarted: [instance: T, attempt: number];
  /** A restart attempt failed to start; another follows after the back-off. */
  restartFailed: [error: Error, attempt: number];
  /** Out of attempts: nothing runs any more. */
  gaveUp: [attempts: number];
}

/** Runs one `Supervisable` at a time and restarts it with exponential back-off when it dies. */
export class ProcessSupervisor<T extends Supervisable> extends EventEmitter<SupervisorEvents<T>> {
  readonly #opts: Required<SupervisorOptions<T>>;
  #current?: T;
  #startedAt = 0;
  #attempt = 0;
  #timer?: NodeJS.Timeout;
  #pendingStart?: Promise<unknown>;
  #closed = false;
  #closePromise?: Promise<void>;

  constructor(opts: SupervisorOptions<T>) {
    super();
    this.#opts = { restart: true, initialDelayMs: 250, maxDelayMs: 8000, stableMs: 30_000, maxRestarts: 10, ...opts };
  }

  /** The running instance, if any. */
  get current(): T | undefined {
    return this.#current;
  }

  /** Restart attempts since the last stable run. */
  get attempts(): number {
    return this.#attempt;
  }

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** The delay before restart attempt `n` (1-based): initial × 2^(n-1), capped. */
  delayFor(n: number): number {
    return backoffDelayMs(n, this.#opts);
  }

  /** Starts the first instance; rejects with ProcessStartError when it fails to start. */
  async start(): Promise<T> {
    if (this.#closed) throw new ProcessStartError('failed to start: supervisor is closed');
    if (this.#current) return this.#current;
    const instance = await this.#startOne(0);
    this.#attach(instance);
    return instance;
  }

  async #startOne(attempt: number): Promise<T> {
    const p = this.#opts.start(attempt);
    this.#pendingStart = p.catch(() => {});
    try {
      const instance = await p;
      if (this.#closed) {
        // close() ran while we were starting: the new instance must not outlive it.
        await instance.close();
        throw new ProcessStartError('failed to start: supervisor closed while starting');
      }
      return instance;
    } catch (err) {
      if (err instanceof ProcessStartError) throw err;
      throw new ProcessStartError(`failed to start: ${(err as Error)?.message ?? String(err)}`, { cause: String(err) });
    } finally {
      this.#pendingStart = undefined;
    }
  }

  #attach(instance: T): void {
    this.#current = instance;
    this.#startedAt = performance.now();
    instance.once('died', (exit) => {
      if (this.#current !== instance) return;
      this.#current = undefined;
      // A long healthy run means the failure is not a crash loop: start the back-off afresh.
      if (performance.now() - this.#startedAt >= this.#opts.stableMs) this.#attempt = 0;
      this.emit('died', exit, instance);
      this.#scheduleRestart();
    });
  }

  #scheduleRestart(): void {
    if (this.#closed || !this.#opts.restart) return;
    if (this.#attempt >= this.#opts.maxRestarts) {
      this.emit('gaveUp', this.#attempt);
      return;
    }
    const attempt = ++this.#attempt;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#startOne(attempt).then(
        (instance) => {
          this.#attach(instance);
          this.emit('restarted', instance, attempt);
        },
        (err: Error) => {
          if (this.#closed) return;
          this.emit('restartFailed', err, attempt);
          this.#scheduleRestart();
        },
      );
    }, this.delayFor(attempt));
  }

  /** Stops restarting and closes the running instance; idempotent; resolves when it is gone. */
  close(): Promise<void> {
    if (this.#closePromise) return this.#closePromise;
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#closePromise = (async () => {
      // A start in flight closes its own instance once it sees #closed (see #startOne).
      await this.#pendingStart;
      const cur = this.#current;
      this.#current = undefined;
      if (cur) await cur.close();
    })();
    return this.#closePromise;
  }
}
