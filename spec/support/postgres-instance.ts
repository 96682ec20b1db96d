/**
 * A PostgreSQL server of the spec's own (initdb in a temp directory, run as user `postgres`), which
 * the spec may stop and start again: a database outage that touches no other spec. The machine's
 * shared PostgreSQL (127.0.0.1:5432) is never stopped. Ports 11600–11619 are this helper's.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

/** A private PostgreSQL. */
export interface PostgresInstance {
  /** `postgres://postgres@127.0.0.1:<port>/postgres` */
  url: string;
  port: number;
  /** Whether the server runs now. */
  readonly running: boolean;
  /** Stops it (fast shutdown, SIGINT) and waits until it is gone; connections drop. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data, and waits until it answers. */
  start(): Promise<void>;
  /** Stops it and removes its data directory. */
  destroy(): Promise<void>;
  /** Runs one query on a short-lived connection. */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
}

/** The directory of PostgreSQL's server binaries (the newest installed). */
export function postgresBinDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'postgres'))) : [];
  if (versions.length === 0) throw new Error(`no PostgreSQL server binaries under ${root}`);
  return join(root, versions.sort((a, b) => Number(b) - Number(a))[0]!, 'bin');
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

/** initdb into a fresh temp directory and start the server on `port` (11600–11619). */
export async function startPostgresInstance(port: number): Promise<PostgresInstance> {
  const bin = postgresBinDir();
  const dir = mkdtempSync(join(tmpdir(), 'jitcast-pg-'));
  // PostgreSQL refuses to run as root: the server runs as user `postgres`, which must own the directory.
  const uid = Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout.trim());
  const gid = Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim());
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) throw new Error('no user postgres on this machine');
  chownSync(dir, uid, gid);
  const data = join(dir, 'data');
  const asPostgres = { uid, gid, cwd: dir, env: { ...process.env, HOME: dir } };
  const init = spawnSync(join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync'], { ...asPostgres, encoding: 'utf8' });
  if (init.status !== 0) throw new Error(`initdb failed (${init.status}): ${init.stderr || init.stdout}`);
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  let proc: ChildProcess | undefined;
  let log = '';

  const answers = async (): Promise<boolean> => {
    const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
    c.on('error', () => undefined);
    try {
      await c.connect();
      await c.query('SELECT 1');
      return true;
    } catch {
      return false;
    } finally {
      await c.end().catch(() => undefined);
    }
  };

  const start = async () => {
    if (proc) return;
    // Durability settings off: the spec measures the queue, not the disk.
    const p = spawn(
      join(bin, 'postgres'),
      ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=100'],
      { ...asPostgres, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    proc = p;
    live.add(p);
    p.stdout!.on('data', (d) => (log = (log + d).slice(-4000)));
    p.stderr!.on('data', (d) => (log = (log + d).slice(-4000)));
    p.once('exit', () => {
      live.delete(p);
      if (proc === p) proc = undefined;
    });
    const until = Date.now() + 15_000;
    while (!(await answers())) {
      if (!proc) throw new Error(`postgres on ${port} exited at start:\n${log}`);
      if (Date.now() > until) throw new Error(`postgres on ${port} did not answer in 15 s:\n${log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  const stop = async () => {
    const p = proc;
    if (!p) return;
    proc = undefined;
    if (p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise((r) => p.once('exit', r));
    // SIGINT is PostgreSQL's fast shutdown: clients are cut off, nothing waits for them.
    p.kill('SIGINT');
    const t = setTimeout(() => p.kill('SIGKILL'), 10_000);
    await gone;
    clearTimeout(t);
  };

  await start();
  return {
    url,
    port,
    get running() {
      return proc !== undefined;
    },
    stop,
    start,
    async destroy() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
    async query<T>(sql: string, params?: unknown[]): Promise<T[]> {
      const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
      c.on('error', () => undefined);
      await c.connect();
      try {
        return (await c.query(sql, params)).rows as T[];
      } finally {
        await c.end().catch(() => undefined);
      }
    },
  };
}
