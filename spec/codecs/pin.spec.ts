import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { pinFor, pinMatches } from '../../codecs/pin.ts';

const SECRET = 'jitcast-test-secret';
const EVENT = '12345674';

/** The PIN computed without codecs/: HMAC-SHA256, RFC 4226 §5.3 truncation by hand, mod 10^6. */
function independentPin(secret: string, eventId: string): string {
  const mac = createHmac('sha256', secret).update(eventId).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const bin = ((mac[offset] & 0x7f) * 2 ** 24) + mac[offset + 1] * 2 ** 16 + mac[offset + 2] * 2 ** 8 + mac[offset + 3];
  return String(bin % 1_000_000).padStart(6, '0');
}

describe('pin', () => {
  it("pinFor('jitcast-test-secret', '12345674') returns '239995'", () => {
    // HMAC = 92b40d53…a7be789182de115b65dedba11f58bee; last byte 0xee → offset 14 → 0x70c94a7b
    // = 1892239995 → 239995.
    assert.equal(createHmac('sha256', SECRET).update(EVENT).digest('hex'), '92b40d534da7d63b114922cedf0970c94a7be789182de115b65dedba11f58bee');
    assert.equal(pinFor(SECRET, EVENT), '239995');
  });

  it('pinFor() agrees with an independent HMAC + truncation for many event IDs', () => {
    for (const id of ['00000000', '79927398', '12345674', '99999999', '10000009']) {
      assert.equal(pinFor(SECRET, id), independentPin(SECRET, id), id);
      assert.match(pinFor(SECRET, id), /^\d{6}$/);
    }
  });

  it('pinFor() differs for another secret', () => {
    assert.notEqual(pinFor('other-secret', EVENT), pinFor(SECRET, EVENT));
  });

  it('pinMatches() returns true for the right PIN', () => {
    assert.equal(pinMatches(SECRET, EVENT, '239995'), true);
  });

  it('pinMatches() returns false for a PIN one digit off', () => {
    assert.equal(pinMatches(SECRET, EVENT, '239996'), false);
    assert.equal(pinMatches(SECRET, EVENT, '339995'), false);
  });

  it('pinMatches() returns false without throwing for wrong length, non-digits and non-strings', () => {
    for (const c of ['', '23999', '2399950', ' 239995', '23999a', '２３９９９５', '239995\n']) assert.equal(pinMatches(SECRET, EVENT, c), false, JSON.stringify(c));
    assert.equal(pinMatches(SECRET, EVENT, 239995 as unknown as string), false);
    assert.equal(pinMatches(SECRET, EVENT, undefined as unknown as string), false);
  });

  it("pinMatches() returns false for another event's PIN", () => {
    assert.notEqual(pinFor(SECRET, '79927398'), '239995');
    assert.equal(pinMatches(SECRET, '79927398', '239995'), false);
  });
});
