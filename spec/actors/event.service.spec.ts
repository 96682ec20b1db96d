import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Context, ServiceBroker, ServiceSchema } from 'moleculer';
import type { JitcastConfig } from '../../cluster.config.ts';
import { createArchiveCoordinatorService } from '../../actors/archive-coordinator.service.ts';
import { createContentStorageService } from '../../actors/content-storage.service.ts';
import { createEventService, type EventServiceDeps, type EventStateStore } from '../../actors/event.service.ts';
import { createMonitoringService } from '../../actors/monitoring.service.ts';
import { OPEN_STATUSES, type StoredEvent } from '../../core/event-lifecycle.ts';
import { createBroker } from '../../runtime/broker.ts';
import { EVENTS, type EventInfo, type EventView, type JoinResult } from '../../runtime/contracts.ts';
import { NotFoundError, StateConflictError, StorageUnavailableError, ValidationFailedError } from '../../runtime/errors.ts';
import type { LockResult, SaveResult } from '../../runtime/redis-event-store.ts';
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
    // Shown only once stored: event-info.xml holds the archive the moment get() says archived.
    const xml = readFileSync(join(config.dataDir, 'storage', 'dc1', EVENT_ID, 'event-info.xml'), 'utf8');
    assert.match(xml, /<archive>/);
    assert.match(xml, new RegExp(`<fragment[^>]*stream="${STREAM_ID}"`));
    const statuses = heard.filter((h) => h.name === EVENTS.eventStatus).map((h) => h.data.status);
    assert.deepEqual(statuses, ['live', 'ended', 'archiving', 'archived']);
    assert.deepEqual([...new Set(reporting.enqueued.map((i) => i.status))], ['reserved', 'live', 'ended', 'archiving', 'archived']);

    // Content storage's retention sweep removed the files: the event stays archived and shows no archive.
    await broker.call('event.retentionEnded', { eventId: EVENT_ID });
    const expired = await get(broker);
    assert.equal(expired.status, 'archived');
    assert.equal(expired.archive, undefined);
    assert.doesNotMatch(readFileSync(join(config.dataDir, 'storage', 'dc1', EVENT_ID, 'event-info.xml'), 'utf8'), /<archive>/);
    assert.equal(reporting.enqueued.at(-1)!.archive, undefined);
  });

  it('a stream whose node left the cluster never reports its stop: the event settles at once without it, not at the 30 s cap', async () => {
    const { broker } = await plane();
    await register(broker);
    await broker.call('event.join', { eventId: EVENT_ID, nodeId: 'spec-node', channelId: 'ch-1', port: 10002 });
    // One stream from this node (alive: waited for) and one from a node that is not in the cluster (lost).
    const lostId = '12345674-gone-node-10004-lq0abd';
    await broker.broadcast(EVENTS.streamDataset, dataset(STREAM_ID));
    await broker.broadcast(EVENTS.streamDataset, dataset(lostId, { nodeId: 'gone-node', port: 10004 }));
    await waitFor('both streams in view', async () => ((await get(broker)).streams.length === 2 ? true : undefined));
    await broker.call('event.end', { eventId: EVENT_ID, reason: 'api' });
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal((await get(broker)).status, 'ended', 'still waiting for the stream of a node that is alive');
    const stoppedAt = Date.now();
    await broker.broadcast(EVENTS.streamStopped, stopRecord(STREAM_ID, { stored: false }));
    const v = await waitFor('the event past ended', async () => {
      const x = await get(broker);
      return x.status !== 'ended' ? x : undefined;
    }, 5000);
    assert.ok(['archiving', 'archived', 'archive-error'].includes(v.status), v.status);
    assert.ok(Date.now() - stoppedAt < 3000, `settled ${Date.now() - stoppedAt} ms after the live node's stop, without waiting for the lost stream`);
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

/** The real content-storage actor, but every event-info write first passes `gate` (which may hold it back or throw). */
function gatedStorage(config: JitcastConfig, gate: (info: EventInfo) => Promise<void>): ServiceSchema {
  const real = createContentStorageService(config);
  const put = real.actions!.putEventInfo as { handler: (this: unknown, ctx: Context<{ info: EventInfo }>) => Promise<unknown> };
  return {
    ...real,
    actions: {
      ...real.actions,
      putEventInfo: {
        async handler(this: unknown, ctx: Context<{ info: EventInfo }>) {
          await gate(ctx.params.info);
          return put.handler.call(this, ctx);
        },
      },
    },
  };
}

/** A held-back write: `entered` resolves once it is waiting, `release()` lets it through. */
function holdBack() {
  let entered!: () => void;
  let release!: () => void;
  const enteredP = new Promise<void>((r) => (entered = r));
  const released = new Promise<void>((r) => (release = r));
  return { entered: enteredP, release, wait: () => (entered(), released) };
}

/** An in-memory shared store (what Redis holds in cluster mode), recording every state saved. */
class MemoryStore implements EventStateStore {
  readonly saved: StoredEvent[] = [];
  readonly ready = true;
  private readonly byId = new Map<string, StoredEvent>();
  connect(): void {}
  onReady(): void {}
  async close(): Promise<void> {}
  async save(s: StoredEvent, mode: 'change' | 'sync'): Promise<SaveResult> {
    const cur = this.byId.get(s.state.info.eventId);
    if (cur && (cur.rev > s.rev || (cur.rev === s.rev && mode !== 'sync'))) return { ok: false, rev: cur.rev };
    const copy = structuredClone(s);
    this.byId.set(s.state.info.eventId, copy);
    this.saved.push(copy);
    return { ok: true };
  }
  async load(eventId: string): Promise<StoredEvent | undefined> {
    const s = this.byId.get(eventId);
    return s && structuredClone(s);
  }
  async loadMany(eventIds: string[]): Promise<Map<string, StoredEvent>> {
    return new Map(eventIds.filter((id) => this.byId.has(id)).map((id) => [id, structuredClone(this.byId.get(id)!)]));
  }
  async openIds(): Promise<string[]> {
    return [...this.byId.values()].filter((s) => OPEN_STATUSES.has(s.state.info.status)).map((s) => s.state.info.eventId);
  }
  async allIds(): Promise<string[]> {
    return [...this.byId.keys()];
  }
  async lock(): Promise<LockResult> {
    return { ok: true };
  }
  async steal(): Promise<boolean> {
    return true;
  }
  async unlock(): Promise<void> {}
}

/** The event plane over a gated content storage, with a listener for status broadcasts. */
async function gatedPlane(gate: (info: EventInfo) => Promise<void>, deps: EventServiceDeps = {}) {
  const config = testConfig({ archiveTimeoutS: '60' });
  const broker = createBroker(config);
  brokers.push(broker);
  const reporting = new FakeReporting();
  const statuses: string[] = [];
  broker.createService(gatedStorage(config, gate));
  broker.createService(createMonitoringService(config));
  broker.createService(createEventService(config, { reporting: () => reporting, ...deps }));
  broker.createService(createArchiveCoordinatorService(config));
  broker.createService({
    name: 'spec-listener',
    events: { [EVENTS.eventStatus]: { handler(ctx: any) { statuses.push(ctx.params.status); } } },
  });
  await broker.start();
  const xml = () => readFileSync(join(config.dataDir, 'storage', 'dc1', EVENT_ID, 'event-info.xml'), 'utf8');
  return { broker, config, reporting, statuses, xml };
}

/** Takes a registered event live, ends it, stores its one stream and reports the stop: the archive gets built. */
async function endWithStream(broker: ServiceBroker, config: JitcastConfig): Promise<void> {
  await broker.call('event.join', { eventId: EVENT_ID, nodeId: 'spec-node', channelId: 'ch-1', port: 10002 });
  await broker.broadcast(EVENTS.streamDataset, dataset(STREAM_ID));
  await broker.call('event.end', { eventId: EVENT_ID, reason: 'api' });
  const dir = writeLiveDir(config, STREAM_ID, [2, 2]);
  await broker.call('content-storage.putStream', { eventId: EVENT_ID, streamId: STREAM_ID, dir });
  await broker.broadcast(EVENTS.streamStopped, stopRecord(STREAM_ID));
}

describe('event actor: a state is shown only once event-info.xml holds it', () => {
  it('get(), list() and the status broadcast keep showing archiving while the archived event-info.xml write is slow', async () => {
    const held = holdBack();
    const { broker, config, statuses, xml } = await gatedPlane(async (info) => {
      if (info.status === 'archived') await held.wait();
    });
    await register(broker);
    await endWithStream(broker, config);
    await held.entered;
    // The archive is built and its write has started: nothing may show it before the write is done.
    await new Promise((r) => setTimeout(r, 100));
    const during = await get(broker);
    assert.equal(during.status, 'archiving', 'get() must not report archived while event-info.xml lacks the archive');
    assert.equal(during.archive, undefined);
    assert.deepEqual((await broker.call<EventView[], object>('event.list', {})).map((e) => e.status), ['archiving']);
    assert.ok(!statuses.includes('archived'), `no archived broadcast before the write, heard ${statuses.join(',')}`);
    assert.doesNotMatch(xml(), /<archive>/);

    held.release();
    const v = await statusIs(broker, 'archived');
    // Readers of event-info.xml (archive.m3u8) see the archive the moment get() says archived.
    assert.match(xml(), new RegExp(`<fragment[^>]*stream="${STREAM_ID}"`));
    assert.deepEqual(v.archive, [{ streamId: STREAM_ID, start: 0, end: 4 }]);
    await waitFor('archived broadcast', () => statuses.includes('archived'));
    assert.deepEqual(statuses, ['live', 'ended', 'archiving', 'archived']);
  });

  it('with a shared store (cluster mode) the archived state is saved there only after event-info.xml', async () => {
    const held = holdBack();
    const store = new MemoryStore();
    const { broker, config } = await gatedPlane(
      async (info) => {
        if (info.status === 'archived') await held.wait();
      },
      { store: () => store },
    );
    await register(broker);
    await endWithStream(broker, config);
    await held.entered;
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(
      store.saved.filter((s) => s.state.info.status === 'archived').map((s) => s.rev),
      [],
      'the store (what another node takes the event over from) must not be ahead of event-info.xml',
    );
    assert.equal((await get(broker)).status, 'archiving');
    held.release();
    await statusIs(broker, 'archived');
    assert.equal(store.saved.at(-1)!.state.info.status, 'archived');
  });

  it('a failed write of the archive never shows archived: the event is flagged archive-error and retryArchive() archives it once storage takes it', async () => {
    let failing = true;
    const { broker, config, statuses, xml } = await gatedPlane(async (info) => {
      if (failing && info.status === 'archived') throw new Error('disk full');
    });
    await register(broker);
    await endWithStream(broker, config);
    const v = await statusIs(broker, 'archive-error');
    assert.match(v.archiveError ?? '', /event-info.*disk full/);
    assert.equal(v.archive, undefined);
    assert.ok(!statuses.includes('archived'), `heard ${statuses.join(',')}`);
    assert.match(xml(), /archive-error/);
    assert.doesNotMatch(xml(), /<archive>/);

    failing = false;
    await broker.call('event.retryArchive', { eventId: EVENT_ID });
    await statusIs(broker, 'archived');
    assert.match(xml(), /<archive>/);
  });

  it('cancel() while content storage fails is refused with StorageUnavailableError (503) and the event stays reserved', async () => {
    let failing = false;
    const { broker, statuses, reporting, xml } = await gatedPlane(async () => {
      if (failing) throw new Error('storage down');
    });
    await register(broker);
    failing = true;
    await assert.rejects(broker.call('event.cancel', { eventId: EVENT_ID }), (err: unknown) => {
      assert.ok(err instanceof StorageUnavailableError, String(err));
      assert.equal(err.code, 503);
      assert.match(err.message, /storage down/);
      return true;
    });
    assert.equal((await get(broker)).status, 'reserved');
    assert.ok(!statuses.includes('cancelled'));
    assert.ok(!reporting.enqueued.some((i) => i.status === 'cancelled'));
    assert.match(xml(), /reserved/);
    failing = false;
    assert.equal((await broker.call<EventInfo, object>('event.cancel', { eventId: EVENT_ID })).status, 'cancelled');
    assert.match(xml(), /cancelled/);
  });

  it('join() and cancel() racing on a reserved event are applied one after the other: the cancel waits for the slow live write and is refused', async () => {
    const held = holdBack();
    const { broker, xml } = await gatedPlane(async (info) => {
      if (info.status === 'live') await held.wait();
    });
    await register(broker);
    const join = broker.call<JoinResult, object>('event.join', { eventId: EVENT_ID, nodeId: 'spec-node', channelId: 'ch-1', port: 10002 });
    await held.entered;
    const cancel = assert.rejects(broker.call<EventInfo, object>('event.cancel', { eventId: EVENT_ID }), StateConflictError);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal((await get(broker)).status, 'reserved', 'live is not shown before its write is done');
    held.release();
    assert.deepEqual(await join, { ok: true, status: 'live' });
    await cancel;
    assert.equal((await get(broker)).status, 'live');
    assert.match(xml(), /live/);
  });
});
