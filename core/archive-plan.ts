/**
 * Archive planning (DESIGN.md "archive", "Content storage layout"): from an event's recorded streams,
 * the ordered fragment list of its virtual archive. Pure: the coordinator reads history, playlists and
 * gaps and hands them in.
 *
 * Built in two steps so a later issue can replace the second alone:
 *  1. `takesOf` turns each usable stream into a Take (wall-clock start, recorded length, gaps);
 *  2. `chooseFragments` picks which stretch of which take plays. For now every take plays whole, in
 *     start order (dropped-and-redialed calls come out concatenated). Redundant overlapping takes
 *     (several voice servers / data centers) will later be resolved per stretch by fewest gaps.
 */
import type { ArchiveFragment, StreamRecord } from '../runtime/contracts.ts';

/** A silence-filled interval of a stream, in stream seconds (`gaps.json`). */
export interface Gap {
  start: number;
  end: number;
}

/** The part of a parsed media playlist the planner needs (codecs/hls.ts MediaPlaylist fits). */
export interface PlaylistLike {
  segments: ReadonlyArray<{ duration: number }>;
  ended?: boolean;
}

/** One stream as the coordinator found it. `playlist` is absent when its stored `index.m3u8` could not be read. */
export interface PlanStream {
  record: StreamRecord;
  playlist?: PlaylistLike;
  gaps?: Gap[];
}

/** One recording usable for the archive. */
export interface Take {
  streamId: string;
  /** Wall-clock start, ms since the epoch. */
  startMs: number;
  /** Seconds of media recorded (sum of EXTINF). */
  durationS: number;
  gaps: Gap[];
}

/** The plan, or why there can be none. */
export type ArchivePlan = { ok: true; archive: ArchiveFragment[] } | { ok: false; reason: string };

/** Seconds rounded to the millisecond, so EXTINF sums do not carry float noise into event-info.xml. */
export function roundS(s: number): number {
  return Math.round(s * 1000) / 1000;
}

/** Total EXTINF duration of a playlist, in seconds. */
export function playlistDurationS(playlist: PlaylistLike): number {
  return roundS(playlist.segments.reduce((sum, seg) => sum + (Number.isFinite(seg.duration) && seg.duration > 0 ? seg.duration : 0), 0));
}

/**
 * The takes of an event, in start order (stream ID breaks ties). A stream that says it was stored but
 * whose playlist is missing is an error (its files are gone); a stream never stored is skipped.
 */
export function takesOf(streams: readonly PlanStream[]): { ok: true; takes: Take[] } | { ok: false; reason: string } {
  const takes: Take[] = [];
  const missing: string[] = [];
  for (const s of streams) {
    if (!s.playlist) {
      if (s.record.stored) missing.push(s.record.streamId);
      continue;
    }
    const durationS = playlistDurationS(s.playlist);
    if (durationS <= 0) continue;
    const startMs = Date.parse(s.record.startedAt);
    takes.push({ streamId: s.record.streamId, startMs: Number.isFinite(startMs) ? startMs : 0, durationS, gaps: s.gaps ?? [] });
  }
  if (missing.length > 0) return { ok: false, reason: `stream files missing [streams:${missing.join(',')}]` };
  takes.sort((a, b) => a.startMs - b.startMs || (a.streamId < b.streamId ? -1 : a.streamId > b.streamId ? 1 : 0));
  return { ok: true, takes };
}

/** Which stretch of which take plays, in order. For now: every take whole, in start order. */
export function chooseFragments(takes: readonly Take[]): ArchiveFragment[] {
  return takes.map((t) => ({ streamId: t.streamId, start: 0, end: t.durationS }));
}

/** The virtual archive of an event, or the reason it cannot be built ("no recorded stream", "stream files missing"). */
export function planArchive(streams: readonly PlanStream[]): ArchivePlan {
  const found = takesOf(streams);
  if (!found.ok) return found;
  if (found.takes.length === 0) return { ok: false, reason: 'no recorded stream' };
  return { ok: true, archive: chooseFragments(found.takes) };
}
