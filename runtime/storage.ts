/**
 * One storage center's directory (DESIGN.md "Content storage layout"):
 * `<root>/<eventId>/event-info.xml` and `<root>/<eventId>/streams/<streamId>/<file>`.
 *
 * Paths are only ever joined from values that passed `isValidEventId`, `isValidStreamId` or
 * STREAM_FILE_RE, and the resolved path is checked to stay under the root. Writes are atomic
 * (temp file, fsync, rename), so a reader never sees half a file and a crash leaves the old one.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsc, promises as fs } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import { isValidEventId, isValidStreamId } from '../codecs/ids.ts';
import { NotFoundError, ValidationFailedError } from './errors.ts';

/** File names a stream directory may hold: the playlist, segments and `gaps.json`. */
export const STREAM_FILE_RE = /^[A-Za-z0-9_-]{1,64}\.(m3u8|ts|json)$/;

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
   * Copies an encoder's output directory into the stream's directory. Only STREAM_FILE_RE names are
   * taken (ffmpeg's `*.tmp` files are skipped). A stored file is never overwritten, except an
   * `index.m3u8` that did not yet end with #EXT-X-ENDLIST (an upload made while the stream still ran).
   * Segments go before the playlist, so a stored playlist never names a segment not yet stored.
   */
  async copyStream(eventId: string, streamId: string, srcDir: string): Promise<StreamCopyResult> {
    const dest = this.streamDir(eventId, streamId);
    let names: string[];
    try {
      names = await fs.readdir(srcDir);
    } catch (err) {
      if (isNotFound(err)) throw new NotFoundError(`no stream directory ${srcDir} [event:${eventId} stream:${streamId}]`);
      throw err;
    }
    const wanted = names.filter((n) => STREAM_FILE_RE.test(n)).sort((a, b) => Number(a.endsWith('.m3u8')) - Number(b.endsWith('.m3u8')) || (a < b ? -1 : 1));
    await fs.mkdir(dest, { recursive: true });
    let copied = 0;
    for (const name of wanted) {
      const src = join(srcDir, name);
      const stat = await fs.lstat(src);
      if (!stat.isFile()) continue;
      const target = this.streamFile(eventId, streamId, name);
      const isPlaylist = name.endsWith('.m3u8');
      if (!isPlaylist && (await this.exists(target))) continue;
      const data = await fs.readFile(src);
      if (isPlaylist) {
        const stored = await fs.readFile(target, 'utf8').catch((err) => (isNotFound(err) ? undefined : Promise.reject(err)));
        if (stored !== undefined && stored.trimEnd().endsWith(ENDLIST)) continue;
        if (stored === data.toString('utf8')) continue;
        await this.atomicWrite(target, data);
        copied++;
      } else if (await this.atomicCreate(target, data)) {
        copied++;
      }
    }
    const totals = await this.streamTotals(dest);
    return { ...totals, copied };
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
