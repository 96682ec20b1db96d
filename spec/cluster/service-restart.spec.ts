/**
 * Restart NATS and Redis under a live call (issue 3, "what must be shown"): a two-node cluster with
 * a caller live on B. The machine's NATS is stopped and started again, then Redis, with the env
 * doc's commands. The call stays up (same channel, RTP still counted, the caller's BYE answered
 * 200 at the end), its stream goes on (the same stream ID; B's playlist keeps growing through the
 * outage, with no hole), and the cluster recovers without operator action: `GET /api/cluster`
 * lists both nodes and the stream again, A serves the live playlist again, and a new reservation
 * and call go live afterwards.
 *
 * It restarts the machine's shared NATS and Redis: other clusters on this machine see the outage
 * too (each runs in its own namespace, and every jitcast node reconnects).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseMediaPlaylist, type MediaPlaylist } from '../../codecs/hls.ts';
import {
  availableNodeIds,
  channelsOf,
  ensureServices,
  placeCall,
  restartNats,
  restartRedis,
  sippPorts,
  sleep,
  startCluster,
  streamsOf,
  waitUntil,
  type Cluster,
} from '../support/cluster.ts';

const SLOT = 2;
/** How long each service stays down (ms); short, as a restart is. */
const DOWN_MS = Number(process.env.JITCAST_SPEC_OUTAGE_MS ?? 1000);

describe('NATS and Redis restart under a live call', { timeout: 240_000 }, () => {
  let cluster: Cluster;
  const work = mkdtempSync(join(tmpdir(), 'jitcast-cluster-restart-'));
  const sipp = sippPorts(SLOT);

  before(async () => {
    await ensureServices();
    cluster = await startCluster({
      name: 'svc-restart',
      slot: SLOT,
      // One live/ and storage/ for both nodes (a shared mount): A serves B's live files.
      shareFiles: true,
      nodes: [
        { id: 'node-a', roles: ['gateway', 'reservation', 'event', 'monitoring', 'content-storage', 'archive-coordinator', 'attendee-access'] },
        { id: 'node-b', roles: ['voice-server', 'encoder-port', 'content-storage'] },
      ],
    });
  });
  after(async () => {
    // Whatever happened, leave the machine's services running.
    await ensureServices().catch(() => undefined);
    await cluster?.stop();
  });

  /** B's own playlist of the stream, read from its disk (what the encoder wrote). */
  function playlistOnB(streamId: string): MediaPlaylist | undefined {
    try {
      return parseMediaPlaylist(readFileSync(join(cluster.node('node-b').dataDir, 'live', streamId, 'index.m3u8'), 'utf8'));
    } catch {
      return undefined;
    }
  }
  const listed = (p: MediaPlaylist | undefined) => (p ? p.mediaSequence + p.segments.length : 0);

  test('the call and its stream go on through both restarts, and the cluster recovers by itself', async () => {
    const ev = (await cluster.api('POST', '/api/events', { title: 'restart under a call' })).body;
    const call = placeCall({ dir: work, name: 'restart-1', target: cluster.node('node-b').sipTarget, event: ev, holdMs: 50_000 + 2 * DOWN_MS, localPort: sipp.sip(0), mediaPort: sipp.media(0) });
    try {
      const stream = await waitUntil('the stream in the active table', async () => streamsOf(await cluster.status(), ev.eventId)[0], 20_000);
      const channel = channelsOf(await cluster.status()).find((c) => c.eventId === ev.eventId)!;
      assert.equal(channel.phase, 'live');
      await waitUntil('two segments on B', () => (listed(playlistOnB(stream.streamId)) >= 2 ? true : undefined), 15_000);

      // Watch B's playlist every 250 ms from now on: it must never stall for more than ~2 segments.
      const growth: Array<{ at: number; n: number }> = [];
      let watching = true;
      const watcher = (async () => {
        while (watching) {
          growth.push({ at: Date.now(), n: listed(playlistOnB(stream.streamId)) });
          await sleep(250);
        }
      })();

      const before = { n: listed(playlistOnB(stream.streamId)), rtpIn: channel.stats?.rtpIn ?? 0, at: Date.now() };
      const nats = await restartNats(DOWN_MS);
      const redis = await restartRedis(DOWN_MS);
      console.log(`# NATS down ${nats.downMs} ms (was pid ${nats.stoppedPid}), Redis down ${redis.downMs} ms (was pid ${redis.stoppedPid})`);

      // Recovery without operator action: both nodes listed, the same stream active, the same channel live.
      const t0 = Date.now();
      const st = await waitUntil('GET /api/cluster to list both nodes, the channel and the stream again', async () => {
        const s = await cluster.status();
        const ok =
          ['node-a', 'node-b'].every((id) => availableNodeIds(s).includes(id)) &&
          channelsOf(s).some((c) => c.channelId === channel.channelId && c.phase === 'live') &&
          streamsOf(s, ev.eventId).some((x) => x.streamId === stream.streamId);
        return ok ? s : undefined;
      }, 30_000, 250);
      const recoveredS = (Date.now() - t0) / 1000;
      const ch = channelsOf(st).find((c) => c.channelId === channel.channelId)!;
      assert.ok((ch.stats?.rtpIn ?? 0) > before.rtpIn, `RTP still arriving on the call (${before.rtpIn} → ${ch.stats?.rtpIn})`);
      assert.deepEqual(streamsOf(st, ev.eventId).map((s) => s.streamId), [stream.streamId], 'the same stream, no new one');

      // A serves the live playlist again, and it has grown past what it listed before the restarts.
      const variant = await waitUntil('live.m3u8 on A again', async () => {
        const r = await fetch(`${ev.attendeeUrl}/live.m3u8`);
        const line = r.status === 200 ? (await r.text()).split('\n').find((l) => l.startsWith('/s/')) : undefined;
        return line ? new URL(line, cluster.gateway.baseUrl).toString() : undefined;
      }, 15_000);
      const viaA = await waitUntil('the variant through A', async () => {
        const r = await fetch(variant);
        return r.status === 200 ? parseMediaPlaylist(await r.text()) : undefined;
      }, 10_000);
      assert.ok(listed(viaA) > before.n, `A lists ${listed(viaA)} segments, ${before.n} before the restarts`);

      // The encoder never stopped: B's playlist grew all along, never stalling for more than 2 segments.
      await sleep(2000);
      watching = false;
      await watcher;
      let worstStallMs = 0;
      for (let i = 1, since = growth[0]!.at; i < growth.length; i++) {
        if (growth[i]!.n > growth[i - 1]!.n) since = growth[i]!.at;
        worstStallMs = Math.max(worstStallMs, growth[i]!.at - since);
      }
      const spanS = (growth.at(-1)!.at - growth[0]!.at) / 1000;
      const grew = growth.at(-1)!.n - growth[0]!.n;
      assert.ok(worstStallMs <= 4500, `B's playlist stalled ${worstStallMs} ms`);
      assert.ok(grew * 2 >= spanS - 4, `B's playlist grew ${grew} segments in ${spanS.toFixed(1)} s`);
      console.log(`# cluster view recovered ${recoveredS.toFixed(1)} s after Redis was back; B's playlist grew ${grew} segments in ${spanS.toFixed(1)} s (longest stall ${worstStallMs} ms)`);

      // A new reservation and call work after the restarts.
      const ev2 = await waitUntil('a reservation after the restarts', async () => {
        const r = await cluster.api('POST', '/api/events', { title: 'after the restarts' });
        return r.status === 201 ? r.body : undefined;
      }, 15_000, 500);
      const call2 = placeCall({ dir: work, name: 'restart-2', target: cluster.node('node-b').sipTarget, event: ev2, holdMs: 14_000, localPort: sipp.sip(1), mediaPort: sipp.media(1) });
      await waitUntil('the new event live with a stream', async () => {
        const r = await fetch(`${ev2.attendeeUrl}/live.m3u8`);
        return r.status === 200 ? true : undefined;
      }, 25_000);
      const r2 = await call2.done;
      assert.equal(r2.code, 0, `call 2:\n${r2.stdout}`);
    } finally {
      const r = await call.done;
      assert.equal(r.code, 0, `the first call did not survive the restarts (its BYE was not answered 200):\n${r.stdout}\n${r.stderr}`);
    }
  });
});
