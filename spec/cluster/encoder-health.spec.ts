/**
 * Pools that evict the unhealthy (issue 3, item 6): three processes — `door` (front door and event
 * plane, whose monitoring runs the health tests) in dc1, v1 in dc1 and v2 in dc2, each with a
 * voice server and an encoder. Tests run every 2 s: a synthetic SIP call on each voice server and
 * RTP in / a segment out on each encoder.
 *
 * v1's ffmpeg is a switchable wrapper (spec/fixtures/ffmpeg-switch.sh). Switched off, v1's
 * encoder fails its self-test and leaves the encoder pool; a call through the door still lands on
 * v1's voice server (the door's data center, and the voice server is healthy), and its stream is
 * encoded on v2. Switched on again, v1's encoder passes, is re-admitted, and the next conference
 * on v1 is encoded on v1 again.
 *
 * Nothing is shared on disk: the door serves v2's live files over the broker. While that call is up
 * `jitcast status` (table and --json) shows every node with its data center and roles, and the
 * live channel on v1.
 *
 * Slot 4 is shared with drain.spec.ts: cluster specs run one file at a time.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultFfmpegPath } from '../../cluster.config.ts';
import { rms, toneFrequency } from '../../codecs/tones.ts';
import { decodeHls } from '../support/hls-client.ts';
import { ensureServices, placeCall, REPO, sippPorts, startCluster, streamsOf, waitForLog, waitUntil, type Cluster, type PlacedCall } from '../support/cluster.ts';

const SLOT = 4;
const INTERVAL_S = 2;
const DOOR_ROLES = ['gateway', 'reservation', 'event', 'monitoring', 'content-storage', 'archive-coordinator', 'attendee-access', 'sip-router'];
// Storage only on the door: nothing is shared on disk; files travel over the broker (one storage center: replication is issue 4).
const VOICE_ROLES = ['voice-server', 'encoder-port'];

function asset(status: any, kind: string, nodeId: string): any {
  return (status?.pools?.assets ?? []).find((a: any) => a.asset === kind && a.nodeId === nodeId);
}

describe('health tests evict a failing encoder from the pool and re-admit it once it passes', { timeout: 240_000 }, () => {
  let cluster: Cluster;
  const work = mkdtempSync(join(tmpdir(), 'jitcast-cluster-health-'));
  const brokenFlag = join(work, 'v1-ffmpeg-off');
  const sipp = sippPorts(SLOT);
  const calls: PlacedCall[] = [];

  before(async () => {
    await ensureServices();
    cluster = await startCluster({
      name: 'encoder-health',
      slot: SLOT,
      env: { JITCAST_HEALTH_TEST_INTERVAL_S: String(INTERVAL_S) },
      nodes: [
        { id: 'door', roles: DOOR_ROLES, dataCenter: 'dc1' },
        {
          id: 'v1',
          roles: VOICE_ROLES,
          dataCenter: 'dc1',
          env: { JITCAST_FFMPEG_PATH: join(REPO, 'spec/fixtures/ffmpeg-switch.sh'), JITCAST_SPEC_FFMPEG_REAL: defaultFfmpegPath(), JITCAST_SPEC_FFMPEG_BROKEN: brokenFlag },
        },
        { id: 'v2', roles: VOICE_ROLES, dataCenter: 'dc2' },
      ],
    });
  });
  after(async () => {
    await Promise.all(calls.map((c) => c.done));
    await cluster?.stop();
  });

  test('every voice server and encoder passes its health test; the door runs the tests; jitcast status shows the pools', async () => {
    const st = await waitUntil('four assets tested and healthy', async () => {
      const s = await cluster.status();
      const all = ['voice-server', 'encoder-port'].flatMap((k) => ['v1', 'v2'].map((n) => asset(s, k, n)));
      return all.every((a) => a?.healthy && a.passes >= 1) ? s : undefined;
    }, 30_000, 250);
    assert.equal(st.pools.tester, 'door');
    assert.equal(st.pools.intervalS, INTERVAL_S);
    const v1Voice = asset(st, 'voice-server', 'v1');
    assert.equal(v1Voice.lastOutcome, 'pass');
    assert.ok(v1Voice.lastMs < 2000, `synthetic call took ${v1Voice.lastMs} ms`);
    const out = await cluster.cli(['status']);
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /Pools \(health tests every 2 s by door\)/);
    assert.match(out.stdout, /encoder-port\s+v1\s+yes/);
    console.log(`# synthetic call on v1: ${v1Voice.lastMs} ms; v1 encoder self-test (RTP in → first segment): ${asset(st, 'encoder-port', 'v1').lastMs} ms`);
  });

  test("v1's ffmpeg stops starting: its encoder fails its self-test and leaves the pool; v1's voice server stays", async () => {
    const offAt = Date.now();
    writeFileSync(brokenFlag, 'off\n');
    const line = await waitForLog(cluster.node('door'), /health test failed: evicted from the pool \[asset:encoder-port node:v1 /, offAt, INTERVAL_S * 1000 + 15_000);
    assert.match(line.line, /encoder did not start/);
    const st = await cluster.status();
    assert.equal(asset(st, 'encoder-port', 'v1').healthy, false);
    assert.equal(asset(st, 'voice-server', 'v1').healthy, true, "v1's voice server is not affected");
    assert.equal(asset(st, 'encoder-port', 'v2').healthy, true);
    const out = await cluster.cli(['status']);
    assert.match(out.stdout, /encoder-port\s+v1\s+EVICTED/);
    console.log(`# v1 encoder evicted ${line.at - offAt} ms after its ffmpeg was switched off (tests every ${INTERVAL_S} s)`);
  });

  test('a call through the door lands on v1 and its stream is encoded on v2: live, with the tone', async () => {
    const ev = (await cluster.api('POST', '/api/events', { title: 'health: encoder evicted' })).body;
    const call = placeCall({ dir: work, name: 'evicted', target: cluster.node('door').sipTarget, event: ev, holdMs: 14_000, localPort: sipp.sip(0), mediaPort: sipp.media(0) });
    calls.push(call);
    await waitForLog(cluster.node('v1'), new RegExp(`caller live \\[event:${ev.eventId}`), call.startedAt, 20_000);
    const bound = await waitForLog(cluster.node('v1'), new RegExp(`stream bound \\[event:${ev.eventId} .*encoder:v2@`), call.startedAt, 15_000);
    assert.ok(bound);
    // The operator's view while the call is up: every node with its data center and roles, the live channel.
    const st = await cluster.cli(['status']);
    assert.equal(st.code, 0, st.stderr);
    assert.match(st.stdout, /jitcast cluster — 3 node\(s\)/);
    for (const line of [/door\s+dc1\s+\S*gateway\S*/, /v1\s+dc1\s+\S*voice-server\S*/, /v2\s+dc2\s+\S*encoder-port\S*/]) assert.match(st.stdout, line, st.stdout);
    const channels = st.stdout.split('\nChannels\n')[1]?.split('\nEncoder ports\n')[0] ?? '';
    assert.match(channels, new RegExp(`v1\\s+\\d+\\s+live\\s+${ev.eventId}`), `channel row in:\n${st.stdout}`);
    const json = JSON.parse((await cluster.cli(['status', '--json'])).stdout);
    assert.equal(json.voiceServers.find((v: any) => v.nodeId === 'v1').channels[0].eventId, ev.eventId);
    const stream = await waitUntil('the stream in the active table', async () => streamsOf(await cluster.status(), ev.eventId)[0], 15_000);
    assert.equal(stream.nodeId, 'v2', 'encoded on v2');
    const master = await waitUntil('live.m3u8', async () => {
      const r = await fetch(`${ev.attendeeUrl}/live.m3u8`);
      return r.status === 200 ? r.text() : undefined;
    }, 10_000);
    const variant = new URL(master.split('\n').find((l) => l.startsWith('/s/'))!, cluster.gateway.baseUrl).toString();
    const pcm = (await decodeHls(variant, 2, 0)).subarray(4000);
    assert.ok(rms(pcm) > 1000 && Math.abs(toneFrequency(pcm) - 1000) < 30, `tone (rms ${rms(pcm)}, ${toneFrequency(pcm)} Hz)`);
    const r = await call.done;
    assert.equal(r.code, 0, r.stdout);
  });

  test("v1's ffmpeg works again: its encoder passes, is back in the pool, and the next conference on v1 is encoded on v1", async () => {
    const onAt = Date.now();
    rmSync(brokenFlag);
    const line = await waitForLog(cluster.node('door'), /health test passed: back in the pool \[asset:encoder-port node:v1 /, onAt, INTERVAL_S * 1000 + 15_000);
    console.log(`# v1 encoder re-admitted ${line.at - onAt} ms after its ffmpeg was switched on`);
    // v1's voice server hears the verdict on the same broadcast; give it a moment to arrive.
    await waitForLog(cluster.node('v1'), /encoder is back in the pool \[node:v1\]/, onAt, 5000);
    const ev = (await cluster.api('POST', '/api/events', { title: 'health: encoder back' })).body;
    const call = placeCall({ dir: work, name: 'readmitted', target: cluster.node('door').sipTarget, event: ev, holdMs: 10_000, localPort: sipp.sip(1), mediaPort: sipp.media(1) });
    calls.push(call);
    await waitForLog(cluster.node('v1'), new RegExp(`stream bound \\[event:${ev.eventId} .*encoder:v1@`), call.startedAt, 20_000);
    const stream = await waitUntil('the stream in the active table', async () => streamsOf(await cluster.status(), ev.eventId)[0], 15_000);
    assert.equal(stream.nodeId, 'v1', 'encoded on v1 again');
    const r = await call.done;
    assert.equal(r.code, 0, r.stdout);
  });
});
