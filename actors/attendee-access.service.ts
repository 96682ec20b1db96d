/**
 * Attendee access (DESIGN.md "Attendee access"): checks the signed attendee link with the cluster
 * secret alone (no DB, no storage), answers the HLS master playlist of every live stream of the
 * event with short-lived auth codes, serves the live and archived stream files behind those codes,
 * the archive as one VOD playlist, a status document and the player page.
 *
 * Live files live on the disk of the node whose encoder writes them (issue 3, files across nodes):
 * they are read from this node's disk when the stream's dataset names this node (or in embedded
 * mode), else fetched with `encoder-port.liveFile` from the stream's node and kept in a
 * LiveFileCache (segments until pushed out, playlists for half a second, one fetch per file at a
 * time), so the broker carries each segment once however many listeners there are.
 */
import { randomBytes } from 'node:crypto';
import type { Context, ServiceSchema } from 'moleculer';
import type { JitcastConfig } from '../cluster.config.ts';
import type { EventStatus, EventView, StreamDataset } from '../runtime/contracts.ts';
import { ForbiddenError, NotFoundError } from '../runtime/errors.ts';
import { TokenError, passwordMatches, signAuthCode, verifyAuthCode, verifyToken, type AccessClaims } from '../codecs/token.ts';
import { eventIdOfStream, isValidStreamId } from '../codecs/ids.ts';
import { addQueryToSegments, archivePlaylist, masterPlaylist, parseMediaPlaylist, serializeMediaPlaylist, sliceSegments, type MediaPlaylist } from '../codecs/hls.ts';
import { errorPageCsp, playerPageCsp, renderErrorPage, renderPlayerPage } from '../web/player-page.ts';
import { LIVE_FILE_RE, LiveFileCache, asBuffer, readLiveFile } from '../runtime/live-files.ts';
import { storageOf } from '../runtime/storage-client.ts';

/** Tolerance (s) on archive in/out points, which are EXTINF sums rounded to the millisecond. */
const SLICE_EPSILON_S = 0.0005;

/** Files of an archived stream an attendee may fetch: segments only (the playlist comes rebuilt via `archive`). */
const ARCHIVE_FILE_RE = /^seg\d{5}\.ts$/;
const PLAYLIST_TYPE = 'application/vnd.apple.mpegurl';
/** Header the player page sends for password-protected events. */
export const PASSWORD_HEADER = 'x-event-password';

/** `status` answer: what the player page needs to pick its state. */
export interface AttendeeStatus {
  eventId: string;
  title: string | null;
  status: EventStatus | 'unknown';
  startsAt: string | null;
  live: boolean;
  archiveReady: boolean;
  role: AccessClaims['r'];
}

/** Tuning knobs for specs; production uses the defaults. */
export interface AttendeeAccessOptions {
  /** How long status/page wait for the event actor before answering from the token alone. Default 1500 ms. */
  eventTimeoutMs?: number;
  /** Clock in unix seconds. Default the wall clock. */
  nowS?: () => number;
  /** Bytes of live files fetched from other nodes kept in memory. Default 64 MiB (LIVE_CACHE_BYTES). */
  liveCacheBytes?: number;
  /** How long a live playlist fetched from another node is reused, ms. Default 500 (LIVE_PLAYLIST_TTL_MS). */
  livePlaylistTtlMs?: number;
  /** Timeout of one `encoder-port.liveFile` fetch, ms. Default 3000: a slower node is treated as gone. */
  liveFetchTimeoutMs?: number;
}

interface TokenParams {
  token: string;
}
interface FileParams {
  streamId: string;
  file: string;
  a?: string;
}

type Meta = {
  $statusCode?: number;
  $responseType?: string;
  $responseHeaders?: Record<string, string>;
  /** Request headers, when the gateway passes them on (lower-case names). */
  headers?: Record<string, string | string[] | undefined>;
  /** The X-Event-Password header, when the gateway passes it on by itself. */
  eventPassword?: string;
};
type Ctx<P> = Context<P, Meta>;

const TOKEN_MESSAGES: Record<TokenError['code'], string> = {
  TOKEN_MALFORMED: 'this attendee link is malformed',
  TOKEN_BAD_SIGNATURE: 'this attendee link is not valid: its signature does not match (it may have been altered)',
  TOKEN_EXPIRED: 'this attendee link has expired',
  TOKEN_BAD_CLAIMS: 'this attendee link is malformed (its claims are invalid)',
};

/** Creates the `attendee-access` actor. */
export function createAttendeeAccessService(config: JitcastConfig, options: AttendeeAccessOptions = {}): ServiceSchema {
  const now = options.nowS ?? (() => Math.floor(Date.now() / 1000));
  const eventTimeoutMs = options.eventTimeoutMs ?? 1500;
  const liveFetchTimeoutMs = options.liveFetchTimeoutMs ?? 3000;
  const liveCache = new LiveFileCache({ maxBytes: options.liveCacheBytes, playlistTtlMs: options.livePlaylistTtlMs });

  /** Claims of a token that verifies; ForbiddenError (403) naming the reason otherwise. */
  function claimsOf(token: unknown): AccessClaims {
    try {
      return verifyToken(config.secret, typeof token === 'string' ? token : '', now());
    } catch (err) {
      if (err instanceof TokenError) throw new ForbiddenError(TOKEN_MESSAGES[err.code] ?? err.message);
      throw err;
    }
  }

  /** Claims of a token that verifies and, if it carries a password proof, whose password was sent. */
  function authorize(ctx: Ctx<TokenParams>): AccessClaims {
    const claims = claimsOf(ctx.params.token);
    if (claims.p !== undefined && !passwordMatches(config.secret, claims, passwordOf(ctx.meta) ?? '')) {
      throw new ForbiddenError(`event ${claims.e} needs its password (X-Event-Password)`, 'PASSWORD_REQUIRED');
    }
    return claims;
  }

  function code(eventId: string, streamId: string): string {
    return signAuthCode(config.secret, eventId, streamId, now() + config.authCodeTimeoutS);
  }

  /** Validates a stream file request and its auth code; returns the stream's event ID. */
  function checkFile(params: FileParams, fileRe: RegExp): string {
    const { streamId, file, a } = params;
    if (!isValidStreamId(streamId) || typeof file !== 'string' || !fileRe.test(file)) {
      throw new NotFoundError(`no such stream file`);
    }
    const eventId = eventIdOfStream(streamId);
    if (typeof a !== 'string' || !verifyAuthCode(config.secret, a, eventId, streamId, now())) {
      throw new ForbiddenError(`auth code for stream ${streamId} is missing, wrong or expired`);
    }
    return eventId;
  }

  /**
   * A live file's bytes: from this node's disk when the stream is encoded here (or in embedded mode,
   * where every actor shares one disk), else from the encoder's node through the cache.
   */
  function liveBytes(ctx: Context, stream: StreamDataset, file: string): Promise<Buffer> {
    if (!config.natsUrl || stream.nodeId === config.nodeId) return readLiveFile(config.dataDir, stream.streamId, file);
    return liveCache.get(stream.streamId, file, () => fetchLiveFile(ctx, stream.nodeId, stream.streamId, file));
  }

  async function fetchLiveFile(ctx: Context, nodeId: string, streamId: string, file: string): Promise<Buffer> {
    try {
      return asBuffer(await ctx.call('encoder-port.liveFile', { streamId, file }, { nodeID: nodeId, timeout: liveFetchTimeoutMs }));
    } catch (err) {
      if (err instanceof NotFoundError) throw new NotFoundError(err.message || `stream ${streamId} has no ${file} on node ${nodeId}`);
      // The encoder's node is gone, slow or refuses: for the listener the stream is dead, and a 404
      // moves the player to a redundant stream at once (FIELD-NOTES) where a 500 or 504 would not.
      ctx.service?.logger.warn(`live file fetch failed [stream:${streamId} node:${nodeId} file:${file}] ${(err as Error).message}`);
      throw new NotFoundError(`stream ${streamId} is not reachable on node ${nodeId}`);
    }
  }

  /** `event.get`, or undefined when the event actor is unreachable or slow (status still answers). */
  async function eventView(ctx: Context, eventId: string): Promise<EventView | undefined> {
    try {
      return await ctx.call<EventView, { eventId: string }>('event.get', { eventId }, { timeout: eventTimeoutMs });
    } catch (err) {
      if (isEventNotFound(err)) throw err;
      ctx.service?.logger.warn(`event actor unreachable, answering from the token [event:${eventId}] ${(err as Error).message}`);
      return undefined;
    }
  }

  return {
    name: 'attendee-access',

    actions: {
      /** HLS master playlist: one identical variant per live stream, each with a fresh auth code. */
      live: {
        async handler(ctx: Ctx<TokenParams>): Promise<string> {
          const { e: eventId } = authorize(ctx);
          const streams = await ctx.call<StreamDataset[], { eventId: string }>('monitoring.activeStreams', { eventId });
          const alive = streams.filter((s) => s.eventId === eventId && isValidStreamId(s.streamId));
          if (alive.length === 0) throw new NotFoundError(`event ${eventId} is not live`);
          ctx.meta.$responseType = PLAYLIST_TYPE;
          ctx.meta.$responseHeaders = { 'Cache-Control': 'no-cache, no-store', 'Referrer-Policy': 'no-referrer' };
          return masterPlaylist(alive.map((s) => ({ uri: `/s/${s.streamId}/index.m3u8?a=${code(eventId, s.streamId)}` })));
        },
      },

      /** A live stream's playlist (segments carry the code, ENDLIST stripped) or segment. */
      liveFile: {
        async handler(ctx: Ctx<FileParams>): Promise<Buffer | string> {
          const eventId = checkFile(ctx.params, LIVE_FILE_RE);
          const { streamId, file, a } = ctx.params;
          // A stream monitoring no longer sees alive answers 404 so hls.js fails over at once (FIELD-NOTES).
          // Its dataset also names the node whose disk holds the files.
          const streams = await ctx.call<StreamDataset[], { eventId: string }>('monitoring.activeStreams', { eventId });
          const stream = streams.find((s) => s.streamId === streamId && typeof s.nodeId === 'string');
          if (!stream) throw new NotFoundError(`stream ${streamId} is not live`);
          const data = await liveBytes(ctx, stream, file);
          if (file === 'index.m3u8') {
            let playlist;
            try {
              playlist = parseMediaPlaylist(data.toString('utf8'));
            } catch (err) {
              // ffmpeg rewrites the playlist in place; a half-written one is "not there yet" for the player.
              throw new NotFoundError(`stream ${streamId} playlist is not readable yet: ${(err as Error).message}`);
            }
            // A redundant stream that stops must not end the listener's playback: no ENDLIST. Once
            // monitoring drops the stream it answers 404 above and the player moves on.
            const out = { ...addQueryToSegments(playlist, `a=${a}`), ended: false };
            ctx.meta.$responseType = PLAYLIST_TYPE;
            ctx.meta.$responseHeaders = { 'Cache-Control': 'no-cache' };
            return serializeMediaPlaylist(out);
          }
          ctx.meta.$responseType = 'video/mp2t';
          ctx.meta.$responseHeaders = { 'Cache-Control': 'private, max-age=60' };
          return data;
        },
      },

      /** The archive as one VOD playlist built from the virtual archive, DISCONTINUITY between fragments. */
      archive: {
        async handler(ctx: Ctx<TokenParams>): Promise<string> {
          const { e: eventId } = authorize(ctx);
          const info = await storageOf(this.broker).getEventInfo(eventId);
          if (!info.archive || info.archive.length === 0) {
            throw new NotFoundError(`event ${eventId} has no archive yet (status: ${info.status})`);
          }
          // Several fragments may cut the same stream: read and parse each stored playlist once.
          const playlists = new Map<string, Promise<MediaPlaylist>>();
          const playlistOf = (streamId: string): Promise<MediaPlaylist> => {
            let p = playlists.get(streamId);
            if (!p) {
              p = storageOf(this.broker)
                .readStreamFile(eventId, streamId, 'index.m3u8')
                .then((b) => parseMediaPlaylist(b.toString('utf8')));
              playlists.set(streamId, p);
            }
            return p;
          };
          const parts = await Promise.all(
            info.archive.map(async (f) => {
              if (!isValidStreamId(f.streamId) || eventIdOfStream(f.streamId) !== eventId) {
                throw new NotFoundError(`archive of event ${eventId} names a foreign stream ${f.streamId}`);
              }
              // In/out points are segment boundaries rounded to the ms (core/archive-plan.ts); half a ms
              // inside keeps float noise in the EXTINF sum from adding the neighbouring segment.
              const segments = sliceSegments(await playlistOf(f.streamId), f.start + SLICE_EPSILON_S, f.end - SLICE_EPSILON_S);
              const a = code(eventId, f.streamId);
              return {
                segments: segments.map((s) => ({ ...s, uri: `/a/${f.streamId}/${baseName(s.uri)}?a=${a}` })),
              };
            }),
          );
          ctx.meta.$responseType = PLAYLIST_TYPE;
          ctx.meta.$responseHeaders = { 'Cache-Control': 'no-cache, no-store', 'Referrer-Policy': 'no-referrer' };
          return archivePlaylist(parts);
        },
      },

      /** One archived segment, behind its auth code. */
      archiveFile: {
        async handler(ctx: Ctx<FileParams>): Promise<Buffer> {
          const eventId = checkFile(ctx.params, ARCHIVE_FILE_RE);
          const { streamId, file } = ctx.params;
          const data = await storageOf(this.broker).readStreamFile(eventId, streamId, file);
          ctx.meta.$responseType = 'video/mp2t';
          ctx.meta.$responseHeaders = { 'Cache-Control': 'private, max-age=3600' };
          return asBuffer(data);
        },
      },

      /** What the player page polls: status, live, archive readiness; from the token alone if the event actor is away. */
      status: {
        async handler(ctx: Ctx<TokenParams>): Promise<AttendeeStatus> {
          const claims = authorize(ctx);
          const view = await eventView(ctx, claims.e);
          ctx.meta.$responseType = 'application/json; charset=utf-8';
          ctx.meta.$responseHeaders = { 'Cache-Control': 'no-store', 'Referrer-Policy': 'no-referrer' };
          if (!view) {
            return { eventId: claims.e, title: null, status: 'unknown', startsAt: null, live: false, archiveReady: false, role: claims.r };
          }
          return {
            eventId: claims.e,
            title: view.title,
            status: view.status,
            startsAt: view.startsAt ?? null,
            live: view.status === 'live' && Array.isArray(view.streams) && view.streams.length > 0,
            archiveReady: view.status === 'archived' && Array.isArray(view.archive) && view.archive.length > 0,
            role: claims.r,
          };
        },
      },

      /** The player page, or a friendly error page (403/404) for a bad link. */
      page: {
        async handler(ctx: Ctx<Partial<TokenParams>>): Promise<string> {
          ctx.meta.$responseType = 'text/html; charset=utf-8';
          const baseHeaders = { 'Cache-Control': 'no-store', 'Referrer-Policy': 'no-referrer', 'X-Content-Type-Options': 'nosniff' };
          const fail = (statusCode: number, heading: string, message: string): string => {
            ctx.meta.$statusCode = statusCode;
            ctx.meta.$responseHeaders = { ...baseHeaders, 'Content-Security-Policy': errorPageCsp() };
            return renderErrorPage({ heading, message });
          };
          let claims: AccessClaims;
          try {
            claims = claimsOf(ctx.params.token);
          } catch (err) {
            if (!(err instanceof ForbiddenError)) throw err;
            return fail(403, 'This link does not work', `Sorry, ${err.message}. Please ask the organizer for a new link.`);
          }
          const needsPassword = claims.p !== undefined;
          let title = `Event ${claims.e}`;
          if (!needsPassword) {
            // The title of a password-protected event is only shown once status.json has the password.
            try {
              const view = await eventView(ctx, claims.e);
              if (view?.title) title = view.title;
            } catch (err) {
              if (isEventNotFound(err)) {
                return fail(404, 'Event not found', `Sorry, event ${claims.e} does not exist (any more).`);
              }
              throw err;
            }
          }
          const nonce = randomBytes(18).toString('base64');
          ctx.meta.$responseHeaders = { ...baseHeaders, 'Content-Security-Policy': playerPageCsp(nonce) };
          return renderPlayerPage({
            title,
            eventId: claims.e,
            nonce,
            needsPassword,
            // Refresh codes at about half their lifetime, so a listener never holds an expired one.
            codeRefreshS: Math.max(10, Math.floor(config.authCodeTimeoutS / 2)),
          });
        },
      },
    },
  };
}

/** The password the client sent, from the header the gateway passes on. */
function passwordOf(meta: Meta): string | undefined {
  if (typeof meta.eventPassword === 'string') return meta.eventPassword;
  const h = meta.headers?.[PASSWORD_HEADER];
  return Array.isArray(h) ? h[0] : h;
}

/** The event actor's own "no such event" (Moleculer's SERVICE_NOT_FOUND is a 404 too, but means unreachable). */
function isEventNotFound(err: unknown): boolean {
  return err instanceof NotFoundError || (err as { type?: string } | null)?.type === 'NOT_FOUND';
}

function baseName(uri: string): string {
  const path = uri.split('?')[0] ?? '';
  return path.slice(path.lastIndexOf('/') + 1);
}
