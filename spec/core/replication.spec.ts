import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseEventInfo, serializeEventInfo } from '../../codecs/event-info.ts';
import {
  DAY_MS,
  compareVersions,
  markRetentionEnded,
  nextStamp,
  parseVersion,
  planSync,
  retentionDue,
  retentionOver,
  withVersion,
  type EventManifest,
  type InfoVersion,
} from '../../core/replication.ts';
import { EVENT_ID, sampleInfo } from '../support/event-plane.ts';

const S = `${EVENT_ID}-spec-node-10002-lq0abc`;
const v = (updatedMs: number, stamp: number, nodeId = 'a'): InfoVersion => ({ updatedMs, stamp, nodeId });
const manifest = (o: Partial<EventManifest> = {}): EventManifest => ({ hasInfo: true, version: v(1, 1), retentionEnded: false, streams: {}, ...o });

describe('core/replication versions', () => {
  it('withVersion() then parseVersion() round-trips, and the file still parses as event-info', () => {
    const xml = withVersion(serializeEventInfo(sampleInfo()), v(1764064800000, 1764064800000123, 'store-dc1'));
    assert.match(xml, /^<\?xml[^\n]*\?>\n<!-- jitcast-version 1764064800000\.1764064800000123\.store-dc1 -->\n<event /);
    assert.deepEqual(parseVersion(xml), v(1764064800000, 1764064800000123, 'store-dc1'));
    assert.equal(parseEventInfo(xml).eventId, EVENT_ID);
  });

  it('withVersion() replaces an earlier version line instead of adding a second', () => {
    const once = withVersion(serializeEventInfo(sampleInfo()), v(1, 2, 'a'));
    const twice = withVersion(once, v(3, 4, 'b'));
    assert.equal(twice.match(/jitcast-version/g)?.length, 1);
    assert.deepEqual(parseVersion(twice), v(3, 4, 'b'));
  });

  it('parseVersion() of a file written before versions is undefined, and it orders below any version', () => {
    assert.equal(parseVersion(serializeEventInfo(sampleInfo())), undefined);
    assert.ok(compareVersions(undefined, v(0, 0)) < 0);
    assert.ok(compareVersions(v(0, 0), undefined) > 0);
    assert.equal(compareVersions(undefined, undefined), 0);
  });

  it('compareVersions() orders by updatedAt, then stamp, then node ID', () => {
    assert.ok(compareVersions(v(2, 1), v(1, 9)) > 0);
    assert.ok(compareVersions(v(1, 2), v(1, 1)) > 0);
    assert.ok(compareVersions(v(1, 1, 'b'), v(1, 1, 'a')) > 0);
    assert.equal(compareVersions(v(1, 1, 'a'), v(1, 1, 'a')), 0);
  });

  it('nextStamp() follows the wall clock but always exceeds what was seen (a clock behind still orders after)', () => {
    assert.equal(nextStamp(0, 1000), 1_000_000);
    assert.equal(nextStamp(5_000_000, 1000), 5_000_001);
  });
});

describe('core/replication planSync()', () => {
  it('takes a newer event-info and leaves an older one alone', () => {
    assert.equal(planSync(manifest({ version: v(1, 1) }), manifest({ version: v(2, 1) })).takeInfo, true);
    assert.equal(planSync(manifest({ version: v(2, 1) }), manifest({ version: v(1, 9) })).takeInfo, false);
    assert.equal(planSync(manifest({ hasInfo: false, version: undefined }), manifest()).takeInfo, true);
    assert.equal(planSync(manifest(), manifest({ hasInfo: false, version: undefined })).takeInfo, false);
  });

  it('fetches missing segments before the playlist, and never a segment it holds', () => {
    const theirs = manifest({ streams: { [S]: { files: { 'index.m3u8': 300, 'seg00000.ts': 10, 'seg00001.ts': 20 }, final: true } } });
    const mine = manifest({ streams: { [S]: { files: { 'seg00000.ts': 10 }, final: false } } });
    assert.deepEqual(planSync(mine, theirs).files.map((f) => f.file), ['seg00001.ts', 'index.m3u8']);
  });

  it('takes a longer unfinished playlist, or a final one, but never replaces a final playlist', () => {
    const stream = (size: number, final: boolean) => ({ [S]: { files: { 'index.m3u8': size }, final } });
    assert.deepEqual(planSync(manifest({ streams: stream(100, false) }), manifest({ streams: stream(150, false) })).files.map((f) => f.file), ['index.m3u8']);
    assert.deepEqual(planSync(manifest({ streams: stream(150, false) }), manifest({ streams: stream(100, false) })).files, []);
    assert.deepEqual(planSync(manifest({ streams: stream(150, false) }), manifest({ streams: stream(140, true) })).files.map((f) => f.file), ['index.m3u8']);
    assert.deepEqual(planSync(manifest({ streams: stream(140, true) }), manifest({ streams: stream(900, false) })).files, []);
  });

  it('fetches nothing and removes its streams when the winning event-info says retention is over', () => {
    const mine = manifest({ version: v(1, 1), streams: { [S]: { files: { 'seg00000.ts': 10 }, final: true } } });
    const theirs = manifest({ version: v(2, 1), retentionEnded: true, streams: {} });
    assert.deepEqual(planSync(mine, theirs), { takeInfo: true, removeStreams: true, files: [] });
    // An older copy that says so does not count: the newer one here wins.
    const stale = manifest({ version: v(0, 1), retentionEnded: true, streams: { [S]: { files: { 'seg00001.ts': 10 }, final: true } } });
    assert.deepEqual(planSync(mine, stale).files.map((f) => f.file), ['seg00001.ts']);
  });
});

describe('core/replication retention', () => {
  const ended = '2026-11-26T12:00:00.000Z'; // after sampleInfo's updatedAt
  const archived = sampleInfo({ status: 'archived', endedAt: ended, archiveDays: 2, archive: [{ streamId: S, start: 0, end: 10 }] });

  it('retentionOver() is false until archiveDays after the end, true from then on', () => {
    const end = Date.parse(ended) + 2 * DAY_MS;
    assert.equal(retentionOver(archived, end - 1), false);
    assert.equal(retentionOver(archived, end), true);
    assert.equal(retentionDue(archived, end), true);
  });

  it('retentionOver() is false for an event that is not archived, whatever the clock', () => {
    assert.equal(retentionOver(sampleInfo({ status: 'ended', endedAt: ended, archiveDays: 0 }), Date.parse(ended) + 100 * DAY_MS), false);
    assert.equal(retentionOver(sampleInfo({ status: 'archive-error', endedAt: ended, archiveDays: 0 }), Date.parse(ended) + 100 * DAY_MS), false);
  });

  it('markRetentionEnded() keeps status archived, drops the archive, and is no longer due (idempotent sweep)', () => {
    const now = Date.parse(ended) + 3 * DAY_MS;
    const marked = markRetentionEnded(archived, now);
    assert.equal(marked.status, 'archived');
    assert.equal(marked.archive, undefined);
    assert.equal(marked.updatedAt, new Date(now).toISOString());
    assert.equal(retentionDue(marked, now), false);
    assert.equal(retentionOver(marked, now), true);
    assert.equal(parseEventInfo(serializeEventInfo(marked)).archive, undefined);
  });
});
