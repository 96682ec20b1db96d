/**
 * Redis for specs: the machine's shared Redis (`JITCAST_SPEC_REDIS_URL`, default
 * redis://127.0.0.1:6379) under a namespace of the spec's own, cleaned up afterwards, and a private
 * `redis-server` on a spec port that a spec may kill and restart (an outage that touches no other
 * spec: the shared Redis is never stopped).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { createRedis, type RedisConnection, type RedisLogger } from '../../runtime/redis.ts';

/** The shared Redis the specs use. */
export const SPEC_REDIS_URL = process.env.JITCAST_SPEC_REDIS_URL ?? 'redis://127.0.0.1:6379';
/** The shared NATS the specs use. */
export const SPEC_NATS_URL = process.env.JITCAST_SPEC_NATS_URL ?? 'nats://127.0.0.1:4222';

/** A namespace no other spec run uses (also the Moleculer namespace, so NATS traffic stays apart). */
export function specNamespace(what: string): string {
  return `spec-${what}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

/** A logger that keeps lines for assertions (and prints nothing). */
export class CapturingLogger implements RedisLogger {
  readonly lines: string[] = [];
  info(msg: string): void {
    this.lines.push(`info ${msg}`);
  }
  warn(msg: string): void {
    this.lines.push(`warn ${msg}`);
  }
  debug(msg: string): void {
    this.lines.push(`debug ${msg}`);
  }
  error(msg: string): void {
    this.lines.push(`error ${msg}`);
  }
}

/** Opens a connection and waits until it is ready (or `timeoutMs`). */
export async function connectRedis(url: string, namespace: string, name = 'spec', logger: RedisLogger = new CapturingLogger(), timeoutMs = 5000): Promise<RedisConnection> {
  const conn = createRedis({ url, namespace, name, logger });
  conn.connect();
  await waitReady(conn, timeoutMs);
  return conn;
}

/** Resolves once the connection is ready. */
export async function waitReady(conn: RedisConnection, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!conn.ready) {
    if (Date.now() > until) throw new Error(`redis connection ${conn.name} not ready after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Deletes every key under `jitcast:<namespace>:` in the Redis at `url`. */
export async function purgeNamespace(url: string, namespace: string): Promise<number> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  client.on('error', () => {});
  try {
    await client.connect();
    let cursor = '0';
    let n = 0;
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `jitcast:${namespace}:*`, 'COUNT', 500);
      cursor = next;
      if (keys.length > 0) n += await client.del(...keys);
    } while (cursor !== '0');
    return n;
  } finally {
    client.disconnect();
  }
}

/** Keys under `jitcast:<namespace>:`, sorted, without the prefix. */
export async function keysOf(url: string, namespace: string): Promise<string[]> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  client.on('error', () => {});
  try {
    await client.connect();
    const prefix = `jitcast:${namespace}:`;
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      cursor = next;
      keys.push(...batch.map((k) => k.slice(prefix.length)));
    } while (cursor !== '0');
    return keys.sort();
  } finally {
    client.disconnect();
  }
}

/** A redis-server of the spec's own (nothing on disk), which the spec may kill and start again. */
export interface PrivateRedis {
  url: string;
  port: number;
  /** Kills it at once (SIGKILL): everything it held is gone. */
  kill(): Promise<void>;
  /** Starts it again on the same port, empty, and waits until it answers. */
  start(): Promise<void>;
}

/** Starts a private redis-server on `port` (11630–11649 are this project's spec ports). */
export async function startPrivateRedis(port: number): Promise<PrivateRedis> {
  // DEBUG SLEEP lets a spec make Redis hang (Redis 7 refuses DEBUG unless enabled).
  const debug = ['--enable-debug-command', 'yes'];
  let proc: ChildProcess | undefined;
  const start = async () => {
    proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--logfile', '', ...debug], { stdio: 'ignore' });
    const until = Date.now() + 5000;
    for (;;) {
      const probe = new Redis(`redis://127.0.0.1:${port}`, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      probe.on('error', () => {});
      try {
        await probe.connect();
        await probe.ping();
        probe.disconnect();
        return;
      } catch {
        probe.disconnect();
        if (Date.now() > until) throw new Error(`private redis-server on ${port} did not start`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    async kill() {
      const p = proc;
      proc = undefined;
      if (!p || p.exitCode !== null || p.signalCode !== null) return;
      const gone = new Promise((r) => p.once('exit', r));
      p.kill('SIGKILL');
      await gone;
    },
    start,
  };
}
