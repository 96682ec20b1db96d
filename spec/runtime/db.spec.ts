import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { openDb, openPglite, openPostgres, PgliteHostDiedError, type Db } from '../../runtime/db.ts';
import { MIGRATIONS } from '../../runtime/migrations.ts';
import { testConfig } from '../support/config.ts';

const PG_URL = 'postgres://postgres@127.0.0.1:5432/test';

/** A unique schema per run so concurrent runs never see each other's tables. */
async function withSchema(): Promise<{ url: string; drop: () => Promise<void> }> {
  const schema = `jitcast_spec_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  await admin.end();
  return {
    url: `${PG_URL}?options=${encodeURIComponent(`-c search_path=${schema}`)}`,
    drop: async () => {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      await c.query(`DROP SCHEMA ${schema} CASCADE`);
      await c.end();
    },
  };
}

for (const backend of ['pglite', 'postgres'] as const) {
  describe(`runtime/db on ${backend}`, () => {
    let open: () => Promise<Db>;
    let cleanup = async () => {};
    before(async () => {
      if (backend === 'pglite') {
        const dir = join(mkdtempSync(join(tmpdir(), 'jitcast-db-')), 'db');
        open = () => openPglite(dir);
      } else {
        const s = await withSchema();
        open = () => openPostgres(s.url);
        cleanup = s.drop;
      }
    });
    after(() => cleanup());

    it('open() applies every migration once and records it in schema_migrations', async () => {
      const db = await open();
      try {
        const rows = await db.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
        assert.deepEqual(rows.map((r) => Number(r.version)), MIGRATIONS.map((m) => m.version));
        const cols = await db.query<{ column_name: string }>(
          `SELECT column_name FROM information_schema.columns WHERE table_name = 'events' AND table_schema = current_schema() ORDER BY column_name`,
        );
        const names = cols.map((c) => c.column_name);
        for (const c of ['event_id', 'title', 'format', 'status', 'starts_at', 'created_at', 'updated_at', 'archive_days', 'live_at', 'ended_at', 'archive', 'archive_error', 'version']) {
          assert.ok(names.includes(c), `events.${c} exists`);
        }
      } finally {
        await db.close();
      }
    });

    it('a second open() applies nothing again and keeps the rows', async () => {
      const db1 = await open();
      await db1.query(
        `INSERT INTO events (event_id, title, format, status, created_at, updated_at, archive_days, version) VALUES ($1, $2, 'hls', 'reserved', now(), now(), 30, 1)`,
        ['12345674', 'kept'],
      );
      await db1.close();
      const db2 = await open();
      try {
        const rows = await db2.query<{ title: string }>('SELECT title FROM events WHERE event_id = $1', ['12345674']);
        assert.deepEqual(rows.map((r) => r.title), ['kept']);
        const m = await db2.query<{ n: string | number }>('SELECT count(*) AS n FROM schema_migrations');
        assert.equal(Number(m[0]!.n), MIGRATIONS.length);
      } finally {
        await db2.close();
      }
    });

    it('close() twice resolves both times', async () => {
      const db = await open();
      await db.close();
      await db.close();
    });
  });
}

describe('runtime/db openPglite (PGlite host process)', () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'jitcast-db-host-')), 'db');

  it('openPglite() runs PGlite in a child process and answers queries with SQLSTATE errors, Dates and jsonb intact', async () => {
    const db = await openPglite(dir);
    try {
      assert.ok(db.pid && db.pid !== process.pid, `host pid ${db.pid}`);
      const [row] = await db.query<{ t: Date; j: unknown; n: number }>('SELECT now() AS t, $1::jsonb AS j, $2::int AS n', [JSON.stringify({ a: [1, 2] }), 7]);
      assert.ok(row!.t instanceof Date);
      assert.deepEqual(row!.j, { a: [1, 2] });
      assert.equal(row!.n, 7);
      await assert.rejects(db.query('SELEC 1'), (err: Error & { code?: string }) => err.code === '42601');
      // The parent never loads PGlite's WASM: its heap stays far below PGlite's hundreds of MB.
      assert.ok(process.memoryUsage().rss < 400 * 1024 * 1024, `rss ${process.memoryUsage().rss}`);
    } finally {
      await db.close();
    }
  });

  it('the host dying rejects pending and later queries with PgliteHostDiedError; a new openPglite() has the data', async () => {
    const db = await openPglite(dir);
    await db.query(`INSERT INTO events (event_id, title, format, status, created_at, updated_at, archive_days, version) VALUES ('12345682', 'survives', 'hls', 'reserved', now(), now(), 30, 1)`);
    const pending = db.query('SELECT pg_sleep(5)');
    process.kill(db.pid!, 'SIGKILL');
    await assert.rejects(pending, PgliteHostDiedError);
    await assert.rejects(db.query('SELECT 1'), PgliteHostDiedError);
    await db.close();
    await db.close();
    const again = await openPglite(dir);
    try {
      const rows = await again.query<{ title: string }>(`SELECT title FROM events WHERE event_id = '12345682'`);
      assert.deepEqual(rows.map((r) => r.title), ['survives']);
    } finally {
      await again.close();
    }
  });

  it('openPglite() rejects when the migrations fail and leaves no host behind', async () => {
    const bad = join(mkdtempSync(join(tmpdir(), 'jitcast-db-bad-')), 'db');
    await assert.rejects(openPglite(bad, undefined, [{ version: 1, name: 'broken', sql: 'CREATE TABLEX nope ()' }]), /syntax error/);
    // PGlite is single-user: a host left running would hold the directory.
    const db = await openPglite(bad);
    await db.close();
  });
});

describe('runtime/db openDb', () => {
  it('openDb() without dbUrl opens PGlite under <dataDir>/db', async () => {
    const config = testConfig();
    const db = await openDb(config);
    try {
      const rows = await db.query<{ n: number }>('SELECT 1 AS n');
      assert.equal(Number(rows[0]!.n), 1);
    } finally {
      await db.close();
    }
  });

  it('openPostgres() rejects for an unreachable server and leaves nothing open', async () => {
    await assert.rejects(openPostgres('postgres://postgres@127.0.0.1:1/x'), /ECONNREFUSED|connect/);
  });
});
