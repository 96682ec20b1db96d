/**
 * Replication between storage centers and retention (issue 4, item 5), as pure functions: the
 * content-storage actor does the I/O.
 *
 * Replication is pull-based anti-entropy. A storage node that takes a write tells its peers which
 * event changed; each peer compares that event's manifest with its own (`planSync`) and fetches
 * what it lacks. A node that (re)joins compares per-event digests with every peer and does the same,
 * so a node that was down catches up without anyone keeping a queue for it.
 *
 * event-info.xml is whole-file and mutable: every stored copy carries a version (`formatVersion`) in
 * an XML comment right after the declaration, so the copies of every center stay byte-identical and
 * an older copy never overwrites a newer one. The version orders by the reservation's `updatedAt`
 * first (the event actor's own order of its writes), then by a hybrid logical clock stamp of the
 * storage node that took the write (`nextStamp`), then by that node's ID, so two writes are never
 * equal. Stream files are immutable once stored, except a stream's playlist and gaps.json while the
 * playlist lacks #EXT-X-ENDLIST (a stream still being uploaded as it goes).
 */
import type { EventInfo } from '../runtime/contracts.ts';

/** One ordered version of an event-info.xml copy. */
export interface InfoVersion {
  /** `updatedAt` of the event-info, ms since the epoch. */
  updatedMs: number;
  /** Hybrid logical clock stamp (µs) of the storage node that took the write. */
  stamp: number;
  /** That node's ID. */
  nodeId: string;
}

const VERSION_RE = /^<!-- jitcast-version (\d{1,16})\.(\d{1,20})\.([A-Za-z0-9_.:-]{1,128}) -->$/m;
const NODE_ID_SAFE_RE = /[^A-Za-z0-9_.:-]/g;

/** The comment line that carries a version inside event-info.xml. */
export function formatVersion(v: InfoVersion): string {
  return `<!-- jitcast-version ${Math.max(0, Math.trunc(v.updatedMs))}.${Math.max(0, Math.trunc(v.stamp))}.${v.nodeId.replace(NODE_ID_SAFE_RE, '_') || '_'} -->`;
}

/** The version a stored event-info.xml carries; undefined for a copy written before versions (older than any versioned one). */
export function parseVersion(xml: string): InfoVersion | undefined {
  const m = VERSION_RE.exec(xml.slice(0, 512));
  if (!m) return undefined;
  return { updatedMs: Number(m[1]), stamp: Number(m[2]), nodeId: m[3]! };
}

/** <0, 0, >0 as `a` is older than, the same as, or newer than `b`; a missing version is the oldest. */
export function compareVersions(a: InfoVersion | undefined, b: InfoVersion | undefined): number {
  if (!a || !b) return (a ? 1 : 0) - (b ? 1 : 0);
  return a.updatedMs - b.updatedMs || a.stamp - b.stamp || (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0);
}

/** Inserts the version comment after the XML declaration (or at the top), replacing any earlier one. */
export function withVersion(xml: string, v: InfoVersion): string {
  const bare = xml.replace(/^<!-- jitcast-version [^\n]* -->\n/m, '');
  const decl = /^<\?xml[^>]*\?>\n/.exec(bare);
  const line = formatVersion(v) + '\n';
  return decl ? decl[0] + line + bare.slice(decl[0].length) : line + bare;
}

/**
 * Hybrid logical clock (Kulkarni et al. 2014, simplified): a stamp above both the wall clock and
 * every stamp this node has seen, so a write taken after reading a copy always orders after it,
 * even when the wall clocks of two storage nodes disagree a little.
 */
export function nextStamp(lastSeen: number, nowMs: number): number {
  return Math.max(Math.trunc(nowMs * 1000), Math.trunc(lastSeen) + 1);
}

/** Whether a stored playlist is final (the stream's end-of-call commit reached storage). */
export function isFinalPlaylist(text: string): boolean {
  return text.trimEnd().endsWith('#EXT-X-ENDLIST');
}

/** One stream of a manifest: every file with its size, and whether its playlist is final. */
export interface ManifestStream {
  files: Record<string, number>;
  final: boolean;
}

/** What one storage node holds of one event. */
export interface EventManifest {
  /** Version of its event-info.xml, or undefined when it has none (or an unversioned one). */
  version?: InfoVersion;
  /** Whether it holds an event-info.xml at all. */
  hasInfo: boolean;
  /** Whether that event-info's retention is over (`retentionOver`): its stream files are gone for good. */
  retentionEnded: boolean;
  streams: Record<string, ManifestStream>;
}

/** A file to fetch from the peer. */
export interface FileToFetch {
  streamId: string;
  file: string;
  size: number;
}

/** What `planSync` decides for one event. */
export interface SyncPlan {
  /** Fetch the peer's event-info.xml (it is newer, or ours is missing). */
  takeInfo: boolean;
  /** Remove our stream files (retention ended per the winning event-info). */
  removeStreams: boolean;
  /** Files to fetch, per stream segments before the playlist, so a stored playlist never names a missing segment. */
  files: FileToFetch[];
}

function isMutable(file: string): boolean {
  return file.endsWith('.m3u8') || file.endsWith('.json');
}

/** What this node must fetch from a peer to hold everything the peer holds of one event. */
export function planSync(mine: EventManifest, theirs: EventManifest): SyncPlan {
  const takeInfo = theirs.hasInfo && (!mine.hasInfo || compareVersions(theirs.version, mine.version) > 0);
  const retentionEnded = takeInfo ? theirs.retentionEnded : mine.retentionEnded;
  if (retentionEnded) return { takeInfo, removeStreams: Object.keys(mine.streams).length > 0, files: [] };
  const files: FileToFetch[] = [];
  for (const streamId of Object.keys(theirs.streams).sort()) {
    const t = theirs.streams[streamId]!;
    const m = mine.streams[streamId];
    const names = Object.keys(t.files).sort((a, b) => Number(isMutable(a)) - Number(isMutable(b)) || (a < b ? -1 : 1));
    for (const file of names) {
      const size = t.files[file]!;
      const have = m?.files[file];
      if (!isMutable(file)) {
        if (have === undefined) files.push({ streamId, file, size });
        continue;
      }
      // Our playlist is final: the stream is complete here. Otherwise take theirs when it is final
      // or longer (a playlist uploaded as it goes only grows; gaps.json is written once, at the end).
      if (m?.final) continue;
      if (have === undefined || (t.final && have !== size) || size > have) files.push({ streamId, file, size });
    }
  }
  return { takeInfo, removeStreams: false, files };
}

/** Retention (DESIGN.md: "stays playable for the retention period chosen at reservation"). */
export const DAY_MS = 86_400_000;

/** When an archived event's retention ends (ms): `archiveDays` after it ended; undefined unless archived. */
export function retentionEndsAtMs(info: EventInfo): number | undefined {
  if (info.status !== 'archived') return undefined;
  const from = Date.parse(info.endedAt ?? info.liveAt ?? info.createdAt);
  if (!Number.isFinite(from)) return undefined;
  return from + info.archiveDays * DAY_MS;
}

/**
 * Whether an event's retention is over at `nowMs`: its stream files must not be kept, fetched or
 * served by any storage center. Decided from the reservation and the clock alone, never from the
 * shape of the file, so a node that missed the sweep (down, partitioned) removes them on its own,
 * and an event-info that lost its `<archive>` some other way never costs a recording.
 */
export function retentionOver(info: EventInfo, nowMs: number): boolean {
  const end = retentionEndsAtMs(info);
  return end !== undefined && nowMs >= end;
}

/** Whether the sweep must (still) mark this event-info: retention over and `<archive>` still there. */
export function retentionDue(info: EventInfo, nowMs: number): boolean {
  return retentionOver(info, nowMs) && info.archive !== undefined;
}

/** The event-info the sweep writes: status stays archived, the virtual archive goes, updatedAt is now. */
export function markRetentionEnded(info: EventInfo, nowMs: number): EventInfo {
  const { archive: _archive, ...rest } = info;
  return { ...rest, updatedAt: new Date(Math.max(nowMs, Date.parse(info.updatedAt) || 0)).toISOString() };
}
