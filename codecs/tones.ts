/**
 * Test signals and prompt tones as 16-bit linear PCM (8 kHz unless told otherwise), and two
 * measurements end-to-end tests use to recognise a signal after it went through the media path:
 * its dominant frequency and its RMS level.
 *
 * DTMF frequencies are those of ITU-T Q.23 §2 (low group 697/770/852/941 Hz, high group
 * 1209/1336/1477/1633 Hz).
 */
import { CodecError } from './errors.ts';

/** Default sample rate of telephony audio (G.711, RFC 3551 §4.5.14). */
export const DEFAULT_SAMPLE_RATE = 8000;

/** DTMF low-group ("row") frequencies in Hz, ITU-T Q.23. */
export const DTMF_ROW_HZ: readonly number[] = [697, 770, 852, 941];
/** DTMF high-group ("column") frequencies in Hz, ITU-T Q.23. */
export const DTMF_COL_HZ: readonly number[] = [1209, 1336, 1477, 1633];
/** The keypad: `DTMF_KEYPAD[row][col]` is the key sent by that pair of frequencies. */
export const DTMF_KEYPAD: readonly string[] = ['123A', '456B', '789C', '*0#D'];

/** A tone request that cannot be generated (unknown key, negative length). */
export class ToneError extends CodecError {}

/** Returns the low- and high-group frequencies of a DTMF key (0-9, *, #, A-D in either case). */
export function dtmfFrequencies(digit: string): [number, number] {
  const key = digit.toUpperCase();
  for (let row = 0; row < 4; row++) {
    const col = key.length === 1 ? DTMF_KEYPAD[row].indexOf(key) : -1;
    if (col >= 0) return [DTMF_ROW_HZ[row], DTMF_COL_HZ[col]];
  }
  throw new ToneError(`not a DTMF key [digit:${JSON.stringify(digit)}]`, 'UNKNOWN_DIGIT');
}

function sampleCount(ms: number, sampleRate: number): number {
  if (!(ms >= 0) || !(sampleRate > 0)) {
    throw new ToneError(`length and sample rate must not be negative [ms:${ms} sampleRate:${sampleRate}]`, 'BAD_LENGTH');
  }
  return Math.round((ms * sampleRate) / 1000);
}

function clampInt16(v: number): number {
  return v > 32767 ? 32767 : v < -32768 ? -32768 : Math.round(v);
}

/** A sine of `freqHz` starting at phase 0; `amplitude` is the peak value (default 8000, about -9 dBm0). */
export function sine(freqHz: number, ms: number, amplitude = 8000, sampleRate = DEFAULT_SAMPLE_RATE): Int16Array {
  const n = sampleCount(ms, sampleRate);
  const out = new Int16Array(n);
  const w = (2 * Math.PI * freqHz) / sampleRate;
  for (let i = 0; i < n; i++) out[i] = clampInt16(amplitude * Math.sin(w * i));
  return out;
}

/** A DTMF key as the sum of its two sines, each of peak `amplitude` (default 6000, about -11 dBm0). */
export function dtmfTone(digit: string, ms: number, amplitude = 6000, sampleRate = DEFAULT_SAMPLE_RATE): Int16Array {
  const [low, high] = dtmfFrequencies(digit);
  const n = sampleCount(ms, sampleRate);
  const out = new Int16Array(n);
  const wl = (2 * Math.PI * low) / sampleRate;
  const wh = (2 * Math.PI * high) / sampleRate;
  for (let i = 0; i < n; i++) out[i] = clampInt16(amplitude * (Math.sin(wl * i) + Math.sin(wh * i)));
  return out;
}

/** `ms` of digital silence. */
export function silence(ms: number, sampleRate = DEFAULT_SAMPLE_RATE): Int16Array {
  return new Int16Array(sampleCount(ms, sampleRate));
}

/** Joins PCM chunks into one array. */
export function concatPcm(...parts: Int16Array[]): Int16Array {
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Int16Array(total);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** Root mean square of the samples (0 for an empty array). */
export function rms(pcm: Int16Array): number {
  if (pcm.length === 0) return 0;
  let sum = 0;
  for (let i = 0; i < pcm.length; i++) sum += pcm[i] * pcm[i];
  return Math.sqrt(sum / pcm.length);
}

/** In-place iterative radix-2 FFT of length re.length (a power of two). */
function fft(re: Float64Array, im: Float64Array): void {
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      [re[i], re[j]] = [re[j], re[i]];
      [im[i], im[j]] = [im[j], im[i]];
    }
  }
  for (let size = 2; size <= n; size <<= 1) {
    const half = size >> 1;
    const step = (-2 * Math.PI) / size;
    for (let start = 0; start < n; start += size) {
      for (let k = 0; k < half; k++) {
        const wr = Math.cos(step * k);
        const wi = Math.sin(step * k);
        const a = start + k;
        const b = a + half;
        const tr = re[b] * wr - im[b] * wi;
        const ti = re[b] * wi + im[b] * wr;
        re[b] = re[a] - tr;
        im[b] = im[a] - ti;
        re[a] = re[a] + tr;
        im[a] = im[a] + ti;
      }
    }
  }
}

/**
 * The dominant frequency in Hz: peak of a Hann-windowed FFT over the first 2^k samples (at most
 * 65536), refined by parabolic interpolation on the log magnitudes, so a clean tone is found to a
 * fraction of a hertz. Returns 0 for fewer than 64 samples or a signal without energy.
 */
export function toneFrequency(pcm: Int16Array, sampleRate = DEFAULT_SAMPLE_RATE): number {
  if (pcm.length < 64) return 0;
  let n = 64;
  while (n * 2 <= pcm.length && n < 65536) n *= 2;
  const re = new Float64Array(n);
  const im = new Float64Array(n);
  let mean = 0;
  for (let i = 0; i < n; i++) mean += pcm[i];
  mean /= n;
  for (let i = 0; i < n; i++) re[i] = (pcm[i] - mean) * (0.5 - 0.5 * Math.cos((2 * Math.PI * i) / n));
  fft(re, im);
  let peak = 1;
  let peakPower = 0;
  const power = new Float64Array(n / 2 + 1);
  for (let k = 0; k <= n / 2; k++) {
    power[k] = re[k] * re[k] + im[k] * im[k];
    if (k >= 1 && power[k] > peakPower) {
      peakPower = power[k];
      peak = k;
    }
  }
  if (peakPower === 0) return 0;
  let offset = 0;
  if (peak > 0 && peak < n / 2) {
    const a = Math.log(power[peak - 1] + 1e-12);
    const b = Math.log(peakPower);
    const c = Math.log(power[peak + 1] + 1e-12);
    const denom = a - 2 * b + c;
    // Log power of a Hann window's main lobe is close to a parabola; half of it is the log magnitude.
    if (denom < 0) offset = (0.5 * (a - c)) / denom;
  }
  return ((peak + offset) * sampleRate) / n;
}
