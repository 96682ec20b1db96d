/**
 * The node supervisor (issue 3, item 7): `jitcast start` and `jitcast node` run the real node, the
 * worker, as the child of a small parent that starts it again when it dies unasked, so a crashed
 * node heals itself. The worker is the same command (`node bin/jitcast.js …`, same argv) with
 * `JITCAST_WORKER=1`, stdio inherited and an IPC channel, on which it says `ready` after its banner
 * and `stopping` when a signal stops it (bin/jitcast.ts `runNode`).
 *
 * - Restarts back off 1 s, 2 s, 4 s … 30 s; a worker that stayed up 60 s resets the back-off
 *   (core/backoff.ts, the back-off of runtime/supervisor.ts too).
 * - A worker that exits before it was ever ready with EX_CONFIG (a ConfigError) or EX_USAGE (a bad
 *   flag) is not restarted: the supervisor exits with the same code, below the worker's message.
 *   Any other death is restarted, before or after ready.
 * - SIGINT/SIGTERM: the supervisor passes the signal to the worker (its own stop: broker.stop, then
 *   exit 0), SIGKILLs it if it is still there after the grace period, and exits 0. Nothing restarts
 *   while stopping.
 * - The worker stops when its supervisor disappears (IPC 'disconnect'); both stay in one process
 *   group, so a signal to the group (a terminal's Ctrl-C, a harness's SIGKILL) reaches both at once.
 * - The node ID is pinned for the worker (`<hostname>-<supervisor pid>` unless set), so a restarted
 *   node comes back under the ID it had.
 * - `--supervise false` / `JITCAST_SUPERVISE=0` runs the node in the CLI process instead, for init
 *   systems (systemd) that restart it themselves.
 *
 * This module imports only node: built-ins and core/: the supervisor loads neither Moleculer nor the
 * actors (runtime/supervisor.ts would bring Moleculer in through runtime/errors.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { hostname } from 'node:os';
import { backoffDelayMs, nextAttempt, type BackoffPolicy } from '../core/backoff.ts';

/** Exit code of a bad command line (sysexits.h EX_USAGE). */
export const EX_USAGE = 64;
/** Exit code of a configuration error, a ConfigError (sysexits.h EX_CONFIG). */
export const EX_CONFIG = 78;
/** Environment marker of a worker: `JITCAST_WORKER=1`. */
export const WORKER_ENV = 'JITCAST_WORKER';
/** Back-off of node restarts: 1 s doubling to 30 s, reset by 60 s up. */
export const NODE_BACKOFF: BackoffPolicy = { initialDelayMs: 1000, maxDelayMs: 30_000, stableMs: 60_000 };

/** What a worker tells its supervisor over IPC. */
export type WorkerMessage = { type: 'ready'; nodeId: string; pid: number } | { type: 'stopping'; reason: string };

/** Whether and how a command line runs supervised. */
export interface Supervision {
  supervise: boolean;
  /** The CLI command (`start`, `node`, `status`, …), when there is one. */
  command?: string;
  /** The node ID the command line or environment sets, if any. */
  nodeId?: string;
  /** A `--supervise` / `JITCAST_SUPERVISE` value that is neither true nor false. */
  error?: string;
}

/** Commands that run a node, and so run supervised by default. */
const NODE_COMMANDS = new Set(['start', 'node']);
/** The CLI's options that take no value (bin/jitcast.ts `parse`); every other `--flag` takes one. */
const VALUELESS = new Set(['json', 'help']);

function onOff(v: string): boolean | undefined {
  if (/^(1|true|yes|on)$/i.test(v)) return true;
  if (/^(0|false|no|off)$/i.test(v)) return false;
  return undefined;
}

/**
 * Whether a command line (the arguments after `bin/jitcast.js`) runs under a node supervisor:
 * `start` and `node` do unless `--supervise false` or `JITCAST_SUPERVISE=0` (the environment wins,
 * as for every JITCAST_* setting), or this process is a worker already. Help never does.
 */
export function supervisionOf(argv: readonly string[], env: NodeJS.ProcessEnv): Supervision {
  let command: string | undefined;
  let help = false;
  let flagSupervise: string | undefined;
  let flagNodeId: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      command ??= argv[i + 1];
      break;
    }
    if (a === '-h') {
      help = true;
    } else if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
      if (name === 'help') help = true;
      if (VALUELESS.has(name)) continue;
      const value = eq > 0 ? a.slice(eq + 1) : argv[++i];
      if (name === 'supervise') flagSupervise = value;
      if (name === 'node-id') flagNodeId = value;
    } else {
      command ??= a;
    }
  }
  const nodeId = env.JITCAST_NODE_ID || flagNodeId || undefined;
  if (!command || !NODE_COMMANDS.has(command) || help || env[WORKER_ENV] === '1') return { supervise: false, command, nodeId };
  const raw = env.JITCAST_SUPERVISE || flagSupervise;
  if (raw === undefined) return { supervise: true, command, nodeId };
  const on = onOff(raw);
  if (on === undefined) return { supervise: false, command, nodeId, error: `'supervise' must be true or false, got '${raw}'` };
  return { supervise: on, command, nodeId };
}

/** How a worker ended, as its supervisor saw it. */
export interface WorkerEnd {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** ms from its `ready` to its exit; undefined when it never was ready. */
  upMs?: number;
  /** The supervisor is stopping, or the worker said it stopped on a signal of its own. */
  asked: boolean;
}

/** What to do once a worker has exited: exit with a code, or restart after a delay. */
export type AfterWorkerEnd =
  | { action: 'exit'; code: number; why: 'stopped' | 'config' }
  | { action: 'restart'; attempt: number; delayMs: number };

/**
 * The supervisor's decision after a worker exits, when `previous` restarts came before it in a row:
 * an asked stop exits (0 for a clean stop), a configuration or usage error before ready exits with
 * that code, anything else restarts with back-off.
 */
export function afterWorkerEnd(end: WorkerEnd, previous: number, policy: BackoffPolicy = NODE_BACKOFF): AfterWorkerEnd {
  if (end.asked) {
    // A worker ended by the stop signal itself (still starting, no handler yet) stopped as asked too.
    const clean = end.code === 0 || (end.code === null && (end.signal === 'SIGINT' || end.signal === 'SIGTERM'));
    return { action: 'exit', code: clean ? 0 : (end.code ?? 1), why: 'stopped' };
  }
  if (end.upMs === undefined && (end.code === EX_CONFIG || end.code === EX_USAGE)) return { action: 'exit', code: end.code, why: 'config' };
  const attempt = nextAttempt(previous, end.upMs ?? 0, policy);
  return { action: 'restart', attempt, delayMs: backoffDelayMs(attempt, policy) };
}

// ---------------------------------------------------------------------------------------------
// The worker's side (bin/jitcast.ts runNode).

/** In a worker: true when it runs under a node supervisor (marker set, IPC channel open). */
export function underSupervisor(): boolean {
  return process.env[WORKER_ENV] === '1' && typeof process.send === 'function';
}

/** In a worker: tells the supervisor; a no-op without one or once it is gone. */
export function tellSupervisor(m: WorkerMessage): void {
  // The callback swallows a channel that closed meanwhile (the supervisor died): 'disconnect' handles that.
  if (process.connected) process.send!(m, () => {});
}

// ---------------------------------------------------------------------------------------------
// The supervisor's side.

/** Options of a `NodeSupervisor`. */
export interface NodeSupervisorOptions {
  /** The CLI entry the worker runs (bin/jitcast.js). */
  script: string;
  /** Arguments after the script, passed to every worker unchanged. */
  argv: string[];
  /** The worker's environment (the marker is added). */
  env: NodeJS.ProcessEnv;
  /** Node's own flags for the worker. Default this process's, without `--inspect*` (its port would clash). */
  execArgv?: string[];
  /** Node ID for log lines until the worker reports its own. */
  nodeId: string;
  /** Restart back-off. Default NODE_BACKOFF. */
  policy?: BackoffPolicy;
  /** SIGKILL the worker when it is still there this long after the stop signal, ms. Default 20000 (the worker forces its own exit after 15 s). */
  stopGraceMs?: number;
  /** Where log lines go. Default: stdout for info, stderr for warn and error, with the node's time stamp. */
  log?: (level: 'info' | 'warn' | 'error', line: string) => void;
}

function printLog(level: 'info' | 'warn' | 'error', line: string): void {
  // The same `[HH:MM:SS.mmmZ] LEVEL` prefix as the node's own (Moleculer "short") lines.
  const text = `[${new Date().toISOString().slice(11)}] ${level.toUpperCase().padEnd(5)} supervisor: ${line}\n`;
  (level === 'info' ? process.stdout : process.stderr).write(text);
}

function seconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}

/** Runs one node worker at a time and restarts it with back-off when it dies unasked; `done` resolves with the code to exit with. */
export class NodeSupervisor {
  /** Resolves once the supervisor is finished, with the exit code it should end with. */
  readonly done: Promise<number>;
  readonly #o: Required<Omit<NodeSupervisorOptions, 'nodeId'>>;
  #nodeId: string;
  #worker?: ChildProcess;
  #attempt = 0;
  #restarts = 0;
  #timer?: NodeJS.Timeout;
  #stopping = false;
  #finish!: (code: number) => void;

  constructor(o: NodeSupervisorOptions) {
    this.#o = { policy: NODE_BACKOFF, stopGraceMs: 20_000, log: printLog, execArgv: process.execArgv.filter((a) => !a.startsWith('--inspect')), ...o };
    this.#nodeId = o.nodeId;
    let finished = false;
    this.done = new Promise((resolve) => {
      this.#finish = (code) => {
        if (finished) return;
        finished = true;
        if (this.#timer) clearTimeout(this.#timer);
        resolve(code);
      };
    });
  }

  /** The running worker's pid, if one runs. */
  get workerPid(): number | undefined {
    return this.#worker?.pid;
  }

  /** Starts the first worker. */
  start(): void {
    if (!this.#worker && !this.#stopping) this.#spawn();
  }

  #spawn(): void {
    const o = this.#o;
    const child = spawn(process.execPath, [...o.execArgv, o.script, ...o.argv], {
      env: { ...o.env, [WORKER_ENV]: '1' },
      stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    });
    this.#worker = child;
    const restart = this.#restarts;
    let readyAt: number | undefined;
    let workerStopping = false;
    let ended = false;
    const ctx = () => `node:${this.#nodeId} pid:${child.pid ?? '-'}`;
    this.#o.log('info', `node worker started [${ctx()}${restart ? ` restart:${restart}` : ''}]`);

    child.on('message', (m: WorkerMessage) => {
      if (m?.type === 'ready') {
        readyAt = performance.now();
        if (typeof m.nodeId === 'string') this.#nodeId = m.nodeId;
        if (restart) this.#o.log('info', `node worker back [${ctx()} restarts:${restart}]`);
      } else if (m?.type === 'stopping') {
        workerStopping = true;
      }
    });
    const onEnd = (code: number | null, signal: NodeJS.Signals | null, err?: Error) => {
      if (ended) return;
      ended = true;
      if (this.#worker === child) this.#worker = undefined;
      const upMs = readyAt === undefined ? undefined : performance.now() - readyAt;
      const next = afterWorkerEnd({ code, signal, upMs, asked: this.#stopping || workerStopping }, this.#attempt, o.policy);
      const what = `[${ctx()} code:${code} signal:${signal} ${upMs === undefined ? 'never ready' : `up:${seconds(upMs)}`}${err ? ` error:${err.message}` : ''}]`;
      if (next.action === 'exit') {
        if (next.why === 'config') o.log('error', `node worker failed to start ${what}: ${code === EX_CONFIG ? 'configuration' : 'command line'} error, not restarting`);
        else o.log('info', `node worker stopped ${what}`);
        this.#finish(next.code);
        return;
      }
      this.#attempt = next.attempt;
      o.log('warn', `node worker died ${what}, restart ${next.attempt} in ${seconds(next.delayMs)}`);
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        if (this.#stopping) return;
        this.#restarts++;
        this.#spawn();
      }, next.delayMs);
    };
    child.once('exit', (code, signal) => onEnd(code, signal));
    // A spawn that failed (no pid) never emits 'exit'; other 'error's (a failed kill) change nothing.
    child.on('error', (err) => {
      if (child.pid === undefined) onEnd(null, null, err);
    });
  }

  /** Stops the worker (`signal`, SIGKILL after the grace period) and finishes; idempotent. */
  stop(signal: NodeJS.Signals = 'SIGINT'): Promise<number> {
    if (this.#stopping) return this.done;
    this.#stopping = true;
    if (this.#timer) clearTimeout(this.#timer);
    const w = this.#worker;
    if (!w) {
      // Between a death and its restart: nothing to stop.
      this.#o.log('info', `${signal}: stopping [node:${this.#nodeId}], no node worker running`);
      this.#finish(0);
      return this.done;
    }
    this.#o.log('info', `${signal}: stopping node worker [node:${this.#nodeId} pid:${w.pid}]`);
    w.kill(signal);
    const grace = setTimeout(() => {
      this.#o.log('warn', `node worker still running ${seconds(this.#o.stopGraceMs)} after ${signal} [node:${this.#nodeId} pid:${w.pid}], SIGKILL`);
      w.kill('SIGKILL');
    }, this.#o.stopGraceMs);
    void this.done.then(() => clearTimeout(grace));
    return this.done;
  }
}

/**
 * The CLI's entry (bin/jitcast.js): when the command line runs supervised, becomes the supervisor
 * of `script` and returns true (the process exits when the supervisor is done); otherwise returns
 * false and the caller runs the command itself.
 */
export function superviseIfAsked(argv: string[], script: string, env: NodeJS.ProcessEnv = process.env): boolean {
  const s = supervisionOf(argv, env);
  if (s.error) {
    process.stderr.write(`jitcast: ${s.error}\n`);
    process.exit(EX_CONFIG);
  }
  if (!s.supervise) return false;
  // Pinned, so every worker runs under the ID an unsupervised node would have had.
  const nodeId = s.nodeId ?? `${hostname()}-${process.pid}`;
  const workerEnv = s.nodeId ? env : { ...env, JITCAST_NODE_ID: nodeId };
  const sup = new NodeSupervisor({ script, argv, env: workerEnv, nodeId });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => void sup.stop(sig));
  void sup.done.then((code) => process.exit(code));
  sup.start();
  return true;
}
