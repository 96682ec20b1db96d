import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Db } from '../../runtime/db.ts';
import { CoalescingWriter, LazyDb, backoffMs, type CoalescingWriterOptions } from '../../runtime/coalescing-writer.ts';

/** A Db that does nothing but count closes. */
function fakeDb(closed: { n: number }): Db {
  return {
    query: async () => [],
    close: async () => {
      closed.n++;
    },
  };
}

/** A promise and the function that settles it. */
function gate(): { opened: Promise<void>; open: () => void } {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { opened, open };
}

/** Log lines as `level text`. */
function recorder(): { lines: string[]; logger: CoalescingWriterOptions<unknown>['logger'] } {
  const lines: string[] = [];
  const at = (level: string) => (m: unknown) => lines.push(`${level} ${String(m)}`);
  return { lines, logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } };
}

function writer<V>(o: Partial<CoalescingWriterOptions<V>> & Pick<CoalescingWriterOptions<V>, 'write'>): CoalescingWriter<V> {
  const closed = { n: 0 };
  return new CoalescingWriter<V>({
    openDb: async () => fakeDb(closed),
    what: 'thing',
    queueName: 'thing queue',
    closedUnwritten: 'thing writer closed with unwritten things',
    describe: (key) => `thing:${key}`,
    minBackoffMs: 5,
    maxBackoffMs: 20,
    ...o,
  });
}

describe('runtime/coalescing-writer backoffMs', () => {
  it('backoffMs() doubles from the minimum and stops at the maximum', () => {
    assert.deepEqual([1, 2, 3, 8, 9, 1000].map((a) => backoffMs(a, 200, 30_000)), [200, 400, 800, 25_600, 30_000, 30_000]);
    assert.equal(backoffMs(0, 200, 30_000), 200);
  });
});

describe('runtime/coalescing-writer CoalescingWriter', () => {
  it('set() during a write coalesces to the latest value per key and keeps first-queued order', async () => {
    const writes: string[] = [];
    const first = gate();
    const w = writer<number>({
      write: async (_db, key, value) => {
        if (writes.length === 0) await first.opened;
        writes.push(`${key}=${value}`);
      },
    });
    w.set('a', 1); // its write starts at once and waits on the gate
    w.set('b', 1);
    w.set('a', 2); // replaces a's value, a stays first
    w.set('c', 1);
    w.set('b', 2);
    assert.equal(w.depth(), 3);
    assert.equal(w.get('b'), 2);
    first.open();
    await w.drain(5_000);
    // a=1 was under way when a=2 came: a=2 is still written, then b's latest, then c.
    assert.deepEqual(writes, ['a=1', 'a=2', 'b=2', 'c=1']);
    assert.equal(w.depth(), 0);
    await w.close(1_000);
  });

  it('set() of the same object during its write writes it again', async () => {
    const writes: string[] = [];
    const first = gate();
    const value = { n: 1 };
    const w = writer<{ n: number }>({
      write: async (_db, key, v) => {
        if (writes.length === 0) await first.opened;
        writes.push(`${key}=${v.n}`);
      },
    });
    w.set('a', value);
    value.n = 2;
    w.set('a', value);
    first.open();
    await w.drain(5_000);
    assert.deepEqual(writes, ['a=2', 'a=2']);
    await w.close(1_000);
  });

  it('a failing write is retried with back-off on a reopened DB, then lands and logs the recovery', async () => {
    const { lines, logger } = recorder();
    const closed = { n: 0 };
    let opens = 0;
    let calls = 0;
    const landed: string[] = [];
    const w = writer<string>({
      logger,
      openDb: async () => {
        opens++;
        return fakeDb(closed);
      },
      write: async (_db, key, value) => {
        if (++calls <= 3) throw new Error('connection refused');
        landed.push(`${key}=${value}`);
      },
    });
    w.set('k', 'v');
    await w.drain(5_000);
    assert.deepEqual(landed, ['k=v']);
    assert.equal(opens, 4, 'a DB per attempt: each failure closes it');
    assert.equal(closed.n, 3);
    assert.deepEqual(lines, [
      'warn thing write failed, retrying [thing:k attempt:1 retryInMs:5 depth:1] connection refused',
      'debug thing write failed, retrying [thing:k attempt:2 retryInMs:10 depth:1] connection refused',
      'debug thing write failed, retrying [thing:k attempt:3 retryInMs:20 depth:1] connection refused',
      'info thing writes recovered [after:3 failures depth:0]',
    ]);
    await w.close(1_000);
  });

  it('a failure line is a warning again when the error changes', async () => {
    const { lines, logger } = recorder();
    let calls = 0;
    const w = writer<string>({
      logger,
      write: async () => {
        calls++;
        if (calls === 1 || calls === 2) throw new Error('refused');
        if (calls === 3) throw new Error('timeout');
      },
    });
    w.set('k', 'v');
    await w.drain(5_000);
    assert.deepEqual(lines.map((l) => l.replace(/ \[.*\]/, '')), [
      'warn thing write failed, retrying refused',
      'debug thing write failed, retrying refused',
      'warn thing write failed, retrying timeout',
      'info thing writes recovered',
    ]);
    await w.close(1_000);
  });

  it('drain() rejects with the queue name and depth when a write never lands', async () => {
    const w = writer<string>({
      write: async () => {
        throw new Error('down');
      },
    });
    w.set('k', 'v');
    await assert.rejects(w.drain(30), { message: 'thing queue not drained within 30 ms [depth:1]' });
    await w.close(10);
  });

  it('close() gives up on unwritten entries after the grace, closes the DB, ignores later set() and refuses db()', async () => {
    const { lines, logger } = recorder();
    const closed = { n: 0 };
    const w = writer<string>({
      logger,
      openDb: async () => fakeDb(closed),
      write: async () => {
        throw new Error('down');
      },
    });
    w.set('k', 'v');
    await w.db(); // holds a DB open for close() to release
    await w.close(30);
    assert.equal(w.closed, true);
    assert.ok(lines.includes('warn thing writer closed with unwritten things [depth:1]'), lines.join('\n'));
    assert.ok(closed.n >= 1);
    assert.equal(w.currentDb, undefined);
    w.set('other', 'x');
    assert.equal(w.depth(), 1);
    await assert.rejects(w.db(), { message: 'thing writer closed' });
    await w.close(30); // idempotent
  });

  // The timeout turns a close() that waits for ever into a failure instead of a hung run.
  it('close() waits for a running write only up to the grace', { timeout: 10_000 }, async () => {
    const never = gate();
    const w = writer<string>({ write: () => never.opened });
    w.set('k', 'v');
    await w.close(20); // would never return if it waited for the write
    assert.equal(w.depth(), 1);
    never.open();
  });

  it('close() lets queued entries land within the grace', async () => {
    const landed: string[] = [];
    const w = writer<string>({ write: async (_db, key) => void landed.push(key) });
    w.set('a', '1');
    w.set('b', '1');
    await w.close(5_000);
    assert.deepEqual(landed, ['a', 'b']);
  });
});

describe('runtime/coalescing-writer LazyDb', () => {
  it('get() opens once when asked concurrently and again after close()', async () => {
    const closed = { n: 0 };
    let opens = 0;
    const lazy = new LazyDb(async () => {
      opens++;
      return fakeDb(closed);
    }, () => undefined);
    const [a, b] = await Promise.all([lazy.get(), lazy.get()]);
    assert.equal(a, b);
    assert.equal(opens, 1);
    await lazy.close();
    assert.equal(closed.n, 1);
    assert.notEqual(await lazy.get(), a);
    assert.equal(opens, 2);
  });

  it('an open that finishes after end() is closed and get() rejects with the reason', async () => {
    const closed = { n: 0 };
    const opening = gate();
    const lazy = new LazyDb(async () => {
      await opening.opened;
      return fakeDb(closed);
    }, () => undefined);
    const pending = lazy.get();
    await lazy.end('owner closed');
    opening.open();
    await assert.rejects(pending, { message: 'owner closed' });
    assert.equal(closed.n, 1);
    await assert.rejects(lazy.get(), { message: 'owner closed' });
  });

  it('a failed close is reported, not thrown', async () => {
    const errors: string[] = [];
    const lazy = new LazyDb(async () => ({ query: async () => [], close: async () => Promise.reject(new Error('busy')) }), (err) => errors.push(err.message));
    await lazy.get();
    await lazy.close();
    assert.deepEqual(errors, ['busy']);
  });
});
