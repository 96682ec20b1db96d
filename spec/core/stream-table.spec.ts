import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStreamTable } from '../../core/stream-table.ts';
import { STREAM_ID, dataset, stopRecord } from '../support/event-plane.ts';

const OTHER = '12345674-spec-node-10004-lq0abd';
const FOREIGN = '12345682-spec-node-10006-lq0abe';

describe('stream table', () => {
  it('push() of a new stream answers up, then seen while it keeps pushing', async () => {
    const t = new MemoryStreamTable(3000);
    assert.equal(await t.push(dataset(STREAM_ID), 0), 'up');
    assert.equal(await t.push(dataset(STREAM_ID), 1000), 'seen');
  });

  it('push() after the timeout answers up again', async () => {
    const t = new MemoryStreamTable(3000);
    await t.push(dataset(STREAM_ID), 0);
    assert.equal(await t.push(dataset(STREAM_ID), 3001), 'up');
  });

  it('active() lists only streams pushed within the timeout, filtered by event', async () => {
    const t = new MemoryStreamTable(3000);
    await t.push(dataset(STREAM_ID), 0);
    await t.push(dataset(OTHER, { startedAt: '2026-11-25T10:06:00.000Z' }), 2000);
    await t.push(dataset(FOREIGN), 2000);
    assert.deepEqual((await t.active(2500, '12345674')).map((d) => d.streamId), [STREAM_ID, OTHER]);
    assert.deepEqual((await t.active(3500, '12345674')).map((d) => d.streamId), [OTHER]);
    assert.equal((await t.active(3500)).length, 2);
    assert.equal(await t.isAlive(STREAM_ID, 3000), true);
    assert.equal(await t.isAlive(STREAM_ID, 3001), false);
  });

  it('expire() drops and returns streams past the timeout', async () => {
    const t = new MemoryStreamTable(3000);
    await t.push(dataset(STREAM_ID), 0);
    await t.push(dataset(OTHER), 2000);
    assert.deepEqual((await t.expire(4000)).map((d) => d.streamId), [STREAM_ID]);
    assert.deepEqual(await t.expire(4000), []);
  });

  it('history() records the first dataset as startedAt and stop() completes it', async () => {
    const t = new MemoryStreamTable(3000);
    await t.push(dataset(STREAM_ID, { startedAt: '2026-11-25T10:05:00.000Z' }), 0);
    await t.push(dataset(STREAM_ID, { startedAt: '2026-11-25T10:05:09.000Z' }), 1000);
    assert.deepEqual((await t.history('12345674')).map((r) => [r.startedAt, r.endedAt]), [['2026-11-25T10:05:00.000Z', undefined]]);
    await t.stop(stopRecord(STREAM_ID, { startedAt: '2026-11-25T10:05:01.000Z', durationS: 60, stored: true }));
    const [r] = await t.history('12345674');
    assert.equal(r!.startedAt, '2026-11-25T10:05:00.000Z');
    assert.equal(r!.endedAt, '2026-11-25T10:06:00.000Z');
    assert.equal(r!.durationS, 60);
    assert.equal(r!.stored, true);
    assert.equal(await t.isAlive(STREAM_ID, 1001), false);
  });

  it('push() after stop() is ignored and does not bring the stream back', async () => {
    const t = new MemoryStreamTable(3000);
    await t.push(dataset(STREAM_ID), 0);
    await t.stop(stopRecord(STREAM_ID));
    assert.equal(await t.push(dataset(STREAM_ID), 100), 'ignored');
    assert.deepEqual(await t.active(100), []);
  });

  it('stop() of a stream never pushed still enters the history', async () => {
    const t = new MemoryStreamTable(3000);
    await t.stop(stopRecord(STREAM_ID));
    assert.deepEqual((await t.history('12345674')).map((r) => r.streamId), [STREAM_ID]);
  });

  it('history() is ordered by startedAt and empty for an unknown event', async () => {
    const t = new MemoryStreamTable(3000);
    await t.push(dataset(OTHER, { startedAt: '2026-11-25T10:07:00.000Z' }), 0);
    await t.push(dataset(STREAM_ID, { startedAt: '2026-11-25T10:05:00.000Z' }), 0);
    assert.deepEqual((await t.history('12345674')).map((r) => r.streamId), [STREAM_ID, OTHER]);
    assert.deepEqual(await t.history('12345682'), []);
  });

  it('history() keeps the last push as lastSeenAt, so a restarted stream shows the gap between its two records', async () => {
    const t = new MemoryStreamTable(3000);
    const restarted = '12345674-spec-node-10002-lq0abz';
    await t.push(dataset(STREAM_ID, { startedAt: '2026-11-25T10:05:00.000Z', lastSeenAt: '2026-11-25T10:05:00.000Z' }), 0);
    await t.push(dataset(STREAM_ID, { startedAt: '2026-11-25T10:05:00.000Z', lastSeenAt: '2026-11-25T10:05:07.000Z' }), 1000);
    await t.push(dataset(restarted, { startedAt: '2026-11-25T10:05:12.000Z', lastSeenAt: '2026-11-25T10:05:12.000Z' }), 6000);
    const h = await t.history('12345674');
    assert.deepEqual(h.map((r) => [r.streamId, r.port, r.startedAt, r.lastSeenAt, r.endedAt]), [
      [STREAM_ID, 10002, '2026-11-25T10:05:00.000Z', '2026-11-25T10:05:07.000Z', undefined],
      [restarted, 10002, '2026-11-25T10:05:12.000Z', '2026-11-25T10:05:12.000Z', undefined],
    ]);
  });

  it('forgetBefore() drops only events with no active stream whose records all ended before the cutoff', async () => {
    const t = new MemoryStreamTable(3000);
    await t.push(dataset(STREAM_ID), 0);
    await t.stop(stopRecord(STREAM_ID, { endedAt: '2026-11-25T10:06:00.000Z' }));
    await t.push(dataset(FOREIGN), 0);
    assert.deepEqual(t.forgetBefore('2026-11-25T11:00:00.000Z'), ['12345674']);
    assert.deepEqual(await t.history('12345674'), []);
    assert.equal((await t.history('12345682')).length, 1);
  });
});
