import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ServiceBroker } from 'moleculer';
import { createContentStorageService } from '../../actors/content-storage.service.ts';
import { createEventService } from '../../actors/event.service.ts';
import { createBroker } from '../../runtime/broker.ts';
import { EVENTS, type EventInfo, type EventView, type JoinResult } from '../../runtime/contracts.ts';
import { NotFoundError, StateConflictError, ValidationFailedError } from '../../runtime/errors.ts';
import { testConfig } from '../support/config.ts';
import { EVENT_ID, FakeReporting, STREAM_ID, dataset, sampleInfo, startPlane, stopRecord, waitFor, writeLiveDir } from '../support/event-plane.ts';

const brokers: ServiceBroker[] = [];

afterEach(async () => {
  while (brokers.length > 0) await brokers.pop()!.stop();
});

async function plane(overrides: Parameters<typeof testConfig>[0] = {}) {
  const config = testConfig({ archiveTimeoutS: '1', ...overrides });
  const started = await startPlane(config);
  brokers.push(started.broker);
  const heard: Array<{ name: string; data: any }> = [];
  started.broker.createService({
    name: 'spec-listener',
    events: {
      [EVENTS.eventEnded]: { handler(ctx: any) { heard.push({ name: EVENTS.eventEnded, data: ctx.params }); } },
      [EVENTS.eventStatus]: { handler(ctx: any) { heard.push({ name: EVENTS.eventStatus, data: ctx.params }); } },
    },
  });
  await started.broker.waitForServices('spec-listener', 5000, 20);
  return { config, ...started, heard };
}

async function register(broker: ServiceBroker, info: EventInfo = sampleInfo()): Promise<EventInfo> {
  await broker.call('content-storage.putEventInfo', { info });
  return broker.call<EventInfo, { info: EventInfo }>('event.register', { info });
}

const get = (broker: ServiceBroker, eventId = EVENT_ID) => broker.call<EventView, { eventId: string }>('event.get', { eventId });

async function statusIs(broker: ServiceBroker, status: string, eventId = EVENT_ID): Promise<EventView> {
  return waitFor(`status ${status}`, async () => {
    const v = await get(broker, eventId);
    return v.status === status ? v : undefined;
  });
}

describe('event actor', () => {
  it('register() then get() returns the reserved event view with no callers, no streams and no pin', async () => {
    const { broker } = await plane();
    await register(broker);
    const v = await get(broker);
    assert.equal(v.status, 'reserved');
    assert.equal(v.callers, 0);
    assert.deepEqual(v.streams, []);
    assert.equal(v.pin, undefined);
    assert.equal(v.title, 'Quarterly call');
  });

  it('register() twice returns the first registration and does not fail', async () => {
    const { broker } = await plane();
    await register(broker);
    const again = await broker.call<EventInfo, { info: EventInfo }>('event.register', { info: sampleInfo({ title: 'Other' }) });
    assert.equal(again.title, 'Quarterly call');
  });

  it('register() with a mistyped event ID is refused with ValidationFailedError', async () => {
    const { broker } = await plane();
    await assert.rejects(broker.call('event.register', { info: sampleInfo({ eventId: '12345675' }) }), ValidationFailedError);
  });

  it('get() of an unknown event is refused with NotFoundError', async () => {
    const { broker } = await plane();
    await assert.rejects(get(broker), NotFoundError);
  });

  it('join() of an unknown event answers ok:false with status unknown', async () => {
    const { broker } = await plane();
    const r = await broker.call<JoinResult, object>('event.join', { eventId: EVENT_ID, nodeId: 'spec-node', channelId: 'ch-1', port: 10002 });
    assert.deepEqual({ ok: r.ok, status: r.status }, { ok: false, status: 'unknown' });
  });

  it('join() makes a reserved event live, sets liveAt, counts the caller and broadcasts the status', async () => {
    const { broker, heard, reporting } = await plane();
    await register(broker);
    const r = await broker.call<JoinResult, object>('event.join', { eventId: EVENT_ID, nodeId: 'spec-node', channelId: 'ch-1', port: 10002 });
    assert.deepEqual(r, { ok: true, status: 'live' });
    const v = await get(broker);
    assert.equal(v.status, 'live');
    assert.equal(v.callers, 1);
    assert.ok(v.liveAt);
    await waitFor('live broadcast', () => heard.some((h) => h.name === EVENTS.eventStatus && h.data.status === 'live'));
    assert.ok(reporting.enqueued.some((i) => i.status === 'live'));
  });

  it('end() from reserved is refused with StateConflictError naming the current state', async () => {
    const { broker } = await plane();
    await register(broker);
    await assert.rejects(broker.call('event.end', { eventId: EVENT_ID, reason: 'api' }), (err: unknown) => {
      assert.ok(err instanceof StateConflictError);
      assert.equal(err.code, 409);
      assert.match(err.message, /reserved/);
      return true;
    });
  });

  it('cancel() from reserved cancels; join() is then refused with ok:false and cancel() again with StateConflictError', async () => {
    const { broker } = await plane();
    await register(broker);
    const info = await broker.call<EventInfo, object>('event.cancel', { eventId: EVENT_ID });
    assert.equal(info.status, 'cancelled');
    const r = await broker.call<JoinResult, object>('event.join', { eventId: EVENT_ID, nodeId: 'spec-node', channelId: 'ch-1', port: 10002 });
    assert.equal(r.ok, false);
    assert.equal(r.status, 'cancelled');
    await assert.rejects(broker.call('event.cancel', { eventId: EVENT_ID }), StateConflictError);
  });

  it('update() of a reserved event changes the title and writes event-info.xml', async () => {
    const { broker, config } = await plane();
    await register(broker);
    const info = await broker.call<EventInfo, object>('event.update', { eventId: EVENT_ID, patch: { title: 'Renamed call', archiveDays: 7 } });
    assert.equal(info.title, 'Renamed call');
    assert.equal(info.archiveDays, 7);
    const xml = readFileSync(join(config.dataDir, 'storage', 'dc1', EVENT_ID, 'event-info.xml'), 'utf8');
    assert.match(xml, /Renamed call/);
  });

  it('update() with an unknown field is refused with ValidationFailedError naming it', async () => {
    const { broker } = await plane();
    await register(broker);
    await assert.rejects(broker.call('event.update', { eventId: EVENT_ID, patch: { status: 'archived' } }), (err: any) => {
      assert.ok(err instanceof ValidationFailedError);
      assert.ok(err.data.fields.status);
      return true;
    });
  });

  it('end() with reason api ends a live event, broadcasts eventEnded, and with no stream the archive fails with "no recorded stream"', async () => {
    const { broker, heard } = await plane();
    await register(broker);
    await broker.call('event.join', { eventId: EVENT_ID, nodeId: 'spec-node', channelId: 'ch-1', port: 10002 });
    const ended = await broker.call<EventInfo, object>('event.end', { eventId: EVENT_ID, reason: 'api' });
    assert.equal(ended.status, 'ended');
    assert.ok(ended.endedAt);
    assert.deepEqual(heard.find((h) => h.name === EVENTS.eventEnded)?.data, { eventId: EVENT_ID, reason: 'api' });
    const v = await statusIs(broker, 'archive-error');
    assert.match(v.archiveError ?? '', /no recorded stream/);
    await assert.rejects(broker.call('event.update', { eventId: EVENT_ID, patch: { title: 'late' } }), StateConflictError);
    const late = await broker.call<JoinResult, object>('event.join', { eventId: EVENT_ID, nodeId: 'spec-node', channelId: 'ch-2', port: 10002 });
    assert.equal(late.ok, false);
  });

  it('register → join → stream → leave → idle timeout → streams stored → archived, with the archive in event-info.xml', async () => {
    const { broker, config, heard, reporting } = await plane();
    await register(broker);
    await broker.call('event.join', { eventId: EVENT_ID, nodeId: 'spec-node', channelId: 'ch-1', port: 10002 });
    await broker.broadcast(EVENTS.streamDataset, dataset(STREAM_ID));
    const live = await waitFor('stream in view', async () => {
      const v = await get(broker);
      return v.streams.length === 1 ? v : undefined;
    });
    assert.equal(live.streams[0]!.streamId, STREAM_ID);

    const left = await broker.call<{ ok: boolean }, object>('event.leave', { eventId: EVENT_ID, channelId: 'ch-1' });
    assert.equal(left.ok, true);
    // The spec plays the encoder: on eventEnded it uploads the stream and reports the stop.
    await waitFor('eventEnded', () => heard.find((h) => h.name === EVENTS.eventEnded));
    assert.equal(heard.find((h) => h.name === EVENTS.eventEnded)!.data.reason, 'timeout');
    assert.equal((await get(broker)).status, 'ended');
    const dir = writeLiveDir(config, STREAM_ID, [2.005, 1.995, 1.5]);
    const put = await broker.call<{ files: number; bytes: number }, object>('content-storage.putStream', { eventId: EVENT_ID, streamId: STREAM_ID, dir });
    assert.equal(put.files, 4);
    await broker.broadcast(EVENTS.streamStopped, stopRecord(STREAM_ID, { durationS: 5.5 }));

    const v = await statusIs(broker, 'archived');
    assert.deepEqual(v.archive, [{ streamId: STREAM_ID, start: 0, end: 5.5 }]);
    // The state turns archived in memory a moment before event-info.xml is rewritten.
    const xml = await waitFor('the archive in event-info.xml', async () => {
      const text = readFileSync(join(config.dataDir, 'storage', 'dc1', EVENT_ID, 'event-info.xml'), 'utf8');
      return /<archive>/.test(text) ? text : undefined;
    });
    assert.match(xml, /<archive>/);
    assert.match(xml, new RegExp(`<fragment[^>]*stream="${STREAM_ID}"`));
    const statuses = heard.filter((h) => h.name === EVENTS.eventStatus).map((h) => h.data.status);
    assert.deepEqual(statuses, ['live', 'ended', 'archiving', 'archived']);
    assert.deepEqual([...new Set(reporting.enqueued.map((i) => i.status))], ['reserved', 'live', 'ended', 'archiving', 'archived']);
  });

  it('archived event survives a restart: a new broker on the same data dir returns it with its archive', async () => {
    const first = await plane();
    await register(first.broker);
    await first.broker.call('event.join', { eventId: EVENT_ID, nodeId: 'spec-node', channelId: 'ch-1', port: 10002 });
    await first.broker.broadcast(EVENTS.streamDataset, dataset(STREAM_ID));
    await first.broker.call('event.end', { eventId: EVENT_ID, reason: 'end-code' });
    const dir = writeLiveDir(first.config, STREAM_ID, [2, 2]);
    await first.broker.call('content-storage.putStream', { eventId: EVENT_ID, streamId: STREAM_ID, dir });
    await first.broker.broadcast(EVENTS.streamStopped, stopRecord(STREAM_ID));
    await statusIs(first.broker, 'archived');
    await first.broker.stop();
    brokers.splice(brokers.indexOf(first.broker), 1);

    const second = await plane({ dataDir: first.config.dataDir });
    const v = await get(second.broker);
    assert.equal(v.status, 'archived');
    assert.deepEqual(v.archive, [{ streamId: STREAM_ID, start: 0, end: 4 }]);
    const list = await second.broker.call<EventView[], object>('event.list', {});
    assert.deepEqual(list.map((e) => e.eventId), [EVENT_ID]);
  });

  it('live event found at start-up with nobody connected gets the idle timer and ends with reason timeout', async () => {
    const first = await plane();
    await register(first.broker);
    await first.broker.call('event.join', { eventId: EVENT_ID, nodeId: 'spec-node', channelId: 'ch-1', port: 10002 });
    await first.broker.stop();
    brokers.splice(brokers.indexOf(first.broker), 1);

    const second = await plane({ dataDir: first.config.dataDir });
    await waitFor('eventEnded after restart', () => second.heard.find((h) => h.name === EVENTS.eventEnded));
    assert.equal(second.heard.find((h) => h.name === EVENTS.eventEnded)!.data.reason, 'timeout');
  });

  it('ended event found at start-up gets its archive requested from what storage holds', async () => {
    const first = await plane({ archiveTimeoutS: '60' });
    await register(first.broker);
    await first.broker.call('event.join', { eventId: EVENT_ID, nodeId: 'spec-node', channelId: 'ch-1', port: 10002 });
    await first.broker.broadcast(EVENTS.streamDataset, dataset(STREAM_ID));
    await first.broker.call('event.end', { eventId: EVENT_ID, reason: 'api' });
    const dir = writeLiveDir(first.config, STREAM_ID, [2, 1]);
    await first.broker.call('content-storage.putStream', { eventId: EVENT_ID, streamId: STREAM_ID, dir });
    // Stop before the stop report arrives: the event is still "ended", waiting for its stream.
    assert.equal((await get(first.broker)).status, 'ended');
    await first.broker.stop();
    brokers.splice(brokers.indexOf(first.broker), 1);

    const second = await plane({ dataDir: first.config.dataDir });
    const v = await statusIs(second.broker, 'archived');
    assert.deepEqual(v.archive, [{ streamId: STREAM_ID, start: 0, end: 3 }]);
  });

  it('get() answers with an empty stream list when monitoring is not running', async () => {
    const config = testConfig();
    const broker = createBroker(config);
    brokers.push(broker);
    broker.createService(createContentStorageService(config));
    broker.createService(createEventService(config, { reporting: () => new FakeReporting() }));
    await broker.start();
    await register(broker);
    const v = await get(broker);
    assert.deepEqual(v.streams, []);
  });

  it('stop() closes the reporting writer', async () => {
    const config = testConfig();
    const broker = createBroker(config);
    const reporting = new FakeReporting();
    broker.createService(createContentStorageService(config));
    broker.createService(createEventService(config, { reporting: () => reporting }));
    await broker.start();
    await broker.stop();
    assert.equal(reporting.closed, true);
  });
});
