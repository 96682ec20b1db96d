/**
 * Benchmark 3, concurrent calls: for each N, a fresh node; N events reserved over the API; ONE
 * sipp process places N calls (`-m N -r 50 -l N`), each keying its own event ID and PIN as SIP
 * INFO (from an `-inf` CSV line), streaming a 1 kHz µ-law file with rtp_stream for exactly
 * `streamS` seconds (so the packets each call sends are known), holding, then BYE.
 *
 * Measured while every call is live and streaming (the steady window):
 * - CPU of the node and its ffmpeg children (/proc, incl. reaped children), of sipp apart, and of
 *   the machine; per call = (node + ffmpeg) / N.
 * - RSS of node + ffmpeg children (mean over the window) / N, and the idle node's RSS.
 * - each event's variant playlist at the window's start and end: lag = wall time since the stream
 *   started (monitoring's startedAt) − total EXTINF. A live encoder lists a segment once it is
 *   complete, so lag sits between 0 and one segment; "on time" means lag < 2 segments, i.e. less
 *   than one segment late.
 * - RTP: every channel's `rtpIn` (GET /api/cluster) once every stream has finished sending,
 *   compared with the packets sipp sent (streamS × 50 per call); the mixer's `lateFrames`.
 * Held = every call passed in sipp, every event live, every playlist on time, RTP loss < 0.1 %,
 * no late mixer frames.
 */
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { toneFile } from './support/audio.ts';
import { listedSeconds, mediaPlaylist, variantOf } from './support/hls.ts';
import { BENCH_PORTS, REPO, reserveMany, sleep, startBenchNode, type BenchNode } from './support/node.ts';
import { cpuPercent, exeOf, pssBytes, rss, sampleTree, systemBusyPercent, systemCpu, waitQuiet, type TreeSample } from './support/proc.ts';
import { KEYS_PER_CALL, startSipp, writeInjection, writeScenario } from './support/sipp.ts';
import { fmt, type BenchOptions, type BenchResult, type Row } from './support/report.ts';
import { mapLimit } from '../runtime/map-limit.ts';

const RATE = 50;
const KEY_GAP_MS = 100;
const FIRST_KEY_MS = 500;
const SEGMENT_S = 2;
const MB = 1024 * 1024;

/** The ffmpeg a node uses by default (the npm static build), as cluster.config.ts resolves it. */
export function staticFfmpegPath(): string {
  try {
    return createRequire(join(REPO, 'package.json'))('@ffmpeg-installer/ffmpeg').path as string;
  } catch {
    return 'ffmpeg';
  }
}

export interface FfmpegChoice {
  label: 'static' | 'debian';
  path: string;
}

export interface CapacityRun {
  n: number;
  ffmpeg: FfmpegChoice & { seenExe?: string };
  held: boolean;
  reasons: string[];
  cpu?: { windowS: number; nodeTreePct: number; nodeOnlyPct: number; ffmpegPct: number; perCallPct: number; sippPct: number; machinePct: number; benchPct: number; otherPct: number; idleNodePct: number };
  mem?: { meanMB: number; perCallMB: number; pssMB: number; pssPerCallMB: number; ffmpegPssMB: number; idleMB: number; marginalPerCallMB: number; ffmpegProcs: number; ffmpegMB: number; nodeMB: number };
  live?: { events: number; live: number; checked: number; late: number; maxLagS: number; meanLagS: number; maxDriftS: number; lagsEnd: number[] };
  rtp?: { channels: number; expected: number; received: number; lost: number; lossPct: number; lateFrames: number; lateFramesBeforeCalls: number; lateFramesInWindow: number; foreign: number; malformed: number };
  sipp?: { code: number | null; successful: number; failed: number; cpuPct: number };
  encoders?: Record<string, number>;
  problems: { count: number; sample: string[] };
  /** The earlier attempt at this N that failed while other work loaded the machine. */
  retryOf?: { reasons: string[]; otherPct?: number };
  /** Machine load before the node started (other work on the machine). */
  before?: { busyPct: number; waitedS: number; quiet: boolean };
  timing: { allLiveAfterS?: number; seconds: number };
}

async function cluster(node: BenchNode): Promise<any | undefined> {
  try {
    const r = await node.api('GET', '/api/cluster');
    return r.status === 200 ? r.body : undefined;
  } catch {
    return undefined;
  }
}

function channelsOf(status: any): any[] {
  return (status?.voiceServers ?? []).flatMap((v: any) => v?.channels ?? []);
}

function lateFramesOf(status: any): number {
  return (status?.voiceServers ?? []).reduce((s: number, v: any) => s + (Number(v?.lateFrames) || 0), 0);
}

/** Sums numeric fields of the encoder-port entries (whatever the node reports: dropped samples, gaps…). */
function encoderTotals(status: any): Record<string, number> {
  const out: Record<string, number> = {};
  const add = (prefix: string, o: any) => {
    if (!o || typeof o !== 'object') return;
    for (const [k, v] of Object.entries(o)) {
      if (typeof v === 'number' && !/port|pid|At$|^n$|index/i.test(k)) out[prefix + k] = (out[prefix + k] ?? 0) + v;
      else if (Array.isArray(v) && /gaps/i.test(k)) out[prefix + k] = (out[prefix + k] ?? 0) + v.length;
      else if (v && typeof v === 'object' && !Array.isArray(v) && prefix === '') add(`${k}.`, v);
    }
  };
  for (const e of status?.encoderPorts ?? []) add('', e);
  return out;
}

/** One look at an event's variant playlist. */
interface PlaylistCheck {
  at: number;
  listedS: number;
  /** Wall time since the stream started − listed EXTINF seconds. */
  lagS: number;
}

/** Checks every event's playlist now (undefined where not live or its start time is unknown). */
async function playlistLags(variants: Array<string | undefined>, startedAt: Array<number | undefined>): Promise<Array<PlaylistCheck | undefined>> {
  return mapLimit(variants, 16, async (v, i) => {
    if (!v || startedAt[i] === undefined) return undefined;
    const p = await mediaPlaylist(v);
    if (!p) return undefined;
    const at = Date.now();
    const listedS = listedSeconds(p);
    return { at, listedS, lagS: (at - startedAt[i]!) / 1000 - listedS };
  });
}

/** One capacity run with N calls. */
export async function capacityRun(o: BenchOptions, n: number, ffmpeg: FfmpegChoice, streamS: number): Promise<CapacityRun> {
  const t0 = performance.now();
  const run: CapacityRun = { n, ffmpeg, held: false, reasons: [], problems: { count: 0, sample: [] }, timing: { seconds: 0 } };
  run.before = await waitQuiet(25, o.quick ? 10 : 45, o.log);
  const node = await startBenchNode({ env: { JITCAST_FFMPEG_PATH: ffmpeg.path, JITCAST_SUPERVISE: '0' /* node.pid is the node itself: its tree is what is measured */ } });
  let sippPid: number | undefined;
  try {
    // Events first (the node's DB is warm: startBenchNode reserved one already), then the idle node.
    const events = await reserveMany(node, n, `bench capacity N=${n}`);
    await sleep(2000);
    const idleA = sampleTree(node.pid);
    await sleep(3000);
    const idleB = sampleTree(node.pid);
    const idleMB = rss(idleB).bytes / MB;
    const idleNodePct = cpuPercent(idleA, idleB);
    const lateBefore = lateFramesOf(await cluster(node));

    const dir = o.dir;
    const audio = toneFile(dir, 1, 'tone-1s.ulaw');
    const injection = join(dir, `capacity-${n}-${ffmpeg.label}.csv`);
    writeInjection(injection, events);
    const spreadS = n / RATE;
    const keysS = (FIRST_KEY_MS + KEYS_PER_CALL * KEY_GAP_MS) / 1000;
    // Each call streams exactly streamS s, then stays up until well after the last call's stream ended.
    const holdMs = Math.round((streamS + spreadS + 6 - keysS) * 1000);
    const scenario = writeScenario(dir, `capacity-${n}-${ffmpeg.label}`, {
      audio: { file: audio, loops: streamS },
      firstKeyAfterMs: FIRST_KEY_MS,
      keyGapMs: KEY_GAP_MS,
      holdMs,
    });
    const sippStart = Date.now();
    const sipp = startSipp({
      scenario,
      target: node.sipTarget,
      cwd: dir,
      injection,
      calls: n,
      rate: RATE,
      limit: n,
      timeoutS: Math.ceil(streamS + spreadS + 6 + 60),
      localPort: BENCH_PORTS.sippSip,
      mediaPort: BENCH_PORTS.sippMedia,
    });
    sippPid = sipp.pid;
    let sippFinished = false;
    void sipp.done.then(() => (sippFinished = true));
    const at = (s: number) => sippStart + s * 1000;
    const until = async (t: number) => {
      const d = t - Date.now();
      if (d > 0) await sleep(d);
    };

    // Wait until every call is live (at most until the steady window starts + 5 s).
    const windowStart = at(spreadS + keysS + 3);
    const windowEnd = at(streamS - 1);
    while (Date.now() < windowStart + 5000 && !sippFinished) {
      const st = await cluster(node);
      if (channelsOf(st).filter((c) => c.phase === 'live').length >= n) {
        run.timing.allLiveAfterS = (Date.now() - sippStart) / 1000;
        break;
      }
      await sleep(500);
    }

    // Variant URLs and stream start times of every event (an encoder binds a moment after its caller is live).
    const variants: Array<string | undefined> = events.map(() => undefined);
    const startedBy = new Map<string, number>();
    const refresh = async () => {
      const missing = events.map((_, i) => i).filter((i) => !variants[i]);
      await mapLimit(missing, 16, async (i) => {
        variants[i] = await variantOf(events[i]!.attendeeUrl);
      });
      const st = await cluster(node);
      for (const s of st?.streams ?? []) {
        const t = typeof s.startedAt === 'number' ? s.startedAt : Date.parse(s.startedAt);
        if (s.eventId && Number.isFinite(t)) startedBy.set(s.eventId, Math.min(t, startedBy.get(s.eventId) ?? Infinity));
      }
      return variants.every(Boolean) && events.every((e) => startedBy.has(e.eventId));
    };
    while (!(await refresh()) && Date.now() < windowStart && !sippFinished) await sleep(500);
    await until(windowStart);
    if (windowEnd - Date.now() < 3000) run.reasons.push(`steady window too short (set-up took until ${fmt((Date.now() - sippStart) / 1000)} s)`);

    // Steady window: CPU from /proc at both ends, RSS every 2 s, every playlist checked at both ends.
    const stA = await cluster(node);
    const nodeA = sampleTree(node.pid);
    const sippA = sampleTree(sipp.pid);
    const sysA = systemCpu();
    const benchA = { cpu: process.cpuUsage(), at: performance.now() };
    const rssSamples: TreeSample[] = [nodeA];
    const startedAt = () => events.map((e) => startedBy.get(e.eventId));
    const lagsStart = await playlistLags(variants, startedAt());
    while (Date.now() < windowEnd - 2000) {
      await sleep(2000);
      rssSamples.push(sampleTree(node.pid));
    }
    await until(windowEnd);
    const nodeB = sampleTree(node.pid);
    const sippB = sampleTree(sipp.pid);
    const sysB = systemCpu();
    const benchCpu = process.cpuUsage(benchA.cpu);
    const benchPct = ((benchCpu.user + benchCpu.system) / 1000 / (performance.now() - benchA.at)) * 100;
    rssSamples.push(nodeB);
    const stB = await cluster(node);
    await refresh();
    const lagsEnd = await playlistLags(variants, startedAt());

    const windowS = (nodeB.at - nodeA.at) / 1000;
    const nodeTreePct = cpuPercent(nodeA, nodeB);
    const sippPct = cpuPercent(sippA, sippB);
    const machinePct = systemBusyPercent(sysA, sysB);
    run.cpu = {
      windowS,
      nodeTreePct,
      nodeOnlyPct: cpuPercent(nodeA, nodeB, /^node$/, false),
      ffmpegPct: cpuPercent(nodeA, nodeB, /ffmpeg/, true),
      perCallPct: nodeTreePct / n,
      sippPct,
      machinePct,
      // Whatever else ran on the machine meanwhile (other test runs share it), in % of one core.
      benchPct,
      otherPct: Math.max(0, machinePct * cpus().length - nodeTreePct - sippPct - benchPct),
      idleNodePct,
    };
    const mean = (f: (s: TreeSample) => number) => rssSamples.reduce((s, x) => s + f(x), 0) / rssSamples.length;
    const meanMB = mean((s) => rss(s).bytes) / MB;
    const ffmpegMB = mean((s) => rss(s, /ffmpeg/).bytes) / MB;
    run.mem = {
      meanMB,
      perCallMB: meanMB / n,
      idleMB,
      marginalPerCallMB: (meanMB - idleMB) / n,
      ffmpegProcs: rss(nodeB, /ffmpeg/).count,
      ffmpegMB,
      nodeMB: meanMB - ffmpegMB,
      pssMB: 0,
      pssPerCallMB: 0,
      ffmpegPssMB: 0,
    };
    // PSS once (shared pages of the static ffmpeg binary counted once, not per process).
    let pss = 0;
    let ffmpegPss = 0;
    for (const p of nodeB.procs.values()) {
      const b = pssBytes(p.pid);
      pss += b;
      if (/ffmpeg/.test(p.comm)) ffmpegPss += b;
    }
    run.mem.pssMB = pss / MB;
    run.mem.pssPerCallMB = pss / MB / n;
    run.mem.ffmpegPssMB = ffmpegPss / MB;
    const anyFfmpeg = [...nodeB.procs.values()].find((p) => /ffmpeg/.test(p.comm));
    run.ffmpeg.seenExe = anyFfmpeg ? exeOf(anyFfmpeg.pid) : undefined;

    const lagOf = (x: PlaylistCheck | undefined) => x?.lagS;
    const worst = lagsEnd.map((l, i) => (l === undefined ? undefined : Math.max(l.lagS, lagOf(lagsStart[i]) ?? -Infinity)));
    const checked = worst.filter((l): l is number => l !== undefined);
    // Falling behind during the window: wall time passed minus media listed between the two checks.
    const drifts = lagsEnd
      .map((e, i) => {
        const b0 = lagsStart[i];
        return e && b0 ? (e.at - b0.at) / 1000 - (e.listedS - b0.listedS) : undefined;
      })
      .filter((d): d is number => d !== undefined);
    run.live = {
      events: n,
      live: variants.filter(Boolean).length,
      checked: checked.length,
      late: checked.filter((l) => l >= 2 * SEGMENT_S).length,
      maxLagS: checked.length ? Math.max(...checked) : NaN,
      meanLagS: checked.length ? checked.reduce((s, x) => s + x, 0) / checked.length : NaN,
      maxDriftS: drifts.length ? Math.max(...drifts) : NaN,
      lagsEnd: lagsEnd.map((l) => (l === undefined ? NaN : Math.round(l.lagS * 1000) / 1000)),
    };

    // RTP: once every call's stream is done (the last call started at spreadS), before the first BYE.
    await until(at(streamS + spreadS + 1));
    let last: any;
    let prevTotal = -1;
    for (let i = 0; i < 10; i++) {
      last = await cluster(node);
      const total = channelsOf(last).reduce((s, c) => s + (c.stats?.rtpIn ?? 0), 0);
      if (total === prevTotal) break;
      prevTotal = total;
      await sleep(400);
    }
    const chans = channelsOf(last);
    const received = chans.reduce((s, c) => s + (c.stats?.rtpIn ?? 0), 0);
    const expected = n * streamS * 50;
    run.rtp = {
      channels: chans.length,
      expected,
      received,
      lost: expected - received,
      lossPct: ((expected - received) / expected) * 100,
      lateFrames: lateFramesOf(last) - lateBefore,
      lateFramesBeforeCalls: lateBefore,
      lateFramesInWindow: lateFramesOf(stB) - lateFramesOf(stA),
      foreign: chans.reduce((s, c) => s + (c.stats?.rtpForeign ?? 0), 0),
      malformed: chans.reduce((s, c) => s + (c.stats?.rtpMalformed ?? 0), 0),
    };
    run.encoders = encoderTotals(last);

    const out = await sipp.done;
    run.sipp = { code: out.code, successful: out.successful, failed: out.failed, cpuPct: run.cpu.sippPct };
    if (out.code !== 0 || out.successful !== n) run.reasons.push(`sipp: ${out.successful} of ${n} calls passed, ${out.failed} failed (exit ${out.code})${summarizeSippErrors(out.errorsTail)}`);
    if (run.live.live < n) run.reasons.push(`${n - run.live.live} of ${n} events never live`);
    if (run.live.checked < run.live.live) run.reasons.push(`${run.live.live - run.live.checked} live playlists could not be checked`);
    if (run.live.late > 0) run.reasons.push(`${run.live.late} playlists ≥ 1 segment late (lag max ${fmt(run.live.maxLagS)} s, mean ${fmt(run.live.meanLagS)} s; fell behind by at most ${fmt(run.live.maxDriftS)} s over the ${fmt(run.cpu?.windowS ?? NaN, 0)} s window)`);
    if (run.rtp.channels < n) run.reasons.push(`only ${run.rtp.channels} of ${n} channels up when RTP was counted`);
    if (run.rtp.lossPct >= 0.1) run.reasons.push(`RTP loss ${fmt(run.rtp.lossPct, 3)} % (${run.rtp.lost} of ${expected})`);
    if (run.rtp.lateFrames > 0) run.reasons.push(`${run.rtp.lateFrames} late mixer frames (20 ms frames skipped: the node's event loop stalled > 200 ms), ${run.rtp.lateFramesInWindow} of them in the steady window, the rest while calls were joining`);
    run.held = run.reasons.length === 0;
  } catch (err) {
    run.reasons.push(`error: ${(err as Error).message.split('\n')[0]}`);
  } finally {
    await node.stop();
    // A sipp still running (the run failed early): end it by its pid.
    if (sippPid !== undefined) {
      try {
        process.kill(sippPid, 0);
        process.kill(sippPid, 'SIGTERM');
      } catch {
        /* gone */
      }
    }
    run.problems = { count: node.problemCount(), sample: node.problems().slice(0, 20) };
    run.timing.seconds = (performance.now() - t0) / 1000;
  }
  return run;
}

/** sipp's error log, as distinct messages with counts (timestamps and call IDs stripped). */
function summarizeSippErrors(log: string): string {
  const counts = new Map<string, number>();
  for (const part of log.split(/\d{4}-\d\d-\d\d\s+[\d:.]+\s+\d+\.\d+:\s*/)) {
    const msg = part.replace(/\S+@[\d.]+/g, '').replace(/\s+/g, ' ').trim().slice(0, 80);
    if (msg) counts.set(msg, (counts.get(msg) ?? 0) + 1);
  }
  return counts.size ? ': ' + [...counts].map(([m, c]) => `${c}× "${m}"`).join(', ') + ' (in the last 3 kB of its error log)' : '';
}

function rowsOf(r: CapacityRun): Row[] {
  const tag = `N=${r.n} ${r.ffmpeg.label}`;
  const rows: Row[] = [];
  rows.push({
    name: `capacity ${tag}: held`,
    figure: r.held ? 'yes' : 'NO',
    unit: '',
    target: 'yes',
    notes: r.held
      ? `all ${r.n} calls passed, live and on time; playlist lag max ${fmt(r.live?.maxLagS ?? NaN)} s (mean ${fmt(r.live?.meanLagS ?? NaN)}), fell behind by at most ${fmt(r.live?.maxDriftS ?? NaN)} s over the window; RTP lost ${r.rtp?.lost ?? '?'} of ${r.rtp?.expected ?? '?'}; late mixer frames ${r.rtp?.lateFrames ?? '?'} (${r.rtp?.lateFramesBeforeCalls ?? '?'} before the calls); node warnings/errors ${r.problems.count}`
      : r.reasons.join('; ') + `; node warnings/errors ${r.problems.count}`,
  });
  if (r.retryOf) rows[rows.length - 1]!.notes += ` (second attempt: the first failed with ${fmt(r.retryOf.otherPct ?? NaN, 0)} % of a core taken by other processes: ${r.retryOf.reasons.join('; ')})`;
  if (r.cpu && r.cpu.windowS >= 3) {
    rows.push({
      name: `capacity ${tag}: CPU per call`,
      figure: r.cpu.perCallPct,
      unit: '% of a core',
      target: '-',
      notes: `node+ffmpeg ${fmt(r.cpu.nodeTreePct, 1)} % (node ${fmt(r.cpu.nodeOnlyPct, 1)} %, ffmpeg ${fmt(r.cpu.ffmpegPct, 1)} %) over ${fmt(r.cpu.windowS, 1)} s (idle node ${fmt(r.cpu.idleNodePct, 1)} %); sipp ${fmt(r.cpu.sippPct, 1)} %; this bench ${fmt(r.cpu.benchPct, 1)} %; machine ${fmt(r.cpu.machinePct, 1)} % of ${cpus().length} cores, of which other processes ${fmt(r.cpu.otherPct, 0)} % of a core${r.before ? ` (machine ${fmt(r.before.busyPct, 0)} % busy before the node started)` : ''}`,
    });
  }
  if (r.mem && r.cpu && r.cpu.windowS >= 3) {
    rows.push({
      name: `capacity ${tag}: RSS per call`,
      figure: r.mem.perCallMB,
      unit: 'MB',
      target: '-',
      notes: `node+ffmpeg ${fmt(r.mem.meanMB, 0)} MB (node ${fmt(r.mem.nodeMB, 0)}, ${r.mem.ffmpegProcs} ffmpeg ${fmt(r.mem.ffmpegMB, 0)}); idle node with its DB open ${fmt(r.mem.idleMB, 0)} MB, so ${fmt(r.mem.marginalPerCallMB)} MB per added call; PSS ${fmt(r.mem.pssMB, 0)} MB = ${fmt(r.mem.pssPerCallMB)} MB per call (ffmpeg ${fmt(r.mem.ffmpegPssMB / Math.max(1, r.mem.ffmpegProcs))} MB each)`,
    });
  }
  return rows;
}

/** Benchmark 3: N in 25, 50, 100, 200 (`--quick`: 10) with the default (static) ffmpeg, and N=100 with Debian's. */
export async function capacity(o: BenchOptions & { ns?: number[]; compareDebian?: boolean; budgetS?: number }): Promise<BenchResult> {
  const t0 = performance.now();
  const ns = o.ns ?? (o.quick ? [10] : [25, 50, 100, 150, 200]);
  const budgetS = o.budgetS ?? (o.quick ? 120 : 660);
  const skipped: string[] = [];
  const fits = (n: number, label: string) => {
    // Node start + reservations + quiet wait + the calls + drain, roughly.
    const estimateS = 35 + streamS + n / RATE + 10 + n * 0.05;
    const ok = (performance.now() - t0) / 1000 + estimateS <= budgetS;
    if (!ok) skipped.push(`N=${n} ${label}`);
    return ok;
  };
  const streamS = o.quick ? 12 : 30;
  const stat: FfmpegChoice = { label: 'static', path: staticFfmpegPath() };
  const debian: FfmpegChoice = { label: 'debian', path: '/usr/bin/ffmpeg' };
  const runs: CapacityRun[] = [];
  /** A run that failed while other work took more than 40 % of a core is tried once more. */
  const runWithRetry = async (n: number, choice: FfmpegChoice): Promise<CapacityRun> => {
    const r = await capacityRun(o, n, choice, streamS);
    const other = r.cpu?.otherPct ?? 0;
    if (r.held || other <= 40 || !fits(n, `${choice.label} retry`)) return r;
    o.log(`capacity N=${n} ${choice.label}: failed while other processes used ${fmt(other, 0)} % of a core; trying once more`);
    const again = await capacityRun(o, n, choice, streamS);
    again.retryOf = { reasons: r.reasons, otherPct: other };
    return again;
  };
  for (const n of ns) {
    if (!fits(n, 'static')) {
      o.log(`capacity N=${n}: skipped, it would not fit the ${budgetS} s budget`);
      break;
    }
    o.log(`capacity N=${n} (static ffmpeg ${stat.path}) …`);
    const r = await runWithRetry(n, stat);
    runs.push(r);
    o.log(`capacity N=${n}: ${r.held ? 'held' : 'NOT held: ' + r.reasons.join('; ')} — CPU/call ${fmt(r.cpu?.perCallPct ?? NaN)} %, RSS/call ${fmt(r.mem?.perCallMB ?? NaN)} MB (${fmt(r.timing.seconds, 0)} s)`);
    if (!r.held) break; // a larger N only fails harder; save the time
  }
  const compareDebian = o.compareDebian ?? !o.quick;
  const heldStatic = runs.filter((r) => r.held).map((r) => r.n);
  const nDebian = Math.min(100, heldStatic.length ? Math.max(...heldStatic) : ns[0]!);
  if (compareDebian && fits(nDebian, 'debian')) {
    const n = nDebian;
    o.log(`capacity N=${n} with Debian's ffmpeg (${debian.path}) for comparison …`);
    const r = await runWithRetry(n, debian);
    runs.push(r);
    o.log(`capacity N=${n} debian: ${r.held ? 'held' : 'NOT held: ' + r.reasons.join('; ')} — CPU/call ${fmt(r.cpu?.perCallPct ?? NaN)} %, RSS/call ${fmt(r.mem?.perCallMB ?? NaN)} MB`);
  }
  const staticRuns = runs.filter((r) => r.ffmpeg.label === 'static');
  const heldNs = staticRuns.filter((r) => r.held).map((r) => r.n);
  const largest = heldNs.length ? Math.max(...heldNs) : 0;
  const firstFail = staticRuns.find((r) => !r.held);
  const seen = staticRuns.find((r) => r.ffmpeg.seenExe)?.ffmpeg.seenExe;
  const rows: Row[] = [
    {
      name: 'capacity: largest N that held',
      figure: largest,
      unit: 'calls',
      target: '200 (≥ 100)',
      notes: `tried ${staticRuns.map((r) => r.n).join(', ')} (${streamS} s of audio per call, one event per call, one sipp at ${RATE} calls/s)${firstFail ? `; N=${firstFail.n} failed: ${firstFail.reasons.join('; ')}` : ''}${skipped.length ? `; skipped for the time budget: ${skipped.join(', ')}` : ''}`,
    },
    {
      name: 'capacity: ffmpeg used by the node',
      figure: 'static',
      unit: '',
      target: '-',
      notes: `${stat.path} (@ffmpeg-installer/ffmpeg, the default)${seen ? `; running encoders' /proc/<pid>/exe: ${seen}` : ''}${compareDebian ? `; comparison rows "debian" ran with JITCAST_FFMPEG_PATH=${debian.path}` : ''}`,
    },
    ...runs.flatMap(rowsOf),
  ];
  return { name: 'capacity', seconds: (performance.now() - t0) / 1000, rows, details: { streamS, rate: RATE, runs } };
}
