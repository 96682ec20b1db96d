import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PortPool } from '../../core/port-pool.ts';

describe('PortPool', () => {
  test('holds the even ports of its range', () => {
    const p = new PortPool(10000, 10009, 1000);
    assert.equal(p.capacity, 5);
    const got = [p.acquire(0), p.acquire(0), p.acquire(0), p.acquire(0), p.acquire(0)];
    assert.deepEqual(got, [10000, 10002, 10004, 10006, 10008]);
    assert.equal(p.acquire(0), undefined);
  });

  test('release() rests a port for the reuse timeout before acquire() hands it out again', () => {
    const p = new PortPool(10000, 10001, 120_000);
    assert.equal(p.acquire(0), 10000);
    p.release(10000, 1000);
    assert.equal(p.acquire(1000), undefined);
    assert.equal(p.acquire(120_999), undefined);
    assert.equal(p.acquire(121_000), 10000);
  });

  test('acquire() hands out the least recently used port first', () => {
    const p = new PortPool(10000, 10005, 10);
    const a = p.acquire(0)!;
    p.release(a, 0);
    assert.equal(p.acquire(100), 10002);
    assert.equal(p.acquire(100), 10004);
    assert.equal(p.acquire(100), 10000);
  });

  test('release() of a port that is not busy changes nothing', () => {
    const p = new PortPool(10000, 10003, 10);
    p.release(10000, 0);
    assert.equal(p.available(0), 2);
    assert.equal(p.resting, 0);
  });

  test('quarantine() keeps an unbindable port out for the reuse timeout', () => {
    const p = new PortPool(10000, 10001, 50);
    const port = p.acquire(0)!;
    p.quarantine(port, 0);
    assert.equal(p.busy, 0);
    assert.equal(p.acquire(10), undefined);
    assert.equal(p.acquire(50), 10000);
  });

  test('releaseUnused() makes the port available at once, without the reuse rest', () => {
    const p = new PortPool(10000, 10001, 120_000);
    assert.equal(p.acquire(0), 10000);
    p.releaseUnused(10000);
    assert.equal(p.busy, 0);
    assert.equal(p.resting, 0);
    assert.equal(p.available(0), 1);
    assert.equal(p.acquire(0), 10000);
  });

  test('releaseUnused() puts the port at the back of the free list', () => {
    const p = new PortPool(10000, 10005, 120_000);
    assert.equal(p.acquire(0), 10000);
    p.releaseUnused(10000);
    assert.equal(p.acquire(0), 10002);
    assert.equal(p.acquire(0), 10004);
    assert.equal(p.acquire(0), 10000);
    assert.equal(p.acquire(0), undefined);
  });

  test('releaseUnused() of a port that is not busy changes nothing', () => {
    const p = new PortPool(10000, 10003, 50);
    p.releaseUnused(10000);
    p.releaseUnused(10001);
    p.releaseUnused(20000);
    assert.equal(p.capacity, 2);
    assert.equal(p.available(0), 2);
    // A resting port stays resting: releaseUnused() does not short-cut its rest.
    const port = p.acquire(0)!;
    p.release(port, 0);
    p.releaseUnused(port);
    assert.equal(p.resting, 1);
    assert.equal(p.available(0), 1);
    assert.equal(p.capacity, 2);
    assert.deepEqual([p.acquire(0), p.acquire(0)], [10002, undefined]);
  });

  test('releaseUnused() twice frees the port once (no duplicate in the free list)', () => {
    const p = new PortPool(10000, 10003, 50);
    const port = p.acquire(0)!;
    p.releaseUnused(port);
    p.releaseUnused(port);
    assert.equal(p.capacity, 2);
    assert.equal(p.available(0), 2);
  });
});
