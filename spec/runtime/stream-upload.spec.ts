import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ServiceBroker } from 'moleculer';
import { createContentStorageService } from '../../actors/content-storage.service.ts';
import type { JitcastConfig } from '../../cluster.config.ts';
import { createBroker } from '../../runtime/broker.ts';
import { listedSegments, storeStream, uploadProgress, type UploadCall, type UploadHost } from '../../runtime/stream-upload.ts';
import { testConfig } from '../support/config.ts';
import { EVENT_ID, STREAM_ID, playlist, writeLiveDir } from '../support/event-plane.ts';

const brokers: ServiceBroker[] = [];
afterEach(async () => {
  while (brokers.length > 0) await brokers.pop()!.stop();
});

/** A storage node, and an encoder host on "another node" (no local storage) that calls it. */
async function setup(): Promise<{ config: JitcastConfig; host: UploadHost; call: UploadCall & { log: string[] }; stored: (f?: string) => string }> {
  const config = testConfig({ storageCenters: 'dc1' });
  const broker = createBroker(config);
  brokers.push(broker);
  broker.createService(createContentStorageService(config, { antiEntropyMs: 0, retentionSweepMs: 0 }));
  await broker.start();
  const log: string[] = [];
  const call = Object.assign(
    (action: string, params: any, opts?: { timeout?: number; nodeID?: string }) => {
      log.push(action === 'content-storage.putStreamFile' ? `put ${params.file}` : action.replace('content-storage.', ''));
      return broker.call(action, params, opts);
    },
    { log },
  );
  const host: UploadHost = { nodeID: 'encoder-node', getLocalService: () => undefined };
  const stored = (f = '') => join(config.dataDir, 'storage', 'dc1', EVENT_ID, 'streams', STREAM_ID, f);
  return { config, host, call, stored };
}

describe('stream-upload: uploads as they go', () => {
  it('listedSegments() names the segments of a playlist in order, ignoring tags', () => {
    assert.deepEqual(listedSegments(playlist([2, 2], false)), ['seg00000.ts', 'seg00001.ts']);
    assert.deepEqual(listedSegments('#EXTM3U\n#EXTINF:2,\n/s/x/seg00007.ts?a=1\n'), ['seg00007.ts']);
  });

  it('uploadProgress() stores the listed segments and the unfinished playlist, but not a segment ffmpeg has not listed yet', async () => {
    const { config, host, call, stored } = await setup();
    const dir = writeLiveDir(config, STREAM_ID, [2, 2], { ended: false });
    writeFileSync(join(dir, 'seg00002.ts'), 'still being written');
    const r = await uploadProgress(host, call, { eventId: EVENT_ID, streamId: STREAM_ID, dir });
    assert.equal(r.sent, 3);
    assert.deepEqual(readdirSync(stored()).sort(), ['index.m3u8', 'seg00000.ts', 'seg00001.ts']);
    assert.doesNotMatch(readFileSync(stored('index.m3u8'), 'utf8'), /ENDLIST/);
  });

  it('uploadProgress() sends only what storage lacks: the new segment and the grown playlist; nothing when up to date', async () => {
    const { config, host, call, stored } = await setup();
    writeLiveDir(config, STREAM_ID, [2, 2], { ended: false });
    const dir = join(config.dataDir, 'live', STREAM_ID);
    await uploadProgress(host, call, { eventId: EVENT_ID, streamId: STREAM_ID, dir });
    writeLiveDir(config, STREAM_ID, [2, 2, 2], { ended: false });
    call.log.length = 0;
    assert.equal((await uploadProgress(host, call, { eventId: EVENT_ID, streamId: STREAM_ID, dir })).sent, 2);
    assert.deepEqual(call.log, ['beginStream', 'put seg00002.ts', 'put index.m3u8', 'commitStream']);
    call.log.length = 0;
    assert.equal((await uploadProgress(host, call, { eventId: EVENT_ID, streamId: STREAM_ID, dir })).sent, 0);
    assert.deepEqual(call.log, ['beginStream', 'abortStream']);
    assert.equal(existsSync(join(config.dataDir, 'storage', 'dc1', '.staging')) ? readdirSync(join(config.dataDir, 'storage', 'dc1', '.staging')).length : 0, 0);
    assert.deepEqual(readdirSync(stored()).sort(), ['index.m3u8', 'seg00000.ts', 'seg00001.ts', 'seg00002.ts']);
  });

  it('the end-of-call storeStream() after uploads as they go sends no segment twice and stores the final playlist and gaps.json', async () => {
    const { config, host, call, stored } = await setup();
    const dir = writeLiveDir(config, STREAM_ID, [2, 2], { ended: false });
    await uploadProgress(host, call, { eventId: EVENT_ID, streamId: STREAM_ID, dir });
    writeLiveDir(config, STREAM_ID, [2, 2, 2], { ended: true, gaps: [{ start: 1, end: 2 }] });
    call.log.length = 0;
    const r = await storeStream(host, call, { eventId: EVENT_ID, streamId: STREAM_ID, dir });
    assert.equal(r.files, 5);
    assert.deepEqual(call.log.filter((l) => l.startsWith('put')).sort(), ['put gaps.json', 'put index.m3u8', 'put seg00002.ts']);
    assert.match(readFileSync(stored('index.m3u8'), 'utf8'), /#EXT-X-ENDLIST/);
    assert.deepEqual(JSON.parse(readFileSync(stored('gaps.json'), 'utf8')), [{ start: 1, end: 2 }]);
  });

  it('a late progress upload never replaces the final playlist', async () => {
    const { config, host, call, stored } = await setup();
    const dir = writeLiveDir(config, STREAM_ID, [2, 2, 2], { ended: true });
    await storeStream(host, call, { eventId: EVENT_ID, streamId: STREAM_ID, dir });
    writeFileSync(join(dir, 'index.m3u8'), playlist([2, 2, 2, 2], false));
    writeFileSync(join(dir, 'seg00003.ts'), 'x');
    await uploadProgress(host, call, { eventId: EVENT_ID, streamId: STREAM_ID, dir });
    assert.match(readFileSync(stored('index.m3u8'), 'utf8'), /#EXT-X-ENDLIST/);
  });
});
