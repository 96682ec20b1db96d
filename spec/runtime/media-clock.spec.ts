import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FRAME_MS, MediaClock, SharedTicker } from '../../runtime/media-clock.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('MediaClock', () => {
  it('start() calls onFrame once per 20 ms on average; stop() ends it', async () => {
    let frames = 0;
    const clock = new MediaClock(() => frames++);
    const t0 = performance.now();
    clock.start();
    await sleep(500);
    clock.stop();
    const due = Math.floor((performance.now() - t0) / FRAME_MS);
    assert.ok(Math.abs(frames - due) <= 2, `frames ${frames}, due ${due}`);
    const after = frames;
    await sleep(100);
    assert.equal(frames, after);
  });
});

describe('SharedTicker', () => {
  it('subscribe() wakes every subscriber from one timer with the same now; the last unsubscribe stops it', async () => {
    const ticker = new SharedTicker(20);
    const nows: number[][] = [[], [], []];
    const offs = nows.map((list) => ticker.subscribe((now) => list.push(now)));
    assert.equal(ticker.size, 3);
    await sleep(210);
    offs[0]!();
    await sleep(100);
    const counts = nows.map((l) => l.length);
    assert.ok(counts[1]! >= 5 && counts[1]! <= 16, `wakes ${counts[1]}`);
    assert.ok(counts[0]! < counts[1]!, 'an unsubscribed one is not woken any more');
    assert.deepEqual(nows[1], nows[2], 'one timer: every subscriber sees the same instants');
    offs[1]!();
    offs[2]!();
    offs[2]!(); // idempotent
    assert.equal(ticker.size, 0);
    const stopped = nows[1]!.length;
    await sleep(60);
    assert.equal(nows[1]!.length, stopped);
  });
});
