import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mapLimit } from '../../runtime/map-limit.ts';

describe('mapLimit', () => {
  it('keeps the order of the items and never runs more than the limit at once', async () => {
    let inFlight = 0;
    let most = 0;
    const out = await mapLimit([50, 10, 30, 0, 20, 5], 2, async (ms, i) => {
      most = Math.max(most, ++inFlight);
      await new Promise((r) => setTimeout(r, ms));
      inFlight--;
      return `${i}:${ms}`;
    });
    assert.deepEqual(out, ['0:50', '1:10', '2:30', '3:0', '4:20', '5:5']);
    assert.equal(most, 2);
  });

  it('answers [] for no items and rejects with the first failure', async () => {
    assert.deepEqual(await mapLimit([], 4, async () => 1), []);
    await assert.rejects(mapLimit([1, 2, 3], 2, async (n) => { if (n === 2) throw new Error('two'); return n; }), /two/);
  });

  it('refuses a limit below 1', async () => {
    await assert.rejects(mapLimit([1], 0, async (n) => n), RangeError);
  });
});
