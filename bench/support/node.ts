/**
 * A jitcast node for a benchmark: `node bin/jitcast.js start` as a child process on the bench
 * ports (HTTP 31080, SIP 31060, RTP 30000-30999, encoders 29000-29999), configured through
 * JITCAST_* variables as an operator would. Keeps a bounded tail of its output and every
 * warning/error line, and on stop kills (by pid) any ffmpeg it left behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { processTree, readStat } from './proc.ts';
import { apiRequest } from '../../spec/support/node-process.ts';
import { mapLimit } from '../../runtime/map-limit.ts';

export const REPO = resolve(fileURLToPath(new URL('../..', import.meta.url)));

export const BENCH_PORTS = {
  http: 31080,
  sip: 31060,
  rtp: '30000-30999',
  encoders: '29000-29999',
  sippSip: 31090,
  sippMedia: 31200,
} as const;

export const BENCH_SECRET = 'bench-secret-0123456789abcdefghijklmnopqrstuvwxyz';
export const BENCH_API_KEY = 'bench-api-key-0123456789';

/** A running node under measurement. */
export interface BenchNode {
  proc: ChildProcess;
  pid: number;
  dataDir: string;
  baseUrl: string;
  sipTarget: string;
  /** The last ~200 kB the node printed. */
  tail(): string;
  /** Lines the node logged at WARN/ERROR/FATAL level (first 500). */
  problems(): string[];
  /** Count of WARN/ERROR/FATAL lines. */
  problemCount(): number;
  api(method: string, path: string, body?: unknown): Promise<{ status: number; body: any; text: string }>;
  stop(): Promise<void>;
}

const TAIL = 200_000;

/** Starts a node with every role; rejects if it is not up within 60 s. */
export async function startBenchNode(o: { env?: Record<string, string>; warm?: boolean } = {}): Promise<BenchNode> {
  const dataDir = mkdtempSync(join(tmpdir(), 'jitcast-bench-'));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    JITCAST_DATA_DIR: dataDir,
    JITCAST_HTTP_PORT: String(BENCH_PORTS.http),
    JITCAST_SIP_PORT: String(BENCH_PORTS.sip),
    JITCAST_RTP_PORTS: BENCH_PORTS.rtp,
    JITCAST_ENCODER_PORTS: BENCH_PORTS.encoders,
    JITCAST_API_KEYS: BENCH_API_KEY,
    JITCAST_SECRET: BENCH_SECRET,
    JITCAST_NODE_ID: 'bench-node',
    JITCAST_LOG_LEVEL: 'info',
    ...o.env,
  };
  const proc = spawn(process.execPath, ['bin/jitcast.js', 'start'], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let partial = '';
  const problems: string[] = [];
  let problemCount = 0;
  const onData = (d: Buffer) => {
    const s = d.toString();
    out += s;
    if (out.length > TAIL * 1.5) out = out.slice(-TAIL);
    const lines = (partial + s).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (/\b(WARN|ERROR|FATAL)\b/.test(line) || /\b(warn|error|fatal)\b\s*[:\]]/i.test(line.slice(0, 60))) {
        problemCount++;
        if (problems.length < 500) problems.push(line.replace(/\x1b\[[0-9;]*m/g, '').slice(0, 400));
      }
    }
  };
  proc.stdout!.on('data', onData);
  proc.stderr!.on('data', onData);
  await new Promise<void>((resolveUp, reject) => {
    const timer = setTimeout(() => reject(new Error(`node did not start in 60 s:\n${out.slice(-3000)}`)), 60_000);
    const check = () => {
      if (/is up/.test(out)) {
        clearTimeout(timer);
        proc.stdout!.off('data', check);
        resolveUp();
      }
    };
    proc.stdout!.on('data', check);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`node exited with ${code} before it was up:\n${out.slice(-3000)}`));
    });
  });
  const baseUrl = `http://127.0.0.1:${BENCH_PORTS.http}`;
  let stopped: Promise<void> | undefined;
  const node: BenchNode = {
    proc,
    pid: proc.pid!,
    dataDir,
    baseUrl,
    sipTarget: `127.0.0.1:${BENCH_PORTS.sip}`,
    tail: () => out,
    problems: () => problems,
    problemCount: () => problemCount,
    api: (method, path, body) => apiRequest(baseUrl, BENCH_API_KEY, method, path, body, { timeoutMs: 20_000 }),
    stop() {
      return (stopped ??= (async () => {
        const leftovers = processTree(proc.pid!).filter((p) => p.pid !== proc.pid);
        if (proc.exitCode === null && proc.signalCode === null) {
          const gone = new Promise((r) => proc.once('exit', r));
          proc.kill('SIGINT');
          const t = setTimeout(() => proc.kill('SIGKILL'), 20_000);
          await gone;
          clearTimeout(t);
        }
        // ffmpeg children the node did not reap: end them by pid (only ones this node spawned).
        await new Promise((r) => setTimeout(r, 500));
        for (const p of leftovers) {
          // Same pid and same command as when we saw it as the node's child: not a reused pid.
          if (readStat(p.pid)?.comm !== p.comm) continue;
          try {
            process.kill(p.pid, 'SIGKILL');
          } catch {
            /* already gone */
          }
        }
        rmSync(dataDir, { recursive: true, force: true });
      })());
    },
  };
  if (o.warm !== false) {
    try {
      await warmUp(node);
    } catch (err) {
      await node.stop();
      throw err;
    }
  }
  return node;
}

/** Reserves an event; returns what the API answered. */
export async function reserve(node: BenchNode, title: string): Promise<{ eventId: string; pin: string; attendeeUrl: string }> {
  for (let attempt = 0; ; attempt++) {
    const res = await node.api('POST', '/api/events', { title });
    if (res.status === 201) return res.body;
    if (res.status === 429 && attempt < 20) {
      await new Promise((r) => setTimeout(r, 250));
      continue;
    }
    throw new Error(`reservation failed: ${res.status} ${res.text.slice(0, 300)}`);
  }
}

/** Reserves `n` events, a few at a time. */
export function reserveMany(node: BenchNode, n: number, title: string, concurrency = 8): Promise<Array<{ eventId: string; pin: string; attendeeUrl: string }>> {
  return mapLimit(Array.from({ length: n }, (_, i) => i), concurrency, (i) => reserve(node, `${title} #${i + 1}`));
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Makes the node open its reporting database before anything is measured: the first reservation
 * creates the embedded PGlite database, which blocks the node's event loop for seconds (seen: an
 * HTTP GET taking 5.3 s and 264 late mixer frames). Reserves one event, then waits until the API
 * answers quickly again. Returns how long the slowest answer took (ms).
 */
export async function warmUp(node: BenchNode, maxMs = 30_000): Promise<{ slowestMs: number; tookMs: number }> {
  const t0 = Date.now();
  await reserve(node, 'bench warm-up');
  let slowest = 0;
  let quick = 0;
  while (Date.now() - t0 < maxMs && quick < 5) {
    const a = Date.now();
    await node.api('GET', '/api/events/00000000').catch(() => undefined);
    const d = Date.now() - a;
    slowest = Math.max(slowest, d);
    quick = d < 100 && Date.now() - t0 > 2000 ? quick + 1 : 0;
    await sleep(200);
  }
  return { slowestMs: slowest, tookMs: Date.now() - t0 };
}

