import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ServiceBroker } from 'moleculer';
import { createMonitoringService } from '../../actors/monitoring.service.ts';
import { createBroker } from '../../runtime/broker.ts';
import { EVENTS, type StreamDataset, type StreamRecord } from '../../runtime/contracts.ts';
import { ValidationFailedError } from '../../runtime/errors.ts';
import { testConfig } from '../support/config.ts';
import { STREAM_ID, dataset, stopRecord, waitFor } from '../support/event-plane.ts';

const OTHER = '12345674-spec-node-10004-lq0abd';
const brokers: ServiceBroker[] = [];
afterEach(async () => {
  while (brokers.length > 0) await brokers.pop()!.stop();
});

/** A monitoring actor on a clock the spec moves. */
async function start() {
  const config = testConfig();
  const clock = { ms: 1_000_000 };
  const broker = createBroker(config);
  brokers.push(broker);
  broker.createService(createMonitoringService(config, { now: () => clock.ms }));
  await broker.start();
  return { config, broker, clock };
}

const active = (broker: ServiceBroker, eventId?: string) => broker.call<StreamDataset[], object>('monitoring.activeStreams', eventId ? { eventId } : {});

describe('monitoring actor', () => {
  it('activeStreams() lists a stream once its dataset is broadcast, and isAlive() answers true', async () => {
    const { broker } = await start();
    await broker.broadcast(EVENTS.streamDataset, dataset(STREAM_ID));
    const list = await waitFor('stream active', async () => ((await active(broker, '12345674')).length === 1 ? active(broker, '12345674') : undefined));
    assert.equal(list[0]!.streamId, STREAM_ID);
    assert.equal(await broker.call('monitoring.isAlive', { streamId: STREAM_ID }), true);
  });

  it('activeStreams() drops a stream not pushed within heartbeatTimeoutS and isAlive() answers false', async () => {
    const { broker, clock, config } = await start();
    await broker.broadcast(EVENTS.streamDataset, dataset(STREAM_ID));
    await broker.broadcast(EVENTS.streamDataset, dataset(OTHER));
    await waitFor('two active', async () => (await active(broker)).length === 2);
    clock.ms += config.heartbeatTimeoutS * 1000 + 1;
    await broker.broadcast(EVENTS.streamDataset, dataset(OTHER));
    await waitFor('one active', async () => (await active(broker)).length === 1);
    assert.deepEqual((await active(broker)).map((d) => d.streamId), [OTHER]);
    assert.equal(await broker.call('monitoring.isAlive', { streamId: STREAM_ID }), false);
  });

  it('streamStopped removes the stream from activeStreams() and history() holds its record', async () => {
    const { broker } = await start();
    await broker.broadcast(EVENTS.streamDataset, dataset(STREAM_ID));
    await broker.broadcast(EVENTS.streamStopped, stopRecord(STREAM_ID, { durationS: 42 }));
    const history = await waitFor('stopped record', async () => {
      const h = await broker.call<StreamRecord[], object>('monitoring.history', { eventId: '12345674' });
      return h[0]?.endedAt ? h : undefined;
    });
    assert.equal(history.length, 1);
    assert.equal(history[0]!.durationS, 42);
    assert.equal(history[0]!.stored, true);
    assert.deepEqual(await active(broker), []);
  });

  it('history() is ordered by startedAt', async () => {
    const { broker } = await start();
    await broker.broadcast(EVENTS.streamDataset, dataset(OTHER, { startedAt: '2026-11-25T10:09:00.000Z' }));
    await broker.broadcast(EVENTS.streamDataset, dataset(STREAM_ID, { startedAt: '2026-11-25T10:01:00.000Z' }));
    const h = await waitFor('two records', async () => {
      const list = await broker.call<StreamRecord[], object>('monitoring.history', { eventId: '12345674' });
      return list.length === 2 ? list : undefined;
    });
    assert.deepEqual(h.map((r) => r.streamId), [STREAM_ID, OTHER]);
  });

  it('a malformed dataset is ignored', async () => {
    const { broker } = await start();
    await broker.broadcast(EVENTS.streamDataset, { ...dataset(STREAM_ID), streamId: '../../x' });
    await broker.broadcast(EVENTS.streamDataset, dataset(OTHER));
    await waitFor('valid one active', async () => (await active(broker)).length === 1);
    assert.deepEqual((await active(broker)).map((d) => d.streamId), [OTHER]);
  });

  it('history() with an invalid event ID is refused with ValidationFailedError', async () => {
    const { broker } = await start();
    await assert.rejects(broker.call('monitoring.history', { eventId: '1234' }), ValidationFailedError);
    await assert.rejects(broker.call('monitoring.isAlive', { streamId: 'nope' }), ValidationFailedError);
  });
});
