/**
 * Benchmark 1, PIN → first live segment: from the instant the caller sends the PIN's final `#`
 * (a SIP INFO, stamped by sipp's message trace) to the first segment listed in the variant
 * playlist behind `<attendeeUrl>/live.m3u8`, polled every 50 ms. Target: one segment (2 s) + 1 s.
 */
import { tracedCall } from './support/call.ts';
import { toneFile } from './support/audio.ts';
import { mediaPlaylist, variantOf } from './support/hls.ts';
import { reserve, sleep, startBenchNode } from './support/node.ts';
import { systemBusyPercent, systemCpu, waitQuiet } from './support/proc.ts';
import { fmt, minMedMax, type BenchOptions, type BenchResult } from './support/report.ts';

const POLL_MS = 50;

interface Sample {
  ok: boolean;
  /** PIN `#` → live.m3u8 answered 200 (s). */
  masterS?: number;
  /** PIN `#` → first segment listed (s). */
  firstSegmentS?: number;
  firstSegmentDurationS?: number;
  error?: string;
}

export async function pinToLive(o: BenchOptions): Promise<BenchResult> {
  const t0 = performance.now();
  const reps = o.quick ? 2 : 5;
  const before = await waitQuiet(25, o.quick ? 5 : 30, o.log);
  const sys0 = systemCpu();
  const node = await startBenchNode();
  const samples: Sample[] = [];
  try {
    const audio = toneFile(o.dir, 1);
    for (let i = 0; i < reps; i++) {
      const event = await reserve(node, `bench pin-to-live ${i + 1}`);
      const call = await tracedCall({
        node,
        dir: o.dir,
        name: `pin-to-live-${i + 1}`,
        event,
        audio: { file: audio, loops: -1 },
        holdMs: 7000,
        watch: async ({ sippDone }) => {
          let variant: string | undefined;
          let masterAt: number | undefined;
          const deadline = Date.now() + 25_000;
          while (Date.now() < deadline && !sippDone()) {
            if (!variant) {
              variant = await variantOf(event.attendeeUrl);
              if (variant) masterAt = Date.now();
            } else {
              const p = await mediaPlaylist(variant);
              if (p && p.segments.length > 0) return { masterAt, firstAt: Date.now(), duration: p.segments[0]!.duration };
            }
            await sleep(POLL_MS);
          }
          return { masterAt, firstAt: undefined as number | undefined, duration: undefined as number | undefined };
        },
      });
      const s: Sample = { ok: false };
      if (call.pinHashAt === undefined) s.error = `no PIN # in sipp's trace (sipp code ${call.sipp.code}, ${call.sipp.successful} ok / ${call.sipp.failed} failed)`;
      else if (call.watched.firstAt === undefined) s.error = call.watched.masterAt ? 'live.m3u8 answered but no segment was listed in time' : 'never live (live.m3u8 not 200)';
      else {
        s.ok = true;
        s.firstSegmentS = (call.watched.firstAt - call.pinHashAt) / 1000;
        s.masterS = call.watched.masterAt !== undefined ? (call.watched.masterAt - call.pinHashAt) / 1000 : undefined;
        s.firstSegmentDurationS = call.watched.duration;
      }
      if (call.sipp.code !== 0 && !s.error) s.error = `sipp exit ${call.sipp.code}`;
      samples.push(s);
      o.log(`pin-to-live call ${i + 1}/${reps}: ${s.ok ? `first segment ${fmt(s.firstSegmentS!)} s after the PIN # (live.m3u8 after ${fmt(s.masterS ?? NaN)} s)` : s.error}`);
      await sleep(1000);
    }
  } finally {
    await node.stop();
  }
  const busyDuring = systemBusyPercent(sys0, systemCpu());
  const good = samples.filter((s) => s.ok);
  const st = minMedMax(good.map((s) => s.firstSegmentS!));
  const master = minMedMax(good.filter((s) => s.masterS !== undefined).map((s) => s.masterS!));
  const failures = samples.filter((s) => !s.ok).map((s) => s.error);
  return {
    name: 'pin-to-live',
    seconds: (performance.now() - t0) / 1000,
    details: { samples, machineBusyBeforePct: before.busyPct, machineBusyDuringPct: busyDuring, problems: node.problems().slice(0, 50), problemCount: node.problemCount() },
    rows: [
      {
        name: 'PIN # → first live segment',
        figure: good.length ? st.median : 'n/a',
        unit: 's (median)',
        target: '< 3 (2 s seg + 1)',
        notes:
          (good.length
            ? `min ${fmt(st.min)} / median ${fmt(st.median)} / max ${fmt(st.max)} over ${good.length} calls; live.m3u8 answered 200 after ${fmt(master.median)} s (median); first EXTINF ${fmt(good[0]!.firstSegmentDurationS ?? NaN)} s; polled every ${POLL_MS} ms, from sipp's trace stamp of the PIN # INFO`
            : 'no call went live') + `; machine ${fmt(busyDuring, 0)} % busy during the run (${fmt(before.busyPct, 0)} % before the node started)` + (failures.length ? `; ${failures.length} of ${samples.length} calls failed: ${[...new Set(failures)].join('; ')}` : ''),
      },
    ],
  };
}
