import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { ServiceBroker } from 'moleculer';
import { EVENTS, type ArchiveFragment, type EventInfo, type EventView } from '../../runtime/contracts.ts';
import { NotFoundError } from '../../runtime/errors.ts';
import { testConfig } from '../support/config.ts';
import { EVENT_ID, STREAM_ID, dataset, sampleInfo, startPlane, stopRecord, waitFor, writeLiveDir } from '../support/event-plane.ts';

const REDIAL = '12345674-spec-node-10004-lq0abz';
const brokers: ServiceBroker[] = [];
afterEach(async () => {
  while (brokers.length > 0) await brokers.pop()!.stop();
});

/** A plane whose event is in `archiving` is what build() expects; reach it through the lifecycle. */
async function endedEvent(streams: Array<{ id: string; durations: number[]; startedAt: string }>) {
  const config = testConfig({ archiveTimeoutS: '60' });
  const { broker } = await startPlane(config, { settleCapMs: 60_000 });
  brokers.push(broker);
  const info = sampleInfo();
  await broker.call('content-storage.putEventInfo', { info });
  await broker.call('event.register', { info });
  await broker.call('event.join', { eventId: EVENT_ID, nodeId: 'spec-node', channelId: 'ch-1', port: 10002 });
  for (const s of streams) await broker.broadcast(EVENTS.streamDataset, dataset(s.id, { startedAt: s.startedAt }));
  await broker.call('event.end', { eventId: EVENT_ID, reason: 'api' });
  for (const s of streams) {
    const dir = writeLiveDir(config, s.id, s.durations);
    await broker.call('content-storage.putStream', { eventId: EVENT_ID, streamId: s.id, dir });
  }
  return { config, broker, streams };
}

async function settle(broker: ServiceBroker, ids: string[]) {
  for (const id of ids) await broker.broadcast(EVENTS.streamStopped, stopRecord(id));
}

const statusOf = (broker: ServiceBroker, status: string) =>
  waitFor(`status ${status}`, async () => {
    const v = await broker.call<EventView, object>('event.get', { eventId: EVENT_ID });
    return v.status === status ? v : undefined;
  });

describe('archive-coordinator actor', () => {
  it('build() of a dropped-and-redialed call gives one fragment per stream in start order', async () => {
    const { broker } = await endedEvent([
      { id: REDIAL, durations: [2, 2, 2], startedAt: '2026-11-25T10:20:00.000Z' },
      { id: STREAM_ID, durations: [2, 0.5], startedAt: '2026-11-25T10:05:00.000Z' },
    ]);
    await settle(broker, [STREAM_ID, REDIAL]);
    const v = await statusOf(broker, 'archived');
    assert.deepEqual(v.archive, [
      { streamId: STREAM_ID, start: 0, end: 2.5 },
      { streamId: REDIAL, start: 0, end: 6 },
    ]);
  });

  it('build() again after archiving returns the stored archive unchanged', async () => {
    const { broker } = await endedEvent([{ id: STREAM_ID, durations: [2], startedAt: '2026-11-25T10:05:00.000Z' }]);
    await settle(broker, [STREAM_ID]);
    const v = await statusOf(broker, 'archived');
    const again = await broker.call<{ archive: ArchiveFragment[] }, object>('archive-coordinator.build', { eventId: EVENT_ID });
    assert.deepEqual(again.archive, v.archive);
  });

  it('build() of an event whose stored playlist is gone flags archive-error "stream files missing"', async () => {
    const { config, broker } = await endedEvent([{ id: STREAM_ID, durations: [2], startedAt: '2026-11-25T10:05:00.000Z' }]);
    rmSync(join(config.dataDir, 'storage', 'dc1', EVENT_ID, 'streams', STREAM_ID, 'index.m3u8'));
    await settle(broker, [STREAM_ID]);
    const v = await statusOf(broker, 'archive-error');
    assert.match(v.archiveError ?? '', /stream files missing/);
    await assert.rejects(broker.call('archive-coordinator.build', { eventId: EVENT_ID }), NotFoundError);
  });

  it('retryArchive() after restoring the files builds the archive', async () => {
    const { config, broker } = await endedEvent([{ id: STREAM_ID, durations: [2], startedAt: '2026-11-25T10:05:00.000Z' }]);
    rmSync(join(config.dataDir, 'storage', 'dc1', EVENT_ID, 'streams', STREAM_ID, 'index.m3u8'));
    await settle(broker, [STREAM_ID]);
    await statusOf(broker, 'archive-error');
    const dir = writeLiveDir(config, STREAM_ID, [2]);
    await broker.call('content-storage.putStream', { eventId: EVENT_ID, streamId: STREAM_ID, dir });
    const retried = await broker.call<EventInfo, object>('event.retryArchive', { eventId: EVENT_ID });
    assert.equal(retried.status, 'archiving');
    const v = await statusOf(broker, 'archived');
    assert.deepEqual(v.archive, [{ streamId: STREAM_ID, start: 0, end: 2 }]);
    assert.equal(v.archiveError, undefined);
  });

  it('build() of two overlapping streams takes the stretch of one stream\'s gaps.json gap from the other', async () => {
    const { config, broker } = await endedEvent([
      { id: STREAM_ID, durations: Array(15).fill(2), startedAt: '2026-11-25T10:05:00.000Z' },
      { id: REDIAL, durations: Array(15).fill(2), startedAt: '2026-11-25T10:05:00.400Z' },
    ]);
    // Replace the first stream's files with the same playlist plus a 10 s gap (what the encoder writes).
    const dir = writeLiveDir(config, STREAM_ID, Array(15).fill(2), { gaps: [{ start: 10, end: 20 }] });
    await broker.call('content-storage.putStream', { eventId: EVENT_ID, streamId: STREAM_ID, dir });
    await settle(broker, [STREAM_ID, REDIAL]);
    const v = await statusOf(broker, 'archived');
    assert.deepEqual(v.archive, [
      { streamId: STREAM_ID, start: 0, end: 10 },
      { streamId: REDIAL, start: 10, end: 30 },
    ]);
  });

  it('build() of an unknown event is refused with NotFoundError', async () => {
    const { broker } = await startPlane(testConfig());
    brokers.push(broker);
    await assert.rejects(broker.call('archive-coordinator.build', { eventId: '12345682' }), NotFoundError);
  });
});
