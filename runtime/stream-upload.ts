/**
 * Hands a finished stream's directory to content storage (issue 3, files across nodes). When a
 * `content-storage` actor runs on this node it reads the directory itself (`putStream {dir}`).
 * Otherwise the storage node cannot see this disk, so the files go over the broker: `beginStream`
 * on whichever storage node the broker picks, then every chunk and the commit pinned to that node
 * (`nodeID`), the commit naming each file's size so a lost chunk is refused rather than stored.
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
  const begin = (await call('content-storage.beginStream', { eventId: s.eventId, streamId: s.streamId }, { timeout: 10_000 })) as BeginStreamResult;
  const { uploadId, nodeId } = begin;
  const sizes: Record<string, number> = {};
  try {
    await eachLimited(names, opts.concurrency ?? UPLOAD_CONCURRENCY, async (name) => {
      const path = join(s.dir, name);
      const st = await fs.lstat(path);
      if (!st.isFile()) return; // symlinks and directories are never encoder output
      if (st.size > MAX_STREAM_FILE_BYTES) throw new PayloadTooLargeError(MAX_STREAM_FILE_BYTES);
      const data = await fs.readFile(path);
      let offset = 0;
      // An empty file still sends one (empty) chunk, so it exists on the other side.
      do {
        const chunk = data.subarray(offset, offset + chunkBytes);
        await call('content-storage.putStreamFile', { uploadId, file: name, offset, data: chunk.toString('base64') }, { nodeID: nodeId, timeout: CHUNK_TIMEOUT_MS });
        offset += chunk.length;
      } while (offset < data.length);
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
