import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ConferenceMixer, FRAME_SAMPLES } from '../../core/conference.ts';

const frame = (v: number) => new Int16Array(FRAME_SAMPLES).fill(v);

describe('ConferenceMixer', () => {
  test('tick() gives each participant everyone but itself, and the cast everyone', () => {
    const m = new ConferenceMixer();
    for (const id of ['a', 'b', 'c']) m.add(id);
    m.push('a', frame(100));
    m.push('b', frame(20));
    m.push('c', frame(3));
    const { cast, minus } = m.tick();
    assert.equal(cast[0], 123);
    assert.equal(minus.get('a')![0], 23);
    assert.equal(minus.get('b')![0], 103);
    assert.equal(minus.get('c')![0], 120);
  });

  test('tick() clips the sum to 16 bits instead of wrapping', () => {
    const m = new ConferenceMixer();
    m.add('a');
    m.add('b');
    m.push('a', frame(30000));
    m.push('b', frame(30000));
    assert.equal(m.tick().cast[10], 32767);
    m.push('a', frame(-30000));
    m.push('b', frame(-30000));
    assert.equal(m.tick().cast[10], -32768);
  });

  test('a participant with nothing queued contributes silence and hears everyone', () => {
    const m = new ConferenceMixer();
    m.add('a');
    m.add('b');
    m.push('a', frame(500));
    const { cast, minus } = m.tick();
    assert.equal(cast[0], 500);
    assert.equal(minus.get('b')![0], 500);
    assert.equal(minus.get('a')![0], 0);
  });

  test('push() cuts longer audio into 20 ms frames played one per tick', () => {
    const m = new ConferenceMixer();
    m.add('a');
    const two = new Int16Array(FRAME_SAMPLES * 2);
    two.fill(1, 0, FRAME_SAMPLES);
    two.fill(2, FRAME_SAMPLES);
    m.push('a', two);
    assert.equal(m.tick().cast[0], 1);
    assert.equal(m.tick().cast[0], 2);
    assert.equal(m.tick().cast[0], 0);
  });

  test('push() drops the oldest frames beyond ~100 ms so latency cannot grow', () => {
    const m = new ConferenceMixer();
    m.add('a');
    for (let i = 1; i <= 8; i++) m.push('a', frame(i));
    assert.equal(m.dropped, 3);
    assert.equal(m.tick().cast[0], 4);
  });

  test('remove() forgets a participant and its audio; unknown ids are ignored', () => {
    const m = new ConferenceMixer();
    m.add('a');
    m.push('a', frame(9));
    m.remove('a');
    m.push('ghost', frame(9));
    assert.equal(m.size, 0);
    assert.equal(m.tick().cast[0], 0);
  });

  test('tick() hears a remote member in the cast and in each local mix-minus, but leaves it out of local', () => {
    const m = new ConferenceMixer();
    m.add('a');
    m.add('b');
    m.add('bridge:v2', { remote: true });
    m.push('a', frame(100));
    m.push('b', frame(20));
    m.push('bridge:v2', frame(3));
    const { cast, minus, local } = m.tick();
    assert.equal(cast[0], 123);
    assert.equal(local[0], 120, 'local carries only local callers: received audio is never forwarded');
    assert.equal(minus.get('a')![0], 23);
    assert.equal(minus.get('b')![0], 103);
    assert.equal(minus.has('bridge:v2'), false, 'a remote member gets no mix-minus');
    assert.equal(m.remoteCount, 1);
  });

  test('tick() gives local equal to cast when no remote member takes part', () => {
    const m = new ConferenceMixer();
    m.add('a');
    m.push('a', frame(42));
    const { cast, local } = m.tick();
    assert.equal(local[0], 42);
    assert.equal(cast[0], 42);
  });

  test('remove() of a remote member takes it out of the cast; add() again as local makes it local', () => {
    const m = new ConferenceMixer();
    m.add('x', { remote: true });
    m.push('x', frame(7));
    assert.equal(m.tick().local[0], 0);
    m.add('x');
    m.push('x', frame(7));
    assert.equal(m.tick().local[0], 7);
    m.remove('x');
    assert.equal(m.has('x'), false);
    assert.equal(m.remoteCount, 0);
    assert.equal(m.tick().cast[0], 0);
  });
});
