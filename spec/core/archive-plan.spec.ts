import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chooseFragments, planArchive, playlistDurationS, takesOf, type PlanStream } from '../../core/archive-plan.ts';
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

  it('planArchive() breaks a start-time tie by stream ID', () => {
    const plan = planArchive([
      { record: rec(B, '2026-11-25T10:00:00Z'), playlist: pl(1) },
      { record: rec(A, '2026-11-25T10:00:00Z'), playlist: pl(1) },
    ]);
    assert.ok(plan.ok);
    assert.deepEqual(plan.archive.map((f) => f.streamId), [A, B]);
  });

  it('planArchive() of no streams is refused with "no recorded stream"', () => {
    assert.deepEqual(planArchive([]), { ok: false, reason: 'no recorded stream' });
  });

  it('planArchive() skips a never-stored stream and an empty playlist, refusing when nothing is left', () => {
    const streams: PlanStream[] = [
      { record: rec(A, '2026-11-25T10:00:00Z', { stored: false }) },
      { record: rec(B, '2026-11-25T10:00:00Z'), playlist: pl() },
    ];
    assert.deepEqual(planArchive(streams), { ok: false, reason: 'no recorded stream' });
  });

  it('planArchive() of a stored stream without its playlist is refused with "stream files missing" naming it', () => {
    const plan = planArchive([
      { record: rec(A, '2026-11-25T10:00:00Z'), playlist: pl(2) },
      { record: rec(B, '2026-11-25T10:01:00Z') },
    ]);
    assert.equal(plan.ok, false);
    assert.ok(!plan.ok && plan.reason.startsWith('stream files missing') && plan.reason.includes(B));
  });

  it('takesOf() keeps gaps for the planner and chooseFragments() plays each take whole', () => {
    const found = takesOf([{ record: rec(A, '2026-11-25T10:00:00Z'), playlist: pl(3), gaps: [{ start: 1, end: 2 }] }]);
    assert.ok(found.ok);
    assert.deepEqual(found.takes[0]!.gaps, [{ start: 1, end: 2 }]);
    assert.equal(found.takes[0]!.startMs, Date.parse('2026-11-25T10:00:00Z'));
    assert.deepEqual(chooseFragments(found.takes), [{ streamId: A, start: 0, end: 3 }]);
  });
});
