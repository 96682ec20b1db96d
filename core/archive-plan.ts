/**
 * Archive planning (DESIGN.md "archive", "Content storage layout"): from an event's recorded streams,
 * the ordered fragment list of its virtual archive. Pure: the coordinator reads history, playlists and
 * gaps and hands them in. Raw files are never touched: the plan only names (stream, start, end).
 *
 * Built in three steps:
 *  1. `takesOf` turns each usable stream into a Take: wall-clock start, recorded length, segment
 *     boundaries (cumulative EXTINF) and gaps (`gaps.json`: silence-filled stretches where the
 *     encoder got no audio);
 *  2. `chooseRuns` works on one wall-clock timeline. It cuts it at every take start/end and every gap
 *     edge; for each stretch it keeps the current take while that take covers the stretch without a
 *     gap (no needless switching), else picks the best take that does: fewest seconds lost to gaps
 *     over the whole take, then fewest gaps, then earliest start, then stream ID. A stretch only
 *     gapped takes cover keeps its place in time (silence the encoder wrote); a stretch no take
 *     covers (between a dropped call and its redial) is cut out, so the calls concatenate.
 *  3. `snapRuns` puts each run's in and out points on segment boundaries of its stream, since HLS
 *     plays whole segments. Rule: each point goes to the boundary just before or just after it. Of the
 *     (at most four) choices per run, those that keep the running difference between archive length
 *     and covered wall time ("drift") within half a segment come first; among them, those that reach
 *     into one of the stream's own gaps lose, then the smallest drift wins (earlier in, later out on
 *     a tie: repeat audio rather than drop it). When no choice stays within half a segment, the
 *     smallest drift wins, gap or not. A run shorter than a segment may also be left out, on the same
 *     terms as reaching into a gap. So the archive's length stays near the event's covered length
 *     however many switches there are (greedy, not a guarantee: on 50,000 random timelines of 1-4
 *     takes full of gaps, 2 s segments, all but one came within 1.02 s; that one 2.09 s); each side
 *     of a switch moves by less than one segment (so a switch repeats or skips less than two), and
 *     plays silence only when that is the price of the length.
 *
 * "No acceptable archive" (typed `ArchiveRefusal`): no stream recorded anything, a stored stream's
 * files are missing, or less than `minAudioFraction` of the covered time has audio in any take.
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
  /**
   * Segment boundaries in stream seconds, ascending, from 0 to `durationS` (cumulative EXTINF). Without
   * them every point is a boundary (no snapping).
   */
  bounds?: number[];
}

/** One stretch of one take on the wall-clock timeline (seconds from the first take's start). */
export interface Run {
  streamId: string;
  from: number;
  to: number;
}

/** Why no archive can be built. */
export type ArchiveRefusalCode = 'NO_RECORDED_STREAM' | 'STREAM_FILES_MISSING' | 'TOO_LITTLE_AUDIO';

/** A refusal: the code for programs, the reason (with context) for event-info.xml's archiveError. */
export interface ArchiveRefusal {
  ok: false;
  code: ArchiveRefusalCode;
  reason: string;
}

/** The plan, or why there can be none. */
export type ArchivePlan = { ok: true; archive: ArchiveFragment[] } | ArchiveRefusal;

/** Planner options. */
export interface PlanOptions {
  /** Below this share of the covered time with audio, the archive is refused. Default 0.5. */
  minAudioFraction?: number;
}

/**
 * Gaps shorter than this (seconds) never cause a switch: the same as the encoder's GAP_MIN_S
 * (runtime/encoder.ts), so hand-made or older gaps.json files are read the same way.
 */
export const MIN_GAP_S = 0.1;
/** Default of PlanOptions.minAudioFraction. */
export const MIN_AUDIO_FRACTION = 0.5;

/** Seconds rounded to the millisecond, so EXTINF sums do not carry float noise into event-info.xml. */
export function roundS(s: number): number {
  return Math.round(s * 1000) / 1000;
}

/** Total EXTINF duration of a playlist, in seconds. */
export function playlistDurationS(playlist: PlaylistLike): number {
  return roundS(playlist.segments.reduce((sum, seg) => sum + (Number.isFinite(seg.duration) && seg.duration > 0 ? seg.duration : 0), 0));
}

/** Segment boundaries of a playlist: 0, then the cumulative EXTINF sum after each segment, to the ms. */
export function playlistBounds(playlist: PlaylistLike): number[] {
  const out = [0];
  let t = 0;
  for (const seg of playlist.segments) {
    if (!(Number.isFinite(seg.duration) && seg.duration > 0)) continue;
    t += seg.duration;
    out.push(roundS(t));
  }
  return out;
}

/**
 * The takes of an event, in start order (stream ID breaks ties). A stream that says it was stored but
 * whose playlist is missing is an error (its files are gone); a stream never stored is skipped.
 */
export function takesOf(streams: readonly PlanStream[]): { ok: true; takes: Take[] } | ArchiveRefusal {
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
    takes.push({
      streamId: s.record.streamId,
      startMs: Number.isFinite(startMs) ? startMs : 0,
      durationS,
      gaps: s.gaps ?? [],
      bounds: playlistBounds(s.playlist),
    });
  }
  if (missing.length > 0) return { ok: false, code: 'STREAM_FILES_MISSING', reason: `stream files missing [streams:${missing.join(',')}]` };
  takes.sort(byStart);
  return { ok: true, takes };
}

function byStart(a: Take, b: Take): number {
  return a.startMs - b.startMs || (a.streamId < b.streamId ? -1 : a.streamId > b.streamId ? 1 : 0);
}

/** A take placed on the timeline, with what ranks it. */
interface Placed {
  take: Take;
  /** Wall seconds (from the first take's start). */
  start: number;
  end: number;
  /** Gaps that cause a switch, in wall seconds, clipped to the take. */
  gaps: Gap[];
  lostS: number;
  gapCount: number;
}

function place(takes: readonly Take[]): Placed[] {
  const t0 = Math.min(...takes.map((t) => t.startMs));
  return [...takes].sort(byStart).map((take) => {
    const start = roundS((take.startMs - t0) / 1000);
    const end = roundS(start + take.durationS);
    const gaps: Gap[] = [];
    let lostS = 0;
    let gapCount = 0;
    for (const g of take.gaps) {
      const a = Math.max(0, g.start);
      const b = Math.min(take.durationS, g.end);
      if (!(b > a)) continue;
      lostS += b - a;
      gapCount++;
      if (b - a >= MIN_GAP_S) gaps.push({ start: roundS(start + a), end: roundS(start + b) });
    }
    gaps.sort((x, y) => x.start - y.start);
    return { take, start, end, gaps, lostS, gapCount };
  });
}

/** Whether the take has audio over all of [from, to] (the stretch lies between cut points, so a gap holds all of it or none). */
function goodOver(p: Placed, from: number, to: number): boolean {
  return !p.gaps.some((g) => g.start < to && g.end > from);
}

function better(a: Placed, b: Placed): boolean {
  if (a.lostS !== b.lostS) return a.lostS < b.lostS;
  if (a.gapCount !== b.gapCount) return a.gapCount < b.gapCount;
  return byStart(a.take, b.take) < 0;
}

function best(cands: Placed[]): Placed {
  return cands.reduce((m, c) => (better(c, m) ? c : m));
}

/**
 * Which take plays each stretch of the wall-clock timeline (seconds from the first take's start), in
 * order; runs never overlap, and a run lies outside its take's gaps wherever another take has audio.
 */
export function chooseRuns(takes: readonly Take[]): Run[] {
  if (takes.length === 0) return [];
  const placed = place(takes);
  const cuts = new Set<number>();
  for (const p of placed) {
    cuts.add(p.start);
    cuts.add(p.end);
    for (const g of p.gaps) {
      cuts.add(g.start);
      cuts.add(g.end);
    }
  }
  const points = [...cuts].sort((a, b) => a - b);
  const runs: Run[] = [];
  let current: Placed | undefined;
  for (let i = 0; i + 1 < points.length; i++) {
    const from = points[i]!;
    const to = points[i + 1]!;
    const covering = placed.filter((p) => p.start <= from && p.end >= to);
    if (covering.length === 0) {
      current = undefined; // cut out: nothing was recorded here
      continue;
    }
    const good = covering.filter((p) => goodOver(p, from, to));
    let pick: Placed;
    if (current && good.includes(current)) pick = current;
    else if (good.length > 0) pick = best(good);
    else if (current && covering.includes(current)) pick = current;
    else pick = best(covering);
    const last = runs[runs.length - 1];
    if (last && pick === current && last.to === from) last.to = to;
    else runs.push({ streamId: pick.take.streamId, from, to });
    current = pick;
  }
  return runs;
}

/** Largest boundary ≤ x and smallest boundary ≥ x (to the ms). */
function around(bounds: readonly number[], x: number): [number, number] {
  let lo = 0;
  let hi = bounds.length - 1;
  if (x <= bounds[0]!) return [bounds[0]!, bounds[0]!];
  if (x >= bounds[hi]!) return [bounds[hi]!, bounds[hi]!];
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (bounds[mid]! <= x) lo = mid;
    else hi = mid;
  }
  const b = bounds[lo]!;
  if (Math.abs(b - x) < 0.0005) return [b, b];
  const a = bounds[hi]!;
  if (Math.abs(a - x) < 0.0005) return [a, a];
  return [b, a];
}

/**
 * Whether stream seconds [x, y] (an in or out point moved to a boundary) reach into one of the take's
 * gaps that the run [a, b] does not already play.
 */
function intoNewGap(p: Placed, x: number, y: number, a: number, b: number): boolean {
  if (!(y > x)) return false;
  return p.gaps.some((g) => g.start < p.start + y && g.end > p.start + x && !(g.start < p.start + b && g.end > p.start + a));
}

/** Longest segment of a take (its snapping step). */
function maxSegmentS(bounds: readonly number[] | undefined): number {
  let m = 0;
  if (bounds) for (let i = 1; i < bounds.length; i++) m = Math.max(m, bounds[i]! - bounds[i - 1]!);
  return m;
}

/** Runs → fragments on segment boundaries (see the header for the rule). */
export function snapRuns(runs: readonly Run[], takes: readonly Take[]): ArchiveFragment[] {
  if (runs.length === 0) return [];
  const placed = new Map(place(takes).map((p) => [p.take.streamId, p]));
  const out: ArchiveFragment[] = [];
  let drift = 0; // archive seconds so far minus covered wall seconds so far
  for (const r of runs) {
    const p = placed.get(r.streamId);
    if (!p) continue;
    const a = Math.max(0, roundS(r.from - p.start));
    const b = Math.min(p.take.durationS, roundS(r.to - p.start));
    const bounds = p.take.bounds && p.take.bounds.length > 1 ? p.take.bounds : undefined;
    const half = maxSegmentS(bounds) / 2 + 0.001;
    const [inEarly, inLate] = bounds ? around(bounds, a) : [a, a];
    const [outEarly, outLate] = bounds ? around(bounds, b) : [b, b];
    // Key, smallest wins: within half a segment of drift, no new gap, least drift; past it, least drift.
    // The same stream right before (a skipped run between): a fragment reaching back into it merges.
    const prev = out[out.length - 1];
    const same = prev && prev.streamId === r.streamId ? prev : undefined;
    let chosen: { start: number; end: number; key: number[]; drift: number } | undefined;
    for (const start of [inEarly, inLate]) {
      for (const end of [outLate, outEarly]) {
        if (!(end > start)) continue;
        const merges = same !== undefined && same.end >= start;
        const played = merges ? Math.max(0, end - same.end) : end - start;
        const bad = (!merges && intoNewGap(p, start, a, a, b) ? 1 : 0) + (intoNewGap(p, b, end, a, b) ? 1 : 0);
        const d = roundS(drift + played - (r.to - r.from));
        const key = Math.abs(d) <= half ? [0, bad, Math.abs(d)] : [1, Math.abs(d), bad];
        if (!chosen || lessThan(key, chosen.key)) chosen = { start, end, key, drift: d };
      }
    }
    // A run shorter than a segment may be left out (its audio is lost, like playing a gap) when a
    // whole segment for it would push the drift further.
    const skipDrift = roundS(drift - (r.to - r.from));
    const skipKey = Math.abs(skipDrift) <= half ? [0, 1, Math.abs(skipDrift)] : [1, Math.abs(skipDrift), 1];
    if (!chosen || (r.to - r.from < 2 * half && lessThan(skipKey, chosen.key))) {
      drift = skipDrift;
      continue;
    }
    drift = chosen.drift;
    if (same && same.end >= chosen.start) same.end = Math.max(same.end, chosen.end);
    else out.push({ streamId: r.streamId, start: roundS(chosen.start), end: roundS(chosen.end) });
  }
  return out;
}

function lessThan(x: readonly number[], y: readonly number[]): boolean {
  for (let i = 0; i < x.length; i++) {
    if (Math.abs(x[i]! - y[i]!) > 1e-9) return x[i]! < y[i]!;
  }
  return false;
}

/** Which stretch of which take plays, in order: `chooseRuns`, then `snapRuns`. */
export function chooseFragments(takes: readonly Take[]): ArchiveFragment[] {
  return snapRuns(chooseRuns(takes), takes);
}

/** Seconds of the timeline some take covers, and of those, seconds the chosen runs have audio. */
export function coverageOf(runs: readonly Run[], takes: readonly Take[]): { coveredS: number; audioS: number } {
  const placed = new Map(place(takes).map((p) => [p.take.streamId, p]));
  let coveredS = 0;
  let audioS = 0;
  for (const r of runs) {
    coveredS += r.to - r.from;
    let silent = 0;
    for (const g of placed.get(r.streamId)?.gaps ?? []) silent += Math.max(0, Math.min(g.end, r.to) - Math.max(g.start, r.from));
    audioS += r.to - r.from - silent;
  }
  return { coveredS: roundS(coveredS), audioS: roundS(audioS) };
}

/** The virtual archive of an event, or the typed reason it cannot be built. */
export function planArchive(streams: readonly PlanStream[], options: PlanOptions = {}): ArchivePlan {
  const found = takesOf(streams);
  if (!found.ok) return found;
  if (found.takes.length === 0) return { ok: false, code: 'NO_RECORDED_STREAM', reason: 'no recorded stream' };
  const runs = chooseRuns(found.takes);
  const { coveredS, audioS } = coverageOf(runs, found.takes);
  const minFraction = options.minAudioFraction ?? MIN_AUDIO_FRACTION;
  if (coveredS <= 0 || audioS < minFraction * coveredS) {
    return { ok: false, code: 'TOO_LITTLE_AUDIO', reason: `too little audio [audio:${audioS}s covered:${coveredS}s streams:${found.takes.length}]` };
  }
  return { ok: true, archive: snapRuns(runs, found.takes) };
}
