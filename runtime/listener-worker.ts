/**
 * A listener worker: a child process of a gateway node that accepts connections on the gateway's
 * own listening socket (handed over by the parent, runtime/listener-workers.ts), so listener traffic
 * uses a second core. One Node process answers about 30,000 live requests a second here, a third of
 * them in JavaScript and the rest in the kernel's socket writes, which only more processes spread.
 *
 * What it answers itself: a live segment (`GET /s/<streamId>/segNNNNN.ts?a=…[&l=…]`) it holds, of a
 * stream the parent confirmed live less than `hotMs` ago, and a live playlist from the template the
 * parent gave less than `hotMs` ago (rewritten for the listener's code and ID, as the parent does),
 * each with an auth code that verifies here (HMAC with the cluster secret, no lookup). It counts each
 * for usage and sends the counts and its latencies to the parent every second. Everything else goes
 * to the parent:
 * - other live files, and segments it does not hold: asked over IPC; the parent answers as its own
 *   hot path would (playlist rewritten for the listener, counted there) and says whether the bytes
 *   may be kept (a segment a playlist already lists never changes);
 * - every other request, and a live file the parent refuses: proxied byte for byte to the parent's
 *   gateway over a Unix socket, so pages, the API and error answers are the gateway's own.
 *
 * Started by `bin/listener-worker.js` (which loads tsx); its first IPC message is `init` with the
 * server handle. It exits when the parent goes (the IPC channel closes).
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import type { Server } from 'node:net';
import { eventIdOfStream } from '../codecs/ids.ts';
import { ByteLru } from '../core/byte-lru.ts';
import { LISTENER_ID_RE } from '../core/usage.ts';
import type { WorkerFileAnswer, WorkerInit, WorkerMessage, WorkerStats } from './listener-workers.ts';
import { VerifiedCodes, parseFastLiveUrl } from './live-files.ts';

const SEGMENT_TYPE = 'video/mp2t';
const SEGMENT_CACHE = 'private, max-age=60';
const STATS_EVERY_MS = 1000;
const FILE_TIMEOUT_MS = 5000;

let init: WorkerInit | undefined;
const segments = new ByteLru<string, { body: Buffer; durationS: number }>(64 * 1024 * 1024);
/** When the parent last answered a file of each stream (its liveness, as the parent's hot cache has it). */
const confirmedAt = new Map<string, number>();
let codes: VerifiedCodes | undefined;
const pending = new Map<number, (a: WorkerFileAnswer) => void>();
let nextId = 1;
/** Usage and latency since the last stats message. */
let counts = new Map<string, { eventId: string; listenerId: string | null; durationS: number; n: number }>();
let playlistCounts = new Map<string, { eventId: string; listenerId: string | null; n: number }>();
let latencies: number[] = [];
/** Requests answered from this worker's own memory since the last stats message. */
let selfServed = 0;
/** Each stream's playlist template from the parent, with when it came (trusted for hotMs, like a confirmation). */
const templates = new Map<string, { parts: string[]; at: number; contentType: string; cacheControl: string }>();
let upstream: http.Agent | undefined;

function send(m: WorkerMessage): void {
  process.send?.(m);
}

function count(eventId: string, listenerId: string | undefined, durationS: number): void {
  const key = `${eventId}|${listenerId ?? ''}|${durationS}`;
  const c = counts.get(key);
  if (c) c.n++;
  else counts.set(key, { eventId, listenerId: listenerId ?? null, durationS, n: 1 });
}

function countPlaylist(eventId: string, listenerId: string | undefined): void {
  const key = `${eventId}|${listenerId ?? ''}`;
  const c = playlistCounts.get(key);
  if (c) c.n++;
  else playlistCounts.set(key, { eventId, listenerId: listenerId ?? null, n: 1 });
}

function askParent(q: { streamId: string; file: string; a: string; l?: string }): Promise<WorkerFileAnswer> {
  return new Promise((resolve) => {
    const id = nextId++;
    const timer = setTimeout(() => {
      pending.delete(id);
      resolve({ type: 'file', id, ok: false });
    }, FILE_TIMEOUT_MS);
    pending.set(id, (a) => {
      clearTimeout(timer);
      resolve(a);
    });
    send({ type: 'file', id, ...q });
  });
}

/** Passes the request to the parent's gateway unchanged (but for X-Forwarded-For) and its answer back. */
function proxy(req: IncomingMessage, res: ServerResponse): void {
  const client = req.socket.remoteAddress ?? '';
  const xff = req.headers['x-forwarded-for'];
  const headers = { ...req.headers, 'x-forwarded-for': xff ? `${String(xff)}, ${client}` : client };
  const up = http.request({ socketPath: init!.socketPath, method: req.method, path: req.url, headers, agent: upstream }, (r) => {
    res.writeHead(r.statusCode ?? 502, r.rawHeaders);
    r.pipe(res);
  });
  up.on('error', (err) => {
    if (!res.headersSent) {
      res.writeHead(502, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'BAD_GATEWAY', message: `listener worker: gateway unreachable (${err.message})` } }));
    } else res.destroy();
  });
  req.pipe(up);
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  const t0 = performance.now();
  const p = req.method === 'GET' ? parseFastLiveUrl(req.url) : undefined;
  if (!p) return proxy(req, res);
  const { streamId, file, a, l } = p;
  const listenerId = l !== undefined && LISTENER_ID_RE.test(l) ? l : undefined;
  const key = `${streamId}/${file}`;
  if (file === 'index.m3u8') {
    const t = templates.get(streamId);
    if (t && performance.now() - t.at < init!.hotMs) {
      const eventId = eventIdOfStream(streamId);
      if (codes!.valid(a, eventId, streamId)) {
        // `a` verified (digits, a dot, base64url) and `l` matched LISTENER_ID_RE: safe in a URI line.
        const body = t.parts.join(listenerId ? `${a}&l=${listenerId}` : a);
        res.writeHead(200, { 'Content-Type': t.contentType, 'Cache-Control': t.cacheControl, 'Content-Length': Buffer.byteLength(body) });
        res.end(body);
        countPlaylist(eventId, listenerId);
        selfServed++;
        latencies.push((performance.now() - t0) / 1000);
        return;
      }
    }
  }
  const held = file === 'index.m3u8' ? undefined : segments.get(key, 0);
  const at = confirmedAt.get(streamId);
  if (held && at !== undefined && performance.now() - at < init!.hotMs) {
    const eventId = eventIdOfStream(streamId);
    if (codes!.valid(a, eventId, streamId)) {
      res.writeHead(200, { 'Content-Type': SEGMENT_TYPE, 'Cache-Control': SEGMENT_CACHE, 'Content-Length': held.body.length });
      res.end(held.body);
      count(eventId, listenerId, held.durationS);
      selfServed++;
      latencies.push((performance.now() - t0) / 1000);
      return;
    }
  }
  askParent({ streamId, file, a, ...(l !== undefined ? { l } : {}) }).then((r) => {
    if (!r.ok || r.body === undefined) return proxy(req, res);
    // Both maps hold one entry per stream seen; a worker up for months forgets them all now and then.
    if (confirmedAt.size > 10_000) confirmedAt.clear();
    if (templates.size > 10_000) templates.clear();
    confirmedAt.set(streamId, performance.now());
    const body = typeof r.body === 'string' ? r.body : Buffer.from(r.body);
    if (r.keep && Buffer.isBuffer(body)) segments.set(key, { body, durationS: r.durationS ?? 2 }, body.length);
    if (r.parts) templates.set(streamId, { parts: r.parts, at: performance.now(), contentType: r.contentType!, cacheControl: r.cacheControl! });
    if (res.headersSent || res.destroyed) return;
    res.writeHead(200, { 'Content-Type': r.contentType!, 'Cache-Control': r.cacheControl!, 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
    latencies.push((performance.now() - t0) / 1000);
  }, () => proxy(req, res));
}

function flushStats(): void {
  if (counts.size === 0 && playlistCounts.size === 0 && latencies.length === 0) return;
  const stats: WorkerStats = { type: 'stats', pid: process.pid, selfServed, segments: [...counts.values()], playlists: [...playlistCounts.values()], latencies: Float64Array.from(latencies) };
  selfServed = 0;
  counts = new Map();
  playlistCounts = new Map();
  latencies = [];
  send(stats);
}

process.on('message', (m: WorkerMessage, handleArg: unknown) => {
  if (m?.type === 'init' && !init) {
    init = m;
    codes = new VerifiedCodes(m.secret);
    upstream = new http.Agent({ keepAlive: true, maxSockets: 64 });
    const listener = handle;
    const server = m.tlsCert && m.tlsKey ? https.createServer({ cert: readFileSync(m.tlsCert), key: readFileSync(m.tlsKey) }, listener) : http.createServer(listener);
    server.requestTimeout = 60_000;
    server.headersTimeout = 20_000;
    server.listen(handleArg as Server, () => send({ type: 'ready', pid: process.pid }));
    setInterval(flushStats, STATS_EVERY_MS).unref();
  } else if (m?.type === 'file') {
    const done = pending.get(m.id);
    pending.delete(m.id);
    done?.(m as WorkerFileAnswer);
  }
});
// The parent gone: so is this worker (its socket was the parent's).
process.on('disconnect', () => process.exit(0));
