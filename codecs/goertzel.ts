/**
 * In-band DTMF detection in 16-bit linear PCM, for callers whose phones send tones in the audio
 * instead of RFC 4733 events. Frequencies per ITU-T Q.23; acceptance per ITU-T Q.24 (tones of
 * 40 ms or more are recognised, 20 ms bursts are not, twist up to 8 dB normal / 4 dB reverse).
 *
 * Method: the Goertzel algorithm evaluates the eight DTMF frequencies over a 102-sample window
 * (12.75 ms at 8 kHz, so neighbouring rows 73-89 Hz apart fall near the first null of the
 * window) that slides forward 1 ms at a time. A window "shows" a key when:
 *   - the strongest row and strongest column are each above a minimum level,
 *   - their ratio is within the twist limits,
 *   - each is at least 6 dB above every other frequency of its group (relative peak),
 *   - the two tones carry most of the window's energy (speech spreads energy across the band),
 *   - their second harmonics are weak (speech and music are rich in harmonics).
 * The last two are measured on what is left once a least-squares fit of the two sines is taken
 * out of the window: a row tone's second harmonic (1394-1882 Hz) lies next to the column tones,
 * whose leakage through so short a window would otherwise pass for a harmonic.
 *
 * A key is reported after 24 consecutive 1 ms windows show it, about 36 ms into the tone:
 * every 40 ms tone yields at least 27 such windows, a 20 ms burst at most 21. It is reported
 * once; the same key counts again only after a gap of about 17 ms or more of silence, or 40 ms
 * of something else, so short dropouts inside one press do not double it.
 */
import { DEFAULT_SAMPLE_RATE, DTMF_COL_HZ, DTMF_KEYPAD, DTMF_ROW_HZ } from './tones.ts';

/** Window length at 8 kHz, as used by common Goertzel DTMF detectors (12.75 ms). */
const WINDOW_8K = 102;
/** Windows start this many samples apart at 8 kHz (1 ms). */
const HOP_8K = 8;
/** Consecutive windows that must show the same key before it is reported. */
const WINDOWS_TO_REPORT = 24;
/** One empty window inside a run of a key is forgiven (noise); two end the run. */
const MISSES_FORGIVEN = 1;
/** Consecutive quiet windows (below 10 % of the press's power) that end a press. */
const QUIET_WINDOWS_TO_RELEASE = 6;
/** Consecutive windows without the held key that end a press even when not quiet. */
const OTHER_WINDOWS_TO_RELEASE = 40;

/** Minimum peak amplitude of each tone, about -37 dBm0 (µ-law 0 dBm0 is about 22 300 peak). */
const MIN_AMPLITUDE = 300;
/** Normal twist (low group stronger) limit, Q.24: 8 dB, plus 0.5 dB for window-to-window jitter. */
const NORMAL_TWIST = 10 ** (8.5 / 10);
/** Reverse twist (high group stronger) limit, Q.24: 4 dB, plus 0.5 dB for window-to-window jitter. */
const REVERSE_TWIST = 10 ** (4.5 / 10);
/** Each tone must exceed the rest of its group by this power ratio (6 dB). */
const RELATIVE_PEAK = 10 ** (6 / 10);
/** The two tones must carry at least this share of the window's energy. */
const MIN_TONE_SHARE = 0.8;
/** A second harmonic stronger than this fraction of its fundamental (-20 dB) rejects the window. */
const MAX_SECOND_HARMONIC = 10 ** (-20 / 10);
/** A window below this fraction of the held press's power counts as a gap. */
const QUIET_FRACTION = 0.1;

/** Options of DtmfDetector. */
export interface DtmfDetectorOptions {
  /** Sample rate of the PCM pushed in. Default 8000. */
  sampleRate?: number;
}

/** Goertzel power |X(w)|^2 of `x` at angular frequency `w`; valid for any (non-bin) frequency. */
function goertzelPower(x: Float64Array, w: number): number {
  const coeff = 2 * Math.cos(w);
  let s1 = 0;
  let s2 = 0;
  for (let i = 0; i < x.length; i++) {
    const s0 = x[i] + coeff * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  return s1 * s1 + s2 * s2 - coeff * s1 * s2;
}

/** Solves the 4x4 system `a · x = b` (Gaussian elimination, partial pivoting); modifies a and b. */
function solve4(a: Float64Array[], b: Float64Array): Float64Array {
  for (let col = 0; col < 4; col++) {
    let pivot = col;
    for (let r = col + 1; r < 4; r++) if (Math.abs(a[r][col]) > Math.abs(a[pivot][col])) pivot = r;
    [a[col], a[pivot]] = [a[pivot], a[col]];
    [b[col], b[pivot]] = [b[pivot], b[col]];
    for (let r = col + 1; r < 4; r++) {
      const f = a[r][col] / a[col][col];
      for (let k = col; k < 4; k++) a[r][k] -= f * a[col][k];
      b[r] -= f * b[col];
    }
  }
  const x = new Float64Array(4);
  for (let r = 3; r >= 0; r--) {
    let sum = b[r];
    for (let k = r + 1; k < 4; k++) sum -= a[r][k] * x[k];
    x[r] = sum / a[r][r];
  }
  return x;
}

/** Streaming DTMF detector: push PCM in chunks of any size, get each key press once. */
export class DtmfDetector {
  readonly #ring: Float64Array;
  readonly #x: Float64Array;
  readonly #residual: Float64Array;
  readonly #hop: number;
  /** Angular frequencies: 4 rows then 4 columns. */
  readonly #w: Float64Array;
  readonly #coeff: Float64Array;
  /** cos and sin of each of the 8 frequencies over one window, for the least-squares fit. */
  readonly #cos: Float64Array[];
  readonly #sin: Float64Array[];
  readonly #p = new Float64Array(8);
  /** Gram matrix of the four fit basis vectors per row/column pair, computed on first use. */
  readonly #gram = new Map<number, Float64Array[]>();
  #pos = 0;
  #filled = 0;
  #sinceEval = 0;

  #held: string | undefined;
  #heldPower = 0;
  #quietRun = 0;
  #otherRun = 0;
  #candidate: string | undefined;
  #candidateCount = 0;
  #misses = 0;

  constructor(opts: DtmfDetectorOptions = {}) {
    const sampleRate = opts.sampleRate ?? DEFAULT_SAMPLE_RATE;
    const size = Math.round((WINDOW_8K * sampleRate) / DEFAULT_SAMPLE_RATE);
    this.#ring = new Float64Array(size);
    this.#x = new Float64Array(size);
    this.#residual = new Float64Array(size);
    this.#hop = Math.max(1, Math.round((HOP_8K * sampleRate) / DEFAULT_SAMPLE_RATE));
    this.#w = Float64Array.from([...DTMF_ROW_HZ, ...DTMF_COL_HZ], (f) => (2 * Math.PI * f) / sampleRate);
    this.#coeff = this.#w.map((w) => 2 * Math.cos(w));
    this.#cos = [...this.#w].map((w) => Float64Array.from({ length: size }, (_, n) => Math.cos(w * n)));
    this.#sin = [...this.#w].map((w) => Float64Array.from({ length: size }, (_, n) => Math.sin(w * n)));
  }

  /** Feeds samples; returns the keys ('0'-'9', '*', '#', 'A'-'D') recognised in them, in order. */
  push(pcm: Int16Array): string[] {
    const found: string[] = [];
    const size = this.#ring.length;
    for (let i = 0; i < pcm.length; i++) {
      this.#ring[this.#pos] = pcm[i];
      this.#pos = this.#pos + 1 === size ? 0 : this.#pos + 1;
      if (this.#filled < size) this.#filled++;
      if (++this.#sinceEval >= this.#hop && this.#filled === size) {
        this.#sinceEval = 0;
        // Chronological order matters: a rotated window is a different, discontinuous signal.
        this.#x.set(this.#ring.subarray(this.#pos), 0);
        this.#x.set(this.#ring.subarray(0, this.#pos), size - this.#pos);
        const { key, power } = this.#analyse(this.#x);
        const reported = this.#track(key, power);
        if (reported !== undefined) found.push(reported);
      }
    }
    return found;
  }

  /** Which key, if any, the window shows, and its mean power. */
  #analyse(x: Float64Array): { key: string | undefined; power: number } {
    const size = x.length;
    const c = this.#coeff;
    const c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3], c4 = c[4], c5 = c[5], c6 = c[6], c7 = c[7];
    let a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    let b0 = 0, b1 = 0, b2 = 0, b3 = 0, b4 = 0, b5 = 0, b6 = 0, b7 = 0;
    let energy = 0;
    // One pass over the window for all eight filters and the energy (unrolled: the hot loop).
    for (let i = 0; i < size; i++) {
      const v = x[i];
      energy += v * v;
      let t: number;
      t = v + c0 * a0 - b0; b0 = a0; a0 = t;
      t = v + c1 * a1 - b1; b1 = a1; a1 = t;
      t = v + c2 * a2 - b2; b2 = a2; a2 = t;
      t = v + c3 * a3 - b3; b3 = a3; a3 = t;
      t = v + c4 * a4 - b4; b4 = a4; a4 = t;
      t = v + c5 * a5 - b5; b5 = a5; a5 = t;
      t = v + c6 * a6 - b6; b6 = a6; a6 = t;
      t = v + c7 * a7 - b7; b7 = a7; a7 = t;
    }
    const power = energy / size;
    const p = this.#p;
    p[0] = a0 * a0 + b0 * b0 - c0 * a0 * b0;
    p[1] = a1 * a1 + b1 * b1 - c1 * a1 * b1;
    p[2] = a2 * a2 + b2 * b2 - c2 * a2 * b2;
    p[3] = a3 * a3 + b3 * b3 - c3 * a3 * b3;
    p[4] = a4 * a4 + b4 * b4 - c4 * a4 * b4;
    p[5] = a5 * a5 + b5 * b5 - c5 * a5 * b5;
    p[6] = a6 * a6 + b6 * b6 - c6 * a6 * b6;
    p[7] = a7 * a7 + b7 * b7 - c7 * a7 * b7;

    let row = 0;
    let col = 4;
    for (let k = 1; k < 4; k++) if (p[k] > p[row]) row = k;
    for (let k = 5; k < 8; k++) if (p[k] > p[col]) col = k;
    const rowPower = p[row];
    const colPower = p[col];
    const none = { key: undefined, power };

    // |X|^2 of a sine of peak A over N samples is about (A N / 2)^2.
    const minPower = ((MIN_AMPLITUDE * size) / 2) ** 2;
    if (rowPower < minPower || colPower < minPower) return none;
    if (colPower > rowPower * REVERSE_TWIST || rowPower > colPower * NORMAL_TWIST) return none;
    for (let k = 0; k < 4; k++) {
      if (k !== row && p[k] * RELATIVE_PEAK > rowPower) return none;
      if (k + 4 !== col && p[k + 4] * RELATIVE_PEAK > colPower) return none;
    }

    const residualEnergy = this.#removeTones(x, row, col);
    if (residualEnergy > (1 - MIN_TONE_SHARE) * energy) return none;
    const r = this.#residual;
    if (goertzelPower(r, 2 * this.#w[row]) > rowPower * MAX_SECOND_HARMONIC) return none;
    if (goertzelPower(r, 2 * this.#w[col]) > colPower * MAX_SECOND_HARMONIC) return none;
    return { key: DTMF_KEYPAD[row][col - 4], power };
  }

  /** Fits a·cos + b·sin at both frequencies by least squares; leaves x minus the fit in #residual. */
  #removeTones(x: Float64Array, row: number, col: number): number {
    const basis = [this.#cos[row], this.#sin[row], this.#cos[col], this.#sin[col]];
    const size = x.length;
    let gram = this.#gram.get(row * 8 + col);
    if (gram === undefined) {
      gram = [0, 1, 2, 3].map(() => new Float64Array(4));
      for (let i = 0; i < 4; i++) {
        for (let j = i; j < 4; j++) {
          let dot = 0;
          for (let n = 0; n < size; n++) dot += basis[i][n] * basis[j][n];
          gram[i][j] = dot;
          gram[j][i] = dot;
        }
      }
      this.#gram.set(row * 8 + col, gram);
    }
    const rhs = new Float64Array(4);
    for (let i = 0; i < 4; i++) {
      let dot = 0;
      for (let n = 0; n < size; n++) dot += basis[i][n] * x[n];
      rhs[i] = dot;
    }
    const coef = solve4(gram.map((r) => r.slice()), rhs);
    const r = this.#residual;
    let residualEnergy = 0;
    for (let n = 0; n < size; n++) {
      const v = x[n] - coef[0] * basis[0][n] - coef[1] * basis[1][n] - coef[2] * basis[2][n] - coef[3] * basis[3][n];
      r[n] = v;
      residualEnergy += v * v;
    }
    return residualEnergy;
  }

  /** Advances the press state machine by one window; returns a key when a press is recognised. */
  #track(key: string | undefined, power: number): string | undefined {
    if (this.#held !== undefined) {
      if (key === this.#held) {
        this.#otherRun = 0;
        this.#quietRun = 0;
        if (power > this.#heldPower) this.#heldPower = power;
      } else {
        this.#otherRun++;
        this.#quietRun = power < this.#heldPower * QUIET_FRACTION ? this.#quietRun + 1 : 0;
        if (this.#quietRun >= QUIET_WINDOWS_TO_RELEASE || this.#otherRun >= OTHER_WINDOWS_TO_RELEASE) {
          this.#held = undefined;
        }
      }
    }

    if (key !== undefined && key !== this.#held) {
      if (key !== this.#candidate) {
        this.#candidate = key;
        this.#candidateCount = 0;
      }
      this.#candidateCount++;
      this.#misses = 0;
      if (this.#candidateCount >= WINDOWS_TO_REPORT) {
        this.#held = key;
        this.#heldPower = power;
        this.#quietRun = 0;
        this.#otherRun = 0;
        this.#candidate = undefined;
        this.#candidateCount = 0;
        return key;
      }
    } else if (this.#candidate !== undefined && (key !== undefined || ++this.#misses > MISSES_FORGIVEN)) {
      // The held key again, or too many empty windows: the run is broken.
      this.#candidate = undefined;
      this.#candidateCount = 0;
      this.#misses = 0;
    }
    return undefined;
  }
}
