import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ByteLru } from '../../core/byte-lru.ts';

describe('ByteLru', () => {
  test('get() answers what set() stored and undefined for an unknown key', () => {
    const c = new ByteLru<string, string>(100);
    assert.equal(c.set('a', 'A', 10), true);
    assert.equal(c.get('a', 0), 'A');
    assert.equal(c.get('b', 0), undefined);
    assert.equal(c.bytes, 10);
    assert.equal(c.size, 1);
  });

  test('set() evicts the least recently used entries until the bytes fit', () => {
    const c = new ByteLru<string, number>(100);
    c.set('a', 1, 40);
    c.set('b', 2, 40);
    c.get('a', 0); // a is now more recent than b
    c.set('c', 3, 40);
    assert.equal(c.get('b', 0), undefined, 'b was the least recently used');
    assert.equal(c.get('a', 0), 1);
    assert.equal(c.get('c', 0), 3);
    assert.equal(c.bytes, 80);
  });

  test('set() of a value heavier than maxBytes stores nothing and evicts nothing', () => {
    const c = new ByteLru<string, number>(100);
    c.set('a', 1, 60);
    assert.equal(c.set('big', 2, 101), false);
    assert.equal(c.get('big', 0), undefined);
    assert.equal(c.get('a', 0), 1);
    assert.equal(c.bytes, 60);
  });

  test('set() of an existing key replaces it and its weight', () => {
    const c = new ByteLru<string, number>(100);
    c.set('a', 1, 60);
    c.set('a', 2, 30);
    assert.equal(c.get('a', 0), 2);
    assert.equal(c.bytes, 30);
    assert.equal(c.size, 1);
  });

  test('get() drops an entry once its expiry is reached', () => {
    const c = new ByteLru<string, number>(100);
    c.set('p', 1, 10, 500);
    assert.equal(c.get('p', 499), 1);
    assert.equal(c.get('p', 500), undefined);
    assert.equal(c.size, 0);
    assert.equal(c.bytes, 0);
  });

  test('delete() frees the bytes; bytes never exceed maxBytes under churn', () => {
    const c = new ByteLru<number, number>(1000);
    assert.equal(c.delete(1), false);
    for (let i = 0; i < 10_000; i++) {
      c.set(i, i, (i * 37) % 300);
      assert.ok(c.bytes <= 1000, `bytes ${c.bytes} after ${i}`);
    }
    const before = c.bytes;
    const last = 9999;
    assert.equal(c.delete(last), true);
    assert.equal(c.bytes, before - ((last * 37) % 300));
  });

  test('the constructor refuses a maxBytes that is not positive with RangeError', () => {
    assert.throws(() => new ByteLru(0), RangeError);
    assert.throws(() => new ByteLru(Number.NaN), RangeError);
  });
});
