/**
 * One traced call for the latency benchmarks: sipp places it (digits as SIP INFO), a watcher runs
 * alongside, and the sipp message trace gives the wall-clock instants of the ACK (when the
 * caller's rtp_stream starts) and of the PIN's final `#`.
 */
import { join } from 'node:path';
import { BENCH_PORTS, type BenchNode } from './node.ts';
import { startSipp, writeInjection, writeScenario, type SippOutcome } from './sipp.ts';

export interface TracedCall<W> {
  sipp: SippOutcome;
  /** When sipp sent the ACK (ms since epoch); its rtp_stream starts right after. */
  ackAt?: number;
  /** When sipp sent the INFO carrying the PIN's final `#` (ms since epoch). */
  pinHashAt?: number;
  watched: W;
}

/** Places one call to the node for `event` and runs `watch` meanwhile. */
export async function tracedCall<W>(o: {
  node: BenchNode;
  dir: string;
  name: string;
  event: { eventId: string; pin: string };
  audio: { file: string; loops: number };
  holdMs: number;
  watch: (signal: { sippDone: () => boolean }) => Promise<W>;
}): Promise<TracedCall<W>> {
  const scenario = writeScenario(o.dir, o.name, { audio: o.audio, firstKeyAfterMs: 300, keyGapMs: 100, holdMs: o.holdMs });
  const injection = join(o.dir, `${o.name}.csv`);
  writeInjection(injection, [o.event]);
  const run = startSipp({
    scenario,
    target: o.node.sipTarget,
    cwd: o.dir,
    injection,
    calls: 1,
    rate: 1,
    limit: 1,
    trace: true,
    timeoutS: Math.ceil(o.holdMs / 1000) + 40,
    localPort: BENCH_PORTS.sippSip,
    mediaPort: BENCH_PORTS.sippMedia,
  });
  let finished = false;
  const done = run.done.then((r) => {
    finished = true;
    return r;
  });
  const [watched, sipp] = await Promise.all([o.watch({ sippDone: () => finished }), done]);
  const ack = sipp.sent.find((m) => m.firstLine.startsWith('ACK '));
  // Retransmissions repeat a CSeq: the first copy of the highest-CSeq `#` INFO is the PIN's.
  const hashes = sipp.sent.filter((m) => m.firstLine.startsWith('INFO ') && /Signal=#/.test(m.body));
  const lastCseq = Math.max(...hashes.map((m) => m.cseq));
  const pinHash = hashes.length >= 2 ? hashes.find((m) => m.cseq === lastCseq) : undefined;
  return { sipp, ackAt: ack?.at, pinHashAt: pinHash?.at, watched };
}

