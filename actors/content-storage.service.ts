/**
 * `content-storage` actor (DESIGN.md "content storage"): event-info.xml and stored stream files, over
 * one ContentStorage per storage center this node serves (`<dataDir>/storage/<center>/`). Writes go to
 * every center of this node; reads come from the first that has it.
 *
 * Replication between nodes (issue 4, core/replication.ts): the node that takes a write stores it,
 * then broadcasts `jitcast.storage.changed {eventId, nodeId}`; every other storage node pulls what it
 * lacks of that event from the writer (`manifest`, `eventInfoRaw`, `fetchFile`, pinned to its node),
 * retrying with back-off while the writer is unreachable. A node that joins or rejoins compares
 * per-event digests with every peer and pulls the differences (catch-up), and so does every node
 * every ANTI_ENTROPY_MS, which also heals a change notice lost while a node was down. Pulling, not
 * pushing, means nobody keeps a queue for a node that is away. The retention sweep runs on the
 * storage node with the lowest node ID (one writer, no election) and is idempotent.
 *
 * A finished stream arrives in one of two ways (issue 3, files across nodes). An encoder on this
 * node names its directory (`putStream {dir}`). An encoder on another node cannot: its disk is not
 * ours, so it sends the files over the broker — `beginStream` (answers the upload ID and this
 * node's ID, which every further call names as `nodeID`), `putStreamFile` per chunk, then
 * `commitStream` with every file's size. Either way the stream is staged and appears at once
 * (runtime/storage.ts StagedStream), so a stream cut short never looks complete.
 */
import { randomBytes } from 'node:crypto';
import { join, resolve, sep } from 'node:path';
import { createHash } from 'node:crypto';
import type { Context, Logger, ServiceBroker, ServiceSchema } from 'moleculer';
import type { JitcastConfig } from '../cluster.config.ts';
import { EventInfoParseError, parseEventInfo, serializeEventInfo } from '../codecs/event-info.ts';
import { isValidEventId, isValidStreamId } from '../codecs/ids.ts';
import type { AbortStreamParams, BeginStreamParams, BeginStreamResult, CommitStreamParams, EventInfo, PutStreamFileParams, StoredStreamTotals } from '../runtime/contracts.ts';
import { NoCapacityError, NotFoundError, StateConflictError, ValidationFailedError } from '../runtime/errors.ts';
import { markRetentionEnded, nextStamp, parseVersion, planSync, retentionDue, retentionOver, withVersion, type EventManifest, type InfoVersion } from '../core/replication.ts';
import { ContentStorage, MAX_STREAM_FILES, MAX_STREAM_FILE_BYTES, STREAM_FILE_RE, type StagedStream, type StoredStream } from '../runtime/storage.ts';

/** Largest chunk of one `putStreamFile` call, decoded (runtime/stream-upload.ts sends 256 KiB). */
export const MAX_UPLOAD_CHUNK_BYTES = 512 * 1024;
/** An upload with no call for this long is dropped with everything it staged. */
export const UPLOAD_IDLE_MS = 120_000;
/** Uploads one node receives at once (a node stopping sends one per stream it encoded). */
export const MAX_UPLOADS = 256;
/** Staging left by a crash is removed at start once this old. */
const STALE_STAGING_MS = 3_600_000;

const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;
const UPLOAD_ID_RE = /^[0-9a-f]{32}$/;

/** Options for specs; production uses the defaults. */
export interface ContentStorageOptions {
  /** See UPLOAD_IDLE_MS. */
  uploadIdleMs?: number;
  /** The clock (ms since the epoch) of versions and retention; specs pass a fake one. */
  now?: () => number;
  /** See ANTI_ENTROPY_MS; 0 turns the periodic catch-up off. */
  antiEntropyMs?: number;
  /** Retention sweep period, ms; default `config.retentionSweepS`; 0 turns it off. */
  retentionSweepMs?: number;
}

/** Broadcast by the storage node that took a write: peers pull the event from `nodeId`. */
export const STORAGE_CHANGED_EVENT = 'jitcast.storage.changed';
/** Every storage node compares digests with every peer this often (heals lost change notices). */
export const ANTI_ENTROPY_MS = 60_000;
/** Pull retries of one change from one peer: back-off 0.5 s, 1 s, 2 s … 30 s, then anti-entropy takes over. */
const PULL_RETRY_MS = [500, 1000, 2000, 4000, 8000, 16_000, 30_000];
/** Bytes per `fetchFile` call (base64 stays well inside NATS's 1 MB message). */
export const FETCH_CHUNK_BYTES = 256 * 1024;
/** Timeout of one replication call to a peer, ms. */
const PEER_CALL_MS = 10_000;

/** `content-storage.changed` payload. */
export interface StorageChanged {
  eventId: string;
  nodeId: string;
}

/** `content-storage.fetchFile` reply: a chunk of a file, base64, with the file's size and mtime (a changed file restarts the fetch). */
export interface FetchedChunk {
  data: string;
  size: number;
  mtimeMs: number;
}

/** One stream being received over the broker: staged in every center of this node. */
interface Upload {
  id: string;
  eventId: string;
  streamId: string;
  /** The sending node, for logs. */
  from: string;
  stages: StagedStream[];
  timer?: NodeJS.Timeout;
}

/** `content-storage.putStream` parameters. */
export interface PutStreamParams {
  eventId: string;
  streamId: string;
  /** The encoder's output directory; must lie under `<dataDir>/live/`. */
  dir: string;
}

/** `content-storage.readStreamFile` parameters. */
export interface ReadStreamFileParams {
  eventId: string;
  streamId: string;
  file: string;
}

function requireEventId(eventId: unknown): string {
  if (!isValidEventId(eventId)) throw new ValidationFailedError(`invalid event ID ${JSON.stringify(eventId)}`, { eventId: 'must be 8 digits with a valid check digit' });
  return eventId;
}

function requireStreamId(eventId: string, streamId: unknown): string {
  if (!isValidStreamId(streamId) || !streamId.startsWith(eventId + '-')) {
    throw new ValidationFailedError(`invalid stream ID ${JSON.stringify(streamId)} for event ${eventId}`, { streamId: 'must be a stream ID of this event' });
  }
  return streamId;
}

/** The upload a call names; NotFoundError once it is committed, aborted or dropped as idle. */
function uploadOf(uploads: Map<string, Upload>, uploadId: unknown): Upload {
  if (typeof uploadId !== 'string' || !UPLOAD_ID_RE.test(uploadId)) throw new ValidationFailedError('invalid upload ID', { uploadId: 'must be the ID beginStream answered' });
  const u = uploads.get(uploadId);
  if (!u) throw new NotFoundError(`no stream upload ${uploadId} on this node (finished, aborted or idle too long)`);
  return u;
}

/** A base64 chunk of at most MAX_UPLOAD_CHUNK_BYTES, decoded. */
function chunkOf(data: unknown): Buffer {
  if (typeof data !== 'string' || data.length % 4 !== 0 || data.length > (MAX_UPLOAD_CHUNK_BYTES / 3) * 4 + 4 || !BASE64_RE.test(data)) {
    throw new ValidationFailedError(`invalid chunk: base64 of at most ${MAX_UPLOAD_CHUNK_BYTES} bytes expected`, { data: 'must be base64' });
  }
  const buf = Buffer.from(data, 'base64');
  if (buf.length > MAX_UPLOAD_CHUNK_BYTES) throw new ValidationFailedError(`chunk over ${MAX_UPLOAD_CHUNK_BYTES} bytes`, { data: 'too large' });
  return buf;
}

/** The `files` manifest of commitStream: at most MAX_STREAM_FILES valid names, each with a size in range. */
function manifestOf(files: unknown): Record<string, number> {
  if (!files || typeof files !== 'object' || Array.isArray(files)) throw new ValidationFailedError('files is required', { files: 'must map each file name to its size' });
  const entries = Object.entries(files as Record<string, unknown>);
  if (entries.length > MAX_STREAM_FILES) throw new ValidationFailedError(`at most ${MAX_STREAM_FILES} files`, { files: 'too many files' });
  const out: Record<string, number> = {};
  for (const [name, size] of entries) {
    if (!STREAM_FILE_RE.test(name) || !Number.isSafeInteger(size) || (size as number) < 0 || (size as number) > MAX_STREAM_FILE_BYTES) {
      throw new ValidationFailedError(`invalid file entry ${JSON.stringify(name)}: ${JSON.stringify(size)}`, { files: 'names must be stream file names, sizes 0-16 MiB' });
    }
    out[name] = size as number;
  }
  return out;
}

/** A digest of one event's manifest: version, and every stream file with its size. */
function digestOf(m: EventManifest): string {
  const h = createHash('sha1');
  h.update(m.hasInfo ? (m.version ? `${m.version.updatedMs}.${m.version.stamp}.${m.version.nodeId}` : 'unversioned') : '-');
  for (const streamId of Object.keys(m.streams).sort()) {
    const st = m.streams[streamId]!;
    h.update(`|${streamId}:${st.final ? 'f' : 'p'}`);
    for (const f of Object.keys(st.files).sort()) h.update(`,${f}=${st.files[f]}`);
  }
  return h.digest('base64url');
}

/** The content-storage service over every storage center in `config.storageCenters`. */
export function createContentStorageService(config: JitcastConfig, options: ContentStorageOptions = {}): ServiceSchema {
  const centers = config.storageCenters.map((c) => new ContentStorage(join(config.dataDir, 'storage', c)));
  const liveRoot = resolve(config.dataDir, 'live');
  const uploadIdleMs = options.uploadIdleMs ?? UPLOAD_IDLE_MS;
  const uploads = new Map<string, Upload>();
  const now = options.now ?? Date.now;
  const antiEntropyMs = options.antiEntropyMs ?? ANTI_ENTROPY_MS;
  const retentionSweepMs = options.retentionSweepMs ?? config.retentionSweepS * 1000;
  const primary = centers[0]!;
  /** Highest version stamp this node has seen (core/replication.ts nextStamp). */
  let lastStamp = 0;
  /** Peers seen in the registry, to catch up with each one that (re)joins. */
  let knownPeers = new Set<string>();
  /** Pulls under way or waiting for a retry, by `peer|eventId`: one at a time per pair. */
  const pulls = new Map<string, { again: boolean; timer?: NodeJS.Timeout }>();
  /** Syncs of one event run one after another (a compare and its writes never interleave). */
  const eventLocks = new Map<string, Promise<unknown>>();
  const timers: NodeJS.Timeout[] = [];
  let stopped = false;
  /** Digests by event, dropped on every write to the event: catch-up then costs a listing, not a stat of every file. */
  const digestCache = new Map<string, string>();

  function locked<T>(eventId: string, fn: () => Promise<T>): Promise<T> {
    const prev = eventLocks.get(eventId) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => {});
    eventLocks.set(eventId, tail);
    void tail.then(() => {
      if (eventLocks.get(eventId) === tail) eventLocks.delete(eventId);
    });
    return run;
  }

  function seen(v: InfoVersion | undefined): void {
    if (v && v.stamp > lastStamp) lastStamp = v.stamp;
  }

  /** Other nodes that serve content-storage now. */
  function peersOf(broker: ServiceBroker): string[] {
    const list = broker.registry.getServiceList({ onlyAvailable: true, withActions: false }) as Array<{ name: string; nodeID: string }>;
    return [...new Set(list.filter((x) => x.name === 'content-storage' && x.nodeID !== broker.nodeID).map((x) => x.nodeID))].sort();
  }

  /** This node's view of one event: from its first center (every center of a node gets every write). */
  async function eventManifest(eventId: string): Promise<EventManifest> {
    const xml = await primary.readEventInfo(eventId);
    let ended = false;
    if (xml !== undefined) {
      try {
        ended = retentionOver(parseEventInfo(xml), now());
      } catch {
        // An unreadable copy counts as older than any good one (no version), so a peer's replaces it.
      }
    }
    return { hasInfo: xml !== undefined, version: xml === undefined ? undefined : parseVersion(xml), retentionEnded: ended, streams: await primary.streamManifest(eventId) };
  }

  /** Stores a versioned event-info.xml in every center unless a newer copy is there; removes streams whose retention is over. */
  async function applyEventInfo(eventId: string, xml: string, logger: Logger): Promise<boolean> {
    seen(parseVersion(xml));
    digestCache.delete(eventId);
    let wrote = false;
    for (const c of centers) if (await c.writeEventInfoIfNewer(eventId, xml)) wrote = true;
    const info = parseEventInfo((await primary.readEventInfo(eventId)) ?? xml);
    if (retentionOver(info, now())) {
      let removed = false;
      for (const c of centers) if (await c.removeStreams(eventId)) removed = true;
      digestCache.delete(eventId);
      if (removed) logger.info(`retention over: stream files removed [event:${eventId} archiveDays:${info.archiveDays} root:${primary.root}]`);
    }
    return wrote;
  }

  /** A write from a client: versioned above anything seen for this event, stored here, announced to peers. */
  async function putInfo(broker: ServiceBroker, info: EventInfo, logger: Logger): Promise<void> {
    const eventId = requireEventId(info.eventId);
    const xml = serializeEventInfo(info);
    await locked(eventId, async () => {
      const stored = await primary.readEventInfo(eventId);
      const prev = stored === undefined ? undefined : parseVersion(stored);
      seen(prev);
      const updatedMs = Math.max(Date.parse(info.updatedAt) || 0, prev?.updatedMs ?? 0);
      lastStamp = nextStamp(lastStamp, now());
      await applyEventInfo(eventId, withVersion(xml, { updatedMs, stamp: lastStamp, nodeId: broker.nodeID }), logger);
    });
    announce(broker, eventId, logger);
  }

  /**
   * A new reservation's event-info.xml: claims the ID in the first center (StateConflictError when it
   * is taken), then writes the versioned copy there and to the other centers, and announces it. The
   * reservation's hot path: no read, no parse, no retention check (a new event has no streams).
   */
  async function createInfo(broker: ServiceBroker, info: EventInfo, logger: Logger): Promise<void> {
    const eventId = requireEventId(info.eventId);
    const xml = serializeEventInfo(info);
    if (!(await primary.claimEvent(eventId))) throw new StateConflictError(`event ID ${eventId} is taken`, { eventId: 'taken' });
    await locked(eventId, async () => {
      lastStamp = nextStamp(lastStamp, now());
      const versioned = withVersion(xml, { updatedMs: Date.parse(info.updatedAt) || 0, stamp: lastStamp, nodeId: broker.nodeID });
      digestCache.delete(eventId);
      try {
        await primary.writeNewEventInfo(eventId, versioned);
      } catch (err) {
        await primary.releaseClaim(eventId);
        throw err;
      }
      for (const c of centers.slice(1)) await c.writeEventInfoIfNewer(eventId, versioned);
    });
    announce(broker, eventId, logger);
  }

  function announce(broker: ServiceBroker, eventId: string, logger: Logger): void {
    if (peersOf(broker).length === 0) return;
    broker.broadcast(STORAGE_CHANGED_EVENT, { eventId, nodeId: broker.nodeID } satisfies StorageChanged).catch((err: Error) => logger.warn(`change notice not sent [event:${eventId}] ${err.message}`));
  }

  /** Fetches one whole file from a peer, chunk by chunk; starts over if it changes meanwhile (a growing playlist). */
  async function fetchWhole(broker: ServiceBroker, peer: string, eventId: string, streamId: string, file: string): Promise<Buffer> {
    for (let attempt = 0; ; attempt++) {
      const parts: Buffer[] = [];
      let offset = 0;
      let first: FetchedChunk | undefined;
      let changed = false;
      for (;;) {
        const r = await broker.call<FetchedChunk, unknown>('content-storage.fetchFile', { eventId, streamId, file, offset, length: FETCH_CHUNK_BYTES }, { nodeID: peer, timeout: PEER_CALL_MS });
        first ??= r;
        if (r.size !== first.size || r.mtimeMs !== first.mtimeMs) {
          changed = true;
          break;
        }
        const data = Buffer.from(r.data, 'base64');
        parts.push(data);
        offset += data.length;
        if (offset >= r.size || data.length === 0) break;
      }
      if (!changed) return Buffer.concat(parts);
      if (attempt >= 3) throw new StateConflictError(`file kept changing while fetched [event:${eventId} stream:${streamId} file:${file} from:${peer}]`);
    }
  }

  /** Pulls from `peer` whatever this node lacks of one event (core/replication.ts planSync). */
  async function syncEvent(broker: ServiceBroker, peer: string, eventId: string, logger: Logger): Promise<number> {
    return locked(eventId, async () => {
      const theirs = await broker.call<EventManifest, { eventId: string }>('content-storage.manifest', { eventId }, { nodeID: peer, timeout: PEER_CALL_MS });
      const mine = await eventManifest(eventId);
      const plan = planSync(mine, theirs);
      let n = 0;
      if (plan.takeInfo) {
        const xml = await broker.call<string, { eventId: string }>('content-storage.eventInfoRaw', { eventId }, { nodeID: peer, timeout: PEER_CALL_MS });
        if (await applyEventInfo(eventId, xml, logger)) n++;
      } else if (plan.removeStreams) {
        for (const c of centers) await c.removeStreams(eventId);
        logger.info(`retention over: stream files removed [event:${eventId} root:${primary.root}]`);
      }
      digestCache.delete(eventId);
      const byStream = new Map<string, string[]>();
      for (const f of plan.files) byStream.set(f.streamId, [...(byStream.get(f.streamId) ?? []), f.file]);
      for (const [streamId, files] of byStream) {
        const stages: StagedStream[] = [];
        try {
          for (const c of centers) stages.push(await c.stageStream(eventId, streamId));
          for (const file of files) {
            const data = await fetchWhole(broker, peer, eventId, streamId, file);
            for (const st of stages) await st.append(file, 0, data);
          }
          let copied = 0;
          for (const st of stages) copied = (await st.commit()).copied;
          n += copied;
        } finally {
          await Promise.all(stages.map((st) => st.abort()));
          digestCache.delete(eventId);
        }
      }
      // Uploads as they go replicate every few seconds: log event-info and final streams, debug the rest.
      const finalStream = plan.files.some((f) => f.file === 'index.m3u8' && theirs.streams[f.streamId]?.final);
      if (n > 0) logger[plan.takeInfo || finalStream ? 'info' : 'debug'](`replicated [event:${eventId} from:${peer} files:${n}${plan.takeInfo ? ' event-info' : ''}${finalStream ? ' final' : ''}]`);
      return n;
    });
  }

  /** Pulls one change from one peer, retrying with back-off while the peer stays in the registry. */
  function pull(broker: ServiceBroker, peer: string, eventId: string, logger: Logger, attempt = 0): void {
    const key = `${peer}|${eventId}`;
    const running = pulls.get(key);
    if (running && attempt === 0) {
      running.again = true; // a newer change came while one is being pulled: pull once more after it
      return;
    }
    const entry = running ?? { again: false };
    pulls.set(key, entry);
    entry.again = false;
    syncEvent(broker, peer, eventId, logger).then(
      () => {
        if (entry.again && !stopped) {
          pulls.delete(key);
          pull(broker, peer, eventId, logger);
        } else pulls.delete(key);
      },
      (err: Error) => {
        const delay = PULL_RETRY_MS[attempt];
        if (stopped || delay === undefined || !peersOf(broker).includes(peer)) {
          pulls.delete(key);
          logger.warn(`replication pull given up, catch-up will retry [event:${eventId} from:${peer} attempts:${attempt + 1}] ${err.message}`);
          return;
        }
        entry.timer = setTimeout(() => pull(broker, peer, eventId, logger, attempt + 1), delay);
        entry.timer.unref();
      },
    );
  }

  /** Per-event digests of this node (version and every file with its size): equal digests need no sync. */
  async function digests(): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const eventId of await primary.listEventIds()) {
      let d = digestCache.get(eventId);
      if (d === undefined) {
        d = digestOf(await eventManifest(eventId));
        digestCache.set(eventId, d);
      }
      out[eventId] = d;
    }
    return out;
  }

  /** Catch-up with one peer: every event whose digest differs is synced from it. */
  async function catchUp(broker: ServiceBroker, peer: string, logger: Logger): Promise<number> {
    const theirs = await broker.call<Record<string, string>, Record<string, never>>('content-storage.digests', {}, { nodeID: peer, timeout: PEER_CALL_MS * 3 });
    const mine = await digests();
    let events = 0;
    for (const [eventId, d] of Object.entries(theirs)) {
      if (!isValidEventId(eventId) || mine[eventId] === d) continue;
      try {
        if ((await syncEvent(broker, peer, eventId, logger)) > 0) events++;
      } catch (err) {
        logger.warn(`catch-up of one event failed [event:${eventId} from:${peer}] ${(err as Error).message}`);
      }
    }
    if (events > 0) logger.info(`caught up [from:${peer} events:${events}]`);
    return events;
  }

  /** Removes archives whose retention is over; only the storage node with the lowest ID sweeps. Idempotent. */
  async function sweepRetention(broker: ServiceBroker, logger: Logger): Promise<string[]> {
    const swept: string[] = [];
    const t = now();
    for (const eventId of await primary.listEventIds()) {
      const xml = await primary.readEventInfo(eventId);
      if (xml === undefined) continue;
      let info: EventInfo;
      try {
        info = parseEventInfo(xml);
      } catch {
        continue;
      }
      if (retentionDue(info, t)) {
        await putInfo(broker, markRetentionEnded(info, t), logger);
        swept.push(eventId);
        logger.info(`retention ended: archive removed [event:${eventId} archiveDays:${info.archiveDays} endedAt:${info.endedAt ?? '-'}]`);
        // The event actor drops the archive from what it shows (API, attendee page); storage holds the truth meanwhile.
        await broker.call('event.retentionEnded', { eventId }).catch((err: Error) => logger.warn(`event actor not told of the retention's end [event:${eventId}] ${err.message}`));
      } else if (retentionOver(info, t) && Object.keys(await primary.streamManifest(eventId)).length > 0) {
        await applyEventInfo(eventId, xml, logger); // marked earlier, files still here (a crash between the two)
      }
    }
    return swept;
  }

  function isSweeper(broker: ServiceBroker): boolean {
    const peers = peersOf(broker);
    return peers.length === 0 || broker.nodeID < peers[0]!;
  }

  /** (Re)starts an upload's idle timer: a sender that died mid-upload must not leave staging behind. */
  function arm(u: Upload, logger: Logger): void {
    if (u.timer) clearTimeout(u.timer);
    u.timer = setTimeout(() => {
      logger.warn(`stream upload dropped, idle ${uploadIdleMs} ms [event:${u.eventId} stream:${u.streamId} from:${u.from}]`);
      void drop(u);
    }, uploadIdleMs);
    u.timer.unref();
  }

  /** Forgets an upload and removes what it staged (idempotent). */
  async function drop(u: Upload): Promise<void> {
    if (u.timer) clearTimeout(u.timer);
    uploads.delete(u.id);
    await Promise.all(u.stages.map((s) => s.abort()));
  }

  return {
    name: 'content-storage',
    actions: {
      putEventInfo: {
        async handler(ctx: Context<{ info: EventInfo }>): Promise<{ ok: true }> {
          const info = ctx.params?.info;
          if (!info || typeof info !== 'object') throw new ValidationFailedError('info is required', { info: 'required' });
          requireEventId(info.eventId);
          // Serializing validates the shape; the same versioned bytes go to every center, here and on every peer.
          await putInfo(this.broker, info, this.logger);
          return { ok: true };
        },
      },

      /** A new event's event-info.xml; 409 when its ID is taken here (the reservation draws another). */
      createEventInfo: {
        async handler(ctx: Context<{ info: EventInfo }>): Promise<{ ok: true }> {
          const info = ctx.params?.info;
          if (!info || typeof info !== 'object') throw new ValidationFailedError('info is required', { info: 'required' });
          await createInfo(this.broker, info, this.logger);
          return { ok: true };
        },
      },

      getEventInfo: {
        async handler(ctx: Context<{ eventId: string }>): Promise<EventInfo> {
          const eventId = requireEventId(ctx.params?.eventId);
          for (const c of centers) {
            const xml = await c.readEventInfo(eventId);
            if (xml === undefined) continue;
            try {
              return parseEventInfo(xml);
            } catch (err) {
              // A damaged copy in one center must not hide a good one in the next.
              if (!(err instanceof EventInfoParseError)) throw err;
              this.logger.warn(`unreadable event-info.xml [event:${eventId} root:${c.root}] ${err.message}`);
            }
          }
          throw new NotFoundError(`no event ${eventId}`);
        },
      },

      listEventIds: {
        async handler(): Promise<string[]> {
          const all = new Set<string>();
          for (const c of centers) for (const id of await c.listEventIds()) all.add(id);
          return [...all].sort();
        },
      },

      listStreams: {
        async handler(ctx: Context<{ eventId: string }>): Promise<StoredStream[]> {
          const eventId = requireEventId(ctx.params?.eventId);
          const byId = new Map<string, Set<string>>();
          for (const c of centers) {
            for (const s of await c.listStreams(eventId)) {
              const files = byId.get(s.streamId) ?? new Set<string>();
              s.files.forEach((f) => files.add(f));
              byId.set(s.streamId, files);
            }
          }
          return [...byId.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([streamId, files]) => ({ streamId, files: [...files].sort() }));
        },
      },

      putStream: {
        async handler(ctx: Context<PutStreamParams>): Promise<{ files: number; bytes: number }> {
          const eventId = requireEventId(ctx.params?.eventId);
          const streamId = requireStreamId(eventId, ctx.params?.streamId);
          const dir = ctx.params?.dir;
          if (typeof dir !== 'string' || dir === '') throw new ValidationFailedError('dir is required', { dir: 'required' });
          const src = resolve(dir);
          // Only encoder output may be copied in: anything else could be read back through readStreamFile.
          if (!src.startsWith(liveRoot + sep)) throw new ValidationFailedError(`dir must lie under ${liveRoot}`, { dir: 'must be an encoder output directory' });
          let result = { files: 0, bytes: 0, copied: 0 };
          for (const c of centers) result = await c.copyStream(eventId, streamId, src);
          this.logger.info(`stream stored [event:${eventId} stream:${streamId} files:${result.files} bytes:${result.bytes} copied:${result.copied}]`);
          digestCache.delete(eventId);
          if (result.copied > 0) announce(this.broker, eventId, this.logger);
          return { files: result.files, bytes: result.bytes };
        },
      },

      /** Opens an upload of a stream from another node's encoder; the caller pins the rest to `nodeId`. */
      beginStream: {
        async handler(ctx: Context<BeginStreamParams>): Promise<BeginStreamResult & { have: Record<string, number> }> {
          const eventId = requireEventId(ctx.params?.eventId);
          const streamId = requireStreamId(eventId, ctx.params?.streamId);
          if (uploads.size >= MAX_UPLOADS) throw new NoCapacityError(`too many stream uploads at once [node:${this.broker.nodeID} uploads:${uploads.size}]`);
          const u: Upload = { id: randomBytes(16).toString('hex'), eventId, streamId, from: ctx.nodeID ?? '?', stages: [] };
          uploads.set(u.id, u);
          arm(u, this.logger);
          try {
            for (const c of centers) u.stages.push(await c.stageStream(eventId, streamId));
          } catch (err) {
            await drop(u);
            throw err;
          }
          // What this node already holds of the stream, so an encoder uploading as it goes sends only the rest.
          const have = await primary.streamFileSizes(eventId, streamId);
          return { uploadId: u.id, nodeId: this.broker.nodeID, have };
        },
      },

      /** One chunk of one file of an upload, written to every center's staging directory. */
      putStreamFile: {
        async handler(ctx: Context<PutStreamFileParams>): Promise<{ size: number }> {
          const u = uploadOf(uploads, ctx.params?.uploadId);
          const file = ctx.params?.file;
          const offset = ctx.params?.offset;
          if (typeof file !== 'string' || !STREAM_FILE_RE.test(file)) {
            throw new ValidationFailedError(`invalid stream file name ${JSON.stringify(file)}`, { file: 'must be 1-64 of A-Z a-z 0-9 _ - with .m3u8, .ts or .json' });
          }
          if (!Number.isSafeInteger(offset) || offset < 0) throw new ValidationFailedError('offset must be a byte count', { offset: 'must be an integer >= 0' });
          const data = chunkOf(ctx.params?.data);
          arm(u, this.logger);
          let size = 0;
          try {
            for (const s of u.stages) size = await s.append(file, offset, data);
          } catch (err) {
            // One bad chunk spoils the upload: the sender starts over rather than storing a stream with a hole.
            await drop(u);
            throw err;
          }
          return { size };
        },
      },

      /** Checks the upload against the sender's file list and stores it in every center at once. */
      commitStream: {
        async handler(ctx: Context<CommitStreamParams>): Promise<StoredStreamTotals> {
          const u = uploadOf(uploads, ctx.params?.uploadId);
          const expected = manifestOf(ctx.params?.files);
          if (u.timer) clearTimeout(u.timer);
          uploads.delete(u.id);
          let result = { files: 0, bytes: 0, copied: 0 };
          try {
            for (const s of u.stages) result = await s.commit(expected);
          } catch (err) {
            this.logger.error(`stream not stored [event:${u.eventId} stream:${u.streamId} from:${u.from}] ${(err as Error).message}`);
            throw err;
          } finally {
            await Promise.all(u.stages.map((s) => s.abort()));
          }
          // Uploads as they go commit every few seconds: log the first and the final one, debug the rest.
          const final = await primary.readFile(u.eventId, u.streamId, 'index.m3u8').then((b) => b.toString('utf8').trimEnd().endsWith('#EXT-X-ENDLIST'), () => false);
          const line = `stream stored [event:${u.eventId} stream:${u.streamId} files:${result.files} bytes:${result.bytes} copied:${result.copied} final:${final} from:${u.from}]`;
          if (final || result.files === result.copied) this.logger.info(line);
          else this.logger.debug(line);
          digestCache.delete(u.eventId);
          if (result.copied > 0) announce(this.broker, u.eventId, this.logger);
          return { files: result.files, bytes: result.bytes };
        },
      },

      /** Drops an upload the sender gave up on; unknown uploads are fine (idempotent). */
      abortStream: {
        async handler(ctx: Context<AbortStreamParams>): Promise<{ ok: true }> {
          const id = ctx.params?.uploadId;
          const u = typeof id === 'string' ? uploads.get(id) : undefined;
          if (u) {
            // An upload as it goes that found storage up to date sends nothing and aborts: not worth a warning.
            const empty = u.stages.every((st) => Object.keys(st.files()).length === 0);
            await drop(u);
            if (!empty) this.logger.warn(`stream upload aborted by its sender [event:${u.eventId} stream:${u.streamId} from:${u.from}]`);
          }
          return { ok: true };
        },
      },

      /** What this node holds of one event (replication: peers compare it with theirs). */
      manifest: {
        async handler(ctx: Context<{ eventId: string }>): Promise<EventManifest> {
          return eventManifest(requireEventId(ctx.params?.eventId));
        },
      },

      /** Per-event digests of everything this node holds (catch-up compares them first). */
      digests: {
        async handler(): Promise<Record<string, string>> {
          return digests();
        },
      },

      /** event-info.xml as stored, with its version line: replicas copy these exact bytes. */
      eventInfoRaw: {
        async handler(ctx: Context<{ eventId: string }>): Promise<string> {
          const eventId = requireEventId(ctx.params?.eventId);
          const xml = await primary.readEventInfo(eventId);
          if (xml === undefined) throw new NotFoundError(`no event ${eventId}`);
          return xml;
        },
      },

      /** A chunk of one stored file, base64, for a peer that replicates it. */
      fetchFile: {
        async handler(ctx: Context<ReadStreamFileParams & { offset: number; length: number }>): Promise<FetchedChunk> {
          const eventId = requireEventId(ctx.params?.eventId);
          const streamId = requireStreamId(eventId, ctx.params?.streamId);
          const { file, offset, length } = ctx.params;
          if (typeof file !== 'string' || !STREAM_FILE_RE.test(file)) throw new ValidationFailedError(`invalid stream file name ${JSON.stringify(file)}`, { file: 'must be a stream file name' });
          if (!Number.isSafeInteger(offset) || offset < 0) throw new ValidationFailedError('offset must be a byte count', { offset: 'must be an integer >= 0' });
          const len = Number.isSafeInteger(length) && length > 0 ? Math.min(length, MAX_UPLOAD_CHUNK_BYTES) : FETCH_CHUNK_BYTES;
          const r = await primary.readFileRange(eventId, streamId, file, offset, len);
          return { data: r.data.toString('base64'), size: r.size, mtimeMs: r.mtimeMs };
        },
      },

      /** Runs the retention sweep now on this node (ops and specs; the timer runs it on the lowest storage node). */
      sweepRetention: {
        async handler(): Promise<{ swept: string[] }> {
          return { swept: await sweepRetention(this.broker, this.logger) };
        },
      },

      /** Catches up with every peer now (ops and specs; joins and the timer do it on their own). */
      catchUp: {
        async handler(): Promise<{ events: number }> {
          let events = 0;
          for (const peer of peersOf(this.broker)) events += await catchUp(this.broker, peer, this.logger);
          return { events };
        },
      },

      readStreamFile: {
        async handler(ctx: Context<ReadStreamFileParams>): Promise<Buffer> {
          const eventId = requireEventId(ctx.params?.eventId);
          const streamId = requireStreamId(eventId, ctx.params?.streamId);
          const file = ctx.params?.file;
          if (typeof file !== 'string' || !STREAM_FILE_RE.test(file)) {
            throw new ValidationFailedError(`invalid stream file name ${JSON.stringify(file)}`, { file: 'must be 1-64 of A-Z a-z 0-9 _ - with .m3u8, .ts or .json' });
          }
          for (const c of centers) {
            if (await c.hasFile(eventId, streamId, file)) return c.readFile(eventId, streamId, file);
          }
          throw new NotFoundError(`no stored file ${file} [event:${eventId} stream:${streamId}]`);
        },
      },
    },
    events: {
      [STORAGE_CHANGED_EVENT]: {
        handler(ctx: Context<StorageChanged>) {
          const { eventId, nodeId } = ctx.params ?? ({} as StorageChanged);
          if (stopped || nodeId === this.broker.nodeID || typeof nodeId !== 'string' || !isValidEventId(eventId)) return;
          pull(this.broker, nodeId, eventId, this.logger);
        },
      },
      /** A storage node (re)joined: catch up with it (it may hold writes taken while we were apart). */
      '$services.changed'() {
        if (stopped) return;
        const now = new Set(peersOf(this.broker));
        const fresh = [...now].filter((p) => !knownPeers.has(p));
        knownPeers = now;
        for (const peer of fresh) {
          catchUp(this.broker, peer, this.logger).catch((err: Error) => this.logger.warn(`catch-up failed [from:${peer}] ${err.message}`));
        }
      },
    },
    async started() {
      knownPeers = new Set();
      if (antiEntropyMs > 0) {
        const t = setInterval(() => {
          for (const peer of peersOf(this.broker)) catchUp(this.broker, peer, this.logger).catch((err: Error) => this.logger.warn(`catch-up failed [from:${peer}] ${err.message}`));
        }, antiEntropyMs);
        t.unref();
        timers.push(t);
      }
      if (retentionSweepMs > 0) {
        const t = setInterval(() => {
          if (!isSweeper(this.broker)) return;
          sweepRetention(this.broker, this.logger).catch((err: Error) => this.logger.warn(`retention sweep failed ${err.message}`));
        }, retentionSweepMs);
        t.unref();
        timers.push(t);
      }
      for (const c of centers) {
        const n = await c.sweepStaging(STALE_STAGING_MS).catch((err: Error) => {
          this.logger.warn(`staging sweep failed [root:${c.root}] ${err.message}`);
          return 0;
        });
        if (n > 0) this.logger.info(`stale stream uploads removed [root:${c.root} count:${n}]`);
      }
    },
    async stopped() {
      stopped = true;
      for (const t of timers.splice(0)) clearInterval(t);
      for (const p of pulls.values()) if (p.timer) clearTimeout(p.timer);
      pulls.clear();
      await Promise.all([...uploads.values()].map((u) => drop(u)));
    },
  };
}
