/**
 * One storage center's directory (DESIGN.md "Content storage layout"):
 * `<root>/<eventId>/event-info.xml` and `<root>/<eventId>/streams/<streamId>/<file>`.
 *
 * Paths are only ever joined from values that passed `isValidEventId`, `isValidStreamId` or
 * STREAM_FILE_RE, and the resolved path is checked to stay under the root. Writes are atomic
 * (temp file, fsync, rename), so a reader never sees half a file and a crash leaves the old one.
 * A stream is received whole into `<root>/.staging/` (StagedStream, from a local directory or
 * chunk by chunk over the broker) and appears under `streams/` in one rename, so a partly
 * received stream is never listed or read.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsc, promises as fs } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import { isValidEventId, isValidStreamId } from '../codecs/ids.ts';
import { compareVersions, isFinalPlaylist, parseVersion, type ManifestStream } from '../core/replication.ts';
import { NotFoundError, PayloadTooLargeError, StateConflictError, ValidationFailedError } from './errors.ts';

/** File names a stream directory may hold: the playlist, segments and `gaps.json`. */
export const STREAM_FILE_RE = /^[A-Za-z0-9_-]{1,64}\.(m3u8|ts|json)$/;

/** Largest stored stream file (a 2 s segment is ~12 KB; the playlist of 100 000 segments ~3 MB). */
export const MAX_STREAM_FILE_BYTES = 16 * 1024 * 1024;

/** Most files one stream may hold: segNNNNN.ts allows 100 000, plus the playlist and gaps.json. */
export const MAX_STREAM_FILES = 100_002;

/** Directory under the root where streams are received before they appear (hidden from listings: not an event ID). */
export const STAGING_DIR = '.staging';

/** Name of the event-info file in an event's directory. */
export const EVENT_INFO_FILE = 'event-info.xml';

/** Result of copying a stream directory: what the stored stream now holds. */
export interface StreamCopyResult {
  /** Files stored for the stream (after the copy). */
  files: number;
  /** Bytes stored for the stream (after the copy). */
  bytes: number;
  /** Files this call wrote. */
  copied: number;
}

/** A stored stream as listed from disk. */
export interface StoredStream {
  streamId: string;
  files: string[];
}

const ENDLIST = '#EXT-X-ENDLIST';

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException)?.code === 'ENOENT';
}

/** Content storage of one storage center, rooted at `<dataDir>/storage/<center>`. */
export class ContentStorage {
  /** Absolute root directory. */
  readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  /** `<root>/<eventId>`; ValidationFailedError for a bad ID or a path that would leave the root. */
  eventDir(eventId: string): string {
    if (!isValidEventId(eventId)) throw new ValidationFailedError(`invalid event ID ${JSON.stringify(eventId)}`, { eventId: 'must be 8 digits with a valid check digit' });
    return this.inside(join(this.root, eventId));
  }

  /** `<root>/<eventId>/streams/<streamId>`; the stream must belong to the event. */
  streamDir(eventId: string, streamId: string): string {
    const eventDir = this.eventDir(eventId);
    if (!isValidStreamId(streamId) || !streamId.startsWith(eventId + '-')) {
      throw new ValidationFailedError(`invalid stream ID ${JSON.stringify(streamId)} for event ${eventId}`, { streamId: 'must be a stream ID of this event' });
    }
    return this.inside(join(eventDir, 'streams', streamId));
  }

  /** Path of one stored stream file; the name must match STREAM_FILE_RE. */
  streamFile(eventId: string, streamId: string, file: string): string {
    const dir = this.streamDir(eventId, streamId);
    if (typeof file !== 'string' || !STREAM_FILE_RE.test(file)) {
      throw new ValidationFailedError(`invalid stream file name ${JSON.stringify(file)}`, { file: 'must be 1-64 of A-Z a-z 0-9 _ - with .m3u8, .ts or .json' });
    }
    return this.inside(join(dir, file));
  }

  /** Writes event-info.xml atomically. */
  async writeEventInfo(eventId: string, xml: string): Promise<void> {
    const dir = this.eventDir(eventId);
    await fs.mkdir(dir, { recursive: true });
    await this.atomicWrite(join(dir, EVENT_INFO_FILE), Buffer.from(xml, 'utf8'));
  }

  /**
   * Claims a new event's ID here by making `<root>/<eventId>`; false when it exists already (an event,
   * or what is left of one). mkdir is atomic, so of two reservations that drew the same ID only one
   * wins, and a claim costs one system call where a lookup that misses costs a thrown ENOENT.
   */
  async claimEvent(eventId: string): Promise<boolean> {
    const dir = this.eventDir(eventId);
    for (let attempt = 0; ; attempt++) {
      try {
        await fs.mkdir(dir);
        return true;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') return false;
        // A fresh storage root: make it, then claim again.
        if (code !== 'ENOENT' || attempt > 0) throw err;
        await fs.mkdir(this.root, { recursive: true });
      }
    }
  }

  /** Gives a claim back (its event-info.xml could not be written), so the ID is not lost for nothing. */
  async releaseClaim(eventId: string): Promise<void> {
    await fs.rmdir(this.eventDir(eventId)).catch(() => undefined);
  }

  /** Writes event-info.xml into a directory `claimEvent` just made: no lookup, no mkdir. */
  async writeNewEventInfo(eventId: string, xml: string): Promise<void> {
    await this.atomicWrite(join(this.eventDir(eventId), EVENT_INFO_FILE), Buffer.from(xml, 'utf8'));
  }

  /** event-info.xml as text, or undefined when the event has none here. */
  async readEventInfo(eventId: string): Promise<string | undefined> {
    try {
      return await fs.readFile(join(this.eventDir(eventId), EVENT_INFO_FILE), 'utf8');
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** Event IDs that have a directory with an event-info.xml here, sorted. */
  async listEventIds(): Promise<string[]> {
    let names: string[];
    try {
      names = await fs.readdir(this.root);
    } catch (err) {
      if (isNotFound(err)) return [];
      throw err;
    }
    const ids: string[] = [];
    for (const name of names.filter(isValidEventId).sort()) {
      try {
        await fs.access(join(this.root, name, EVENT_INFO_FILE));
        ids.push(name);
      } catch {
        // A directory without event-info.xml is a stream upload racing a reservation, or debris.
      }
    }
    return ids;
  }

  /** Streams stored for an event, with their file names, sorted by stream ID. */
  async listStreams(eventId: string): Promise<StoredStream[]> {
    const base = join(this.eventDir(eventId), 'streams');
    let names: string[];
    try {
      names = await fs.readdir(base);
    } catch (err) {
      if (isNotFound(err)) return [];
      throw err;
    }
    const out: StoredStream[] = [];
    for (const streamId of names.filter((n) => isValidStreamId(n) && n.startsWith(eventId + '-')).sort()) {
      const files = (await fs.readdir(join(base, streamId))).filter((f) => STREAM_FILE_RE.test(f)).sort();
      out.push({ streamId, files });
    }
    return out;
  }

  /** One stored stream file; NotFoundError when it is not here. */
  async readFile(eventId: string, streamId: string, file: string): Promise<Buffer> {
    const path = this.streamFile(eventId, streamId, file);
    try {
      return await fs.readFile(path);
    } catch (err) {
      if (isNotFound(err)) throw new NotFoundError(`no stored file ${file} [event:${eventId} stream:${streamId}]`);
      throw err;
    }
  }

  /** Whether a stored stream file exists here. */
  async hasFile(eventId: string, streamId: string, file: string): Promise<boolean> {
    return this.exists(this.streamFile(eventId, streamId, file));
  }

  /**
   * Copies an encoder's output directory into the stream's directory, through a StagedStream (see
   * `commitStaged`). Only STREAM_FILE_RE names that are regular files are taken (ffmpeg's `*.tmp`
   * and symlinks are skipped).
   */
  async copyStream(eventId: string, streamId: string, srcDir: string): Promise<StreamCopyResult> {
    this.streamDir(eventId, streamId);
    let names: string[];
    try {
      names = await fs.readdir(srcDir);
    } catch (err) {
      if (isNotFound(err)) throw new NotFoundError(`no stream directory ${srcDir} [event:${eventId} stream:${streamId}]`);
      throw err;
    }
    const stage = await this.stageStream(eventId, streamId);
    try {
      for (const name of names.filter((n) => STREAM_FILE_RE.test(n)).sort()) {
        const src = join(srcDir, name);
        const stat = await fs.lstat(src);
        if (!stat.isFile()) continue;
        if (stat.size > MAX_STREAM_FILE_BYTES) throw new PayloadTooLargeError(MAX_STREAM_FILE_BYTES);
        await stage.append(name, 0, await fs.readFile(src));
      }
      return await stage.commit();
    } finally {
      await stage.abort();
    }
  }

  /** A new, empty staging directory for receiving a stream of this event. */
  async stageStream(eventId: string, streamId: string): Promise<StagedStream> {
    this.streamDir(eventId, streamId);
    const base = this.inside(join(this.root, STAGING_DIR));
    await fs.mkdir(base, { recursive: true });
    const dir = join(base, `${streamId}.${process.pid}.${randomBytes(6).toString('hex')}`);
    await fs.mkdir(dir);
    return new StagedStream(this, eventId, streamId, dir);
  }

  /**
   * Makes a staged stream visible. When the stream is not stored yet, its directory is renamed into
   * place: every file appears at once or none does. When it is (a second upload of the same
   * stream), files are merged one by one under the old rules: a stored segment is never overwritten,
   * a stored playlist only while it lacks #EXT-X-ENDLIST, segments before the playlist, so a stored
   * playlist never names a segment not yet stored. The staging directory is gone afterwards.
   */
  async commitStaged(eventId: string, streamId: string, stagedDir: string): Promise<StreamCopyResult> {
    const dest = this.streamDir(eventId, streamId);
    const staged = this.inside(stagedDir);
    if (dirname(staged) !== join(this.root, STAGING_DIR)) throw new ValidationFailedError(`not a staging directory: ${JSON.stringify(stagedDir)}`);
    const names = (await fs.readdir(staged)).filter((n) => STREAM_FILE_RE.test(n));
    // Durable before visible: a crash after the rename must not leave empty or short files behind.
    for (const name of names) await syncFile(join(staged, name));
    await fs.mkdir(dirname(dest), { recursive: true });
    let copied: number;
    try {
      await fs.rename(staged, dest);
      copied = names.length;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
      copied = await this.mergeInto(eventId, streamId, staged, names);
    } finally {
      await fs.rm(staged, { recursive: true, force: true });
    }
    const totals = await this.streamTotals(dest);
    return { ...totals, copied };
  }

  /** Removes staging directories not touched for `maxAgeMs` (uploads a crash cut short); returns how many. */
  async sweepStaging(maxAgeMs: number, nowMs = Date.now()): Promise<number> {
    const base = join(this.root, STAGING_DIR);
    let names: string[];
    try {
      names = await fs.readdir(base);
    } catch (err) {
      if (isNotFound(err)) return 0;
      throw err;
    }
    let removed = 0;
    for (const name of names) {
      const path = join(base, name);
      const st = await fs.lstat(path).catch(() => undefined);
      if (!st || nowMs - st.mtimeMs < maxAgeMs) continue;
      await fs.rm(path, { recursive: true, force: true });
      removed++;
    }
    return removed;
  }

  /** Copies staged files into an existing stream directory (see commitStaged); returns the files written. */
  private async mergeInto(eventId: string, streamId: string, srcDir: string, names: string[]): Promise<number> {
    const wanted = [...names].sort((a, b) => Number(a.endsWith('.m3u8')) - Number(b.endsWith('.m3u8')) || (a < b ? -1 : 1));
    let copied = 0;
    for (const name of wanted) {
      const target = this.streamFile(eventId, streamId, name);
      const isPlaylist = name.endsWith('.m3u8');
      const isGaps = name.endsWith('.json');
      if (!isPlaylist && !isGaps && (await this.exists(target))) continue;
      const data = await fs.readFile(join(srcDir, name));
      if (isPlaylist) {
        const stored = await this.readText(target);
        if (stored !== undefined && stored.trimEnd().endsWith(ENDLIST)) continue;
        if (stored === data.toString('utf8')) continue;
        // Uploads as they go only grow a playlist: a shorter unfinished one is an older upload arriving late.
        if (stored !== undefined && !data.toString('utf8').trimEnd().endsWith(ENDLIST) && data.length < Buffer.byteLength(stored)) continue;
        await this.atomicWrite(target, data);
        copied++;
      } else if (isGaps) {
        // gaps.json may change until the stream's playlist is final (it is written at the end of the call).
        const playlist = await this.readText(this.streamFile(eventId, streamId, 'index.m3u8'));
        if (playlist !== undefined && playlist.trimEnd().endsWith(ENDLIST) && (await this.exists(target))) continue;
        if ((await this.readText(target)) === data.toString('utf8')) continue;
        await this.atomicWrite(target, data);
        copied++;
      } else if (await this.atomicCreate(target, data)) {
        copied++;
      }
    }
    return copied;
  }

  /**
   * Writes event-info.xml only when `xml` carries a newer version (core/replication.ts) than the stored
   * copy; writes of one event are serialized here, so a compare and its write never interleave with
   * another's. Answers whether it wrote.
   */
  async writeEventInfoIfNewer(eventId: string, xml: string): Promise<boolean> {
    return this.#locked(eventId, async () => {
      const stored = await this.readEventInfo(eventId);
      if (stored !== undefined && compareVersions(parseVersion(xml), parseVersion(stored)) <= 0) return false;
      await this.writeEventInfo(eventId, xml);
      return true;
    });
  }

  /** Every stored stream of an event with each file's size, and whether its playlist is final. */
  async streamManifest(eventId: string): Promise<Record<string, ManifestStream>> {
    const out: Record<string, ManifestStream> = {};
    for (const s of await this.listStreams(eventId)) {
      const dir = this.streamDir(eventId, s.streamId);
      const files: Record<string, number> = {};
      for (const f of s.files) {
        const st = await fs.stat(join(dir, f)).catch(() => undefined);
        if (st?.isFile()) files[f] = st.size;
      }
      const playlist = files['index.m3u8'] !== undefined ? await this.readText(join(dir, 'index.m3u8')) : undefined;
      out[s.streamId] = { files, final: playlist !== undefined && isFinalPlaylist(playlist) };
    }
    return out;
  }

  /** Sizes of one stored stream's files (empty when the stream is not here). */
  async streamFileSizes(eventId: string, streamId: string): Promise<Record<string, number>> {
    const dir = this.streamDir(eventId, streamId);
    let names: string[];
    try {
      names = await fs.readdir(dir);
    } catch (err) {
      if (isNotFound(err)) return {};
      throw err;
    }
    const out: Record<string, number> = {};
    for (const n of names.filter((f) => STREAM_FILE_RE.test(f))) {
      const st = await fs.stat(join(dir, n)).catch(() => undefined);
      if (st?.isFile()) out[n] = st.size;
    }
    return out;
  }

  /** Up to `length` bytes of a stored stream file from `offset`; NotFoundError when it is not here. */
  async readFileRange(eventId: string, streamId: string, file: string, offset: number, length: number): Promise<{ data: Buffer; size: number; mtimeMs: number }> {
    const path = this.streamFile(eventId, streamId, file);
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(path, 'r');
    } catch (err) {
      if (isNotFound(err)) throw new NotFoundError(`no stored file ${file} [event:${eventId} stream:${streamId}]`);
      throw err;
    }
    try {
      const { size, mtimeMs } = await fh.stat();
      const n = Math.max(0, Math.min(length, size - offset));
      const data = Buffer.alloc(n);
      if (n > 0) await fh.read(data, 0, n, offset);
      return { data, size, mtimeMs };
    } finally {
      await fh.close();
    }
  }

  /** Deletes an event's stream files (retention), keeping its event-info.xml; a missing directory is fine. */
  async removeStreams(eventId: string): Promise<boolean> {
    const dir = join(this.eventDir(eventId), 'streams');
    const had = await this.exists(dir);
    await fs.rm(dir, { recursive: true, force: true });
    return had;
  }

  readonly #locks = new Map<string, Promise<unknown>>();

  /** Runs `fn` after every earlier call for the same key has finished. */
  async #locked<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#locks.get(key) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => {});
    this.#locks.set(key, tail);
    try {
      return await run;
    } finally {
      if (this.#locks.get(key) === tail) this.#locks.delete(key);
    }
  }

  private async readText(path: string): Promise<string | undefined> {
    return fs.readFile(path, 'utf8').catch((err) => (isNotFound(err) ? undefined : Promise.reject(err)));
  }

  /** Deletes an event's directory (retention); a missing one is fine. */
  async remove(eventId: string): Promise<void> {
    await fs.rm(this.eventDir(eventId), { recursive: true, force: true });
  }

  private async streamTotals(dir: string): Promise<{ files: number; bytes: number }> {
    let files = 0;
    let bytes = 0;
    for (const name of await fs.readdir(dir)) {
      if (!STREAM_FILE_RE.test(name)) continue;
      const st = await fs.stat(join(dir, name));
      files++;
      bytes += st.size;
    }
    return { files, bytes };
  }

  private async exists(path: string): Promise<boolean> {
    try {
      await fs.access(path);
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  private inside(path: string): string {
    const full = resolve(path);
    if (full !== this.root && !full.startsWith(this.root + sep)) {
      throw new ValidationFailedError(`path leaves the storage root: ${JSON.stringify(path)}`);
    }
    return full;
  }

  private tempPath(target: string): string {
    return `${target}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  }

  private async writeSynced(path: string, data: Buffer): Promise<void> {
    const fh = await fs.open(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o644);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  /** temp + fsync + rename: replaces the target atomically. */
  private async atomicWrite(target: string, data: Buffer): Promise<void> {
    const tmp = this.tempPath(target);
    try {
      await this.writeSynced(tmp, data);
      await fs.rename(tmp, target);
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
  }

  /** temp + fsync + link: creates the target atomically, never replacing one; false when it already exists. */
  private async atomicCreate(target: string, data: Buffer): Promise<boolean> {
    const tmp = this.tempPath(target);
    try {
      await this.writeSynced(tmp, data);
      await fs.link(tmp, target);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw err;
    } finally {
      await fs.rm(tmp, { force: true });
    }
  }
}

async function syncFile(path: string): Promise<void> {
  const fh = await fs.open(path, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * A stream being received into `<root>/.staging/<streamId>.<pid>.<random>/`: files arrive whole or
 * in ordered chunks (each checked against STREAM_FILE_RE, the size cap and the bytes already
 * received), nothing is visible to readers until `commit()`, and `abort()` leaves no trace.
 */
export class StagedStream {
  readonly #sizes = new Map<string, number>();
  #state: 'open' | 'committing' | 'done' = 'open';
  #broken?: Error;

  constructor(
    readonly storage: ContentStorage,
    readonly eventId: string,
    readonly streamId: string,
    /** The staging directory. */
    readonly dir: string,
  ) {}

  /** Appends a chunk at `offset` (the bytes of `file` received so far); returns the file's new size. */
  async append(file: string, offset: number, data: Buffer): Promise<number> {
    this.#writable();
    if (typeof file !== 'string' || !STREAM_FILE_RE.test(file)) {
      throw new ValidationFailedError(`invalid stream file name ${JSON.stringify(file)}`, { file: 'must be 1-64 of A-Z a-z 0-9 _ - with .m3u8, .ts or .json' });
    }
    const size = this.#sizes.get(file);
    if (size === undefined && this.#sizes.size >= MAX_STREAM_FILES) throw new ValidationFailedError(`a stream holds at most ${MAX_STREAM_FILES} files`, { file: 'too many files' });
    if (!Number.isSafeInteger(offset) || offset !== (size ?? 0)) {
      throw new ValidationFailedError(`chunk of ${file} at offset ${offset}, expected ${size ?? 0}`, { offset: 'must be the bytes received so far' });
    }
    const next = offset + data.length;
    if (next > MAX_STREAM_FILE_BYTES) throw new PayloadTooLargeError(MAX_STREAM_FILE_BYTES);
    // Claimed before the write, so a second chunk racing this one fails the offset check instead of interleaving.
    this.#sizes.set(file, next);
    try {
      await fs.writeFile(join(this.dir, file), data, { flag: offset === 0 ? 'wx' : 'a' });
    } catch (err) {
      this.#broken = err as Error;
      throw err;
    }
    return next;
  }

  /** Files received so far with their sizes. */
  files(): Record<string, number> {
    return Object.fromEntries(this.#sizes);
  }

  /**
   * Stores the stream (ContentStorage.commitStaged). With `expected`, every named file must have
   * arrived with exactly that size and no other file may have: a short upload is refused, not stored.
   */
  async commit(expected?: Record<string, number>): Promise<StreamCopyResult> {
    this.#writable();
    if (expected !== undefined) {
      const want = Object.entries(expected);
      const missing = want.filter(([name, bytes]) => this.#sizes.get(name) !== bytes).map(([name]) => name);
      const extra = [...this.#sizes.keys()].filter((name) => !Object.hasOwn(expected, name));
      if (missing.length > 0 || extra.length > 0) {
        throw new StateConflictError(`stream upload incomplete [event:${this.eventId} stream:${this.streamId}] missing or short: ${missing.slice(0, 5).join(', ') || '-'}; unexpected: ${extra.slice(0, 5).join(', ') || '-'}`);
      }
    }
    this.#state = 'committing';
    try {
      return await this.storage.commitStaged(this.eventId, this.streamId, this.dir);
    } finally {
      this.#state = 'done';
    }
  }

  /** Drops whatever was received; idempotent, and a no-op after commit. */
  async abort(): Promise<void> {
    if (this.#state === 'committing') return;
    this.#state = 'done';
    await fs.rm(this.dir, { recursive: true, force: true });
  }

  #writable(): void {
    if (this.#state !== 'open') throw new StateConflictError(`stream upload already ${this.#state === 'done' ? 'finished' : 'committing'} [event:${this.eventId} stream:${this.streamId}]`);
    if (this.#broken) throw new StateConflictError(`stream upload failed earlier [event:${this.eventId} stream:${this.streamId}] ${this.#broken.message}`);
  }
}
