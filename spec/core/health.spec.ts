import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { applyVerdict, assetKey, HealthBook, isHealthTester, type HealthRecord, type TestVerdict } from '../../core/health.ts';

/** A verdict on the encoder of node `n1` at `at` ms. */
function verdict(outcome: TestVerdict['outcome'], at: number, extra: Partial<TestVerdict> = {}): TestVerdict {
  return { asset: 'encoder-port', nodeId: 'n1', outcome, at, ms: 40, ...extra };
}

describe('applyVerdict()', () => {
  test('applyVerdict(undefined, pass) makes a healthy record with one pass and no change', () => {
    const { record, change } = applyVerdict(undefined, verdict('pass', 1000, { ms: 1234 }));
    assert.equal(change, undefined);
    assert.deepEqual(record, { asset: 'encoder-port', nodeId: 'n1', healthy: true, since: 1000, lastTestAt: 1000, lastOutcome: 'pass', lastMs: 1234, passes: 1, failures: 0 });
  });

  test('applyVerdict(undefined, fail) evicts an untested asset (untested counts as healthy)', () => {
    const { record, change } = applyVerdict(undefined, verdict('fail', 1000, { reason: 'no segment within 10000 ms' }));
    assert.equal(change, 'evicted');
    assert.equal(record.healthy, false);
    assert.equal(record.since, 1000);
    assert.equal(record.failures, 1);
    assert.equal(record.passes, 0);
    assert.equal(record.reason, 'no segment within 10000 ms');
  });

  test('applyVerdict() evicts only on the first failure; later failures count without a change and keep `since`', () => {
    let r = applyVerdict(undefined, verdict('pass', 1000)).record;
    const first = applyVerdict(r, verdict('fail', 2000));
    assert.equal(first.change, 'evicted');
    assert.equal(first.record.since, 2000);
    r = first.record;
    const second = applyVerdict(r, verdict('fail', 3000));
    assert.equal(second.change, undefined);
    assert.equal(second.record.healthy, false);
    assert.equal(second.record.since, 2000);
    assert.equal(second.record.lastTestAt, 3000);
    const third = applyVerdict(second.record, verdict('fail', 4000));
    assert.equal(third.change, undefined);
    assert.equal(third.record.failures, 3);
    assert.equal(third.record.passes, 1);
  });

  test('applyVerdict() re-admits an evicted asset on one pass (change readmitted, since moves)', () => {
    const evicted = applyVerdict(undefined, verdict('fail', 1000)).record;
    const { record, change } = applyVerdict(evicted, verdict('pass', 5000, { ms: 900 }));
    assert.equal(change, 'readmitted');
    assert.equal(record.healthy, true);
    assert.equal(record.since, 5000);
    assert.equal(record.lastOutcome, 'pass');
    assert.equal(record.lastMs, 900);
    assert.equal(record.passes, 1);
    assert.equal(record.failures, 1);
    const again = applyVerdict(record, verdict('pass', 6000));
    assert.equal(again.change, undefined);
    assert.equal(again.record.since, 5000);
    assert.equal(again.record.passes, 2);
  });

  test('applyVerdict(skipped) changes neither health nor counts but records outcome, time and reason', () => {
    const evicted = applyVerdict(undefined, verdict('fail', 1000)).record;
    const { record, change } = applyVerdict(evicted, verdict('skipped', 2000, { ms: 3, reason: 'not tested while draining' }));
    assert.equal(change, undefined);
    assert.equal(record.healthy, false);
    assert.equal(record.since, 1000);
    assert.equal(record.passes, 0);
    assert.equal(record.failures, 1);
    assert.equal(record.lastOutcome, 'skipped');
    assert.equal(record.lastTestAt, 2000);
    assert.equal(record.lastMs, 3);
    assert.equal(record.reason, 'not tested while draining');

    const fresh = applyVerdict(undefined, verdict('skipped', 7000, { reason: 'full' }));
    assert.equal(fresh.change, undefined);
    assert.equal(fresh.record.healthy, true);
    assert.equal(fresh.record.passes, 0);
    assert.equal(fresh.record.failures, 0);
  });

  test('applyVerdict() clears the reason when the next verdict has none', () => {
    const failed = applyVerdict(undefined, verdict('fail', 1000, { reason: 'ffmpeg died' })).record;
    const { record } = applyVerdict(failed, verdict('pass', 2000));
    assert.equal(record.reason, undefined);
    assert.equal('reason' in record, false);
  });

  test('applyVerdict() does not mutate the previous record', () => {
    const prev = applyVerdict(undefined, verdict('pass', 1000)).record;
    const copy = structuredClone(prev);
    applyVerdict(prev, verdict('fail', 2000, { reason: 'x' }));
    assert.deepEqual(prev, copy);
  });
});

describe('HealthBook', () => {
  test('apply() keeps one record per asset and node; get() returns it, undefined for an untested asset', () => {
    const book = new HealthBook();
    assert.equal(book.apply(verdict('fail', 1000)).change, 'evicted');
    assert.equal(book.apply(verdict('fail', 2000)).change, undefined);
    assert.equal(book.apply(verdict('pass', 3000)).change, 'readmitted');
    assert.equal(book.apply({ asset: 'voice-server', nodeId: 'n1', outcome: 'fail', at: 3000, ms: 1 }).change, 'evicted');
    assert.equal(book.get('encoder-port', 'n1')!.failures, 2);
    assert.equal(book.get('encoder-port', 'n1')!.healthy, true);
    assert.equal(book.get('voice-server', 'n1')!.healthy, false);
    assert.equal(book.get('encoder-port', 'n2'), undefined);
    assert.equal(book.list().length, 2);
  });

  test('forget(nodeId) drops both asset kinds of that node only and returns how many', () => {
    const book = new HealthBook();
    for (const nodeId of ['a', 'b']) {
      book.apply({ asset: 'voice-server', nodeId, outcome: 'pass', at: 1, ms: 1 });
      book.apply({ asset: 'encoder-port', nodeId, outcome: 'fail', at: 1, ms: 1 });
    }
    assert.equal(book.forget('a'), 2);
    assert.equal(book.get('voice-server', 'a'), undefined);
    assert.equal(book.get('encoder-port', 'a'), undefined);
    assert.deepEqual(book.list().map((r) => assetKey(r.asset, r.nodeId)), ['voice-server:b', 'encoder-port:b']);
    assert.equal(book.forget('a'), 0);
    assert.equal(book.forget('zz'), 0);
  });

  test('list() puts voice servers first, each kind by node ID', () => {
    const book = new HealthBook();
    const add = (asset: TestVerdict['asset'], nodeId: string) => book.apply({ asset, nodeId, outcome: 'pass', at: 1, ms: 1 });
    add('encoder-port', 'node-b');
    add('voice-server', 'node-c');
    add('encoder-port', 'node-a');
    add('voice-server', 'node-a');
    add('encoder-port', 'node-c');
    add('voice-server', 'node-b');
    assert.deepEqual(
      book.list().map((r) => assetKey(r.asset, r.nodeId)),
      ['voice-server:node-a', 'voice-server:node-b', 'voice-server:node-c', 'encoder-port:node-a', 'encoder-port:node-b', 'encoder-port:node-c'],
    );
  });

  test('adopt() stores a copy of another tester\'s record, replacing this node\'s one', () => {
    const book = new HealthBook();
    book.apply(verdict('pass', 1000));
    const theirs: HealthRecord = { asset: 'encoder-port', nodeId: 'n1', healthy: false, since: 5000, lastTestAt: 6000, lastOutcome: 'fail', lastMs: 77, reason: 'ffmpeg died', passes: 3, failures: 2 };
    book.adopt(theirs);
    assert.deepEqual(book.get('encoder-port', 'n1'), theirs);
    theirs.healthy = true;
    assert.equal(book.get('encoder-port', 'n1')!.healthy, false);
    // The next verdict builds on the adopted record: a pass re-admits it.
    const { record, change } = book.apply(verdict('pass', 7000));
    assert.equal(change, 'readmitted');
    assert.equal(record.passes, 4);
  });
});

describe('isHealthTester()', () => {
  test('isHealthTester() is true only on the lowest node ID', () => {
    const ids = ['node-b', 'node-a', 'node-c'];
    assert.equal(isHealthTester('node-a', ids), true);
    assert.equal(isHealthTester('node-b', ids), false);
    assert.equal(isHealthTester('node-c', ids), false);
  });

  test('isHealthTester() compares IDs as strings (node-10 < node-9)', () => {
    assert.equal(isHealthTester('node-10', ['node-9', 'node-10']), true);
    assert.equal(isHealthTester('node-9', ['node-9', 'node-10']), false);
  });

  test('isHealthTester() with an empty list is true (this node tests on its own)', () => {
    assert.equal(isHealthTester('anyone', []), true);
    assert.equal(isHealthTester('anyone', new Set<string>()), true);
  });

  test('isHealthTester() with only this node listed is true', () => {
    assert.equal(isHealthTester('solo', ['solo', 'solo']), true);
  });
});
