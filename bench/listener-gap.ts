/**
 * Listener gap on voice node death with dual dial-in (issue 4, items 1 and 2). Target: at most one
 * segment (2 s).
 *
 * A cluster of three processes on this machine — `plane` (gateway, reservation, event, monitoring,
 * content storage, archive, attendee access) and two voice/encoder nodes `v1` and `v2` — over the
 * machine's NATS, Redis and PostgreSQL. Each round: a host dials the same event twice, once straight
 * to each voice node (sipp, 1000 Hz on v1 and 1500 Hz on v2), so the event has two redundant
 * streams (bridged: both carry both speakers). A listener's headless Chromium opens the attendee
 * page and plays `live.m3u8` through hls.js; the page samples `audio.currentTime` every 250 ms.
 * Once it has played a few seconds, the voice node whose stream the player is fetching (hls.js picks
 * one of the identical variants) is killed with SIGKILL (its process group, ffmpeg included).
 * Measured from the page's samples over the 20 s after the kill:
 * - the longest stall: the longest span in which currentTime did not move, less one sample period;
 * - the playback lost: wall time passed minus currentTime advanced (stalls plus any slow play).
 * Then the event is ended, the killed node started again and the next round begins.
 *
 * The helpers at the top (recordPlayback, playbackSamples, largestStall, CHROMIUM_ARGS) are shared
 * with spec/cluster/redundant-streams.spec.ts, which asserts what this file only measures.
 *
 * Ports 14000-15999 (the cluster harness's benchmark block, run one benchmark at a time); traffic
 * stays on 127.0.0.1.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { fmt, minMedMax, type BenchOptions, type BenchResult, type Row } from './support/report.ts';
import { ensureServices, placeCall, sleep, startCluster, streamsOf, waitUntil, type Cluster, type PlacedCall } from '../spec/support/cluster.ts';

/** Chromium flags of FIELD-NOTES "Chromium and hls.js", plus autoplay without a gesture. */
export const CHROMIUM_ARGS = [
  '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required',
];

/** How often the page samples currentTime (ms). */
export const SAMPLE_MS = 250;

/** One sample of the player: wall clock (ms since epoch) and the media element's currentTime (s). */
export interface PlaybackSample {
  at: number;
  t: number;
}

/** Starts sampling the player's currentTime in the page every SAMPLE_MS (in the page, so no round-trip jitter). */
export async function recordPlayback(page: Page): Promise<void> {
  await page.evaluate((every) => {
    const w = window as unknown as { __samples: Array<{ at: number; t: number }> };
    w.__samples = [];
    setInterval(() => {
      const el = document.getElementById('player') as HTMLAudioElement | null;
      w.__samples.push({ at: Date.now(), t: el ? el.currentTime : 0 });
    }, every);
  }, SAMPLE_MS);
}

/** The samples taken so far. */
export function playbackSamples(page: Page): Promise<PlaybackSample[]> {
  return page.evaluate(() => (window as unknown as { __samples: PlaybackSample[] }).__samples.slice());
}

/** The page's player is live through hls.js (MediaSource) and currentTime has passed `seconds`. */
export function playing(page: Page, seconds: number): Promise<boolean> {
  return page.evaluate((s) => {
    const el = document.getElementById('player') as HTMLAudioElement | null;
    return !!el && el.src.startsWith('blob:') && el.currentTime > s && !el.paused;
  }, seconds);
}

/** What the samples from `fromMs` to `toMs` show. */
export interface StallFigures {
  /** Longest span without currentTime moving, less one sample period (ms; 0 when it always moved). */
  longestStallMs: number;
  /** When that stall started (ms since epoch), if any. */
  stallAt?: number;
  /** Wall time passed minus media time played (ms). */
  lostMs: number;
  /** currentTime advanced (s). */
  playedS: number;
  /** Wall time covered (ms). */
  spanMs: number;
  /** Largest jump of media time ahead of wall time between two samples (ms): audio skipped, not heard. */
  largestSkipMs: number;
}

/**
 * Longest stall and playback lost in a window of samples. A stall runs from the last sample that
 * saw currentTime move to the next one that does (or to the window's end); the sampling period is
 * taken off, as two moving samples one period apart mean no stall. "Moving" means media time
 * advanced at least half the wall time since the previous sample: a player stuck at a buffer hole
 * that hls.js nudges forward by a few ms now and then is stalled, not playing.
 */
export function largestStall(samples: PlaybackSample[], fromMs: number, toMs = Infinity): StallFigures {
  const w = samples.filter((s) => s.at >= fromMs && s.at <= toMs);
  if (w.length < 2) return { longestStallMs: NaN, lostMs: NaN, playedS: 0, spanMs: 0, largestSkipMs: NaN };
  let lastMove = w[0]!.at;
  let longest = 0;
  let stallAt: number | undefined;
  let largestSkipMs = 0;
  for (let i = 1; i < w.length; i++) {
    largestSkipMs = Math.max(largestSkipMs, (w[i]!.t - w[i - 1]!.t) * 1000 - (w[i]!.at - w[i - 1]!.at));
    const moved = (w[i]!.t - w[i - 1]!.t) * 1000 >= 0.5 * (w[i]!.at - w[i - 1]!.at);
    if (!moved) continue;
    // Two moving samples one period apart: no stall.
    const stall = w[i]!.at - lastMove - SAMPLE_MS;
    if (stall > longest) {
      longest = stall;
      stallAt = lastMove;
    }
    lastMove = w[i]!.at;
  }
  // Still stuck at the window's end: stalled at least since the last move.
  const tail = w[w.length - 1]!.at - lastMove;
  if (tail > longest) {
    longest = tail;
    stallAt = lastMove;
  }
  const spanMs = w[w.length - 1]!.at - w[0]!.at;
  const playedS = w[w.length - 1]!.t - w[0]!.t;
  const longestStallMs = Math.max(0, longest);
  return { longestStallMs, stallAt: longestStallMs > 0 ? stallAt : undefined, lostMs: Math.max(0, spanMs - playedS * 1000), playedS, spanMs, largestSkipMs };
}

/** The event-plane roles: the only content storage, no voice. */
export const PLANE_ROLES = ['gateway', 'reservation', 'event', 'monitoring', 'content-storage', 'archive-coordinator', 'attendee-access'];
/** The voice nodes' roles. */
export const VOICE_ROLES = ['voice-server', 'encoder-port'];

const PORTS = {
  plane: { httpPort: 14080, sipPort: 14060, rtpPorts: '14100-14149', encoderPorts: '15000-15049' },
  v1: { httpPort: 14081, sipPort: 14061, rtpPorts: '14200-14249', encoderPorts: '15100-15149' },
  v2: { httpPort: 14082, sipPort: 14062, rtpPorts: '14300-14349', encoderPorts: '15200-15249' },
  sipp: [
    { sip: 14050, media: 14400 },
    { sip: 14051, media: 14410 },
  ],
} as const;

const TARGET_MS = 2000;
const AFTER_KILL_MS = 20_000;
/** The host's second line dials in this long after the listener started on the first one's stream. */
const STAGGER_MS = 8000;

/** One round's figures. */
export interface GapRound {
  round: number;
  ok: boolean;
  error?: string;
  /** The voice node killed (the one whose stream the player was on). */
  victim?: string;
  longestStallMs?: number;
  lostMs?: number;
  playedS?: number;
  spanMs?: number;
  largestSkipMs?: number;
  /** How much later the second stream started than the first (ms). */
  staggerMs?: number;
}

/**
 * One round: the host dials v1, a listener plays its stream, the host's second line dials v2 seconds
 * later (the listener learns of it by content steering), SIGKILL of the node the player is on, 20 s
 * of samples.
 */
async function round(cluster: Cluster, browser: Browser, dir: string, n: number, log: (m: string) => void): Promise<GapRound> {
  const ev = (await cluster.api('POST', '/api/events', { title: `listener gap ${n}` })).body;
  const holdMs = 75_000;
  const calls: PlacedCall[] = [
    placeCall({ dir, name: `gap-${n}-v1`, target: cluster.node('v1').sipTarget, event: ev, holdMs, freqHz: 1000, localPort: PORTS.sipp[0].sip, mediaPort: PORTS.sipp[0].media }),
  ];
  const page = await browser.newPage();
  const segments: string[] = [];
  page.on('request', (r) => {
    const m = /\/s\/([^/]+)\/[^?]+\.ts/.exec(r.url());
    if (m) segments.push(m[1]!);
  });
  try {
    await waitUntil('v1\'s stream', async () => (streamsOf(await cluster.status(), ev.eventId).length >= 1 ? true : undefined), 40_000, 250);
    await page.goto(ev.attendeeUrl);
    await waitUntil('the page to play', () => playing(page, 1), 40_000, 250);
    await sleep(STAGGER_MS);
    calls.push(placeCall({ dir, name: `gap-${n}-v2`, target: cluster.node('v2').sipTarget, event: ev, holdMs, freqHz: 1500, localPort: PORTS.sipp[1].sip, mediaPort: PORTS.sipp[1].media }));
    const streams = await waitUntil('two streams of the event', async () => {
      const s = streamsOf(await cluster.status(), ev.eventId);
      return s.length >= 2 ? s : undefined;
    }, 40_000, 250);
    const [first, second] = streams.map((s) => Date.parse(s.startedAt)).sort((a, b) => a - b);
    await recordPlayback(page);
    // Longer than a steering manifest's TTL: the player knows of the second stream.
    await sleep(6000);
    const victim = streams.find((s) => s.streamId === segments.at(-1))?.nodeId as string | undefined;
    if (victim !== 'v1' && victim !== 'v2') throw new Error(`the player's stream ${segments.at(-1)} is neither v1's nor v2's`);
    const killedAt = await cluster.kill9(victim);
    await sleep(AFTER_KILL_MS);
    const f = largestStall(await playbackSamples(page), killedAt);
    log(`round ${n}: streams started ${second! - first!} ms apart; ${victim} killed under the listener; longest stall ${Math.round(f.longestStallMs)} ms, lost ${Math.round(f.lostMs)} ms, largest skip ${Math.round(f.largestSkipMs)} ms, played ${fmt(f.playedS)} s in ${f.spanMs} ms`);
    return { round: n, ok: true, victim, longestStallMs: Math.round(f.longestStallMs), lostMs: Math.round(f.lostMs), playedS: f.playedS, spanMs: f.spanMs, largestSkipMs: Math.round(f.largestSkipMs), staggerMs: second! - first! };
  } finally {
    await page.close().catch(() => {});
    await cluster.api('POST', `/api/events/${ev.eventId}/end`).catch(() => {});
    await Promise.allSettled(calls.map((c) => c.done));
  }
}

/** The benchmark: `rounds` rounds (1 with --quick), min / median / max of the longest stall. */
export async function listenerGap(o: BenchOptions & { rounds?: number }): Promise<BenchResult> {
  const t0 = performance.now();
  const rounds = o.rounds ?? (o.quick ? 1 : 3);
  await ensureServices();
  const dir = join(o.dir, 'sipp');
  mkdirSync(dir, { recursive: true });
  const cluster = await startCluster({
    name: 'bench-listener-gap',
    nodes: [
      { id: 'plane', roles: PLANE_ROLES, ...PORTS.plane },
      { id: 'v1', roles: VOICE_ROLES, ...PORTS.v1 },
      { id: 'v2', roles: VOICE_ROLES, ...PORTS.v2 },
    ],
    log: o.log,
  });
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
  const results: GapRound[] = [];
  try {
    for (let n = 1; n <= rounds; n++) {
      try {
        results.push(await round(cluster, browser, dir, n, o.log));
      } catch (err) {
        o.log(`round ${n} failed: ${(err as Error).message.split('\n')[0]}`);
        results.push({ round: n, ok: false, error: (err as Error).message });
      }
      if (n < rounds) {
        for (const id of ['v1', 'v2']) if (!cluster.node(id).running()) await cluster.restart(id);
        await cluster.waitForNodes(['plane', 'v1', 'v2'], 60_000);
      }
    }
  } finally {
    await browser.close().catch(() => {});
    await cluster.stop();
  }
  const ok = results.filter((r) => r.ok);
  const stall = minMedMax(ok.map((r) => r.longestStallMs!));
  const lost = minMedMax(ok.map((r) => r.lostMs!));
  const skip = minMedMax(ok.map((r) => r.largestSkipMs!));
  const stagger = minMedMax(ok.map((r) => r.staggerMs!));
  const rows: Row[] = ok.length === 0
    ? [{ name: 'listener gap (voice node killed)', figure: 'n/a', unit: 'ms', target: `≤ ${TARGET_MS}`, notes: results[0]?.error?.split('\n')[0]?.slice(0, 200) ?? 'no round' }]
    : [
        { name: 'listener gap (voice node killed), longest stall', figure: stall.median, unit: 'ms', target: `≤ ${TARGET_MS}`, notes: `median of ${ok.length}/${rounds} rounds; min ${stall.min}, max ${stall.max}; dual dial-in ${stagger.median} ms apart (the listener on the first), hls.js in Chromium, 250 ms sampling` },
        { name: 'listener gap (voice node killed), audio skipped', figure: skip.median, unit: 'ms', target: `≤ ${TARGET_MS}`, notes: `largest jump of media time ahead of wall time; min ${skip.min}, max ${skip.max}` },
        { name: 'listener gap (voice node killed), playback lost', figure: lost.median, unit: 'ms', target: '-', notes: `wall time minus media time over ${AFTER_KILL_MS / 1000} s after the kill; min ${lost.min}, max ${lost.max}` },
      ];
  return { name: 'listener-gap', rows, details: { rounds: results }, seconds: (performance.now() - t0) / 1000 };
}
