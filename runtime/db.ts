/**
 * The reporting database: PostgreSQL through a `pg` pool in cluster mode, PGlite in the data
 * directory in embedded mode, behind one narrow `Db` interface. Numbered migrations
 * (runtime/migrations.ts) are applied at open, in one transaction.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { PGlite } from '@electric-sql/pglite';
import type { JitcastConfig } from '../cluster.config.ts';
import { MIGRATIONS, type Migration } from './migrations.ts';

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
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
      await applyMigrations({ query: (s, p) => client.query(s, p), exec: (s) => client.query(s) }, migrations, logger);
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
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

/** Opens (creating on first use) the PGlite database in `dir` and brings its schema up to date. */
export async function openPglite(dir: string, logger?: DbLogger, migrations: readonly Migration[] = MIGRATIONS): Promise<Db> {
  mkdirSync(dir, { recursive: true });
  const db = await PGlite.create(dir);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await db.close();
  };
  try {
    await db.transaction((tx) => applyMigrations({ query: (s, p) => tx.query(s, p), exec: (s) => tx.exec(s) }, migrations, logger));
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }
  return {
    async query<T>(sql: string, params?: unknown[]) {
      return (await db.query<T>(sql, params)).rows;
    },
    close,
  };
}

/** The node's reporting database: PostgreSQL when `dbUrl` is set, else PGlite at `<dataDir>/db`. */
export function openDb(config: JitcastConfig, logger?: DbLogger): Promise<Db> {
  return config.dbUrl ? openPostgres(config.dbUrl, logger) : openPglite(join(config.dataDir, 'db'), logger);
}
