/**
 * `content-storage` actor (DESIGN.md "content storage"): event-info.xml and stored stream files, over
 * one ContentStorage per storage center this node serves (`<dataDir>/storage/<center>/`). Writes go to
 * every center (replication between nodes is a later issue); reads come from the first that has it.
 */
import { join, resolve, sep } from 'node:path';
import type { Context, ServiceSchema } from 'moleculer';
import type { JitcastConfig } from '../cluster.config.ts';
import { EventInfoParseError, parseEventInfo, serializeEventInfo } from '../codecs/event-info.ts';
import { isValidEventId, isValidStreamId } from '../codecs/ids.ts';
import type { EventInfo } from '../runtime/contracts.ts';
import { NotFoundError, ValidationFailedError } from '../runtime/errors.ts';
import { ContentStorage, STREAM_FILE_RE, type StoredStream } from '../runtime/storage.ts';

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

/** The content-storage service over every storage center in `config.storageCenters`. */
export function createContentStorageService(config: JitcastConfig): ServiceSchema {
  const centers = config.storageCenters.map((c) => new ContentStorage(join(config.dataDir, 'storage', c)));
  const liveRoot = resolve(config.dataDir, 'live');

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
  };
}
