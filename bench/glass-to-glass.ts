/**
 * Benchmark 2, glass-to-glass: the caller's audio (sipp rtp_stream, one raw µ-law file) is silence
 * and then a 1 kHz tone from a known offset; the tone enters the call at ACK time + offset. An HLS
 * client polls the variant playlist every 50 ms, fetches each new segment, decodes it with ffmpeg
 * and finds the first one holding the tone. Glass-to-glass = (when that segment was listed) −
 * (tone start); also reported: where in the segment the tone begins, and how long after the
 * segment's last sample it was listed (the encode + publish delay).
 */
import { tracedCall } from './support/call.ts';
import { silenceThenToneFile } from './support/audio.ts';
import { decodeSegment, findTone, getBytes, mediaPlaylist, variantOf } from './support/hls.ts';
import { reserve, sleep, startBenchNode } from './support/node.ts';
import { systemBusyPercent, systemCpu, waitQuiet } from './support/proc.ts';
import { fmt, minMedMax, type BenchOptions, type BenchResult } from './support/report.ts';

const POLL_MS = 50;

interface Sample {
  ok: boolean;
  toneOffsetS: number;
  /** Glass-to-glass (s). */
  g2gS?: number;
  /** Tone onset inside the segment (s from its start). */
  positionS?: number;
  segmentIndex?: number;
  segmentDurationS?: number;
  /** Listed this long after the segment's last sample entered the call (s). */
  publishDelayS?: number;
  error?: string;
}

export async function glassToGlass(o: BenchOptions): Promise<BenchResult> {
  const t0 = performance.now();
  const reps = o.quick ? 1 : 3;
  const before = await waitQuiet(25, o.quick ? 5 : 30, o.log);
  const sys0 = systemCpu();
  const node = await startBenchNode();
  const samples: Sample[] = [];
  try {
    for (let i = 0; i < reps; i++) {
      // Vary the offset so the tone lands at different places inside its segment.
      const toneOffsetS = 8 + i * 0.7;
      const toneS = 10;
      const audio = silenceThenToneFile(o.dir, toneOffsetS, toneS);
      const event = await reserve(node, `bench glass-to-glass ${i + 1}`);
      let ackAt: number | undefined;
      const call = await tracedCall({
        node,
        dir: o.dir,
        name: `glass-to-glass-${i + 1}`,
        event,
        audio: { file: audio, loops: 1 },
        // The PIN is in after ~2 s; keep the call up until the tone file has played out.
        holdMs: Math.round((toneOffsetS + toneS - 1.5) * 1000),
        watch: async ({ sippDone }) => {
          let variant: string | undefined;
          const seen = new Map<string, number>();
          const found: Array<{ uri: string; index: number; listedAt: number; duration: number; position?: number }> = [];
          const deadline = Date.now() + (toneOffsetS + toneS + 5) * 1000;
          while (Date.now() < deadline && !sippDone()) {
            if (!variant) variant = await variantOf(event.attendeeUrl);
            else {
              const p = await mediaPlaylist(variant);
              const now = Date.now();
              for (const [index, seg] of (p?.segments ?? []).entries()) {
                if (seen.has(seg.uri)) continue;
                seen.set(seg.uri, now);
                const bytes = await getBytes(new URL(seg.uri, variant).toString());
                const pcm = bytes ? await decodeSegment(bytes).catch(() => undefined) : undefined;
                const at = pcm ? findTone(pcm) : undefined;
                found.push({ uri: seg.uri, index, listedAt: now, duration: seg.duration, position: at === undefined ? undefined : at / 8000 });
                if (at !== undefined) return { found, hit: found.at(-1)! };
              }
            }
            await sleep(POLL_MS);
          }
          return { found, hit: undefined };
        },
      });
      ackAt = call.ackAt;
      const s: Sample = { ok: false, toneOffsetS };
      const hit = call.watched.hit;
      if (ackAt === undefined) s.error = `no ACK in sipp's trace (sipp code ${call.sipp.code})`;
      else if (!hit) s.error = call.watched.found.length ? `tone not found in ${call.watched.found.length} segments` : 'never live / no segments';
      else {
        const toneAt = ackAt + toneOffsetS * 1000;
        s.ok = true;
        s.g2gS = (hit.listedAt - toneAt) / 1000;
        s.positionS = hit.position;
        s.segmentIndex = hit.index;
        s.segmentDurationS = hit.duration;
        s.publishDelayS = s.g2gS - (hit.duration - hit.position!);
        if (s.g2gS < 0) {
          s.ok = false;
          s.error = `tone found in a segment listed ${fmt(-s.g2gS)} s before the tone started: measurement is off`;
        }
      }
      if (call.sipp.code !== 0 && !s.error) s.error = `sipp exit ${call.sipp.code}`;
      samples.push(s);
      o.log(
        `glass-to-glass call ${i + 1}/${reps}: ${s.ok ? `${fmt(s.g2gS!)} s (tone at ${fmt(s.positionS!)} s into segment ${s.segmentIndex} of ${fmt(s.segmentDurationS!)} s, listed ${fmt(s.publishDelayS!)} s after its end)` : s.error}`,
      );
      await sleep(1000);
    }
  } finally {
    await node.stop();
  }
  const busyDuring = systemBusyPercent(sys0, systemCpu());
  const good = samples.filter((s) => s.ok);
  const g = minMedMax(good.map((s) => s.g2gS!));
  const pub = minMedMax(good.map((s) => s.publishDelayS!));
  const failures = samples.filter((s) => !s.ok).map((s) => s.error);
  return {
    name: 'glass-to-glass',
    seconds: (performance.now() - t0) / 1000,
    details: { samples, machineBusyBeforePct: before.busyPct, machineBusyDuringPct: busyDuring, problems: node.problems().slice(0, 50), problemCount: node.problemCount() },
    rows: [
      {
        name: 'glass-to-glass (tone → listed segment)',
        figure: good.length ? g.median : 'n/a',
        unit: 's (median)',
        target: '-',
        notes:
          (good.length
            ? `min ${fmt(g.min)} / median ${fmt(g.median)} / max ${fmt(g.max)} over ${good.length} calls; tone at ${good.map((s) => fmt(s.positionS!)).join(', ')} s into its segment; segment listed ${fmt(pub.min)}–${fmt(pub.max)} s after its last sample entered the call; ±20 ms (rtp_stream start) and ±64 ms (AAC priming when a segment is decoded alone); a player adds its own buffer (hls.js ~3 segments)`
            : 'no tone found') + `; machine ${fmt(busyDuring, 0)} % busy during the run (${fmt(before.busyPct, 0)} % before the node started)` + (failures.length ? `; ${failures.length} of ${samples.length} calls failed: ${[...new Set(failures)].join('; ')}` : ''),
      },
    ],
  };
}
