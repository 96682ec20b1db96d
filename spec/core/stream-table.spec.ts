import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStreamTable } from '../../core/stream-table.ts';
import { STREAM_ID, dataset, stopRecord } from '../support/event-plane.ts';

const OTHER = '12345674-spec-node-10004-lq0abd';
const FOREIGN = '12345682-spec-node-10006-lq0abe';

describe('stream table', () => {
  it('push() of a new stream answers up, then seen while it keeps pushing', () => {
    const t = new MemoryStreamTable(3000);
    assert.equal(t.push(dataset(STREAM_ID), 0), 'up');
    assert.equal(t.push(dataset(STREAM_ID), 1000), 'seen');
  });

  it('push() after the timeout answers up again', () => {
    const t = new MemoryStreamTable(3000);
    t.push(dataset(STREAM_ID), 0);
    assert.equal(t.push(dataset(STREAM_ID), 3001), 'up');
  });

  it('active() lists only streams pushed within the timeout, filtered by event', () => {
    const t = new MemoryStreamTable(3000);
    t.push(dataset(STREAM_ID), 0);
    t.push(dataset(OTHER, { startedAt: '2026-11-25T10:06:00.000Z' }), 2000);
    t.push(dataset(FOREIGN), 2000);
    assert.deepEqual(t.active(2500, '12345674').map((d) => d.streamId), [STREAM_ID, OTHER]);
    assert.deepEqual(t.active(3500, '12345674').map((d) => d.streamId), [OTHER]);
    assert.equal(t.active(3500).length, 2);
    assert.equal(t.isAlive(STREAM_ID, 3000), true);
    assert.equal(t.isAlive(STREAM_ID, 3001), false);
  });

  it('expire() drops and returns streams past the timeout', () => {
    const t = new MemoryStreamTable(3000);
    t.push(dataset(STREAM_ID), 0);
    t.push(dataset(OTHER), 2000);
    assert.deepEqual(t.expire(4000).map((d) => d.streamId), [STREAM_ID]);
    assert.deepEqual(t.expire(4000), []);
  });

  it('history() records the first dataset as startedAt and stop() completes it', () => {
    const t = new MemoryStreamTable(3000);
    t.push(dataset(STREAM_ID, { startedAt: '2026-11-25T10:05:00.000Z' }), 0);
    t.push(dataset(STREAM_ID, { startedAt: '2026-11-25T10:05:09.000Z' }), 1000);
    assert.deepEqual(t.history('12345674').map((r) => [r.startedAt, r.endedAt]), [['2026-11-25T10:05:00.000Z', undefined]]);
    t.stop(stopRecord(STREAM_ID, { startedAt: '2026-11-25T10:05:01.000Z', durationS: 60, stored: true }));
    const [r] = t.history('12345674');
    assert.equal(r!.startedAt, '2026-11-25T10:05:00.000Z');
    assert.equal(r!.endedAt, '2026-11-25T10:06:00.000Z');
    assert.equal(r!.durationS, 60);
    assert.equal(r!.stored, true);
    assert.equal(t.isAlive(STREAM_ID, 1001), false);
  });

  it('push() after stop() is ignored and does not bring the stream back', () => {
    const t = new MemoryStreamTable(3000);
    t.push(dataset(STREAM_ID), 0);
    t.stop(stopRecord(STREAM_ID));
    assert.equal(t.push(dataset(STREAM_ID), 100), 'ignored');
    assert.deepEqual(t.active(100), []);
  });

  it('stop() of a stream never pushed still enters the history', () => {
    const t = new MemoryStreamTable(3000);
    t.stop(stopRecord(STREAM_ID));
    assert.deepEqual(t.history('12345674').map((r) => r.streamId), [STREAM_ID]);
  });

  it('history() is ordered by startedAt and empty for an unknown event', () => {
    const t = new MemoryStreamTable(3000);
    t.push(dataset(OTHER, { startedAt: '2026-11-25T10:07:00.000Z' }), 0);
    t.push(dataset(STREAM_ID, { startedAt: '2026-11-25T10:05:00.000Z' }), 0);
    assert.deepEqual(t.history('12345674').map((r) => r.streamId), [STREAM_ID, OTHER]);
    assert.deepEqual(t.history('12345682'), []);
  });
});
