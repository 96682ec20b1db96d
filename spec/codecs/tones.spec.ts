import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  concatPcm,
  dtmfFrequencies,
  dtmfTone,
  rms,
  silence,
  sine,
  toneFrequency,
  ToneError,
} from '../../codecs/tones.ts';
import { decodeAlaw, decodeUlaw, encodeAlaw, encodeUlaw } from '../../codecs/g711.ts';

describe('sine()', () => {
  it('sine(1000, 1) returns 8 samples of a quarter-period sequence 0, A·√½, A, A·√½, 0, …', () => {
    const r = Math.round(8000 * Math.SQRT1_2);
    assert.deepEqual([...sine(1000, 1)], [0, r, 8000, r, 0, -r, -8000, -r]);
  });

  it('sine(440, 20, 1000) returns 160 samples peaking at ±1000', () => {
    const s = sine(440, 20, 1000);
    assert.equal(s.length, 160);
    assert.equal(Math.max(...s), 1000);
    assert.ok(Math.min(...s) <= -999);
  });

  it('sine(500, 10, 1000, 16000) returns 160 samples at the given sample rate', () => {
    const s = sine(500, 10, 1000, 16000);
    assert.equal(s.length, 160);
    assert.equal(s[8], 1000); // a quarter period of 500 Hz is 8 samples at 16 kHz
  });

  it('sine() clamps an amplitude beyond int16 to 32767 / -32768', () => {
    const s = sine(1000, 1, 40000);
    assert.equal(s[2], 32767);
    assert.equal(s[6], -32768);
  });

  it('sine() rejects a negative length with ToneError BAD_LENGTH', () => {
    assert.throws(() => sine(1000, -1), (e: unknown) => e instanceof ToneError && e.code === 'BAD_LENGTH');
  });
});

describe('dtmfFrequencies() and dtmfTone()', () => {
  const table: Array<[string, number, number]> = [
    ['1', 697, 1209], ['2', 697, 1336], ['3', 697, 1477], ['A', 697, 1633],
    ['4', 770, 1209], ['5', 770, 1336], ['6', 770, 1477], ['B', 770, 1633],
    ['7', 852, 1209], ['8', 852, 1336], ['9', 852, 1477], ['C', 852, 1633],
    ['*', 941, 1209], ['0', 941, 1336], ['#', 941, 1477], ['D', 941, 1633],
  ];
  for (const [digit, low, high] of table) {
    it(`dtmfFrequencies('${digit}') returns [${low}, ${high}] (ITU-T Q.23)`, () => {
      assert.deepEqual(dtmfFrequencies(digit), [low, high]);
    });
  }

  it("dtmfFrequencies('b') accepts lower-case A-D", () => {
    assert.deepEqual(dtmfFrequencies('b'), [770, 1633]);
  });

  it("dtmfFrequencies('E') throws ToneError UNKNOWN_DIGIT", () => {
    assert.throws(() => dtmfFrequencies('E'), (e: unknown) => e instanceof ToneError && e.code === 'UNKNOWN_DIGIT');
  });

  it("dtmfTone('5', 50) returns 400 samples equal to the sum of sine(770) and sine(1336)", () => {
    const t = dtmfTone('5', 50);
    const low = sine(770, 50, 6000);
    const high = sine(1336, 50, 6000);
    assert.equal(t.length, 400);
    for (let i = 0; i < t.length; i++) assert.ok(Math.abs(t[i] - (low[i] + high[i])) <= 1, `sample ${i}`);
  });

  it("dtmfTone('1', 100, 3000) has the RMS of two sines of peak 3000: 3000", () => {
    assert.ok(Math.abs(rms(dtmfTone('1', 100, 3000)) - 3000) < 15);
  });
});

describe('silence() and concatPcm()', () => {
  it('silence(20) returns 160 zero samples', () => {
    const s = silence(20);
    assert.equal(s.length, 160);
    assert.ok(s.every((v) => v === 0));
  });

  it('silence(10, 48000) returns 480 samples', () => {
    assert.equal(silence(10, 48000).length, 480);
  });

  it('concatPcm() joins the parts in order', () => {
    const joined = concatPcm(Int16Array.from([1, 2]), new Int16Array(0), Int16Array.from([3]), Int16Array.from([-4, 5]));
    assert.deepEqual([...joined], [1, 2, 3, -4, 5]);
  });

  it('concatPcm() with no parts returns an empty array', () => {
    assert.equal(concatPcm().length, 0);
  });
});

describe('rms()', () => {
  it('rms() of [3, -4, 3, -4] returns √12.5', () => {
    assert.equal(rms(Int16Array.from([3, -4, 3, -4])), Math.sqrt(12.5));
  });

  it('rms() of a full-period sine of peak 10000 returns 10000/√2', () => {
    assert.ok(Math.abs(rms(sine(1000, 100, 10000)) - 10000 * Math.SQRT1_2) < 1);
  });

  it('rms() of an empty array returns 0', () => {
    assert.equal(rms(new Int16Array(0)), 0);
  });
});

describe('toneFrequency()', () => {
  for (const hz of [300, 440, 697, 1000, 1633, 3400]) {
    it(`toneFrequency(sine(${hz}, 500)) returns ${hz} within 0.5 Hz`, () => {
      const f = toneFrequency(sine(hz, 500));
      assert.ok(Math.abs(f - hz) < 0.5, `got ${f}`);
    });
  }

  it('toneFrequency() finds 1 kHz within 0.5 Hz after a µ-law and an A-law round trip', () => {
    const tone = sine(1000, 300, 4000);
    assert.ok(Math.abs(toneFrequency(decodeUlaw(encodeUlaw(tone))) - 1000) < 0.5);
    assert.ok(Math.abs(toneFrequency(decodeAlaw(encodeAlaw(tone))) - 1000) < 0.5);
  });

  it('toneFrequency() finds 1 kHz within 2 Hz from 20 ms of signal', () => {
    assert.ok(Math.abs(toneFrequency(sine(1000, 20)) - 1000) < 2);
  });

  it('toneFrequency() returns the stronger of two tones (1 kHz at -6 dB beside 440 Hz)', () => {
    const mix = sine(440, 200, 8000).map((v, i) => v + Math.round(4000 * Math.sin((2 * Math.PI * 1000 * i) / 8000)));
    assert.ok(Math.abs(toneFrequency(mix) - 440) < 0.5);
  });

  it('toneFrequency() at 48 kHz finds 1 kHz within 0.5 Hz', () => {
    assert.ok(Math.abs(toneFrequency(sine(1000, 200, 8000, 48000), 48000) - 1000) < 0.5);
  });

  it('toneFrequency() ignores a DC offset', () => {
    const offset = sine(700, 200, 3000).map((v) => v + 5000);
    assert.ok(Math.abs(toneFrequency(offset) - 700) < 0.5);
  });

  it('toneFrequency() returns 0 for silence and for fewer than 64 samples', () => {
    assert.equal(toneFrequency(silence(100)), 0);
    assert.equal(toneFrequency(sine(1000, 7)), 0);
  });
});
