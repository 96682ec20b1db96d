import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ContentStorage } from '../../runtime/storage.ts';
import { NotFoundError, ValidationFailedError } from '../../runtime/errors.ts';
import { EVENT_ID, STREAM_ID, playlist } from '../support/event-plane.ts';

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

  it('remove() deletes the event directory and tolerates a missing one', async () => {
    const { storage, root } = fresh();
    await storage.writeEventInfo(EVENT_ID, 'x');
    await storage.remove(EVENT_ID);
    assert.equal(existsSync(join(root, EVENT_ID)), false);
    await storage.remove(EVENT_ID);
    assert.deepEqual(await storage.listEventIds(), []);
  });
});
