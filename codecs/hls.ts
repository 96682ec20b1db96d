/**
 * HLS media and master playlists, RFC 8216. Only the subset jitcast writes and ffmpeg's HLS muxer
 * produces is modelled; other tags in a media playlist are skipped (§6.3.1: clients ignore unknown tags).
 */
import { CodecError } from './errors.ts';

/** One media segment (§4.3.2.1 EXTINF + URI line, §4.3.2.3 DISCONTINUITY, §4.3.2.6 PROGRAM-DATE-TIME). */
export interface HlsSegment {
  uri: string;
  duration: number;
  discontinuity?: boolean;
  /** Wall-clock time of the segment's first sample, ms since the epoch (EXT-X-PROGRAM-DATE-TIME). */
  programDateTime?: number;
}

/** A media playlist (§4.3.3). */
export interface MediaPlaylist {
  version: number;
  targetDuration: number;
  mediaSequence: number;
  /** §4.3.3.3 EXT-X-DISCONTINUITY-SEQUENCE; absent means 0. */
  discontinuitySequence?: number;
  segments: HlsSegment[];
  ended: boolean;
  playlistType?: 'EVENT' | 'VOD';
}

/** A playlist that cannot be read. */
export class HlsParseError extends CodecError {}

const UNSIGNED_RE = /^\d{1,15}$/;
const DURATION_RE = /^(?:\d+(?:\.\d*)?|\.\d+)$/;
/** §4.3.2.6: an ISO/IEC 8601 date-time with time zone (what Date.parse reads of it). */
const DATE_TIME_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})$/;

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
  let discontinuitySequence: number | undefined;
  let playlistType: 'EVENT' | 'VOD' | undefined;
  let ended = false;
  const segments: HlsSegment[] = [];
  let pending: { duration: number; discontinuity: boolean; programDateTime?: number } | undefined;
  let discontinuity = false;
  let programDateTime: number | undefined;

  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!.trim();
    const lineNo = i + 1;
    if (line === '') continue;
    if (!line.startsWith('#')) {
      if (pending === undefined) throw new HlsParseError(`URI without a preceding #EXTINF (line ${lineNo})`, 'HLS_ORPHAN_URI');
      if (ended) throw new HlsParseError(`segment after #EXT-X-ENDLIST (line ${lineNo})`, 'HLS_BAD_TAG');
      const seg: HlsSegment = { uri: line, duration: pending.duration };
      if (pending.discontinuity) seg.discontinuity = true;
      if (pending.programDateTime !== undefined) seg.programDateTime = pending.programDateTime;
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
      case '#EXT-X-DISCONTINUITY-SEQUENCE':
        discontinuitySequence = parseUnsigned(attrValue(line, tag), tag, lineNo);
        break;
      case '#EXT-X-PROGRAM-DATE-TIME': {
        const v = attrValue(line, tag);
        const ms = DATE_TIME_RE.test(v) ? Date.parse(v) : NaN;
        if (!Number.isFinite(ms)) throw new HlsParseError(`#EXT-X-PROGRAM-DATE-TIME is not a date-time (line ${lineNo})`, 'HLS_BAD_TAG');
        programDateTime = ms;
        break;
      }
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
        if (programDateTime !== undefined) pending.programDateTime = programDateTime;
        discontinuity = false;
        programDateTime = undefined;
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
  if (discontinuitySequence !== undefined) p.discontinuitySequence = discontinuitySequence;
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
  if (p.discontinuitySequence !== undefined) {
    if (!Number.isSafeInteger(p.discontinuitySequence) || p.discontinuitySequence < 0) throw new RangeError(`discontinuity sequence ${p.discontinuitySequence} is not a non-negative integer`);
    out.push(`#EXT-X-DISCONTINUITY-SEQUENCE:${p.discontinuitySequence}`);
  }
  if (p.playlistType !== undefined) out.push(`#EXT-X-PLAYLIST-TYPE:${p.playlistType}`);
  for (const s of p.segments) {
    assertLine(s.uri, 'segment URI');
    if (!Number.isFinite(s.duration) || s.duration < 0) throw new RangeError(`segment duration ${s.duration} is not a non-negative number`);
    if (s.discontinuity === true) out.push('#EXT-X-DISCONTINUITY');
    if (s.programDateTime !== undefined) {
      if (!Number.isFinite(s.programDateTime)) throw new RangeError(`segment program date-time ${s.programDateTime} is not a time`);
      out.push(`#EXT-X-PROGRAM-DATE-TIME:${new Date(s.programDateTime).toISOString()}`);
    }
    out.push(`#EXTINF:${formatDuration(s.duration)},`, s.uri);
  }
  if (p.ended) out.push('#EXT-X-ENDLIST');
  return out.join('\n') + '\n';
}

/**
 * A master playlist whose variants are all the same rendition: identical EXT-X-STREAM-INF attributes
 * (§4.3.4.2) make hls.js treat them as redundant alternates of one level and fail over on a 404.
 */
export function masterPlaylist(variants: Array<{ uri: string }>, attrs: { bandwidth?: number; codecs?: string; steeringUri?: string } = {}): string {
  const bandwidth = attrs.bandwidth ?? 64000;
  const codecs = attrs.codecs ?? 'mp4a.40.2';
  if (!Number.isSafeInteger(bandwidth) || bandwidth <= 0) throw new RangeError(`bandwidth ${bandwidth} is not a positive integer`);
  // §4.2: a quoted-string cannot contain a double quote, CR or LF.
  if (codecs.length === 0 || /["\r\n]/.test(codecs)) throw new RangeError('codecs is empty or holds a quote or line break');
  let inf = `#EXT-X-STREAM-INF:BANDWIDTH=${bandwidth},CODECS="${codecs}"`;
  const out = ['#EXTM3U'];
  if (attrs.steeringUri !== undefined) {
    if (attrs.steeringUri.length === 0 || /["\r\n]/.test(attrs.steeringUri)) throw new RangeError('steering URI is empty or holds a quote or line break');
    // §4.4.6.6: streams that appear later reach the player as Pathway clones of the first variant.
    out.push(`#EXT-X-CONTENT-STEERING:SERVER-URI="${attrs.steeringUri}",PATHWAY-ID="${pathwayOfVariant(0)}"`);
    inf += `,STABLE-VARIANT-ID="${STABLE_VARIANT_ID}"`;
  }
  for (const v of variants) {
    assertLine(v.uri, 'variant URI');
    out.push(inf, v.uri);
  }
  return out.join('\n') + '\n';
}

/** STABLE-VARIANT-ID of every variant of a live master playlist: they are all the same rendition. */
export const STABLE_VARIANT_ID = 'live';

/**
 * The Pathway a player gives the `index`th of a master playlist's identical variants: hls.js names
 * redundant variants without PATHWAY-ID ".", "..", "..." in order (level-controller.ts).
 */
export function pathwayOfVariant(index: number): string {
  return '.'.repeat(index + 1);
}

/** A content steering manifest (HLS content steering 1.2, VERSION 1). */
export interface SteeringManifest {
  VERSION: 1;
  TTL: number;
  'RELOAD-URI'?: string;
  'PATHWAY-PRIORITY': string[];
  'PATHWAY-CLONES'?: Array<{ 'BASE-ID': string; ID: string; 'URI-REPLACEMENT': { 'PER-VARIANT-URIS': Record<string, string> } }>;
}

/**
 * The steering manifest for a player that loaded a master playlist listing the streams `listed` (in
 * order) and now plays Pathway `current`, while `alive` are the live streams (with their playlist
 * URIs). Streams that appeared since the master was loaded become clones of the first variant's
 * Pathway, named by stream ID; the priority lists only live streams, the player's own first so it
 * does not switch for nothing; a player whose stream is gone moves to the next before any request
 * of it fails. With nothing alive, the player is left where it is.
 */
export function steeringManifest(o: { listed: readonly string[]; alive: ReadonlyArray<{ streamId: string; uri: string }>; current?: string; ttlS: number; reloadUri?: string }): SteeringManifest {
  const pathwayOf = (streamId: string) => {
    const i = o.listed.indexOf(streamId);
    return i === -1 ? streamId : pathwayOfVariant(i);
  };
  const priority = o.alive.map((s) => pathwayOf(s.streamId));
  const own = o.current !== undefined ? priority.indexOf(o.current) : -1;
  if (own > 0) priority.unshift(...priority.splice(own, 1));
  const clones = o.alive
    .filter((s) => !o.listed.includes(s.streamId))
    .map((s) => ({ 'BASE-ID': pathwayOfVariant(0), ID: s.streamId, 'URI-REPLACEMENT': { 'PER-VARIANT-URIS': { [STABLE_VARIANT_ID]: s.uri } } }));
  const m: SteeringManifest = { VERSION: 1, TTL: o.ttlS, 'PATHWAY-PRIORITY': priority.length > 0 ? priority : [o.current ?? pathwayOfVariant(0)] };
  if (o.reloadUri !== undefined) m['RELOAD-URI'] = o.reloadUri;
  if (clones.length > 0) m['PATHWAY-CLONES'] = clones;
  return m;
}

/** A copy of the playlist with `query` appended (after "?" or "&") to every segment URI, e.g. an auth code. */
export function addQueryToSegments(p: MediaPlaylist, query: string): MediaPlaylist {
  if (/[\r\n#]/.test(query)) throw new RangeError('query holds a line break or "#"');
  return {
    ...p,
    segments: p.segments.map((s) => ({ ...s, uri: query === '' ? s.uri : `${s.uri}${s.uri.includes('?') ? '&' : '?'}${query}` })),
  };
}

/**
 * The live window of a playlist: its last `maxSegments` segments, with the media sequence (§6.2.2)
 * and discontinuity sequence advanced past the segments dropped, and no PLAYLIST-TYPE (an EVENT
 * playlist may not drop segments). Live listeners need only the edge; a long event's full list
 * polled every segment by every listener costs bytes and CPU for nothing.
 */
export function liveWindow(p: MediaPlaylist, maxSegments: number): MediaPlaylist {
  if (!Number.isSafeInteger(maxSegments) || maxSegments < 1) throw new RangeError(`live window of ${maxSegments} segments`);
  const drop = Math.max(0, p.segments.length - maxSegments);
  const { playlistType: _type, ...rest } = p;
  const dropped = p.segments.slice(0, drop);
  const kept = p.segments.slice(drop);
  // §6.2.2: the discontinuity sequence counts the discontinuity tags of the removed segments. The
  // first kept segment's own tag stays in the playlist, so it is not counted.
  const removedTags = dropped.filter((s) => s.discontinuity === true).length;
  const out: MediaPlaylist = { ...rest, mediaSequence: p.mediaSequence + drop, segments: kept };
  if (removedTags > 0 || p.discontinuitySequence !== undefined) out.discontinuitySequence = (p.discontinuitySequence ?? 0) + removedTags;
  return out;
}

/**
 * The playlist numbered on the wall clock: its media sequence becomes its first segment's
 * PROGRAM-DATE-TIME in units of `segmentS` (unchanged without a date). Redundant streams of one
 * event then give the same number, within one, to the segments of the same moment: hls.js takes a
 * Pathway switch to the same level for a continuation and asks the new stream for the number after
 * the last one it played, so numbers counted from each stream's own start would send it off by
 * however far apart the streams started (waiting for a number the later stream has not reached).
 */
export function onWallClockSequence(p: MediaPlaylist, segmentS: number): MediaPlaylist {
  if (!(segmentS > 0)) throw new RangeError(`segment length ${segmentS} s`);
  const date = p.segments[0]?.programDateTime;
  if (date === undefined) return p;
  return { ...p, mediaSequence: p.mediaSequence + Math.round(date / (segmentS * 1000)) };
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
