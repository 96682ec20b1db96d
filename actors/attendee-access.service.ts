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
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Context, ServiceSchema } from 'moleculer';
import type { JitcastConfig } from '../cluster.config.ts';
import type { EventStatus, EventView, StreamDataset } from '../runtime/contracts.ts';
import { ForbiddenError, NotFoundError, ValidationFailedError } from '../runtime/errors.ts';
import { TokenError, passwordMatches, signAuthCode, verifyToken, type AccessClaims } from '../codecs/token.ts';
import { eventIdOfStream, isValidStreamId } from '../codecs/ids.ts';
import { addQueryToSegments, archivePlaylist, liveWindow, masterPlaylist, onWallClockSequence, parseMediaPlaylist, serializeMediaPlaylist, sliceSegments, steeringManifest, type MediaPlaylist, type SteeringManifest } from '../codecs/hls.ts';
import { errorPageCsp, playerPageCsp, renderErrorPage, renderPlayerPage } from '../web/player-page.ts';
import { hostPageCsp, renderHostPage } from '../web/host-page.ts';
import { LIVE_FILE_RE, LiveFileCache, VerifiedCodes, asBuffer, parseFastLiveUrl, readLiveFile } from '../runtime/live-files.ts';
import { storageOf } from '../runtime/storage-client.ts';
import { EVENTS } from '../runtime/contracts.ts';
import { LISTENER_ID_RE, ListenerMeter } from '../core/usage.ts';

/** Seconds between a player's steering manifest reloads: how soon it learns of a new stream. */
export const STEERING_TTL_S = 4;
/** Most stream IDs read from a steering request's `s`. */
const MAX_LISTED_STREAMS = 16;
/** Segments a live media playlist lists for listeners: the edge, with room for a player a few segments behind. */
export const LIVE_WINDOW_SEGMENTS = 8;
/** What a live file request is answered with. */
interface LiveFileAnswer {
  body: Buffer | string;
  type: string;
  cacheControl: string;
}

/** Stands where each listener's auth code (and listener ID) goes in a cached live playlist. */
const QUERY_MARK = '\u0001';
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
  /** How often what listeners were served is broadcast to the usage actors (EVENTS.usageListeners), ms. Default 1000. */
  usageFlushMs?: number;
  /**
   * Hot-path reuse on the listener path, ms (default 250; 0 turns it off): a stream lookup in
   * monitoring per event, and a live playlist read from this node's disk, are reused this long.
   * A stream that dies answers 404 at most this much later; a playlist lags at most this much.
   */
  hotCacheMs?: number;
}

interface TokenParams {
  token: string;
  /** Listener ID (core/usage.ts) a player sends back; live.m3u8 mints one when it is missing. */
  l?: unknown;
}
interface SteeringParams extends TokenParams {
  s?: unknown;
  _HLS_pathway?: unknown;
}
interface FileParams {
  streamId: string;
  file: string;
  a?: string;
  /** Listener ID minted into the master playlist's stream URLs (core/usage.ts). */
  l?: string;
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
  // Listener hot path (bench/listener-load.ts): thousands of listeners poll the same few files every
  // 2 s. Without reuse each request cost a monitoring call, five file-system calls and a playlist
  // parse; with it a request is a map lookup and a write.
  const hotMs = options.hotCacheMs ?? 250;
  /** Live files read from this node's disk: segments once listed, playlists for `hotMs`. */
  const localCache = new LiveFileCache({ maxBytes: options.liveCacheBytes, playlistTtlMs: hotMs });
  const activeByEvent = new Map<string, { atMs: number; streams: Promise<StreamDataset[]>; known?: StreamDataset[] }>();
  /** Auth codes that verified, by stream: a code is valid until the expiry it carries. */
  const verifiedCodes = new VerifiedCodes(config.secret, () => now());
  /** A served live playlist per playlist read: the text split where each listener's query goes. */
  const playlistTemplates = new WeakMap<Buffer, { parts: string[] } | NotFoundError>();
  /** What listeners were served since the last flush (usage reports, core/usage.ts). */
  const meter = new ListenerMeter();
  let usageFlush: NodeJS.Timeout | undefined;
  /** What the fast path calls other actors through (the broker, as this actor). */
  let fastCaller: Context | undefined;
  /** EXTINF seconds of each live stream's segments, from the playlists served: a segment's media time. */
  const segmentDurations = new Map<string, Map<string, number>>();

  function noteDurations(streamId: string, p: MediaPlaylist): void {
    const m = new Map<string, number>();
    for (const s of p.segments) m.set(baseName(s.uri), s.duration);
    segmentDurations.delete(streamId);
    segmentDurations.set(streamId, m);
    // Bounded: the streams served most recently (a Map iterates in insertion order).
    if (segmentDurations.size > 1000) segmentDurations.delete(segmentDurations.keys().next().value!);
  }

  /** Broadcasts what was served since the last flush to the usage actors; never throws. */
  function flushUsage(broker: { broadcast(name: string, data: unknown): unknown; logger: { debug(m: string): void } }): void {
    const delta = meter.take(config.nodeId, Date.now());
    if (!delta) return;
    Promise.resolve(broker.broadcast(EVENTS.usageListeners, delta)).catch((err: Error) => broker.logger.debug(`usage flush not broadcast [node:${config.nodeId}] ${err.message}`));
  }

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

  /** A live stream's playlist URL with a fresh auth code (and the player's listener ID, for usage reports). */
  function streamUri(eventId: string, streamId: string, listenerId?: string): string {
    return `/s/${streamId}/index.m3u8?a=${code(eventId, streamId)}${listenerId ? `&l=${listenerId}` : ''}`;
  }

  /** Validates a stream file request and its auth code; returns the stream's event ID. */
  function checkFile(params: FileParams, fileRe: RegExp): string {
    const { streamId, file, a } = params;
    if (!isValidStreamId(streamId) || typeof file !== 'string' || !fileRe.test(file)) {
      throw new NotFoundError(`no such stream file`);
    }
    const eventId = eventIdOfStream(streamId);
    if (typeof a !== 'string' || !codeValid(a, eventId, streamId)) {
      throw new ForbiddenError(`auth code for stream ${streamId} is missing, wrong or expired`);
    }
    return eventId;
  }

  /** verifyAuthCode, remembering codes that verified until the expiry they carry (one HMAC per code, not per request). */
  function codeValid(a: string, eventId: string, streamId: string): boolean {
    return verifiedCodes.valid(a, eventId, streamId);
  }

  /** `monitoring.activeStreams` of the event, one lookup per event per `hotMs`. */
  function activeStreams(ctx: Context, eventId: string): Promise<StreamDataset[]> {
    const ask = () => ctx.call<StreamDataset[], { eventId: string }>('monitoring.activeStreams', { eventId });
    if (hotMs <= 0) return ask();
    const t = performance.now();
    const hit = activeByEvent.get(eventId);
    if (hit && t - hit.atMs < hotMs) return hit.streams;
    const streams = ask();
    const entry: { atMs: number; streams: Promise<StreamDataset[]>; known?: StreamDataset[] } = { atMs: t, streams };
    activeByEvent.set(eventId, entry);
    // Kept resolved too, for the synchronous hot path (liveFileNow).
    streams.then((list) => (entry.known = list), () => undefined);
    // A failed lookup is not reused.
    streams.catch(() => activeByEvent.get(eventId)?.streams === streams && activeByEvent.delete(eventId));
    if (activeByEvent.size > 10_000) activeByEvent.delete(activeByEvent.keys().next().value!);
    return streams;
  }

  /**
   * The listener's view of a live playlist read (`data`), made once per read: the live window with
   * every segment URI ending in `a=` where each request's query goes (`parts.join(query)`).
   */
  function playlistTemplate(streamId: string, data: Buffer): { parts: string[] } {
    let t = playlistTemplates.get(data);
    if (!t) {
      try {
        const playlist = parseMediaPlaylist(data.toString('utf8'));
        // A redundant stream that stops must not end the listener's playback: no ENDLIST. Once
        // monitoring drops the stream it answers 404 and the player moves on.
        // The live edge only. Its segments carry EXT-X-PROGRAM-DATE-TIME, their timestamps are
        // wall-clock based (runtime/encoder.ts) and so are their numbers: a player failing over
        // between redundant streams started apart finds the same moment in the other one.
        const live = liveWindow(onWallClockSequence(playlist, config.segmentS), LIVE_WINDOW_SEGMENTS);
        const out = { ...addQueryToSegments(live, `a=${QUERY_MARK}`), ended: false };
        t = { parts: serializeMediaPlaylist(out).split(QUERY_MARK) };
        noteDurations(streamId, live);
      } catch (err) {
        // ffmpeg rewrites the playlist in place; a half-written one is "not there yet" for the player.
        t = new NotFoundError(`stream ${streamId} playlist is not readable yet: ${(err as Error).message}`);
      }
      playlistTemplates.set(data, t);
    }
    if (t instanceof NotFoundError) throw t;
    return t;
  }

  /**
   * A live file's bytes: from this node's disk when the stream is encoded here (or in embedded mode,
   * where every actor shares one disk), else from the encoder's node through the cache.
   */
  function liveBytes(ctx: Context, stream: StreamDataset, file: string): Promise<Buffer> {
    if (!config.natsUrl || stream.nodeId === config.nodeId) {
      const read = () => readLiveFile(config.dataDir, stream.streamId, file);
      return hotMs > 0 ? localCache.get(stream.streamId, file, read) : read();
    }
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

  /**
   * serveLiveFile without a promise, when memory holds all it needs (the event's live streams, looked
   * up less than `hotMs` ago, and the file's bytes): most listener requests under load. Undefined on
   * any miss or refusal: the caller then takes the asynchronous path, which answers refusals.
   */
  function liveFileNow(params: FileParams): LiveFileAnswer | undefined {
    const { streamId, file, a } = params;
    if (!isValidStreamId(streamId) || !LIVE_FILE_RE.test(file) || typeof a !== 'string') return undefined;
    const eventId = eventIdOfStream(streamId);
    const hit = activeByEvent.get(eventId);
    if (!hit?.known || performance.now() - hit.atMs >= hotMs || !codeValid(a, eventId, streamId)) return undefined;
    const stream = hit.known.find((s) => s.streamId === streamId && typeof s.nodeId === 'string');
    if (!stream) return undefined;
    const local = !config.natsUrl || stream.nodeId === config.nodeId;
    const data = (local ? localCache : liveCache).peek(streamId, file);
    if (!data) return undefined;
    return answerLiveFile(eventId, params, data);
  }

  /** The answer for a live file's bytes: a playlist rewritten for this listener, or the segment; counted for usage. */
  function answerLiveFile(eventId: string, params: FileParams, data: Buffer): LiveFileAnswer {
    const { streamId, file, a } = params;
    const l = listenerIdOf(params.l);
    if (file === 'index.m3u8') {
      // `a` verified (digits, a dot, base64url) and `l` matched LISTENER_ID_RE: safe in a URI line.
      const body = playlistTemplate(streamId, data).parts.join(l ? `${a}&l=${l}` : a!);
      meter.playlist(eventId, l);
      return { body, type: PLAYLIST_TYPE, cacheControl: 'no-cache' };
    }
    meter.segment(eventId, l, segmentDurations.get(streamId)?.get(file) ?? config.segmentS);
    return { body: data, type: 'video/mp2t', cacheControl: 'private, max-age=60' };
  }

  /** A live stream's playlist (segments carry the code and listener ID, ENDLIST stripped) or segment, counted for usage. */
  async function serveLiveFile(ctx: Context, params: FileParams): Promise<LiveFileAnswer> {
    const eventId = checkFile(params, LIVE_FILE_RE);
    const { streamId, file } = params;
    // A stream monitoring no longer sees alive answers 404 so hls.js fails over at once (FIELD-NOTES).
    // Its dataset also names the node whose disk holds the files.
    const streams = await activeStreams(ctx, eventId);
    const stream = streams.find((s) => s.streamId === streamId && typeof s.nodeId === 'string');
    if (!stream) throw new NotFoundError(`stream ${streamId} is not live`);
    return answerLiveFile(eventId, params, await liveBytes(ctx, stream, file));
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

    started() {
      usageFlush = setInterval(() => flushUsage(this.broker), options.usageFlushMs ?? 1000);
      usageFlush.unref();
    },

    methods: {
      /**
       * A listener worker's question (runtime/listener-workers.ts): the file as the hot path answers
       * it, counted here, and whether the worker may keep the bytes (a segment this node's cache
       * keeps, i.e. one a playlist lists), or for a playlist the template it rewrites for each listener.
       * `ok: false` for anything refused: the worker then proxies the request to the gateway, which
       * answers the refusal as usual.
       */
      async answerForWorker(q: FileParams & { a: string }): Promise<{ ok: boolean; body?: Buffer | string; contentType?: string; cacheControl?: string; keep?: boolean; durationS?: number; parts?: string[] }> {
        fastCaller ??= { call: this.broker.call.bind(this.broker), service: { logger: this.logger } } as unknown as Context;
        try {
          const params: FileParams = { streamId: q.streamId, file: q.file, a: q.a, ...(q.l !== undefined ? { l: q.l } : {}) };
          const r = liveFileNow(params) ?? (await serveLiveFile(fastCaller, params));
          if (q.file === 'index.m3u8') {
            // The playlist as the template this node rewrites for each listener: the worker then rewrites it too, for hotMs.
            const held = localCache.peek(q.streamId, q.file) ?? liveCache.peek(q.streamId, q.file);
            return { ok: true, body: r.body, contentType: r.type, cacheControl: r.cacheControl, ...(held ? { parts: playlistTemplate(q.streamId, held).parts } : {}) };
          }
          const keep = Buffer.isBuffer(r.body) && (localCache.holds(q.streamId, q.file) || liveCache.holds(q.streamId, q.file));
          return { ok: true, body: r.body, contentType: r.type, cacheControl: r.cacheControl, keep, durationS: segmentDurations.get(q.streamId)?.get(q.file) ?? config.segmentS };
        } catch {
          return { ok: false };
        }
      },

      /** How long the hot path trusts a stream lookup, in ms (a listener worker trusts its confirmations as long). */
      hotCacheMs(): number {
        return hotMs;
      },

      /** What listener workers served themselves: counted for usage as if served here. */
      meterFromWorker(segments: Array<{ eventId: string; listenerId: string | null; durationS: number; n: number }>, playlists: Array<{ eventId: string; listenerId: string | null; n: number }> = []): void {
        for (const s of segments) for (let i = 0; i < s.n; i++) meter.segment(s.eventId, s.listenerId ?? undefined, s.durationS);
        for (const p of playlists) for (let i = 0; i < p.n; i++) meter.playlist(p.eventId, p.listenerId ?? undefined);
      },

      /**
       * The listener hot path without Moleculer (a gateway on this node calls it before routing):
       * `GET /s/<streamId>/<file>?a=…[&l=…]` answered straight from this actor's caches. Returns
       * false for anything else (the gateway routes it as usual); on any failure hands the request
       * to `fallback` untouched, so errors are answered by the one regular path.
       */
      fastLiveFile(req: IncomingMessage, res: ServerResponse, fallback: () => void): boolean {
        if (hotMs <= 0 || req.method !== 'GET') return false;
        // `a=<code>` or `a=<code>&l=<id>` exactly (FAST_LIVE_RE's character class leaves nothing to decode).
        const params: FileParams | undefined = parseFastLiveUrl(req.url);
        if (!params) return false;
        const send = (r: LiveFileAnswer) => {
          if (res.headersSent || res.destroyed) return;
          (req as IncomingMessage & { $alias?: { action: string } }).$alias = { action: 'attendee-access.liveFile' };
          res.writeHead(200, { 'Content-Type': r.type, 'Cache-Control': r.cacheControl, 'Content-Length': Buffer.byteLength(r.body) });
          res.end(r.body);
        };
        let ready: LiveFileAnswer | undefined;
        try {
          ready = liveFileNow(params);
        } catch {
          ready = undefined; // e.g. an unreadable playlist: the asynchronous path answers it
        }
        if (ready) {
          send(ready);
          return true;
        }
        fastCaller ??= { call: this.broker.call.bind(this.broker), service: { logger: this.logger } } as unknown as Context;
        serveLiveFile(fastCaller, params).then(send, () => fallback());
        return true;
      },
    },

    stopped() {
      clearInterval(usageFlush);
      flushUsage(this.broker);
    },

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
          // One listener ID per player session: kept on every request of the streams listed here
          // (the page's code refresh swaps only `a`), so usage counts listeners, not requests.
          const l = listenerIdOf(ctx.params.l) ?? randomBytes(9).toString('base64url');
          // Streams that start after the player loaded this reach it through content steering.
          const steeringUri = `steering.json?s=${alive.map((s) => s.streamId).join(',')}&l=${l}`;
          return masterPlaylist(alive.map((s) => ({ uri: streamUri(eventId, s.streamId, l) })), { steeringUri });
        },
      },

      /**
       * HLS content steering for a player of live.m3u8 (`s`: the streams its master listed, in
       * order; `_HLS_pathway`: the one it plays): streams started since reach it as Pathway clones,
       * and the priority lists only live streams, its own first.
       */
      steering: {
        async handler(ctx: Ctx<SteeringParams>): Promise<SteeringManifest> {
          const { e: eventId } = authorize(ctx);
          const listed = typeof ctx.params.s === 'string' ? ctx.params.s.split(',').slice(0, MAX_LISTED_STREAMS) : [];
          if (!listed.every((id) => isValidStreamId(id) && eventIdOfStream(id) === eventId)) {
            throw new ValidationFailedError('s must list stream IDs of this event', { s: 'comma-separated stream IDs of this event' });
          }
          const p = ctx.params._HLS_pathway;
          const current = typeof p === 'string' && /^[A-Za-z0-9._-]{1,100}$/.test(p) ? p : undefined;
          const streams = await ctx.call<StreamDataset[], { eventId: string }>('monitoring.activeStreams', { eventId });
          const alive = streams.filter((s) => s.eventId === eventId && isValidStreamId(s.streamId)).map((s) => ({ streamId: s.streamId, uri: streamUri(eventId, s.streamId, listenerIdOf(ctx.params.l)) }));
          ctx.meta.$responseType = 'application/json';
          ctx.meta.$responseHeaders = { 'Cache-Control': 'no-cache, no-store', 'Referrer-Policy': 'no-referrer' };
          return steeringManifest({ listed, alive, current, ttlS: STEERING_TTL_S });
        },
      },

      /** A live stream's playlist (segments carry the code, ENDLIST stripped) or segment. */
      liveFile: {
        async handler(ctx: Ctx<FileParams>): Promise<Buffer | string> {
          const r = await serveLiveFile(ctx, ctx.params);
          ctx.meta.$responseType = r.type;
          ctx.meta.$responseHeaders = { 'Cache-Control': r.cacheControl };
          return r.body;
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
          if (claims.r === 'host') {
            // The host link opens the host page, which acts through the gateway's host-only routes (web/host-page.ts).
            const hostNonce = randomBytes(18).toString('base64');
            ctx.meta.$responseHeaders = { ...baseHeaders, 'Content-Security-Policy': hostPageCsp(hostNonce) };
            return renderHostPage({ title: `Event ${claims.e}`, eventId: claims.e, nonce: hostNonce });
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

/** A well-formed listener ID, or undefined (a request without one is served, counted as a request only). */
function listenerIdOf(v: unknown): string | undefined {
  return typeof v === 'string' && LISTENER_ID_RE.test(v) ? v : undefined;
}

function baseName(uri: string): string {
  const path = uri.split('?')[0] ?? '';
  return path.slice(path.lastIndexOf('/') + 1);
}
