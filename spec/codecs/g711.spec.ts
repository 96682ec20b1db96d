import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  alawToLinear,
  decodeAlaw,
  decodeUlaw,
  encodeAlaw,
  encodeUlaw,
  linearToAlaw,
  linearToUlaw,
  ulawToLinear,
} from '../../codecs/g711.ts';

// Published code ↔ value pairs (G.711 Tables 1b/2b, 16-bit scale, transmitted bit patterns).
const ULAW_DECODE_VECTORS: Array<[number, number]> = [
  [0xff, 0],
  [0x7f, 0],
  [0xfe, 8],
  [0x7e, -8],
  [0xf0, 120],
  [0xef, 132],
  [0xdf, 396],
  [0xcf, 924],
  [0xbf, 1980],
  [0xaf, 4092],
  [0x9f, 8316],
  [0x8f, 16764],
  [0x80, 32124],
  [0x00, -32124],
];

const ALAW_DECODE_VECTORS: Array<[number, number]> = [
  [0xd5, 8],
  [0x55, -8],
  [0xd4, 24],
  [0xda, 248],
  [0xc5, 264],
  [0xf5, 528],
  [0xe5, 1056],
  [0x95, 2112],
  [0x85, 4224],
  [0xb5, 8448],
  [0xa5, 16896],
  [0xaa, 32256],
  [0x2a, -32256],
];

// Segment boundaries: the last input of one segment and the first of the next (G.711 Tables 1a/2a
// decision values, 14-bit µ-law ends 31, 95, …, 4063 and 12-bit A-law ends 16, 32, …, 1024).
const ULAW_BOUNDARIES: Array<[number, number]> = [
  [0, 0xff],
  [3, 0xff],
  [4, 0xfe],
  [123, 0xf0],
  [124, 0xef],
  [379, 0xe0],
  [380, 0xdf],
  [891, 0xd0],
  [892, 0xcf],
  [1915, 0xc0],
  [1916, 0xbf],
  [3963, 0xb0],
  [3964, 0xaf],
  [8059, 0xa0],
  [8060, 0x9f],
  [16251, 0x90],
  [16252, 0x8f],
  [32767, 0x80],
  [-1, 0x7f],
  [-124, 0x70],
  [-125, 0x6f],
  [-16253, 0x0f],
  [-32768, 0x00],
];

const ALAW_BOUNDARIES: Array<[number, number]> = [
  [0, 0xd5],
  [15, 0xd5],
  [16, 0xd4],
  [255, 0xda],
  [256, 0xc5],
  [511, 0xca],
  [512, 0xf5],
  [1023, 0xfa],
  [1024, 0xe5],
  [2047, 0xea],
  [2048, 0x95],
  [4095, 0x9a],
  [4096, 0x85],
  [8191, 0x8a],
  [8192, 0xb5],
  [16383, 0xba],
  [16384, 0xa5],
  [32767, 0xaa],
  [-1, 0x55],
  [-256, 0x5a],
  [-257, 0x45],
  [-16385, 0x25],
  [-32768, 0x2a],
];

const hex = (n: number): string => `0x${n.toString(16).padStart(2, '0')}`;

describe('µ-law', () => {
  for (const [code, value] of ULAW_DECODE_VECTORS) {
    it(`ulawToLinear(${hex(code)}) returns ${value}`, () => {
      assert.equal(ulawToLinear(code), value);
    });
  }

  for (const [value, code] of ULAW_BOUNDARIES) {
    it(`linearToUlaw(${value}) returns ${hex(code)}`, () => {
      assert.equal(linearToUlaw(value), code);
    });
  }

  it('linearToUlaw() clamps values beyond the 16-bit range and truncates fractions', () => {
    assert.equal(linearToUlaw(100000), 0x80);
    assert.equal(linearToUlaw(-100000), 0x00);
    assert.equal(linearToUlaw(4.9), linearToUlaw(4));
    assert.equal(linearToUlaw(Number.NaN), 0xff);
  });

  it('ulawToLinear() then linearToUlaw() returns every byte except 0x7f (negative zero → 0xff)', () => {
    for (let code = 0; code < 256; code++) {
      assert.equal(linearToUlaw(ulawToLinear(code)), code === 0x7f ? 0xff : code, hex(code));
    }
  });

  it('linearToUlaw() is monotonic: the decoded value never decreases as the input rises', () => {
    let previous = -Infinity;
    for (let s = -32768; s <= 32767; s++) {
      const decoded = ulawToLinear(linearToUlaw(s));
      assert.ok(decoded >= previous, `at ${s}: ${decoded} < ${previous}`);
      previous = decoded;
    }
  });

  it('linearToUlaw() keeps the quantisation error within half a step of the chosen segment', () => {
    for (let s = -32124; s <= 32124; s++) {
      const code = linearToUlaw(s);
      const segment = (~code >> 4) & 0x07;
      const halfStep = 4 << segment; // steps are 2, 4, …, 256 in the 14-bit scale (Table 2a)
      const error = Math.abs(ulawToLinear(code) - s);
      assert.ok(error <= halfStep, `at ${s}: error ${error} > ${halfStep}`);
    }
  });

  it('encodeUlaw() and decodeUlaw() convert literal bytes both ways', () => {
    const pcm = Int16Array.from([0, 8, -8, 132, 32124, -32124, 32767, -32768]);
    const bytes = encodeUlaw(pcm);
    assert.deepEqual([...bytes], [0xff, 0xfe, 0x7e, 0xef, 0x80, 0x00, 0x80, 0x00]);
    assert.deepEqual([...decodeUlaw(Buffer.from([0xff, 0xfe, 0x7e, 0xef, 0x80, 0x00]))], [0, 8, -8, 132, 32124, -32124]);
  });

  it('encodeUlaw() agrees with linearToUlaw() on every 16-bit value', () => {
    const all = new Int16Array(65536);
    for (let i = 0; i < all.length; i++) all[i] = i - 32768;
    const bytes = encodeUlaw(all);
    for (let i = 0; i < all.length; i++) assert.equal(bytes[i], linearToUlaw(all[i]));
  });

  it('decodeUlaw(encodeUlaw(decodeUlaw(b))) returns the decoded samples unchanged', () => {
    const codes = Buffer.alloc(256);
    for (let i = 0; i < 256; i++) codes[i] = i;
    const once = decodeUlaw(codes);
    assert.deepEqual(decodeUlaw(encodeUlaw(once)), once);
  });
});

describe('A-law', () => {
  for (const [code, value] of ALAW_DECODE_VECTORS) {
    it(`alawToLinear(${hex(code)}) returns ${value}`, () => {
      assert.equal(alawToLinear(code), value);
    });
  }

  for (const [value, code] of ALAW_BOUNDARIES) {
    it(`linearToAlaw(${value}) returns ${hex(code)}`, () => {
      assert.equal(linearToAlaw(value), code);
    });
  }

  it('linearToAlaw() clamps values beyond the 16-bit range', () => {
    assert.equal(linearToAlaw(1e6), 0xaa);
    assert.equal(linearToAlaw(-1e6), 0x2a);
  });

  it('alawToLinear() then linearToAlaw() returns every byte', () => {
    for (let code = 0; code < 256; code++) {
      assert.equal(linearToAlaw(alawToLinear(code)), code, hex(code));
    }
  });

  it('linearToAlaw() is monotonic: the decoded value never decreases as the input rises', () => {
    let previous = -Infinity;
    for (let s = -32768; s <= 32767; s++) {
      const decoded = alawToLinear(linearToAlaw(s));
      assert.ok(decoded >= previous, `at ${s}: ${decoded} < ${previous}`);
      previous = decoded;
    }
  });

  it('alawToLinear() is odd-symmetric: code with the sign bit cleared decodes to the negative value', () => {
    for (let code = 0x80; code < 0x100; code++) {
      assert.equal(alawToLinear(code & 0x7f), -alawToLinear(code));
    }
  });

  it('encodeAlaw() and decodeAlaw() convert literal bytes both ways', () => {
    const pcm = Int16Array.from([0, -1, 264, -264, 32256, -32256]);
    assert.deepEqual([...encodeAlaw(pcm)], [0xd5, 0x55, 0xc5, 0x45, 0xaa, 0x2a]);
    assert.deepEqual([...decodeAlaw(Buffer.from([0xd5, 0x55, 0xc5, 0x45, 0xaa, 0x2a]))], [8, -8, 264, -264, 32256, -32256]);
  });

  it('encodeAlaw() agrees with linearToAlaw() on every 16-bit value', () => {
    const all = new Int16Array(65536);
    for (let i = 0; i < all.length; i++) all[i] = i - 32768;
    const bytes = encodeAlaw(all);
    for (let i = 0; i < all.length; i++) assert.equal(bytes[i], linearToAlaw(all[i]));
  });

  it('decodeAlaw() of the idle pattern 0xd5 in a captured sipp packet gives +8 for every sample', () => {
    // Payload bytes of the first RTP packet in /usr/share/sip-tester/g711a.pcap (silence).
    const payload = Buffer.alloc(240, 0xd5);
    assert.ok(decodeAlaw(payload).every((s) => s === 8));
  });
});
