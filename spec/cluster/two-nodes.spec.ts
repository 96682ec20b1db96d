/**
 * Cluster over NATS without the front door: node A (gateway, reservation, event, monitoring,
 * content-storage, archive-coordinator, attendee-access) and node B (voice-server, encoder-port,
 * content-storage) as two processes. Reserve on A, dial B's SIP port directly with sipp (1 kHz tone,
 * RFC 4733 keys), the event goes live, A's `live.m3u8` lists the stream, and `jitcast status` shows
 * both nodes with roles, data centers and the voice server's channel.
 *
 * Nothing is shared on disk: the encoder writes the live HLS to B's `<dataDir>/live/`, and A's
 * attendee access fetches it from B over NATS (`encoder-port.liveFile`). Content storage runs on A
 * only: with a storage center on each node, event-info.xml and the recordings would land in
 * different centers, and replication between them is issue 4.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseMediaPlaylist } from '../../codecs/hls.ts';
import { rms, toneFrequency } from '../../codecs/tones.ts';
import { decodeHls } from '../support/hls-client.ts';
import { ensureServices, placeCall, sippPorts, startCluster, voiceServerOf, waitUntil, type Cluster, type PlacedCall } from '../support/cluster.ts';

const SLOT = 0;
const A_ROLES = ['gateway', 'reservation', 'event', 'monitoring', 'content-storage', 'archive-coordinator', 'attendee-access'];
const B_ROLES = ['voice-server', 'encoder-port'];

function twoNodeSuite(o: { title: string; shareFiles: boolean }) {
  describe(o.title, { timeout: 240_000 }, () => {
    let cluster: Cluster;
    const work = mkdtempSync(join(tmpdir(), 'jitcast-cluster-two-'));
    const sipp = sippPorts(SLOT);
    let live: { eventId: string; attendeeUrl: string; call: PlacedCall } | undefined;

    before(async () => {
      await ensureServices();
      cluster = await startCluster({
        name: 'two-nodes',
        slot: SLOT,
        shareFiles: o.shareFiles,
        nodes: [
          { id: 'node-a', roles: A_ROLES, dataCenter: 'dc-east' },
          { id: 'node-b', roles: B_ROLES, dataCenter: 'dc-west' },
        ],
      });
    });
    after(async () => {
      if (live) await live.call.done;
      await cluster?.stop();
    });

    test('GET /api/cluster on A lists both nodes with their roles and data centers, and B as a voice server', async () => {
      const s = await cluster.status();
      const a = s.nodes.find((n: any) => n.id === 'node-a');
      const b = s.nodes.find((n: any) => n.id === 'node-b');
      assert.ok(a && b, JSON.stringify(s.nodes));
      assert.equal(a.dataCenter, 'dc-east');
      assert.equal(b.dataCenter, 'dc-west');
      assert.deepEqual([...a.roles].sort(), [...A_ROLES].sort());
      assert.deepEqual([...b.roles].sort(), [...B_ROLES].sort());
      const vs = voiceServerOf(s, 'node-b');
      assert.ok(vs, `voice server of node-b in ${JSON.stringify(s.voiceServers)}`);
      const [min, max] = cluster.node('node-b').spec.rtpPorts.split('-').map(Number);
      assert.deepEqual(vs.portRange, { min, max });
    });

    test('reserve on A, sipp dials B: the event goes live on B, A lists the stream in live.m3u8, jitcast status shows the channel', async () => {
      const res = await cluster.api('POST', '/api/events', { title: 'Cluster two-node test' });
      assert.equal(res.status, 201, res.text);
      const { eventId, pin, attendeeUrl } = res.body;
      const call = placeCall({ dir: work, name: 'two-nodes', target: cluster.node('node-b').sipTarget, event: { eventId, pin }, holdMs: 24_000, localPort: sipp.sip(0), mediaPort: sipp.media(0) });
      live = { eventId, attendeeUrl, call };
      const view = await waitUntil('the event live with a stream', async () => {
        const r = await cluster.api('GET', `/api/events/${eventId}`);
        return r.body?.status === 'live' && r.body.streams?.length ? r.body : undefined;
      }, 25_000);
      assert.equal(view.streams[0].nodeId, 'node-b', 'the stream is encoded on B');
      assert.equal(view.streams[0].dataCenter, 'dc-west');
      console.log(`# live with a stream ${((Date.now() - call.startedAt) / 1000).toFixed(1)} s after the INVITE`);

      // The operator's view while the call is up: both nodes, roles, data centers, the live channel.
      const st = await cluster.cli(['status']);
      assert.equal(st.code, 0, st.stderr);
      assert.match(st.stdout, /jitcast cluster — 2 node\(s\)/);
      for (const line of [/node-a\s+dc-east\s+\S*gateway\S*/, /node-b\s+dc-west\s+\S*voice-server\S*/]) assert.match(st.stdout, line, st.stdout);
      const channels = st.stdout.split('\nChannels\n')[1]?.split('\nEncoder ports\n')[0] ?? '';
      assert.match(channels, new RegExp(`node-b\\s+\\d+\\s+live\\s+${eventId}`), `channel row in:\n${st.stdout}`);
      const json = JSON.parse((await cluster.cli(['status', '--json'])).stdout);
      assert.equal(voiceServerOf(json, 'node-b').channels[0].eventId, eventId);

      const master = await waitUntil('live.m3u8 on A', async () => {
        const r = await fetch(`${attendeeUrl}/live.m3u8`);
        return r.status === 200 ? r.text() : undefined;
      }, 15_000);
      assert.ok(attendeeUrl.startsWith(cluster.node('node-a').baseUrl), `attendee URL ${attendeeUrl} points at A`);
      assert.match(master, /#EXT-X-STREAM-INF/);
    });

    test('A plays the live stream: ffmpeg decodes the 1 kHz tone through A', async () => {
      assert.ok(live, 'the call of the previous test is up');
      const master = await (await fetch(`${live.attendeeUrl}/live.m3u8`)).text();
      const variantPath = master.split('\n').find((l) => l.startsWith('/s/'));
      assert.ok(variantPath, master);
      const variant = new URL(variantPath, cluster.node('node-a').baseUrl).toString();
      let last = { status: 0, text: '' };
      await waitUntil('two live segments served by A', async () => {
        const r = await fetch(variant);
        last = { status: r.status, text: await r.text() };
        return r.status === 200 && parseMediaPlaylist(last.text).segments.length >= 2 ? true : undefined;
      }, 12_000).catch((err: Error) => {
        throw new Error(`${err.message}; A's last answer for ${variantPath.split('?')[0]}: ${last.status} ${last.text.slice(0, 200)}`);
      });
      const pcm = await decodeHls(variant, 3, 0);
      const sample = pcm.subarray(4000);
      assert.ok(rms(sample) > 1000, `live audio has signal (rms ${rms(sample)})`);
      assert.ok(Math.abs(toneFrequency(sample) - 1000) < 30, `live tone at ${toneFrequency(sample)} Hz`);
    });

    test('the call ends cleanly (sipp\'s BYE answered)', async () => {
      assert.ok(live);
      const r = await live.call.done;
      assert.equal(r.code, 0, `sipp failed:\n${r.stdout}\n${r.stderr}`);
    });
  });
}

twoNodeSuite({ title: 'two-node cluster over NATS, B dialled directly, nothing shared on disk', shareFiles: false });
