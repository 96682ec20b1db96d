import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chooseFragments, chooseRuns, coverageOf, MIN_GAP_S, planArchive, playlistBounds, playlistDurationS, snapRuns, takesOf, type Gap, type PlanStream, type Take } from '../../core/archive-plan.ts';
import type { ArchiveFragment } from '../../runtime/contracts.ts';
import type { StreamRecord } from '../../runtime/contracts.ts';

const A = '12345674-node-a-10002-lq0abc';
const B = '12345674-node-b-10052-lq0abd';
const C = '12345674-node-a-10004-lq0abe';

function rec(streamId: string, startedAt: string, extra: Partial<StreamRecord> = {}): StreamRecord {
  return { streamId, eventId: '12345674', nodeId: 'n', dataCenter: 'dc1', port: 10002, startedAt, stored: true, ...extra };
}

const pl = (...durations: number[]) => ({ segments: durations.map((duration) => ({ duration })), ended: true });

describe('archive plan', () => {
  it('playlistDurationS() sums EXTINF to the millisecond', () => {
    assert.equal(playlistDurationS(pl(2.002, 2.001, 0.1)), 4.103);
    assert.equal(playlistDurationS(pl(0.1, 0.2)), 0.3);
    assert.equal(playlistDurationS(pl()), 0);
  });

  it('planArchive() of one stored stream is one fragment over its whole duration', () => {
    const plan = planArchive([{ record: rec(A, '2026-11-25T10:00:00Z'), playlist: pl(2, 2, 1.5) }]);
    assert.deepEqual(plan, { ok: true, archive: [{ streamId: A, start: 0, end: 5.5 }] });
  });

  it('planArchive() orders a dropped-and-redialed call by start time, not by input order', () => {
    const plan = planArchive([
      { record: rec(C, '2026-11-25T10:10:00Z'), playlist: pl(4) },
      { record: rec(A, '2026-11-25T10:00:00Z'), playlist: pl(2, 2) },
    ]);
    assert.deepEqual(plan, { ok: true, archive: [{ streamId: A, start: 0, end: 4 }, { streamId: C, start: 0, end: 4 }] });
  });

  it('planArchive() of two identical redundant streams plays one of them: the lower stream ID on a tie', () => {
    const plan = planArchive([
      { record: rec(B, '2026-11-25T10:00:00Z'), playlist: pl(1) },
      { record: rec(A, '2026-11-25T10:00:00Z'), playlist: pl(1) },
    ]);
    assert.deepEqual(plan, { ok: true, archive: [{ streamId: A, start: 0, end: 1 }] });
  });

  it('planArchive() of no streams is refused with "no recorded stream"', () => {
    assert.deepEqual(planArchive([]), { ok: false, code: 'NO_RECORDED_STREAM', reason: 'no recorded stream' });
  });

  it('planArchive() skips a never-stored stream and an empty playlist, refusing when nothing is left', () => {
    const streams: PlanStream[] = [
      { record: rec(A, '2026-11-25T10:00:00Z', { stored: false }) },
      { record: rec(B, '2026-11-25T10:00:00Z'), playlist: pl() },
    ];
    assert.deepEqual(planArchive(streams), { ok: false, code: 'NO_RECORDED_STREAM', reason: 'no recorded stream' });
  });

  it('planArchive() of a stored stream without its playlist is refused with "stream files missing" naming it', () => {
    const plan = planArchive([
      { record: rec(A, '2026-11-25T10:00:00Z'), playlist: pl(2) },
      { record: rec(B, '2026-11-25T10:01:00Z') },
    ]);
    assert.equal(plan.ok, false);
    assert.ok(!plan.ok && plan.code === 'STREAM_FILES_MISSING' && plan.reason.startsWith('stream files missing') && plan.reason.includes(B));
  });

  it('takesOf() keeps gaps for the planner and chooseFragments() plays each take whole', () => {
    const found = takesOf([{ record: rec(A, '2026-11-25T10:00:00Z'), playlist: pl(3), gaps: [{ start: 1, end: 2 }] }]);
    assert.ok(found.ok);
    assert.deepEqual(found.takes[0]!.gaps, [{ start: 1, end: 2 }]);
    assert.equal(found.takes[0]!.startMs, Date.parse('2026-11-25T10:00:00Z'));
    assert.deepEqual(chooseFragments(found.takes), [{ streamId: A, start: 0, end: 3 }]);
  });
});

// ---- the timeline across redundant streams ------------------------------------------------------

const T0 = Date.parse('2026-11-25T10:00:00Z');

/** A hand-made take: starts `atS` after T0, `durS` long in `segS` segments (the last one shorter), with gaps. */
function take(streamId: string, atS: number, durS: number, gaps: Gap[] = [], segS = 2): Take {
  const durations: number[] = [];
  for (let t = 0; t < durS - 1e-9; t += segS) durations.push(Math.min(segS, Math.round((durS - t) * 1000) / 1000));
  return { streamId, startMs: T0 + Math.round(atS * 1000), durationS: durS, gaps, bounds: playlistBounds(pl(...durations)) };
}

const lengthOf = (fs: ArchiveFragment[]) => Math.round(fs.reduce((s, f) => s + f.end - f.start, 0) * 1000) / 1000;

describe('archive plan across redundant streams', () => {
  it('chooseFragments() of a call dropped and redialed twice concatenates the three takes in order, the silence between cut out', () => {
    const takes = [take(C, 200, 60), take(A, 0, 100), take(B, 130, 60.5)];
    assert.deepEqual(chooseFragments(takes), [
      { streamId: A, start: 0, end: 100 },
      { streamId: B, start: 0, end: 60.5 },
      { streamId: C, start: 0, end: 60 },
    ]);
  });

  it('chooseFragments() takes the stretch of a 10 s gap from the other overlapping stream and stays there', () => {
    const a = take(A, 0, 120, [{ start: 40, end: 50 }]);
    const b = take(B, 0.7, 120);
    const fs = chooseFragments([a, b]);
    assert.deepEqual(fs, [
      { streamId: A, start: 0, end: 40 },
      { streamId: B, start: 40, end: 120 },
    ]);
    // Event: 0 … 120.7 s of wall time; the archive is that long within one segment.
    assert.ok(Math.abs(lengthOf(fs) - 120.7) <= 2, `length ${lengthOf(fs)}`);
  });

  it('chooseRuns() switches exactly at the gap edges and does not switch back while the other stream is good', () => {
    const runs = chooseRuns([take(A, 0, 120, [{ start: 40, end: 50 }]), take(B, 0.7, 120)]);
    assert.deepEqual(runs, [
      { streamId: A, from: 0, to: 40 },
      { streamId: B, from: 40, to: 120.7 },
    ]);
  });

  it('chooseRuns() of three takes moves to the best good one at each gap and back when it ends', () => {
    const runs = chooseRuns([
      take(A, 0, 60, [{ start: 20, end: 30 }]),
      take(B, 0, 60, [{ start: 35, end: 45 }]),
      take(C, 10, 40),
    ]);
    assert.deepEqual(runs, [
      { streamId: A, from: 0, to: 20 },
      { streamId: C, from: 20, to: 50 },
      { streamId: A, from: 50, to: 60 },
    ]);
  });

  it('chooseRuns() of takes that start together picks the one with fewer seconds lost from the start', () => {
    const runs = chooseRuns([take(A, 0, 60, [{ start: 50, end: 51 }]), take(B, 0, 60, [{ start: 10, end: 10.5 }, { start: 20, end: 20.2 }])]);
    assert.deepEqual(runs.map((r) => r.streamId), [B, A, B]);
    assert.deepEqual(runs[0], { streamId: B, from: 0, to: 10 });
  });

  it('chooseRuns() ranks by seconds lost, then by number of gaps, then start, then stream ID', () => {
    // Same seconds lost (0.4 s), A in two gaps and B in one: B.
    const r1 = chooseRuns([take(A, 0, 30, [{ start: 5, end: 5.2 }, { start: 6, end: 6.2 }]), take(B, 0, 30, [{ start: 7, end: 7.4 }])]);
    assert.equal(r1[0]!.streamId, B);
    // All equal: the earlier start; then the lower stream ID.
    assert.equal(chooseRuns([take(B, 0, 30), take(A, 0.5, 30)])[0]!.streamId, B);
    assert.deepEqual(chooseRuns([take(B, 0, 30), take(A, 0, 30)]), [{ streamId: A, from: 0, to: 30 }]);
  });

  it('chooseFragments() of a take fully inside a good one plays the outer take alone', () => {
    assert.deepEqual(chooseFragments([take(A, 0, 100), take(B, 20, 20)]), [{ streamId: A, start: 0, end: 100 }]);
  });

  it('chooseFragments() fills the outer take\'s gap from a take inside it and returns when the inner one ends', () => {
    const fs = chooseFragments([take(A, 0, 100, [{ start: 25, end: 30 }]), take(B, 20, 20)]);
    assert.deepEqual(fs, [
      { streamId: A, start: 0, end: 24 },
      { streamId: B, start: 4, end: 20 },
      { streamId: A, start: 40, end: 100 },
    ]);
  });

  it(`chooseRuns() does not switch for a gap under MIN_GAP_S (${MIN_GAP_S} s)`, () => {
    const runs = chooseRuns([take(A, 0, 60, [{ start: 10, end: 10.05 }]), take(B, 1, 60)]);
    assert.deepEqual(runs, [
      { streamId: A, from: 0, to: 60 },
      { streamId: B, from: 60, to: 61 },
    ]);
  });

  it('chooseRuns() keeps a stretch that every take has as a gap, on the current take (it is event time)', () => {
    const runs = chooseRuns([take(A, 0, 60, [{ start: 20, end: 30 }]), take(B, 0, 60, [{ start: 20, end: 30 }, { start: 40, end: 41 }])]);
    assert.deepEqual(runs, [{ streamId: A, from: 0, to: 60 }]);
  });

  it('snapRuns() puts in and out points on segment boundaries, keeping the archive within half a segment of covered time', () => {
    const a = take(A, 0, 60, [{ start: 21, end: 31 }]);
    const b = take(B, 0.9, 60);
    const fs = snapRuns(chooseRuns([a, b]), [a, b]);
    assert.equal(fs.length, 2);
    for (const f of fs) {
      const bounds = (f.streamId === A ? a : b).bounds!;
      assert.ok(bounds.includes(f.start) && bounds.includes(f.end), `${JSON.stringify(f)} off the boundaries`);
    }
    // A may not reach into its own gap: it ends at 20, not 22.
    assert.deepEqual(fs[0], { streamId: A, start: 0, end: 20 });
    assert.ok(Math.abs(lengthOf(fs) - 60.9) <= 1, `length ${lengthOf(fs)}`);
  });

  it('coverageOf() counts covered seconds and the seconds of them with audio', () => {
    const takes = [take(A, 0, 10, [{ start: 2, end: 4 }]), take(B, 20, 10)];
    assert.deepEqual(coverageOf(chooseRuns(takes), takes), { coveredS: 20, audioS: 18 });
  });

  it('planArchive() refuses with TOO_LITTLE_AUDIO when most of the event is gaps in every stream', () => {
    const plan = planArchive([{ record: rec(A, '2026-11-25T10:00:00Z'), playlist: pl(2, 2, 2, 2), gaps: [{ start: 0, end: 6 }] }]);
    assert.equal(plan.ok, false);
    assert.ok(!plan.ok && plan.code === 'TOO_LITTLE_AUDIO' && plan.reason.includes('audio:2s'), JSON.stringify(plan));
    assert.equal(planArchive([{ record: rec(A, '2026-11-25T10:00:00Z'), playlist: pl(2, 2, 2, 2), gaps: [{ start: 0, end: 6 }] }], { minAudioFraction: 0.2 }).ok, true);
  });

  it('planArchive() reads segment boundaries from the playlist and gaps from gaps.json', () => {
    const plan = planArchive([
      { record: rec(A, '2026-11-25T10:00:00Z'), playlist: pl(...Array(30).fill(2)), gaps: [{ start: 20.5, end: 30.5 }] },
      { record: rec(B, '2026-11-25T10:00:01.000Z'), playlist: pl(...Array(30).fill(2)) },
    ]);
    assert.ok(plan.ok);
    // A stops at 20 (22 would play its gap). B comes in at 19.5 s of its own: 18 and 20 leave the
    // archive off by as much (+1 / -1 s of 61 s); on a tie audio is repeated rather than dropped.
    assert.deepEqual(plan.archive, [
      { streamId: A, start: 0, end: 20 },
      { streamId: B, start: 18, end: 60 },
    ]);
  });

  it('chooseRuns()/chooseFragments() on 500 random timelines: ordered, never overlapping, inside their takes, outside gaps where another take had audio, length within a segment', () => {
    let seed = 0x2f6e2b1;
    const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    for (let n = 0; n < 500; n++) {
      const takes: Take[] = [];
      const count = 1 + Math.floor(rnd() * 4);
      for (let k = 0; k < count; k++) {
        const dur = Math.round((4 + rnd() * 120) * 1000) / 1000;
        const gaps: Gap[] = [];
        let t = rnd() * 10;
        while (t < dur) {
          const len = rnd() < 0.2 ? rnd() * 0.09 : rnd() * 12;
          if (t + len < dur) gaps.push({ start: Math.round(t * 1000) / 1000, end: Math.round((t + len) * 1000) / 1000 });
          t += len + 5 + rnd() * 40;
        }
        takes.push(take(`12345674-node-${k}-1000${k}-lq0ab${k}`, Math.round(rnd() * 90 * 1000) / 1000, dur, gaps));
      }
      const ctx = JSON.stringify(takes.map((t) => ({ id: t.streamId.slice(14, 20), at: t.startMs - T0, dur: t.durationS, gaps: t.gaps })));
      const byId = new Map(takes.map((t) => [t.streamId, t]));
      const t0 = Math.min(...takes.map((t) => t.startMs));
      const wall = (t: Take) => (t.startMs - t0) / 1000;
      const runs = chooseRuns(takes);
      let prevTo = -Infinity;
      for (const r of runs) {
        assert.ok(r.to > r.from, `empty run ${ctx}`);
        assert.ok(r.from >= prevTo - 1e-9, `runs overlap or out of order ${ctx}`);
        prevTo = r.to;
        const t = byId.get(r.streamId)!;
        assert.ok(r.from >= wall(t) - 1e-9 && r.to <= wall(t) + t.durationS + 1e-6, `run outside its take ${ctx}`);
        for (const g of t.gaps) {
          if (g.end - g.start < MIN_GAP_S) continue;
          const from = Math.max(r.from, wall(t) + g.start);
          const to = Math.min(r.to, wall(t) + g.end);
          if (!(to - from > 1e-6)) continue;
          // The run plays its take's gap: then no other take had audio all over that stretch.
          const other = takes.some((o) => o !== t && wall(o) <= from + 1e-9 && wall(o) + o.durationS >= to - 1e-9 &&
            !o.gaps.some((og) => og.end - og.start >= MIN_GAP_S && wall(o) + og.start < to && wall(o) + og.end > from));
          assert.ok(!other, `run ${JSON.stringify(r)} plays a gap another take covers ${ctx}`);
        }
      }
      const { coveredS } = coverageOf(runs, takes);
      const fs = snapRuns(runs, takes);
      const maxSeg = 2;
      let prevEnd = -Infinity;
      for (const f of fs) {
        const t = byId.get(f.streamId)!;
        assert.ok(f.start >= 0 && f.end <= t.durationS + 1e-9 && f.end > f.start, `fragment outside its take ${JSON.stringify(f)} ${ctx}`);
        assert.ok(t.bounds!.includes(f.start) && t.bounds!.includes(f.end), `fragment off segment boundaries ${JSON.stringify(f)} ${ctx}`);
        // Snapping moves each side of a switch by less than a segment: at most two repeated, never more.
        assert.ok(wall(t) + f.start > prevEnd - 2 * maxSeg, `fragments overlap by two segments or more ${ctx}`);
        prevEnd = wall(t) + f.end;
      }
      assert.ok(Math.abs(lengthOf(fs) - coveredS) <= maxSeg, `archive ${lengthOf(fs)} s vs covered ${coveredS} s ${ctx}`);
    }
  });
});
