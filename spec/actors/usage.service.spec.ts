/**
 * The usage actor with the real attendee access and gateway in front (in-process broker): listener
 * counts come from real playlist and segment requests over HTTP, calls from the voice servers'
 * broadcasts; `GET /api/events/:eventId/report` and `/metrics` are read as a client would.
 */
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Context, ServiceBroker, ServiceSchema } from 'moleculer';
import { createAttendeeAccessService } from '../../actors/attendee-access.service.ts';
import { createGatewayService } from '../../actors/gateway.service.ts';
import { createUsageService, type UsageStore } from '../../actors/usage.service.ts';
import { signToken } from '../../codecs/token.ts';
import { createBroker } from '../../runtime/broker.ts';
import { EVENTS, type EventView, type StreamDataset, type StreamRecord } from '../../runtime/contracts.ts';
import { NotFoundError } from '../../runtime/errors.ts';
import { parseXml } from '../../runtime/http-body.ts';
import type { UsageRow } from '../../runtime/usage-db.ts';
import { testConfig } from '../support/config.ts';
import { waitFor } from '../support/event-plane.ts';

const PORT = 18471;
const BASE = `http://127.0.0.1:${PORT}`;
const KEY = 'spec-api-key-0123456789';
const AUTH = { authorization: `Bearer ${KEY}` };
const EVENT = '12345674';
const UNKNOWN = '76543214';
const STREAM = `${EVENT}-spec-node-10002-loyw3v28`;
const SEGMENTS = [2.005, 1.995, 2];
const PLAYLIST = ['#EXTM3U', '#EXT-X-VERSION:3', '#EXT-X-TARGETDURATION:2', '#EXT-X-MEDIA-SEQUENCE:0', ...SEGMENTS.flatMap((d, i) => [`#EXTINF:${d.toFixed(3)},`, `seg0000${i}.ts`]), ''].join('\n');

const config = testConfig({ httpPort: String(PORT) });
const secret = config.secret;

/** The world the fakes answer from. */
const world = {
  view: undefined as EventView | undefined,
  history: [] as StreamRecord[],
  alive: true,
  rows: [] as UsageRow[],
  readFails: false,
  stored: undefined as UsageRow | undefined,
};

function view(status: EventView['status'], extra: Partial<EventView> = {}): EventView {
  return {
    eventId: EVENT, title: 'Quarterly call', format: 'hls', createdAt: '2027-01-15T09:00:00.000Z', updatedAt: '2027-01-15T10:00:00.000Z', archiveDays: 30,
    hasPassword: false, attendeeUrl: 'http://x/e/t', hostUrl: 'http://x/e/h', status, streams: [], callers: 0, ...extra,
  };
}

const dataset: StreamDataset = {
  streamId: STREAM, eventId: EVENT, format: 'hls', port: 10002, nodeId: 'spec-node', dataCenter: 'dc1', url: `/s/${STREAM}/index.m3u8`,
  startedAt: '2027-01-15T10:00:00.000Z', lastSeenAt: '2027-01-15T10:00:01.000Z',
};

const fakes: ServiceSchema[] = [
  {
    name: 'monitoring',
    actions: {
      activeStreams: (ctx: Context<{ eventId?: string }>) => (world.alive && (!ctx.params.eventId || ctx.params.eventId === EVENT) ? [dataset] : []),
      history: () => world.history,
      health: () => ({ intervalS: 30, assets: [{ asset: 'voice-server', nodeId: 'v1', healthy: true }, { asset: 'encoder-port', nodeId: 'v1', healthy: false }] }),
    },
  },
  {
    name: 'event',
    actions: {
      get(ctx: Context<{ eventId: string }>) {
        if (ctx.params.eventId !== EVENT || !world.view) throw new NotFoundError(`event ${ctx.params.eventId} not found`);
        return world.view;
      },
    },
  },
  {
    // Stands in for the reservation actor: the report asks it, so the API's access rules apply.
    name: 'reservation',
    actions: {
      create: () => ({ eventId: EVENT, status: 'reserved' }),
      get(ctx: Context<{ eventId: string }>) {
        return ctx.call('event.get', { eventId: ctx.params.eventId });
      },
    },
  },
];

/** A usage store in memory whose reads can be made to fail like a stopped database. */
const store = (): UsageStore => ({
  enqueue: (row) => void world.rows.push(row),
  read: async () => {
    if (world.readFails) throw new Error('connect ECONNREFUSED 127.0.0.1:5432');
    return world.stored;
  },
  depth: () => 0,
  close: async () => {},
});

let broker: ServiceBroker;

before(async () => {
  const dir = join(config.dataDir, 'live', STREAM);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'index.m3u8'), PLAYLIST);
  for (let i = 0; i < SEGMENTS.length; i++) writeFileSync(join(dir, `seg0000${i}.ts`), Buffer.alloc(188 * 10, i));
  broker = createBroker(config);
  for (const s of fakes) broker.createService(s);
  broker.createService(createAttendeeAccessService(config, { usageFlushMs: 20 }));
  broker.createService(createUsageService(config, { store }));
  broker.createService(createGatewayService(config));
  await broker.start();
});
after(() => broker.stop());
beforeEach(() => {
  world.view = view('live', { streams: [{ streamId: STREAM, nodeId: 'spec-node', dataCenter: 'dc1', port: 10002, format: 'hls', url: dataset.url, startedAt: dataset.startedAt }] });
  world.history = [];
  world.alive = true;
  world.rows = [];
  world.readFails = false;
  world.stored = undefined;
});

async function get(path: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string; type: string | null }> {
  const res = await fetch(BASE + path, { headers });
  return { status: res.status, text: await res.text(), type: res.headers.get('content-type') };
}

async function report(): Promise<any> {
  const r = await get(`/api/events/${EVENT}/report`, AUTH);
  assert.equal(r.status, 200, r.text);
  return JSON.parse(r.text);
}

/** One player session: the master playlist, its stream's playlist, then `segments` segments. Returns the listener ID. */
async function listen(segments: number): Promise<string> {
  const token = signToken(secret, { e: EVENT, r: 'attendee' });
  const master = await get(`/e/${token}/live.m3u8`);
  assert.equal(master.status, 200, master.text);
  const variant = master.text.split('\n').find((l) => l.startsWith('/s/'))!;
  const l = /[?&]l=([A-Za-z0-9_-]+)/.exec(variant)?.[1];
  assert.ok(l, `no listener ID in ${variant}`);
  const media = await get(variant);
  assert.equal(media.status, 200, media.text);
  const uris = media.text.split('\n').filter((x) => x.startsWith('seg'));
  for (const u of uris) assert.match(u, new RegExp(`[?&]l=${l}(&|$)`), 'segment URIs carry the listener ID');
  for (const u of uris.slice(0, segments)) {
    const s = await get(`/s/${STREAM}/${u}`);
    assert.equal(s.status, 200);
  }
  return l;
}

describe('usage actor: GET /api/events/:eventId/report', () => {
  it('counts a listener from real playlist and segment requests, then a second one: peak, total and listening time move', async () => {
    const before = await report();
    await listen(2);
    const one = await waitFor('the first listener in the report', async () => {
      const r = await report();
      return r.listeners.total > before.listeners.total && r.requests.segments - before.requests.segments >= 2 ? r : undefined;
    });
    assert.equal(one.listeners.total - before.listeners.total, 1);
    assert.ok(one.listeners.current >= 1 && one.listeners.peak >= 1, JSON.stringify(one.listeners));
    assert.ok(one.requests.segments - before.requests.segments === 2 && one.requests.playlists - before.requests.playlists === 1, JSON.stringify(one.requests));
    // Two segments of 2.005 s and 1.995 s: 4 s of media.
    assert.equal(Math.round((one.listeningMinutes - before.listeningMinutes) * 60), 4);
    assert.deepEqual(one.sources, ['live']);
    assert.equal(one.status, 'live');
    await listen(1);
    const two = await waitFor('the second listener', async () => {
      const r = await report();
      return r.listeners.total === one.listeners.total + 1 ? r : undefined;
    });
    assert.ok(two.listeners.peak >= 2 && two.listeners.current >= 2, JSON.stringify(two.listeners));
  });

  it('the listener fast path answers errors as the regular path does and counts only what it served', async () => {
    // The test before waits for its listener, not for that listener's last counts: let them land first.
    let before = await report();
    for (let settled = 0; settled < 3; ) {
      await new Promise((r) => setTimeout(r, 100));
      const again = await report();
      settled = again.requests.segments === before.requests.segments && again.requests.playlists === before.requests.playlists ? settled + 1 : 0;
      before = again;
    }
    const token = signToken(secret, { e: EVENT, r: 'attendee' });
    const variant = (await get(`/e/${token}/live.m3u8`)).text.split('\n').find((x) => x.startsWith('/s/'))!;
    const a = /[?&]a=([^&]+)/.exec(variant)![1]!;
    const bad = await get(`/s/${STREAM}/seg00001.ts?a=${a.slice(0, -1)}${a.endsWith('A') ? 'B' : 'A'}&l=abcdefghijkl`);
    assert.equal(bad.status, 403);
    assert.match(JSON.parse(bad.text).error.message, /auth code/);
    assert.equal((await get(`/s/${STREAM}/seg00009.ts?a=${a}&l=abcdefghijkl`)).status, 404);
    world.alive = false;
    await new Promise((r) => setTimeout(r, 300)); // past the hot cache (250 ms): the stream is gone
    assert.equal((await get(`/s/${STREAM}/seg00001.ts?a=${a}&l=abcdefghijkl`)).status, 404);
    world.alive = true;
    await new Promise((r) => setTimeout(r, 300)); // and back, past the hot cache again
    // An extra query parameter is routed the regular way (which ignores it) and served.
    assert.equal((await get(`/s/${STREAM}/seg00001.ts?a=${a}&l=abcdefghijkl&x=1`)).status, 200);
    const after = await waitFor('the served segment counted', async () => {
      const r = await report();
      return r.requests.segments > before.requests.segments ? r : undefined;
    });
    assert.equal(after.requests.segments - before.requests.segments, 1);
  });

  it('call minutes come from the voice servers\' call reports; a connected call counts up to now', async () => {
    const t0 = Date.now();
    await broker.broadcast(EVENTS.callStarted, { eventId: EVENT, channelId: 'spec-c1', nodeId: 'v1', startedAtMs: t0 - 120_000 });
    await broker.broadcast(EVENTS.callEnded, { eventId: EVENT, channelId: 'spec-c1', nodeId: 'v1', startedAtMs: t0 - 120_000, endedAtMs: t0 - 60_000 });
    await broker.broadcast(EVENTS.callStarted, { eventId: EVENT, channelId: 'spec-c2', nodeId: 'v1', startedAtMs: t0 - 30_000 });
    const r = await waitFor('two calls', async () => {
      const x = await report();
      return x.calls.total >= 2 ? x : undefined;
    });
    assert.equal(r.calls.active, 1);
    // One minute ended plus at least half a minute connected.
    assert.ok(r.callMinutes >= 1.5 && r.callMinutes < 2, String(r.callMinutes));
    await broker.broadcast(EVENTS.callEnded, { eventId: EVENT, channelId: 'spec-c2', nodeId: 'v1', startedAtMs: t0 - 30_000, endedAtMs: t0 });
    const done = await waitFor('the second call ended', async () => {
      const x = await report();
      return x.calls.active === 0 ? x : undefined;
    });
    assert.equal(done.callMinutes, 1.5);
  });

  it('answers from the live counters when the reporting DB is down, and says so', async () => {
    world.readFails = true;
    const r = await report();
    assert.deepEqual(r.sources.includes('db'), false);
    assert.match(r.dbError, /ECONNREFUSED/);
    assert.equal(r.eventId, EVENT);
  });

  it('merges the stored row: counters never go below what the DB holds (a restarted usage actor)', async () => {
    world.stored = {
      eventId: EVENT, peakListeners: 500, peakAt: '2027-01-15T10:30:00.000Z', totalListeners: 900, listeningSeconds: 6000, segmentRequests: 3000, playlistRequests: 3100,
      callSeconds: 7200, calls: 3, streams: 2, streamSeconds: 7000, fragments: 4, status: 'archived', final: true, updatedAt: '2027-01-15T11:00:00.000Z',
    };
    world.view = view('archived', { archive: [{ streamId: STREAM, start: 0, end: 60 }] });
    world.history = [{ streamId: STREAM, eventId: EVENT, nodeId: 'spec-node', dataCenter: 'dc1', port: 10002, startedAt: '2027-01-15T10:00:00.000Z', durationS: 3600 }];
    const r = await report();
    assert.deepEqual(r.listeners.peak, 500);
    assert.equal(r.listeners.peakAt, '2027-01-15T10:30:00.000Z');
    assert.equal(r.listeners.total, 900);
    assert.equal(r.callMinutes, 120);
    assert.equal(r.fragments, 4);
    assert.deepEqual(r.streams, { total: 1, live: 0, minutes: 60 });
    assert.equal(r.final, true);
    assert.deepEqual(r.sources, ['live', 'db']);
  });

  it('answers XML to an XML client, 404 for an unknown event and 400 naming eventId for a malformed one', async () => {
    const x = await get(`/api/events/${EVENT}/report`, { ...AUTH, accept: 'application/xml' });
    assert.equal(x.status, 200);
    assert.match(x.type ?? '', /xml/);
    assert.match(x.text, /<report>/);
    const doc = parseXml(x.text) as any;
    assert.equal(String(doc.eventId), EVENT);
    assert.ok(doc.listeners && doc.listeners.peak !== undefined, x.text);
    assert.equal((await get(`/api/events/${UNKNOWN}/report`, AUTH)).status, 404);
    const bad = await get('/api/events/12345675/report', AUTH);
    assert.equal(bad.status, 400);
    assert.match(bad.text, /eventId/);
    assert.equal((await get(`/api/events/${EVENT}/report`)).status, 401);
  });

  it('writes the row when the event ends and again, final, when it is archived', async () => {
    await listen(1);
    world.view = view('ended');
    await broker.broadcast(EVENTS.eventStatus, { eventId: EVENT, status: 'ended' });
    const ended = await waitFor('the ended row', () => world.rows.find((r) => r.status === 'ended'));
    assert.equal(ended.final, false);
    assert.ok(ended.totalListeners >= 1 && ended.listeningSeconds > 0, JSON.stringify(ended));
    world.view = view('archived', { archive: [{ streamId: STREAM, start: 0, end: 4 }, { streamId: STREAM, start: 4, end: 6 }] });
    world.history = [{ streamId: STREAM, eventId: EVENT, nodeId: 'spec-node', dataCenter: 'dc1', port: 10002, startedAt: '2027-01-15T10:00:00.000Z', endedAt: '2027-01-15T10:01:00.000Z' }];
    await broker.broadcast(EVENTS.eventStatus, { eventId: EVENT, status: 'archived' });
    const archived = await waitFor('the archived row', () => world.rows.find((r) => r.status === 'archived'));
    assert.equal(archived.final, true);
    assert.equal(archived.fragments, 2);
    assert.equal(archived.streams, 1);
    assert.equal(archived.streamSeconds, 60);
  });
});

/** One sample line of the text exposition format: name, labels, value. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * A strict reader of the Prometheus text format (0.0.4): every line is a HELP or TYPE comment or a
 * sample `name{label="value",...} number`; every sample's family has a TYPE; throws on anything else.
 */
function parseExposition(text: string): { types: Map<string, string>; samples: Sample[] } {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
  const sampleRe = new RegExp(`^(${NAME})(?:\\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\.)*",?)*)\\})? (-?(?:[0-9.]+(?:e[+-]?[0-9]+)?|\\+Inf|-Inf|NaN))$`);
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m: RegExpExecArray | null;
    if ((m = new RegExp(`^# HELP (${NAME}) .+$`).exec(line))) continue;
    if ((m = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`).exec(line))) {
      types.set(m[1]!, m[2]!);
      continue;
    }
    m = sampleRe.exec(line);
    if (!m) throw new Error(`not exposition format: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    for (const lm of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[lm[1]!] = lm[2]!;
    const family = m[1]!.replace(/_(bucket|sum|count)$/, '');
    if (!types.has(m[1]!) && !types.has(family)) throw new Error(`sample without a TYPE: ${line}`);
    samples.push({ name: m[1]!, labels, value: Number(m[3]!.replace('+Inf', 'Infinity')) });
  }
  return { types, samples };
}

const value = (s: Sample[], name: string, labels: Record<string, string> = {}) =>
  s.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v))?.value;

describe('gateway: /metrics', () => {
  it('parses as the Prometheus text format, needs no API key, and its numbers move with a reservation, a listener and a call', async () => {
    const first = await get('/metrics');
    assert.equal(first.status, 200);
    assert.match(first.type ?? '', /^text\/plain; version=0\.0\.4/);
    const a = parseExposition(first.text);
    assert.equal(a.types.get('jitcast_http_request_duration_seconds'), 'histogram');
    assert.equal(a.types.get('jitcast_calls_total'), 'counter');
    for (const g of ['jitcast_calls_active', 'jitcast_listeners', 'jitcast_streams_live', 'jitcast_pool_members', 'jitcast_db_queue_depth']) {
      assert.equal(a.types.get(g), 'gauge', g);
    }
    assert.equal(value(a.samples, 'jitcast_streams_live'), 1);
    assert.equal(value(a.samples, 'jitcast_pool_members', { pool: 'encoder-port', state: 'evicted' }), 1);
    const created0 = value(a.samples, 'jitcast_http_request_duration_seconds_count', { route: 'reservation.create', method: 'POST', code: '201' }) ?? 0;
    const segments0 = value(a.samples, 'jitcast_http_request_duration_seconds_count', { route: 'attendee-access.liveFile', method: 'GET', code: '200' }) ?? 0;
    const calls0 = value(a.samples, 'jitcast_calls_total')!;

    const res = await fetch(`${BASE}/api/events`, { method: 'POST', headers: { ...AUTH, 'content-type': 'application/json' }, body: JSON.stringify({ title: 'Metrics' }) });
    assert.equal(res.status, 201);
    await listen(1);
    await broker.broadcast(EVENTS.callStarted, { eventId: EVENT, channelId: 'spec-metrics-call', nodeId: 'v1', startedAtMs: Date.now() });

    const b = await waitFor('metrics to move', async () => {
      const p = parseExposition((await get('/metrics')).text);
      return (value(p.samples, 'jitcast_listeners') ?? 0) >= 1 && value(p.samples, 'jitcast_calls_total')! > calls0 ? p : undefined;
    });
    assert.equal(value(b.samples, 'jitcast_http_request_duration_seconds_count', { route: 'reservation.create', method: 'POST', code: '201' }), created0 + 1);
    // The listener fetched its media playlist and one segment through liveFile.
    assert.equal(value(b.samples, 'jitcast_http_request_duration_seconds_count', { route: 'attendee-access.liveFile', method: 'GET', code: '200' }), segments0 + 2);
    assert.ok(value(b.samples, 'jitcast_calls_active')! >= 1);
    // Histogram buckets are cumulative and the +Inf bucket is the count.
    const buckets = b.samples.filter((x) => x.name === 'jitcast_http_request_duration_seconds_bucket' && x.labels.route === 'attendee-access.liveFile' && x.labels.code === '200');
    assert.ok(buckets.length > 3);
    for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i]!.value >= buckets[i - 1]!.value);
    assert.equal(buckets.at(-1)!.labels.le, '+Inf');
    assert.equal(buckets.at(-1)!.value, segments0 + 2);
    await broker.broadcast(EVENTS.callEnded, { eventId: EVENT, channelId: 'spec-metrics-call', nodeId: 'v1', startedAtMs: Date.now() - 1000, endedAtMs: Date.now() });
  });

  it('the exposition reader refuses a malformed line (so the format check can fail)', () => {
    assert.throws(() => parseExposition('# TYPE x gauge\nx{a="1" 3\n'), /not exposition format/);
    assert.throws(() => parseExposition('y 1\n'), /without a TYPE/);
  });
});
