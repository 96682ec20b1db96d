/**
 * Hands a finished stream's directory to content storage (issue 3, files across nodes). When a
 * `content-storage` actor runs on this node it reads the directory itself (`putStream {dir}`).
 * Otherwise the storage node cannot see this disk, so the files go over the broker: `beginStream`
 * on whichever storage node the broker picks, then every chunk and the commit pinned to that node
 * (`nodeID`), the commit naming each file's size so a lost chunk is refused rather than stored.
 *
 * Uploads as they go (issue 4): while the call runs, `uploadProgress` sends every few seconds the
 * segments the current playlist lists that the storage node does not hold yet (`beginStream`
 * answers what it `have`s), then that playlist, so a node that dies mid-call loses at most the last
 * segment or two. That playlist lacks #EXT-X-ENDLIST: storage keeps replacing it until the
 * end-of-call commit (`storeStream`) stores the final one, and a stream whose encoder died
 * mid-call stays marked partial by it. The archive planner counts a stream's EXTINF durations, so
 * a partial stream is a take that ends where its last stored segment ends.
 *
 * The encoder pushes rather than storage pulling: an encoder stops its streams while its node
 * shuts down, after the node has told the cluster it serves no actions any more (Moleculer
 * `broker.stop()`), so nobody could fetch from it then; a node that stops can still call out.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { BeginStreamResult, StoredStreamTotals } from './contracts.ts';
import { PayloadTooLargeError } from './errors.ts';
import { MAX_STREAM_FILE_BYTES, STREAM_FILE_RE } from './storage.ts';

/** Bytes per `putStreamFile` call: 256 KiB is ~350 KB of base64, well inside NATS's default 1 MB message. */
export const UPLOAD_CHUNK_BYTES = 256 * 1024;
/** Files in flight at once per stream. */
export const UPLOAD_CONCURRENCY = 4;
/** Timeout of one chunk call, ms. */
const CHUNK_TIMEOUT_MS = 30_000;
/** Timeout of `putStream {dir}` and of the commit, ms (both copy the whole stream). */
const STORE_TIMEOUT_MS = 60_000;

/** The broker call storeStream makes (`ctx.call` or `broker.call`, bound). */
export type UploadCall = (action: string, params: unknown, opts?: { timeout?: number; nodeID?: string }) => Promise<unknown>;

/** What storeStream needs of the local broker. */
export interface UploadHost {
  nodeID: string;
  getLocalService(name: string): unknown;
}

/** The stream to store: its encoder output directory. */
export interface StreamToStore {
  eventId: string;
  streamId: string;
  dir: string;
}

/** storeStream's answer: what storage holds, and how the files got there. */
export interface StoreStreamResult extends StoredStreamTotals {
  via: 'path' | 'broker';
  /** The storage node that stored it. */
  nodeId: string;
}

/** Stores a finished stream in content storage, by path on this node or file by file over the broker. */
export async function storeStream(host: UploadHost, call: UploadCall, s: StreamToStore, opts: { chunkBytes?: number; concurrency?: number } = {}): Promise<StoreStreamResult> {
  if (host.getLocalService('content-storage')) {
    const r = (await call('content-storage.putStream', { eventId: s.eventId, streamId: s.streamId, dir: s.dir }, { timeout: STORE_TIMEOUT_MS, nodeID: host.nodeID })) as StoredStreamTotals;
    return { files: r.files, bytes: r.bytes, via: 'path', nodeId: host.nodeID };
  }
  const chunkBytes = opts.chunkBytes ?? UPLOAD_CHUNK_BYTES;
  const names = (await fs.readdir(s.dir)).filter((n) => STREAM_FILE_RE.test(n)).sort();
  const begin = (await call('content-storage.beginStream', { eventId: s.eventId, streamId: s.streamId }, { timeout: 10_000 })) as BeginStreamResult & { have?: Record<string, number> };
  const { uploadId, nodeId } = begin;
  const have = begin.have ?? {};
  const sizes: Record<string, number> = {};
  try {
    await eachLimited(names, opts.concurrency ?? UPLOAD_CONCURRENCY, async (name) => {
      const path = join(s.dir, name);
      const st = await fs.lstat(path);
      if (!st.isFile()) return; // symlinks and directories are never encoder output
      if (st.size > MAX_STREAM_FILE_BYTES) throw new PayloadTooLargeError(MAX_STREAM_FILE_BYTES);
      // Segments uploaded as the call went are immutable: those the node holds at this size stay put.
      if (name.endsWith('.ts') && have[name] === st.size) return;
      const data = await fs.readFile(path);
      await sendChunks(call, { uploadId, nodeId, chunkBytes }, name, data);
      sizes[name] = data.length;
    });
    const r = (await call('content-storage.commitStream', { uploadId, files: sizes }, { nodeID: nodeId, timeout: STORE_TIMEOUT_MS })) as StoredStreamTotals;
    return { files: r.files, bytes: r.bytes, via: 'broker', nodeId };
  } catch (err) {
    // Best effort: storage also drops an upload that stays idle.
    await call('content-storage.abortStream', { uploadId }, { nodeID: nodeId, timeout: 5000 }).catch(() => {});
    throw err;
  }
}

/** Runs `fn` over `items`, at most `limit` at once; the first failure rejects (the rest finish quietly). */
/** Sends one file of an upload in order, chunk by chunk, to the storage node that began it. */
async function sendChunks(call: UploadCall, up: { uploadId: string; nodeId: string; chunkBytes: number }, name: string, data: Buffer): Promise<void> {
  let offset = 0;
  // An empty file still sends one (empty) chunk, so it exists on the other side.
  do {
    const chunk = data.subarray(offset, offset + up.chunkBytes);
    await call('content-storage.putStreamFile', { uploadId: up.uploadId, file: name, offset, data: chunk.toString('base64') }, { nodeID: up.nodeId, timeout: CHUNK_TIMEOUT_MS });
    offset += chunk.length;
  } while (offset < data.length);
}

async function eachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
}

/** What one `uploadProgress` sent. */
export interface ProgressResult {
  /** Files sent (0: storage was up to date). */
  sent: number;
  bytes: number;
  /** The storage node that took them. */
  nodeId?: string;
}

/** Segment file names a media playlist lists, in order (URIs are relative names in the encoder's directory). */
export function listedSegments(playlist: string): string[] {
  return playlist
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => l.split('?')[0]!.split('/').pop()!)
    .filter((n) => STREAM_FILE_RE.test(n));
}

/**
 * Sends what storage lacks of a stream still being encoded: the segments its playlist lists, then
 * that very playlist (read once, so it never names a segment not sent) and gaps.json when present.
 * To this node's storage when it has one, else to any storage node, which replicates it.
 */
export async function uploadProgress(host: UploadHost, call: UploadCall, s: StreamToStore, opts: { chunkBytes?: number } = {}): Promise<ProgressResult> {
  let playlist: Buffer;
  try {
    playlist = await fs.readFile(join(s.dir, 'index.m3u8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { sent: 0, bytes: 0 };
    throw err;
  }
  const local = host.getLocalService('content-storage') ? { nodeID: host.nodeID } : {};
  const begin = (await call('content-storage.beginStream', { eventId: s.eventId, streamId: s.streamId }, { timeout: 10_000, ...local })) as BeginStreamResult & { have?: Record<string, number> };
  const { uploadId, nodeId } = begin;
  const have = begin.have ?? {};
  const chunkBytes = opts.chunkBytes ?? UPLOAD_CHUNK_BYTES;
  const sizes: Record<string, number> = {};
  const send = async (name: string, data: Buffer) => {
    await sendChunks(call, { uploadId, nodeId, chunkBytes }, name, data);
    sizes[name] = data.length;
  };
  try {
    for (const name of listedSegments(playlist.toString('utf8'))) {
      if (have[name] !== undefined || sizes[name] !== undefined) continue;
      const data = await fs.readFile(join(s.dir, name)).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(err)));
      if (data) await send(name, data);
    }
    const gaps = await fs.readFile(join(s.dir, 'gaps.json')).catch(() => undefined);
    if (gaps && have['gaps.json'] !== gaps.length) await send('gaps.json', gaps);
    if (Object.keys(sizes).length > 0 || have['index.m3u8'] !== playlist.length) await send('index.m3u8', playlist);
    if (Object.keys(sizes).length === 0) {
      await call('content-storage.abortStream', { uploadId }, { nodeID: nodeId, timeout: 5000 }).catch(() => {});
      return { sent: 0, bytes: 0, nodeId };
    }
    await call('content-storage.commitStream', { uploadId, files: sizes }, { nodeID: nodeId, timeout: STORE_TIMEOUT_MS });
    return { sent: Object.keys(sizes).length, bytes: Object.values(sizes).reduce((a, b) => a + b, 0), nodeId };
  } catch (err) {
    await call('content-storage.abortStream', { uploadId }, { nodeID: nodeId, timeout: 5000 }).catch(() => {});
    throw err;
  }
}
