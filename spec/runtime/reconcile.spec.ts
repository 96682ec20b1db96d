/**
 * Start-up reconciliation (runtime/reconcile.ts): which rows a stored event-info makes it write, one
 * pass against the machine's PostgreSQL (a schema of this run) over more events than one batch, the
 * background runner retrying while the database fails, and the Redis guard that lets one node of a
 * cluster run the pass.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { openPostgres, type Db } from '../../runtime/db.ts';
import { RedisReconcileGuard, reconcileOnce, runReconciliation, versionToWrite, type EventRow, type ReconcileSource } from '../../runtime/reconcile.ts';
import { UPSERT_EVENT_SQL, upsertParams, versionOf } from '../../runtime/reporting.ts';
import { NotFoundError } from '../../runtime/errors.ts';
import type { EventInfo, EventStatus } from '../../runtime/contracts.ts';
import { CapturingLogger, purgeNamespace, SPEC_REDIS_URL, specNamespace } from '../support/redis.ts';

const PG_URL = 'postgres://postgres@127.0.0.1:5432/test';

function info(eventId: string, status: EventStatus, updatedAt: string, title = 'Quarterly call'): EventInfo {
  return {
    eventId, title, format: 'hls', createdAt: '2026-01-01T00:00:00.000Z', updatedAt,
    archiveDays: 30, hasPassword: false, attendeeUrl: 'http://x/e/t', hostUrl: 'http://x/e/h', status,
  };
}

function rowOf(i: EventInfo, version = versionOf(i)): EventRow {
  return {
    event_id: i.eventId, version: String(version), title: i.title, format: i.format, status: i.status, starts_at: null,
    updated_at: new Date(i.updatedAt), archive_days: i.archiveDays, has_password: i.hasPassword, live_at: null, ended_at: null,
    archive: null, archive_error: null,
  };
}

/** A content storage of the given events; `broken` IDs are listed but cannot be read. */
function storage(infos: EventInfo[], broken: string[] = []): ReconcileSource {
  const byId = new Map(infos.map((i) => [i.eventId, i]));
  return {
    listEventIds: async () => [...byId.keys(), ...broken].sort(),
    getEventInfo: async (id) => {
      const i = byId.get(id);
      if (!i) throw new NotFoundError(`no event-info for ${id}`);
      return structuredClone(i);
    },
  };
}

describe('runtime/reconcile versionToWrite()', () => {
  const stored = info('50000001', 'live', '2026-03-01T10:00:00.000Z');
  const v = versionOf(stored);
  const cases: Array<[string, EventRow | undefined, number | undefined]> = [
    ['no row: the stored state at its version', undefined, v],
    ['an older row: the stored state at its version', rowOf(info('50000001', 'reserved', '2026-03-01T09:00:00.000Z')), v],
    ['the same state: nothing', rowOf(stored), undefined],
    ['the same state one version up (same-millisecond bump): nothing', rowOf(stored, v + 1), undefined],
    ['another state in the same millisecond: one above the row', rowOf(info('50000001', 'reserved', '2026-03-01T10:00:00.000Z'), v + 1), v + 2],
    ['the same state under another account: one above the row', { ...rowOf(stored), account: 'acme' }, v + 1],
    ['a row updated later than storage: nothing (the DB saw a newer state)', rowOf(info('50000001', 'ended', '2026-03-01T11:00:00.000Z')), undefined],
  ];
  for (const [name, row, want] of cases) test(name, () => assert.equal(versionToWrite(stored, row), want));
});

describe('runtime/reconcile on PostgreSQL', { timeout: 60_000 }, () => {
  const schema = `jitcast_spec_${randomBytes(6).toString('hex')}`;
  const url = `${PG_URL}?options=${encodeURIComponent(`-c search_path=${schema}`)}`;
  let db: Db;
  before(async () => {
    const c = new pg.Client({ connectionString: PG_URL });
    await c.connect();
    await c.query(`CREATE SCHEMA ${schema}`);
    await c.end();
    db = await openPostgres(url);
  });
  after(async () => {
    await db?.close();
    const c = new pg.Client({ connectionString: PG_URL });
    await c.connect();
    await c.query(`DROP SCHEMA ${schema} CASCADE`);
    await c.end();
  });

  test('reconcileOnce() writes the missing and stale events of 450, leaves the rest, and skips an unreadable one', async () => {
    const infos = Array.from({ length: 450 }, (_, i) => info(String(60_000_000 + i), i % 3 === 0 ? 'archived' : 'reserved', `2026-03-02T00:00:${String(i % 60).padStart(2, '0')}.000Z`, `event ${i}`));
    // 150 already right, 100 stale (an older state), 200 missing.
    for (const i of infos.slice(0, 150)) await db.query(UPSERT_EVENT_SQL, upsertParams(i, versionOf(i)));
    for (const i of infos.slice(150, 250)) {
      const old = { ...i, status: 'reserved' as const, title: 'old', updatedAt: '2026-03-01T00:00:00.000Z' };
      await db.query(UPSERT_EVENT_SQL, upsertParams(old, versionOf(old)));
    }
    const log = new CapturingLogger();
    const counts = await reconcileOnce(storage(infos, ['69999999']), db, log as never);
    assert.deepEqual(counts, { stored: 451, missing: 200, stale: 100, unchanged: 150, unreadable: 1 });
    const rows = await db.query<{ event_id: string; status: string; title: string; version: string }>(
      `SELECT event_id, status, title, version::text AS version FROM events WHERE event_id LIKE '6%' ORDER BY event_id`,
    );
    assert.equal(rows.length, 450, 'exactly one row per stored event');
    assert.deepEqual(rows.map((r) => [r.event_id, r.status, r.title, r.version]), infos.map((i) => [i.eventId, i.status, i.title, String(versionOf(i))]));
    assert.ok(log.lines.some((l) => /could not read event-info \[event:69999999\]/.test(l)));
    const again = await reconcileOnce(storage(infos), db);
    assert.deepEqual(again, { stored: 450, missing: 0, stale: 0, unchanged: 450, unreadable: 0 }, 'a second pass writes nothing');
  });

  test('runReconciliation() retries while the database fails, then logs "reconciled N events"', async () => {
    let failures = 0;
    const log = new CapturingLogger();
    const r = runReconciliation({
      source: storage([info('51000007', 'reserved', '2026-03-03T00:00:00.000Z')]),
      withDb: async (fn) => {
        if (failures++ < 3) throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
        return fn(db);
      },
      logger: log as never,
      minBackoffMs: 10,
      maxBackoffMs: 40,
    });
    const counts = await r.done;
    assert.equal(counts?.missing, 1);
    assert.equal(log.lines.filter((l) => /reconciliation failed, retrying/.test(l)).length, 3);
    assert.ok(log.lines.some((l) => /^info reconciled 1 events \[stored:1 missing:1 stale:0 unchanged:0 unreadable:0/.test(l)), log.lines.join('\n'));
    await r.stop();
    assert.equal((await db.query(`SELECT 1 FROM events WHERE event_id = '51000007'`)).length, 1);
  });

  test('runReconciliation().stop() ends the retries of a database that never answers', async () => {
    let tries = 0;
    const r = runReconciliation({
      source: storage([]),
      withDb: async () => {
        tries++;
        throw new Error('down');
      },
      minBackoffMs: 10,
      maxBackoffMs: 20,
    });
    while (tries < 2) await new Promise((res) => setTimeout(res, 10));
    await r.stop();
    assert.equal(await r.done, undefined);
    const after = tries;
    await new Promise((res) => setTimeout(res, 100));
    assert.equal(tries, after, 'no try after stop()');
  });
});

describe('runtime/reconcile RedisReconcileGuard', { timeout: 30_000 }, () => {
  const namespaces: string[] = [];
  after(async () => {
    for (const ns of namespaces) await purgeNamespace(SPEC_REDIS_URL, ns);
  });

  test('one node holds the lock; a pass finished after another node started counts for it; a later start runs again', async () => {
    const ns = specNamespace('reconcile');
    namespaces.push(ns);
    const a = new RedisReconcileGuard(SPEC_REDIS_URL, ns, 'node-a');
    const b = new RedisReconcileGuard(SPEC_REDIS_URL, ns, 'node-b');
    try {
      const bStarted = Date.now();
      assert.equal(await a.claim(bStarted), 'run');
      assert.equal(await b.claim(bStarted), 'wait');
      await a.renew();
      await a.finish(bStarted + 1);
      assert.equal(await b.claim(bStarted), 'done', 'a pass that began after b started covers b');
      assert.equal(await b.claim(Date.now() + 10_000), 'run', 'a node started after the pass runs its own');
      await b.release();
      assert.equal(await a.claim(Date.now() + 10_000), 'run', 'released');
      await a.release();
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('two nodes starting together: exactly one runs the pass, the other skips it', async () => {
    const ns = specNamespace('reconcile2');
    namespaces.push(ns);
    let passes = 0;
    const source = storage([]);
    const run = (node: string) =>
      runReconciliation({
        source,
        withDb: async (fn) => {
          passes++;
          await new Promise((r) => setTimeout(r, 300));
          return fn({ query: async () => [], close: async () => undefined } as unknown as Db);
        },
        guard: new RedisReconcileGuard(SPEC_REDIS_URL, ns, node),
        startedMs: Date.now() - 1000,
        minBackoffMs: 10,
      });
    const [x, y] = [run('node-a'), run('node-b')];
    const results = await Promise.all([x.done, y.done]);
    await Promise.all([x.stop(), y.stop()]);
    assert.equal(passes, 1);
    assert.equal(results.filter((c) => c !== undefined).length, 1);
  });
});
