/**
 * The PGlite host: a small child process that owns the node's embedded reporting database, so
 * PGlite's WASM heap (~800 MB after initdb) and its synchronous queries stay out of the node's
 * event loop. A node forks it once at start-up (`openPglite` in runtime/db.ts), while the parent
 * is still small: every later `spawn()` of ffmpeg copies the parent's page tables, which took
 * ~54 ms (max 457 ms) of blocked loop with PGlite in an 850 MB parent.
 *
 * Protocol (IPC with `serialization: 'advanced'`, so Dates and jsonb objects survive):
 *   parent → host  { op: 'open', dir, migrations } once, then { op: 'query', id, sql, params } …,
 *                  { op: 'close' } last
 *   host → parent  { type: 'ready', applied } | { type: 'open-failed', error },
 *                  { type: 'result', id, rows } | { type: 'error', id, error },
 *                  { type: 'log', level, msg }, { type: 'closed' }
 * Operations run one at a time in arrival order (PGlite is single-connection anyway). The host
 * exits when the parent closes it or goes away (IPC disconnect).
 */
import { openPgliteHere, type Db, type DbLogger } from './db.ts';
import type { Migration } from './migrations.ts';

/** A request from the parent. */
export type HostRequest =
  | { op: 'open'; dir: string; migrations: readonly Migration[] }
  | { op: 'query'; id: number; sql: string; params?: unknown[] }
  | { op: 'close' };

/** An error as it crosses the IPC channel (PostgreSQL's SQLSTATE in `code`). */
export interface HostError {
  message: string;
  code?: string;
  detail?: string;
}

/** A message to the parent. */
export type HostReply =
  | { type: 'ready'; applied: number[] }
  | { type: 'open-failed'; error: HostError }
  | { type: 'result'; id: number; rows: unknown[] }
  | { type: 'error'; id: number; error: HostError }
  | { type: 'log'; level: 'info' | 'warn' | 'error'; msg: string }
  | { type: 'closed' };

function toHostError(err: unknown): HostError {
  const e = err as { message?: unknown; code?: unknown; detail?: unknown };
  return {
    message: typeof e?.message === 'string' ? e.message : String(err),
    ...(typeof e?.code === 'string' ? { code: e.code } : {}),
    ...(typeof e?.detail === 'string' ? { detail: e.detail } : {}),
  };
}

function main(): void {
  const send = (m: HostReply) => {
    if (process.connected) process.send!(m);
  };
  const log = (level: 'info' | 'warn' | 'error') => (...args: unknown[]) => send({ type: 'log', level, msg: args.map(String).join(' ') });
  const logger: DbLogger = { debug: () => {}, info: log('info'), warn: log('warn'), error: log('error') };
  let db: Db | undefined;
  let closing = false;
  // One operation at a time, in arrival order.
  let chain: Promise<void> = Promise.resolve();
  const enqueue = (fn: () => Promise<void>) => {
    chain = chain.then(fn, fn);
  };
  const shutdown = async () => {
    closing = true;
    await db?.close().catch(() => undefined);
    // Exit once 'closed' (and so every earlier reply) is written to the channel.
    if (process.connected) process.send!({ type: 'closed' } satisfies HostReply, () => process.exit(0));
    else process.exit(0);
  };

  process.on('message', (m: HostRequest) => {
    switch (m?.op) {
      case 'open':
        enqueue(async () => {
          try {
            const r = await openPgliteHere(m.dir, logger, m.migrations);
            db = r.db;
            send({ type: 'ready', applied: r.applied });
          } catch (err) {
            // Exit once the reason is written to the channel.
            if (process.connected) process.send!({ type: 'open-failed', error: toHostError(err) } satisfies HostReply, () => process.exit(1));
            else process.exit(1);
          }
        });
        break;
      case 'query':
        enqueue(async () => {
          if (!db || closing) return send({ type: 'error', id: m.id, error: { message: 'reporting DB host is not open' } });
          try {
            send({ type: 'result', id: m.id, rows: await db.query(m.sql, m.params) });
          } catch (err) {
            send({ type: 'error', id: m.id, error: toHostError(err) });
          }
        });
        break;
      case 'close':
        enqueue(shutdown);
        break;
    }
  });
  // The parent went away: close the database cleanly so its files stay consistent.
  process.on('disconnect', () => {
    if (!closing) enqueue(shutdown);
  });
}

if (process.send) main();
