/**
 * The cluster's reporting queue (runtime/db-queue.ts) against the machine's Redis (a namespace of
 * this run, purged after) and a PostgreSQL of the spec's own (spec/support/postgres-instance.ts,
 * port 11601), which the spec stops and starts: states coalesce into one job per flush and the same
 * batch sent twice is one job; a job's states land as one row per event at its latest version; jobs
 * of the shape before batching are still written; one refused row does not hold back the rest of its
 * batch; with PostgreSQL down the jobs wait without using up attempts and land once it is back; an
 * older state never overwrites a newer row, within a batch or across batches in either order; jobs a
 * closed worker held are taken by the next one; the producer keeps states in memory while Redis is
 * away and sends them when it returns.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import pg from 'pg';
import { openPostgres, type Db } from '../../runtime/db.ts';
import {
  DB_QUEUE, DbQueueProducer, DbQueueWorker, FLUSH_BATCH, QueuedReporting, backoffMs, dbJobId, dbQueuePrefix, jobOptions, jobStates,
  type DbJobData, type DbJobState, type LegacyDbJobData, type WrittenState,
} from '../../runtime/db-queue.ts';
import type { EventInfo, EventStatus } from '../../runtime/contracts.ts';
import { VersionClock } from '../../runtime/reporting.ts';
import { makeEventId } from '../../codecs/ids.ts';
import { CapturingLogger, purgeNamespace, SPEC_REDIS_URL, specNamespace, startPrivateRedis } from '../support/redis.ts';
import { startPostgresInstance, type PostgresInstance } from '../support/postgres-instance.ts';
import { waitFor } from '../support/wait.ts';

const FAST = { minBackoffMs: 20, maxBackoffMs: 200 };
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function info(eventId: string, status: EventStatus, updatedAt: string, title = 'Quarterly call'): EventInfo {
  return {
    eventId, title, format: 'hls', createdAt: '2026-01-01T00:00:00.000Z', updatedAt,
    archiveDays: 30, hasPassword: false, attendeeUrl: 'http://x/e/t', hostUrl: 'http://x/e/h', status,
  };
}

/** Jobs not yet done. */
async function unfinished(q: Queue): Promise<number> {
  const c = await q.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
  return Object.values(c).reduce((a, b) => a + b, 0);
}

interface Row { event_id: string; status: string; title: string; version: string }

/** A job's state of `info` at the version its updatedAt gives. */
function stateOf(i: EventInfo, bump = 0): DbJobState {
  return { eventId: i.eventId, version: Date.parse(i.updatedAt) * 1000 + bump, info: i };
}

describe('runtime/db-queue pure parts', () => {
  test('dbJobId() is one ID per batch of (event, version) pairs and never parses as an integer', () => {
    const a = stateOf(info('12345674', 'reserved', '2026-02-01T00:00:00.000Z'));
    const b = stateOf(info('20000014', 'live', '2026-02-01T00:00:00.000Z'));
    const id = dbJobId([a, b]);
    assert.match(id, /^b-[0-9a-f]{40}$/);
    assert.ok(Number.isNaN(Number(id)));
    assert.equal(dbJobId([{ ...a, info: { ...a.info, title: 'other' } }, b]), id, 'the same pairs are the same batch');
    assert.notEqual(dbJobId([{ ...a, version: a.version + 1 }, b]), id, 'another version');
    assert.notEqual(dbJobId([a]), id, 'fewer states');
    assert.notEqual(dbJobId([b, a]), id, 'another order');
  });

  test('jobStates() reads a batch job and a job of the shape before batching', () => {
    const a = stateOf(info('12345674', 'reserved', '2026-02-01T00:00:00.000Z'));
    assert.deepEqual(jobStates({ states: [a], by: 'n1' }), [a]);
    const legacy: LegacyDbJobData = { ...a, by: 'n1' };
    assert.deepEqual(jobStates(legacy), [a]);
    assert.deepEqual(jobStates({ states: [], by: 'n1' }), []);
  });

  test('backoffMs() doubles from the minimum and stops at the cap', () => {
    assert.deepEqual([1, 2, 3, 4, 8, 30, 1000].map((a) => backoffMs(a, 200, 30_000)), [200, 400, 800, 1600, 25_600, 30_000, 30_000]);
    assert.equal(backoffMs(0, 200, 30_000), 200);
  });

  test('jobOptions() retries practically forever with the capped strategy and keeps no finished job', () => {
    const states = [{ ...stateOf(info('12345674', 'reserved', '2026-02-01T00:00:00.000Z')), version: 7 }];
    const o = jobOptions(states);
    assert.equal(o.jobId, dbJobId(states));
    assert.ok((o.attempts ?? 0) >= 1_000_000);
    assert.deepEqual(o.backoff, { type: 'capped' });
    assert.equal(o.removeOnComplete, true);
  });
});

describe('runtime/reporting VersionClock', () => {
  test('next() is updatedAt in µs, and one above the last for a second state in the same millisecond', () => {
    const c = new VersionClock();
    const at = '2026-02-01T00:00:00.000Z';
    const base = Date.parse(at) * 1000;
    assert.equal(c.next(info('41000003', 'reserved', at)), base);
    assert.equal(c.next(info('41000003', 'live', at)), base + 1);
    assert.equal(c.next(info('41000003', 'ended', '2026-02-01T00:00:00.001Z')), base + 1000);
    assert.equal(c.next(info('41000011', 'reserved', at)), base, 'per event');
    c.saw('41000011', base + 5);
    assert.equal(c.next(info('41000011', 'live', at)), base + 6, 'a version given from outside raises the floor');
  });

  test('next() forgets events a minute old once it remembers more than 10,000, and a burst of fresh ones costs a few prunes, not one per call', () => {
    const c = new VersionClock();
    const old = new Date(Date.now() - 120_000).toISOString();
    const fresh = new Date().toISOString();
    const id = (i: number) => makeEventId(String(i).padStart(7, '0'));
    for (let i = 0; i < 10_000; i++) c.next(info(id(i), 'reserved', old));
    assert.equal(c.prunes, 0);
    c.next(info(id(10_000), 'reserved', fresh), (e) => e === id(5));
    assert.equal(c.prunes, 1);
    assert.equal(c.size, 2, 'the old ones are gone but the one kept and the fresh one');
    for (let i = 20_000; i < 60_000; i++) c.next(info(id(i), 'reserved', fresh));
    assert.equal(c.size, 40_001, 'the fresh events are all remembered (the old one kept before is not kept by these calls)');
    assert.ok(c.prunes <= 4, `${c.prunes} prune passes for 40,000 fresh events`);
  });
});

describe('runtime/db-queue on Redis and PostgreSQL', { timeout: 90_000 }, () => {
  let pgi: PostgresInstance;
  let reader: Db;
  const namespaces: string[] = [];
  const closers: Array<() => Promise<unknown>> = [];

  before(async () => {
    pgi = await startPostgresInstance(11601);
    reader = await openPostgres(pgi.url); // creates the schema
  });
  after(async () => {
    for (const c of closers.reverse()) await c().catch(() => undefined);
    await reader?.close().catch(() => undefined);
    await pgi?.destroy();
    for (const ns of namespaces) await purgeNamespace(SPEC_REDIS_URL, ns);
  });

  function ns(what: string): string {
    const n = specNamespace(what);
    namespaces.push(n);
    return n;
  }

  function queueOf(namespace: string): Queue<DbJobData> {
    const client = new Redis(SPEC_REDIS_URL);
    const q = new Queue<DbJobData>(DB_QUEUE, { connection: client, prefix: dbQueuePrefix(namespace) });
    closers.push(async () => {
      await q.close();
      client.disconnect();
    });
    return q;
  }

  function producer(namespace: string, logger = new CapturingLogger(), url = SPEC_REDIS_URL): DbQueueProducer {
    const p = new DbQueueProducer({ url, namespace, nodeId: 'spec-a', logger: logger as never, ...FAST });
    closers.push(() => p.close());
    return p;
  }

  function worker(namespace: string, logger = new CapturingLogger(), opts: { onWritten?: (d: WrittenState) => void; concurrency?: number } = {}): DbQueueWorker {
    const w = new DbQueueWorker({ url: SPEC_REDIS_URL, namespace, openDb: () => openPostgres(pgi.url), logger: logger as never, ...FAST, ...opts });
    closers.push(() => w.close());
    return w;
  }

  const rowsOf = (ids: string[]) => reader.query<Row>('SELECT event_id, status, title, version::text AS version FROM events WHERE event_id = ANY($1::text[]) ORDER BY event_id', [ids]);

  /** Adds a hand-made job, as another (or an older) node would have. */
  async function addJob(namespace: string, data: DbJobData | LegacyDbJobData, jobId: string): Promise<void> {
    const q = queueOf(namespace) as unknown as Queue<DbJobData | LegacyDbJobData>;
    await q.add('upsert', data, { ...jobOptions(jobStates(data)), jobId });
  }

  test('one flush is one job carrying the latest state of each event, and the same batch sent twice is one job', async () => {
    const n = ns('dbq-coalesce');
    const p = producer(n);
    p.enqueueEvent(info('40000004', 'reserved', '2026-02-01T00:00:00.000Z'));
    p.enqueueEvent(info('40000004', 'live', '2026-02-01T00:00:01.000Z'));
    p.enqueueEvent(info('40000012', 'reserved', '2026-02-01T00:00:00.000Z'));
    assert.equal(p.depth(), 2, 'one pending state per event');
    await p.drain(5000);
    const again = info('40000012', 'reserved', '2026-02-01T00:00:00.000Z');
    p.enqueueEvent(again, Date.parse(again.updatedAt) * 1000); // the very same (event, version)
    await p.drain(5000);
    p.enqueueEvent(again, Date.parse(again.updatedAt) * 1000); // a second flush of the very same batch
    await p.drain(5000);
    assert.equal(p.sent, 4, 'sent counts states');
    const q = queueOf(n);
    const jobs = await q.getJobs(['waiting']);
    const batches = jobs.map((j) => j.data.states.map((s) => `${s.eventId}:${s.info.status}`).join(' ')).sort();
    assert.deepEqual(batches, ['40000004:live 40000012:reserved', '40000012:reserved']);
    assert.ok(jobs.every((j) => j.id === dbJobId(j.data.states) && j.data.by === 'spec-a'));
  });

  test('1,200 states of 600 events go as jobs of at most FLUSH_BATCH and land as exactly 600 rows at their latest version; a job naming events twice lands one row each', async () => {
    const n = ns('dbq-batch');
    const p = producer(n);
    const ids = Array.from({ length: 600 }, (_, i) => String(42_000_000 + i));
    const statuses: EventStatus[] = ['reserved', 'live'];
    for (const [k, s] of statuses.entries()) for (const id of ids) p.enqueueEvent(info(id, s, `2026-02-06T00:00:0${k}.000Z`, `t-${s}`));
    await p.drain(5000);
    const q = queueOf(n);
    const jobs = await q.getJobs(['waiting']);
    assert.deepEqual(jobs.map((j) => j.data.states.length).sort((a, b) => a - b), [600 - FLUSH_BATCH, FLUSH_BATCH], 'FLUSH_BATCH states a job, one per event');
    // A hand-made job naming events twice, out of order: PostgreSQL refuses such a statement unless the worker keeps one state per event.
    const twice = ['42000600', '42000601'];
    const mixed = [
      stateOf(info(twice[0]!, 'live', '2026-02-06T00:00:01.000Z')), stateOf(info(twice[1]!, 'ended', '2026-02-06T00:00:02.000Z')),
      stateOf(info(twice[0]!, 'reserved', '2026-02-06T00:00:00.000Z')), stateOf(info(twice[1]!, 'live', '2026-02-06T00:00:01.000Z')),
    ];
    await addJob(n, { states: mixed, by: 'spec-b' }, dbJobId(mixed));
    const log = new CapturingLogger();
    const written: WrittenState[] = [];
    const w = worker(n, log, { onWritten: (d) => written.push(d) });
    await waitFor('queue empty', async () => (await unfinished(q)) === 0 || undefined, 20_000);
    const rows = await rowsOf([...ids, ...twice]);
    assert.equal(rows.length, 602);
    assert.ok(rows.slice(0, 600).every((r) => r.status === 'live' && r.title === 't-live' && Number(r.version) === Date.parse('2026-02-06T00:00:01.000Z') * 1000));
    assert.deepEqual(rows.slice(600).map((r) => r.status), ['live', 'ended']);
    assert.equal(w.written, 602, 'one per row');
    assert.equal(written.length, 602);
    assert.ok(written.some((d) => d.eventId === twice[1] && d.info.status === 'ended' && d.by === 'spec-b'));
    assert.ok(!log.lines.some((l) => /refused/.test(l)), 'one statement per job, none refused:\n' + log.lines.join('\n'));
  });

  test('a job of the shape before batching (one state, ev-<id>-<version>) is still written', async () => {
    const n = ns('dbq-legacy');
    const s = stateOf(info('42000700', 'live', '2026-02-07T00:00:00.000Z', 'legacy'));
    await addJob(n, { ...s, by: 'old-node' }, `ev-${s.eventId}-${s.version}`);
    const written: WrittenState[] = [];
    worker(n, undefined, { onWritten: (d) => written.push(d) });
    await waitFor('the legacy job written', () => written.length === 1 || undefined);
    assert.deepEqual(written, [{ ...s, by: 'old-node' }]);
    assert.deepEqual((await rowsOf(['42000700'])).map((r) => [r.status, r.title, r.version]), [['live', 'legacy', String(s.version)]]);
  });

  test('a batch with one row PostgreSQL refuses writes the others, logs the bad one and keeps only it in the job', async () => {
    const n = ns('dbq-refused');
    const good = ['42000800', '42000818', '42000826'].map((id) => stateOf(info(id, 'reserved', '2026-02-08T00:00:00.000Z')));
    const bad = stateOf({ ...info('42000834', 'reserved', '2026-02-08T00:00:00.000Z'), title: null as unknown as string }); // title is NOT NULL
    const states = [good[0]!, bad, good[1]!, good[2]!];
    await addJob(n, { states, by: 'spec-a' }, dbJobId(states));
    const log = new CapturingLogger();
    const w = worker(n, log);
    await waitFor('the good rows', async () => (await rowsOf(good.map((s) => s.eventId))).length === 3 || undefined, 10_000);
    const q = queueOf(n);
    const job = await waitFor('the job retried with the bad state alone', async () => {
      const j = await q.getJob(dbJobId(states));
      return j && j.attemptsMade >= 1 && j.data.states.length === 1 ? j : undefined;
    }, 10_000);
    assert.equal(job.data.states[0]!.eventId, bad.eventId);
    assert.deepEqual(await rowsOf([bad.eventId]), []);
    assert.ok(log.lines.some((l) => /reporting batch refused, writing its rows one by one \[.*states:4\]/.test(l)), log.lines.join('\n'));
    assert.ok(log.lines.some((l) => /reporting row refused \[event:42000834 /.test(l)), log.lines.join('\n'));
    assert.ok(!log.lines.some((l) => good.some((g) => l.includes(`reporting row refused [event:${g.eventId} `))), 'only the bad row refused');
    assert.ok(log.lines.some((l) => /reporting write failed, retrying \[.*states:1 event:42000834.*\] 1 of 4 rows refused/.test(l)), log.lines.join('\n'));
    assert.equal(w.written, 3);
    await w.close();
  });

  for (const newerFirst of [true, false]) {
    test(`across two batches the newer state of each event stands (${newerFirst ? 'newer' : 'older'} batch written first)`, async () => {
      const n = ns(`dbq-guard-${newerFirst}`);
      const [x, y] = newerFirst ? ['42000900', '42000918'] : ['42000926', '42000934'];
      // Each batch holds the newer state of one event and the older of the other, so either order writes both over a newer and an older row.
      const a = [stateOf(info(x, 'ended', '2026-02-09T00:00:05.000Z')), stateOf(info(y, 'reserved', '2026-02-09T00:00:01.000Z'))];
      const b = [stateOf(info(x, 'live', '2026-02-09T00:00:01.000Z')), stateOf(info(y, 'cancelled', '2026-02-09T00:00:05.000Z'))];
      const [first, second] = newerFirst ? [a, b] : [b, a];
      const written: WrittenState[] = [];
      const w = worker(n, undefined, { concurrency: 1, onWritten: (d) => written.push(d) });
      await addJob(n, { states: first, by: 'spec-a' }, dbJobId(first));
      await waitFor('the first batch', () => written.length === 2 || undefined);
      assert.deepEqual((await rowsOf([x, y])).map((r) => r.status), newerFirst ? ['ended', 'reserved'] : ['live', 'cancelled']);
      await addJob(n, { states: second, by: 'spec-a' }, dbJobId(second));
      await waitFor('the second batch', () => written.length === 4 || undefined);
      const rows = await rowsOf([x, y]);
      assert.deepEqual(rows.map((r) => [r.status, r.version]), [['ended', String(a[0]!.version)], ['cancelled', String(b[1]!.version)]]);
      await w.close();
    });
  }

  test('with PostgreSQL down jobs wait without using attempts; once it is back every event lands once, newest state', async () => {
    const n = ns('dbq-outage');
    const log = new CapturingLogger();
    const p = producer(n);
    const w = worker(n, log);
    await w.ready();
    await pgi.stop();
    const ids = ['40000020', '40000038', '40000046'];
    for (const [i, s] of (['reserved', 'live', 'ended'] as EventStatus[]).entries()) {
      for (const id of ids) p.enqueueEvent(info(id, s, `2026-02-02T00:00:0${i}.000Z`, `t-${s}`));
      await p.drain(5000); // each flush its own job
    }
    await waitFor('the worker to see the outage', () => w.waitingForDb);
    await sleep(600); // several probes at the short cap
    const q = queueOf(n);
    const jobs = await q.getJobs(['active', 'waiting', 'delayed']);
    assert.equal(jobs.length, 3, 'one job per flush');
    assert.equal(jobs.reduce((k, j) => k + j.data.states.length, 0), 9, 'every state is in redis');
    assert.ok(jobs.every((j) => j.attemptsMade === 0), `an outage uses no attempt: ${jobs.map((j) => j.attemptsMade).join(',')}`);
    await pgi.start();
    await waitFor('queue empty', async () => (await unfinished(q)) === 0 || undefined);
    const rows = await rowsOf(ids);
    assert.deepEqual(rows.map((r) => [r.event_id, r.status, r.title]), ids.map((id) => [id, 'ended', 't-ended']));
    assert.ok(log.lines.some((l) => /reporting DB unreachable/.test(l)), log.lines.join('\n'));
    assert.ok(log.lines.some((l) => /reporting DB reachable again/.test(l)), log.lines.join('\n'));
    assert.equal(w.waitingForDb, false);
  });

  test('an older state delivered after a newer one leaves the newer row', async () => {
    const n = ns('dbq-order');
    const p = producer(n);
    const newer = info('40000053', 'ended', '2026-02-03T00:00:05.000Z');
    const older = info('40000053', 'live', '2026-02-03T00:00:01.000Z');
    p.enqueueEvent(newer);
    await p.drain(5000);
    p.enqueueEvent(older, Date.parse(older.updatedAt) * 1000);
    await p.drain(5000);
    const written: WrittenState[] = [];
    const w = worker(n, undefined, { onWritten: (d) => written.push(d) });
    await waitFor('both jobs processed', () => written.length === 2 || undefined);
    assert.deepEqual((await rowsOf(['40000053'])).map((r) => r.status), ['ended']);
    await w.close();
  });

  test('jobs a closing worker held while PostgreSQL was down are written by the next worker', async () => {
    const n = ns('dbq-handover');
    const p = producer(n);
    await pgi.stop();
    const first = worker(n);
    await first.ready();
    const ids = ['40000061', '40000079'];
    for (const id of ids) p.enqueueEvent(info(id, 'reserved', '2026-02-04T00:00:00.000Z'));
    await p.drain(5000);
    const q = queueOf(n);
    await waitFor('the job active on the first worker', async () => (await q.getActiveCount()) === 1 || undefined);
    await first.close();
    await pgi.start();
    const second = worker(n);
    await waitFor('rows written by the second worker', async () => (await rowsOf(ids)).length === 2 || undefined, 20_000);
    assert.ok(second.written >= 2);
  });

  test('openPostgres() rejects, and the process lives, when PostgreSQL stops while its migrations hold a connection', async () => {
    // Hold the migration lock so openPostgres() waits inside its transaction on a checked-out client.
    const holder = new pg.Client({ connectionString: pgi.url });
    holder.on('error', () => undefined);
    await holder.connect();
    await holder.query('BEGIN');
    await holder.query('SELECT pg_advisory_xact_lock(7431001)');
    const log = new CapturingLogger();
    const opening = openPostgres(pgi.url, log as never).then(() => undefined, (err: Error) => err);
    await waitFor('openPostgres() waiting on the lock', async () => {
      const r = await holder.query(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`);
      return r.rows[0].n > 0 || undefined;
    });
    await pgi.stop();
    assert.ok((await opening) instanceof Error, 'openPostgres() rejected');
    await holder.end().catch(() => undefined);
    await pgi.start();
    assert.ok(log.lines.some((l) => /postgres connection lost during migrations/.test(l)), log.lines.join('\n'));
  });

  test('QueuedReporting.withDb() waits out an outage and then runs', async () => {
    const n = ns('dbq-withdb');
    const r = new QueuedReporting({ url: SPEC_REDIS_URL, namespace: n, nodeId: 'spec-a', openDb: () => openPostgres(pgi.url), ...FAST });
    closers.push(() => r.close());
    await pgi.stop();
    let answered = false;
    const asked = r.withDb(async (db) => {
      const rows = await db.query<{ x: number }>('SELECT 1 AS x');
      answered = true;
      return rows[0]!.x;
    });
    await sleep(500);
    assert.equal(answered, false, 'no answer while the database is down');
    await pgi.start();
    assert.equal(await asked, 1);
    await r.close();
    await assert.rejects(r.worker.withDb(async () => 1), /closing/);
  });

  test('the producer keeps states in memory while Redis is away and sends them once it is back', async () => {
    const n = ns('dbq-redis');
    const redis = await startPrivateRedis(11638);
    closers.push(() => redis.kill());
    await redis.kill();
    const log = new CapturingLogger();
    const p = producer(n, log, redis.url);
    p.enqueueEvent(info('40000087', 'reserved', '2026-02-05T00:00:00.000Z'));
    p.enqueueEvent(info('40000095', 'reserved', '2026-02-05T00:00:00.000Z'));
    await waitFor('a failed flush', () => log.lines.some((l) => /reporting states not queued/.test(l)) || undefined);
    assert.equal(p.depth(), 2, 'nothing dropped');
    await redis.start();
    await p.drain(15_000);
    const client = new Redis(redis.url);
    const q = new Queue<DbJobData>(DB_QUEUE, { connection: client, prefix: dbQueuePrefix(n) });
    try {
      const jobs = await q.getJobs(['waiting']);
      assert.deepEqual(jobs.map((j) => j.data.states.map((s) => s.eventId).sort()), [['40000087', '40000095']], 'one job of both states');
    } finally {
      await q.close();
      client.disconnect();
    }
    await p.close();
  });
});
