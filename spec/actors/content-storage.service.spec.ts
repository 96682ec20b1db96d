import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ServiceBroker } from 'moleculer';
import { createContentStorageService } from '../../actors/content-storage.service.ts';
import { createBroker } from '../../runtime/broker.ts';
import type { BeginStreamResult, EventInfo } from '../../runtime/contracts.ts';
import { NotFoundError, StateConflictError, ValidationFailedError } from '../../runtime/errors.ts';
import { compareVersions, parseVersion } from '../../core/replication.ts';
import { testConfig } from '../support/config.ts';
import { EVENT_ID, STREAM_ID, sampleInfo, writeLiveDir } from '../support/event-plane.ts';

const brokers: ServiceBroker[] = [];
afterEach(async () => {
  while (brokers.length > 0) await brokers.pop()!.stop();
});

async function start(overrides: Parameters<typeof testConfig>[0] = {}) {
  const config = testConfig(overrides);
  const broker = createBroker(config);
  brokers.push(broker);
  broker.createService(createContentStorageService(config));
  await broker.start();
  return { config, broker };
}

describe('content-storage actor', () => {
  it('putEventInfo() writes event-info.xml into every storage center and getEventInfo() reads it back', async () => {
    const { config, broker } = await start({ storageCenters: 'dc1,dc2' });
    const info = sampleInfo({ archive: undefined });
    assert.deepEqual(await broker.call('content-storage.putEventInfo', { info }), { ok: true });
    for (const c of ['dc1', 'dc2']) assert.ok(existsSync(join(config.dataDir, 'storage', c, EVENT_ID, 'event-info.xml')));
    const back = await broker.call<EventInfo, object>('content-storage.getEventInfo', { eventId: EVENT_ID });
    assert.equal(back.title, info.title);
    assert.equal(back.status, 'reserved');
  });

  it('createEventInfo() claims the ID and writes a versioned event-info.xml into every center; a later putEventInfo() versions above it', async () => {
    const { config, broker } = await start({ storageCenters: 'dc1,dc2' });
    const info = sampleInfo({ archive: undefined });
    assert.deepEqual(await broker.call('content-storage.createEventInfo', { info }), { ok: true });
    const xml = (c: string) => readFileSync(join(config.dataDir, 'storage', c, EVENT_ID, 'event-info.xml'), 'utf8');
    assert.equal(xml('dc1'), xml('dc2'));
    const created = parseVersion(xml('dc1'));
    assert.ok(created, 'the copy carries a version');
    assert.equal(created.nodeId, broker.nodeID);
    assert.equal((await broker.call<EventInfo, object>('content-storage.getEventInfo', { eventId: EVENT_ID })).title, info.title);
    await broker.call('content-storage.putEventInfo', { info: { ...info, title: 'Renamed' } });
    assert.ok(compareVersions(parseVersion(xml('dc1')), created) > 0);
    assert.equal((await broker.call<EventInfo, object>('content-storage.getEventInfo', { eventId: EVENT_ID })).title, 'Renamed');
  });

  it('createEventInfo() refuses an ID that is taken, by an event or by what is left of one, with 409 and leaves the stored copy alone', async () => {
    const { config, broker } = await start();
    await broker.call('content-storage.createEventInfo', { info: sampleInfo({ title: 'First' }) });
    await assert.rejects(broker.call('content-storage.createEventInfo', { info: sampleInfo({ title: 'Second' }) }), StateConflictError);
    assert.equal((await broker.call<EventInfo, object>('content-storage.getEventInfo', { eventId: EVENT_ID })).title, 'First');
    mkdirSync(join(config.dataDir, 'storage', 'dc1', '12345682'), { recursive: true });
    await assert.rejects(broker.call('content-storage.createEventInfo', { info: sampleInfo({ eventId: '12345682' }) }), StateConflictError);
  });

  it('createEventInfo(): of 20 concurrent creates of one ID exactly one wins', async () => {
    const { broker } = await start();
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) => broker.call('content-storage.createEventInfo', { info: sampleInfo({ title: `racer ${i}` }) })),
    );
    const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
    assert.equal(won.length, 1);
    for (const r of results) if (r.status === 'rejected') assert.ok(r.reason instanceof StateConflictError, String(r.reason));
    assert.equal((await broker.call<EventInfo, object>('content-storage.getEventInfo', { eventId: EVENT_ID })).title, `racer ${won[0]}`);
  });

  it('createEventInfo() with a path as event ID is refused with ValidationFailedError and makes no directory', async () => {
    const { config, broker } = await start();
    await assert.rejects(broker.call('content-storage.createEventInfo', { info: sampleInfo({ eventId: '../../x' }) }), ValidationFailedError);
    assert.deepEqual(existsSync(join(config.dataDir, 'storage', 'dc1')) ? readdirSync(join(config.dataDir, 'storage', 'dc1')) : [], []);
  });

  it('getEventInfo() reads from the next center when the first lacks the event', async () => {
    const { config, broker } = await start({ storageCenters: 'dc1,dc2' });
    await broker.call('content-storage.putEventInfo', { info: sampleInfo() });
    const first = join(config.dataDir, 'storage', 'dc1', EVENT_ID, 'event-info.xml');
    writeFileSync(first, 'not xml');
    const back = await broker.call<EventInfo, object>('content-storage.getEventInfo', { eventId: EVENT_ID });
    assert.equal(back.eventId, EVENT_ID);
  });

  it('getEventInfo() of an unknown event is refused with NotFoundError', async () => {
    const { broker } = await start();
    await assert.rejects(broker.call('content-storage.getEventInfo', { eventId: EVENT_ID }), NotFoundError);
  });

  it('getEventInfo() with a path as event ID is refused with ValidationFailedError', async () => {
    const { broker } = await start();
    await assert.rejects(broker.call('content-storage.getEventInfo', { eventId: '../../secret' }), ValidationFailedError);
  });

  it('listEventIds() lists stored events', async () => {
    const { broker } = await start();
    await broker.call('content-storage.putEventInfo', { info: sampleInfo() });
    await broker.call('content-storage.putEventInfo', { info: sampleInfo({ eventId: '12345682' }) });
    assert.deepEqual(await broker.call('content-storage.listEventIds', {}), [EVENT_ID, '12345682']);
  });

  it('putStream() copies the encoder directory and readStreamFile() returns its files', async () => {
    const { config, broker } = await start();
    const dir = writeLiveDir(config, STREAM_ID, [2, 2]);
    const r = await broker.call<{ files: number; bytes: number }, object>('content-storage.putStream', { eventId: EVENT_ID, streamId: STREAM_ID, dir });
    assert.equal(r.files, 3);
    assert.ok(r.bytes > 188 * 3);
    const text = (await broker.call<Buffer, object>('content-storage.readStreamFile', { eventId: EVENT_ID, streamId: STREAM_ID, file: 'index.m3u8' })).toString();
    assert.equal(text, readFileSync(join(dir, 'index.m3u8'), 'utf8'));
    const listed = await broker.call<Array<{ streamId: string; files: string[] }>, object>('content-storage.listStreams', { eventId: EVENT_ID });
    assert.deepEqual(listed, [{ streamId: STREAM_ID, files: ['index.m3u8', 'seg00000.ts', 'seg00001.ts'] }]);
  });

  it('putStream() from a directory outside <dataDir>/live is refused with ValidationFailedError', async () => {
    const { config, broker } = await start();
    const outside = join(config.dataDir, 'elsewhere');
    mkdirSync(outside);
    await assert.rejects(broker.call('content-storage.putStream', { eventId: EVENT_ID, streamId: STREAM_ID, dir: outside }), ValidationFailedError);
    await assert.rejects(broker.call('content-storage.putStream', { eventId: EVENT_ID, streamId: STREAM_ID, dir: join(config.dataDir, 'live', '..', 'storage') }), ValidationFailedError);
  });

  it('putStream() of a stream of another event is refused with ValidationFailedError', async () => {
    const { config, broker } = await start();
    const dir = writeLiveDir(config, STREAM_ID, [2]);
    await assert.rejects(broker.call('content-storage.putStream', { eventId: '12345682', streamId: STREAM_ID, dir }), ValidationFailedError);
  });

  it('beginStream() answers this node as the upload target, and stop() drops an upload in progress with its staging directory', async () => {
    const { config, broker } = await start({ storageCenters: 'dc1,dc2' });
    const begin = await broker.call<BeginStreamResult, object>('content-storage.beginStream', { eventId: EVENT_ID, streamId: STREAM_ID });
    assert.equal(begin.nodeId, broker.nodeID);
    assert.match(begin.uploadId, /^[0-9a-f]{32}$/);
    await broker.call('content-storage.putStreamFile', { uploadId: begin.uploadId, file: 'seg00000.ts', offset: 0, data: Buffer.alloc(188).toString('base64') });
    const staging = (c: string) => join(config.dataDir, 'storage', c, '.staging');
    for (const c of ['dc1', 'dc2']) assert.equal(readdirSync(staging(c)).length, 1, `staged in ${c}`);
    await broker.stop();
    brokers.pop();
    for (const c of ['dc1', 'dc2']) assert.deepEqual(readdirSync(staging(c)), [], `nothing left in ${c}`);
  });

  it('commitStream() stores the upload in every center at once', async () => {
    const { config, broker } = await start({ storageCenters: 'dc1,dc2' });
    const begin = await broker.call<BeginStreamResult, object>('content-storage.beginStream', { eventId: EVENT_ID, streamId: STREAM_ID });
    const seg = Buffer.alloc(376, 0x47);
    await broker.call('content-storage.putStreamFile', { uploadId: begin.uploadId, file: 'seg00000.ts', offset: 0, data: seg.subarray(0, 188).toString('base64') });
    await broker.call('content-storage.putStreamFile', { uploadId: begin.uploadId, file: 'seg00000.ts', offset: 188, data: seg.subarray(188).toString('base64') });
    const r = await broker.call<{ files: number; bytes: number }, object>('content-storage.commitStream', { uploadId: begin.uploadId, files: { 'seg00000.ts': 376 } });
    assert.deepEqual(r, { files: 1, bytes: 376 });
    for (const c of ['dc1', 'dc2']) assert.deepEqual(readFileSync(join(config.dataDir, 'storage', c, EVENT_ID, 'streams', STREAM_ID, 'seg00000.ts')), seg, c);
  });

  for (const file of ['../../event-info.xml', 'event-info.xml', '..', 'index.m3u8\u0000.ts', 'x/../index.m3u8']) {
    it(`readStreamFile() of ${JSON.stringify(file)} is refused with ValidationFailedError`, async () => {
      const { broker } = await start();
      await assert.rejects(broker.call('content-storage.readStreamFile', { eventId: EVENT_ID, streamId: STREAM_ID, file }), ValidationFailedError);
    });
  }

  it('readStreamFile() with a traversing stream ID is refused with ValidationFailedError', async () => {
    const { broker } = await start();
    await assert.rejects(broker.call('content-storage.readStreamFile', { eventId: EVENT_ID, streamId: '12345674-..-1-a', file: 'index.m3u8' }), ValidationFailedError);
  });

  it('readStreamFile() of a file not stored is refused with NotFoundError', async () => {
    const { broker } = await start();
    await assert.rejects(broker.call('content-storage.readStreamFile', { eventId: EVENT_ID, streamId: STREAM_ID, file: 'seg00000.ts' }), NotFoundError);
  });
});
