import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  addQueryToSegments,
  archivePlaylist,
  HlsParseError,
  liveWindow,
  masterPlaylist,
  onWallClockSequence,
  parseMediaPlaylist,
  pathwayOfVariant,
  serializeMediaPlaylist,
  sliceSegments,
  steeringManifest,
  type MediaPlaylist,
} from '../../codecs/hls.ts';

/** A playlist exactly as ffmpeg's HLS muxer writes it with `-hls_time 2 -hls_playlist_type event`, after stop. */
const FFMPEG_PLAYLIST = [
  '#EXTM3U',
  '#EXT-X-VERSION:3',
  '#EXT-X-TARGETDURATION:2',
  '#EXT-X-MEDIA-SEQUENCE:0',
  '#EXT-X-PLAYLIST-TYPE:EVENT',
  '#EXTINF:2.005333,',
  'seg00000.ts',
  '#EXTINF:1.984000,',
  'seg00001.ts',
  '#EXTINF:2.005333,',
  'seg00002.ts',
  '#EXTINF:0.512000,',
  'seg00003.ts',
  '#EXT-X-ENDLIST',
  '',
].join('\n');

const FFMPEG_PARSED: MediaPlaylist = {
  version: 3,
  targetDuration: 2,
  mediaSequence: 0,
  playlistType: 'EVENT',
  ended: true,
  segments: [
    { uri: 'seg00000.ts', duration: 2.005333 },
    { uri: 'seg00001.ts', duration: 1.984 },
    { uri: 'seg00002.ts', duration: 2.005333 },
    { uri: 'seg00003.ts', duration: 0.512 },
  ],
};

function parseFails(text: string, code: string): void {
  assert.throws(() => parseMediaPlaylist(text), (e: unknown) => e instanceof HlsParseError && e.code === code, code);
}

/** Four 2-second segments a.ts … d.ts. */
const EVEN: MediaPlaylist = {
  version: 3,
  targetDuration: 2,
  mediaSequence: 0,
  ended: false,
  segments: ['a', 'b', 'c', 'd'].map((n) => ({ uri: `${n}.ts`, duration: 2 })),
};

describe('hls', () => {
  it("parseMediaPlaylist() reads ffmpeg's EVENT playlist into version, target, sequence, type, segments and ENDLIST", () => {
    assert.deepEqual(parseMediaPlaylist(FFMPEG_PLAYLIST), FFMPEG_PARSED);
  });

  it("serializeMediaPlaylist() writes the parsed ffmpeg playlist back byte for byte", () => {
    assert.equal(serializeMediaPlaylist(FFMPEG_PARSED), FFMPEG_PLAYLIST);
  });

  it('parseMediaPlaylist() reads a live playlist without ENDLIST as ended: false, with CRLF line ends', () => {
    const live = FFMPEG_PLAYLIST.replace('#EXT-X-ENDLIST\n', '').replace(/\n/g, '\r\n');
    assert.deepEqual(parseMediaPlaylist(live), { ...FFMPEG_PARSED, ended: false });
  });

  it('parseMediaPlaylist() defaults version to 1 and media sequence to 0, and skips unknown tags, comments and titles', () => {
    const text = '#EXTM3U\n#EXT-X-TARGETDURATION:10\n# a comment\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXTINF:9.5,Title here\nhttp://x/1.ts\n';
    assert.deepEqual(parseMediaPlaylist(text), { version: 1, targetDuration: 10, mediaSequence: 0, ended: false, segments: [{ uri: 'http://x/1.ts', duration: 9.5 }] });
  });

  it('parseMediaPlaylist() marks the segment after #EXT-X-DISCONTINUITY and keeps media sequence 42', () => {
    const text = '#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:42\n#EXTINF:2,\na.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:2,\nb.ts\n';
    const p = parseMediaPlaylist(text);
    assert.equal(p.mediaSequence, 42);
    assert.deepEqual(p.segments, [{ uri: 'a.ts', duration: 2 }, { uri: 'b.ts', duration: 2, discontinuity: true }]);
  });

  it('serializeMediaPlaylist() → parseMediaPlaylist() round-trips discontinuities, VOD type and odd durations', () => {
    const p: MediaPlaylist = {
      version: 3,
      targetDuration: 3,
      mediaSequence: 7,
      playlistType: 'VOD',
      ended: true,
      segments: [{ uri: 'a.ts?c=1', duration: 2.1234567 }, { uri: 'b.ts', duration: 0, discontinuity: true }, { uri: 'c.ts', duration: 3 }],
    };
    assert.deepEqual(parseMediaPlaylist(serializeMediaPlaylist(p)), p);
  });

  it('parseMediaPlaylist() throws HlsParseError HLS_NO_HEADER without #EXTM3U first', () => {
    parseFails('', 'HLS_NO_HEADER');
    parseFails('#EXT-X-VERSION:3\n#EXTM3U\n', 'HLS_NO_HEADER');
    parseFails('seg.ts\n', 'HLS_NO_HEADER');
  });

  it('parseMediaPlaylist() throws HLS_MISSING_TARGET_DURATION when the required tag is absent', () => {
    parseFails('#EXTM3U\n#EXTINF:2,\na.ts\n', 'HLS_MISSING_TARGET_DURATION');
  });

  it('parseMediaPlaylist() throws HLS_ORPHAN_URI for a URI line without #EXTINF', () => {
    parseFails('#EXTM3U\n#EXT-X-TARGETDURATION:2\na.ts\n', 'HLS_ORPHAN_URI');
    parseFails('#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\na.ts\nb.ts\n', 'HLS_ORPHAN_URI');
  });

  it('parseMediaPlaylist() throws HLS_MISSING_URI for #EXTINF without a URI', () => {
    parseFails('#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n', 'HLS_MISSING_URI');
    parseFails('#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n#EXTINF:2,\na.ts\n', 'HLS_MISSING_URI');
  });

  it('parseMediaPlaylist() throws HLS_BAD_TAG for bad numbers, types and segments after ENDLIST', () => {
    parseFails('#EXTM3U\n#EXT-X-TARGETDURATION:two\n', 'HLS_BAD_TAG');
    parseFails('#EXTM3U\n#EXT-X-TARGETDURATION:-2\n', 'HLS_BAD_TAG');
    parseFails('#EXTM3U\n#EXT-X-VERSION:3.0\n#EXT-X-TARGETDURATION:2\n', 'HLS_BAD_TAG');
    parseFails('#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:\n', 'HLS_BAD_TAG');
    parseFails('#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:LIVE\n', 'HLS_BAD_TAG');
    parseFails('#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:abc,\na.ts\n', 'HLS_BAD_TAG');
    parseFails('#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:-1,\na.ts\n', 'HLS_BAD_TAG');
    parseFails('#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-ENDLIST\n#EXTINF:2,\na.ts\n', 'HLS_BAD_TAG');
    parseFails('#EXTM3U\n#EXTM3U\n#EXT-X-TARGETDURATION:2\n', 'HLS_BAD_TAG');
  });

  it('parseMediaPlaylist() throws HLS_NOT_MEDIA for a master playlist', () => {
    parseFails(masterPlaylist([{ uri: 'a/index.m3u8' }]), 'HLS_NOT_MEDIA');
  });

  it('serializeMediaPlaylist() throws RangeError for a segment URI holding a line break', () => {
    assert.throws(() => serializeMediaPlaylist({ ...EVEN, segments: [{ uri: 'a.ts\n#EXT-X-ENDLIST', duration: 2 }] }), RangeError);
    assert.throws(() => serializeMediaPlaylist({ ...EVEN, segments: [{ uri: '', duration: 2 }] }), RangeError);
    assert.throws(() => serializeMediaPlaylist({ ...EVEN, segments: [{ uri: 'a.ts', duration: Number.NaN }] }), RangeError);
  });

  it('masterPlaylist() writes one identical #EXT-X-STREAM-INF per variant with the default attributes', () => {
    assert.equal(
      masterPlaylist([{ uri: 'https://n1/s/a/index.m3u8?ac=1.x' }, { uri: 'https://n2/s/b/index.m3u8?ac=2.y' }]),
      [
        '#EXTM3U',
        '#EXT-X-STREAM-INF:BANDWIDTH=64000,CODECS="mp4a.40.2"',
        'https://n1/s/a/index.m3u8?ac=1.x',
        '#EXT-X-STREAM-INF:BANDWIDTH=64000,CODECS="mp4a.40.2"',
        'https://n2/s/b/index.m3u8?ac=2.y',
        '',
      ].join('\n'),
    );
  });

  it('masterPlaylist() uses the given bandwidth and codecs on every variant alike', () => {
    const lines = masterPlaylist([{ uri: 'a.m3u8' }, { uri: 'b.m3u8' }, { uri: 'c.m3u8' }], { bandwidth: 96000, codecs: 'opus' }).split('\n');
    const infs = lines.filter((l) => l.startsWith('#EXT-X-STREAM-INF'));
    assert.equal(infs.length, 3);
    for (const l of infs) assert.equal(l, '#EXT-X-STREAM-INF:BANDWIDTH=96000,CODECS="opus"');
  });

  it('masterPlaylist() with no variants is just #EXTM3U', () => {
    assert.equal(masterPlaylist([]), '#EXTM3U\n');
  });

  it('masterPlaylist() throws RangeError for a quote in codecs, a bad bandwidth or a URI with a line break', () => {
    assert.throws(() => masterPlaylist([{ uri: 'a' }], { codecs: 'x",y' }), RangeError);
    assert.throws(() => masterPlaylist([{ uri: 'a' }], { bandwidth: 0 }), RangeError);
    assert.throws(() => masterPlaylist([{ uri: 'a\r\nb' }]), RangeError);
  });

  it("addQueryToSegments(p, 'ac=1.x') appends with '?' or '&' and leaves the input untouched", () => {
    const p: MediaPlaylist = { ...EVEN, segments: [{ uri: 'a.ts', duration: 2 }, { uri: 'b.ts?v=2', duration: 2, discontinuity: true }] };
    const q = addQueryToSegments(p, 'ac=1.x');
    assert.deepEqual(q.segments, [{ uri: 'a.ts?ac=1.x', duration: 2 }, { uri: 'b.ts?v=2&ac=1.x', duration: 2, discontinuity: true }]);
    assert.equal(p.segments[0].uri, 'a.ts');
    assert.equal(q.targetDuration, 2);
  });

  it('addQueryToSegments() throws RangeError for a query holding a line break', () => {
    assert.throws(() => addQueryToSegments(EVEN, 'a=1\n#EXT-X-ENDLIST'), RangeError);
  });

  it('sliceSegments(p, 0, 8) returns every segment and (p, 2, 4) exactly the second', () => {
    assert.deepEqual(sliceSegments(EVEN, 0, 8).map((s) => s.uri), ['a.ts', 'b.ts', 'c.ts', 'd.ts']);
    assert.deepEqual(sliceSegments(EVEN, 2, 4).map((s) => s.uri), ['b.ts']);
  });

  it('sliceSegments() includes segments that overlap only partly and excludes ones touching the ends', () => {
    assert.deepEqual(sliceSegments(EVEN, 1.5, 4.01).map((s) => s.uri), ['a.ts', 'b.ts', 'c.ts']);
    assert.deepEqual(sliceSegments(EVEN, 3.999, 4).map((s) => s.uri), ['b.ts']);
    assert.deepEqual(sliceSegments(EVEN, 4, 4.001).map((s) => s.uri), ['c.ts']);
  });

  it('sliceSegments() returns nothing for an empty range or one past the end', () => {
    assert.deepEqual(sliceSegments(EVEN, 3, 3), []);
    assert.deepEqual(sliceSegments(EVEN, 8, 20), []);
    assert.deepEqual(sliceSegments(EVEN, 5, 1), []);
  });

  it('sliceSegments() uses cumulative ffmpeg durations', () => {
    // Cumulative ends: 2.005333, 3.989333, 5.994666, 6.506666
    assert.deepEqual(sliceSegments(FFMPEG_PARSED, 2, 4).map((s) => s.uri), ['seg00000.ts', 'seg00001.ts', 'seg00002.ts']);
    assert.deepEqual(sliceSegments(FFMPEG_PARSED, 2.1, 3.9).map((s) => s.uri), ['seg00001.ts']);
    assert.deepEqual(sliceSegments(FFMPEG_PARSED, 6, 100).map((s) => s.uri), ['seg00003.ts']);
  });

  it('archivePlaylist() writes a VOD playlist with a discontinuity before each later part and TARGETDURATION = ceil(max)', () => {
    const text = archivePlaylist([
      { segments: [{ uri: 's1/seg00000.ts', duration: 2.005333 }, { uri: 's1/seg00001.ts', duration: 1.984 }] },
      { segments: [] },
      { segments: [{ uri: 's2/seg00004.ts', duration: 2 }] },
      { segments: [{ uri: 's3/seg00000.ts', duration: 0.5 }, { uri: 's3/seg00001.ts', duration: 1 }] },
    ]);
    assert.equal(
      text,
      [
        '#EXTM3U',
        '#EXT-X-VERSION:3',
        '#EXT-X-TARGETDURATION:3',
        '#EXT-X-MEDIA-SEQUENCE:0',
        '#EXT-X-PLAYLIST-TYPE:VOD',
        '#EXTINF:2.005333,',
        's1/seg00000.ts',
        '#EXTINF:1.984000,',
        's1/seg00001.ts',
        '#EXT-X-DISCONTINUITY',
        '#EXTINF:2.000000,',
        's2/seg00004.ts',
        '#EXT-X-DISCONTINUITY',
        '#EXTINF:0.500000,',
        's3/seg00000.ts',
        '#EXTINF:1.000000,',
        's3/seg00001.ts',
        '#EXT-X-ENDLIST',
        '',
      ].join('\n'),
    );
  });

  it('archivePlaylist() output parses back with discontinuity flags on the first segment of parts 2 and 3 only', () => {
    const p = parseMediaPlaylist(archivePlaylist([
      { segments: [{ uri: 'a.ts', duration: 2, discontinuity: true }] },
      { segments: [{ uri: 'b.ts', duration: 2 }, { uri: 'c.ts', duration: 2 }] },
      { segments: [{ uri: 'd.ts', duration: 2 }] },
    ]));
    assert.equal(p.playlistType, 'VOD');
    assert.equal(p.ended, true);
    assert.equal(p.targetDuration, 2);
    assert.deepEqual(p.segments.map((s) => s.discontinuity === true), [false, true, false, true]);
  });

  it('archivePlaylist([]) is an empty ended VOD playlist', () => {
    assert.deepEqual(parseMediaPlaylist(archivePlaylist([])), { version: 3, targetDuration: 1, mediaSequence: 0, playlistType: 'VOD', ended: true, segments: [] });
  });
  describe('redundant live streams (issue 4: streams started apart)', () => {
    const PDT = Date.parse('2026-12-03T08:00:00.000Z');
    const live: MediaPlaylist = {
      version: 3,
      targetDuration: 2,
      mediaSequence: 0,
      playlistType: 'EVENT',
      ended: false,
      segments: Array.from({ length: 10 }, (_, i) => ({ uri: `seg${String(i).padStart(5, '0')}.ts`, duration: 2, programDateTime: PDT + i * 2000 })),
    };

    it('EXT-X-PROGRAM-DATE-TIME (§4.3.2.6) is written before its segment in ISO 8601 with ms and Z, and parsed back', () => {
      const text = serializeMediaPlaylist(live);
      assert.match(text, /#EXT-X-PROGRAM-DATE-TIME:2026-12-03T08:00:02\.000Z\n#EXTINF:2\.000000,\nseg00001\.ts\n/);
      assert.deepEqual(parseMediaPlaylist(text), live);
    });

    it('parseMediaPlaylist() reads a PROGRAM-DATE-TIME with an offset and applies it to the next segment only', () => {
      const p = parseMediaPlaylist('#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PROGRAM-DATE-TIME:2026-12-03T09:00:00.500+01:00\n#EXTINF:2,\na.ts\n#EXTINF:2,\nb.ts\n');
      assert.deepEqual(p.segments, [{ uri: 'a.ts', duration: 2, programDateTime: PDT + 500 }, { uri: 'b.ts', duration: 2 }]);
    });

    for (const bad of ['yesterday', '2026-12-03', '2026-12-03T08:00:00', '2026-13-45T99:00:00Z']) {
      it(`parseMediaPlaylist() refuses PROGRAM-DATE-TIME ${JSON.stringify(bad)} with HLS_BAD_TAG`, () => {
        parseFails(`#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PROGRAM-DATE-TIME:${bad}\n#EXTINF:2,\na.ts\n`, 'HLS_BAD_TAG');
      });
    }

    it('EXT-X-DISCONTINUITY-SEQUENCE (§4.3.3.3) round-trips; a negative or fractional one is refused on writing', () => {
      const p = { ...live, discontinuitySequence: 123456 };
      const text = serializeMediaPlaylist(p);
      assert.match(text, /#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-DISCONTINUITY-SEQUENCE:123456\n/);
      assert.deepEqual(parseMediaPlaylist(text), p);
      assert.throws(() => serializeMediaPlaylist({ ...live, discontinuitySequence: -1 }), RangeError);
      assert.throws(() => serializeMediaPlaylist({ ...live, discontinuitySequence: 1.5 }), RangeError);
    });

    it('liveWindow() keeps the last N segments, advances the media sequence past the dropped ones and drops PLAYLIST-TYPE', () => {
      const w = liveWindow(live, 4);
      assert.deepEqual(w.segments, live.segments.slice(6));
      assert.equal(w.mediaSequence, 6);
      assert.equal(w.playlistType, undefined);
      assert.equal(w.discontinuitySequence, undefined);
      assert.deepEqual(liveWindow(live, 20).segments, live.segments);
      assert.equal(liveWindow(live, 20).mediaSequence, 0);
      assert.throws(() => liveWindow(live, 0), RangeError);
    });

    it('liveWindow() counts the DISCONTINUITY tags of dropped segments into the discontinuity sequence (§6.2.2), not the first kept one', () => {
      const segments = live.segments.map((s, i) => (i === 2 || i === 6 ? { ...s, discontinuity: true } : s));
      const w = liveWindow({ ...live, segments, discontinuitySequence: 5 }, 4);
      // Segment 6 is kept with its own tag: only segment 2's tag was removed.
      assert.equal(w.discontinuitySequence, 6);
      assert.equal(w.segments[0]!.discontinuity, true);
      assert.equal(liveWindow({ ...live, segments }, 3).discontinuitySequence, 2);
    });

    it('onWallClockSequence() numbers two streams started 7.3 s apart alike for the same moment (within one)', () => {
      const started = (at: number): MediaPlaylist => ({ ...live, segments: live.segments.map((seg, i) => ({ ...seg, programDateTime: at + i * 2000 })) });
      const a = onWallClockSequence(started(PDT), 2);
      const b = onWallClockSequence(started(PDT + 7300), 2);
      assert.equal(a.mediaSequence, Math.round(PDT / 2000));
      // b's first segment is a's fourth (and a third): numbers agree within one segment.
      assert.ok(Math.abs(b.mediaSequence - (a.mediaSequence + 3.65)) <= 0.5, `${b.mediaSequence - a.mediaSequence}`);
      assert.equal(onWallClockSequence({ ...live, segments: [{ uri: 'x.ts', duration: 2 }] }, 2).mediaSequence, 0, 'no date, no change');
      assert.equal(liveWindow(a, 4).mediaSequence, a.mediaSequence + 6);
    });

    it('masterPlaylist() with a steering URI: EXT-X-CONTENT-STEERING on Pathway "." and the same STABLE-VARIANT-ID on every variant', () => {
      const text = masterPlaylist([{ uri: '/s/a/index.m3u8' }, { uri: '/s/b/index.m3u8' }], { steeringUri: 'steering.json?s=a,b' });
      const lines = text.trim().split('\n');
      assert.equal(lines[1], '#EXT-X-CONTENT-STEERING:SERVER-URI="steering.json?s=a,b",PATHWAY-ID="."');
      const inf = lines.filter((l) => l.startsWith('#EXT-X-STREAM-INF'));
      assert.equal(inf.length, 2);
      assert.equal(inf[0], inf[1]);
      assert.match(inf[0]!, /,STABLE-VARIANT-ID="live"$/);
      assert.throws(() => masterPlaylist([{ uri: 'x' }], { steeringUri: 'a"b' }), RangeError);
    });

    it('steeringManifest(): listed streams keep the Pathways hls.js gave them, the player\'s own first', () => {
      assert.deepEqual([0, 1, 2].map(pathwayOfVariant), ['.', '..', '...']);
      const m = steeringManifest({ listed: ['a', 'b'], alive: [{ streamId: 'a', uri: '/s/a' }, { streamId: 'b', uri: '/s/b' }], current: '..', ttlS: 4 });
      assert.deepEqual(m, { VERSION: 1, TTL: 4, 'PATHWAY-PRIORITY': ['..', '.'] });
    });

    it('steeringManifest(): a stream started since the master was loaded is a clone of Pathway "." with its own playlist URI', () => {
      const m = steeringManifest({ listed: ['a'], alive: [{ streamId: 'a', uri: '/s/a?x=1' }, { streamId: 'c', uri: '/s/c?x=2' }], current: '.', ttlS: 4, reloadUri: 'r' });
      assert.deepEqual(m['PATHWAY-PRIORITY'], ['.', 'c']);
      assert.deepEqual(m['PATHWAY-CLONES'], [{ 'BASE-ID': '.', ID: 'c', 'URI-REPLACEMENT': { 'PER-VARIANT-URIS': { live: '/s/c?x=2' } } }]);
      assert.equal(m['RELOAD-URI'], 'r');
    });

    it('steeringManifest(): a dead stream leaves the priority, so its player moves on; with nothing alive the player stays', () => {
      const m = steeringManifest({ listed: ['a', 'b'], alive: [{ streamId: 'b', uri: '/s/b' }], current: '.', ttlS: 4 });
      assert.deepEqual(m['PATHWAY-PRIORITY'], ['..']);
      assert.deepEqual(steeringManifest({ listed: ['a'], alive: [], current: '.', ttlS: 4 })['PATHWAY-PRIORITY'], ['.']);
    });
  });
});
