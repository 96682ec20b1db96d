/**
 * Replication between storage centers (issue 4, item 5), three processes on port slot 5:
 * - `door` (dc1): the event plane (gateway, reservation, event, monitoring, archive coordinator,
 *   attendee access) and a voice server with its encoder. It runs NO content storage: every read
 *   and write crosses NATS to a storage node (runtime/storage-client.ts).
 * - `s1` (dc1) and `s2` (dc2): content-storage only, one storage center each, own data directory.
 * (The harness gives a slot three nodes, so the event plane and the voice/encoder share `door`.)
 *
 * A call goes live; while it runs, the encoder uploads its segments as it goes, so a storage
 * center holds the stream's unfinished playlist before the call ends. The event ends and is
 * archived; both centers then hold byte-identical event-info.xml and streams. The archive is played
 * through the door segment by segment, and `s1` is SIGKILLed mid-playback: every remaining segment
 * must still answer 200 (from s2). A reservation made while s1 is down reaches s1 when it is
 * restarted (catch-up on rejoin).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureServices, placeCall, sippPorts, startCluster, waitForLog, waitUntil, type Cluster, type PlacedCall } from '../support/cluster.ts';

const SLOT = 5;
const DOOR_ROLES = ['gateway', 'reservation', 'event', 'monitoring', 'archive-coordinator', 'attendee-access', 'voice-server', 'encoder-port'];
const STORAGE_ROLES = ['content-storage'];

/** A storage node's copy of an event: event-info.xml and every stream file (base64), or undefined. */
function copyOf(cluster: Cluster, nodeId: string, center: string, eventId: string): { info?: string; streams: Record<string, Record<string, string>> } {
  const dir = join(cluster.node(nodeId).dataDir, 'storage', center, eventId);
  const infoPath = join(dir, 'event-info.xml');
  const streams: Record<string, Record<string, string>> = {};
  const sdir = join(dir, 'streams');
  if (existsSync(sdir)) {
    for (const s of readdirSync(sdir).sort()) {
      streams[s] = Object.fromEntries(readdirSync(join(sdir, s)).sort().map((f) => [f, readFileSync(join(sdir, s, f)).toString('base64')]));
    }
  }
  return { info: existsSync(infoPath) ? readFileSync(infoPath, 'utf8') : undefined, streams };
}

describe('storage replication: two storage centers, SIGKILL of one during archive playback', { timeout: 240_000 }, () => {
  let cluster: Cluster;
  const work = mkdtempSync(join(tmpdir(), 'jitcast-cluster-repl-'));
  const sipp = sippPorts(SLOT);
  let ev: { eventId: string; pin: string; attendeeUrl: string };
  let call: PlacedCall | undefined;

  before(async () => {
    await ensureServices();
    cluster = await startCluster({
      name: 'storage-replication',
      slot: SLOT,
      nodes: [
        { id: 'door', roles: DOOR_ROLES, dataCenter: 'dc1' },
        { id: 's1', roles: STORAGE_ROLES, dataCenter: 'dc1' },
        { id: 's2', roles: STORAGE_ROLES, dataCenter: 'dc2' },
      ],
      env: { JITCAST_HEALTH_TEST_INTERVAL_S: '0' },
    });
  });
  after(async () => {
    await call?.done;
    await cluster?.stop();
  });

  test('a reservation reaches both storage centers with identical event-info.xml', async () => {
    ev = (await cluster.api('POST', '/api/events', { title: 'replicated' })).body;
    assert.ok(ev.eventId, JSON.stringify(ev));
    const both = await waitUntil('event-info.xml in dc1 and dc2', () => {
      const a = copyOf(cluster, 's1', 'dc1', ev.eventId).info;
      const b = copyOf(cluster, 's2', 'dc2', ev.eventId).info;
      return a && a === b ? a : undefined;
    }, 10_000, 100);
    assert.match(both, /<!-- jitcast-version /);
  });

  test('while the call runs, its segments reach storage as they go (unfinished playlist stored)', async () => {
    call = placeCall({ dir: work, name: 'repl-1', target: cluster.node('door').sipTarget, event: ev, holdMs: 22_000, localPort: sipp.sip(0), mediaPort: sipp.media(0), timeoutS: 60 });
    await waitForLog(cluster.node('door'), new RegExp(`caller live \\[event:${ev.eventId}`), call.startedAt, 20_000);
    const partial = await waitUntil('an unfinished playlist with 2+ segments in a storage center', () => {
      for (const [node, center] of [['s1', 'dc1'], ['s2', 'dc2']] as const) {
        for (const files of Object.values(copyOf(cluster, node, center, ev.eventId).streams)) {
          const pl = files['index.m3u8'] ? Buffer.from(files['index.m3u8'], 'base64').toString('utf8') : '';
          const segs = Object.keys(files).filter((f) => f.endsWith('.ts')).length;
          if (pl && !pl.includes('#EXT-X-ENDLIST') && segs >= 2) return { node, segs, at: Date.now() };
        }
      }
      return undefined;
    }, 15_000, 200);
    console.log(`# upload as it goes: ${partial.segs} segments stored on ${partial.node} ${partial.at - call.startedAt} ms after the INVITE, call still live`);
  });

  test('after the end the archive is built and both centers hold identical event-info.xml and streams', async () => {
    const r = await call!.done;
    assert.equal(r.code, 0, r.stdout);
    const end = await cluster.api('POST', `/api/events/${ev.eventId}/end`);
    assert.ok(end.status === 200 || end.status === 409, `POST …/end: ${end.status} ${end.text}`);
    const archived = await waitUntil('the event archived', async () => {
      const g = await cluster.api('GET', `/api/events/${ev.eventId}`);
      return g.body?.status === 'archived' ? g.body : undefined;
    }, 90_000, 500);
    assert.ok(archived.archive?.length >= 1, JSON.stringify(archived));
    const t0 = Date.now();
    const same = await waitUntil('identical copies in dc1 and dc2', () => {
      const a = copyOf(cluster, 's1', 'dc1', ev.eventId);
      const b = copyOf(cluster, 's2', 'dc2', ev.eventId);
      return a.info?.includes('<archive>') && JSON.stringify(a) === JSON.stringify(b) ? a : undefined;
    }, 15_000, 100);
    const streams = Object.values(same.streams);
    assert.ok(streams.length >= 1 && streams.every((f) => Buffer.from(f['index.m3u8'] ?? '', 'base64').toString().includes('#EXT-X-ENDLIST')), 'final playlists stored');
    console.log(`# both centers identical ${Date.now() - t0} ms after archived (${streams.length} stream(s), ${streams.reduce((n, f) => n + Object.keys(f).length, 0)} files)`);
  });

  test('SIGKILL of s1 during archive playback: every remaining segment still answers 200', async () => {
    const vod = await fetch(`${ev.attendeeUrl}/archive.m3u8`);
    const vodText = await vod.text();
    assert.equal(vod.status, 200, vodText.slice(0, 300));
    const segments = vodText.split('\n').filter((l) => l.startsWith('/a/'));
    assert.ok(segments.length >= 6, `enough segments to kill mid-playback: ${segments.length}`);
    const killAfter = 3;
    let killedAt = 0;
    const failures: string[] = [];
    let ok = 0;
    let slowest = 0;
    for (const [i, uri] of segments.entries()) {
      if (i === killAfter) killedAt = await cluster.kill9('s1');
      const t = Date.now();
      const r = await fetch(new URL(uri, cluster.gateway.baseUrl));
      const body = await r.arrayBuffer();
      const ms = Date.now() - t;
      if (i >= killAfter) slowest = Math.max(slowest, ms);
      if (r.status === 200 && body.byteLength > 0) ok++;
      else failures.push(`segment ${i} answered ${r.status} at +${Date.now() - (killedAt || t)} ms after the kill`);
      await new Promise((res) => setTimeout(res, 250)); // a player fetches ahead, not all at once
    }
    // The playlist itself is still served with s1 gone (event-info and playlists from s2).
    const again = await fetch(`${ev.attendeeUrl}/archive.m3u8`);
    assert.equal(again.status, 200);
    console.log(`# playback across SIGKILL of s1: ${ok}/${segments.length} segments 200 (killed before segment ${killAfter}); slowest segment after the kill ${slowest} ms${failures.length ? '; failures: ' + failures.join('; ') : ''}`);
    assert.deepEqual(failures, []);
    assert.equal(ok, segments.length);
  });

  test('a reservation made while s1 is down reaches s1 when it rejoins (catch-up)', async () => {
    await cluster.waitForNodeGone('s1', 15_000);
    const ev2 = (await cluster.api('POST', '/api/events', { title: 'while s1 is down' })).body;
    assert.ok(ev2.eventId, JSON.stringify(ev2));
    await waitUntil('event-info on s2', () => copyOf(cluster, 's2', 'dc2', ev2.eventId).info, 10_000, 100);
    assert.equal(copyOf(cluster, 's1', 'dc1', ev2.eventId).info, undefined, 's1 is down: it cannot have it yet');
    const t0 = Date.now();
    await cluster.restart('s1');
    const caught = await waitUntil('s1 caught up', () => {
      const a = copyOf(cluster, 's1', 'dc1', ev2.eventId).info;
      return a && a === copyOf(cluster, 's2', 'dc2', ev2.eventId).info ? Date.now() : undefined;
    }, 30_000, 100);
    await waitForLog(cluster.node('s1'), /caught up \[from:s2 events:\d+\]/, t0, 5000);
    // And it still holds the archived event, identical to s2.
    assert.equal(JSON.stringify(copyOf(cluster, 's1', 'dc1', ev.eventId)), JSON.stringify(copyOf(cluster, 's2', 'dc2', ev.eventId)));
    console.log(`# s1 restarted and caught up ${caught - t0} ms after the restart began`);
  });
});
