/**
 * Redundant streams and bridged conferences (issue 4, items 1 and 2): three processes — `plane`
 * (gateway, reservation, event, monitoring, content storage, archive, attendee access: the only
 * storage center) and two voice/encoder nodes, v1 and v2. A host dials the same event twice, once
 * straight to each voice node: 1000 Hz on v1, 1500 Hz on v2. Each voice server streams its own mix,
 * so `live.m3u8` lists two identical variants; the servers bridge their conferences
 * (core/bridge.ts), so each stream carries both tones. A listener's headless Chromium plays
 * `live.m3u8` through hls.js; the voice node whose stream the player is fetching (hls.js picks one
 * of the identical variants itself, so that is v1 or v2: call it the victim) is killed with
 * SIGKILL, and the listener's currentTime keeps advancing with a longest stall of at most one
 * segment (2 s) plus a small margin, its requests now going to the other node's stream. The
 * survivor drops the victim from its bridge, and once the event ends the archive (the survivor's
 * stream: the victim's died unstored with it) covers the event without a gap longer than one
 * segment.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { parseMediaPlaylist, type SteeringManifest } from '../../codecs/hls.ts';
import { BRIDGE_SILENCE_MS } from '../../core/bridge.ts';
import { decodeHls } from '../support/hls-client.ts';
import { ensureServices, logLines, placeCall, sippPorts, sleep, startCluster, streamsOf, waitForLog, waitUntil, type Cluster, type PlacedCall } from '../support/cluster.ts';
import { CHROMIUM_ARGS, PLANE_ROLES, VOICE_ROLES, largestStall, playbackSamples, playing, recordPlayback } from '../../bench/listener-gap.ts';

const SLOT = 0;
const SEGMENT_MS = 2000;
/** How long the listener is watched after the kill. */
const AFTER_KILL_MS = 14_000;
/** Sampling resolution plus hls.js's own timers: the stall bound is one segment plus this. */
const STALL_MARGIN_MS = 250;
const HOST_HZ = { v1: 1000, v2: 1500 } as const;

/** Amplitude of the sine at `hz` in `pcm` (8 kHz), by the Goertzel algorithm: |X|² ≈ (A·N/2)². */
function amplitudeAt(pcm: Int16Array, hz: number): number {
  const w = (2 * Math.PI * hz) / 8000;
  const c = 2 * Math.cos(w);
  let s1 = 0;
  let s2 = 0;
  for (let i = 0; i < pcm.length; i++) {
    const s0 = pcm[i]! + c * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  return (2 * Math.sqrt(Math.max(0, s1 * s1 + s2 * s2 - c * s1 * s2))) / pcm.length;
}

describe('redundant streams: dual dial-in, bridged conference, listener through SIGKILL of a voice node', { timeout: 300_000 }, () => {
  let cluster: Cluster;
  let browser: Browser;
  const work = mkdtempSync(join(tmpdir(), 'jitcast-cluster-redundant-'));
  const sipp = sippPorts(SLOT);
  let ev: { eventId: string; pin: string; attendeeUrl: string };
  const calls: Partial<Record<'v1' | 'v2', PlacedCall>> = {};
  let killedAt = 0;
  /** The node killed under the listener, and the other. */
  let victim: 'v1' | 'v2' = 'v1';
  let survivor: 'v1' | 'v2' = 'v2';
  /** When each stream started (monitoring's datasets), ms since epoch. */
  const streamStarts: number[] = [];
  /** The listener's page, open from the moment the host dials: it starts on a young stream. */
  let page: Page | undefined;
  const problems: string[] = [];
  /** Which stream each of the player's requests went to. */
  const requests: Array<{ at: number; streamId: string; file: string }> = [];
  /** The steering manifests the player loaded. */
  const steering: Array<{ at: number; manifest: SteeringManifest }> = [];

  before(async () => {
    await ensureServices();
    cluster = await startCluster({
      name: 'redundant-streams',
      slot: SLOT,
      nodes: [
        { id: 'plane', roles: PLANE_ROLES },
        { id: 'v1', roles: VOICE_ROLES },
        { id: 'v2', roles: VOICE_ROLES, dataCenter: 'dc2' },
      ],
    });
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
  });
  /** Ends the host's sipp calls once the spec is done (the killed node's call would wait out its timeout). */
  const hangUp = new AbortController();
  after(async () => {
    await page?.close().catch(() => {});
    await browser?.close();
    hangUp.abort();
    await Promise.allSettled(Object.values(calls).map((c) => c!.done));
    await cluster?.stop();
  });

  /** The variant URLs of live.m3u8 by node (through monitoring's table: which stream is whose). */
  async function variants(): Promise<Record<string, string>> {
    const master = await (await fetch(`${ev.attendeeUrl}/live.m3u8`)).text();
    const streams = streamsOf(await cluster.status(), ev.eventId);
    const out: Record<string, string> = {};
    for (const uri of master.split('\n').filter((l) => l.startsWith('/s/'))) {
      const s = streams.find((x) => uri.includes(`/s/${x.streamId}/`));
      if (s) out[s.nodeId] = new URL(uri, cluster.gateway.baseUrl).toString();
    }
    return out;
  }

  /** Decodes 3 s of a live variant from its newest segment on. */
  async function latest(url: string): Promise<Int16Array> {
    const n = await waitUntil('a segment listed', async () => {
      const r = await fetch(url);
      const count = r.status === 200 ? parseMediaPlaylist(await r.text()).segments.length : 0;
      return count > 0 ? count : undefined;
    }, 15_000);
    return (await decodeHls(url, 3, n - 1)).subarray(2000);
  }

  test('a host dialling in twice, once to each voice node, gives the event two streams; live.m3u8 lists both, identical', async () => {
    ev = (await cluster.api('POST', '/api/events', { title: 'redundant host' })).body;
    const dial = (id: 'v1' | 'v2', i: number) => {
      calls[id] = placeCall({ dir: work, name: `host-${id}`, target: cluster.node(id).sipTarget, event: ev, holdMs: 100_000, freqHz: HOST_HZ[id], localPort: sipp.sip(i), mediaPort: sipp.media(i), timeoutS: 140, signal: hangUp.signal });
    };
    dial('v1', 0);
    // A listener waiting on the page before the event is live starts playing as soon as it can:
    // on a stream only a segment or two long, the hardest case for the failover below (little buffer).
    page = await browser.newPage();
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    page.on('console', (m) => { if (process.env.DEBUG_PAGE) console.log(`# page ${Date.now() % 100000}: ${m.text().slice(0, 300)}`); });
    page.on('request', (r) => {
      const m = /\/s\/([^/]+)\/([^?]+)/.exec(r.url());
      if (m) requests.push({ at: Date.now(), streamId: m[1]!, file: m[2]! });
    });
    page.on('response', (r) => {
      if (!/\/steering\.json\?/.test(r.url())) return;
      r.json().then((m: SteeringManifest) => steering.push({ at: Date.now(), manifest: m }), (e: Error) => problems.push(`steering.json: ${e.message}`));
    });
    await page.goto(process.env.DEBUG_PAGE ? `${ev.attendeeUrl}?debug=1` : ev.attendeeUrl);
    // Opened while the host is still keying the event ID: the page says so, then turns live by itself.
    await page.waitForFunction(() => /not started/i.test(document.body.innerText), undefined, { timeout: 5_000 });
    // The listener plays v1's stream, the only one, before the host's second line dials in: it
    // learns of v2's stream by content steering, and v2's stream starts seconds after v1's (a
    // failover must then neither stall nor skip by the difference: EXT-X-PROGRAM-DATE-TIME and a
    // timeline per stream align them).
    await waitUntil('the page to play v1\'s stream', () => playing(page!, 1), 40_000, 250);
    await sleep(3 * SEGMENT_MS);
    dial('v2', 1);
    const streams = await waitUntil('a stream from each voice node', async () => {
      const s = streamsOf(await cluster.status(), ev.eventId);
      return ['v1', 'v2'].every((id) => s.some((x) => x.nodeId === id)) ? s : undefined;
    }, 40_000, 250);
    assert.equal(streams.length, 2);
    streamStarts.push(...streams.map((x) => Date.parse(x.startedAt)));
    const [v1Start, v2Start] = ['v1', 'v2'].map((id) => Date.parse(streams.find((x) => x.nodeId === id).startedAt));
    console.log(`# v2's stream started ${v2Start! - v1Start!} ms after v1's`);
    assert.ok(v2Start! - v1Start! >= SEGMENT_MS * 2, `the streams started apart (${v2Start! - v1Start!} ms)`);
    const master = await (await fetch(`${ev.attendeeUrl}/live.m3u8`)).text();
    const inf = master.split('\n').filter((l) => l.startsWith('#EXT-X-STREAM-INF'));
    assert.equal(inf.length, 2, master);
    assert.equal(inf[0], inf[1], 'identical attributes, so players take them as redundant');
    assert.equal(master.split('\n').filter((l) => l.startsWith('/s/')).length, 2, master);
  });

  test("bridged: each voice server's stream carries both speakers (1000 Hz and 1500 Hz)", async () => {
    assert.ok(ev, 'the event is live');
    const since = calls.v1!.startedAt;
    await waitForLog(cluster.node('v1'), new RegExp(`conference bridged \\[event:${ev.eventId} peer:v2 `), since, 15_000);
    await waitForLog(cluster.node('v2'), new RegExp(`conference bridged \\[event:${ev.eventId} peer:v1 `), since, 15_000);
    const st = await cluster.status();
    for (const [id, peer] of [['v1', 'v2'], ['v2', 'v1']]) {
      const conf = st.voiceServers.find((v: any) => v.nodeId === id).conferences.find((c: any) => c.eventId === ev.eventId);
      assert.deepEqual(conf.bridgedWith, [peer], `${id} bridges with ${peer}`);
    }
    // Segments written after the bridge formed.
    await sleep(SEGMENT_MS + 500);
    const urls = await variants();
    assert.deepEqual(Object.keys(urls).sort(), ['v1', 'v2']);
    const figures: string[] = [];
    for (const id of ['v1', 'v2']) {
      const pcm = await latest(urls[id]!);
      const a1 = amplitudeAt(pcm, HOST_HZ.v1);
      const a2 = amplitudeAt(pcm, HOST_HZ.v2);
      const off = amplitudeAt(pcm, 1250);
      figures.push(`${id}: 1000 Hz ${a1.toFixed(0)}, 1500 Hz ${a2.toFixed(0)}, 1250 Hz ${off.toFixed(0)}`);
      // Each host tone is sent at amplitude 8000; bridging goes through µ-law and AAC.
      assert.ok(a1 > 3000 && a2 > 3000, `${id}'s stream carries both speakers (${figures.at(-1)})`);
      assert.ok(off < 500, `and not noise everywhere (${figures.at(-1)})`);
    }
    console.log(`# tone amplitudes per stream: ${figures.join('; ')}`);
  });

  test('the listener keeps playing through SIGKILL of the voice node it plays from: longest stall at most one segment', async () => {
    assert.ok(ev, 'the event is live');
    const listener = page;
    assert.ok(listener, 'the listener is on the page');
    const nodeOf = new Map(streamsOf(await cluster.status(), ev.eventId).map((x) => [x.streamId as string, x.nodeId as string]));
    await waitUntil('the page to play through hls.js', () => playing(listener, 1), 40_000, 250);
    // The player loaded live.m3u8 when v1's stream was the only one: it knows v2's from steering.
    const v2Stream = [...nodeOf].find(([, n]) => n === 'v2')![0];
    await waitUntil('a steering manifest naming v2\'s stream', () => steering.some((s) => s.manifest['PATHWAY-CLONES']?.some((c) => c.ID === v2Stream) && s.manifest['PATHWAY-PRIORITY'].includes(v2Stream)), 15_000, 250);
    await recordPlayback(listener);
    await sleep(5000);
    const lastSegment = requests.filter((r) => r.file.endsWith('.ts')).at(-1);
    assert.ok(lastSegment, 'the player fetched segments');
    victim = nodeOf.get(lastSegment.streamId) as 'v1' | 'v2';
    assert.ok(victim === 'v1' || victim === 'v2', `the player's stream ${lastSegment.streamId} is v1's or v2's`);
    survivor = victim === 'v1' ? 'v2' : 'v1';
    killedAt = await cluster.kill9(victim);
    // Well past the ~6 s the player had buffered: what it plays then came from the other stream.
    await sleep(AFTER_KILL_MS);
    const samples = await playbackSamples(listener);
    const before = largestStall(samples, killedAt - 5000, killedAt);
    const f = largestStall(samples, killedAt);
    const level = await listener.evaluate(() => document.body.innerText.slice(0, 200));
    const segmentsAfter = requests.filter((r) => r.file.endsWith('.ts') && r.at > killedAt + 5000);
    console.log(`# player on ${victim}'s stream at the kill; segments fetched from 5 s after it: ${segmentsAfter.map((r) => nodeOf.get(r.streamId)).join(',')}`);
    console.log(`# listener through SIGKILL of ${victim}: longest stall ${f.longestStallMs} ms (at ${f.stallAt ? f.stallAt - killedAt : '-'} ms after the kill), playback lost ${f.lostMs} ms, largest skip ${Math.round(f.largestSkipMs)} ms, played ${f.playedS.toFixed(2)} s in ${f.spanMs} ms; before the kill: stall ${before.longestStallMs} ms`);
    assert.ok(before.playedS > 3.5, `playing before the kill (${before.playedS.toFixed(2)} s in 5 s)`);
    assert.ok(f.playedS > AFTER_KILL_MS / 1000 - 3, `currentTime kept advancing after the kill: ${f.playedS.toFixed(2)} s in ${f.spanMs} ms (page: ${level})`);
    assert.ok(f.longestStallMs <= SEGMENT_MS + STALL_MARGIN_MS, `longest stall ${f.longestStallMs} ms ≤ one segment (${SEGMENT_MS} ms) + ${STALL_MARGIN_MS} ms`);
    // Nor skipped ahead: a stream placed on the other's timeline by the difference of their starts
    // leaves a hole the player jumps.
    assert.ok(f.largestSkipMs <= SEGMENT_MS, `largest skip ahead ${Math.round(f.largestSkipMs)} ms ≤ one segment`);
    assert.ok(segmentsAfter.length >= 3 && segmentsAfter.every((r) => nodeOf.get(r.streamId) === survivor), `the player moved to ${survivor}'s stream`);
    assert.deepEqual(problems, []);
  });

  test("the survivor drops the victim from its bridge; its stream then carries its own host alone", async () => {
    assert.ok(killedAt > 0, 'a voice node was killed');
    const dropped = await waitForLog(cluster.node(survivor), new RegExp(`bridge peer dropped \\[event:${ev.eventId} peer:${victim} reason:(silent|node-gone)\\]`), killedAt, 10_000);
    const afterMs = dropped.at - killedAt;
    console.log(`# ${survivor} dropped ${victim} from the bridge ${afterMs} ms after the kill (${/reason:(\S+)\]/.exec(dropped.line)![1]})`);
    assert.ok(afterMs <= BRIDGE_SILENCE_MS + 1000, `dropped ${afterMs} ms after the kill`);
    const urls = await waitUntil(`live.m3u8 with ${survivor}'s stream alone`, async () => {
      const u = await variants();
      return Object.keys(u).join() === survivor ? u : undefined;
    }, 15_000, 250);
    const pcm = await latest(urls[survivor]!);
    const own = amplitudeAt(pcm, HOST_HZ[survivor]);
    const gone = amplitudeAt(pcm, HOST_HZ[victim]);
    assert.ok(own > 3000 && gone < 500, `${survivor}'s host only (own ${HOST_HZ[survivor]} Hz ${own.toFixed(0)}, ${victim}'s ${HOST_HZ[victim]} Hz ${gone.toFixed(0)})`);
    assert.equal(logLines(cluster.node(survivor), /hanging up .*reason:/, killedAt).length, 0, `${survivor}'s caller was not touched`);
  });

  test('once the event ends, the archive covers it with no gap longer than one segment', async () => {
    assert.ok(ev, 'the event is live');
    const endAt = Date.now();
    const end = await cluster.api('POST', `/api/events/${ev.eventId}/end`);
    assert.ok(end.status === 200 || end.status === 409, `POST …/end: ${end.status} ${end.text}`);
    const archived = await waitUntil('the event archived', async () => {
      const r = await cluster.api('GET', `/api/events/${ev.eventId}`);
      return r.body?.status === 'archived' ? r.body : undefined;
    }, 90_000, 500);
    const fragments: Array<{ streamId: string; start: number; end: number }> = archived.archive;
    assert.ok(fragments.length >= 1, JSON.stringify(fragments));
    // The event was on air from its first stream's start to the end call: the archive (stream
    // offsets, so its length is the sum of its fragments) may lose at most one segment of it.
    const archiveMs = fragments.reduce((sum, f) => sum + (f.end - f.start) * 1000, 0);
    const onAirMs = endAt - Math.min(...streamStarts);
    console.log(`# archive: ${fragments.length} fragment(s), ${Math.round(archiveMs)} ms of ${onAirMs} ms on air: ${JSON.stringify(fragments)}`);
    assert.ok(archiveMs >= onAirMs - SEGMENT_MS - 1000, `archive ${Math.round(archiveMs)} ms for ${onAirMs} ms on air: a gap longer than one segment`);
    const vod = await fetch(`${ev.attendeeUrl}/archive.m3u8`);
    assert.equal(vod.status, 200);
  });
});
