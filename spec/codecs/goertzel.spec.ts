import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { DtmfDetector } from '../../codecs/goertzel.ts';
import { concatPcm, dtmfFrequencies, dtmfTone, silence, sine } from '../../codecs/tones.ts';
import { decodeAlaw, decodeUlaw, encodeAlaw, encodeUlaw } from '../../codecs/g711.ts';

const KEYS = '1234567890*#ABCD';

/** Runs a fresh detector over `pcm` in chunks of `chunk` samples (160 = one 20 ms RTP packet). */
function detect(pcm: Int16Array, chunk = 160, sampleRate?: number): string {
  const detector = new DtmfDetector(sampleRate ? { sampleRate } : {});
  const keys: string[] = [];
  for (let i = 0; i < pcm.length; i += chunk) keys.push(...detector.push(pcm.subarray(i, i + chunk)));
  return keys.join('');
}

/** Tones of `toneMs` separated by `gapMs` of silence, with silence before and after. */
function keyString(keys: string, toneMs: number, gapMs: number, amplitude = 6000): Int16Array {
  return concatPcm(silence(30), ...[...keys].flatMap((k) => [dtmfTone(k, toneMs, amplitude), silence(gapMs)]));
}

/** A key with the low-group tone `rowDb` dB above (or below) the high-group tone of peak 5000. */
function twisted(key: string, rowDb: number, ms: number): Int16Array {
  const [low, high] = dtmfFrequencies(key);
  const a = sine(low, ms, 5000 * 10 ** (rowDb / 20));
  const b = sine(high, ms, 5000);
  return a.map((v, i) => v + b[i]);
}

/** Deterministic Gaussian noise (xorshift32 + Box-Muller), so a failure can be replayed. */
function gaussianNoise(length: number, sigma: number, seed = 0x2545f491): Float64Array {
  let state = seed;
  const uniform = (): number => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return ((state >>> 0) + 1) / 4294967297;
  };
  const out = new Float64Array(length);
  for (let i = 0; i < length; i++) out[i] = sigma * Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  return out;
}

function addNoise(pcm: Int16Array, snrDb: number, signalPower: number): Int16Array {
  const noise = gaussianNoise(pcm.length, Math.sqrt(signalPower / 10 ** (snrDb / 10)));
  return pcm.map((v, i) => Math.max(-32768, Math.min(32767, Math.round(v + noise[i]))));
}

/**
 * A synthetic vowel: `f0` with 20 harmonics shaped by formant resonances (centre, bandwidth),
 * the kind of steady, harmonic-rich sound that talk-off tests use.
 */
function vowel(f0: number, formants: Array<[number, number]>, ms: number, peak = 12000): Int16Array {
  const gains: number[] = [];
  for (let h = 1; h <= 20; h++) {
    let g = 0;
    for (const [centre, bandwidth] of formants) g += 1 / Math.sqrt(1 + ((h * f0 - centre) / (bandwidth / 2)) ** 2);
    gains.push(h * f0 < 4000 ? g / Math.sqrt(h) : 0);
  }
  const n = Math.round(ms * 8);
  const raw = new Float64Array(n);
  let max = 0;
  for (let i = 0; i < n; i++) {
    let v = 0;
    for (let h = 1; h <= 20; h++) v += gains[h - 1] * Math.sin((2 * Math.PI * h * f0 * i) / 8000 + h * h);
    raw[i] = v;
    max = Math.max(max, Math.abs(v));
  }
  return Int16Array.from(raw, (v) => Math.round((v / max) * peak));
}

/** Reads the 16-bit mono PCM and sample rate of a WAV file (as written by espeak-ng --stdout). */
function readWav(buf: Buffer): { sampleRate: number; pcm: Int16Array } {
  let offset = 12;
  let sampleRate = 0;
  while (offset + 8 <= buf.length) {
    const id = buf.toString('ascii', offset, offset + 4);
    let length = buf.readUInt32LE(offset + 4);
    if (id === 'fmt ') sampleRate = buf.readUInt32LE(offset + 12);
    if (id === 'data') {
      // Streamed WAVs carry a placeholder length; the data runs to the end of the file.
      if (offset + 8 + length > buf.length) length = buf.length - offset - 8;
      const pcm = new Int16Array(length >> 1);
      for (let i = 0; i < pcm.length; i++) pcm[i] = buf.readInt16LE(offset + 8 + 2 * i);
      return { sampleRate, pcm };
    }
    offset += 8 + length + (length & 1);
  }
  throw new Error('WAV without a data chunk');
}

/** Band-limited resampling with a Hann-windowed sinc, good enough to bring speech to 8 kHz. */
function resample(pcm: Int16Array, from: number, to: number): Int16Array {
  const ratio = from / to;
  const cutoff = Math.min(1, to / from) * 0.9;
  const reach = 16 * Math.max(1, ratio);
  const out = new Int16Array(Math.floor(pcm.length / ratio));
  for (let i = 0; i < out.length; i++) {
    const t = i * ratio;
    let acc = 0;
    for (let k = Math.max(0, Math.ceil(t - reach)); k <= Math.min(pcm.length - 1, Math.floor(t + reach)); k++) {
      const d = (t - k) * cutoff;
      const sinc = d === 0 ? 1 : Math.sin(Math.PI * d) / (Math.PI * d);
      acc += pcm[k] * cutoff * sinc * (0.5 + 0.5 * Math.cos((Math.PI * (t - k)) / reach));
    }
    out[i] = Math.max(-32768, Math.min(32767, Math.round(acc)));
  }
  return out;
}

/** Speech from espeak-ng at 8 kHz, normalised to a loud peak of 20000. Throws if espeak-ng is missing. */
function speech(text: string, voice: string, pitch: number): Int16Array {
  const wav = execFileSync('/usr/bin/espeak-ng', ['-v', voice, '-p', String(pitch), '-s', '150', '--stdout', text]);
  const { sampleRate, pcm } = readWav(wav);
  const x = resample(pcm, sampleRate, 8000);
  let peak = 1;
  for (const v of x) peak = Math.max(peak, Math.abs(v));
  return x.map((v) => Math.round((v * 20000) / peak));
}

describe('DtmfDetector', () => {
  for (const key of KEYS) {
    it(`push() reports '${key}' for a 60 ms tone`, () => {
      assert.equal(detect(concatPcm(silence(40), dtmfTone(key, 60), silence(40))), key);
    });
  }

  it('push() reports each key of a 40 ms tone at every alignment to the 1 ms analysis step', () => {
    for (const key of KEYS) {
      for (let shift = 0; shift < 8; shift++) {
        const pcm = concatPcm(new Int16Array(shift), silence(30), dtmfTone(key, 40), silence(40));
        assert.equal(detect(pcm), key, `key ${key} shifted by ${shift} samples`);
      }
    }
  });

  it('push() reports nothing for 20 ms bursts of any key at any alignment', () => {
    for (const key of KEYS) {
      for (let shift = 0; shift < 8; shift++) {
        const pcm = concatPcm(new Int16Array(shift), silence(30), dtmfTone(key, 20), silence(40));
        assert.equal(detect(pcm), '', `key ${key} shifted by ${shift} samples`);
      }
    }
  });

  it("push() decodes '1234567890*#ABCD' sent as 60 ms tones with 60 ms gaps exactly", () => {
    assert.equal(detect(keyString(KEYS, 60, 60)), KEYS);
  });

  it("push() reports '88' for two 8s separated by a 40 ms gap", () => {
    assert.equal(detect(keyString('88', 80, 40)), '88');
  });

  it("push() reports '88' for two 8s separated by a 20 ms gap", () => {
    assert.equal(detect(keyString('88', 80, 20)), '88');
  });

  it("push() reports one '8' for a press with a 10 ms dropout in the middle", () => {
    assert.equal(detect(concatPcm(dtmfTone('8', 100), silence(10), dtmfTone('8', 100), silence(50))), '8');
  });

  it("push() reports one '5' for a 2 s press", () => {
    assert.equal(detect(concatPcm(dtmfTone('5', 2000), silence(50))), '5');
  });

  it("push() reports '12' for two keys sent back to back without a gap", () => {
    assert.equal(detect(concatPcm(dtmfTone('1', 60), dtmfTone('2', 60), silence(50))), '12');
  });

  it('push() gives the same keys whatever the chunk size (1, 7, 160, 1000 samples)', () => {
    const pcm = keyString('147*0#', 50, 50);
    for (const chunk of [1, 7, 160, 1000]) assert.equal(detect(pcm, chunk), '147*0#', `chunk ${chunk}`);
  });

  it('push() decodes every key in white noise at 20 dB SNR', () => {
    const clean = keyString(KEYS, 60, 60);
    // Each key is two sines of peak 6000: power 2 · 6000² / 2.
    assert.equal(detect(addNoise(clean, 20, 6000 ** 2)), KEYS);
  });

  it('push() decodes every key with +6 dB twist (low group stronger)', () => {
    const pcm = concatPcm(...[...KEYS].flatMap((k) => [twisted(k, 6, 60), silence(60)]));
    assert.equal(detect(pcm), KEYS);
  });

  it('push() decodes every key with -3 dB twist (high group stronger)', () => {
    const pcm = concatPcm(...[...KEYS].flatMap((k) => [twisted(k, -3, 60), silence(60)]));
    assert.equal(detect(pcm), KEYS);
  });

  it('push() rejects every key with 12 dB normal twist and with 8 dB reverse twist', () => {
    assert.equal(detect(concatPcm(...[...KEYS].flatMap((k) => [twisted(k, 12, 60), silence(60)]))), '');
    assert.equal(detect(concatPcm(...[...KEYS].flatMap((k) => [twisted(k, -8, 60), silence(60)]))), '');
  });

  it('push() decodes every key after a µ-law and after an A-law round trip at -25 dBm0', () => {
    const pcm = keyString(KEYS, 50, 50, 1250);
    assert.equal(detect(decodeUlaw(encodeUlaw(pcm))), KEYS);
    assert.equal(detect(decodeAlaw(encodeAlaw(pcm))), KEYS);
  });

  it('push() reports nothing for keys below the minimum level (peak 100 per tone)', () => {
    assert.equal(detect(keyString('159', 60, 60, 100)), '');
  });

  it('push() reports nothing for a single DTMF frequency or a 1 kHz tone', () => {
    assert.equal(detect(concatPcm(sine(697, 200), sine(1336, 200), sine(1000, 500))), '');
  });

  it('push() decodes keys at a 16 kHz sample rate', () => {
    const pcm = concatPcm(...[...'369D'].flatMap((k) => [dtmfTone(k, 60, 6000, 16000), silence(60, 16000)]));
    assert.equal(detect(pcm, 320, 16000), '369D');
  });

  it('push() reports nothing for synthetic vowels (120 Hz and other pitches, 20 harmonics, formant-shaped)', () => {
    const vowels: Record<string, Array<[number, number]>> = {
      a: [[730, 90], [1090, 110], [2440, 170]],
      e: [[530, 60], [1840, 100], [2480, 120]],
      i: [[270, 60], [2290, 100], [3010, 120]],
      o: [[570, 80], [840, 90], [2410, 150]],
      u: [[300, 60], [870, 90], [2240, 150]],
      // Formants placed on DTMF pairs, the worst case for talk-off.
      'like 1': [[697, 60], [1209, 60]],
      'like 6': [[770, 50], [1477, 50]],
    };
    for (const f0 of [120, 100, 139.4, 174, 220]) {
      for (const [name, formants] of Object.entries(vowels)) {
        assert.equal(detect(vowel(f0, formants, 1000)), '', `vowel ${name} at ${f0} Hz`);
      }
    }
  });

  it('push() reports nothing for real speech from espeak-ng, then decodes keys sent after it', () => {
    const text =
      'Please enter your event ID, followed by the pound key. One two three four five six seven ' +
      'eight nine zero. Welcome to the conference; the meeting will start shortly. Can you hear me?';
    for (const [voice, pitch] of [['en', 50], ['en+f3', 80], ['de', 20]] as const) {
      const talk = speech(text, voice, pitch);
      assert.ok(talk.length > 8000 * 5, `espeak-ng gave ${talk.length} samples`);
      assert.equal(detect(concatPcm(talk, keyString('159#', 60, 60))), '159#', `voice ${voice} pitch ${pitch}`);
    }
  });
});
