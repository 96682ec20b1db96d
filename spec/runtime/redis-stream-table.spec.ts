/**
 * RedisStreamTable against the machine's real Redis (a namespace of its own, deleted afterwards) and,
 * for outages, a private redis-server on a spec port that the spec kills and restarts.
 */
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { RedisConnection } from '../../runtime/redis.ts';
import { RedisStreamTable } from '../../runtime/redis-stream-table.ts';
import { STREAM_ID, dataset, stopRecord, waitFor } from '../support/event-plane.ts';
import { CapturingLogger, SPEC_REDIS_URL, connectRedis, keysOf, purgeNamespace, specNamespace, startPrivateRedis, waitReady, type PrivateRedis } from '../support/redis.ts';

const EVENT = '12345674';
const OTHER = '12345674-spec-node-10004-lq0abd';
const RESTARTED = '12345674-spec-node-10002-lq0abz';
const FOREIGN = '12345682-spec-node-10006-lq0abe';
const TIMEOUT_MS = 1000;

const ns = specNamespace('streams');
const open: RedisConnection[] = [];

async function table(logger = new CapturingLogger(), url = SPEC_REDIS_URL, namespace = ns): Promise<{ t: RedisStreamTable; conn: RedisConnection; logger: CapturingLogger }> {
  const conn = await connectRedis(url, namespace, 'monitoring', logger);
  open.push(conn);
  return { t: new RedisStreamTable(conn, TIMEOUT_MS, logger), conn, logger };
}

afterEach(async () => {
  while (open.length > 0) await open.pop()!.close();
  await purgeNamespace(SPEC_REDIS_URL, ns);
});

describe('RedisStreamTable (real Redis)', () => {
  it('push() answers up then seen, and active()/isAlive() see the stream under jitcast:<ns>: keys', async () => {
    const { t } = await table();
    assert.equal(await t.push(dataset(STREAM_ID), Date.now()), 'up');
    assert.equal(await t.push(dataset(STREAM_ID), Date.now()), 'seen');
    await t.push(dataset(FOREIGN), Date.now());
    assert.deepEqual((await t.active(Date.now(), EVENT)).map((d) => d.streamId), [STREAM_ID]);
    assert.equal((await t.active(Date.now())).length, 2);
    assert.equal(await t.isAlive(STREAM_ID, Date.now()), true);
    assert.deepEqual(await keysOf(SPEC_REDIS_URL, ns), [
      `history:${EVENT}`,
      `history:${EVENT}:seen`,
      'history:12345682',
      'history:12345682:seen',
      `stream:${STREAM_ID}`,
      `stream:${FOREIGN}`,
      'streams:active',
      `streams:active:${EVENT}`,
      'streams:active:12345682',
    ]);
  });

  it('a stream whose pushes stop leaves active() and isAlive() once its TTL passes, and a fresh table on another connection agrees', async () => {
    const { t } = await table();
    await t.push(dataset(STREAM_ID), Date.now());
    await t.push(dataset(OTHER), Date.now());
    const started = Date.now();
    // OTHER keeps pushing, STREAM_ID goes quiet.
    const keepAlive = setInterval(() => void t.push(dataset(OTHER), Date.now()), 200);
    try {
      await waitFor('quiet stream gone', async () => !(await t.isAlive(STREAM_ID, Date.now())), 3000);
      const goneAfter = Date.now() - started;
      assert.ok(goneAfter >= TIMEOUT_MS - 50 && goneAfter < TIMEOUT_MS + 500, `gone after ${goneAfter} ms`);
      assert.deepEqual((await t.active(Date.now(), EVENT)).map((d) => d.streamId), [OTHER]);
      const { t: fresh } = await table();
      assert.deepEqual((await fresh.active(Date.now())).map((d) => d.streamId), [OTHER]);
      // The quiet stream's history record stays, with the last push it made.
      const h = await fresh.history(EVENT);
      assert.deepEqual(h.map((r) => r.streamId).sort(), [STREAM_ID, OTHER].sort());
    } finally {
      clearInterval(keepAlive);
    }
  });

  it('history() keeps the first startedAt and the last lastSeenAt, stop() completes the record and removes the stream', async () => {
    const { t } = await table();
    await t.push(dataset(STREAM_ID, { startedAt: '2026-11-25T10:05:00.000Z', lastSeenAt: '2026-11-25T10:05:00.000Z' }), Date.now());
    await t.push(dataset(STREAM_ID, { startedAt: '2026-11-25T10:05:09.000Z', lastSeenAt: '2026-11-25T10:05:30.000Z' }), Date.now());
    const stopped = await t.stop(stopRecord(STREAM_ID, { startedAt: '2026-11-25T10:05:01.000Z', endedAt: '2026-11-25T10:06:00.000Z', durationS: 60.25, stored: true }));
    assert.equal(stopped?.streamId, STREAM_ID);
    const [r] = await t.history(EVENT);
    assert.deepEqual(r, {
      streamId: STREAM_ID,
      eventId: EVENT,
      nodeId: 'spec-node',
      dataCenter: 'dc1',
      port: 10002,
      startedAt: '2026-11-25T10:05:00.000Z',
      endedAt: '2026-11-25T10:06:00.000Z',
      lastSeenAt: '2026-11-25T10:05:30.000Z',
      durationS: 60.25,
      stored: true,
    });
    assert.equal(await t.isAlive(STREAM_ID, Date.now()), false);
    assert.deepEqual(await t.active(Date.now()), []);
  });

  it('two monitoring nodes applying the same pushes and stops leave one record; a push after the stop is ignored by both', async () => {
    const a = (await table()).t;
    const b = (await table()).t;
    const d = dataset(STREAM_ID, { lastSeenAt: '2026-11-25T10:05:01.000Z' });
    const outcomes = [await a.push(d, Date.now()), await b.push(d, Date.now())];
    assert.deepEqual(outcomes, ['up', 'seen']);
    await Promise.all([a.push(dataset(STREAM_ID, { lastSeenAt: '2026-11-25T10:05:02.000Z' }), Date.now()), b.push(dataset(STREAM_ID, { lastSeenAt: '2026-11-25T10:05:02.000Z' }), Date.now())]);
    const rec = stopRecord(STREAM_ID, { durationS: 62 });
    await a.stop(rec);
    await b.stop(rec);
    // A late heartbeat reaches one node after both handled the stop.
    assert.equal(await b.push(dataset(STREAM_ID, { lastSeenAt: '2026-11-25T10:05:03.000Z' }), Date.now()), 'ignored');
    for (const t of [a, b]) {
      const h = await t.history(EVENT);
      assert.equal(h.length, 1);
      assert.equal(h[0]!.durationS, 62);
      assert.equal(h[0]!.lastSeenAt, '2026-11-25T10:05:02.000Z');
      assert.deepEqual(await t.active(Date.now()), []);
    }
  });

  it('a stream restarted on the same port (new stream ID) shows both records, the gap between lastSeenAt and the new startedAt', async () => {
    const { t } = await table();
    await t.push(dataset(STREAM_ID, { startedAt: '2026-11-25T10:05:00.000Z', lastSeenAt: '2026-11-25T10:05:10.000Z' }), Date.now());
    // ffmpeg died without a stop; the supervisor restarted it 4 s later on the same port.
    await t.push(dataset(RESTARTED, { startedAt: '2026-11-25T10:05:14.000Z', lastSeenAt: '2026-11-25T10:05:14.000Z' }), Date.now());
    await t.stop(stopRecord(RESTARTED, { startedAt: '2026-11-25T10:05:14.000Z', endedAt: '2026-11-25T10:06:00.000Z', durationS: 46 }));
    const h = await t.history(EVENT);
    assert.deepEqual(h.map((r) => [r.streamId, r.port, r.startedAt, r.lastSeenAt, r.endedAt ?? null]), [
      [STREAM_ID, 10002, '2026-11-25T10:05:00.000Z', '2026-11-25T10:05:10.000Z', null],
      [RESTARTED, 10002, '2026-11-25T10:05:14.000Z', '2026-11-25T10:05:14.000Z', '2026-11-25T10:06:00.000Z'],
    ]);
  });
});

describe('RedisStreamTable when Redis is away', () => {
  let redis: PrivateRedis;
  const outageNs = specNamespace('streams-outage');
  before(async () => {
    redis = await startPrivateRedis(11648);
  });
  after(async () => {
    await redis?.kill();
  });

  it('answers from memory at once while Redis is down, and writes the history back when Redis returns empty', async () => {
    const logger = new CapturingLogger();
    const { t, conn } = await table(logger, redis.url, outageNs);
    let resynced = 0;
    conn.onReady(() => void t.resync().then((n) => (resynced += n)));
    await t.push(dataset(STREAM_ID, { lastSeenAt: '2026-11-25T10:05:01.000Z' }), Date.now());

    await redis.kill();
    await waitFor('connection marked down', () => !conn.ready, 3000);
    const t0 = Date.now();
    assert.equal(await t.push(dataset(STREAM_ID, { lastSeenAt: '2026-11-25T10:05:02.000Z' }), Date.now()), 'seen');
    assert.deepEqual((await t.active(Date.now(), EVENT)).map((d) => d.streamId), [STREAM_ID]);
    assert.equal(await t.isAlive(STREAM_ID, Date.now()), true);
    await t.stop(stopRecord(STREAM_ID, { durationS: 5 }));
    assert.equal((await t.history(EVENT))[0]!.durationS, 5);
    assert.ok(Date.now() - t0 < 100, `answered from memory in ${Date.now() - t0} ms`);
    assert.ok(logger.lines.some((l) => /^warn redis connection lost/.test(l)), logger.lines.join('\n'));

    await redis.start();
    await waitReady(conn, 10_000);
    await waitFor('history resynced', () => resynced > 0, 5000);
    assert.ok(logger.lines.some((l) => /^info redis back after/.test(l)), logger.lines.join('\n'));
    // A fresh table (another node, nothing in memory) reads the stop from Redis.
    const { t: fresh } = await table(new CapturingLogger(), redis.url, outageNs);
    const h = await fresh.history(EVENT);
    assert.equal(h.length, 1);
    assert.equal(h[0]!.durationS, 5);
    assert.equal(h[0]!.lastSeenAt, '2026-11-25T10:05:02.000Z');
    // Datasets come back with the next push.
    await t.push(dataset(OTHER), Date.now());
    assert.deepEqual((await fresh.active(Date.now(), EVENT)).map((d) => d.streamId), [OTHER]);
  });

  it('a table whose Redis never answered works from memory and never throws', async () => {
    const logger = new CapturingLogger();
    const { createRedis } = await import('../../runtime/redis.ts');
    const conn = createRedis({ url: 'redis://127.0.0.1:11649', namespace: outageNs, name: 'nowhere', logger });
    open.push(conn);
    conn.connect();
    const t = new RedisStreamTable(conn, TIMEOUT_MS, logger);
    assert.equal(await t.push(dataset(STREAM_ID), Date.now()), 'up');
    assert.equal(await t.isAlive(STREAM_ID, Date.now()), true);
    assert.equal((await t.history(EVENT)).length, 1);
    await waitFor('unreachable logged', () => logger.lines.some((l) => /redis unreachable at start/.test(l)), 3000);
  });
});
