import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelayMs, nextAttempt } from '../../core/backoff.ts';

const node = { initialDelayMs: 1000, maxDelayMs: 30_000, stableMs: 60_000 };

describe('backoffDelayMs', () => {
  it('backoffDelayMs(1..7) doubles from 1 s and is capped at 30 s', () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6, 7].map((n) => backoffDelayMs(n, node)), [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
  });

  it('backoffDelayMs() stays at the cap for an attempt so large that 2^n is Infinity', () => {
    assert.equal(backoffDelayMs(5000, node), 30_000);
  });

  it('backoffDelayMs(0) is the initial delay, not half of it', () => {
    assert.equal(backoffDelayMs(0, node), 1000);
  });
});

describe('nextAttempt', () => {
  it('nextAttempt() counts on after a short run', () => {
    assert.equal(nextAttempt(0, 500, node), 1);
    assert.equal(nextAttempt(3, 59_999, node), 4);
  });

  it('nextAttempt() starts afresh at 1 after a run of stableMs or more', () => {
    assert.equal(nextAttempt(5, 60_000, node), 1);
    assert.equal(nextAttempt(9, 3_600_000, node), 1);
  });
});
