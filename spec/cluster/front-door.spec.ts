/**
 * The front door (issue 3, items 3 and 6): three processes — `door` (sip-router plus the event
 * plane: gateway, reservation, event, monitoring, storage, archive, attendee access) in dc1, and
 * two voice/encoder nodes, v1 in dc1 and v2 in dc2. A sipp call through the door's SIP port lands
 * on v1 (the door's own data center) and goes live. Then v1 is killed with SIGKILL while the call
 * is live: the caller redials through the door at once and goes live on v2 within the heartbeat
 * timeout plus one call setup; the door stops routing to v1, and v1's stream leaves monitoring's
 * active table. A call on v2 for another event, live when v1 dies, goes on untouched (item 7: a
 * crashing voice server leaves the others' calls alone). Listeners hear v2's stream through the
 * door, and once the event ends its archive is built and plays through the door.
 *
 * Files across nodes (issue 3): every node has its own data directory, nothing is shared. The door
 * serves the live files of a stream encoded on v1 or v2 by fetching them over NATS from that node
 * (`encoder-port.liveFile`), and the voice nodes, which run no content storage, send their
 * segments to the door's storage over NATS as they go (runtime/stream-upload.ts): v1's stream up
 * to its death is in the archive. Only the door runs `content-storage` here; replication between
 * storage centers has its own spec (storage-replication.spec.ts).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseMediaPlaylist } from '../../codecs/hls.ts';
import { rms, toneFrequency } from '../../codecs/tones.ts';
import { decodeHls } from '../support/hls-client.ts';
import {
  availableNodeIds,
  channelsOf,
  ensureServices,
  logLines,
  placeCall,
  routeOf,
  sippPorts,
  startCluster,
  streamsOf,
  waitForLog,
  waitUntil,
  type Cluster,
  type PlacedCall,
} from '../support/cluster.ts';

const SLOT = 3;
const HEARTBEAT_TIMEOUT_S = 3;
const DOOR_ROLES = ['gateway', 'reservation', 'event', 'monitoring', 'content-storage', 'archive-coordinator', 'attendee-access', 'sip-router'];
// No content-storage on the voice nodes: one storage center, on the door (see the header).
const VOICE_ROLES = ['voice-server', 'encoder-port'];

describe('front door: routing to a healthy voice server, and SIGKILL of the node carrying a call', { timeout: 240_000 }, () => {
  let cluster: Cluster;
  const work = mkdtempSync(join(tmpdir(), 'jitcast-cluster-door-'));
  const sipp = sippPorts(SLOT);
  let ev: { eventId: string; pin: string; attendeeUrl: string };
  let first: PlacedCall | undefined;
  let redial: PlacedCall | undefined;
  let bystander: PlacedCall | undefined;
  /** INVITE → caller live of the first call (ms): one call setup. */
  let setupMs = 0;

  before(async () => {
    await ensureServices();
    cluster = await startCluster({
      name: 'front-door',
      slot: SLOT,
      nodes: [
        { id: 'door', roles: DOOR_ROLES, dataCenter: 'dc1' },
        { id: 'v1', roles: VOICE_ROLES, dataCenter: 'dc1' },
        { id: 'v2', roles: VOICE_ROLES, dataCenter: 'dc2' },
      ],
    });
  });
  after(async () => {
    await Promise.all([first?.done, redial?.done, bystander?.done]);
    await cluster?.stop();
  });

  test('the door knows both voice servers and can route to each', async () => {
    const s = await waitUntil('the door to see v1 and v2 as routable', async () => {
      const st = await cluster.status();
      return routeOf(st, 'v1')?.routable && routeOf(st, 'v2')?.routable ? st : undefined;
    }, 15_000);
    assert.equal(s.sipRouters.length, 1);
    assert.equal(s.sipRouters[0].nodeId, 'door');
    assert.equal(s.sipRouters[0].sip.port, cluster.node('door').spec.sipPort);
  });

  test('a sipp call through the door lands on v1 (same data center) and goes live', async () => {
    ev = (await cluster.api('POST', '/api/events', { title: 'front door' })).body;
    first = placeCall({ dir: work, name: 'door-1', target: cluster.node('door').sipTarget, event: ev, holdMs: 25_000, localPort: sipp.sip(0), mediaPort: sipp.media(0), timeoutS: 50 });
    const live = await waitForLog(cluster.node('v1'), new RegExp(`caller live \\[event:${ev.eventId}`), first.startedAt, 20_000);
    setupMs = live.at - first.startedAt;
    assert.equal(logLines(cluster.node('v2'), /call answered/, first.startedAt).length, 0, 'v2 took no call');
    const stream = await waitUntil('the stream in the active table', async () => streamsOf(await cluster.status(), ev.eventId)[0], 15_000);
    assert.equal(stream.nodeId, 'v1');
    assert.equal(stream.dataCenter, 'dc1');
    const master = await waitUntil('live.m3u8', async () => {
      const r = await fetch(`${ev.attendeeUrl}/live.m3u8`);
      return r.status === 200 ? r.text() : undefined;
    }, 10_000);
    const variant = new URL(master.split('\n').find((l) => l.startsWith('/s/'))!, cluster.gateway.baseUrl).toString();
    const pcm = (await decodeHls(variant, 2, 0)).subarray(4000);
    assert.ok(rms(pcm) > 1000 && Math.abs(toneFrequency(pcm) - 1000) < 30, `tone through the door (rms ${rms(pcm)}, ${toneFrequency(pcm)} Hz)`);
    console.log(`# call setup through the door: ${setupMs} ms from INVITE to caller live on v1`);
  });

  test('kill -9 v1 under the call: a redial through the door goes live on v2 within heartbeat timeout + call setup; v1 leaves the routes and its stream the active table', async () => {
    assert.ok(first && setupMs > 0, 'the first call is live');
    const before = streamsOf(await cluster.status(), ev.eventId).map((s) => s.streamId);
    assert.equal(before.length, 1);
    // Another event's call straight to v2, live before the kill: v1's crash must not touch it.
    const other = (await cluster.api('POST', '/api/events', { title: 'on v2 meanwhile' })).body;
    bystander = placeCall({ dir: work, name: 'door-bystander', target: cluster.node('v2').sipTarget, event: other, holdMs: 26_000, localPort: sipp.sip(2), mediaPort: sipp.media(2) });
    const otherStream = await waitUntil("the other event's stream on v2", async () => streamsOf(await cluster.status(), other.eventId)[0], 20_000, 250);
    const killedAt = await cluster.kill9('v1');
    // Watch the event's active streams (monitoring's table through GET /api/events/:id) every 100 ms.
    let v1StreamGoneAt: number | undefined;
    const watch = (async () => {
      while (v1StreamGoneAt === undefined && Date.now() - killedAt < 20_000) {
        const r = await cluster.api('GET', `/api/events/${ev.eventId}`).catch(() => undefined);
        if (r?.status === 200 && !(r.body.streams ?? []).some((s: any) => before.includes(s.streamId))) v1StreamGoneAt = Date.now();
        else await new Promise((res) => setTimeout(res, 100));
      }
    })();
    // The caller hears silence and dials again at once, through the same door, the same event.
    redial = placeCall({ dir: work, name: 'door-redial', target: cluster.node('door').sipTarget, event: ev, holdMs: 20_000, localPort: sipp.sip(1), mediaPort: sipp.media(1) });
    const live = await waitForLog(cluster.node('v2'), new RegExp(`caller live \\[event:${ev.eventId}`), killedAt, HEARTBEAT_TIMEOUT_S * 1000 + setupMs + 10_000);
    const liveAfterMs = live.at - killedAt;
    // The call on v2 goes on through v1's death: its stream is still in the active table.
    assert.ok(streamsOf(await cluster.status(), other.eventId).some((s) => s.streamId === otherStream.streamId), "the other event's stream on v2 is still alive after v1's death");
    const dropped = await waitForLog(cluster.node('door'), /no more calls to it \[node:v1[\] ]/, killedAt, 10_000);
    const refusedAfterMs = dropped.at - killedAt;

    // The cluster view agrees: v1 is no longer routable (or gone) and no longer a cluster member.
    const st = await waitUntil('GET /api/cluster without v1', async () => {
      const s = await cluster.status();
      const r = routeOf(s, 'v1');
      return (!r || !r.routable) && !availableNodeIds(s).includes('v1') ? s : undefined;
    }, 15_000, 250);
    assert.ok(routeOf(st, 'v2')?.routable, 'v2 still routable');
    assert.ok(channelsOf(st).some((c) => c.nodeId === 'v2' && c.eventId === ev.eventId), 'the redial is on v2');

    // v1's stream leaves the active table; the event's stream now comes from v2.
    await watch;
    assert.ok(v1StreamGoneAt, "v1's stream left the event's active streams within 20 s");
    const streamGoneAfterMs = v1StreamGoneAt - killedAt;
    await waitUntil("the event's stream from v2 in the active table", async () => {
      const streams = streamsOf(await cluster.status(), ev.eventId);
      return streams.length > 0 && streams.every((s) => s.nodeId === 'v2') ? true : undefined;
    }, 15_000, 250);
    console.log(`# SIGKILL v1 → door stops routing to it ${refusedAfterMs} ms, redial live on v2 ${liveAfterMs} ms (setup ${setupMs} ms), v1's stream out of the active table ${streamGoneAfterMs} ms`);

    // Listeners now get v2's stream through the door, its files fetched from v2's disk.
    const master = await waitUntil("live.m3u8 listing v2's stream", async () => {
      const r = await fetch(`${ev.attendeeUrl}/live.m3u8`);
      const text = r.status === 200 ? await r.text() : '';
      return text.includes('/s/') && !before.some((id) => text.includes(id)) ? text : undefined;
    }, 10_000);
    const variant = new URL(master.split('\n').find((l) => l.startsWith('/s/'))!, cluster.gateway.baseUrl).toString();
    await waitUntil("two of v2's segments listed", async () => {
      const r = await fetch(variant);
      return r.status === 200 && parseMediaPlaylist(await r.text()).segments.length >= 2 ? true : undefined;
    }, 10_000);
    const pcm = (await decodeHls(variant, 2, 0)).subarray(4000);
    assert.ok(rms(pcm) > 1000 && Math.abs(toneFrequency(pcm) - 1000) < 30, `v2's tone through the door (rms ${rms(pcm)}, ${toneFrequency(pcm)} Hz)`);
    assert.ok(streamGoneAfterMs <= HEARTBEAT_TIMEOUT_S * 1000 + 1500, `v1's stream left the active table ${streamGoneAfterMs} ms after the kill`);
    assert.ok(liveAfterMs <= HEARTBEAT_TIMEOUT_S * 1000 + setupMs + 1500, `redial live on v2 ${liveAfterMs} ms after the kill; bound ${HEARTBEAT_TIMEOUT_S} s + setup ${setupMs} ms + 1.5 s`);
    assert.ok(refusedAfterMs <= HEARTBEAT_TIMEOUT_S * 1000 + 1000, `door dropped v1 ${refusedAfterMs} ms after the kill`);
    // ... and it ends normally.
    const b = await bystander.done;
    assert.equal(b.code, 0, `the call on v2 ended normally:\n${b.stdout}`);
  });

  test('the redial ends cleanly; the killed call got no answer to its BYE', async () => {
    assert.ok(redial && first);
    const r = await redial.done;
    assert.equal(r.code, 0, `redial:\n${r.stdout}`);
    const f = await first.done;
    assert.notEqual(f.code, 0, 'the call on the killed node cannot end normally');
  });

  test("once the event ends, the archive is v1's stream up to its death (uploaded as it went) then v2's, and plays through the door", async () => {
    const t0 = Date.now();
    const end = await cluster.api('POST', `/api/events/${ev.eventId}/end`);
    assert.ok(end.status === 200 || end.status === 409, `POST …/end: ${end.status} ${end.text}`);
    // v1's encoder uploaded its segments as it went, so what it recorded before the kill is stored;
    // v1 has left the cluster, so the event does not wait for that stream's stop.
    const archived = await waitUntil('the event archived', async () => {
      const r = await cluster.api('GET', `/api/events/${ev.eventId}`);
      return r.body?.status === 'archived' ? r.body : undefined;
    }, 90_000, 500);
    const stored = await waitForLog(cluster.node('door'), new RegExp(`stream stored \\[event:${ev.eventId} stream:(\\S+) .*from:v2\\]`), first!.startedAt, 5000);
    const streamId = /stream:(\S+)/.exec(stored.line)![1]!;
    const fragments = archived.archive as Array<{ streamId: string; start: number; end: number }>;
    assert.equal(fragments.at(-1)?.streamId, streamId, `the archive ends with v2's stream: ${JSON.stringify(fragments)}`);
    const fromV1 = fragments.filter((f) => f.streamId.includes('-v1-'));
    assert.equal(fromV1.length, 1, `v1's partial stream opens the archive: ${JSON.stringify(fragments)}`);
    assert.equal(fragments[0], fromV1[0]);
    assert.ok(fromV1[0]!.end - fromV1[0]!.start >= 2, `v1 recorded at least a segment before its death: ${JSON.stringify(fromV1[0])}`);
    const streamDir = join(cluster.node('door').dataDir, 'storage', 'dc1', ev.eventId, 'streams', streamId);
    assert.ok(readdirSync(streamDir).includes('index.m3u8'), `stored on the door: ${streamDir}`);
    assert.equal(existsSync(join(cluster.node('v2').dataDir, 'storage')), false, 'v2 keeps no storage of its own');

    // "archived" is shown only once event-info.xml holds the archive: the playlist answers at once.
    const vod = await fetch(`${ev.attendeeUrl}/archive.m3u8`);
    const vodText = await vod.text();
    assert.equal(vod.status, 200, vodText.slice(0, 300));
    assert.match(vodText, /#EXT-X-ENDLIST/);
    const segments = vodText.split('\n').filter((l) => l.startsWith('/a/'));
    assert.ok(segments.length >= 2, vodText);
    for (const uri of segments) {
      const r = await fetch(new URL(uri, cluster.gateway.baseUrl));
      assert.equal(r.status, 200, `${uri.split('?')[0]} answered ${r.status}`);
      assert.ok((await r.arrayBuffer()).byteLength > 0);
    }
    const pcm = (await decodeHls(`${ev.attendeeUrl}/archive.m3u8`, 4)).subarray(4000);
    assert.ok(rms(pcm) > 1000 && Math.abs(toneFrequency(pcm) - 1000) < 30, `archive tone (rms ${rms(pcm)}, ${toneFrequency(pcm)} Hz)`);
    console.log(`# end → archive playable through the door in ${Date.now() - t0} ms (${segments.length} segments)`);
  });
});
