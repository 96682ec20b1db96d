/**
 * Live HLS files of a stream (`<dataDir>/live/<streamId>/`), wherever the asking actor runs
 * (issue 3, "files across nodes"): the one whitelist of names a listener may ask for, reading them
 * from this node's disk (what `encoder-port.liveFile` answers for other nodes), and the cache
 * attendee-access keeps of files fetched from another node, so a thousand listeners of one stream
 * cost one broker fetch per segment and at most two per second per playlist.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { isValidStreamId } from '../codecs/ids.ts';
import { verifyAuthCode } from '../codecs/token.ts';
import { ByteLru } from '../core/byte-lru.ts';
import type { LiveFileParams } from './contracts.ts';
import { NotFoundError, PayloadTooLargeError, ValidationFailedError } from './errors.ts';

export type { LiveFileParams };

/**
 * A live file URL the listener hot paths take (the gateway's, actors/attendee-access.service.ts, and
 * a listener worker's, runtime/listener-worker.ts): plain stream ID and file name, then a query of
 * characters that need no decoding. Anything else goes the regular way.
 */
export const FAST_LIVE_RE = /^\/s\/([A-Za-z0-9_.-]{1,100})\/(index\.m3u8|seg\d{5}\.ts)\?([A-Za-z0-9_.=&-]{1,200})$/;

/** A hot-path URL's parts, or undefined when its query is not exactly `a=<code>` or `a=<code>&l=<id>`. */
export function parseFastLiveUrl(url: string | undefined): { streamId: string; file: string; a: string; l?: string } | undefined {
  const m = FAST_LIVE_RE.exec(url ?? '');
  if (!m) return undefined;
  const q = m[3]!;
  const amp = q.indexOf('&');
  const aPart = amp === -1 ? q : q.slice(0, amp);
  const lPart = amp === -1 ? undefined : q.slice(amp + 1);
  if (!aPart.startsWith('a=') || (lPart !== undefined && (!lPart.startsWith('l=') || lPart.includes('&')))) return undefined;
  return { streamId: m[1]!, file: m[2]!, a: aPart.slice(2), ...(lPart !== undefined ? { l: lPart.slice(2) } : {}) };
}

/**
 * verifyAuthCode, remembering codes that verified until the expiry they carry: one HMAC per code,
 * not per request. Forgets everything past 20,000 codes (a flood of valid codes costs HMACs, not memory).
 */
export class VerifiedCodes {
  readonly #until = new Map<string, number>();
  readonly #secret: string;
  readonly #nowS: () => number;

  constructor(secret: string, nowS: () => number = () => Date.now() / 1000) {
    this.#secret = secret;
    this.#nowS = nowS;
  }

  valid(a: string, eventId: string, streamId: string): boolean {
    const key = `${streamId}|${a}`;
    const t = this.#nowS();
    const expiry = this.#until.get(key);
    if (expiry !== undefined && t < expiry) return true;
    if (!verifyAuthCode(this.#secret, a, eventId, streamId, t)) return false;
    if (this.#until.size >= 20_000) this.#until.clear();
    this.#until.set(key, Number(a.slice(0, a.indexOf('.'))));
    return true;
  }
}

/** Files a live stream directory may be asked for: the published playlist and its numbered TS segments. */
export const LIVE_FILE_RE = /^(index\.m3u8|seg\d{5}\.ts)$/;
/** The live playlist's name. */
export const LIVE_PLAYLIST = 'index.m3u8';
/** Largest live file served (a 2 s audio segment is ~12 KB; anything near this is not encoder output). */
export const MAX_LIVE_FILE_BYTES = 16 * 1024 * 1024;
/** Default bytes of fetched segments attendee-access keeps (LiveFileCacheOptions.maxBytes). */
export const LIVE_CACHE_BYTES = 64 * 1024 * 1024;
/** Default freshness of a fetched live playlist, ms: well under a segment (2 s), so listeners lag by at most this. */
export const LIVE_PLAYLIST_TTL_MS = 500;

/** Checks `encoder-port.liveFile` parameters; ValidationFailedError naming each bad field. */
export function validateLiveFileParams(p: unknown): LiveFileParams {
  const v = (p ?? {}) as Record<string, unknown>;
  const fields: Record<string, string> = {};
  if (!isValidStreamId(v.streamId)) fields.streamId = 'must be a stream ID';
  if (typeof v.file !== 'string' || !LIVE_FILE_RE.test(v.file)) fields.file = 'must be index.m3u8 or segNNNNN.ts';
  if (Object.keys(fields).length > 0) throw new ValidationFailedError(`invalid live file request: ${Object.keys(fields).join(', ')}`, fields);
  return { streamId: v.streamId as string, file: v.file as string };
}

/**
 * One live file from this node's `<dataDir>/live/`, joined only from a validated stream ID and a
 * whitelisted name. NotFoundError when the file is not (yet) there; PayloadTooLargeError past the cap.
 */
export async function readLiveFile(dataDir: string, streamId: string, file: string): Promise<Buffer> {
  const { streamId: id, file: name } = validateLiveFileParams({ streamId, file });
  const path = join(dataDir, 'live', id, name);
  try {
    const st = await fs.stat(path);
    if (!st.isFile()) throw new NotFoundError(`stream ${id} has no ${name}`);
    if (st.size > MAX_LIVE_FILE_BYTES) throw new PayloadTooLargeError(MAX_LIVE_FILE_BYTES);
    return await fs.readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`stream ${id} has no ${name} yet`);
    throw err;
  }
}

/**
 * What `encoder-port.liveFile` answers: the file of a stream this node's encoder knows (`known`),
 * NotFoundError for any other stream, so a request never reads a directory the encoder did not make.
 */
export async function serveLiveFile(dataDir: string, nodeId: string, params: unknown, known: (streamId: string) => boolean): Promise<Buffer> {
  const { streamId, file } = validateLiveFileParams(params);
  if (!known(streamId)) throw new NotFoundError(`no live stream ${streamId} on node ${nodeId}`);
  return readLiveFile(dataDir, streamId, file);
}

/** A Buffer from a reply that may have crossed a JSON transporter (`{type: 'Buffer', data}`). */
export function asBuffer(value: unknown): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value);
  const v = value as { type?: unknown; data?: unknown } | null;
  if (v?.type === 'Buffer' && Array.isArray(v.data)) return Buffer.from(v.data as number[]);
  throw new TypeError('expected file contents (a Buffer)');
}

/** Options of LiveFileCache. */
export interface LiveFileCacheOptions {
  /** Bytes of files kept. Default LIVE_CACHE_BYTES (64 MiB). */
  maxBytes?: number;
  /** How long a playlist stays fresh, ms. Default LIVE_PLAYLIST_TTL_MS (500). */
  playlistTtlMs?: number;
  /** Clock in ms. Default `performance.now`. */
  now?: () => number;
}

/** Counters of a LiveFileCache (for specs and status). */
export interface LiveFileCacheStats {
  /** Answered from memory. */
  hits: number;
  /** Fetches started. */
  fetches: number;
  /** Requests that joined a fetch already in flight. */
  joined: number;
}

/** Streams whose highest listed segment a LiveFileCache remembers. */
const LISTED_STREAMS = 10_000;
const SEGMENT_LINE_RE = /^seg(\d{5})\.ts\r?$/gm;

/**
 * Live files fetched from other nodes. A segment never changes once a playlist lists it, so it
 * stays until the byte bound pushes it out; one not listed yet in the last playlist fetched may be
 * the one ffmpeg is still writing in place, so it is served but never kept. A playlist is reused
 * for `playlistTtlMs` only. Concurrent requests for a file not cached share one fetch. Failures
 * are not cached: the next request asks again.
 */
export class LiveFileCache {
  readonly #lru: ByteLru<string, Buffer>;
  /** Highest segment number listed by each stream's playlists fetched so far (weight 1 per stream). */
  readonly #listed = new ByteLru<string, number>(LISTED_STREAMS);
  readonly #inFlight = new Map<string, Promise<Buffer>>();
  readonly #ttlMs: number;
  readonly #now: () => number;
  readonly stats: LiveFileCacheStats = { hits: 0, fetches: 0, joined: 0 };

  constructor(opts: LiveFileCacheOptions = {}) {
    this.#lru = new ByteLru(opts.maxBytes ?? LIVE_CACHE_BYTES);
    this.#ttlMs = opts.playlistTtlMs ?? LIVE_PLAYLIST_TTL_MS;
    this.#now = opts.now ?? (() => performance.now());
  }

  /** The file from memory, from the fetch already running for it, or from `fetch()`. */
  get(streamId: string, file: string, fetch: () => Promise<Buffer>): Promise<Buffer> {
    const key = `${streamId}/${file}`;
    const hit = this.#lru.get(key, this.#now());
    if (hit) {
      this.stats.hits++;
      return Promise.resolve(hit);
    }
    const running = this.#inFlight.get(key);
    if (running) {
      this.stats.joined++;
      return running;
    }
    this.stats.fetches++;
    // Started on a later tick, so the entry is in the map before the fetch can settle (even a synchronous throw).
    const p = Promise.resolve()
      .then(fetch)
      .then((data) => {
        const now = this.#now();
        if (file === LIVE_PLAYLIST) {
          this.#noteListed(streamId, data, now);
          if (this.#ttlMs > 0) this.#lru.set(key, data, data.length, now + this.#ttlMs);
        } else if (Number(file.slice(3, 8)) <= (this.#listed.get(streamId, now) ?? -1)) {
          this.#lru.set(key, data, data.length);
        }
        return data;
      })
      .finally(() => this.#inFlight.delete(key));
    this.#inFlight.set(key, p);
    return p;
  }

  /** The file if memory holds it now (a hit, counted as one), else undefined: the listener hot path's synchronous try. */
  peek(streamId: string, file: string): Buffer | undefined {
    const hit = this.#lru.get(`${streamId}/${file}`, this.#now());
    if (hit) this.stats.hits++;
    return hit;
  }

  /** Whether memory holds the file now (not counted as a hit). */
  holds(streamId: string, file: string): boolean {
    return this.#lru.get(`${streamId}/${file}`, this.#now()) !== undefined;
  }

  /** Bytes held. */
  get bytes(): number {
    return this.#lru.bytes;
  }

  /** Remembers the highest segment a playlist lists (playlists only grow, so never lowers it). */
  #noteListed(streamId: string, playlist: Buffer, now: number): void {
    let max = this.#listed.get(streamId, now) ?? -1;
    for (const m of playlist.toString('latin1').matchAll(SEGMENT_LINE_RE)) max = Math.max(max, Number(m[1]));
    if (max >= 0) this.#listed.set(streamId, max, 1);
  }
}
