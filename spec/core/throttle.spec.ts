import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { FailureThrottle } from '../../core/throttle.ts';

describe('FailureThrottle', () => {
  test('locked() turns true at the limit within the window and false once failures age out', () => {
    const t = new FailureThrottle(3, 1000);
    t.fail('e', 0);
    t.fail('e', 100);
    assert.equal(t.locked('e', 200), false);
    t.fail('e', 200);
    assert.equal(t.locked('e', 300), true);
    assert.equal(t.locked('e', 999), true);
    assert.equal(t.locked('e', 1000), false);
  });

  test('keys are independent', () => {
    const t = new FailureThrottle(1, 1000);
    t.fail('a', 0);
    assert.equal(t.locked('a', 1), true);
    assert.equal(t.locked('b', 1), false);
  });

  test('sweep() forgets keys whose failures left the window, bounding memory', () => {
    const t = new FailureThrottle(2, 100);
    for (let i = 0; i < 1000; i++) t.fail(`k${i}`, 0);
    assert.equal(t.size, 1000);
    t.sweep(100);
    assert.equal(t.size, 0);
  });
});
