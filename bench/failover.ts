/**
 * Failure detection and rerouting (issue 3 benchmarks): a cluster of three processes on this
 * machine — `door` (sip-router + event plane, dc1), `v1` (voice + encoder, dc1), `v2` (voice +
 * encoder, dc2) — over the machine's NATS, Redis and PostgreSQL. Each round: a call through the
 * door goes live on v1 (digits as SIP INFO), v1 is killed with SIGKILL (its whole process group,
 * ffmpeg included), and the caller redials through the door at once. Measured from the kill:
 * - the door refusing to route to v1: its log line "no more calls to it [node:v1…]" (silence past
 *   the heartbeat timeout, or v1 leaving the cluster, whichever the door sees first);
 * - the redial answered (its 200 OK at the caller): the first successful redial elsewhere;
 * - the redial live on v2 (v2 logs "caller live": IVR done, event joined), which adds the keying.
 * The redial is a minimal SIP caller in this file (INVITE with RFC 3261 Timer A retransmission,
 * ACK, the ID and PIN as SIP INFO `application/dtmf-relay`, BYE) whose INVITE leaves right at the
 * kill: sipp needs about a second to start, which would blur the figure.
 * - v1's stream out of monitoring's active table (GET /api/events/:id polled every 100 ms).
 * Every instant comes from the nodes' own log stamps (ms, same clock). Target: under 3 s.
 * Then v1 is started again and the next round begins once the door routes to it.
 *
 * Ports 14000-15999 (the cluster harness's benchmark block); traffic stays on 127.0.0.1.
 */
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseNameAddr, parseSip, tagOf, type SipResponse } from '../codecs/sip.ts';
import { toneFile } from './support/audio.ts';
import { startSipp, writeInjection, writeScenario, type SippRun } from './support/sipp.ts';
import { fmt, minMedMax, type BenchOptions, type BenchResult, type Row } from './support/report.ts';
import { ensureServices, logLines, routeOf, sleep, startCluster, waitForLog, waitUntil, type Cluster } from '../spec/support/cluster.ts';

/** Ports of the failover cluster and its sipp processes. */
export const FAILOVER_PORTS = {
  door: { httpPort: 14080, sipPort: 14060, rtpPorts: '14100-14149', encoderPorts: '15000-15049' },
  v1: { httpPort: 14081, sipPort: 14061, rtpPorts: '14200-14299', encoderPorts: '15100-15199' },
  v2: { httpPort: 14082, sipPort: 14062, rtpPorts: '14300-14399', encoderPorts: '15200-15299' },
  sipp: [
    { sip: 14050, media: 14400 },
    { sip: 14051, media: 14410 },
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
  /** The redial's INVITE left the caller. */
  redialSentMs?: number;
  /** The redial was answered (200 OK at the caller); v2 logged the call. */
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

/** What the redialling caller saw (ms since epoch). */
interface RedialOutcome {
  inviteAt: number;
  answeredAt?: number;
  /** When the PIN's final `#` INFO was answered 200. */
  keyedAt?: number;
  error?: string;
}

/**
 * A minimal SIP caller over UDP: INVITE (retransmitted at 0.5, 1, 2, 4 s… until any response,
 * RFC 3261 §17.1.1.2), ACK of the 2xx to its Contact, the digits as INFO `application/dtmf-relay`
 * (each retransmitted until its 200), hold, BYE. Enough for a voice server behind the door.
 */
async function redialCall(o: { door: { host: string; port: number }; localPort: number; rtpPort: number; digits: string; holdMs: number; timeoutMs: number }): Promise<RedialOutcome> {
  const sock: Socket = createSocket('udp4');
  await new Promise<void>((res, rej) => {
    sock.once('error', rej);
    sock.bind(o.localPort, '127.0.0.1', () => res());
  });
  const rnd = () => randomBytes(6).toString('hex');
  const callId = `${rnd()}@127.0.0.1`;
  const fromTag = rnd();
  const local = `127.0.0.1:${o.localPort}`;
  const waiters: Array<{ match: (r: SipResponse) => boolean; resolve: (r: SipResponse) => void }> = [];
  let toHeader = `<sip:jitcast@${o.door.host}:${o.door.port}>`;
  let target = o.door;
  let remoteUri = `sip:jitcast@${o.door.host}:${o.door.port}`;
  let acked = false;
  let ackMsg: string | undefined;
  sock.on('message', (buf) => {
    let m;
    try {
      m = parseSip(buf);
    } catch {
      return;
    }
    if (m.kind !== 'response') {
      // An in-dialog request from the server (a BYE): answer 200.
      const h = m.headers;
      const lines = [`SIP/2.0 200 OK`, `Via: ${h.get('Via')}`, `From: ${h.get('From')}`, `To: ${h.get('To')}`, `Call-ID: ${h.get('Call-ID')}`, `CSeq: ${h.get('CSeq')}`, 'Content-Length: 0', '', ''];
      sock.send(lines.join('\r\n'), Number(/:(\d+)/.exec(h.get('Via') ?? '')?.[1] ?? o.door.port), '127.0.0.1');
      return;
    }
    // A retransmitted 2xx of the INVITE: ACK it again.
    if (acked && m.status >= 200 && m.status < 300 && /INVITE/.test(m.headers.get('CSeq') ?? '') && ackMsg) sock.send(ackMsg, target.port, target.host);
    for (let i = 0; i < waiters.length; i++) {
      if (waiters[i]!.match(m)) {
        waiters.splice(i, 1)[0]!.resolve(m);
        break;
      }
    }
  });
  const send = (msg: string, to = target) => sock.send(msg, to.port, to.host);
  /** Sends `msg`, retransmitting (T1 doubling, capped at 4 s) until a response matching `match` arrives. */
  const transact = (msg: string, match: (r: SipResponse) => boolean, final: (r: SipResponse) => boolean, limitMs: number, to = target): Promise<SipResponse> =>
    new Promise((resolve, reject) => {
      let interval = 500;
      let timer: NodeJS.Timeout;
      const stopAt = Date.now() + limitMs;
      const again = () => {
        if (Date.now() > stopAt) return reject(new Error(`no final response to ${msg.split(' ')[0]} in ${limitMs} ms`));
        send(msg, to);
        timer = setTimeout(again, interval);
        interval = Math.min(interval * 2, 4000);
      };
      const onResponse = (r: SipResponse) => {
        if (r.status < 200) clearTimeout(timer); // provisional: stop retransmitting (§17.1.1.2), wait for the final
        if (final(r)) {
          clearTimeout(timer);
          resolve(r);
        } else waiters.push({ match, resolve: onResponse });
      };
      waiters.push({ match, resolve: onResponse });
      again();
    });
  const head = (method: string, cseq: number, branch = `z9hG4bK${rnd()}`) =>
    [
      `${method} ${method === 'INVITE' ? `sip:jitcast@${o.door.host}:${o.door.port}` : remoteUri} SIP/2.0`,
      `Via: SIP/2.0/UDP ${local};branch=${branch};rport`,
      'Max-Forwards: 70',
      `From: <sip:bench@${local}>;tag=${fromTag}`,
      `To: ${toHeader}`,
      `Call-ID: ${callId}`,
      `CSeq: ${cseq} ${method}`,
      `Contact: <sip:bench@${local}>`,
    ];
  const sdp = ['v=0', `o=bench 1 1 IN IP4 127.0.0.1`, 's=-', 'c=IN IP4 127.0.0.1', 't=0 0', `m=audio ${o.rtpPort} RTP/AVP 0 101`, 'a=rtpmap:0 PCMU/8000', 'a=rtpmap:101 telephone-event/8000', 'a=sendrecv', ''].join('\r\n');
  const out: RedialOutcome = { inviteAt: Date.now() };
  try {
    const invite = [...head('INVITE', 1), 'Content-Type: application/sdp', `Content-Length: ${Buffer.byteLength(sdp)}`, '', sdp].join('\r\n');
    const isInvite = (r: SipResponse) => /^\s*1 INVITE/.test(r.headers.get('CSeq') ?? '');
    const ok = await transact(invite, isInvite, (r) => r.status >= 200, o.timeoutMs, o.door);
    if (ok.status >= 300) throw new Error(`INVITE answered ${ok.status} ${ok.reason}`);
    out.answeredAt = Date.now();
    toHeader = ok.headers.get('To') ?? toHeader;
    const contact = ok.headers.get('Contact');
    if (contact) {
      remoteUri = parseNameAddr(contact).uri;
      const hp = /sip:(?:[^@]+@)?([\d.]+):(\d+)/.exec(remoteUri);
      if (hp) target = { host: hp[1]!, port: Number(hp[2]) };
    }
    if (!tagOf(toHeader)) throw new Error('2xx without a To tag');
    ackMsg = [...head('ACK', 1), 'Content-Length: 0', '', ''].join('\r\n');
    acked = true;
    send(ackMsg);
    let cseq = 2;
    for (const d of o.digits) {
      const body = `Signal=${d}\r\nDuration=160\r\n`;
      const n = cseq++;
      const info = [...head('INFO', n), 'Content-Type: application/dtmf-relay', `Content-Length: ${Buffer.byteLength(body)}`, '', body].join('\r\n');
      const r = await transact(info, (x) => new RegExp(`^\\s*${n} INFO`).test(x.headers.get('CSeq') ?? ''), (x) => x.status >= 200, 8000);
      if (r.status >= 300) throw new Error(`INFO ${d} answered ${r.status}`);
      await sleep(50);
    }
    out.keyedAt = Date.now();
    await sleep(o.holdMs);
    const n = cseq++;
    await transact([...head('BYE', n), 'Content-Length: 0', '', ''].join('\r\n'), (x) => new RegExp(`^\\s*${n} BYE`).test(x.headers.get('CSeq') ?? ''), (x) => x.status >= 200, 8000).catch(() => undefined);
  } catch (err) {
    out.error = (err as Error).message;
  } finally {
    sock.close();
  }
  return out;
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
        // The caller dials again at once, through the same door, for the same event.
        const redialing = redialCall({
          door: { host: '127.0.0.1', port: FAILOVER_PORTS.door.sipPort },
          localPort: FAILOVER_PORTS.sipp[1].sip,
          rtpPort: FAILOVER_PORTS.sipp[1].media,
          digits: `${ev.eventId}#${ev.pin}#`,
          holdMs: 1500,
          timeoutMs: 15_000,
        });
        let streamGoneAt: number | undefined;
        while (streamGoneAt === undefined && Date.now() - killedAt < 15_000) {
          const e = await cluster.api('GET', `/api/events/${ev.eventId}`).catch(() => undefined);
          if (e?.status === 200 && !(e.body.streams ?? []).some((s: any) => s.nodeId === 'v1')) streamGoneAt = Date.now();
          else await sleep(100);
        }
        const redialed = await redialing;
        if (redialed.error || redialed.answeredAt === undefined) throw new Error(`redial failed: ${redialed.error ?? 'not answered'}`);
        const refused = await waitForLog(cluster.node('door'), /no more calls to it \[node:v1[\] ]/, killedAt, 15_000);
        const answeredBy = logLines(cluster.node('v2'), /call answered/, killedAt).length > 0 ? 'v2' : 'not v2';
        if (answeredBy !== 'v2') throw new Error('the redial was not answered by v2');
        const live2 = await waitForLog(cluster.node('v2'), new RegExp(`caller live \\[event:${ev.eventId}`), killedAt, 15_000);
        r.refuseMs = refused.at - killedAt;
        r.refuseBy = /silent/.test(refused.line) ? 'silent' : /left the cluster/.test(refused.line) ? 'left' : 'other';
        r.redialSentMs = redialed.inviteAt - killedAt;
        r.redialAnsweredMs = redialed.answeredAt - killedAt;
        r.redialLiveMs = live2.at - killedAt;
        r.rerouted = logLines(cluster.node('door'), /call routed .*node:v2 .*after:/, killedAt).length > 0;
        r.streamGoneMs = streamGoneAt === undefined ? undefined : streamGoneAt - killedAt;
        r.ok = true;
        o.log(`failover round ${round}: door refuses v1 after ${r.refuseMs} ms (${r.refuseBy}), redial answered by v2 after ${r.redialAnsweredMs} ms${r.rerouted ? ' (re-routed from dead v1)' : ''}, live after ${r.redialLiveMs} ms; v1 stream gone after ${r.streamGoneMs} ms`);
      } catch (err) {
        r.error = (err as Error).message.split('\n')[0];
        o.log(`failover round ${round}: ${r.error}`);
      } finally {
        killSipp(first);
        await first?.done;
      }
    }
  } finally {
    await cluster.stop();
    // Keep the nodes' logs only when something went wrong.
    if (results.every((r) => r.ok)) rmSync(cluster.root, { recursive: true, force: true });
    else o.log(`node logs kept in ${cluster.root}/<node>/node.log`);
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
      notes: `${s(answered)}; the redial's INVITE leaves ${fmt(stat((r) => r.redialSentMs)?.max ?? NaN, 0)} ms after the kill at most, retransmitted 0.5, 1.5 and 3.5 s after it (RFC 3261 Timer A); ${ok.filter((r) => r.rerouted).length} of ${ok.length} were first sent to the dead node and re-routed by the door when it stayed silent; ${answered && answered.max < TARGET_MS ? 'met' : 'NOT met'}`,
    },
    {
      name: 'failover: SIGKILL → redial live elsewhere',
      figure: live ? live.max / 1000 : 'n/a',
      unit: 's (worst)',
      target: '-',
      notes: `${s(live)}; includes keying ID and PIN as 16 SIP INFOs (each after the previous one's 200, 50 ms apart); one call setup on the healthy cluster: ${s(setup)}`,
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
