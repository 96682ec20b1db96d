/**
 * Replication between storage nodes (issue 4): several brokers in this process over Moleculer's Fake
 * transporter, each a content-storage node of its own storage center and data directory.
 */
import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ServiceBroker } from 'moleculer';
import { createContentStorageService, type ContentStorageOptions } from '../../actors/content-storage.service.ts';
import type { JitcastConfig } from '../../cluster.config.ts';
import { DAY_MS } from '../../core/replication.ts';
import { createBroker } from '../../runtime/broker.ts';
import type { EventInfo } from '../../runtime/contracts.ts';
import { testConfig } from '../support/config.ts';
import { EVENT_ID, STREAM_ID, sampleInfo, writeLiveDir } from '../support/event-plane.ts';
import { waitFor } from '../support/wait.ts';

const brokers = new Set<ServiceBroker>();
afterEach(async () => {
  for (const b of brokers) await b.stop().catch(() => {});
  brokers.clear();
});

let nsSeq = 0;

interface StorageNode {
  id: string;
  config: JitcastConfig;
  broker: ServiceBroker;
  root: string;
}

async function startNode(ns: string, id: string, center: string, opts: ContentStorageOptions & { dataDir?: string } = {}): Promise<StorageNode> {
  const config = testConfig({ nodeId: id, dataCenter: center, namespace: ns, ...(opts.dataDir ? { dataDir: opts.dataDir } : {}) });
  const broker = createBroker(config, { transporter: 'Fake', logLevel: 'warn' });
  broker.createService(createContentStorageService(config, { antiEntropyMs: 0, retentionSweepMs: 0, ...opts }));
  brokers.add(broker);
  await broker.start();
  return { id, config, broker, root: join(config.dataDir, 'storage', center) };
}

async function stopNode(n: StorageNode): Promise<void> {
  await n.broker.stop();
  brokers.delete(n.broker);
}

const infoPath = (n: StorageNode) => join(n.root, EVENT_ID, 'event-info.xml');
const readInfo = (n: StorageNode) => (existsSync(infoPath(n)) ? readFileSync(infoPath(n), 'utf8') : undefined);
const streamDir = (n: StorageNode, streamId = STREAM_ID) => join(n.root, EVENT_ID, 'streams', streamId);
/** Every file of a stream with its bytes, for byte-for-byte comparison. */
function streamFiles(n: StorageNode, streamId = STREAM_ID): Record<string, string> | undefined {
  const dir = streamDir(n, streamId);
  if (!existsSync(dir)) return undefined;
  return Object.fromEntries(readdirSync(dir).sort().map((f) => [f, readFileSync(join(dir, f)).toString('base64')]));
}

async function pair(opts: ContentStorageOptions = {}) {
  const ns = `repl-${process.pid}-${++nsSeq}`;
  const a = await startNode(ns, 'store-a', 'dc1', opts);
  const b = await startNode(ns, 'store-b', 'dc2', opts);
  await waitFor('both nodes see each other', () => a.broker.registry.nodes.list({ onlyAvailable: true }).length === 2 && b.broker.registry.nodes.list({ onlyAvailable: true }).length === 2);
  return { ns, a, b };
}

describe('content-storage replication', () => {
  it('putEventInfo() on one node reaches the other node byte for byte', async () => {
    const { a, b } = await pair();
    await a.broker.call('content-storage.putEventInfo', { info: sampleInfo() }, { nodeID: a.id });
    const xml = await waitFor('event-info on b', () => readInfo(b));
    assert.equal(xml, readInfo(a));
    assert.match(xml, /<!-- jitcast-version \d+\.\d+\.store-a -->/);
  });

  it('a later write wins on every node, wherever each write was taken', async () => {
    const { a, b } = await pair();
    await a.broker.call('content-storage.putEventInfo', { info: sampleInfo({ title: 'first' }) }, { nodeID: a.id });
    await waitFor('first on b', () => readInfo(b)?.includes('<title>first</title>'));
    await b.broker.call('content-storage.putEventInfo', { info: sampleInfo({ title: 'second' }) }, { nodeID: b.id });
    await waitFor('second on a', () => readInfo(a)?.includes('<title>second</title>'));
    assert.equal(readInfo(a), readInfo(b));
  });

  it('a stream stored on one node reaches the other with identical files', async () => {
    const { a, b } = await pair();
    await a.broker.call('content-storage.putEventInfo', { info: sampleInfo() }, { nodeID: a.id });
    const dir = writeLiveDir(a.config, STREAM_ID, [2, 2, 2], { gaps: [{ start: 1, end: 2 }] });
    await a.broker.call('content-storage.putStream', { eventId: EVENT_ID, streamId: STREAM_ID, dir }, { nodeID: a.id });
    const files = await waitFor('stream on b', () => {
      const f = streamFiles(b);
      return f && Object.keys(f).length === 5 ? f : undefined;
    });
    assert.deepEqual(files, streamFiles(a));
  });

  it('a node that was down catches up on rejoin with what was written meanwhile, and its stale copy never flows back', async () => {
    const { ns, a, b } = await pair();
    await a.broker.call('content-storage.putEventInfo', { info: sampleInfo({ title: 'before' }) }, { nodeID: a.id });
    await waitFor('before on b', () => readInfo(b)?.includes('before'));
    const bDir = b.config.dataDir;
    await stopNode(b);
    await a.broker.call('content-storage.putEventInfo', { info: sampleInfo({ title: 'while away' }) }, { nodeID: a.id });
    const dir = writeLiveDir(a.config, STREAM_ID, [2, 2]);
    await a.broker.call('content-storage.putStream', { eventId: EVENT_ID, streamId: STREAM_ID, dir }, { nodeID: a.id });
    const b2 = await startNode(ns, 'store-b', 'dc2', { antiEntropyMs: 0, retentionSweepMs: 0, dataDir: bDir });
    await waitFor('b caught up', () => readInfo(b2)?.includes('while away') && Object.keys(streamFiles(b2) ?? {}).length === 3);
    assert.equal(readInfo(b2), readInfo(a));
    assert.deepEqual(streamFiles(b2), streamFiles(a));
    assert.ok(readInfo(a)!.includes('while away'), 'a kept the newer copy');
  });

  it('a stream uploaded as it goes (playlist without ENDLIST) is replaced by its final playlist on both nodes', async () => {
    const { a, b } = await pair();
    const partial = writeLiveDir(a.config, STREAM_ID, [2, 2], { ended: false });
    await a.broker.call('content-storage.putStream', { eventId: EVENT_ID, streamId: STREAM_ID, dir: partial }, { nodeID: a.id });
    await waitFor('partial on b', () => streamFiles(b)?.['index.m3u8']);
    assert.doesNotMatch(readFileSync(join(streamDir(b), 'index.m3u8'), 'utf8'), /ENDLIST/);
    const final = writeLiveDir(a.config, STREAM_ID, [2, 2, 2], { ended: true });
    await a.broker.call('content-storage.putStream', { eventId: EVENT_ID, streamId: STREAM_ID, dir: final }, { nodeID: a.id });
    await waitFor('final on b', () => streamFiles(b)?.['seg00002.ts'] && readFileSync(join(streamDir(b), 'index.m3u8'), 'utf8').includes('#EXT-X-ENDLIST'));
    assert.deepEqual(streamFiles(b), streamFiles(a));
  });

  it('the retention sweep removes an expired archive from every node, once (fake clock)', async () => {
    let clock = Date.parse('2026-12-01T00:00:00.000Z');
    const { a, b } = await pair({ now: () => clock });
    // The event actor is told, so it stops showing the archive.
    const told: string[] = [];
    a.broker.createService({ name: 'event', actions: { retentionEnded: (ctx: { params: { eventId: string } }) => told.push(ctx.params.eventId) } });
    await a.broker.waitForServices(['event']);
    const info: EventInfo = sampleInfo({ status: 'archived', endedAt: '2026-11-30T00:00:00.000Z', updatedAt: '2026-11-30T00:00:00.000Z', archiveDays: 2, archive: [{ streamId: STREAM_ID, start: 0, end: 4 }] });
    await a.broker.call('content-storage.putEventInfo', { info }, { nodeID: a.id });
    const dir = writeLiveDir(a.config, STREAM_ID, [2, 2]);
    await a.broker.call('content-storage.putStream', { eventId: EVENT_ID, streamId: STREAM_ID, dir }, { nodeID: a.id });
    await waitFor('stream on b', () => Object.keys(streamFiles(b) ?? {}).length === 3);

    assert.deepEqual(await a.broker.call('content-storage.sweepRetention', {}, { nodeID: a.id }), { swept: [] }, 'one day in: kept');
    clock += 2 * DAY_MS;
    assert.deepEqual(await a.broker.call('content-storage.sweepRetention', {}, { nodeID: a.id }), { swept: [EVENT_ID] });
    assert.deepEqual(told, [EVENT_ID]);
    assert.equal(streamFiles(a), undefined);
    await waitFor('streams gone from b', () => streamFiles(b) === undefined);
    await waitFor('b holds the marked event-info', () => readInfo(b) === readInfo(a));
    assert.doesNotMatch(readInfo(a)!, /<archive[ >/]/);
    assert.match(readInfo(a)!, /<status>archived<\/status>/);
    assert.deepEqual(await a.broker.call('content-storage.sweepRetention', {}, { nodeID: a.id }), { swept: [] }, 'idempotent');
  });

  it('a node that missed the sweep removes the expired streams when it rejoins and never hands them back', async () => {
    let clock = Date.parse('2026-12-01T00:00:00.000Z');
    const { ns, a, b } = await pair({ now: () => clock });
    const info: EventInfo = sampleInfo({ status: 'archived', endedAt: '2026-11-30T12:00:00.000Z', updatedAt: '2026-11-30T12:00:00.000Z', archiveDays: 1, archive: [{ streamId: STREAM_ID, start: 0, end: 4 }] });
    await a.broker.call('content-storage.putEventInfo', { info }, { nodeID: a.id });
    const dir = writeLiveDir(a.config, STREAM_ID, [2, 2]);
    await a.broker.call('content-storage.putStream', { eventId: EVENT_ID, streamId: STREAM_ID, dir }, { nodeID: a.id });
    await waitFor('stream on b', () => Object.keys(streamFiles(b) ?? {}).length === 3);
    const bDir = b.config.dataDir;
    await stopNode(b);
    clock += DAY_MS;
    await a.broker.call('content-storage.sweepRetention', {}, { nodeID: a.id });
    const b2 = await startNode(ns, 'store-b', 'dc2', { antiEntropyMs: 0, retentionSweepMs: 0, now: () => clock, dataDir: bDir });
    await waitFor('b removed its copy', () => streamFiles(b2) === undefined && readInfo(b2) === readInfo(a));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(streamFiles(a), undefined, 'a did not pull the expired files back from b');
  });

  it('the periodic sweep runs on the storage node with the lowest node ID only', async () => {
    const clock = Date.parse('2026-12-10T00:00:00.000Z');
    const { a, b } = await pair({ now: () => clock, retentionSweepMs: 100 });
    const info: EventInfo = sampleInfo({ status: 'archived', endedAt: '2026-11-30T00:00:00.000Z', updatedAt: '2026-11-30T00:00:00.000Z', archiveDays: 1, archive: [{ streamId: STREAM_ID, start: 0, end: 4 }] });
    await b.broker.call('content-storage.putEventInfo', { info }, { nodeID: b.id });
    const marked = await waitFor('the marked event-info on both', () => {
      const x = readInfo(a);
      return x && !/<archive[ >/]/.test(x) && x === readInfo(b) ? x : undefined;
    });
    assert.match(marked, /jitcast-version \d+\.\d+\.store-a -->/, 'store-a (lowest ID) wrote the mark');
  });
});
