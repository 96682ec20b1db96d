import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LiveFileCache, VerifiedCodes, asBuffer, parseFastLiveUrl, readLiveFile, serveLiveFile, validateLiveFileParams } from '../../runtime/live-files.ts';
import { signAuthCode } from '../../codecs/token.ts';
import { NotFoundError, ValidationFailedError } from '../../runtime/errors.ts';

const STREAM = '12345674-spec-node-10002-lq0abc';
const SEG = Buffer.from([0x47, 0x40, 0x11, 0x10, 0x00, 0x01]);

/** Forged or foreign names: none may ever be joined into a path. */
const FORGED: Array<{ streamId: unknown; file: unknown }> = [
  { streamId: STREAM, file: '../seg00000.ts' },
  { streamId: STREAM, file: '../../secret.ts' },
  { streamId: STREAM, file: '/etc/passwd' },
  { streamId: STREAM, file: 'seg00000.ts/../../secret.ts' },
  { streamId: STREAM, file: 'seg0000.ts' },
  { streamId: STREAM, file: 'gaps.json' },
  { streamId: STREAM, file: '.ffmpeg.m3u8' },
  { streamId: STREAM, file: 'index.m3u8\u0000' },
  { streamId: STREAM, file: ['seg00000.ts'] },
  { streamId: STREAM, file: undefined },
  { streamId: '..', file: 'seg00000.ts' },
  { streamId: `${STREAM}/..`, file: 'seg00000.ts' },
  { streamId: '12345674-spec..node-10002-lq0abc', file: 'seg00000.ts' },
  { streamId: '12345675-spec-node-10002-lq0abc', file: 'seg00000.ts' },
  { streamId: undefined, file: 'index.m3u8' },
];

function liveDir(): string {
  const dataDir = mkdtempSync(join(tmpdir(), 'jitcast-live-files-'));
  mkdirSync(join(dataDir, 'live', STREAM), { recursive: true });
  writeFileSync(join(dataDir, 'live', STREAM, 'seg00000.ts'), SEG);
  writeFileSync(join(dataDir, 'live', STREAM, 'index.m3u8'), '#EXTM3U\n');
  // Bait one level up: a traversal would find it.
  writeFileSync(join(dataDir, 'live', 'seg00000.ts'), 'OUTSIDE');
  return dataDir;
}

/** A live playlist listing seg00000.ts … seg<n-1>.ts. */
function listing(n: number): Buffer {
  const lines = ['#EXTM3U', '#EXT-X-TARGETDURATION:2'];
  for (let i = 0; i < n; i++) lines.push('#EXTINF:2.000000,', `seg${String(i).padStart(5, '0')}.ts`);
  return Buffer.from(lines.join('\n') + '\n');
}

/** A promise with its resolve/reject handles. */
function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: Error) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('live files', () => {
  it('validateLiveFileParams() accepts the playlist and numbered segments', () => {
    assert.deepEqual(validateLiveFileParams({ streamId: STREAM, file: 'index.m3u8' }), { streamId: STREAM, file: 'index.m3u8' });
    assert.deepEqual(validateLiveFileParams({ streamId: STREAM, file: 'seg12345.ts', extra: 1 }), { streamId: STREAM, file: 'seg12345.ts' });
  });

  for (const p of FORGED) {
    it(`validateLiveFileParams(${JSON.stringify(p)}) is refused with ValidationFailedError`, () => {
      assert.throws(() => validateLiveFileParams(p), ValidationFailedError);
    });
  }

  it('readLiveFile() answers the exact bytes of a file in <dataDir>/live/<streamId>/', async () => {
    const dataDir = liveDir();
    assert.deepEqual(await readLiveFile(dataDir, STREAM, 'seg00000.ts'), SEG);
  });

  it('readLiveFile() of a segment not written yet is refused with NotFoundError', async () => {
    await assert.rejects(readLiveFile(liveDir(), STREAM, 'seg00001.ts'), NotFoundError);
  });

  it('readLiveFile() of a symlinked directory entry that is not a file is refused with NotFoundError', async () => {
    const dataDir = liveDir();
    mkdirSync(join(dataDir, 'live', STREAM, 'seg00002.ts'));
    await assert.rejects(readLiveFile(dataDir, STREAM, 'seg00002.ts'), NotFoundError);
    symlinkSync(join(dataDir, 'live', STREAM, 'seg00002.ts'), join(dataDir, 'live', STREAM, 'seg00003.ts'));
    await assert.rejects(readLiveFile(dataDir, STREAM, 'seg00003.ts'), NotFoundError);
  });

  it('readLiveFile() refuses every forged name with ValidationFailedError before touching the disk', async () => {
    const dataDir = liveDir();
    for (const p of FORGED) {
      await assert.rejects(readLiveFile(dataDir, p.streamId as string, p.file as string), ValidationFailedError, JSON.stringify(p));
    }
  });

  it('serveLiveFile() answers a known stream and refuses an unknown one with NotFoundError without reading', async () => {
    const dataDir = liveDir();
    const asked: string[] = [];
    const known = (id: string) => {
      asked.push(id);
      return id === STREAM;
    };
    assert.deepEqual(await serveLiveFile(dataDir, 'enc-1', { streamId: STREAM, file: 'seg00000.ts' }, known), SEG);
    const other = '12345674-spec-node-10004-lq0abd';
    mkdirSync(join(dataDir, 'live', other));
    writeFileSync(join(dataDir, 'live', other, 'seg00000.ts'), SEG);
    await assert.rejects(serveLiveFile(dataDir, 'enc-1', { streamId: other, file: 'seg00000.ts' }, known), { name: 'NotFoundError', message: /no live stream .* on node enc-1/ });
    await assert.rejects(serveLiveFile(dataDir, 'enc-1', { streamId: STREAM, file: '../seg00000.ts' }, known), ValidationFailedError);
    assert.deepEqual(asked, [STREAM, other], 'a forged name is refused before the stream lookup');
  });

  it('asBuffer() restores a Buffer that crossed a JSON transporter and refuses anything else with TypeError', () => {
    assert.deepEqual(asBuffer(JSON.parse(JSON.stringify(SEG))), SEG);
    assert.deepEqual(asBuffer(new Uint8Array([1, 2])), Buffer.from([1, 2]));
    assert.throws(() => asBuffer('text'), TypeError);
    assert.throws(() => asBuffer(null), TypeError);
  });
});

describe('listener hot-path helpers', () => {
  it('parseFastLiveUrl() takes /s/<stream>/<file>?a=<code>[&l=<id>] exactly, and nothing with more, less or escapes', () => {
    assert.deepEqual(parseFastLiveUrl(`/s/${STREAM}/seg00001.ts?a=12.abc`), { streamId: STREAM, file: 'seg00001.ts', a: '12.abc' });
    assert.deepEqual(parseFastLiveUrl(`/s/${STREAM}/index.m3u8?a=12.abc&l=me`), { streamId: STREAM, file: 'index.m3u8', a: '12.abc', l: 'me' });
    for (const url of [
      `/s/${STREAM}/seg00001.ts`, `/s/${STREAM}/seg00001.ts?l=me&a=12.abc`, `/s/${STREAM}/seg00001.ts?a=1&l=2&x=3`, `/s/${STREAM}/seg1.ts?a=1`,
      `/s/${STREAM}/..%2fx.ts?a=1`, `/s/${STREAM}/index.m3u8?a=1%26l=2`, `/e/${STREAM}/seg00001.ts?a=1`, undefined,
    ]) {
      assert.equal(parseFastLiveUrl(url), undefined, String(url));
    }
  });

  it('VerifiedCodes.valid() verifies a code once and remembers it until its expiry; a wrong code or stream never passes', () => {
    let now = 1_000;
    const codes = new VerifiedCodes('spec-secret-0123456789abcdefghijklmnopqrstuvwxyz', () => now);
    const code = signAuthCode('spec-secret-0123456789abcdefghijklmnopqrstuvwxyz', '12345674', STREAM, 1_060);
    assert.equal(codes.valid(code, '12345674', STREAM), true);
    assert.equal(codes.valid(code, '12345674', '12345674-spec-node-10004-lq0abd'), false, 'another stream');
    assert.equal(codes.valid(code.slice(0, -2) + 'xx', '12345674', STREAM), false, 'a forged code');
    assert.equal(codes.valid(signAuthCode('another-secret-0123456789abcdefghijklmnop', '12345674', STREAM, 1_060), '12345674', STREAM), false);
    now = 1_061;
    assert.equal(codes.valid(code, '12345674', STREAM), false, 'expired, even though it verified before');
  });
});

describe('LiveFileCache', () => {
  it('get() fetches a listed segment once, then answers it from memory', async () => {
    const cache = new LiveFileCache();
    await cache.get(STREAM, 'index.m3u8', async () => listing(1));
    let fetches = 0;
    const fetch = async () => {
      fetches++;
      return SEG;
    };
    for (let i = 0; i < 20; i++) assert.deepEqual(await cache.get(STREAM, 'seg00000.ts', fetch), SEG);
    assert.equal(fetches, 1);
    assert.deepEqual(cache.stats, { hits: 19, fetches: 2, joined: 0 });
    assert.equal(cache.bytes, SEG.length + listing(1).length);
  });

  it('get() serves but never keeps a segment no fetched playlist lists yet (ffmpeg may still be writing it)', async () => {
    const cache = new LiveFileCache();
    let fetches = 0;
    const fetch = async () => (fetches++, SEG);
    await cache.get(STREAM, 'seg00000.ts', fetch);
    await cache.get(STREAM, 'seg00000.ts', fetch);
    assert.equal(fetches, 2, 'no playlist fetched yet: nothing is known complete');
    await cache.get(STREAM, 'index.m3u8', async () => listing(2));
    await cache.get(STREAM, 'seg00002.ts', fetch);
    await cache.get(STREAM, 'seg00002.ts', fetch);
    assert.equal(fetches, 4, 'seg00002 is past the listed seg00001');
    await cache.get(STREAM, 'seg00001.ts', fetch);
    await cache.get(STREAM, 'seg00001.ts', fetch);
    assert.equal(fetches, 5, 'seg00001 is listed: kept');
    // Another stream's playlist says nothing about this one.
    await cache.get('12345674-spec-node-10004-lq0abd', 'index.m3u8', async () => listing(50));
    await cache.get(STREAM, 'seg00003.ts', fetch);
    await cache.get(STREAM, 'seg00003.ts', fetch);
    assert.equal(fetches, 7);
  });

  it('get() shares one in-flight fetch between concurrent requests for the same file', async () => {
    const cache = new LiveFileCache();
    await cache.get(STREAM, 'index.m3u8', async () => listing(10));
    const gate = deferred<Buffer>();
    let fetches = 0;
    const fetch = () => {
      fetches++;
      return gate.promise;
    };
    const all = Promise.all(Array.from({ length: 50 }, () => cache.get(STREAM, 'seg00007.ts', fetch)));
    // A different file is a different fetch.
    const other = cache.get(STREAM, 'seg00008.ts', async () => Buffer.from('other'));
    gate.resolve(SEG);
    for (const b of await all) assert.deepEqual(b, SEG);
    assert.deepEqual(await other, Buffer.from('other'));
    assert.equal(fetches, 1);
    assert.equal(cache.stats.joined, 49);
  });

  it('get() keeps a playlist for playlistTtlMs only', async () => {
    let now = 1000;
    const cache = new LiveFileCache({ playlistTtlMs: 500, now: () => now });
    let version = 0;
    const fetch = async () => Buffer.from(`#EXTM3U v${++version}\n`);
    assert.equal((await cache.get(STREAM, 'index.m3u8', fetch)).toString(), '#EXTM3U v1\n');
    now += 499;
    assert.equal((await cache.get(STREAM, 'index.m3u8', fetch)).toString(), '#EXTM3U v1\n');
    now += 1;
    assert.equal((await cache.get(STREAM, 'index.m3u8', fetch)).toString(), '#EXTM3U v2\n');
    // Listed segments do not expire.
    const other = '12345674-spec-node-10004-lq0abd';
    await cache.get(other, 'index.m3u8', async () => listing(1));
    await cache.get(other, 'seg00000.ts', async () => SEG);
    now += 3_600_000;
    await cache.get(other, 'seg00000.ts', () => Promise.reject(new Error('refetched an immutable segment')));
  });

  it('peek() answers what get() would from memory, and nothing for a file not held or a playlist past its TTL', async () => {
    let now = 1000;
    const cache = new LiveFileCache({ playlistTtlMs: 500, now: () => now });
    assert.equal(cache.peek(STREAM, 'index.m3u8'), undefined);
    await cache.get(STREAM, 'index.m3u8', async () => listing(1));
    await cache.get(STREAM, 'seg00000.ts', async () => SEG);
    assert.deepEqual(cache.peek(STREAM, 'seg00000.ts'), SEG);
    assert.deepEqual(cache.peek(STREAM, 'index.m3u8'), listing(1));
    assert.equal(cache.peek(STREAM, 'seg00001.ts'), undefined);
    assert.equal(cache.stats.hits, 2);
    now += 500;
    assert.equal(cache.peek(STREAM, 'index.m3u8'), undefined, 'the playlist expired');
    assert.deepEqual(cache.peek(STREAM, 'seg00000.ts'), SEG, 'a listed segment does not');
  });

  it('get() with playlistTtlMs 0 never reuses a playlist', async () => {
    const cache = new LiveFileCache({ playlistTtlMs: 0 });
    let fetches = 0;
    for (let i = 0; i < 3; i++) await cache.get(STREAM, 'index.m3u8', async () => Buffer.from(String(++fetches)));
    assert.equal(fetches, 3);
  });

  it('get() does not cache a failure: waiters of the failed fetch all see it, the next request fetches again', async () => {
    const cache = new LiveFileCache();
    await cache.get(STREAM, 'index.m3u8', async () => listing(5));
    const gate = deferred<Buffer>();
    const waiting = [cache.get(STREAM, 'seg00001.ts', () => gate.promise), cache.get(STREAM, 'seg00001.ts', () => gate.promise)];
    gate.reject(new NotFoundError('not yet'));
    for (const w of waiting) await assert.rejects(w, NotFoundError);
    assert.deepEqual(await cache.get(STREAM, 'seg00001.ts', async () => SEG), SEG);
    // A fetch that throws synchronously leaves nothing stuck either.
    await assert.rejects(
      cache.get(STREAM, 'seg00002.ts', () => {
        throw new Error('boom');
      }),
      /boom/,
    );
    assert.deepEqual(await cache.get(STREAM, 'seg00002.ts', async () => SEG), SEG);
  });

  it('get() keeps at most maxBytes, pushing out the least recently used segments', async () => {
    const cache = new LiveFileCache({ maxBytes: 1000, playlistTtlMs: 0 });
    await cache.get(STREAM, 'index.m3u8', async () => listing(10));
    const seg = (i: number) => `seg${String(i).padStart(5, '0')}.ts`;
    for (let i = 0; i < 10; i++) await cache.get(STREAM, seg(i), async () => Buffer.alloc(300, i));
    assert.ok(cache.bytes <= 1000, `bytes ${cache.bytes}`);
    let refetched = 0;
    await cache.get(STREAM, seg(9), async () => (refetched++, Buffer.alloc(300)));
    await cache.get(STREAM, seg(0), async () => (refetched++, Buffer.alloc(300)));
    assert.equal(refetched, 1, 'the newest stayed, the oldest was pushed out');
  });
});
