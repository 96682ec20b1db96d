import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { openPglite, openPostgres, type Db, type PgliteDb } from '../../runtime/db.ts';
import { ReportingWriter, UPSERT_EVENT_SQL, UPSERT_EVENTS_SQL, latestPerEvent, upsertManyParams, upsertParams } from '../../runtime/reporting.ts';
import type { EventInfo, EventStatus } from '../../runtime/contracts.ts';
import { reconcileOnce } from '../../runtime/reconcile.ts';

const PG_URL = 'postgres://postgres@127.0.0.1:5432/test';
const FAST = { minBackoffMs: 20, maxBackoffMs: 200 };

function info(eventId: string, status: EventStatus, updatedAt: string, title = 'Quarterly call'): EventInfo {
  return {
    eventId, title, format: 'hls', startsAt: '2030-01-01T10:00:00.000Z', createdAt: '2026-01-01T00:00:00.000Z', updatedAt,
    archiveDays: 30, hasPassword: false, attendeeUrl: 'http://x/e/t', hostUrl: 'http://x/e/h', status,
  };
}

interface Row { event_id: string; status: string; title: string; version: string | number; archive: unknown }

/** Wraps a Db, counting upserts that reached it. */
function counting(db: Db, counter: { upserts: number }): Db {
  return {
    async query<T>(sql: string, params?: unknown[]) {
      const rows = await db.query<T>(sql, params);
      if (sql === UPSERT_EVENT_SQL) counter.upserts++;
      return rows;
    },
    close: () => db.close(),
  };
}

const v = (at: string, bump = 0) => Date.parse(at) * 1000 + bump;

describe('runtime/reporting multi-row upsert parameters', () => {
  it('latestPerEvent() keeps the highest version of each event (the later of a tie), ordered by event ID', () => {
    const at = '2026-01-05T00:00:00.000Z';
    const states = [
      { info: info('10000207', 'live', at), version: v(at, 2) },
      { info: info('10000108', 'reserved', at), version: v(at) },
      { info: info('10000207', 'reserved', at), version: v(at, 1) },
      { info: info('10000108', 'live', at), version: v(at) },
      { info: info('10000009', 'ended', at), version: v(at, 5) },
    ];
    assert.deepEqual(latestPerEvent(states).map((s) => [s.info.eventId, s.info.status, s.version]), [
      ['10000009', 'ended', v(at, 5)], ['10000108', 'live', v(at)], ['10000207', 'live', v(at, 2)],
    ]);
    assert.deepEqual(latestPerEvent([]), []);
  });

  it('upsertManyParams() is upsertParams() column by column, one element per event', () => {
    const a = info('10000009', 'live', '2026-01-05T00:00:00.000Z');
    const b = { ...info('10000108', 'archived', '2026-01-05T00:00:01.000Z'), archive: [{ streamId: 's1', start: 0, end: 1 }], account: 'acme' };
    const cols = upsertManyParams([{ info: b, version: 2 }, { info: a, version: 1 }, { info: a, version: 0 }]);
    const rows = [upsertParams(a, 1), upsertParams(b, 2)];
    assert.equal(cols.length, rows[0]!.length);
    cols.forEach((col, c) => assert.deepEqual(col, rows.map((r) => r[c]), `column ${c + 1}`));
  });
});

/**
 * UPSERT_EVENTS_SQL on `db`: awkward values survive the array parameters, an event named twice is
 * one row at its latest version, and the version guard holds against rows already there.
 */
async function checkMultiRowUpsert(db: Db, prefix: string): Promise<void> {
  const id = (n: number) => `${prefix}${n}`;
  const at = '2026-01-06T00:00:00.000Z';
  const awkward = { ...info(id(1), 'archived', at, `a "quoted", {braced} \\ back\\slashed, NULL, ünïcode title`), startsAt: undefined, archive: [{ streamId: 's "1"', start: 0, end: 12.5 }], archiveError: 'x,y', account: 'acme' };
  const newer = info(id(2), 'ended', '2026-01-06T00:00:09.000Z');
  await db.query(UPSERT_EVENT_SQL, upsertParams(newer, v(newer.updatedAt))); // already there, newer than the batch's state
  const older = info(id(3), 'reserved', '2026-01-06T00:00:00.000Z');
  await db.query(UPSERT_EVENT_SQL, upsertParams(older, v(older.updatedAt))); // already there, older than the batch's state
  const states = [
    { info: awkward, version: v(at) },
    { info: info(id(2), 'live', '2026-01-06T00:00:01.000Z'), version: v('2026-01-06T00:00:01.000Z') },
    { info: info(id(3), 'live', '2026-01-06T00:00:01.000Z', 'first'), version: v('2026-01-06T00:00:01.000Z') },
    { info: info(id(3), 'cancelled', '2026-01-06T00:00:02.000Z', 'second'), version: v('2026-01-06T00:00:02.000Z') },
    { info: info(id(4), 'reserved', at), version: v(at) },
  ];
  await db.query(UPSERT_EVENTS_SQL, upsertManyParams(states));
  const rows = await db.query<Row & { title: string; starts_at: unknown; archive_error: string | null; account: string; updated_at: Date | string }>(
    `SELECT event_id, status, title, version::text AS version, archive, starts_at, archive_error, account, updated_at FROM events WHERE event_id LIKE $1 ORDER BY event_id`, [`${prefix}%`],
  );
  assert.deepEqual(rows.map((r) => [r.event_id, r.status, String(r.version)]), [
    [id(1), 'archived', String(v(at))],
    [id(2), 'ended', String(v(newer.updatedAt))],
    [id(3), 'cancelled', String(v('2026-01-06T00:00:02.000Z'))],
    [id(4), 'reserved', String(v(at))],
  ]);
  const r1 = rows[0]!;
  assert.equal(r1.title, awkward.title);
  assert.deepEqual(r1.archive, awkward.archive);
  assert.equal(r1.starts_at, null);
  assert.equal(r1.archive_error, 'x,y');
  assert.equal(r1.account, 'acme');
  assert.equal(new Date(r1.updated_at).getTime(), Date.parse(at));
  assert.equal(rows[3]!.account, 'operator');
  assert.deepEqual(await db.query(UPSERT_EVENTS_SQL, upsertManyParams([])), [], 'an empty batch is a valid statement');
}

describe('runtime/reporting ReportingWriter on PGlite', () => {
  let dir: string;
  let reader: Db;
  before(async () => {
    dir = join(mkdtempSync(join(tmpdir(), 'jitcast-rep-')), 'db');
    reader = await openPglite(dir);
  });
  after(() => reader.close());

  // PGlite is single-user: the writer shares the spec's instance through an opener that never closes it.
  const shared = (): Db => ({ query: (s, p) => reader.query(s, p), close: async () => {} });

  it('enqueueEvent() writes land after drain(), latest state per event', async () => {
    const w = new ReportingWriter(async () => shared(), undefined, FAST);
    w.enqueueEvent(info('10000009', 'reserved', '2026-01-01T00:00:01.000Z'));
    w.enqueueEvent(info('10000017', 'reserved', '2026-01-01T00:00:01.000Z'));
    w.enqueueEvent(info('10000009', 'live', '2026-01-01T00:00:02.000Z'));
    await w.drain(10_000);
    assert.equal(w.depth(), 0);
    const rows = await reader.query<Row>(`SELECT event_id, status FROM events WHERE event_id IN ('10000009','10000017') ORDER BY event_id`);
    assert.deepEqual(rows.map((r) => [r.event_id, r.status]), [['10000009', 'live'], ['10000017', 'reserved']]);
    await w.close();
  });

  it('an older state enqueued later never overwrites a newer row', async () => {
    const newer = info('10000025', 'ended', '2026-01-01T00:10:00.000Z');
    await reader.query(UPSERT_EVENT_SQL, upsertParams(newer, Date.parse(newer.updatedAt) * 1000));
    const w = new ReportingWriter(async () => shared(), undefined, FAST);
    w.enqueueEvent(info('10000025', 'live', '2026-01-01T00:05:00.000Z'));
    await w.drain(10_000);
    const rows = await reader.query<Row>(`SELECT status FROM events WHERE event_id = '10000025'`);
    assert.equal(rows[0]!.status, 'ended');
    await w.close();
  });

  it('two states with the same updatedAt land in enqueue order (the second wins)', async () => {
    const w = new ReportingWriter(async () => shared(), undefined, FAST);
    const at = '2026-01-01T00:20:00.000Z';
    w.enqueueEvent(info('10000033', 'live', at));
    await w.drain(10_000);
    w.enqueueEvent(info('10000033', 'ended', at));
    await w.drain(10_000);
    const rows = await reader.query<Row>(`SELECT status FROM events WHERE event_id = '10000033'`);
    assert.equal(rows[0]!.status, 'ended');
    await w.close();
  });

  it('UPSERT_EVENTS_SQL writes one row per event at its latest version, values intact, version guard held', async () => {
    await checkMultiRowUpsert(reader, '1100000');
  });

  it('archive fragments are stored as jsonb', async () => {
    const w = new ReportingWriter(async () => shared(), undefined, FAST);
    const archived = { ...info('10000041', 'archived', '2026-01-01T00:30:00.000Z'), archive: [{ streamId: 's1', start: 0, end: 12.5 }] };
    w.enqueueEvent(archived);
    await w.drain(10_000);
    const rows = await reader.query<Row>(`SELECT archive FROM events WHERE event_id = '10000041'`);
    assert.deepEqual(rows[0]!.archive, [{ streamId: 's1', start: 0, end: 12.5 }]);
    await w.close();
  });

  it('reconcileOnce() through withDb() writes the event PGlite lacks and leaves the one it has', async () => {
    const w = new ReportingWriter(async () => shared(), undefined, FAST);
    const had = info('10000066', 'reserved', '2026-01-01T00:50:00.000Z');
    const lacked = info('10000074', 'live', '2026-01-01T00:50:00.000Z');
    w.enqueueEvent(had);
    await w.drain(10_000);
    const byId = new Map([had, lacked].map((i) => [i.eventId, i]));
    const source = { listEventIds: async () => [...byId.keys()], getEventInfo: async (id: string) => byId.get(id)! };
    const counts = await w.withDb((db) => reconcileOnce(source, db));
    assert.deepEqual(counts, { stored: 2, missing: 1, stale: 0, unchanged: 1, unreadable: 0 });
    const rows = await reader.query<Row>(`SELECT event_id, status FROM events WHERE event_id IN ('10000066','10000074') ORDER BY event_id`);
    assert.deepEqual(rows.map((r) => [r.event_id, r.status]), [['10000066', 'reserved'], ['10000074', 'live']]);
    await w.close();
  });

  it('enqueueEvent() with garbage neither throws nor stalls the queue', async () => {
    const w = new ReportingWriter(async () => shared(), undefined, FAST);
    assert.doesNotThrow(() => w.enqueueEvent(null as unknown as EventInfo));
    w.enqueueEvent(info('10000058', 'reserved', '2026-01-01T00:40:00.000Z'));
    await w.drain(10_000);
    const rows = await reader.query<Row>(`SELECT status FROM events WHERE event_id = '10000058'`);
    assert.equal(rows.length, 1);
    await w.close();
    await w.close();
  });
});

describe('runtime/reporting ReportingWriter on the PGlite host', () => {
  it('the PGlite host dying fails one write; the writer reopens a new host and every state lands', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'jitcast-rep-host-')), 'db');
    const warnings: string[] = [];
    const logger = { debug() {}, info() {}, warn: (m: unknown) => warnings.push(String(m)), error: (m: unknown) => warnings.push(String(m)) };
    const opened: PgliteDb[] = [];
    const w = new ReportingWriter(async () => {
      const db = await openPglite(dir, logger);
      opened.push(db);
      return db;
    }, logger, FAST);
    await w.warmUp();
    w.enqueueEvent(info('30000007', 'reserved', '2026-01-03T00:00:00.000Z'));
    await w.drain(20_000);
    process.kill(opened[0]!.pid!, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 200));
    w.enqueueEvent(info('30000007', 'live', '2026-01-03T00:00:01.000Z'));
    w.enqueueEvent(info('30000015', 'reserved', '2026-01-03T00:00:01.000Z'));
    await w.drain(60_000);
    assert.equal(opened.length, 2, 'one new host after the death');
    assert.ok(warnings.some((m) => /PGlite host died/.test(m)), warnings.join('\n'));
    assert.ok(warnings.some((m) => /reporting write failed, retrying/.test(m)), warnings.join('\n'));
    await w.close();
    const reader = await openPglite(dir);
    try {
      const rows = await reader.query<Row>(`SELECT event_id, status FROM events ORDER BY event_id`);
      assert.deepEqual(rows.map((r) => [r.event_id, r.status]), [['30000007', 'live'], ['30000015', 'reserved']]);
    } finally {
      await reader.close();
    }
  });
});

describe('runtime/reporting ReportingWriter on PostgreSQL', () => {
  const schema = `jitcast_spec_${randomBytes(6).toString('hex')}`;
  const goodUrl = `${PG_URL}?options=${encodeURIComponent(`-c search_path=${schema}`)}`;
  before(async () => {
    const c = new pg.Client({ connectionString: PG_URL });
    await c.connect();
    await c.query(`CREATE SCHEMA ${schema}`);
    await c.end();
  });
  after(async () => {
    const c = new pg.Client({ connectionString: PG_URL });
    await c.connect();
    await c.query(`DROP SCHEMA ${schema} CASCADE`);
    await c.end();
  });

  it('with PostgreSQL unreachable enqueueEvent() returns at once; once it is reachable every event lands exactly once, latest state wins', async () => {
    let url = 'postgres://postgres@127.0.0.1:1/x';
    let opens = 0;
    const counter = { upserts: 0 };
    let failedOnce!: () => void;
    const failed = new Promise<void>((r) => (failedOnce = r));
    const w = new ReportingWriter(
      async () => {
        opens++;
        try {
          return counting(await openPostgres(url), counter);
        } catch (err) {
          failedOnce();
          throw err;
        }
      },
      undefined,
      FAST,
    );
    const ids = ['20000008', '20000016', '20000024'];
    const statuses: EventStatus[] = ['reserved', 'live', 'ended'];
    statuses.forEach((s, i) => {
      for (const id of ids) {
        const ret: unknown = w.enqueueEvent(info(id, s, `2026-01-01T00:00:0${i}.000Z`, `title ${s}`));
        assert.equal(ret, undefined, 'enqueueEvent returns synchronously, not a promise');
      }
    });
    assert.equal(w.depth(), 3, 'pending states coalesce per event');
    await failed;
    assert.equal(w.depth(), 3, 'nothing is dropped while the database is down');
    url = goodUrl;
    await w.drain(20_000);
    assert.ok(opens >= 2, 'the writer reopened after the failure');
    assert.equal(counter.upserts, 3, 'one write per event');
    const reader = await openPostgres(goodUrl);
    try {
      const rows = await reader.query<Row>('SELECT event_id, status, title FROM events ORDER BY event_id');
      assert.deepEqual(rows.map((r) => [r.event_id, r.status, r.title]), ids.map((id) => [id, 'ended', 'title ended']));
    } finally {
      await reader.close();
      await w.close();
    }
  });

  it('UPSERT_EVENTS_SQL writes one row per event at its latest version, values intact, version guard held', async () => {
    const db = await openPostgres(goodUrl);
    try {
      await checkMultiRowUpsert(db, '2100000');
    } finally {
      await db.close();
    }
  });

  it('a state enqueued while its previous one is being written is written next', async () => {
    const counter = { upserts: 0 };
    const w = new ReportingWriter(async () => counting(await openPostgres(goodUrl), counter), undefined, FAST);
    w.enqueueEvent(info('20000032', 'reserved', '2026-01-02T00:00:00.000Z'));
    w.enqueueEvent(info('20000040', 'reserved', '2026-01-02T00:00:00.000Z'));
    await new Promise((r) => setImmediate(r));
    w.enqueueEvent(info('20000032', 'cancelled', '2026-01-02T00:00:01.000Z'));
    await w.drain(20_000);
    const reader = await openPostgres(goodUrl);
    try {
      const rows = await reader.query<Row>(`SELECT event_id, status FROM events WHERE event_id IN ('20000032','20000040') ORDER BY event_id`);
      assert.deepEqual(rows.map((r) => [r.event_id, r.status]), [['20000032', 'cancelled'], ['20000040', 'reserved']]);
    } finally {
      await reader.close();
      await w.close();
    }
  });
});
