import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EVENT_ID_RE, eventIdOfStream, isValidEventId, isValidStreamId, makeEventId, makeStreamId } from '../../codecs/ids.ts';

describe('ids', () => {
  it("makeEventId('1234567') returns '12345674'", () => {
    assert.equal(makeEventId('1234567'), '12345674');
  });

  it("makeEventId('7992739') returns '79927398' and '0000000' returns '00000000'", () => {
    assert.equal(makeEventId('7992739'), '79927398');
    assert.equal(makeEventId('0000000'), '00000000');
  });

  it('makeEventId() throws RangeError unless given exactly 7 digits', () => {
    for (const s of ['123456', '12345678', '123456a', '', ' 1234567']) assert.throws(() => makeEventId(s), RangeError, s);
  });

  it('isValidEventId() accepts Luhn-valid 8-digit strings', () => {
    for (const id of ['12345674', '79927398', '00000000']) assert.equal(isValidEventId(id), true, id);
  });

  it('isValidEventId() refuses a wrong check digit, wrong length, non-strings and padding', () => {
    const bad: unknown[] = ['12345675', '1234567', '123456740', '1234567a', ' 12345674', '12345674\n', 12345674, null, undefined, ['12345674'], {}];
    for (const id of bad) assert.equal(isValidEventId(id), false, JSON.stringify(id));
  });

  it('EVENT_ID_RE matches exactly 8 digits', () => {
    assert.equal(EVENT_ID_RE.test('12345678'), true);
    assert.equal(EVENT_ID_RE.test('1234567'), false);
    assert.equal(EVENT_ID_RE.test('123456789'), false);
  });

  it("makeStreamId('12345674', 'node-a', 10002, 1764064800000) returns '12345674-node-a-10002-mieemv40'", () => {
    // 2025-11-25T10:00:00Z in ms; its base-36 form was checked with an independent conversion.
    assert.equal(makeStreamId('12345674', 'node-a', 10002, 1764064800000), '12345674-node-a-10002-mieemv40');
  });

  it('makeStreamId() throws RangeError for an invalid event ID, node ID, port or time', () => {
    assert.throws(() => makeStreamId('12345675', 'n', 10000, 1), RangeError);
    assert.throws(() => makeStreamId('12345674', 'a/b', 10000, 1), RangeError);
    assert.throws(() => makeStreamId('12345674', '..', 10000, 1), RangeError);
    assert.throws(() => makeStreamId('12345674', 'x'.repeat(65), 10000, 1), RangeError);
    assert.throws(() => makeStreamId('12345674', 'n', 70000, 1), RangeError);
    assert.throws(() => makeStreamId('12345674', 'n', 1.5, 1), RangeError);
    assert.throws(() => makeStreamId('12345674', 'n', 10000, -1), RangeError);
    assert.throws(() => makeStreamId('12345674', 'n', 10000, 0.5), RangeError);
  });

  it('isValidStreamId() accepts what makeStreamId() builds (round trip) and eventIdOfStream() returns the event', () => {
    const id = makeStreamId('79927398', 'dc1.voice_2', 0, 0);
    assert.equal(id, '79927398-dc1.voice_2-0-0');
    assert.equal(isValidStreamId(id), true);
    assert.equal(eventIdOfStream(id), '79927398');
  });

  it('isValidStreamId() refuses path tricks, a bad Luhn event part and malformed shapes', () => {
    const bad: unknown[] = [
      '12345674-a..b-10000-abc',
      '12345674-..-10000-abc',
      '12345674-a/b-10000-abc',
      '12345674-a\\b-10000-abc',
      '12345674-a b-10000-abc',
      '12345675-node-10000-abc',
      '1234567-node-10000-abc',
      '12345674-node-100000-abc',
      '12345674-node-10000-ABC',
      '12345674-node-10000-abcdefghijklm',
      '12345674-node-10000-',
      '12345674--10000-abc',
      '12345674-node-10000-abc\n',
      `12345674-${'x'.repeat(65)}-10000-abc`,
      42,
      null,
    ];
    for (const id of bad) assert.equal(isValidStreamId(id), false, JSON.stringify(id));
  });

  it('isValidStreamId() accepts a node ID of exactly 64 characters with dashes in it', () => {
    assert.equal(isValidStreamId(`12345674-${'a'.repeat(65)}-10000-abc`), false);
    assert.equal(isValidStreamId(`12345674-${'a'.repeat(64)}-10000-abc`), true);
    assert.equal(isValidStreamId('12345674-voice-1-dc-2-10049-z'), true);
    assert.equal(eventIdOfStream('12345674-voice-1-dc-2-10049-z'), '12345674');
  });

  it('eventIdOfStream() throws RangeError for an invalid stream ID', () => {
    assert.throws(() => eventIdOfStream('12345675-node-10000-abc'), RangeError);
    assert.throws(() => eventIdOfStream('../../etc/passwd'), RangeError);
  });
});
