/**
 * The event actor's start-up reconciliation (runtime/reconcile.ts) on the in-process broker with the
 * real ReportingWriter over the machine's PostgreSQL (a schema of this run): events whose rows never
 * landed are written when the node starts again, and start-up does not wait for a database that is
 * down.
 */
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { ServiceBroker } from 'moleculer';
import { openPostgres, type Db } from '../../runtime/db.ts';
import { ReportingWriter, UPSERT_EVENT_SQL } from '../../runtime/reporting.ts';
import { testConfig } from '../support/config.ts';
import { sampleInfo, startPlane, waitFor } from '../support/event-plane.ts';

const PG_URL = 'postgres://postgres@127.0.0.1:5432/test';

describe('event actor start-up reconciliation', { timeout: 60_000 }, () => {
  const schema = `jitcast_spec_${randomBytes(6).toString('hex')}`;
  const url = `${PG_URL}?options=${encodeURIComponent(`-c search_path=${schema}`)}`;
  const brokers: ServiceBroker[] = [];
  before(async () => {
    const c = new pg.Client({ connectionString: PG_URL });
    await c.connect();
    await c.query(`CREATE SCHEMA ${schema}`);
    await c.end();
  });
  afterEach(async () => {
    while (brokers.length > 0) await brokers.pop()!.stop();
  });
  after(async () => {
    const c = new pg.Client({ connectionString: PG_URL });
    await c.connect();
    await c.query(`DROP SCHEMA ${schema} CASCADE`);
    await c.end();
  });

  const rows = async () => {
    const db = await openPostgres(url);
    try {
      return await db.query<{ event_id: string; status: string; title: string }>('SELECT event_id, status, title FROM events ORDER BY event_id');
    } finally {
      await db.close();
    }
  };

  /** A ReportingWriter whose `withDb` (the reconciliation's way in) counts passes and upserts. */
  class CountingWriter extends ReportingWriter {
    passes = 0;
    upserts = 0;
    override async withDb<T>(fn: (db: Db) => Promise<T>): Promise<T> {
      const r = await super.withDb((db) =>
        fn({
          query: async <R,>(sql: string, params?: unknown[]) => {
            if (sql === UPSERT_EVENT_SQL) this.upserts++;
            return db.query<R>(sql, params);
          },
          close: () => db.close(),
        }),
      );
      this.passes++;
      return r;
    }
  }

  it('events stored while their rows never landed are written at the next start', async () => {
    const config = testConfig({});
    // First start: a database that never answers, so nothing lands (and start-up still completes).
    class Impatient extends ReportingWriter {
      override close(): Promise<void> {
        return super.close(100); // the state it holds can never land: do not wait the default 5 s
      }
    }
    const first = await startPlane(config, { reporting: (l) => new Impatient(() => openPostgres('postgres://postgres@127.0.0.1:1/none', l), l, { minBackoffMs: 20, maxBackoffMs: 50 }) });
    brokers.push(first.broker);
    const a = sampleInfo({ eventId: '12345674', title: 'first' });
    const b = sampleInfo({ eventId: '20000014', title: 'second', status: 'cancelled', updatedAt: '2026-11-25T11:00:00.000Z' });
    for (const info of [a, b]) await first.broker.call('content-storage.putEventInfo', { info });
    await first.broker.call('event.register', { info: a });
    await brokers.pop()!.stop();
    assert.deepEqual(await rows(), []);

    // Second start on the same data directory, database up: reconciliation writes both.
    let writer!: CountingWriter;
    const second = await startPlane(config, { reporting: (l) => (writer = new CountingWriter(() => openPostgres(url, l), l)) });
    brokers.push(second.broker);
    await waitFor('one reconciliation pass', () => writer.passes === 1 || undefined);
    assert.equal(writer.upserts, 2);
    const got = await rows();
    assert.deepEqual(got.map((r) => [r.event_id, r.status, r.title]), [['12345674', 'reserved', 'first'], ['20000014', 'cancelled', 'second']]);
  });

  it('a restart with nothing missing makes a pass that writes nothing', async () => {
    const config = testConfig({});
    let writer!: CountingWriter;
    const make = (l: any) => (writer = new CountingWriter(() => openPostgres(url, l), l));
    const one = await startPlane(config, { reporting: make });
    brokers.push(one.broker);
    const info = sampleInfo({ eventId: '30000012', title: 'steady' });
    await one.broker.call('content-storage.putEventInfo', { info });
    await one.broker.call('event.register', { info });
    await waitFor('row', async () => ((await rows()).some((r) => r.event_id === '30000012') ? true : undefined));
    await brokers.pop()!.stop();
    await startPlane(config, { reporting: make }).then((p) => brokers.push(p.broker));
    await waitFor('one reconciliation pass', () => writer.passes === 1 || undefined);
    assert.equal(writer.upserts, 0);
  });
});
