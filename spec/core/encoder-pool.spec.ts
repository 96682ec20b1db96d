import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { EncoderPool } from '../../core/encoder-pool.ts';
import type { EncoderStatus } from '../../runtime/contracts.ts';

const T0 = 1_000_000;
const TIMEOUT_MS = 3000;

/** An EncoderStatus of `nodeId` made at T0 + `seq` ms. */
function status(nodeId: string, dataCenter: string, free: number, seq = 1, overrides: Partial<EncoderStatus> = {}): EncoderStatus {
  return { nodeId, dataCenter, capacity: 25, free, running: 25 - free, seq, updatedAt: new Date(T0 + seq).toISOString(), ...overrides };
}

/** A pool that heard each status at T0. */
function poolOf(...statuses: EncoderStatus[]): EncoderPool {
  const pool = new EncoderPool({ timeoutMs: TIMEOUT_MS });
  for (const s of statuses) assert.equal(pool.update(s, T0), true);
  return pool;
}

/** Who the pool picks for a voice server on node `self` in `dc`. */
function pickFor(pool: EncoderPool, self = 'voice-1', dc = 'dc1', now = T0, exclude?: ReadonlySet<string>) {
  return pool.pick({ nodeId: self, dataCenter: dc, now, ...(exclude ? { exclude } : {}) });
}

describe('EncoderPool.pick() order', () => {
  test('pick() prefers this node\'s own encoder over a same-DC one with more free ports', () => {
    const pool = poolOf(status('enc-2', 'dc1', 20), status('voice-1', 'dc1', 1), status('enc-3', 'dc2', 25));
    assert.deepEqual(pickFor(pool), { nodeId: 'voice-1', dataCenter: 'dc1', healthy: true, local: true, crossDataCenter: false, freePorts: 0 });
  });

  test('pick() prefers the same data center over another with more free ports', () => {
    const pool = poolOf(status('enc-far', 'dc2', 25), status('enc-near', 'dc1', 2));
    const c = pickFor(pool)!;
    assert.equal(c.nodeId, 'enc-near');
    assert.equal(c.local, false);
    assert.equal(c.crossDataCenter, false);
  });

  test('pick() takes the most free ports among equals, then the lowest node ID', () => {
    const pool = poolOf(status('enc-a', 'dc1', 3), status('enc-b', 'dc1', 9), status('enc-c', 'dc1', 5));
    assert.equal(pickFor(pool)!.nodeId, 'enc-b');
    const tie = poolOf(status('enc-z', 'dc1', 4), status('enc-m', 'dc1', 4), status('enc-q', 'dc1', 4));
    assert.equal(pickFor(tie)!.nodeId, 'enc-m');
  });

  test('pick() goes across data centers when nothing nearer can take it, and says so', () => {
    const pool = poolOf(status('enc-near', 'dc1', 0), status('enc-far', 'dc2', 7));
    assert.deepEqual(pickFor(pool), { nodeId: 'enc-far', dataCenter: 'dc2', healthy: true, local: false, crossDataCenter: true, freePorts: 6 });
  });

  test('pick() takes a healthy remote encoder before this node\'s unhealthy one', () => {
    const pool = poolOf(status('voice-1', 'dc1', 25), status('enc-far', 'dc2', 1));
    pool.setHealth('voice-1', false);
    const c = pickFor(pool)!;
    assert.equal(c.nodeId, 'enc-far');
    assert.equal(c.healthy, true);
    assert.equal(c.crossDataCenter, true);
  });

  test('pick() falls back to an unhealthy encoder only when no healthy one can take the stream (healthy false)', () => {
    const pool = poolOf(status('enc-sick', 'dc1', 10), status('enc-well', 'dc1', 1));
    pool.setHealth('enc-sick', false);
    assert.equal(pickFor(pool)!.nodeId, 'enc-well');
    // enc-well is now full (one stream pending against free=1): only the unhealthy one is left.
    const c = pickFor(pool)!;
    assert.equal(c.nodeId, 'enc-sick');
    assert.equal(c.healthy, false);
  });

  test('pick() picks a re-admitted encoder as healthy again', () => {
    const pool = poolOf(status('enc-a', 'dc1', 10), status('enc-b', 'dc1', 5));
    pool.setHealth('enc-a', false);
    assert.equal(pickFor(pool)!.nodeId, 'enc-b');
    pool.setHealth('enc-a', true);
    const c = pickFor(pool)!;
    assert.equal(c.nodeId, 'enc-a');
    assert.equal(c.healthy, true);
  });
});

describe('EncoderPool.pick() skips', () => {
  test('pick() skips an encoder not heard within timeoutMs (heard exactly timeoutMs ago still counts)', () => {
    const pool = poolOf(status('enc-a', 'dc1', 10));
    assert.equal(pool.update(status('enc-b', 'dc1', 1), T0 + 2000), true);
    assert.equal(pickFor(pool, 'voice-1', 'dc1', T0 + TIMEOUT_MS)!.nodeId, 'enc-a');
    assert.equal(pickFor(pool, 'voice-1', 'dc1', T0 + TIMEOUT_MS + 1)!.nodeId, 'enc-b');
    assert.equal(pickFor(pool, 'voice-1', 'dc1', T0 + 2000 + TIMEOUT_MS + 1), undefined);
    assert.equal(pool.size(T0 + 2000 + TIMEOUT_MS + 1), 0);
  });

  test('pick() skips a full encoder and answers undefined when all are full', () => {
    const pool = poolOf(status('voice-1', 'dc1', 0), status('enc-b', 'dc1', 0));
    assert.equal(pickFor(pool), undefined);
  });

  test('pick() skips a refused encoder until its next status', () => {
    const pool = poolOf(status('enc-a', 'dc1', 10), status('enc-b', 'dc1', 2));
    pool.refuse('enc-a');
    assert.equal(pickFor(pool)!.nodeId, 'enc-b');
    pool.refuse('enc-b');
    assert.equal(pickFor(pool), undefined);
    assert.equal(pool.update(status('enc-a', 'dc1', 10, 2), T0 + 500), true);
    assert.equal(pickFor(pool, 'voice-1', 'dc1', T0 + 500)!.nodeId, 'enc-a');
  });

  test('refuse() of an encoder never heard is harmless', () => {
    const pool = poolOf(status('enc-a', 'dc1', 1));
    pool.refuse('nobody');
    assert.equal(pickFor(pool)!.nodeId, 'enc-a');
  });

  test('pick() skips the excluded encoders', () => {
    const pool = poolOf(status('voice-1', 'dc1', 10), status('enc-b', 'dc1', 5), status('enc-c', 'dc2', 5));
    assert.equal(pickFor(pool, 'voice-1', 'dc1', T0, new Set(['voice-1']))!.nodeId, 'enc-b');
    assert.equal(pickFor(pool, 'voice-1', 'dc1', T0, new Set(['voice-1', 'enc-b']))!.nodeId, 'enc-c');
    assert.equal(pickFor(pool, 'voice-1', 'dc1', T0, new Set(['voice-1', 'enc-b', 'enc-c'])), undefined);
  });
});

describe('EncoderPool pending streams', () => {
  test('pick() counts its own streams: two picks against free=1 go to two encoders', () => {
    const pool = poolOf(status('voice-1', 'dc1', 1), status('enc-b', 'dc1', 1));
    const a = pickFor(pool)!;
    assert.equal(a.nodeId, 'voice-1');
    assert.equal(a.freePorts, 0);
    assert.equal(pickFor(pool)!.nodeId, 'enc-b');
    assert.equal(pickFor(pool), undefined);
  });

  test('pick() counts its streams against free ports: free 3 vs 2 gives a, a (tie: lowest ID), b, a, b, then none', () => {
    const pool = poolOf(status('enc-a', 'dc1', 3), status('enc-b', 'dc1', 2));
    assert.deepEqual([1, 2, 3, 4, 5].map(() => pickFor(pool)?.nodeId), ['enc-a', 'enc-a', 'enc-b', 'enc-a', 'enc-b']);
    assert.equal(pickFor(pool), undefined);
  });

  test('a stream sent within the grace window still counts after the next status', () => {
    const pool = poolOf(status('enc-a', 'dc1', 1));
    assert.equal(pickFor(pool, 'voice-1', 'dc1', T0 + 1000)!.nodeId, 'enc-a');
    // The status was made before the stream arrived: it still says free=1.
    assert.equal(pool.update(status('enc-a', 'dc1', 1, 2), T0 + 1050), true);
    assert.equal(pickFor(pool, 'voice-1', 'dc1', T0 + 1050), undefined);
  });

  test('a stream sent longer than the grace window ago no longer counts after the next status', () => {
    const pool = poolOf(status('enc-a', 'dc1', 1));
    assert.equal(pickFor(pool, 'voice-1', 'dc1', T0 + 1000)!.nodeId, 'enc-a');
    assert.equal(pool.update(status('enc-a', 'dc1', 1, 2), T0 + 1100), true);
    const c = pickFor(pool, 'voice-1', 'dc1', T0 + 1100)!;
    assert.equal(c.nodeId, 'enc-a');
    assert.equal(c.freePorts, 0);
  });

  test('pendingGraceMs sets the grace window', () => {
    const pool = new EncoderPool({ timeoutMs: TIMEOUT_MS, pendingGraceMs: 1000 });
    pool.update(status('enc-a', 'dc1', 1), T0);
    assert.equal(pickFor(pool, 'voice-1', 'dc1', T0)!.nodeId, 'enc-a');
    pool.update(status('enc-a', 'dc1', 1, 2), T0 + 999);
    assert.equal(pickFor(pool, 'voice-1', 'dc1', T0 + 999), undefined);
    pool.update(status('enc-a', 'dc1', 1, 3), T0 + 1000);
    assert.equal(pickFor(pool, 'voice-1', 'dc1', T0 + 1000)?.nodeId, 'enc-a');
  });
});

describe('EncoderPool.update()', () => {
  test('update() drops a late status (lower seq and older updatedAt) and keeps the newer one', () => {
    const pool = poolOf(status('enc-a', 'dc1', 0, 5));
    assert.equal(pool.update(status('enc-a', 'dc1', 10, 4), T0 + 100), false);
    assert.equal(pool.update(status('enc-a', 'dc1', 10, 5), T0 + 100), false);
    assert.equal(pickFor(pool, 'voice-1', 'dc1', T0 + 100), undefined);
  });

  test('a dropped late status does not refresh when the encoder was heard', () => {
    const pool = poolOf(status('enc-a', 'dc1', 4, 5));
    assert.equal(pool.update(status('enc-a', 'dc1', 4, 4), T0 + 2500), false);
    assert.equal(pickFor(pool, 'voice-1', 'dc1', T0 + TIMEOUT_MS + 1), undefined);
  });

  test('update() takes a status with a lower seq but a newer updatedAt (the encoder restarted)', () => {
    const pool = poolOf(status('enc-a', 'dc1', 0, 500));
    assert.equal(pool.update(status('enc-a', 'dc1', 8, 1, { updatedAt: new Date(T0 + 10_000).toISOString() }), T0 + 100), true);
    assert.equal(pickFor(pool, 'voice-1', 'dc1', T0 + 100)?.freePorts, 7);
  });

  test('setHealth() before the first status applies once the encoder is heard', () => {
    const pool = new EncoderPool({ timeoutMs: TIMEOUT_MS });
    pool.setHealth('enc-a', false);
    assert.equal(pool.healthy('enc-a'), false);
    assert.equal(pool.healthy('enc-b'), true);
    pool.update(status('enc-a', 'dc1', 20), T0);
    pool.update(status('enc-b', 'dc2', 1), T0);
    const c = pickFor(pool)!;
    assert.equal(c.nodeId, 'enc-b');
    assert.equal(c.healthy, true);
    const d = pickFor(pool)!;
    assert.equal(d.nodeId, 'enc-a');
    assert.equal(d.healthy, false);
  });

  test('remove() forgets an encoder: it is no longer picked nor counted', () => {
    const pool = poolOf(status('voice-1', 'dc1', 10), status('enc-b', 'dc1', 1));
    assert.equal(pool.size(T0), 2);
    pool.remove('voice-1');
    assert.equal(pool.size(T0), 1);
    assert.equal(pickFor(pool)!.nodeId, 'enc-b');
    assert.equal(pickFor(pool), undefined);
    pool.remove('voice-1');
    assert.equal(pool.size(T0), 1);
  });

  test('a status after remove() brings the encoder back with nothing pending', () => {
    const pool = poolOf(status('enc-a', 'dc1', 1));
    assert.equal(pickFor(pool)!.nodeId, 'enc-a');
    pool.remove('enc-a');
    assert.equal(pool.update(status('enc-a', 'dc1', 1, 1), T0 + 10), true);
    assert.equal(pickFor(pool, 'voice-1', 'dc1', T0 + 10)?.nodeId, 'enc-a');
  });
});
