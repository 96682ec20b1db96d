/**
 * Call setup through the front door under load (issue 3 benchmarks): a cluster of three processes
 * on this machine — `door` (sip-router + event plane) and two voice/encoder nodes `v1`, `v2`, all
 * in dc1 so the door balances between them — over the machine's NATS, Redis and PostgreSQL. ONE
 * sipp process places calls at a fixed rate R for D seconds through the door (as bench/capacity.ts
 * does: PCMU tone from `rtp_stream`, the event ID and PIN as 16 SIP INFO `application/dtmf-relay`
 * read from an `-inf` CSV line, a short hold, BYE). Calls are spread over E events (default 10), so
 * each event has a conference (and one encoder) per voice node: the figure is call setup, not
 * encoder start-up (bench/capacity.ts measures encoders).
 *
 * A call counts as set up when its voice server logs "caller live [… call:<Call-ID>]" (PIN
 * checked, event joined, in the conference). Per rate: sipp's passed/failed calls, calls live,
 * the setup time from the door's "call routed" stamp (the INVITE's arrival) to "caller live",
 * its p50/p95/max, and p95 in the first and last quarter of the run (a queue that builds up shows
 * as growth). Held = every call passed in sipp and went live, p95 ≤ 5 s and the last quarter's p95
 * at most 1 s above the second's (the first quarter is the ramp-up to the steady concurrency). The figure is the highest rate that held. Target: 50 /s.
 *
 * Ports 14000-15999 (the cluster harness's benchmark block); traffic stays on 127.0.0.1.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { toneFile } from './support/audio.ts';
import { cpuPercent, sampleTree, systemBusyPercent, systemCpu, waitQuiet, type TreeSample } from './support/proc.ts';
import { KEYS_PER_CALL, startSipp, writeInjection, writeScenario } from './support/sipp.ts';
import { fmt, type BenchOptions, type BenchResult, type Row } from './support/report.ts';
import { ensureServices, logLines, routeOf, sleep, startCluster, waitUntil, type Cluster } from '../spec/support/cluster.ts';

/** Ports of the call-setup cluster and its sipp. */
export const CALL_SETUP_PORTS = {
  door: { httpPort: 14080, sipPort: 14060, rtpPorts: '14090-14099', encoderPorts: '15700-15749' },
  // 400 even RTP ports each: at 100 calls/s, ~2.5 s calls and a 4 s rest need ~650 in all.
  v1: { httpPort: 14081, sipPort: 14061, rtpPorts: '14100-14899', encoderPorts: '15800-15899' },
  v2: { httpPort: 14082, sipPort: 14062, rtpPorts: '14900-15699', encoderPorts: '15900-15999' },
  sipp: { sip: 14050, media: 14052 },
} as const;

const DOOR_ROLES = ['gateway', 'reservation', 'event', 'monitoring', 'content-storage', 'archive-coordinator', 'attendee-access', 'sip-router'];
const VOICE_ROLES = ['voice-server', 'encoder-port', 'content-storage'];
const TARGET_RATE = 50;
const KEY_GAP_MS = 50;
const FIRST_KEY_MS = 200;
const HOLD_MS = 1000;

/** One rate's outcome. */
export interface CallSetupRun {
  rate: number;
  seconds: number;
  calls: number;
  held: boolean;
  reasons: string[];
  sipp?: { code: number | null; successful: number; failed: number; errors: string };
  live: number;
  byNode: Record<string, number>;
  /** INVITE at the door → caller live (ms). */
  setup?: { p50: number; p95: number; max: number; p95SecondQuarter: number; p95LastQuarter: number };
  /** Calls live per second over the span of INVITE arrivals. */
  achievedPerS?: number;
  machineBusyPct?: number;
  /** CPU of each process tree over the run, % of one core (node trees include their ffmpeg). */
  cpuPct?: Record<string, number>;
  /** p95 setup (ms) of the calls whose INVITE arrived in each 2 s of the run. */
  timeline?: Array<{ fromS: number; calls: number; p95: number }>;
  rerouted: number;
  unavailable: number;
}

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

/** One run at `rate` calls/s for `seconds`. */
async function runAt(o: BenchOptions, cluster: Cluster, events: Array<{ eventId: string; pin: string }>, audio: string, rate: number, seconds: number): Promise<CallSetupRun> {
  const calls = Math.round(rate * seconds);
  const run: CallSetupRun = { rate, seconds, calls, held: false, reasons: [], live: 0, byNode: {}, rerouted: 0, unavailable: 0 };
  const injection = join(o.dir, `call-setup-${rate}.csv`);
  writeInjection(injection, Array.from({ length: calls }, (_, i) => events[i % events.length]!));
  const scenario = writeScenario(o.dir, `call-setup-${rate}`, { audio: { file: audio, loops: -1 }, firstKeyAfterMs: FIRST_KEY_MS, keyGapMs: KEY_GAP_MS, holdMs: HOLD_MS });
  const start = Date.now();
  const sys0 = systemCpu();
  const sipp = startSipp({
    scenario,
    injection,
    target: `127.0.0.1:${CALL_SETUP_PORTS.door.sipPort}`,
    cwd: o.dir,
    calls,
    rate,
    limit: Math.max(50, rate * 10),
    timeoutS: seconds + 60,
    localPort: CALL_SETUP_PORTS.sipp.sip,
    mediaPort: CALL_SETUP_PORTS.sipp.media,
  });
  const trees = (): Record<string, TreeSample> => ({ ...Object.fromEntries(cluster.nodes.map((n) => [n.id, sampleTree(n.pid)])), sipp: sampleTree(sipp.pid) });
  const cpu0 = trees();
  // The last sample before sipp exits (its tree is gone after).
  let cpu1 = cpu0;
  let finished = false;
  const sampler = (async () => {
    while (!finished) {
      await sleep(500);
      if (!finished) cpu1 = trees();
    }
  })();
  const out = await sipp.done;
  finished = true;
  await sampler;
  run.machineBusyPct = systemBusyPercent(sys0, systemCpu());
  run.cpuPct = Object.fromEntries(Object.keys(cpu0).map((k) => [k, Math.round(cpuPercent(cpu0[k]!, cpu1[k]!))]));
  run.sipp = { code: out.code, successful: out.successful, failed: out.failed, errors: out.errorsTail.slice(-400) };
  await sleep(500);

  // Door: first "call routed" per Call-ID (the INVITE's arrival); voice nodes: "caller live".
  const tag = `-${sipp.pid}@`;
  const routedAt = new Map<string, number>();
  for (const l of logLines(cluster.node('door'), /call routed \[call:/, start)) {
    const id = /call:(\S+?)[\] ]/.exec(l.line)?.[1];
    if (!id || !id.includes(tag)) continue;
    if (!routedAt.has(id)) routedAt.set(id, l.at);
    if (/ after:/.test(l.line)) run.rerouted++;
  }
  run.unavailable = logLines(cluster.node('door'), /no voice server can take the call/, start).length;
  const setups: Array<{ at: number; ms: number }> = [];
  for (const v of ['v1', 'v2']) {
    for (const l of logLines(cluster.node(v), /caller live \[/, start)) {
      const id = /call:(\S+?)[\] ]/.exec(l.line)?.[1];
      if (!id || !id.includes(tag)) continue;
      run.live++;
      run.byNode[v] = (run.byNode[v] ?? 0) + 1;
      const r = routedAt.get(id);
      if (r !== undefined) setups.push({ at: r, ms: l.at - r });
    }
  }
  setups.sort((a, b) => a.at - b.at);
  if (setups.length) {
    const ms = setups.map((s) => s.ms);
    const q = Math.max(1, Math.floor(setups.length / 4));
    // The first quarter is the ramp-up (calls pile up to the steady concurrency): compare the second with the last.
    run.setup = { p50: pct(ms, 50), p95: pct(ms, 95), max: Math.max(...ms), p95SecondQuarter: pct(ms.slice(q, 2 * q), 95), p95LastQuarter: pct(ms.slice(-q), 95) };
    const span = (setups.at(-1)!.at - setups[0]!.at) / 1000;
    run.achievedPerS = span > 0 ? (setups.length - 1) / span : NaN;
    run.timeline = [];
    for (let from = setups[0]!.at; from <= setups.at(-1)!.at; from += 2000) {
      const xs = setups.filter((s) => s.at >= from && s.at < from + 2000).map((s) => s.ms);
      run.timeline.push({ fromS: Math.round((from - setups[0]!.at) / 1000), calls: xs.length, p95: pct(xs, 95) });
    }
  }
  if (out.code !== 0 || out.successful !== calls) run.reasons.push(`sipp: ${out.successful} of ${calls} calls passed, ${out.failed} failed (exit ${out.code})`);
  if (run.live < calls) run.reasons.push(`${calls - run.live} of ${calls} calls never live`);
  if (run.setup && run.setup.p95 > 5000) run.reasons.push(`setup p95 ${fmt(run.setup.p95 / 1000)} s > 5 s`);
  if (run.setup && run.setup.p95LastQuarter > run.setup.p95SecondQuarter + 1000) run.reasons.push(`setup time grew: p95 ${fmt(run.setup.p95SecondQuarter / 1000)} s in the second quarter, ${fmt(run.setup.p95LastQuarter / 1000)} s in the last`);
  run.held = run.reasons.length === 0;
  return run;
}

/** The call-setup benchmark: rates 25, 50, 75, 100 /s for 20 s each (`--quick`: 50 /s for 8 s), up to the first that fails. */
export async function callSetup(o: BenchOptions & { rates?: number[]; seconds?: number; events?: number }): Promise<BenchResult> {
  const t0 = performance.now();
  const rates = o.rates ?? (o.quick ? [TARGET_RATE] : [25, 50, 75, 100]);
  const seconds = o.seconds ?? (o.quick ? 8 : 20);
  const nEvents = o.events ?? 10;
  const before = await waitQuiet(25, o.quick ? 5 : 30, o.log);
  await ensureServices();
  const cluster = await startCluster({
    name: 'bench-call-setup',
    nodes: [
      { id: 'door', roles: DOOR_ROLES, dataCenter: 'dc1', ...CALL_SETUP_PORTS.door },
      { id: 'v1', roles: VOICE_ROLES, dataCenter: 'dc1', ...CALL_SETUP_PORTS.v1 },
      { id: 'v2', roles: VOICE_ROLES, dataCenter: 'dc1', ...CALL_SETUP_PORTS.v2 },
    ],
    // Ports rest 4 s after a call (default 120 s would need thousands of ports at these rates).
    env: { JITCAST_PORT_REUSE_TIMEOUT_S: '4', JITCAST_AUTH_CODE_TIMEOUT_S: '4' },
    log: o.log,
  });
  const runs: CallSetupRun[] = [];
  try {
    await waitUntil('the door to route to v1 and v2', async () => {
      const st = await cluster.status();
      return routeOf(st, 'v1')?.routable && routeOf(st, 'v2')?.routable ? true : undefined;
    }, 30_000, 200);
    const events: Array<{ eventId: string; pin: string }> = [];
    for (let i = 0; i < nEvents; i++) {
      const r = await cluster.api('POST', '/api/events', { title: `bench call setup ${i + 1}` });
      if (r.status !== 201) throw new Error(`reservation failed: ${r.status} ${r.text.slice(0, 200)}`);
      events.push(r.body);
    }
    const audio = toneFile(o.dir, 1);
    for (const rate of rates) {
      o.log(`call setup at ${rate} /s for ${seconds} s (${Math.round(rate * seconds)} calls over ${nEvents} events) …`);
      const r = await runAt(o, cluster, events, audio, rate, seconds);
      runs.push(r);
      o.log(`call setup at ${rate} /s: ${r.held ? 'held' : 'NOT held: ' + r.reasons.join('; ')} — live ${r.live}/${r.calls} (v1 ${r.byNode.v1 ?? 0}, v2 ${r.byNode.v2 ?? 0}), setup p50 ${fmt((r.setup?.p50 ?? NaN) / 1000)} s p95 ${fmt((r.setup?.p95 ?? NaN) / 1000)} s, achieved ${fmt(r.achievedPerS ?? NaN, 1)} /s, machine ${fmt(r.machineBusyPct ?? NaN, 0)} %`);
      if (!r.held) break;
      // Let every port rest and every conference settle before the next rate.
      await sleep(8000);
    }
  } finally {
    await cluster.stop();
    // Keep the nodes' logs when a rate did not hold (they show why).
    if (runs.length > 0 && runs.every((r) => r.held)) rmSync(cluster.root, { recursive: true, force: true });
    else o.log(`node logs kept in ${cluster.root}/<node>/node.log`);
  }
  const held = runs.filter((r) => r.held).map((r) => r.rate);
  const best = held.length ? Math.max(...held) : 0;
  const failed = runs.find((r) => !r.held);
  const rows: Row[] = [
    {
      name: 'call setup: highest rate held',
      figure: best,
      unit: 'calls/s',
      target: `${TARGET_RATE}`,
      notes: `through the front door, every call live; tried ${runs.map((r) => r.rate).join(', ')} /s for ${seconds} s each, ${nEvents} events, ${KEYS_PER_CALL} INFO keys ${KEY_GAP_MS} ms apart, ${HOLD_MS / 1000} s hold; ${best >= TARGET_RATE ? 'met' : 'NOT met'}${failed ? `; ${failed.rate} /s failed: ${failed.reasons.join('; ')}` : ''}${before.quiet ? '' : ` (machine ${fmt(before.busyPct, 0)} % busy before the run)`}`,
    },
    ...runs.map(
      (r): Row => ({
        name: `call setup ${r.rate}/s: INVITE → live`,
        figure: r.setup ? r.setup.p95 / 1000 : 'n/a',
        unit: 's (p95)',
        target: '-',
        notes: `${r.held ? 'held' : 'NOT held'}; live ${r.live}/${r.calls} (v1 ${r.byNode.v1 ?? 0}, v2 ${r.byNode.v2 ?? 0}); sipp ${r.sipp?.successful}/${r.calls} passed; p50 ${fmt((r.setup?.p50 ?? NaN) / 1000)} s, max ${fmt((r.setup?.max ?? NaN) / 1000)} s, p95 second/last quarter ${fmt((r.setup?.p95SecondQuarter ?? NaN) / 1000)}/${fmt((r.setup?.p95LastQuarter ?? NaN) / 1000)} s (keying alone ≈ ${fmt((FIRST_KEY_MS + KEYS_PER_CALL * KEY_GAP_MS) / 1000)} s + 16 round trips); achieved ${fmt(r.achievedPerS ?? NaN, 1)} live/s; re-routed ${r.rerouted}, refused by the door ${r.unavailable}; machine ${fmt(r.machineBusyPct ?? NaN, 0)} % busy of 2 cores; CPU % of a core: ${Object.entries(r.cpuPct ?? {}).map(([k, v]) => `${k} ${v}`).join(', ')}`,
      }),
    ),
  ];
  return { name: 'call-setup', seconds: (performance.now() - t0) / 1000, rows, details: { runs } };
}
