/**
 * `content-storage` actor (DESIGN.md "content storage"): event-info.xml and stored stream files, over
 * one ContentStorage per storage center this node serves (`<dataDir>/storage/<center>/`). Writes go to
 * every center (replication between nodes is a later issue); reads come from the first that has it.
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
import type { Context, Logger, ServiceSchema } from 'moleculer';
import type { JitcastConfig } from '../cluster.config.ts';
import { EventInfoParseError, parseEventInfo, serializeEventInfo } from '../codecs/event-info.ts';
import { isValidEventId, isValidStreamId } from '../codecs/ids.ts';
import type { AbortStreamParams, BeginStreamParams, BeginStreamResult, CommitStreamParams, EventInfo, PutStreamFileParams, StoredStreamTotals } from '../runtime/contracts.ts';
import { NoCapacityError, NotFoundError, ValidationFailedError } from '../runtime/errors.ts';
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

/** The content-storage service over every storage center in `config.storageCenters`. */
export function createContentStorageService(config: JitcastConfig, options: ContentStorageOptions = {}): ServiceSchema {
  const centers = config.storageCenters.map((c) => new ContentStorage(join(config.dataDir, 'storage', c)));
  const liveRoot = resolve(config.dataDir, 'live');
  const uploadIdleMs = options.uploadIdleMs ?? UPLOAD_IDLE_MS;
  const uploads = new Map<string, Upload>();

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
          const eventId = requireEventId(info.eventId);
          // Serializing validates the shape; the same bytes go to every center.
          const xml = serializeEventInfo(info);
          await Promise.all(centers.map((c) => c.writeEventInfo(eventId, xml)));
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
          return { files: result.files, bytes: result.bytes };
        },
      },

      /** Opens an upload of a stream from another node's encoder; the caller pins the rest to `nodeId`. */
      beginStream: {
        async handler(ctx: Context<BeginStreamParams>): Promise<BeginStreamResult> {
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
          return { uploadId: u.id, nodeId: this.broker.nodeID };
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
          this.logger.info(`stream stored [event:${u.eventId} stream:${u.streamId} files:${result.files} bytes:${result.bytes} copied:${result.copied} from:${u.from}]`);
          return { files: result.files, bytes: result.bytes };
        },
      },

      /** Drops an upload the sender gave up on; unknown uploads are fine (idempotent). */
      abortStream: {
        async handler(ctx: Context<AbortStreamParams>): Promise<{ ok: true }> {
          const id = ctx.params?.uploadId;
          const u = typeof id === 'string' ? uploads.get(id) : undefined;
          if (u) {
            await drop(u);
            this.logger.warn(`stream upload aborted by its sender [event:${u.eventId} stream:${u.streamId} from:${u.from}]`);
          }
          return { ok: true };
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
    async started() {
      for (const c of centers) {
        const n = await c.sweepStaging(STALE_STAGING_MS).catch((err: Error) => {
          this.logger.warn(`staging sweep failed [root:${c.root}] ${err.message}`);
          return 0;
        });
        if (n > 0) this.logger.info(`stale stream uploads removed [root:${c.root} count:${n}]`);
      }
    },
    async stopped() {
      await Promise.all([...uploads.values()].map((u) => drop(u)));
    },
  };
}
