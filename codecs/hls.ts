/**
 * HLS media and master playlists, RFC 8216. Only the subset jitcast writes and ffmpeg's HLS muxer
 * produces is modelled; other tags in a media playlist are skipped (§6.3.1: clients ignore unknown tags).
 */
import { CodecError } from './errors.ts';

/** One media segment (§4.3.2.1 EXTINF + URI line, §4.3.2.3 DISCONTINUITY). */
export interface HlsSegment {
  uri: string;
  duration: number;
  discontinuity?: boolean;
}

/** A media playlist (§4.3.3). */
export interface MediaPlaylist {
  version: number;
  targetDuration: number;
  mediaSequence: number;
  segments: HlsSegment[];
  ended: boolean;
  playlistType?: 'EVENT' | 'VOD';
}

/** A playlist that cannot be read. */
export class HlsParseError extends CodecError {}

const UNSIGNED_RE = /^\d{1,15}$/;
const DURATION_RE = /^(?:\d+(?:\.\d*)?|\.\d+)$/;

function attrValue(line: string, tag: string): string {
  return line.slice(tag.length + 1);
}

function parseUnsigned(value: string, tag: string, lineNo: number): number {
  if (!UNSIGNED_RE.test(value)) throw new HlsParseError(`${tag} needs a decimal integer (line ${lineNo})`, 'HLS_BAD_TAG');
  return Number(value);
}

/** Parses a media playlist; throws HlsParseError for a master playlist or anything malformed. */
export function parseMediaPlaylist(text: string): MediaPlaylist {
  if (typeof text !== 'string') throw new HlsParseError('playlist is not text', 'HLS_NO_HEADER');
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  // §4.3.1.1: the first line MUST be EXTM3U.
  if (lines[0]?.trimEnd() !== '#EXTM3U') throw new HlsParseError('playlist does not start with #EXTM3U', 'HLS_NO_HEADER');
  let version = 1; // §4.3.1.2: no EXT-X-VERSION means version 1
  let targetDuration: number | undefined;
  let mediaSequence = 0; // §4.3.3.2: absent means 0
  let playlistType: 'EVENT' | 'VOD' | undefined;
  let ended = false;
  const segments: HlsSegment[] = [];
  let pending: { duration: number; discontinuity: boolean } | undefined;
  let discontinuity = false;

  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!.trim();
    const lineNo = i + 1;
    if (line === '') continue;
    if (!line.startsWith('#')) {
      if (pending === undefined) throw new HlsParseError(`URI without a preceding #EXTINF (line ${lineNo})`, 'HLS_ORPHAN_URI');
      if (ended) throw new HlsParseError(`segment after #EXT-X-ENDLIST (line ${lineNo})`, 'HLS_BAD_TAG');
      const seg: HlsSegment = { uri: line, duration: pending.duration };
      if (pending.discontinuity) seg.discontinuity = true;
      segments.push(seg);
      pending = undefined;
      continue;
    }
    if (!line.startsWith('#EXT')) continue; // a comment (§4.1)
    const colon = line.indexOf(':');
    const tag = colon === -1 ? line : line.slice(0, colon);
    switch (tag) {
      case '#EXTM3U':
        throw new HlsParseError(`#EXTM3U repeated (line ${lineNo})`, 'HLS_BAD_TAG');
      case '#EXT-X-VERSION':
        version = parseUnsigned(attrValue(line, tag), tag, lineNo);
        break;
      case '#EXT-X-TARGETDURATION':
        targetDuration = parseUnsigned(attrValue(line, tag), tag, lineNo);
        break;
      case '#EXT-X-MEDIA-SEQUENCE':
        mediaSequence = parseUnsigned(attrValue(line, tag), tag, lineNo);
        break;
      case '#EXT-X-PLAYLIST-TYPE': {
        const v = attrValue(line, tag);
        if (v !== 'EVENT' && v !== 'VOD') throw new HlsParseError(`#EXT-X-PLAYLIST-TYPE must be EVENT or VOD (line ${lineNo})`, 'HLS_BAD_TAG');
        playlistType = v;
        break;
      }
      case '#EXTINF': {
        if (pending !== undefined) throw new HlsParseError(`#EXTINF without a URI (line ${lineNo})`, 'HLS_MISSING_URI');
        // §4.3.2.1: #EXTINF:<duration>,[<title>]
        const body = attrValue(line, tag);
        const comma = body.indexOf(',');
        const d = comma === -1 ? body : body.slice(0, comma);
        if (!DURATION_RE.test(d)) throw new HlsParseError(`#EXTINF has a bad duration (line ${lineNo})`, 'HLS_BAD_TAG');
        pending = { duration: Number(d), discontinuity };
        discontinuity = false;
        break;
      }
      case '#EXT-X-DISCONTINUITY':
        discontinuity = true;
        break;
      case '#EXT-X-ENDLIST':
        ended = true;
        break;
      case '#EXT-X-STREAM-INF':
      case '#EXT-X-I-FRAME-STREAM-INF':
      case '#EXT-X-MEDIA':
        // §4.3.4: master-playlist tags; §6.3.1 forbids mixing the two kinds.
        throw new HlsParseError(`master playlist tag ${tag} in a media playlist (line ${lineNo})`, 'HLS_NOT_MEDIA');
      default:
        break;
    }
  }
  if (pending !== undefined) throw new HlsParseError('last #EXTINF has no URI', 'HLS_MISSING_URI');
  // §4.3.3.1: EXT-X-TARGETDURATION is REQUIRED.
  if (targetDuration === undefined) throw new HlsParseError('#EXT-X-TARGETDURATION is missing', 'HLS_MISSING_TARGET_DURATION');
  const p: MediaPlaylist = { version, targetDuration, mediaSequence, segments, ended };
  if (playlistType !== undefined) p.playlistType = playlistType;
  return p;
}

/** ffmpeg writes EXTINF with six decimals; keep that form unless it would lose precision. */
function formatDuration(d: number): string {
  const fixed = d.toFixed(6);
  return Number(fixed) === d ? fixed : String(d);
}

/** A playlist line may never carry a line break: it would inject tags (§4.1: lines end at LF/CRLF). */
function assertLine(value: string, what: string): void {
  if (value.length === 0 || /[\r\n]/.test(value)) throw new RangeError(`${what} is empty or holds a line break`);
}

/** Writes a media playlist in the same form ffmpeg does. */
export function serializeMediaPlaylist(p: MediaPlaylist): string {
  const out = ['#EXTM3U', `#EXT-X-VERSION:${p.version}`, `#EXT-X-TARGETDURATION:${p.targetDuration}`, `#EXT-X-MEDIA-SEQUENCE:${p.mediaSequence}`];
  if (p.playlistType !== undefined) out.push(`#EXT-X-PLAYLIST-TYPE:${p.playlistType}`);
  for (const s of p.segments) {
    assertLine(s.uri, 'segment URI');
    if (!Number.isFinite(s.duration) || s.duration < 0) throw new RangeError(`segment duration ${s.duration} is not a non-negative number`);
    if (s.discontinuity === true) out.push('#EXT-X-DISCONTINUITY');
    out.push(`#EXTINF:${formatDuration(s.duration)},`, s.uri);
  }
  if (p.ended) out.push('#EXT-X-ENDLIST');
  return out.join('\n') + '\n';
}

/**
 * A master playlist whose variants are all the same rendition: identical EXT-X-STREAM-INF attributes
 * (§4.3.4.2) make hls.js treat them as redundant alternates of one level and fail over on a 404.
 */
export function masterPlaylist(variants: Array<{ uri: string }>, attrs: { bandwidth?: number; codecs?: string } = {}): string {
  const bandwidth = attrs.bandwidth ?? 64000;
  const codecs = attrs.codecs ?? 'mp4a.40.2';
  if (!Number.isSafeInteger(bandwidth) || bandwidth <= 0) throw new RangeError(`bandwidth ${bandwidth} is not a positive integer`);
  // §4.2: a quoted-string cannot contain a double quote, CR or LF.
  if (codecs.length === 0 || /["\r\n]/.test(codecs)) throw new RangeError('codecs is empty or holds a quote or line break');
  const inf = `#EXT-X-STREAM-INF:BANDWIDTH=${bandwidth},CODECS="${codecs}"`;
  const out = ['#EXTM3U'];
  for (const v of variants) {
    assertLine(v.uri, 'variant URI');
    out.push(inf, v.uri);
  }
  return out.join('\n') + '\n';
}

/** A copy of the playlist with `query` appended (after "?" or "&") to every segment URI, e.g. an auth code. */
export function addQueryToSegments(p: MediaPlaylist, query: string): MediaPlaylist {
  if (/[\r\n#]/.test(query)) throw new RangeError('query holds a line break or "#"');
  return {
    ...p,
    segments: p.segments.map((s) => ({ ...s, uri: query === '' ? s.uri : `${s.uri}${s.uri.includes('?') ? '&' : '?'}${query}` })),
  };
}

/** The segments overlapping [startS, endS), by cumulative duration from the playlist's first segment. */
export function sliceSegments(p: MediaPlaylist, startS: number, endS: number): HlsSegment[] {
  const out: HlsSegment[] = [];
  if (!(endS > startS)) return out; // [start, end) is empty
  let t = 0;
  for (const s of p.segments) {
    const end = t + s.duration;
    if (t < endS && end > startS) out.push({ ...s });
    t = end;
    if (t >= endS) break;
  }
  return out;
}

/**
 * The archive as one VOD playlist: the parts in order, with EXT-X-DISCONTINUITY (§4.3.2.3) before the
 * first segment of each part after the first, since each part comes from another encoder run.
 */
export function archivePlaylist(parts: Array<{ segments: HlsSegment[] }>): string {
  const segments: HlsSegment[] = [];
  for (const part of parts) {
    part.segments.forEach((s, i) => {
      const seg: HlsSegment = { uri: s.uri, duration: s.duration };
      if (segments.length > 0 && (s.discontinuity === true || i === 0)) seg.discontinuity = true;
      segments.push(seg);
    });
  }
  // §4.3.3.1: every EXTINF duration, rounded, must be ≤ the target duration; ceil is always enough.
  const maxDuration = segments.reduce((m, s) => Math.max(m, s.duration), 0);
  return serializeMediaPlaylist({
    version: 3,
    targetDuration: Math.max(1, Math.ceil(maxDuration)),
    mediaSequence: 0,
    playlistType: 'VOD',
    segments,
    ended: true,
  });
}
