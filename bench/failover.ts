/**
 * Failure detection and rerouting (issue 3 benchmarks): a cluster of three processes on this
 * machine — `door` (sip-router + event plane, dc1), `v1` (voice + encoder, dc1), `v2` (voice +
 * encoder, dc2) — over the machine's NATS, Redis and PostgreSQL. Each round: a call through the
 * door goes live on v1 (digits as SIP INFO), v1 is killed with SIGKILL (its whole process group,
 * ffmpeg included), and the caller redials through the door at once. Measured from the kill:
 * - the door refusing to route to v1: its log line "no more calls to it [node:v1…]" (silence past
 *   the heartbeat timeout, or v1 leaving the cluster, whichever the door sees first);
 * - the redial answered by v2 (v2 logs "call answered"): the first successful redial elsewhere;
 * - the redial live on v2 (v2 logs "caller live": IVR done, event joined), which adds the keying;
 * - v1's stream out of monitoring's active table (GET /api/events/:id polled every 100 ms).
 * Every instant comes from the nodes' own log stamps (ms, same clock). Target: under 3 s.
 * Then v1 is started again and the next round begins once the door routes to it.
 *
 * Ports 48000-49999 (the cluster harness's benchmark block); traffic stays on 127.0.0.1.
 */
import { join } from 'node:path';
import { toneFile } from './support/audio.ts';
import { startSipp, writeInjection, writeScenario, type SippRun } from './support/sipp.ts';
import { fmt, minMedMax, type BenchOptions, type BenchResult, type Row } from './support/report.ts';
import { ensureServices, logLines, routeOf, sleep, startCluster, waitForLog, waitUntil, type Cluster } from '../spec/support/cluster.ts';

/** Ports of the failover cluster and its sipp processes. */
export const FAILOVER_PORTS = {
  door: { httpPort: 48080, sipPort: 48060, rtpPorts: '48100-48149', encoderPorts: '49000-49049' },
  v1: { httpPort: 48081, sipPort: 48061, rtpPorts: '48200-48299', encoderPorts: '49100-49199' },
  v2: { httpPort: 48082, sipPort: 48062, rtpPorts: '48300-48399', encoderPorts: '49200-49299' },
  sipp: [
    { sip: 48050, media: 48400 },
    { sip: 48051, media: 48410 },
  ],
} as const;

const DOOR_ROLES = ['gateway', 'reservation', 'event', 'monitoring', 'content-storage', 'archive-coordinator', 'attendee-access', 'sip-router'];
const VOICE_ROLES = ['voice-server', 'encoder-port', 'content-storage'];
const TARGET_MS = 3000;

/** One round's figures (ms after the SIGKILL). */
export interface FailoverRound {
  round: number;
  ok: boolean;
  error?: string;
  /** The door logged it stops routing to v1. */
  refuseMs?: number;
  /** Why: 'silent' (heartbeat timeout) or 'left' (v1 left the cluster). */
  refuseBy?: string;
  /** The redial was answered (200) by v2. */
  redialAnsweredMs?: number;
  /** The redialled caller was live on v2. */
  redialLiveMs?: number;
  /** The redial was first sent to the dead v1 and re-routed by the door. */
  rerouted?: boolean;
  /** v1's stream left the active table (poll resolution 100 ms). */
  streamGoneMs?: number;
  /** INVITE → caller live on v1 of the first call (one call setup, keys as SIP INFO). */
  setupMs?: number;
}

function killSipp(run: SippRun | undefined): void {
  if (!run) return;
  try {
    process.kill(run.pid, 'SIGTERM');
  } catch {
    /* already gone */
  }
}

/** The failover benchmark. */
export async function failover(o: BenchOptions): Promise<BenchResult> {
  const t0 = performance.now();
  const rounds = o.quick ? 2 : 5;
  await ensureServices();
  const cluster: Cluster = await startCluster({
    name: 'bench-failover',
    nodes: [
      { id: 'door', roles: DOOR_ROLES, dataCenter: 'dc1', ...FAILOVER_PORTS.door },
      { id: 'v1', roles: VOICE_ROLES, dataCenter: 'dc1', ...FAILOVER_PORTS.v1 },
      { id: 'v2', roles: VOICE_ROLES, dataCenter: 'dc2', ...FAILOVER_PORTS.v2 },
    ],
    // A short port rest: the rounds place calls back to back.
    env: { JITCAST_PORT_REUSE_TIMEOUT_S: '5', JITCAST_AUTH_CODE_TIMEOUT_S: '5', JITCAST_LOG_LEVEL: 'info' },
    log: o.log,
  });
  const results: FailoverRound[] = [];
  try {
    const audio = toneFile(o.dir, 1);
    for (let round = 1; round <= rounds; round++) {
      const r: FailoverRound = { round, ok: false };
      results.push(r);
      let first: SippRun | undefined;
      let redial: SippRun | undefined;
      try {
        if (!cluster.node('v1').running()) await cluster.restart('v1');
        await waitUntil('the door to route to v1 and v2', async () => {
          const st = await cluster.status();
          return routeOf(st, 'v1')?.routable && routeOf(st, 'v2')?.routable ? true : undefined;
        }, 30_000, 200);

        const ev = (await cluster.api('POST', '/api/events', { title: `bench failover ${round}` })).body as { eventId: string; pin: string };
        const callFile = (name: string, holdMs: number) => {
          const injection = join(o.dir, `${name}.csv`);
          writeInjection(injection, [ev]);
          return { injection, scenario: writeScenario(o.dir, name, { audio: { file: audio, loops: -1 }, firstKeyAfterMs: 200, keyGapMs: 50, holdMs }) };
        };
        const a = callFile(`failover-${round}-first`, 30_000);
        const firstAt = Date.now();
        first = startSipp({ ...a, target: `127.0.0.1:${FAILOVER_PORTS.door.sipPort}`, cwd: o.dir, calls: 1, rate: 1, limit: 1, timeoutS: 45, localPort: FAILOVER_PORTS.sipp[0].sip, mediaPort: FAILOVER_PORTS.sipp[0].media });
        const live1 = await waitForLog(cluster.node('v1'), new RegExp(`caller live \\[event:${ev.eventId}`), firstAt, 15_000);
        r.setupMs = live1.at - firstAt;
        await waitUntil('the stream of the call on v1', async () => {
          const e = await cluster.api('GET', `/api/events/${ev.eventId}`);
          return (e.body?.streams ?? []).some((s: any) => s.nodeId === 'v1') ? true : undefined;
        }, 10_000, 100);
        await sleep(1000);

        const killedAt = await cluster.kill9('v1');
        const b = callFile(`failover-${round}-redial`, 3000);
        redial = startSipp({ ...b, target: `127.0.0.1:${FAILOVER_PORTS.door.sipPort}`, cwd: o.dir, calls: 1, rate: 1, limit: 1, timeoutS: 30, localPort: FAILOVER_PORTS.sipp[1].sip, mediaPort: FAILOVER_PORTS.sipp[1].media });
        let streamGoneAt: number | undefined;
        while (streamGoneAt === undefined && Date.now() - killedAt < 15_000) {
          const e = await cluster.api('GET', `/api/events/${ev.eventId}`).catch(() => undefined);
          if (e?.status === 200 && !(e.body.streams ?? []).some((s: any) => s.nodeId === 'v1')) streamGoneAt = Date.now();
          else await sleep(100);
        }
        const refused = await waitForLog(cluster.node('door'), /no more calls to it \[node:v1[\] ]/, killedAt, 15_000);
        const answered = await waitForLog(cluster.node('v2'), /call answered/, killedAt, 15_000);
        const live2 = await waitForLog(cluster.node('v2'), new RegExp(`caller live \\[event:${ev.eventId}`), killedAt, 15_000);
        r.refuseMs = refused.at - killedAt;
        r.refuseBy = /silent/.test(refused.line) ? 'silent' : /left the cluster/.test(refused.line) ? 'left' : 'other';
        r.redialAnsweredMs = answered.at - killedAt;
        r.redialLiveMs = live2.at - killedAt;
        r.rerouted = logLines(cluster.node('door'), /call routed .*node:v2 .*after:/, killedAt).length > 0;
        r.streamGoneMs = streamGoneAt === undefined ? undefined : streamGoneAt - killedAt;
        const out = await redial.done;
        r.ok = out.code === 0;
        if (!r.ok) r.error = `redial sipp exit ${out.code}: ${out.errorsTail.slice(-300)}`;
        o.log(`failover round ${round}: door refuses v1 after ${r.refuseMs} ms (${r.refuseBy}), redial answered by v2 after ${r.redialAnsweredMs} ms${r.rerouted ? ' (re-routed from dead v1)' : ''}, live after ${r.redialLiveMs} ms; v1 stream gone after ${r.streamGoneMs} ms`);
      } catch (err) {
        r.error = (err as Error).message.split('\n')[0];
        o.log(`failover round ${round}: ${r.error}`);
      } finally {
        killSipp(first);
        await first?.done;
        if (redial) await redial.done;
      }
    }
  } finally {
    await cluster.stop();
  }

  const ok = results.filter((r) => r.ok);
  const stat = (f: (r: FailoverRound) => number | undefined) => {
    const xs = ok.map(f).filter((x): x is number => typeof x === 'number');
    return xs.length ? minMedMax(xs) : undefined;
  };
  const refuse = stat((r) => r.refuseMs);
  const answered = stat((r) => r.redialAnsweredMs);
  const live = stat((r) => r.redialLiveMs);
  const gone = stat((r) => r.streamGoneMs);
  const setup = stat((r) => r.setupMs);
  const s = (x: ReturnType<typeof stat>) => (x ? `min ${fmt(x.min / 1000)} / median ${fmt(x.median / 1000)} / max ${fmt(x.max / 1000)} s over ${x.n} rounds` : 'no round completed');
  const failed = results.filter((r) => !r.ok).map((r) => `round ${r.round}: ${r.error}`);
  const tail = failed.length ? `; failed: ${failed.join('; ')}` : '';
  const rows: Row[] = [
    {
      name: 'failover: SIGKILL → door stops routing to it',
      figure: refuse ? refuse.max / 1000 : 'n/a',
      unit: 's (worst)',
      target: '< 3',
      notes: `${s(refuse)}; by ${[...new Set(ok.map((r) => r.refuseBy))].join('/')} (heartbeat 1 s, timeout 3 s); ${refuse && refuse.max < TARGET_MS ? 'met' : 'NOT met'}${tail}`,
    },
    {
      name: 'failover: SIGKILL → redial answered elsewhere',
      figure: answered ? answered.max / 1000 : 'n/a',
      unit: 's (worst)',
      target: '< 3',
      notes: `${s(answered)}; the redial leaves at the kill; ${ok.filter((r) => r.rerouted).length} of ${ok.length} were first sent to the dead node and re-routed by the door when it stayed silent; ${answered && answered.max < TARGET_MS ? 'met' : 'NOT met'}`,
    },
    {
      name: 'failover: SIGKILL → redial live elsewhere',
      figure: live ? live.max / 1000 : 'n/a',
      unit: 's (worst)',
      target: '-',
      notes: `${s(live)}; includes keying ID and PIN as 16 SIP INFOs 50 ms apart; one call setup on the healthy cluster: ${s(setup)}`,
    },
    {
      name: 'failover: SIGKILL → stream out of active table',
      figure: gone ? gone.max / 1000 : 'n/a',
      unit: 's (worst)',
      target: '< 3',
      notes: `${s(gone)} (GET /api/events/:id polled every 100 ms)`,
    },
  ];
  return { name: 'failover', seconds: (performance.now() - t0) / 1000, rows, details: { rounds: results } };
}
