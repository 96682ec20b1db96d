/**
 * Files across nodes (issue 3): three brokers in this process over the real NATS (a namespace of
 * their own), each with its own data directory, nothing shared on disk.
 *
 * - `door`: the real attendee-access and content-storage actors, and a fake monitoring whose
 *   datasets place the streams on `enc`.
 * - `enc`: plays the encoder node: an `encoder-port.liveFile` over its own `live/` (the real
 *   serveLiveFile behind it, counting calls, with a gate to hold fetches), and no content storage,
 *   so runtime/stream-upload.ts must send stream files over the broker.
 * - `real`: the real encoder-port actor with no stream, for its refusals.
 */
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ServiceBroker, ServiceSchema } from 'moleculer';
import { createAttendeeAccessService } from '../../actors/attendee-access.service.ts';
import { createContentStorageService } from '../../actors/content-storage.service.ts';
import { createEncoderPortService } from '../../actors/encoder-port.service.ts';
import type { JitcastConfig } from '../../cluster.config.ts';
import { signAuthCode } from '../../codecs/token.ts';
import { createBroker } from '../../runtime/broker.ts';
import type { BeginStreamResult, StreamDataset } from '../../runtime/contracts.ts';
import { NotFoundError, StateConflictError, ValidationFailedError } from '../../runtime/errors.ts';
import { asBuffer, serveLiveFile } from '../../runtime/live-files.ts';
import { STAGING_DIR } from '../../runtime/storage.ts';
import { storeStream } from '../../runtime/stream-upload.ts';
import { testConfig } from '../support/config.ts';
import { EVENT_ID, playlist, waitFor, writeLiveDir } from '../support/event-plane.ts';
import { SPEC_NATS_URL, specNamespace } from '../support/redis.ts';

const NOW = 1_800_000_000;
const PLAYLIST_TTL_MS = 300;
const UPLOAD_IDLE_MS = 400;

describe('files across nodes: live files and stored streams over NATS, no shared disk', { timeout: 60_000 }, () => {
  const ns = specNamespace('files');
  const ids = { door: `${ns}-door`, enc: `${ns}-enc`, real: `${ns}-real`, ghost: `${ns}-ghost` };
  const brokers: ServiceBroker[] = [];
  let door: ServiceBroker;
  let enc: ServiceBroker;
  let doorConfig: JitcastConfig;
  let encConfig: JitcastConfig;
  /** Streams the fake encoder knows, and the datasets monitoring answers. */
  const known = new Set<string>();
  let datasets: StreamDataset[] = [];
  /** Every `encoder-port.liveFile` the fake encoder answered: `streamId/file`. */
  let fetched: string[] = [];
  /** While set, the fake encoder holds each answer until it resolves. */
  let gate: Promise<void> | undefined;
  let streamN = 0;

  /** A fresh stream ID of EVENT_ID encoded on `enc`, with a playlist and three segments on enc's disk only. */
  function newStream(): string {
    const streamId = `${EVENT_ID}-enc-${10002 + 2 * streamN++}-lq0abc`;
    writeLiveDir(encConfig, streamId, [2, 2, 2], { ended: false });
    known.add(streamId);
    datasets.push({
      streamId,
      eventId: EVENT_ID,
      format: 'hls',
      port: 10002,
      nodeId: ids.enc,
      dataCenter: 'dc2',
      url: `/s/${streamId}/index.m3u8`,
      startedAt: '2027-01-15T10:00:00.000Z',
      lastSeenAt: '2027-01-15T10:00:01.000Z',
    });
    return streamId;
  }

  const code = (streamId: string) => signAuthCode(doorConfig.secret, EVENT_ID, streamId, NOW + 60);
  const liveFile = <T>(streamId: string, file: string, meta: Record<string, unknown> = {}) =>
    door.call<T, object>('attendee-access.liveFile', { streamId, file, a: code(streamId) }, { meta });

  before(async () => {
    const base = { namespace: ns, natsUrl: SPEC_NATS_URL, heartbeatS: '1', heartbeatTimeoutS: '3', logLevel: 'fatal' };
    doorConfig = testConfig({ ...base, nodeId: ids.door });
    encConfig = testConfig({ ...base, nodeId: ids.enc });
    const realConfig = testConfig({ ...base, nodeId: ids.real, encoderPorts: '21900-21909' });

    door = createBroker(doorConfig);
    // hotCacheMs 0: each spec puts a new stream in monitoring's table and asks for it at once.
    door.createService(createAttendeeAccessService(doorConfig, { nowS: () => NOW, livePlaylistTtlMs: PLAYLIST_TTL_MS, liveFetchTimeoutMs: 1500, hotCacheMs: 0 }));
    door.createService(createContentStorageService(doorConfig, { uploadIdleMs: UPLOAD_IDLE_MS }));
    door.createService({
      name: 'monitoring',
      actions: {
        activeStreams(ctx): StreamDataset[] {
          const { eventId } = ctx.params as { eventId?: string };
          return datasets.filter((d) => !eventId || d.eventId === eventId);
        },
      },
    } as ServiceSchema);

    enc = createBroker(encConfig);
    enc.createService({
      name: 'encoder-port',
      actions: {
        async liveFile(ctx) {
          const p = ctx.params as { streamId: string; file: string };
          fetched.push(`${p.streamId}/${p.file}`);
          if (gate) await gate;
          return serveLiveFile(encConfig.dataDir, encConfig.nodeId, ctx.params, (id) => known.has(id));
        },
      },
    } as ServiceSchema);

    const real = createBroker(realConfig);
    real.createService(createEncoderPortService(realConfig));

    for (const b of [door, enc, real]) {
      brokers.push(b);
      await b.start();
    }
    await door.waitForServices(['encoder-port'], 10_000);
    await enc.waitForServices(['content-storage'], 10_000);
    await waitFor('the real encoder-port seen from the door', () =>
      (door.registry.getServiceList({ onlyAvailable: true }) as Array<{ name: string; nodeID: string }>).some((s) => s.name === 'encoder-port' && s.nodeID === ids.real),
    );
  });

  after(async () => {
    while (brokers.length > 0) await brokers.pop()!.stop();
  });

  beforeEach(() => {
    fetched = [];
    gate = undefined;
  });

  describe('live files', () => {
    it("liveFile() on the door serves the playlist of a stream encoded on another node, rewritten with the auth code", async () => {
      const s = newStream();
      const meta: Record<string, any> = {};
      const text = await liveFile<string>(s, 'index.m3u8', meta);
      assert.equal(meta.$responseType, 'application/vnd.apple.mpegurl');
      const uris = text.split('\n').filter((l) => l && !l.startsWith('#'));
      assert.deepEqual(uris, ['seg00000.ts', 'seg00001.ts', 'seg00002.ts'].map((f) => `${f}?a=${code(s)}`));
      assert.deepEqual(fetched, [`${s}/index.m3u8`]);
      assert.equal(existsSync(join(doorConfig.dataDir, 'live', s)), false, 'the door has no copy of the stream on its disk');
    });

    it("liveFile() serves a listed segment's exact bytes from the encoder's node, then from memory (one fetch for 20 requests)", async () => {
      const s = newStream();
      await liveFile<string>(s, 'index.m3u8');
      const want = readFileSync(join(encConfig.dataDir, 'live', s, 'seg00001.ts'));
      for (let i = 0; i < 20; i++) {
        const meta: Record<string, any> = {};
        assert.deepEqual(Buffer.from(await liveFile<Buffer>(s, 'seg00001.ts', meta)), want);
        assert.equal(meta.$responseType, 'video/mp2t');
      }
      assert.deepEqual(fetched, [`${s}/index.m3u8`, `${s}/seg00001.ts`]);
    });

    it('liveFile() does not keep a segment the playlist does not list yet: ffmpeg may still be writing it', async () => {
      const s = newStream();
      await liveFile<string>(s, 'index.m3u8');
      const path = join(encConfig.dataDir, 'live', s, 'seg00003.ts');
      writeFileSync(path, Buffer.alloc(100, 1));
      assert.equal(Buffer.from(await liveFile<Buffer>(s, 'seg00003.ts')).length, 100);
      writeFileSync(path, Buffer.alloc(300, 1));
      assert.equal(Buffer.from(await liveFile<Buffer>(s, 'seg00003.ts')).length, 300, 'the half-written answer was not kept');
      assert.equal(fetched.length, 3);
    });

    it('liveFile() reuses a fetched playlist for the playlist TTL only, and then sees the new segment', async () => {
      const s = newStream();
      await liveFile<string>(s, 'index.m3u8');
      await liveFile<string>(s, 'index.m3u8');
      assert.equal(fetched.length, 1, 'second request within the TTL comes from memory');
      writeFileSync(join(encConfig.dataDir, 'live', s, 'seg00003.ts'), Buffer.alloc(188, 3));
      writeFileSync(join(encConfig.dataDir, 'live', s, 'index.m3u8'), playlist([2, 2, 2, 2], false));
      await new Promise((r) => setTimeout(r, PLAYLIST_TTL_MS + 50));
      const text = await liveFile<string>(s, 'index.m3u8');
      assert.match(text, /seg00003\.ts\?a=/);
      assert.equal(fetched.length, 2);
    });

    it('liveFile() shares one fetch between 30 concurrent listeners of a segment not cached yet', async () => {
      const s = newStream();
      await liveFile<string>(s, 'index.m3u8');
      fetched = [];
      let open!: () => void;
      gate = new Promise<void>((r) => (open = r));
      const all = Promise.all(Array.from({ length: 30 }, () => liveFile<Buffer>(s, 'seg00002.ts')));
      await waitFor('the one fetch to reach the encoder', () => fetched.length === 1);
      await new Promise((r) => setTimeout(r, 100));
      open();
      const answers = await all;
      const want = readFileSync(join(encConfig.dataDir, 'live', s, 'seg00002.ts'));
      for (const a of answers) assert.deepEqual(Buffer.from(a), want);
      assert.deepEqual(fetched, [`${s}/seg00002.ts`]);
      await liveFile<Buffer>(s, 'seg00002.ts');
      assert.equal(fetched.length, 1, 'and kept afterwards');
    });

    it('liveFile() refuses forged file names and stream IDs before any fetch', async () => {
      const s = newStream();
      for (const p of [
        { streamId: s, file: '../seg00000.ts' },
        { streamId: s, file: 'gaps.json' },
        { streamId: s, file: '.ffmpeg.m3u8' },
        { streamId: s, file: 'seg00000.ts/../../x.ts' },
        { streamId: `${s}/..`, file: 'seg00000.ts' },
        { streamId: '..', file: 'index.m3u8' },
      ]) {
        const err = await door.call('attendee-access.liveFile', { ...p, a: code(s) }).then(
          () => assert.fail(`answered ${JSON.stringify(p)}`),
          (e: { code: number }) => e,
        );
        assert.ok(err.code === 404 || err.code === 400, `${JSON.stringify(p)} → ${err.code}`);
      }
      assert.deepEqual(fetched, []);
    });

    it('liveFile() answers 404 without a fetch for a stream monitoring does not see alive', async () => {
      const s = newStream();
      datasets = datasets.filter((d) => d.streamId !== s);
      await assert.rejects(liveFile(s, 'seg00000.ts'), NotFoundError);
      assert.deepEqual(fetched, []);
    });

    it("liveFile() answers 404 when the encoder's node does not know the stream, and does not cache the refusal", async () => {
      const s = newStream();
      known.delete(s);
      await assert.rejects(liveFile(s, 'seg00000.ts'), { name: 'NotFoundError', code: 404 });
      known.add(s);
      assert.ok(Buffer.from(await liveFile<Buffer>(s, 'seg00000.ts')).length > 0);
      assert.equal(fetched.length, 2);
    });

    it("liveFile() answers 404 (so players fail over) when the dataset's node is gone", async () => {
      const s = newStream();
      datasets = datasets.map((d) => (d.streamId === s ? { ...d, nodeId: ids.ghost } : d));
      const t0 = Date.now();
      await assert.rejects(liveFile(s, 'seg00000.ts'), { code: 404, message: /not reachable on node/ });
      assert.ok(Date.now() - t0 < 2000, `answered in ${Date.now() - t0} ms`);
    });

    it('the real encoder-port.liveFile refuses an unknown stream with NotFoundError and a forged name with ValidationFailedError, across NATS', async () => {
      const s = `${EVENT_ID}-enc-10002-lq0abc`;
      await assert.rejects(door.call('encoder-port.liveFile', { streamId: s, file: 'index.m3u8' }, { nodeID: ids.real }), NotFoundError);
      for (const file of ['../index.m3u8', 'gaps.json', 'seg1.ts']) {
        await assert.rejects(door.call('encoder-port.liveFile', { streamId: s, file }, { nodeID: ids.real }), ValidationFailedError, file);
      }
      await assert.rejects(door.call('encoder-port.liveFile', { streamId: '../../etc', file: 'index.m3u8' }, { nodeID: ids.real }), ValidationFailedError);
    });
  });

  describe('stored streams', () => {
    /** Stream directory on the door's storage (its only center). */
    const storedDir = (streamId: string) => join(doorConfig.dataDir, 'storage', doorConfig.storageCenters[0]!, EVENT_ID, 'streams', streamId);
    const stagingDir = () => join(doorConfig.dataDir, 'storage', doorConfig.storageCenters[0]!, STAGING_DIR);
    /** `enc`'s broker.call, as encoder-port hands it to storeStream. */
    const encCall = (action: string, params: unknown, opts?: { timeout?: number; nodeID?: string }) => enc.call(action, params as object, opts);

    it('storeStream() from a node without content storage sends every file over NATS in chunks; the door stores them byte for byte', async () => {
      const s = newStream();
      const dir = join(encConfig.dataDir, 'live', s);
      writeFileSync(join(dir, 'gaps.json'), JSON.stringify([{ start: 1, end: 1.5 }]));
      writeFileSync(join(dir, 'seg00003.ts'), Buffer.alloc(0));
      writeFileSync(join(dir, 'notes.tmp'), 'skipped');
      const r = await storeStream(enc, encCall, { eventId: EVENT_ID, streamId: s, dir }, { chunkBytes: 100 });
      assert.equal(r.via, 'broker');
      assert.equal(r.nodeId, ids.door);
      const names = readdirSync(dir).filter((n) => n !== 'notes.tmp').sort();
      assert.deepEqual(readdirSync(storedDir(s)).sort(), names);
      for (const n of names) assert.deepEqual(readFileSync(join(storedDir(s), n)), readFileSync(join(dir, n)), n);
      assert.equal(r.files, names.length);
      assert.equal(r.bytes, names.reduce((sum, n) => sum + readFileSync(join(dir, n)).length, 0));
      assert.deepEqual(readdirSync(stagingDir()), []);
      const back = asBuffer(await enc.call('content-storage.readStreamFile', { eventId: EVENT_ID, streamId: s, file: 'gaps.json' }));
      assert.deepEqual(JSON.parse(back.toString()), [{ start: 1, end: 1.5 }]);
    });

    it('a stream upload is invisible until its commit: listStreams and readStreamFile do not see it', async () => {
      const s = newStream();
      const begin = await enc.call<BeginStreamResult, object>('content-storage.beginStream', { eventId: EVENT_ID, streamId: s });
      const at = { nodeID: begin.nodeId };
      const seg = readFileSync(join(encConfig.dataDir, 'live', s, 'seg00000.ts'));
      await enc.call('content-storage.putStreamFile', { uploadId: begin.uploadId, file: 'seg00000.ts', offset: 0, data: seg.toString('base64') }, at);
      await enc.call('content-storage.putStreamFile', { uploadId: begin.uploadId, file: 'index.m3u8', offset: 0, data: Buffer.from(playlist([2])).toString('base64') }, at);
      const listed = await enc.call<Array<{ streamId: string }>, object>('content-storage.listStreams', { eventId: EVENT_ID });
      assert.ok(!listed.some((x) => x.streamId === s), 'not listed before commit');
      await assert.rejects(enc.call('content-storage.readStreamFile', { eventId: EVENT_ID, streamId: s, file: 'index.m3u8' }), NotFoundError);
      assert.equal(existsSync(storedDir(s)), false);
      const r = await enc.call<{ files: number }, object>('content-storage.commitStream', { uploadId: begin.uploadId, files: { 'seg00000.ts': seg.length, 'index.m3u8': playlist([2]).length } }, at);
      assert.equal(r.files, 2);
      assert.deepEqual(readdirSync(storedDir(s)).sort(), ['index.m3u8', 'seg00000.ts']);
    });

    it('commitStream() of an upload with a file missing or short is refused with StateConflictError and stores nothing', async () => {
      const s = newStream();
      const begin = await enc.call<BeginStreamResult, object>('content-storage.beginStream', { eventId: EVENT_ID, streamId: s });
      const at = { nodeID: begin.nodeId };
      await enc.call('content-storage.putStreamFile', { uploadId: begin.uploadId, file: 'seg00000.ts', offset: 0, data: Buffer.alloc(188).toString('base64') }, at);
      await assert.rejects(
        enc.call('content-storage.commitStream', { uploadId: begin.uploadId, files: { 'seg00000.ts': 376, 'index.m3u8': 10 } }, at),
        StateConflictError,
      );
      assert.equal(existsSync(storedDir(s)), false);
      assert.deepEqual(readdirSync(stagingDir()), [], 'staging removed');
      // The upload is over: a retry must begin again.
      await assert.rejects(enc.call('content-storage.commitStream', { uploadId: begin.uploadId, files: { 'seg00000.ts': 188 } }, at), NotFoundError);
    });

    it('putStreamFile() refuses forged names, out-of-order chunks and bad data, and a refused chunk spoils the upload', async () => {
      const s = newStream();
      const begin = await enc.call<BeginStreamResult, object>('content-storage.beginStream', { eventId: EVENT_ID, streamId: s });
      const at = { nodeID: begin.nodeId };
      const put = (p: Record<string, unknown>) => enc.call('content-storage.putStreamFile', { uploadId: begin.uploadId, file: 'seg00000.ts', offset: 0, data: 'AAAA', ...p }, at);
      for (const file of ['../../event-info.xml', 'event-info.xml', '../x.ts', '.staging.ts', 'a/b.ts']) await assert.rejects(put({ file }), ValidationFailedError, file);
      for (const data of ['not base64!', 'AAA', 123, Buffer.alloc(4).toString('hex') + '=']) await assert.rejects(put({ data }), ValidationFailedError, String(data));
      await assert.rejects(put({ offset: -1 }), ValidationFailedError);
      await assert.rejects(put({ uploadId: '../../x' }), ValidationFailedError);
      await assert.rejects(put({ uploadId: 'f'.repeat(32) }), NotFoundError);
      // Validation failures above left the upload usable; a chunk at the wrong offset ends it.
      await put({});
      await assert.rejects(put({ offset: 100 }), ValidationFailedError);
      await assert.rejects(put({ offset: 3 }), NotFoundError, 'the upload is gone');
      assert.deepEqual(readdirSync(stagingDir()), []);
      assert.equal(existsSync(storedDir(s)), false);
    });

    it('beginStream() for a stream of another event is refused with ValidationFailedError', async () => {
      await assert.rejects(enc.call('content-storage.beginStream', { eventId: '12345682', streamId: `${EVENT_ID}-enc-10002-lq0abc` }), ValidationFailedError);
      await assert.rejects(enc.call('content-storage.beginStream', { eventId: EVENT_ID, streamId: '../../etc' }), ValidationFailedError);
    });

    it('an upload whose sender goes quiet is dropped after the idle limit with everything it staged', async () => {
      const s = newStream();
      const begin = await enc.call<BeginStreamResult, object>('content-storage.beginStream', { eventId: EVENT_ID, streamId: s });
      await enc.call('content-storage.putStreamFile', { uploadId: begin.uploadId, file: 'seg00000.ts', offset: 0, data: 'AAAA' }, { nodeID: begin.nodeId });
      assert.equal(readdirSync(stagingDir()).length, 1);
      await waitFor('the idle upload dropped', () => readdirSync(stagingDir()).length === 0, UPLOAD_IDLE_MS * 10);
      await assert.rejects(enc.call('content-storage.commitStream', { uploadId: begin.uploadId, files: { 'seg00000.ts': 3 } }, { nodeID: begin.nodeId }), NotFoundError);
      assert.equal(existsSync(storedDir(s)), false);
    });

    it('storeStream() of a stream already stored merges: the stored finished playlist and segments are kept', async () => {
      const s = newStream();
      const dir = join(encConfig.dataDir, 'live', s);
      writeFileSync(join(dir, 'index.m3u8'), playlist([2, 2, 2]));
      await storeStream(enc, encCall, { eventId: EVENT_ID, streamId: s, dir });
      const stored = readFileSync(join(storedDir(s), 'seg00000.ts'));
      writeFileSync(join(dir, 'seg00000.ts'), Buffer.alloc(50, 1));
      writeFileSync(join(dir, 'index.m3u8'), playlist([2, 2, 2, 2]));
      writeFileSync(join(dir, 'seg00003.ts'), Buffer.alloc(60, 3));
      const r = await storeStream(enc, encCall, { eventId: EVENT_ID, streamId: s, dir });
      assert.equal(r.files, 5);
      assert.deepEqual(readFileSync(join(storedDir(s), 'seg00000.ts')), stored);
      assert.equal(readFileSync(join(storedDir(s), 'index.m3u8'), 'utf8'), playlist([2, 2, 2]));
      assert.deepEqual(readFileSync(join(storedDir(s), 'seg00003.ts')), Buffer.alloc(60, 3));
    });

    it('storeStream() on a node that runs content storage hands over the path (putStream {dir}), pinned to that node', async () => {
      const s = newStream();
      const dir = writeLiveDir(doorConfig, s, [2, 2]);
      const calls: Array<{ action: string; nodeID?: string }> = [];
      const doorCall = (action: string, params: unknown, opts?: { timeout?: number; nodeID?: string }) => {
        calls.push({ action, nodeID: opts?.nodeID });
        return door.call(action, params as object, opts);
      };
      const r = await storeStream(door, doorCall, { eventId: EVENT_ID, streamId: s, dir });
      assert.deepEqual({ via: r.via, nodeId: r.nodeId, files: r.files }, { via: 'path', nodeId: ids.door, files: 3 });
      assert.deepEqual(calls, [{ action: 'content-storage.putStream', nodeID: ids.door }]);
    });

    it('storeStream() failing mid-upload (a file over the cap is never read) aborts the upload and stores nothing', async () => {
      const s = newStream();
      const dir = join(encConfig.dataDir, 'live', s);
      const big = join(dir, 'seg00009.ts');
      writeFileSync(big, '');
      // A sparse 17 MiB file: over MAX_STREAM_FILE_BYTES without writing it.
      truncateSync(big, 17 * 1024 * 1024);
      await assert.rejects(storeStream(enc, encCall, { eventId: EVENT_ID, streamId: s, dir }), { code: 413 });
      assert.equal(existsSync(storedDir(s)), false);
      await waitFor('staging removed by the abort', () => readdirSync(stagingDir()).length === 0, 2000);
    });
  });
});
