import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ListenerMeter, UsageLedger, buildReport, mergeCounts, streamSeconds, type UsageCounts } from '../../core/usage.ts';

const E = '12345674';
const F = '87654325';
const L = (n: number) => `listener${String(n).padStart(4, '0')}`;

describe('ListenerMeter', () => {
  test('take() hands over listener IDs once each, request counts and media seconds, then starts over', () => {
    const m = new ListenerMeter();
    m.playlist(E, L(1));
    m.segment(E, L(1), 2.005);
    m.segment(E, L(1), 1.995);
    m.segment(E, L(2), 2);
    m.segment(F, undefined, 2);
    const d = m.take('n1', 1000)!;
    assert.equal(d.nodeId, 'n1');
    const e = d.events.find((x) => x.eventId === E)!;
    assert.deepEqual(e.seen.sort(), [L(1), L(2)]);
    assert.equal(e.segments, 3);
    assert.equal(e.playlists, 1);
    assert.equal(e.seconds, 6);
    // A request without a listener ID counts as a request and media time, not as a listener.
    assert.deepEqual(d.events.find((x) => x.eventId === F), { eventId: F, seen: [], segments: 1, playlists: 0, seconds: 2 });
    assert.equal(m.take('n1', 2000), undefined);
    assert.equal(m.empty, true);
  });

  test('an event keeps at most maxIdsPerEvent listener IDs per flush (junk IDs cannot grow memory)', () => {
    const m = new ListenerMeter(3);
    for (let i = 0; i < 10; i++) m.segment(E, L(i), 2);
    const e = m.take('n1', 0)!.events[0]!;
    assert.equal(e.seen.length, 3);
    assert.equal(e.segments, 10);
  });
});

describe('UsageLedger listeners', () => {
  test('one listener seen by two nodes is one listener; peak counts the listeners present at once', () => {
    const led = new UsageLedger({ presenceMs: 10_000 });
    led.apply({ nodeId: 'a', atMs: 0, events: [{ eventId: E, seen: [L(1), L(2)], segments: 2, playlists: 2, seconds: 4 }] }, 1000);
    led.apply({ nodeId: 'b', atMs: 0, events: [{ eventId: E, seen: [L(2), L(3)], segments: 2, playlists: 0, seconds: 4 }] }, 1500);
    let c = led.counts(E, 2000)!;
    assert.equal(c.currentListeners, 3);
    assert.equal(c.peakListeners, 3);
    assert.equal(c.totalListeners, 3);
    assert.equal(c.listeningSeconds, 8);
    assert.equal(c.segmentRequests, 4);
    assert.equal(c.playlistRequests, 2);
    assert.equal(c.peakAt, new Date(1500).toISOString());
    // 1 and 2 stop polling; 3 goes on, 4 arrives after they left: present 2, peak stays 3, total 4.
    led.apply({ nodeId: 'a', atMs: 0, events: [{ eventId: E, seen: [L(3)], segments: 1, playlists: 0, seconds: 2 }] }, 9000);
    led.apply({ nodeId: 'a', atMs: 0, events: [{ eventId: E, seen: [L(3), L(4)], segments: 2, playlists: 0, seconds: 4 }] }, 13_000);
    c = led.counts(E, 13_000)!;
    assert.equal(c.currentListeners, 2);
    assert.equal(c.peakListeners, 3);
    assert.equal(c.totalListeners, 4);
    assert.equal(c.listeningSeconds, 14);
    // Everyone gone quiet: nobody present, the peak and total stay.
    assert.equal(led.counts(E, 30_000)!.currentListeners, 0);
    assert.equal(led.currentListeners(30_000), 0);
    assert.equal(led.counts(E, 30_000)!.peakListeners, 3);
  });

  test('a listener who keeps polling is present the whole time and counted once', () => {
    const led = new UsageLedger({ presenceMs: 6000 });
    for (let t = 0; t <= 60_000; t += 2000) led.apply({ nodeId: 'a', atMs: t, events: [{ eventId: E, seen: [L(7)], segments: 1, playlists: 1, seconds: 2 }] }, t);
    const c = led.counts(E, 60_000)!;
    assert.deepEqual([c.currentListeners, c.peakListeners, c.totalListeners, c.listeningSeconds], [1, 1, 1, 62]);
  });

  test('malformed listener IDs and counts in a delta are ignored', () => {
    const led = new UsageLedger();
    led.apply({ nodeId: 'a', atMs: 0, events: [{ eventId: E, seen: ['x', '<script>', 42 as unknown as string, L(1)], segments: -5, playlists: Number.NaN, seconds: 2 }] }, 0);
    const c = led.counts(E, 0)!;
    assert.deepEqual([c.totalListeners, c.segmentRequests, c.playlistRequests, c.listeningSeconds], [1, 0, 0, 2]);
  });

  test('counts() is undefined for an event never heard of', () => {
    assert.equal(new UsageLedger().counts(E, 0), undefined);
  });
});

describe('UsageLedger calls', () => {
  test('call seconds add ended calls and the time so far of connected ones; repeated reports count once', () => {
    const led = new UsageLedger();
    led.callStarted({ eventId: E, channelId: 'c1', nodeId: 'v1', startedAtMs: 0 }, 0);
    led.callStarted({ eventId: E, channelId: 'c1', nodeId: 'v1', startedAtMs: 0 }, 10);
    led.callStarted({ eventId: E, channelId: 'c2', nodeId: 'v2', startedAtMs: 30_000 }, 30_000);
    let c = led.counts(E, 60_000)!;
    assert.equal(c.calls, 2);
    assert.equal(c.activeCalls, 2);
    assert.equal(c.callSeconds, 90);
    led.callEnded({ eventId: E, channelId: 'c1', nodeId: 'v1', startedAtMs: 0, endedAtMs: 120_000 }, 120_000);
    led.callEnded({ eventId: E, channelId: 'c1', nodeId: 'v1', startedAtMs: 0, endedAtMs: 120_000 }, 120_500);
    c = led.counts(E, 120_000)!;
    assert.equal(c.activeCalls, 1);
    assert.equal(c.callSeconds, 120 + 90);
    assert.equal(led.callsTotal, 2);
  });

  test('a call heard only ending (the usage actor started late) still counts, from its own start', () => {
    const led = new UsageLedger();
    led.callEnded({ eventId: E, channelId: 'c9', nodeId: 'v1', startedAtMs: 5000, endedAtMs: 65_000 }, 70_000);
    const c = led.counts(E, 70_000)!;
    assert.deepEqual([c.calls, c.callSeconds, c.activeCalls], [1, 60, 0]);
  });

  test('closeCalls() ends the calls of a voice server that left at that moment', () => {
    const led = new UsageLedger();
    led.callStarted({ eventId: E, channelId: 'c1', nodeId: 'v1', startedAtMs: 0 }, 0);
    led.callStarted({ eventId: E, channelId: 'c2', nodeId: 'v2', startedAtMs: 0 }, 0);
    assert.equal(led.closeCalls((x) => x.nodeId === 'v1', 30_000), 1);
    const c = led.counts(E, 60_000)!;
    assert.equal(c.activeCalls, 1);
    assert.equal(c.callSeconds, 30 + 60);
    // A late end for the closed call does not count it twice.
    led.callEnded({ eventId: E, channelId: 'c1', nodeId: 'v1', startedAtMs: 0, endedAtMs: 50_000 }, 60_000);
    assert.equal(led.counts(E, 60_000)!.callSeconds, 90);
  });

  test('forgetIdle() keeps events with a call connected and forgets quiet ones', () => {
    const led = new UsageLedger();
    led.callStarted({ eventId: E, channelId: 'c1', nodeId: 'v1', startedAtMs: 0 }, 0);
    led.apply({ nodeId: 'a', atMs: 0, events: [{ eventId: F, seen: [L(1)], segments: 1, playlists: 0, seconds: 2 }] }, 0);
    assert.deepEqual(led.forgetIdle(1000), [F]);
    assert.deepEqual(led.eventIds(), [E]);
  });
});

describe('mergeCounts / buildReport', () => {
  const row = (o: Partial<UsageCounts>): UsageCounts => ({
    eventId: E, peakListeners: 0, totalListeners: 0, listeningSeconds: 0, segmentRequests: 0, playlistRequests: 0, callSeconds: 0, calls: 0, currentListeners: 0, activeCalls: 0, ...o,
  });

  test('mergeCounts() takes the larger of each counter and the peak time of the larger peak', () => {
    const live = row({ peakListeners: 3, peakAt: 'T-live', totalListeners: 3, listeningSeconds: 10, currentListeners: 2 });
    const stored = row({ peakListeners: 5, peakAt: 'T-db', totalListeners: 9, listeningSeconds: 4, callSeconds: 60, calls: 1 });
    const m = mergeCounts(live, stored)!;
    assert.deepEqual([m.peakListeners, m.peakAt, m.totalListeners, m.listeningSeconds, m.callSeconds, m.calls, m.currentListeners], [5, 'T-db', 9, 10, 60, 1, 2]);
    assert.equal(mergeCounts(undefined, undefined), undefined);
    assert.deepEqual(mergeCounts(undefined, stored), stored);
  });

  test('streamSeconds() prefers the encoder duration, then start to end, then start to now', () => {
    assert.equal(streamSeconds({ startedAt: '2026-01-01T00:00:00Z', durationS: 42 }, 0), 42);
    assert.equal(streamSeconds({ startedAt: '2026-01-01T00:00:00Z', endedAt: '2026-01-01T00:01:00Z' }, 0), 60);
    assert.equal(streamSeconds({ startedAt: '2026-01-01T00:00:00Z' }, Date.parse('2026-01-01T00:00:30Z')), 30);
  });

  test('buildReport() reports minutes, sources and finality; the DB error is passed on', () => {
    const r = buildReport({
      eventId: E,
      live: row({ peakListeners: 2, totalListeners: 4, listeningSeconds: 300, callSeconds: 90, calls: 2, currentListeners: 1, activeCalls: 1, segmentRequests: 150, playlistRequests: 160 }),
      status: 'live',
      title: 'Quarterly',
      streams: [{ startedAt: '2026-01-01T00:00:00Z', durationS: 120 }, { startedAt: '2026-01-01T00:00:00Z', durationS: 60 }],
      liveStreams: 1,
      fragments: 0,
      dbError: 'connection refused',
      nowMs: 0,
    });
    assert.deepEqual(r.listeners, { peak: 2, total: 4, current: 1 });
    assert.equal(r.listeningMinutes, 5);
    assert.equal(r.callMinutes, 1.5);
    assert.deepEqual(r.calls, { total: 2, active: 1 });
    assert.deepEqual(r.streams, { total: 2, live: 1, minutes: 3 });
    assert.deepEqual(r.requests, { segments: 150, playlists: 160 });
    assert.equal(r.final, false);
    assert.deepEqual(r.sources, ['live']);
    assert.equal(r.dbError, 'connection refused');
    const done = buildReport({ eventId: E, stored: row({ calls: 1 }), status: 'archived', streams: [], liveStreams: 0, fragments: 3, nowMs: 0 });
    assert.equal(done.final, true);
    assert.deepEqual(done.sources, ['db']);
    assert.equal(done.fragments, 3);
  });
});
