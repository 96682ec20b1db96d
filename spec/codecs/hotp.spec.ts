import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { dynamicTruncate, hotp } from '../../codecs/hotp.ts';

// RFC 4226 Appendix D: secret "12345678901234567890" (ASCII), HMAC-SHA-1, counters 0–9.
const SECRET = Buffer.from('12345678901234567890', 'ascii');
const APPENDIX_D: Array<{ count: number; hmac: string; truncHex: number; truncDec: number; hotp: string }> = [
  { count: 0, hmac: 'cc93cf18508d94934c64b65d8ba7667fb7cde4b0', truncHex: 0x4c93cf18, truncDec: 1284755224, hotp: '755224' },
  { count: 1, hmac: '75a48a19d4cbe100644e8ac1397eea747a2d33ab', truncHex: 0x41397eea, truncDec: 1094287082, hotp: '287082' },
  { count: 2, hmac: '0bacb7fa082fef30782211938bc1c5e70416ff44', truncHex: 0x082fef30, truncDec: 137359152, hotp: '359152' },
  { count: 3, hmac: '66c28227d03a2d5529262ff016a1e6ef76557ece', truncHex: 0x66ef7655, truncDec: 1726969429, hotp: '969429' },
  { count: 4, hmac: 'a904c900a64b35909874b33e61c5938a8e15ed1c', truncHex: 0x61c5938a, truncDec: 1640338314, hotp: '338314' },
  { count: 5, hmac: 'a37e783d7b7233c083d4f62926c7a25f238d0316', truncHex: 0x33c083d4, truncDec: 868254676, hotp: '254676' },
  { count: 6, hmac: 'bc9cd28561042c83f219324d3c607256c03272ae', truncHex: 0x7256c032, truncDec: 1918287922, hotp: '287922' },
  { count: 7, hmac: 'a4fb960c0bc06e1eabb804e5b397cdc4b45596fa', truncHex: 0x04e5b397, truncDec: 82162583, hotp: '162583' },
  { count: 8, hmac: '1b3c89f65e6c9e883012052823443f048b4332db', truncHex: 0x2823443f, truncDec: 673399871, hotp: '399871' },
  { count: 9, hmac: '1637409809a679dc698207310c8c7fc07290d9e5', truncHex: 0x2679dc69, truncDec: 645520489, hotp: '520489' },
];

describe('hotp', () => {
  for (const v of APPENDIX_D) {
    it(`HMAC-SHA-1 of counter ${v.count} is ${v.hmac} (RFC 4226 Appendix D)`, () => {
      const msg = Buffer.alloc(8);
      msg.writeBigUInt64BE(BigInt(v.count));
      assert.equal(createHmac('sha1', SECRET).update(msg).digest('hex'), v.hmac);
    });
    it(`dynamicTruncate(${v.hmac}) returns ${v.truncDec} (0x${v.truncHex.toString(16)})`, () => {
      const t = dynamicTruncate(Buffer.from(v.hmac, 'hex'));
      assert.equal(t, v.truncDec);
      assert.equal(t, v.truncHex);
    });
    it(`hotp(secret, ${v.count}) returns '${v.hotp}'`, () => {
      assert.equal(hotp(SECRET, v.count), v.hotp);
      assert.equal(hotp(SECRET, BigInt(v.count)), v.hotp);
    });
  }

  it('dynamicTruncate() of the RFC 4226 §5.4 example returns 0x50ef7f19 = 1357872921, HOTP 872921', () => {
    const hmac = Buffer.from([
      0x1f, 0x86, 0x98, 0x69, 0x0e, 0x02, 0xca, 0x16, 0x61, 0x85, 0x50, 0xef, 0x7f, 0x19, 0xda, 0x8e, 0x94, 0x5b, 0x55, 0x5a,
    ]);
    assert.equal(dynamicTruncate(hmac), 0x50ef7f19);
    assert.equal(dynamicTruncate(hmac), 1357872921);
    assert.equal(1357872921 % 1e6, 872921);
  });

  it('dynamicTruncate() masks the top bit: an 0xff byte at the offset gives 0x7fffffff', () => {
    const hmac = Buffer.alloc(20, 0xff);
    hmac[19] = 0xf0; // offset 0
    assert.equal(dynamicTruncate(hmac), 0x7fffffff);
  });

  it('dynamicTruncate() reads the last 4 bytes of a 32-byte SHA-256 MAC when the offset is 15', () => {
    const hmac = Buffer.alloc(32, 0);
    hmac.writeUInt32BE(0x01020304, 15);
    hmac[31] = 0x0f;
    assert.equal(dynamicTruncate(hmac), 0x01020304);
  });

  it('dynamicTruncate() throws RangeError for a MAC shorter than 20 bytes', () => {
    assert.throws(() => dynamicTruncate(Buffer.alloc(19)), RangeError);
  });

  it("hotp(secret, 0, 8) returns '84755224' (the 8-digit form of Appendix D count 0)", () => {
    assert.equal(hotp(SECRET, 0, 8), '84755224');
  });

  it('hotp() zero-pads: count 2 with 9 digits is 137359152 padded to 9 characters', () => {
    assert.equal(hotp(SECRET, 2, 9), '137359152');
    assert.equal(hotp(SECRET, 7, 9), '082162583');
  });

  it('hotp(…, sha256) truncates HMAC-SHA-256 of the counter the same way', () => {
    const msg = Buffer.alloc(8);
    msg.writeBigUInt64BE(5n);
    const mac = createHmac('sha256', SECRET).update(msg).digest();
    const off = mac[31] & 0x0f;
    const want = String((mac.readUInt32BE(off) & 0x7fffffff) % 1e6).padStart(6, '0');
    assert.equal(hotp(SECRET, 5, 6, 'sha256'), want);
  });

  it('hotp() throws RangeError for a negative counter or bad digit count', () => {
    assert.throws(() => hotp(SECRET, -1), RangeError);
    assert.throws(() => hotp(SECRET, 0, 0), RangeError);
    assert.throws(() => hotp(SECRET, 0, 10), RangeError);
  });
});
