import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ContentStorage, MAX_STREAM_FILE_BYTES, STAGING_DIR } from '../../runtime/storage.ts';
import { NotFoundError, PayloadTooLargeError, StateConflictError, ValidationFailedError } from '../../runtime/errors.ts';
import { EVENT_ID, STREAM_ID, playlist } from '../support/event-plane.ts';
import { withVersion } from '../../core/replication.ts';
import { readFileSync } from 'node:fs';

function fresh(): { storage: ContentStorage; root: string; src: string } {
  const base = mkdtempSync(join(tmpdir(), 'jitcast-storage-'));
  const root = join(base, 'storage', 'dc1');
  const src = join(base, 'live', STREAM_ID);
  mkdirSync(src, { recursive: true });
  return { storage: new ContentStorage(root), root, src };
}

describe('ContentStorage', () => {
  it('writeEventInfo() then readEventInfo() returns the XML and leaves no temp file', async () => {
    const { storage, root } = fresh();
    await storage.writeEventInfo(EVENT_ID, '<event id="12345674"/>');
    assert.equal(await storage.readEventInfo(EVENT_ID), '<event id="12345674"/>');
    assert.deepEqual(readdirSync(join(root, EVENT_ID)), ['event-info.xml']);
  });

  it('writeEventInfo() replaces the previous event-info.xml', async () => {
    const { storage } = fresh();
    await storage.writeEventInfo(EVENT_ID, 'one');
    await storage.writeEventInfo(EVENT_ID, 'two');
    assert.equal(await storage.readEventInfo(EVENT_ID), 'two');
  });

  it('readEventInfo() of an unknown event answers undefined', async () => {
    assert.equal(await fresh().storage.readEventInfo(EVENT_ID), undefined);
  });

  it('listEventIds() lists only valid event IDs that hold an event-info.xml', async () => {
    const { storage, root } = fresh();
    await storage.writeEventInfo(EVENT_ID, 'x');
    mkdirSync(join(root, '12345682'));
    mkdirSync(join(root, 'not-an-event'));
    assert.deepEqual(await storage.listEventIds(), [EVENT_ID]);
  });

  it('listEventIds() of a root not yet created is empty', async () => {
    assert.deepEqual(await fresh().storage.listEventIds(), []);
  });

  for (const bad of ['../12345674', '12345675', '1234567', '12345674/..', '', '/etc']) {
    it(`eventDir(${JSON.stringify(bad)}) is refused with ValidationFailedError`, () => {
      assert.throws(() => fresh().storage.eventDir(bad), ValidationFailedError);
    });
  }

  for (const [streamId, file] of [
    ['../../etc', 'passwd.json'],
    ['12345682-spec-node-10002-lq0abc', 'index.m3u8'],
    [STREAM_ID, '../event-info.xml'],
    [STREAM_ID, 'index.m3u8/../../x.ts'],
    [STREAM_ID, 'event-info.xml'],
    [STREAM_ID, '.ts'],
    [STREAM_ID, 'a'.repeat(65) + '.ts'],
  ] as const) {
    it(`readFile(${JSON.stringify(streamId)}, ${JSON.stringify(file)}) is refused with ValidationFailedError`, async () => {
      await assert.rejects(fresh().storage.readFile(EVENT_ID, streamId, file), ValidationFailedError);
    });
  }

  it('readFile() of a file not stored is refused with NotFoundError', async () => {
    await assert.rejects(fresh().storage.readFile(EVENT_ID, STREAM_ID, 'index.m3u8'), NotFoundError);
  });

  it('copyStream() copies playlist, segments and gaps.json and skips other names', async () => {
    const { storage, root, src } = fresh();
    writeFileSync(join(src, 'seg00000.ts'), Buffer.alloc(188, 1));
    writeFileSync(join(src, 'seg00001.ts'), Buffer.alloc(376, 2));
    writeFileSync(join(src, 'index.m3u8'), playlist([2, 2]));
    writeFileSync(join(src, 'gaps.json'), '[]');
    writeFileSync(join(src, 'index.m3u8.tmp'), 'partial');
    writeFileSync(join(src, 'notes.txt'), 'x');
    const r = await storage.copyStream(EVENT_ID, STREAM_ID, src);
    assert.equal(r.files, 4);
    assert.equal(r.copied, 4);
    assert.equal(r.bytes, 188 + 376 + 2 + Buffer.byteLength(playlist([2, 2])));
    assert.deepEqual(readdirSync(join(root, EVENT_ID, 'streams', STREAM_ID)).sort(), ['gaps.json', 'index.m3u8', 'seg00000.ts', 'seg00001.ts']);
    assert.deepEqual(await storage.readFile(EVENT_ID, STREAM_ID, 'seg00001.ts'), Buffer.alloc(376, 2));
    assert.deepEqual(await storage.listStreams(EVENT_ID), [{ streamId: STREAM_ID, files: ['gaps.json', 'index.m3u8', 'seg00000.ts', 'seg00001.ts'] }]);
  });

  it('copyStream() never overwrites a stored segment', async () => {
    const { storage, src } = fresh();
    writeFileSync(join(src, 'seg00000.ts'), Buffer.alloc(188, 1));
    await storage.copyStream(EVENT_ID, STREAM_ID, src);
    writeFileSync(join(src, 'seg00000.ts'), Buffer.alloc(188, 9));
    const r = await storage.copyStream(EVENT_ID, STREAM_ID, src);
    assert.equal(r.copied, 0);
    assert.deepEqual(await storage.readFile(EVENT_ID, STREAM_ID, 'seg00000.ts'), Buffer.alloc(188, 1));
  });

  it('copyStream() replaces a stored playlist without #EXT-X-ENDLIST and then never again', async () => {
    const { storage, src } = fresh();
    writeFileSync(join(src, 'index.m3u8'), playlist([2], false));
    await storage.copyStream(EVENT_ID, STREAM_ID, src);
    writeFileSync(join(src, 'index.m3u8'), playlist([2, 2]));
    await storage.copyStream(EVENT_ID, STREAM_ID, src);
    assert.equal((await storage.readFile(EVENT_ID, STREAM_ID, 'index.m3u8')).toString(), playlist([2, 2]));
    writeFileSync(join(src, 'index.m3u8'), playlist([2, 2, 2]));
    const r = await storage.copyStream(EVENT_ID, STREAM_ID, src);
    assert.equal(r.copied, 0);
    assert.equal((await storage.readFile(EVENT_ID, STREAM_ID, 'index.m3u8')).toString(), playlist([2, 2]));
  });

  it('copyStream() skips a symlink in the source directory', async () => {
    const { storage, src } = fresh();
    const secret = join(src, '..', 'secret.json');
    writeFileSync(secret, '{"secret":1}');
    symlinkSync(secret, join(src, 'gaps.json'));
    const r = await storage.copyStream(EVENT_ID, STREAM_ID, src);
    assert.equal(r.files, 0);
  });

  it('copyStream() of a missing directory is refused with NotFoundError', async () => {
    const { storage, src } = fresh();
    await assert.rejects(storage.copyStream(EVENT_ID, STREAM_ID, join(src, 'nope')), NotFoundError);
  });

  it('copyStream() of a stream of another event is refused with ValidationFailedError', async () => {
    const { storage, src } = fresh();
    await assert.rejects(storage.copyStream('12345682', STREAM_ID, src), ValidationFailedError);
  });

  it('stageStream(): nothing is listed or readable until commit(), then every file at once, and no staging is left', async () => {
    const { storage, root } = fresh();
    const stage = await storage.stageStream(EVENT_ID, STREAM_ID);
    const seg = Buffer.alloc(188 * 3, 0x47);
    await stage.append('seg00000.ts', 0, seg.subarray(0, 188));
    await stage.append('seg00000.ts', 188, seg.subarray(188));
    await stage.append('index.m3u8', 0, Buffer.from(playlist([2])));
    assert.deepEqual(await storage.listStreams(EVENT_ID), []);
    await assert.rejects(storage.readFile(EVENT_ID, STREAM_ID, 'index.m3u8'), NotFoundError);
    assert.deepEqual(stage.files(), { 'seg00000.ts': 188 * 3, 'index.m3u8': playlist([2]).length });
    const r = await stage.commit({ 'seg00000.ts': 188 * 3, 'index.m3u8': playlist([2]).length });
    assert.deepEqual(r, { files: 2, bytes: 188 * 3 + playlist([2]).length, copied: 2 });
    assert.deepEqual(await storage.readFile(EVENT_ID, STREAM_ID, 'seg00000.ts'), seg);
    assert.deepEqual(await storage.listStreams(EVENT_ID), [{ streamId: STREAM_ID, files: ['index.m3u8', 'seg00000.ts'] }]);
    assert.deepEqual(readdirSync(join(root, STAGING_DIR)), []);
    await assert.rejects(stage.append('seg00001.ts', 0, seg), StateConflictError, 'a committed upload takes no more files');
  });

  it('StagedStream.commit() with a file missing or short is refused with StateConflictError and stores nothing', async () => {
    const { storage } = fresh();
    const stage = await storage.stageStream(EVENT_ID, STREAM_ID);
    await stage.append('seg00000.ts', 0, Buffer.alloc(188));
    await assert.rejects(stage.commit({ 'seg00000.ts': 188, 'index.m3u8': 100 }), StateConflictError);
    await assert.rejects(stage.commit({ 'seg00000.ts': 376 }), StateConflictError);
    await assert.rejects(stage.commit({}), StateConflictError, 'a file the sender did not list');
    await stage.abort();
    assert.deepEqual(await storage.listStreams(EVENT_ID), []);
    assert.equal(existsSync(stage.dir), false);
  });

  for (const [file, offset, why] of [
    ['../event-info.xml', 0, 'a traversing name'],
    ['event-info.xml', 0, 'a name outside the whitelist'],
    ['.ffmpeg.m3u8', 0, 'a hidden name'],
    ['seg00000.ts', 5, 'a chunk past the bytes received'],
    ['seg00000.ts', -1, 'a negative offset'],
    ['seg00000.ts', 0.5, 'a fractional offset'],
  ] as const) {
    it(`StagedStream.append() of ${why} is refused with ValidationFailedError`, async () => {
      const stage = await fresh().storage.stageStream(EVENT_ID, STREAM_ID);
      await assert.rejects(stage.append(file, offset, Buffer.alloc(10)), ValidationFailedError);
      assert.deepEqual(readdirSync(stage.dir), []);
    });
  }

  it('StagedStream.append() past MAX_STREAM_FILE_BYTES is refused with PayloadTooLargeError before writing', async () => {
    const stage = await fresh().storage.stageStream(EVENT_ID, STREAM_ID);
    await assert.rejects(stage.append('seg00000.ts', 0, Buffer.alloc(MAX_STREAM_FILE_BYTES + 1)), PayloadTooLargeError);
    assert.deepEqual(readdirSync(stage.dir), []);
  });

  it('stageStream() of a stream of another event is refused with ValidationFailedError', async () => {
    await assert.rejects(fresh().storage.stageStream('12345682', STREAM_ID), ValidationFailedError);
  });

  it('commitStaged() of a directory outside the staging area is refused with ValidationFailedError', async () => {
    const { storage, src } = fresh();
    await assert.rejects(storage.commitStaged(EVENT_ID, STREAM_ID, src), ValidationFailedError);
  });

  it('a second commit of a stored stream merges: new segments added, a stored segment and a finished playlist kept', async () => {
    const { storage } = fresh();
    const first = await storage.stageStream(EVENT_ID, STREAM_ID);
    await first.append('seg00000.ts', 0, Buffer.alloc(188, 1));
    await first.append('index.m3u8', 0, Buffer.from(playlist([2])));
    await first.commit();
    const second = await storage.stageStream(EVENT_ID, STREAM_ID);
    await second.append('seg00000.ts', 0, Buffer.alloc(188, 9));
    await second.append('seg00001.ts', 0, Buffer.alloc(188, 2));
    await second.append('index.m3u8', 0, Buffer.from(playlist([2, 2])));
    const r = await second.commit();
    assert.equal(r.copied, 1);
    assert.deepEqual(await storage.readFile(EVENT_ID, STREAM_ID, 'seg00000.ts'), Buffer.alloc(188, 1));
    assert.deepEqual(await storage.readFile(EVENT_ID, STREAM_ID, 'seg00001.ts'), Buffer.alloc(188, 2));
    assert.equal((await storage.readFile(EVENT_ID, STREAM_ID, 'index.m3u8')).toString(), playlist([2]));
    assert.equal(existsSync(second.dir), false);
  });

  it('sweepStaging() removes staging directories older than the limit and keeps fresh ones', async () => {
    const { storage } = fresh();
    const old = await storage.stageStream(EVENT_ID, STREAM_ID);
    const young = await storage.stageStream(EVENT_ID, STREAM_ID);
    const hourAgo = new Date(Date.now() - 3_600_000);
    utimesSync(old.dir, hourAgo, hourAgo);
    assert.equal(await storage.sweepStaging(60_000), 1);
    assert.equal(existsSync(old.dir), false);
    assert.equal(existsSync(young.dir), true);
    assert.equal(await fresh().storage.sweepStaging(0), 0, 'no staging directory yet');
  });

  it('remove() deletes the event directory and tolerates a missing one', async () => {
    const { storage, root } = fresh();
    await storage.writeEventInfo(EVENT_ID, 'x');
    await storage.remove(EVENT_ID);
    assert.equal(existsSync(join(root, EVENT_ID)), false);
    await storage.remove(EVENT_ID);
    assert.deepEqual(await storage.listEventIds(), []);
  });

  describe('replication and retention (issue 4)', () => {
    const xml = (title: string, updatedMs: number, stamp: number) => withVersion(`<?xml version="1.0" encoding="UTF-8"?>\n<event id="${EVENT_ID}"><title>${title}</title></event>\n`, { updatedMs, stamp, nodeId: 'n' });

    it('writeEventInfoIfNewer() writes a newer version and refuses an older or equal one', async () => {
      const { storage } = fresh();
      assert.equal(await storage.writeEventInfoIfNewer(EVENT_ID, xml('two', 2, 1)), true);
      assert.equal(await storage.writeEventInfoIfNewer(EVENT_ID, xml('one', 1, 9)), false);
      assert.equal(await storage.writeEventInfoIfNewer(EVENT_ID, xml('same', 2, 1)), false);
      assert.match((await storage.readEventInfo(EVENT_ID))!, /two/);
      assert.equal(await storage.writeEventInfoIfNewer(EVENT_ID, xml('three', 2, 2)), true);
      assert.match((await storage.readEventInfo(EVENT_ID))!, /three/);
    });

    it('writeEventInfoIfNewer() of many racing writes keeps the newest', async () => {
      const { storage } = fresh();
      const order = [5, 1, 9, 3, 7, 2, 8, 4, 6];
      await Promise.all(order.map((n) => storage.writeEventInfoIfNewer(EVENT_ID, xml(`v${n}`, 1, n))));
      assert.match((await storage.readEventInfo(EVENT_ID))!, /v9/);
    });

    it('a second upload replaces gaps.json while the playlist is unfinished, never once it is final', async () => {
      const { storage, src, root } = fresh();
      writeFileSync(join(src, 'index.m3u8'), playlist([2], false));
      writeFileSync(join(src, 'seg00000.ts'), 'a');
      writeFileSync(join(src, 'gaps.json'), '[]');
      await storage.copyStream(EVENT_ID, STREAM_ID, src);
      writeFileSync(join(src, 'gaps.json'), '[{"start":0,"end":1}]');
      writeFileSync(join(src, 'index.m3u8'), playlist([2], true));
      await storage.copyStream(EVENT_ID, STREAM_ID, src);
      const stored = join(root, EVENT_ID, 'streams', STREAM_ID);
      assert.equal(readFileSync(join(stored, 'gaps.json'), 'utf8'), '[{"start":0,"end":1}]');
      writeFileSync(join(src, 'gaps.json'), '[{"start":5,"end":6}]');
      await storage.copyStream(EVENT_ID, STREAM_ID, src);
      assert.equal(readFileSync(join(stored, 'gaps.json'), 'utf8'), '[{"start":0,"end":1}]');
    });

    it('a shorter unfinished playlist arriving late does not replace a longer one', async () => {
      const { storage, src, root } = fresh();
      writeFileSync(join(src, 'index.m3u8'), playlist([2, 2], false));
      await storage.copyStream(EVENT_ID, STREAM_ID, src);
      writeFileSync(join(src, 'index.m3u8'), playlist([2], false));
      await storage.copyStream(EVENT_ID, STREAM_ID, src);
      assert.equal(readFileSync(join(root, EVENT_ID, 'streams', STREAM_ID, 'index.m3u8'), 'utf8'), playlist([2, 2], false));
    });

    it('streamManifest() lists sizes and finality; removeStreams() drops the streams and keeps event-info.xml', async () => {
      const { storage, src } = fresh();
      await storage.writeEventInfo(EVENT_ID, 'x');
      writeFileSync(join(src, 'index.m3u8'), playlist([2], true));
      writeFileSync(join(src, 'seg00000.ts'), 'abc');
      await storage.copyStream(EVENT_ID, STREAM_ID, src);
      assert.deepEqual(await storage.streamManifest(EVENT_ID), { [STREAM_ID]: { files: { 'index.m3u8': Buffer.byteLength(playlist([2], true)), 'seg00000.ts': 3 }, final: true } });
      const part = await storage.readFileRange(EVENT_ID, STREAM_ID, 'seg00000.ts', 1, 10);
      assert.equal(part.data.toString(), 'bc');
      assert.equal(part.size, 3);
      assert.equal(await storage.removeStreams(EVENT_ID), true);
      assert.deepEqual(await storage.streamManifest(EVENT_ID), {});
      assert.equal(await storage.readEventInfo(EVENT_ID), 'x');
      assert.equal(await storage.removeStreams(EVENT_ID), false);
      await assert.rejects(storage.readFileRange(EVENT_ID, STREAM_ID, 'seg00000.ts', 0, 1), NotFoundError);
    });
  });
});
