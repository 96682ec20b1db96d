/**
 * The reporting database: PostgreSQL through a `pg` pool in cluster mode, PGlite in the data
 * directory in embedded mode, behind one narrow `Db` interface. Numbered migrations
 * (runtime/migrations.ts) are applied at open, in one transaction. PGlite runs in a child process
 * of its own (runtime/pglite-host.ts): its WASM heap and synchronous queries would otherwise block
 * the node's media clock and make every ffmpeg spawn slow.
 */
import { fork } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { setPriority } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import type { JitcastConfig } from '../cluster.config.ts';
import { MIGRATIONS, type Migration } from './migrations.ts';
import type { HostError, HostReply, HostRequest } from './pglite-host.ts';

/** What the reporting code needs of a database. */
export interface Db {
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  close(): Promise<void>;
}

/** The few logger methods db and reporting code use (a Moleculer logger fits). */
export interface DbLogger {
  debug(...args: unknown[]): void;
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}

/** Runs statements inside one transaction. */
type Tx = { query(sql: string, params?: unknown[]): Promise<{ rows: any[] }>; exec(sql: string): Promise<unknown> };

// Serializes migrations when several nodes start against one PostgreSQL at once.
const MIGRATION_LOCK_KEY = 7_431_001;

async function applyMigrations(tx: Tx, migrations: readonly Migration[], logger?: DbLogger): Promise<number[]> {
  await tx.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  )`);
  const done = new Set((await tx.query('SELECT version FROM schema_migrations')).rows.map((r) => Number(r.version)));
  const applied: number[] = [];
  for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
    if (done.has(m.version)) continue;
    await tx.exec(m.sql);
    await tx.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
    applied.push(m.version);
    logger?.info(`migration applied [version:${m.version} name:${m.name}]`);
  }
  return applied;
}

/** Opens PostgreSQL at `url` and brings its schema up to date. */
export async function openPostgres(url: string, logger?: DbLogger, migrations: readonly Migration[] = MIGRATIONS): Promise<Db> {
  const pool = new pg.Pool({ connectionString: url, max: 5, connectionTimeoutMillis: 5_000 });
  // Without a listener, an idle client whose server went away crashes the process (FIELD-NOTES).
  pool.on('error', (err) => logger?.warn(`postgres idle client error [code:${(err as { code?: string }).code ?? '-'}] ${err.message}`));
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await pool.end();
  };
  try {
    const client = await pool.connect();
    // A checked-out client has no pool listener: PostgreSQL stopping during the migrations would emit
    // an unhandled 'error' ("Connection terminated unexpectedly") and crash the node. The query fails anyway.
    const onClientError = (err: Error) => logger?.warn(`postgres connection lost during migrations [code:${(err as { code?: string }).code ?? '-'}] ${err.message}`);
    client.on('error', onClientError);
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
      await applyMigrations({ query: (s, p) => client.query(s, p), exec: (s) => client.query(s) }, migrations, logger);
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release(); // the pool's idle listener takes over
      client.off('error', onClientError);
    }
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }
  return {
    async query<T>(sql: string, params?: unknown[]) {
      return (await pool.query(sql, params)).rows as T[];
    },
    close,
  };
}

/**
 * Opens PGlite in THIS process: only the PGlite host (runtime/pglite-host.ts) calls it. PGlite is
 * loaded on demand so a node that only forks the host never maps its WASM.
 */
export async function openPgliteHere(dir: string, logger?: DbLogger, migrations: readonly Migration[] = MIGRATIONS): Promise<{ db: Db; applied: number[] }> {
  mkdirSync(dir, { recursive: true });
  const { PGlite } = await import('@electric-sql/pglite');
  const db = await PGlite.create(dir);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await db.close();
  };
  let applied: number[];
  try {
    applied = await db.transaction((tx) => applyMigrations({ query: (s, p) => tx.query(s, p), exec: (s) => tx.exec(s) }, migrations, logger));
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }
  return {
    db: {
      async query<T>(sql: string, params?: unknown[]) {
        return (await db.query<T>(sql, params)).rows;
      },
      close,
    },
    applied,
  };
}

/** Options of `openPglite`. */
export interface PgliteOptions {
  /** The host not ready (database created or opened, migrations applied) after this long → reject. Default 120000 ms. */
  openTimeoutMs?: number;
  /** The host not gone this long after close() → SIGKILL. Default 10000 ms. */
  closeTimeoutMs?: number;
  /** Nice value of the host process. Default PGLITE_NICENESS (10). */
  niceness?: number;
}

/** An open PGlite database: a Db plus the process ID of its host. */
export interface PgliteDb extends Db {
  /** The PGlite host's process ID (for logs and specs). */
  readonly pid: number | undefined;
}

/** A query answered with this error when the PGlite host process is gone; `code` is 'PGLITE_HOST_DIED'. */
export class PgliteHostDiedError extends Error {
  readonly code = 'PGLITE_HOST_DIED';
}

/** Default nice value of the PGlite host: reporting writes are asynchronous and may wait. */
export const PGLITE_NICENESS = 10;

const HOST_SCRIPT = fileURLToPath(new URL('./pglite-host.ts', import.meta.url));

/** The host's error as an Error carrying PostgreSQL's SQLSTATE `code` and `detail`, like pg's. */
function fromHostError(e: HostError): Error {
  return Object.assign(new Error(e.message), e.code ? { code: e.code } : {}, e.detail ? { detail: e.detail } : {});
}

/**
 * Opens (creating on first use) the PGlite database in `dir` in a child process, the PGlite host,
 * and brings its schema up to date there. `query` is a request/response over IPC. The host dying
 * rejects every pending and later query with PgliteHostDiedError and is logged; the caller closes
 * this Db and opens a new one (ReportingWriter does). Open it while the process is small (at
 * start-up): forking copies the parent's page tables.
 */
export async function openPglite(dir: string, logger?: DbLogger, migrations: readonly Migration[] = MIGRATIONS, options: PgliteOptions = {}): Promise<PgliteDb> {
  mkdirSync(dir, { recursive: true });
  if (!existsSync(join(dir, 'PG_VERSION'))) {
    // initdb leaves PGlite's WASM heap at ~800 MB for the life of the process; a reopen needs ~300.
    // Create the database in a host of its own, then serve from a fresh one.
    const first = await startPgliteHost(dir, logger, migrations, options);
    await first.close();
  }
  return startPgliteHost(dir, logger, migrations, options);
}

async function startPgliteHost(dir: string, logger: DbLogger | undefined, migrations: readonly Migration[], options: PgliteOptions): Promise<PgliteDb> {
  // The tsx loader by absolute URL: the node may run from any working directory.
  const child = fork(HOST_SCRIPT, [], {
    execArgv: ['--import', import.meta.resolve('tsx')],
    serialization: 'advanced',
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    // Its own process group: a terminal's Ctrl-C reaches the node, which closes the host after its
    // last writes; the host still exits when the node is gone (IPC disconnect).
    detached: true,
  });
  const ctx = `dir:${dir} pid:${child.pid ?? '-'}`;
  // Reporting is asynchronous: the host must never take the CPU from the node's media clock.
  if (child.pid) {
    try {
      setPriority(child.pid, options.niceness ?? PGLITE_NICENESS);
    } catch {
      // gone already (its exit is reported below) or not permitted
    }
  }
  const pending = new Map<number, { resolve: (rows: unknown[]) => void; reject: (err: Error) => void }>();
  let nextId = 1;
  let dead: Error | undefined;
  let closing: Promise<void> | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  // Referenced only while a query waits, so an idle host never keeps the node's process alive.
  const idle = () => {
    child.unref();
    child.channel?.unref();
  };
  const busy = () => {
    child.ref();
    child.channel?.ref();
  };

  const ready = new Promise<void>((resolve, reject) => {
    const timeoutMs = options.openTimeoutMs ?? 120_000;
    const timer = setTimeout(() => {
      reject(new Error(`PGlite host not ready after ${timeoutMs} ms [${ctx}]`));
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('message', (m: HostReply) => {
      switch (m.type) {
        case 'ready':
          clearTimeout(timer);
          resolve();
          break;
        case 'open-failed':
          clearTimeout(timer);
          reject(fromHostError(m.error));
          break;
        case 'result':
        case 'error': {
          const p = pending.get(m.id);
          if (!p) return;
          pending.delete(m.id);
          if (pending.size === 0) idle();
          if (m.type === 'result') p.resolve(m.rows);
          else p.reject(fromHostError(m.error));
          break;
        }
        case 'log':
          logger?.[m.level](m.msg);
          break;
      }
    });
    // Spawn failures and sends on a closed channel end here; 'exit' settles what is pending.
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`PGlite host failed to start [${ctx}] ${err.message}`));
      logger?.warn(`PGlite host error [${ctx}] ${err.message}`);
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      dead = new PgliteHostDiedError(`PGlite host exited [${ctx} code:${code} signal:${signal}]`);
      reject(dead);
      if (!closing) logger?.error(`PGlite host died [${ctx} code:${code} signal:${signal}] pending queries: ${pending.size}`);
      for (const p of pending.values()) p.reject(dead);
      pending.clear();
    });
  });

  const close = (): Promise<void> =>
    (closing ??= (async () => {
      if (!dead && child.connected) {
        busy();
        child.send({ op: 'close' } satisfies HostRequest);
        const ms = options.closeTimeoutMs ?? 10_000;
        const timer = setTimeout(() => {
          logger?.warn(`PGlite host did not close in ${ms} ms, killing [${ctx}]`);
          child.kill('SIGKILL');
        }, ms);
        await exited;
        clearTimeout(timer);
      } else if (!dead) {
        child.kill('SIGKILL');
        await exited;
      }
    })());

  child.send({ op: 'open', dir, migrations } satisfies HostRequest);
  try {
    await ready;
  } catch (err) {
    // Not a death worth logging: the open failed and says why.
    closing = Promise.resolve();
    child.kill('SIGKILL');
    await exited;
    throw err;
  }
  idle();
  return {
    pid: child.pid,
    query<T>(sql: string, params?: unknown[]): Promise<T[]> {
      if (dead) return Promise.reject(dead);
      if (closing) return Promise.reject(new Error(`PGlite closed [${ctx}]`));
      if (!child.connected) return Promise.reject(new PgliteHostDiedError(`PGlite host gone [${ctx}]`));
      return new Promise<T[]>((resolve, reject) => {
        const id = nextId++;
        if (pending.size === 0) busy();
        pending.set(id, { resolve: resolve as (rows: unknown[]) => void, reject });
        // Not sent (channel closed, or params that cannot be cloned): fail this query only.
        const unsent = (err: Error | null) => {
          if (!err || !pending.delete(id)) return;
          if (pending.size === 0) idle();
          reject(err);
        };
        try {
          child.send({ op: 'query', id, sql, params } satisfies HostRequest, unsent);
        } catch (err) {
          unsent(err as Error);
        }
      });
    },
    close,
  };
}

/** The node's reporting database: PostgreSQL when `dbUrl` is set, else PGlite at `<dataDir>/db` (shared in the process). */
export function openDb(config: JitcastConfig, logger?: DbLogger): Promise<Db> {
  return config.dbUrl ? openPostgres(config.dbUrl, logger) : openSharedPglite(join(config.dataDir, 'db'), logger);
}

/**
 * One PGlite host per directory in this process, shared by every opener (the event actor's writer,
 * the usage actor): two hosts on one directory would corrupt it. Each opener's `close()` releases
 * its share; the last one closes the host. A host that died is dropped, so the next open starts anew.
 */
const pgliteShares = new Map<string, { db: Promise<PgliteDb>; refs: number }>();
/** Hosts closing, by directory: a new host on the directory starts only once the old one is gone. */
const pgliteClosing = new Map<string, Promise<void>>();

function openSharedPglite(dir: string, logger?: DbLogger): Promise<Db> {
  let share = pgliteShares.get(dir);
  if (!share) {
    const s = { db: (pgliteClosing.get(dir) ?? Promise.resolve()).catch(() => undefined).then(() => openPglite(dir, logger)), refs: 0 };
    s.db.catch(() => pgliteShares.get(dir) === s && pgliteShares.delete(dir));
    pgliteShares.set(dir, s);
    share = s;
  }
  const s = share;
  s.refs++;
  return s.db.then(
    (db) => {
      let released = false;
      return {
        pid: db.pid,
        query: <T>(sql: string, params?: unknown[]) =>
          db.query<T>(sql, params).catch((err: unknown) => {
            if (err instanceof PgliteHostDiedError && pgliteShares.get(dir) === s) pgliteShares.delete(dir);
            throw err;
          }),
        async close() {
          if (released) return;
          released = true;
          if (--s.refs > 0) return;
          if (pgliteShares.get(dir) === s) pgliteShares.delete(dir);
          const closing = db.close().finally(() => pgliteClosing.get(dir) === closing && pgliteClosing.delete(dir));
          pgliteClosing.set(dir, closing);
          await closing;
        },
      };
    },
    (err: unknown) => {
      s.refs--;
      throw err;
    },
  );
}
