/**
 * Archive build time (issue 4, item 4): a 1-hour event recorded by 2 redundant streams (1800 segments
 * of ~2 s each), whose gaps make the virtual archive 20 fragments. Target: under 1 s. Metadata only:
 * the build reads playlists and gaps.json and writes the fragment list; no audio is re-encoded.
 *
 * Three figures, each the median of several runs in this process:
 *  - plan: core/archive-plan.ts `planArchive` on parsed playlists and gaps (the pure part);
 *  - parse + plan: from the two `index.m3u8` texts and `gaps.json` texts;
 *  - coordinator build: `archive-coordinator.build` on an in-process broker whose monitoring,
 *    content storage and event actor are in-memory fakes (history, listStreams, readStreamFile,
 *    getEventInfo, archived): everything the real build does but disk and network.
 * No ports, no processes.
 */
import type { Context, ServiceSchema } from 'moleculer';
import { createArchiveCoordinatorService } from '../actors/archive-coordinator.service.ts';
import { parseMediaPlaylist, serializeMediaPlaylist } from '../codecs/hls.ts';
import { planArchive, type Gap, type PlanStream } from '../core/archive-plan.ts';
import { createBroker } from '../runtime/broker.ts';
import type { ArchiveFragment, EventInfo, StreamRecord } from '../runtime/contracts.ts';
import { testConfig } from '../spec/support/config.ts';
import { fmt, minMedMax, type BenchOptions, type BenchResult } from './support/report.ts';

const EVENT_ID = '12345674';
const SEGMENTS = 1800;
const FRAGMENTS = 20;
const TARGET_MS = 1000;
const STARTED = Date.parse('2026-11-25T10:00:00.000Z');

/** One stream's stored files: ffmpeg-like EXTINF (2 s ± a few ms) and gaps that alternate between the streams. */
function fixture(which: 0 | 1): { record: StreamRecord; playlistText: string; gapsText: string } {
  const streamId = `${EVENT_ID}-bench-v${which + 1}-1000${which * 2}-${(STARTED + which * 350).toString(36)}`;
  const segments = Array.from({ length: SEGMENTS }, (_, i) => ({ uri: `seg${String(i).padStart(5, '0')}.ts`, duration: 2 + (((i * 7 + which) % 5) - 2) * 0.002 }));
  const playlistText = serializeMediaPlaylist({ version: 3, targetDuration: 2, mediaSequence: 0, playlistType: 'VOD', segments, ended: true });
  // Switch k (k = 1 … FRAGMENTS-1) is a 5 s gap in the stream playing then: stream 0 on odd k, 1 on even k.
  const gaps: Gap[] = [];
  for (let k = 1; k < FRAGMENTS; k++) {
    if ((k % 2 === 1) === (which === 0)) gaps.push({ start: k * 170 - which * 0.35, end: k * 170 + 5 - which * 0.35 });
  }
  const record: StreamRecord = {
    streamId,
    eventId: EVENT_ID,
    nodeId: `bench-v${which + 1}`,
    dataCenter: `dc${which + 1}`,
    port: 10002 + which * 2,
    startedAt: new Date(STARTED + which * 350).toISOString(),
    durationS: SEGMENTS * 2,
    stored: true,
  };
  return { record, playlistText, gapsText: JSON.stringify(gaps) };
}

async function timeMs(runs: number, fn: () => unknown | Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    out.push(performance.now() - t);
  }
  return out;
}

/** The benchmark. */
export async function archiveBuild(o: BenchOptions): Promise<BenchResult> {
  const t0 = performance.now();
  const runs = o.quick ? 5 : 25;
  const files = [fixture(0), fixture(1)];
  const parsed: PlanStream[] = files.map((f) => ({ record: f.record, playlist: parseMediaPlaylist(f.playlistText), gaps: JSON.parse(f.gapsText) as Gap[] }));

  const first = planArchive(parsed);
  if (!first.ok) throw new Error(`the fixture plans no archive: ${first.reason}`);
  const fragments = first.archive.length;
  const lengthS = first.archive.reduce((s, f) => s + f.end - f.start, 0);
  o.log(`archive-build: ${fragments} fragments, ${lengthS.toFixed(3)} s of ${(SEGMENTS * 2 + 0.35).toFixed(2)} s`);

  const plan = minMedMax(await timeMs(runs, () => planArchive(parsed)));
  const parsePlan = minMedMax(
    await timeMs(runs, () => planArchive(files.map((f) => ({ record: f.record, playlist: parseMediaPlaylist(f.playlistText), gaps: JSON.parse(f.gapsText) as Gap[] })))),
  );

  // The coordinator on an in-process broker with in-memory fakes.
  const config = testConfig({ logLevel: 'error' });
  const broker = createBroker(config, { logger: false });
  let archived: ArchiveFragment[] | undefined;
  const byId = new Map(files.map((f) => [f.record.streamId, f]));
  const fakes: ServiceSchema[] = [
    { name: 'monitoring', actions: { history: () => files.map((f) => f.record) } },
    {
      name: 'content-storage',
      actions: {
        getEventInfo: (): Partial<EventInfo> => ({ eventId: EVENT_ID, status: 'archiving' }),
        listStreams: () => files.map((f) => ({ streamId: f.record.streamId, files: ['index.m3u8', 'gaps.json', 'seg00000.ts'] })),
        readStreamFile: (ctx: Context<{ streamId: string; file: string }>) => {
          const f = byId.get(ctx.params.streamId)!;
          return Buffer.from(ctx.params.file === 'gaps.json' ? f.gapsText : f.playlistText, 'utf8');
        },
      },
    },
    {
      name: 'event',
      actions: {
        archived: (ctx: Context<{ archive: ArchiveFragment[] }>) => {
          archived = ctx.params.archive;
          return { ok: true };
        },
        archiveFailed: () => ({ ok: true }),
      },
    },
  ];
  for (const s of fakes) broker.createService(s);
  broker.createService(createArchiveCoordinatorService(config));
  await broker.start();
  let build;
  try {
    build = minMedMax(await timeMs(runs, () => broker.call('archive-coordinator.build', { eventId: EVENT_ID })));
  } finally {
    await broker.stop();
  }
  if (!archived || archived.length !== fragments) throw new Error(`the coordinator built ${archived?.length ?? 0} fragments, the planner ${fragments}`);

  const ms = (x: { min: number; median: number; max: number; n: number }) => `min ${fmt(x.min, 2)} / median ${fmt(x.median, 2)} / max ${fmt(x.max, 2)} ms over ${x.n} runs`;
  const scope = `1-hour event, 2 streams × ${SEGMENTS} segments, ${fragments} fragments`;
  return {
    name: 'archive-build',
    seconds: (performance.now() - t0) / 1000,
    details: { fragments, lengthS, plan, parsePlan, build },
    rows: [
      { name: 'archive-build', figure: build.median, unit: 'ms', target: `< ${TARGET_MS} ms`, notes: `archive-coordinator.build with in-memory fakes (read, parse, plan, report); ${scope}; ${ms(build)}` },
      { name: 'archive-build plan', figure: plan.median, unit: 'ms', target: '-', notes: `planArchive alone on parsed playlists; ${ms(plan)}` },
      { name: 'archive-build parse+plan', figure: parsePlan.median, unit: 'ms', target: '-', notes: `parse both index.m3u8 and gaps.json, then plan; ${ms(parsePlan)}` },
    ],
  };
}
