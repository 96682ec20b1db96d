import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Context, ServiceBroker } from 'moleculer';
import { createBroker } from '../../runtime/broker.ts';
import { RECENT_ERRORS_EVENT, RecentErrorLog, logLine, recentErrorsLogger, type RecentError, type RecentErrorsBatch } from '../../runtime/recent-errors.ts';
import { testConfig } from '../support/config.ts';

const entry = (message: string, o: Partial<RecentError> = {}): RecentError => ({ at: '2026-12-03T08:00:00.000Z', nodeId: 'n1', level: 'error', module: 'event', message, count: 1, ...o });

describe('runtime/recent-errors', () => {
  it('logLine() joins strings, takes an Error by its message, JSON for objects, one line, at most 400 characters', () => {
    assert.equal(logLine(['encoder died [event:12345674]', new Error('exit 1'), { code: 1 }]), 'encoder died [event:12345674] exit 1 {"code":1}');
    assert.equal(logLine(['a\n  b']), 'a b');
    const long = logLine(['x'.repeat(1000)]);
    assert.equal(long.length, 400);
    assert.ok(long.endsWith('…'));
  });

  it('RecentErrorLog keeps the newest first and at most its capacity', () => {
    const log = new RecentErrorLog(3);
    log.add(['a', 'b', 'c', 'd'].map((m) => entry(m)));
    assert.deepEqual(log.list().map((e) => e.message), ['d', 'c', 'b']);
  });

  it('RecentErrorLog counts a repeat of the newest entry instead of adding a row; other nodes or levels are rows of their own', () => {
    const log = new RecentErrorLog();
    log.add([entry('same'), entry('same', { at: '2026-12-03T08:00:05.000Z', count: 2 }), entry('same', { nodeId: 'n2' }), entry('same', { nodeId: 'n2', level: 'warn' })]);
    const list = log.list();
    assert.deepEqual(list.map((e) => [e.nodeId, e.level, e.count]), [['n2', 'warn', 1], ['n2', 'error', 1], ['n1', 'error', 3]]);
    assert.equal(list[2]!.at, '2026-12-03T08:00:05.000Z');
  });

  describe('the appender on a broker', () => {
    let broker: ServiceBroker;
    const batches: RecentErrorsBatch[] = [];
    before(async () => {
      broker = createBroker(testConfig({ logLevel: 'fatal' }), { logger: [recentErrorsLogger({ flushMs: 50, maxBatch: 3 })] });
      broker.createService({ name: 'listener', events: { [RECENT_ERRORS_EVENT]: (ctx: Context<RecentErrorsBatch>) => void batches.push(ctx.params) } });
      await broker.start();
    });
    after(() => broker.stop());

    it('broadcasts warn and worse in one batch (info and debug never), with what did not fit counted as dropped', async () => {
      const log = broker.getLogger('spec');
      log.info('not this');
      log.debug('nor this');
      log.warn('w1');
      log.warn('w1');
      log.error('e1');
      log.fatal('f1');
      log.error('e2');
      log.error('e3');
      for (let i = 0; i < 40 && batches.length === 0; i++) await new Promise((r) => setTimeout(r, 25));
      assert.equal(batches.length, 1);
      const b = batches[0]!;
      assert.equal(b.nodeId, broker.nodeID);
      assert.deepEqual(b.entries.map((e) => [e.level, e.message, e.count, e.module]), [['warn', 'w1', 2, 'spec'], ['error', 'e1', 1, 'spec'], ['fatal', 'f1', 1, 'spec']]);
      assert.equal(b.dropped, 2);
    });
  });
});
