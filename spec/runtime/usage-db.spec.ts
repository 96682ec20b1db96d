import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { openDb, openPostgres, type Db, type PgliteDb } from '../../runtime/db.ts';
import { testConfig } from '../support/config.ts';
import { UsageWriter, countsOfRow, type UsageRow } from '../../runtime/usage-db.ts';

const PG_URL = 'postgres://postgres@127.0.0.1:5432/test';
const FAST = { minBackoffMs: 20, maxBackoffMs: 100, readTimeoutMs: 1000 };

/** A fresh event ID per test (the table needs no Luhn digit; the shared test DB needs no clash). */
function eventId(): string {
  return `9${randomInt(10_000_000).toString().padStart(7, '0')}`;
}

function row(id: string, o: Partial<UsageRow> = {}): UsageRow {
  return {
    eventId: id, peakListeners: 10, peakAt: '2027-01-15T10:10:00.000Z', totalListeners: 20, listeningSeconds: 600, segmentRequests: 300, playlistRequests: 310,
    callSeconds: 120, calls: 2, streams: 1, streamSeconds: 130, fragments: 0, status: 'live', final: false, updatedAt: '2027-01-15T10:20:00.000Z', ...o,
  };
}

describe('runtime/usage-db UsageWriter on PostgreSQL', () => {
  let db: Db;
  before(async () => {
    db = await openPostgres(PG_URL);
  });
  after(() => db.close());

  it('migration 3 made event_usage; a row written reads back the same', async () => {
    const id = eventId();
    const w = new UsageWriter(() => openPostgres(PG_URL), undefined, FAST);
    w.enqueue(row(id));
    await w.drain(10_000);
    const back = await w.read(id);
    assert.deepEqual(back, row(id));
    assert.deepEqual(countsOfRow(back!).currentListeners, 0);
    assert.equal(await w.read('00000000'), undefined);
    await w.close();
  });

  it('an upsert keeps the larger of each counter, the peak time of the larger peak, and final once set', async () => {
    const id = eventId();
    const w = new UsageWriter(() => openPostgres(PG_URL), undefined, FAST);
    w.enqueue(row(id, { peakListeners: 50, peakAt: '2027-01-15T10:30:00.000Z', status: 'archived', final: true, fragments: 3 }));
    await w.drain(10_000);
    // A node that restarted knows less; its write must not lower anything nor un-finalize the row.
    w.enqueue(row(id, { peakListeners: 5, peakAt: '2027-01-15T11:00:00.000Z', totalListeners: 30, listeningSeconds: 10, status: 'live', final: false, fragments: 0, updatedAt: '2027-01-15T11:00:00.000Z' }));
    await w.drain(10_000);
    const r = (await w.read(id))!;
    assert.deepEqual(
      [r.peakListeners, r.peakAt, r.totalListeners, r.listeningSeconds, r.fragments, r.status, r.final, r.updatedAt],
      [50, '2027-01-15T10:30:00.000Z', 30, 600, 3, 'archived', true, '2027-01-15T11:00:00.000Z'],
    );
    await w.close();
  });

  it('queued rows wait while the database is unreachable and land, latest per event, once it answers', async () => {
    const id = eventId();
    let down = true;
    let attempts = 0;
    const open = async () => {
      attempts++;
      if (down) throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
      return openPostgres(PG_URL);
    };
    const w = new UsageWriter(open, undefined, FAST);
    w.enqueue(row(id, { totalListeners: 1 }));
    w.enqueue(row(id, { totalListeners: 2 }));
    assert.equal(w.depth(), 1);
    await assert.rejects(w.read(id), /ECONNREFUSED/);
    while (attempts < 3) await new Promise((r) => setTimeout(r, 10));
    assert.equal(w.depth(), 1);
    down = false;
    await w.drain(10_000);
    assert.equal((await db.query<{ total_listeners: number }>('SELECT total_listeners FROM event_usage WHERE event_id = $1', [id]))[0]?.total_listeners, 2);
    await w.close();
  });

  it('read() gives up after its timeout when the database hangs', async () => {
    const w = new UsageWriter(() => new Promise<Db>(() => {}), undefined, { ...FAST, readTimeoutMs: 50 });
    await assert.rejects(w.read('12345674'), /did not answer within 50 ms/);
  });
});

describe('runtime/db openDb in embedded mode', () => {
  it('shares one PGlite host per data directory: the usage and event writers never open two on one directory', async () => {
    const config = testConfig();
    const a = (await openDb(config)) as PgliteDb;
    const b = (await openDb(config)) as PgliteDb;
    try {
      assert.ok(a.pid !== undefined);
      assert.equal(b.pid, a.pid);
      await a.query("INSERT INTO event_usage (event_id, peak_listeners, total_listeners, listening_seconds, segment_requests, playlist_requests, call_seconds, calls, streams, stream_seconds, fragments, updated_at) VALUES ('12345674', 1, 1, 2, 1, 1, 0, 0, 0, 0, 0, now())");
      // One closes; the other's share stays open on the same host.
      await a.close();
      assert.equal((await b.query<{ n: number }>('SELECT count(*)::int AS n FROM event_usage'))[0]?.n, 1);
    } finally {
      await a.close();
      await b.close();
    }
    // The last close closed the host: the next open starts a new one on the same data.
    const c = (await openDb(config)) as PgliteDb;
    try {
      assert.notEqual(c.pid, a.pid);
      assert.equal((await c.query<{ n: number }>('SELECT count(*)::int AS n FROM event_usage'))[0]?.n, 1);
    } finally {
      await c.close();
    }
  });
});
