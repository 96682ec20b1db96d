import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { luhnCheckDigit, luhnValid } from '../../codecs/luhn.ts';

describe('luhn', () => {
  // Vectors: the Wikipedia/ISO 7812 example 7992739871 → 3, the Visa test PAN, and our own event IDs.
  const checkDigits: Array<[string, number]> = [
    ['7992739871', 3],
    ['411111111111111', 1],
    ['1234567', 4],
    ['0000000', 0],
    ['0', 0],
    ['9', 1],
    ['18', 2],
  ];
  for (const [digits, cd] of checkDigits) {
    it(`luhnCheckDigit('${digits}') returns ${cd}`, () => {
      assert.equal(luhnCheckDigit(digits), cd);
    });
    it(`luhnValid('${digits}${cd}') returns true`, () => {
      assert.equal(luhnValid(digits + String(cd)), true);
    });
  }

  it('luhnValid() returns false for every other last digit of 7992739871x', () => {
    for (let d = 0; d <= 9; d++) assert.equal(luhnValid(`7992739871${d}`), d === 3, `digit ${d}`);
  });

  it('luhnValid() refuses an adjacent transposition (79927398713 → 79927398731)', () => {
    assert.equal(luhnValid('79927398731'), false);
  });

  it('luhnValid() refuses a single wrong digit (12345674 → 12345684)', () => {
    assert.equal(luhnValid('12345684'), false);
  });

  it('luhnValid() returns false for non-digits, empty and single-digit input', () => {
    for (const s of ['', '0', '7992739871a', ' 79927398713', '7992-7398713', '٧٩٩٢٧٣٩٨٧١٣']) assert.equal(luhnValid(s), false, JSON.stringify(s));
    assert.equal(luhnValid(79927398713 as unknown as string), false);
  });

  it('luhnCheckDigit() throws RangeError for non-digit input', () => {
    assert.throws(() => luhnCheckDigit('12a'), RangeError);
    assert.throws(() => luhnCheckDigit(''), RangeError);
  });

  it('luhnCheckDigit() round trip: appending it always gives a luhnValid() string', () => {
    for (let n = 0; n < 2000; n += 7) {
      const body = String(n * 7919).padStart(7, '0');
      assert.equal(luhnValid(body + String(luhnCheckDigit(body))), true, body);
    }
  });
});
